"""End to end: a real member's nodes, labelled in two pools as its provider labels them, on two kubelet versions,
show as two pools after a sync, on its Node pools tab and in the API."""

from __future__ import annotations

import pytest

from inventory import services, sync
from inventory.choices import ClusterStatus
from localfleet.seed import PROFILES

pytestmark = pytest.mark.e2e


def test_members_nodes_show_as_two_pools(member, db, client, viewer, api_as):
    profile = next(p for p in PROFILES if p["key"] == member.name)
    cluster = services.attach_cluster(name="pooled", credentials=member.token_credentials(), user=None)
    assert sync.sync_cluster(cluster.pk).status == ClusterStatus.CONNECTED
    body = api_as(viewer).get(f"/api/v1/node-pools/?cluster={cluster.pk}").json()
    got = {r["pool"]: r["kubelet_versions"] for r in body["results"]}
    expected = {next(iter(p["labels"].values())): [p["kubelet"]] for p in profile["pools"]}
    assert got == expected and len(set(map(tuple, got.values()))) == 2, (got, expected)
    assert all(r["nodes"] == r["ready"] >= 1 for r in body["results"])
    client.force_login(viewer)
    tab = client.get("/clusters/pooled/?tab=pools", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    assert tab.content.decode().count("<tr data-pool=") == 2
