"""Node pools: the pool of each node from its provider's labels, grouped per cluster on the cluster's Node pools
tab, the fleet's page and the API, scoped like the clusters."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inventory.models import Node, Team, TeamMember
from inventory.nodefacts import DEFAULT_POOL, node_pool
from tests.builders import make_cluster, make_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("labels", "pool"), [
    ({"eks.amazonaws.com/nodegroup": "general"}, "general"),
    ({"karpenter.sh/nodepool": "spot"}, "spot"),
    ({"cloud.google.com/gke-nodepool": "default-pool"}, "default-pool"),
    ({"kubernetes.azure.com/agentpool": "nodepool1", "agentpool": "nodepool1"}, "nodepool1"),
    ({"agentpool": "legacy"}, "legacy"),
    ({"alibabacloud.com/nodepool-id": "np5b7c0d"}, "np5b7c0d"),
    ({"kubernetes.io/hostname": "kind-worker"}, DEFAULT_POOL),
    ({"eks.amazonaws.com/nodegroup": ""}, DEFAULT_POOL),
])
def test_pool_comes_from_the_providers_label(labels, pool):
    assert node_pool(labels) == pool


def test_a_configured_label_wins():
    labels = {"pool.example.com/name": "batch", "eks.amazonaws.com/nodegroup": "general"}
    assert node_pool(labels, "pool.example.com/name") == "batch"
    assert node_pool({"eks.amazonaws.com/nodegroup": "general"}, "pool.example.com/name") == "general"


def add_nodes(cluster, pool: str, kubelet: str, count: int, *, ready: int | None = None, zone="eu-west-1a"):
    for i in range(count):
        Node.objects.create(cluster=cluster, uid=f"{cluster.name}-{pool}-{i}", name=f"{cluster.name}-{pool}-{i}",
                            pool=pool, kubelet_version=kubelet, ready=i < (count if ready is None else ready),
                            os_image="Ubuntu 22.04", instance_type="m6i.xlarge", zone=zone,
                            cpu_allocatable_millis=4000, memory_allocatable_bytes=16 * 2**30)


@pytest.fixture
def fleet(db):
    pay = make_cluster("pay-prod", environment="prod", owner="payments")
    add_nodes(pay, "general", "v1.35.4", 3, ready=2)
    add_nodes(pay, "spot", "v1.34.4", 2, zone="eu-west-1b")
    shop = make_cluster("shop-dev", environment="dev", owner="shop")
    add_nodes(shop, "default-pool", "v1.35.4", 1)
    return pay, shop


def test_cluster_tab_shows_each_pool(client, viewer, fleet):
    client.force_login(viewer)
    tab = client.get("/clusters/pay-prod/?tab=pools", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    html = tab.content.decode()
    assert tab.status_code == 200 and html.count("<tr data-pool=") == 2
    general = html.split('data-pool="general"')[1].split("</tr>")[0]
    assert "2 / 3" in general and "v1.35.4" in general and "m6i.xlarge" in general and "48.0\xa0GB" in general
    assert "<td class=\"num\">12</td>" in general, "allocatable CPU in cores"
    spot = html.split('data-pool="spot"')[1].split("</tr>")[0]
    assert "v1.34.4" in spot and "eu-west-1b" in spot


def test_fleet_page_and_api_group_by_pool_and_filter_by_kubelet(client, viewer, fleet, api_as):
    client.force_login(viewer)
    page = client.get("/node-pools/").content.decode()
    assert page.count("<tr data-pool=") == 3
    assert 'data-version="v1.35.4"' in page and 'data-version="v1.34.4"' in page
    versions = page.split('id="kubelet-versions"')[1].split("</table>")[0]
    assert versions.index("v1.35.4") < versions.index("v1.34.4"), "newest first"
    old = client.get("/node-pools/?kubelet_version=v1.34.4", HTTP_HX_REQUEST="true").content.decode()
    assert old.count("<tr data-pool=") == 1 and 'data-pool="spot"' in old
    body = api_as(viewer).get("/api/v1/node-pools/?environment=prod").json()
    assert body["count"] == 2
    general = next(r for r in body["results"] if r["pool"] == "general")
    assert general == {**general, "cluster_name": "pay-prod", "nodes": 3, "ready": 2, "kubelet_versions": ["v1.35.4"],
                       "instance_types": ["m6i.xlarge"], "cpu_allocatable_millis": 12000}
    nodes = api_as(viewer).get("/api/v1/nodes/?pool=spot").json()
    assert nodes["count"] == 2


def test_team_members_see_only_their_clusters_pools(client, fleet, api_as):
    team = Team.objects.create(name="payments", selector="owner=payments")
    member = make_user("pat")
    TeamMember.objects.create(team=team, user=member, role="viewer")
    client.force_login(member)
    page = client.get("/node-pools/").content.decode()
    assert page.count("<tr data-pool=") == 2 and "shop-dev" not in page
    assert {r["cluster_name"] for r in api_as(member).get("/api/v1/node-pools/").json()["results"]} == {"pay-prod"}
    assert client.get("/clusters/shop-dev/?tab=pools").status_code == 404


def test_pools_cost_the_same_queries_for_more_clusters(client, viewer, fleet):
    client.force_login(viewer)
    client.get("/node-pools/")

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/node-pools/").status_code == 200
        return len(captured)

    few = queries()
    for i in range(10):
        add_nodes(make_cluster(f"more-{i}"), "general", "v1.33.1", 2)
    assert queries() == few
