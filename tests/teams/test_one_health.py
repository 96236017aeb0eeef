"""One health that adds up (issue 30, item 6): "Where it runs" counts a drifted or missing object as not healthy;
the overview's "Needs attention" lists failed rollouts, critical violations, drifted applications, stages
awaiting approval and expiring credentials beside clusters that are down, each only to those who may see it; the
approval page shows what the stage's clusters run now that differs from what Fleetweb applied, beside what the
stage would set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance import evaluation
from governance import services as governance_services
from inventory import services as inventory_services
from inventory.models import Cluster, Workload
from rollouts.choices import DriftState, RolloutState, StageState
from rollouts.models import Application, Deployed, Drift, Rollout, Stage, Target
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db

DRIFTED_FIELDS = [{"kind": "Deployment", "name": "web", "state": "drifted", "fields": [
    {"path": "spec.replicas", "applied": 1, "live": 5, "managers": [{"manager": "kubectl-scale",
                                                                      "operation": "Update", "time": ""}]}]}]


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _deployed(app_name: str, cluster_name: str, state: str = DriftState.DRIFTED, objects=None) -> Deployed:
    app = Application.objects.get(name=app_name)
    deployed = Deployed.objects.create(application=app, cluster=Cluster.objects.get(name=cluster_name),
                                       revision=app.latest_revision, at=timezone.now())
    Drift.objects.create(deployed=deployed, revision=app.latest_revision, state=state,
                         objects_state=DRIFTED_FIELDS if objects is None else objects,
                         since=timezone.now() - timedelta(minutes=5), checked_at=timezone.now())
    return deployed


@pytest.fixture
def troubles(org, admin_user):
    """In each team: a drifted application, a failed rollout, a stage awaiting approval, a critical violation;
    one cluster down and one whose credentials expire in three days."""
    for team, app, cluster in (("pay", "pay-app", "pay-prod"), ("shop", "shop-app", "shop-prod")):
        _deployed(app, cluster)
        application = Application.objects.get(name=app)
        waiting = Rollout.objects.create(application=application, revision=application.latest_revision,
                                         state=RolloutState.RUNNING)
        Stage.objects.create(rollout=waiting, index=0, name=f"{team}-prod", state=StageState.AWAITING_APPROVAL,
                             approvals_required=1, awaiting_since=timezone.now())
        failed = Rollout.objects.create(application=application, revision=application.latest_revision,
                                        state=RolloutState.FAILED, message=f"{cluster}: image pull failed",
                                        finished_at=timezone.now())
        Stage.objects.create(rollout=failed, index=0, name="prod", state=StageState.FAILED)
        group = inventory_services.create_group(name=f"{team}-all", selector=f"name={cluster}", user=admin_user)
        governance_services.create_assignment(group=group, rule_key="no-privileged-containers", user=admin_user)
        Workload.objects.create(cluster=Cluster.objects.get(name=cluster), uid=f"{team}-root", name=f"{team}-root",
                                kind="Deployment", namespace="legacy", pod_template={"containers": [
                                    {"name": "main", "image": "r.example.com/a:1", "privileged": True}]})
        evaluation.evaluate_cluster(Cluster.objects.get(name=cluster))  # as after its sync: one critical violation
    # Each failed rollout is its application's newest; make shop's waiting one newer, so shop's failure is
    # superseded and only pay's needs attention.
    shop_waiting = Rollout.objects.get(application__name="shop-app", state=RolloutState.RUNNING)
    Rollout.objects.filter(pk=shop_waiting.pk).update(created_at=timezone.now() + timedelta(seconds=5))
    Cluster.objects.filter(name="pay-dev").update(status="unreachable", status_reason="connection refused")
    Cluster.objects.filter(name="pay-prod").update(credentials_expire_at=timezone.now() + timedelta(days=3))
    return org


def _attention(user, team: str = "") -> str:
    return _page(user).get(f"/?team={team}" if team else "/", HTTP_HX_REQUEST="true").content.decode()


def test_needs_attention_lists_everything_that_needs_a_person(troubles, admin_user):
    page = _attention(admin_user)
    for subject in ("cluster pay-dev", "credentials of pay-prod", "pay-app on pay-prod", "shop-app on shop-prod",
                    "pay-app: stage pay-prod", "shop-app: stage shop-prod", "cluster pay-prod", "cluster shop-prod"):
        assert f'data-attention="{subject}"' in page, subject
    pay_failed = Rollout.objects.get(application__name="pay-app", state=RolloutState.FAILED)
    assert f'data-attention="rollout #{pay_failed.pk} of pay-app"' in page and "image pull failed" in page
    shop_failed = Rollout.objects.get(application__name="shop-app", state=RolloutState.FAILED)
    assert f"rollout #{shop_failed.pk} of shop-app" not in page, "a failure a newer rollout superseded is not listed"
    assert "1 open critical violation" in page and "Deployment web drifted from what Fleetweb applied" in page
    order = [page.index(f'data-attention="{s}"') for s in (
        "cluster pay-dev", f"rollout #{pay_failed.pk} of pay-app", "cluster pay-prod", "pay-app on pay-prod",
        "pay-app: stage pay-prod", "credentials of pay-prod")]
    assert order == sorted(order), "down, failed, critical, drifted, awaiting, expiring"


def test_operator_cannot_see_another_teams_troubles_in_needs_attention(troubles):
    page = _attention(troubles["users"]["pay_viewer"])
    assert 'data-attention="pay-app on pay-prod"' in page and 'data-attention="cluster pay-prod"' in page
    for other in ("shop-app", "shop-prod", "shop-root"):
        assert other not in page, other
    narrowed = _attention(troubles["users"]["viewer"], team="shop")
    assert "shop-app on shop-prod" in narrowed and "pay-app" not in narrowed and "pay-dev" not in narrowed


def test_needs_attention_costs_the_same_queries_however_many_troubles(troubles, admin_user):
    client = _page(admin_user)
    client.get("/", HTTP_HX_REQUEST="true")
    with CaptureQueriesContext(connection) as few:
        client.get("/", HTTP_HX_REQUEST="true")
    for n in range(10):
        name = f"more-{n}"
        Cluster.objects.create(name=name, status="unreachable", server="https://127.0.0.1:1")
    _deployed("pay-app", "pay-dev", state=DriftState.MISSING,
              objects=[{"kind": "Deployment", "name": "web", "state": "missing", "fields": []}])
    with CaptureQueriesContext(connection) as many:
        client.get("/", HTTP_HX_REQUEST="true")
    assert len(many) == len(few), (len(few), len(many))


def test_a_fleet_with_no_rollout_trouble_costs_one_question_for_it_and_one_for_its_cards(org, admin_user):
    """No failed rollout, drift or waiting stage anywhere: rollouts ask whether there is any (one statement for the
    attention list, one for the cards), not three scoped queries and two scoped counts."""
    client = _page(admin_user)
    client.get("/", HTTP_HX_REQUEST="true")
    with CaptureQueriesContext(connection) as idle:
        page = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    asked = [q["sql"] for q in idle.captured_queries if '"rollouts_' in q["sql"]]
    assert len(asked) == 2 and all(sql.startswith("SELECT EXISTS") for sql in asked), asked
    assert "data-attention=\"pay-app" not in page
    application = Application.objects.get(name="pay-app")
    waiting = Rollout.objects.create(application=application, revision=application.latest_revision,
                                     state=RolloutState.RUNNING)
    Stage.objects.create(rollout=waiting, index=0, name="pay-prod", state=StageState.AWAITING_APPROVAL,
                         approvals_required=1, awaiting_since=timezone.now())
    with CaptureQueriesContext(connection) as busy:
        page = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-attention="pay-app: stage pay-prod"' in page
    assert len([q for q in busy.captured_queries if '"rollouts_' in q["sql"]]) == 2 + 3  # the stage, the two cards


def test_where_it_runs_counts_drift_as_not_healthy_on_the_page_and_the_api(troubles, admin_user):
    app = Application.objects.get(name="pay-app")
    page = _page(admin_user).get(f"/applications/{app.name}/").content.decode()
    row = page[page.index('<tr data-cluster="pay-prod">'):]
    row = row[:row.index("</tr>")]
    assert "health-drift" in row and ">drifted<" in row and ">healthy<" not in row
    [placement] = api_client_for(admin_user).get(f"/api/v1/applications/{app.pk}/clusters/").json()
    assert placement["healthy"] is False and placement["drift"] == "drifted"
    Drift.objects.filter(deployed__application=app).update(state=DriftState.IN_SYNC)
    [placement] = api_client_for(admin_user).get(f"/api/v1/applications/{app.pk}/clusters/").json()
    assert placement["healthy"] is True and placement["drift"] == "in_sync"


def test_the_approval_page_shows_what_prod_runs_now_beside_what_this_sets(troubles, admin_user):
    app = Application.objects.get(name="pay-app")
    stage = Stage.objects.get(rollout__application=app, state=StageState.AWAITING_APPROVAL)
    rendered = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": app.namespace},
                 "spec": {"replicas": 2}}]
    Target.objects.create(stage=stage, cluster=Cluster.objects.get(name="pay-prod"), rendered=rendered)
    page = _page(admin_user).get(stage.rollout.get_absolute_url()).content.decode()
    assert 'id="live-drift-0"' in page
    assert ("<strong>pay-prod</strong> runs Deployment web <code>spec.replicas</code> = <code>5</code> now (set by "
            "kubectl-scale); Fleetweb applied <code>1</code>; this sets <code>2</code>") in page


def test_a_list_full_of_clusters_not_connected_asks_nothing_else_and_shows_what_it_would_have(troubles, admin_user,
                                                                                               monkeypatch):
    """Every other row ranks after a cluster not connected: with ATTENTION_ROWS of them the list is those clusters,
    most severe first, exactly as when everything was asked and cut; the apps' parts and the credentials are not
    asked. One row fewer, and they are."""
    from inventory import overview

    monkeypatch.setattr(overview, "ATTENTION_ROWS", 6)
    for n in range(4):  # pay-dev is unreachable already: with these, 5 clusters not connected
        Cluster.objects.create(name=f"down-{n}", status="stale" if n % 2 else "error", server="https://127.0.0.1:1")
    client = _page(admin_user)
    with CaptureQueriesContext(connection) as room:
        page = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-attention="credentials of pay-prod"' not in page  # the 6th row: a failed rollout ranks first
    pay_failed = Rollout.objects.get(application__name="pay-app", state=RolloutState.FAILED)
    assert f'data-attention="rollout #{pay_failed.pk} of pay-app"' in page
    assert any('"rollouts_' in q["sql"] for q in room.captured_queries)
    Cluster.objects.create(name="down-4", status="unreachable", server="https://127.0.0.1:1")
    with CaptureQueriesContext(connection) as full:
        page = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    shown = [line.split('data-attention="')[1].split('"')[0] for line in page.splitlines() if "data-attention=" in line]
    assert shown == ["cluster down-4", "cluster pay-dev", "cluster down-0", "cluster down-2", "cluster down-1",
                     "cluster down-3"]  # unreachable, error, stale; by name within each

    def asking(ctx, needle: str) -> int:
        return sum(needle in q["sql"] for q in ctx.captured_queries)

    for needle in ("credentials_expire_at", '"critical_open" > 0'):  # the credentials, the critical violations
        assert asking(room, needle) and not asking(full, needle), needle
    assert asking(full, '"rollouts_') < asking(room, '"rollouts_')  # the cards' question only
