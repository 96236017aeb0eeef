"""The fleet-wide workload search: filters over the stored inventory, HTMX partial, CSV with the same filters,
nothing for outsiders, a bad filter named instead of a 500."""

from __future__ import annotations

import re

import pytest

from inventory.models import Workload
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    a, b = make_cluster("eu-1"), make_cluster("us-1")
    for cluster, name, ns, image, labels, available in (
            (a, "web", "shop", "registry.example.com/shop/web:4.2", {"app": "web"}, 2),
            (b, "web", "shop", "registry.example.com/shop/web:4.1", {"app": "web"}, 0),
            (b, "ledger", "payments", "postgres:16", {"app": "ledger"}, 1)):
        Workload.objects.create(cluster=cluster, uid=f"{cluster.name}-{name}", name=name, kind="Deployment",
                                namespace=ns, images=[image], labels=labels, replicas_desired=2 if name == "web"
                                else 1, replicas_available=available)


def rows(response) -> set[str]:
    """cluster:namespace/name of each row of the table."""
    return {f"{c}:{w}" for c, w in re.findall(r'data-cluster="([^"]+)" data-workload="([^"]+)"',
                                               response.content.decode())}


@pytest.mark.parametrize(("query", "expected"), [
    ("", {"eu-1:shop/web", "us-1:shop/web", "us-1:payments/ledger"}),
    ("q=web", {"eu-1:shop/web", "us-1:shop/web"}),
    ("image=web:4.1", {"us-1:shop/web"}),
    ("label=app=ledger", {"us-1:payments/ledger"}),
    ("namespace=payments", {"us-1:payments/ledger"}),
    ("cluster_name=eu-1", {"eu-1:shop/web"}),
    ("unavailable=true", {"us-1:shop/web"}),
])
def test_filters(client, viewer, fleet, query, expected):
    client.force_login(viewer)
    assert rows(client.get(f"/workloads/?{query}")) == expected


def test_htmx_gets_the_table_and_the_csv_follows_the_filters(client, viewer, fleet):
    client.force_login(viewer)
    partial = client.get("/workloads/?image=shop", HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"2 workloads" in partial.content
    csv = b"".join(client.get("/workloads/export.csv?image=shop").streaming_content).decode().splitlines()
    assert csv[0].startswith("cluster,namespace,kind,name") and len(csv) == 3
    assert any(line.startswith("us-1,shop,Deployment,web,2,0,") and ",False," in line for line in csv)


def test_outsiders_see_nothing_and_a_bad_filter_is_named(client, outsider, viewer, fleet):
    client.force_login(outsider)
    assert client.get("/workloads/").status_code == 403
    assert client.get("/workloads/export.csv").status_code == 403
    client.force_login(viewer)
    bad = client.get("/workloads/?unavailable=perhaps&kind=Pod")
    assert bad.status_code == 200 and b"kind:" in bad.content
