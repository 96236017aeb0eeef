"""One rule for an unavailable workload: the Python predicate, the SQL filter, the badge and the health agree."""

from __future__ import annotations

import pytest

from inventory import collector
from inventory.choices import ClusterStatus, workload_unavailable
from inventory.models import Workload
from tests.builders import make_cluster

# (kind, desired, available, crash-looping pods, unavailable?)
CASES = [
    ("Deployment", 3, 3, 0, False),
    ("Deployment", 3, 2, 0, True),
    ("Deployment", 3, 3, 1, True),  # replicas still count as available, a pod crash-loops
    ("Deployment", 0, 0, 0, False),  # scaled to zero on purpose
    ("StatefulSet", 2, 1, 0, True),
    ("DaemonSet", 4, 4, 0, False),
    ("Job", 1, 0, 0, False),  # a running Job has nothing available yet
    ("Job", 1, 0, 2, True),
    ("CronJob", 1, 0, 0, False),
    ("CronJob", 1, 0, 1, True),
]


@pytest.mark.django_db
def test_the_sql_filter_the_model_and_the_predicate_agree_on_every_case():
    cluster = make_cluster("c1")
    for i, (kind, desired, available, crashlooping, _) in enumerate(CASES):
        Workload.objects.create(cluster=cluster, uid=f"u{i}", name=f"w{i}", kind=kind, namespace="shop",
                                replicas_desired=desired, replicas_available=available, pods_crashlooping=crashlooping)
    expected = {f"w{i}" for i, case in enumerate(CASES) if case[4]}
    assert {f"w{i}" for i, c in enumerate(CASES) if workload_unavailable(
        c[0], desired=c[1], available=c[2], crashlooping=c[3])} == expected
    assert set(Workload.objects.unavailable().values_list("name", flat=True)) == expected
    assert {w.name for w in Workload.objects.all() if not w.is_available} == expected
    every = {f"w{i}" for i in range(len(CASES))}
    assert set(Workload.objects.available().values_list("name", flat=True)) == every - expected


def test_health_counts_the_snapshot_by_the_same_rule_and_says_it_in_good_english():
    snapshot = collector.Snapshot()
    snapshot.workloads["Job"] = [{"uid": "j", "replicas_desired": 1, "replicas_available": 0}]
    snapshot.workloads["Deployment"] = [{"uid": "d", "replicas_desired": 1, "replicas_available": 1}]
    snapshot.pods_by_workload["j"].crashlooping = 1
    assert collector.unavailable_workloads(snapshot) == 1
    assert collector.health(snapshot) == (ClusterStatus.DEGRADED, "1 workload unavailable")
    assert collector.health(snapshot, 3) == (ClusterStatus.DEGRADED, "3 workloads unavailable")
