"""A cluster's History: rows written as things change, shown on its History tab and in the API, scoped like the
cluster, never holding a secret."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services, sync
from inventory.choices import ClusterEventKind, ClusterStatus
from inventory.models import Cluster, ClusterEvent, Team, TeamMember
from tests.builders import make_cluster, make_user

pytestmark = pytest.mark.django_db


def kinds(cluster) -> list[tuple[str, str]]:
    return list(ClusterEvent.objects.filter(cluster=cluster).order_by("at", "pk").values_list("kind", "summary"))


def test_attach_failure_and_recovery_of_status_are_recorded(operator, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    cluster = services.attach_cluster(name="nowhere", user=operator, credentials={
        "method": "token", "server": "https://127.0.0.1:1", "ca_data": "", "token": "tok-secret-123"})
    run = sync.sync_cluster(cluster.pk)
    assert run.status == ClusterStatus.UNREACHABLE
    sync.sync_cluster(cluster.pk)  # unreachable again: no new line
    rows = kinds(cluster)
    assert rows[0] == (ClusterEventKind.ATTACHED, "attached (bearer token to https://127.0.0.1:1)")
    assert rows[1][0] == ClusterEventKind.STATUS and rows[1][1].startswith("pending first sync → unreachable: ")
    assert len(rows) == 2
    cluster.refresh_from_db()
    assert cluster.status_changed_at is not None
    assert "tok-secret-123" not in json.dumps(list(ClusterEvent.objects.values("summary", "before", "after")))


def test_stale_marking_writes_one_line_per_cluster():
    quiet = make_cluster("quiet")
    Cluster.objects.filter(pk=quiet.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))
    make_cluster("fresh")
    assert sync.mark_stale_clusters() == 1
    assert sync.mark_stale_clusters() == 0
    [(kind, summary)] = kinds(quiet)
    assert kind == ClusterEventKind.STATUS and summary.startswith("connected → stale: not seen for more than")


def test_credential_and_metadata_changes_are_recorded_without_secrets(operator):
    cluster = make_cluster("edited")
    services.update_cluster(cluster, user=operator, region="us-east-1", credentials={
        "method": "token", "server": "https://10.0.0.9:6443", "ca_data": "", "token": "new-secret-token"})
    rows = kinds(cluster)
    assert (ClusterEventKind.CREDENTIALS, "credentials replaced (bearer token to https://10.0.0.9:6443)") in rows
    assert (ClusterEventKind.METADATA, "changed region") in rows
    event = ClusterEvent.objects.get(kind=ClusterEventKind.METADATA)
    assert event.before == {"region": "eu-west-1"} and event.after == {"region": "us-east-1"}
    assert event.actor == operator.username
    assert "new-secret-token" not in json.dumps(list(ClusterEvent.objects.values("summary", "before", "after")))


def test_history_tab_and_api_are_scoped_like_the_cluster(client, viewer, api_as):
    mine = make_cluster("pay-1", owner="payments")
    theirs = make_cluster("shop-1", owner="shop")
    for cluster in (mine, theirs):
        ClusterEvent.objects.create(cluster=cluster, at=timezone.now(), kind=ClusterEventKind.VERSION,
                                    summary=f"Kubernetes v1.35.4 → v1.36.3 on {cluster.name}")
    team = Team.objects.create(name="payments", selector="owner=payments")
    member = make_user("pat")
    TeamMember.objects.create(team=team, user=member, role="viewer")
    client.force_login(member)
    tab = client.get("/clusters/pay-1/?tab=history", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    assert tab.status_code == 200 and "v1.36.3 on pay-1" in tab.content.decode()
    assert client.get("/clusters/shop-1/?tab=history").status_code == 404
    api = api_as(member)
    body = api.get(f"/api/v1/clusters/{mine.pk}/history/").json()
    assert [e["summary"] for e in body["results"]] == ["Kubernetes v1.35.4 → v1.36.3 on pay-1"]
    assert api.get(f"/api/v1/clusters/{theirs.pk}/history/").status_code == 404
    everything = api_as(viewer).get(f"/api/v1/clusters/{theirs.pk}/history/").json()
    assert everything["count"] == 1 and everything["results"][0]["kind"] == "version"
