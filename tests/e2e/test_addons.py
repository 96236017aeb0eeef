"""End to end: a real member's system add-ons (seeded in kube-system as its provider ships them) are found by a
sync with their versions, and the addon-baseline policy flags the one below its baseline."""

from __future__ import annotations

import pytest

from governance import services as governance_services
from governance.evaluation import evaluate_clusters
from governance.models import Violation
from inventory import addons, services, sync
from inventory.models import Cluster, ClusterAddon, ClusterGroup
from localfleet.seed import PROFILES

pytestmark = pytest.mark.e2e


def test_members_addons_are_found_and_checked_against_a_baseline(member, db, admin_user):
    profile = next(p for p in PROFILES if p["key"] == member.name)
    cluster = services.attach_cluster(name="with-addons", credentials=member.token_credentials(), user=None)
    assert sync.sync_cluster(cluster.pk).outcome in ("succeeded", "partial")
    found = {(a.addon, a.workload): a.version for a in ClusterAddon.objects.filter(cluster=cluster)}
    expected = {}
    for _kind, name, image in profile["addons"]:
        [row] = addons.detect([{"namespace": "kube-system", "name": name, "kind": _kind, "images": [image]}])
        expected[(row["addon"], name)] = row["version"]
    assert found == expected and len(found) == 3
    addon, version = next((a, v) for (a, _), v in found.items() if v != addons.UNKNOWN)
    major, minor, *_ = addons.version_key(version)
    group = ClusterGroup.objects.create(name="addon-check", selector="name=with-addons")
    governance_services.create_assignment(group=group, rule_key="addon-baseline", user=admin_user,
                                          params={"minimums": [f"{addon}=v{major}.{minor + 1}"]})
    evaluate_clusters([Cluster.objects.get(pk=cluster.pk)])
    [violation] = Violation.objects.filter(cluster=cluster, rule_key="addon-baseline", resolved_at__isnull=True)
    assert violation.namespace == "kube-system" and f"is below the baseline v{major}.{minor + 1}" in violation.message
