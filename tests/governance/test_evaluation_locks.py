"""Evaluations and deletions in separate transactions (real PostgreSQL row locks, two connections)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from governance import evaluation, services
from governance.models import PolicyAssignment, PolicyResult, Violation
from inventory import services as inventory_services
from inventory.models import Cluster, ClusterGroup, Workload
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(fn, outcome: dict, key: str) -> threading.Thread:
    def run():
        try:
            outcome[key] = fn()
        except Exception as exc:  # reported by the test, not lost in the thread
            outcome[key] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("deletion", ["unassign", "delete group", "detach"])
def test_a_deletion_waits_for_an_evaluation_writing_for_it_and_removes_what_it_wrote(admin_user, monkeypatch,
                                                                                      deletion):
    cluster = make_cluster("prod-1", environment="prod")
    Workload.objects.create(cluster=cluster, uid="w", name="w", kind="Deployment", namespace="shop",
                            pod_template={"containers": [{"name": "m", "image": "r/a:latest"}]})
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    assignment = services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)

    writing, release = threading.Event(), threading.Event()
    store = evaluation._store_compliance

    def store_then_wait(*args, **kwargs):  # inside the evaluation's transaction, violations written
        result = store(*args, **kwargs)
        writing.set()
        assert release.wait(30), "the test never released the evaluation"
        return result

    monkeypatch.setattr(evaluation, "_store_compliance", store_then_wait)
    delete = {
        "unassign": lambda: services.delete_assignment(PolicyAssignment.objects.get(pk=assignment.pk),
                                                       user=admin_user),
        "delete group": lambda: inventory_services.delete_group(ClusterGroup.objects.get(pk=group.pk),
                                                                user=admin_user),
        "detach": lambda: inventory_services.detach_cluster(Cluster.objects.get(pk=cluster.pk), user=admin_user),
    }[deletion]
    outcome: dict = {}
    running = _in_thread(lambda: evaluation.evaluate_clusters([Cluster.objects.get(pk=cluster.pk)]), outcome,
                         "evaluation")
    try:
        assert writing.wait(30), "the evaluation never reached its writes"
        deleter = _in_thread(delete, outcome, "deletion")
        deleter.join(1.0)
        assert deleter.is_alive(), "the deletion must wait for the evaluation's transaction"
    finally:
        release.set()
    running.join(30)
    deleter.join(30)
    assert not isinstance(outcome["evaluation"], Exception), outcome["evaluation"]
    assert outcome.get("deletion") is None, f"the deletion failed: {outcome.get('deletion')!r}"
    assert not Violation.objects.filter(rule_key="no-latest-tag").exists()
    assert not PolicyResult.objects.exists()
