"""Scope holds in every field, count and message, not only in lists (issue 25, class 4): a team member learns
nothing of clusters, applications or plans outside the team's scope, and what they cannot see answers exactly like
what does not exist."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from governance import services as governance_services
from governance.models import Enforcement
from inventory import services as inventory_services
from inventory.models import Cluster
from notifications.models import AlertRule, Channel
from rollouts import services
from rollouts.models import Application, Deployed, Drift, Rollout
from tests.conftest import api_client_for

pytestmark = pytest.mark.django_db


def _page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_team_viewer_cannot_read_another_teams_manifests_on_the_new_revision_page(org):
    shop_app = Application.objects.get(name="shop-app")
    response = _page(org["users"]["pay_operator"]).get(f"/applications/{shop_app.name}/revisions/new/")
    assert response.status_code == 404
    assert b"nginx" not in response.content
    missing = _page(org["users"]["pay_operator"]).get("/applications/no-such-app/revisions/new/")
    assert missing.status_code == 404


def test_team_operator_cannot_act_on_another_teams_rollout(org):
    shop_app = Application.objects.get(name="shop-app")
    rollout = services.create_rollout(revision=shop_app.latest_revision, user=None,
                                      stages=[{"name": "prod", "selector": "name=shop-prod"}])
    client = _page(org["users"]["pay_operator"])
    for url in (f"/rollouts/{rollout.pk}/pause/", f"/rollouts/{rollout.pk}/abort/",
                f"/rollouts/{rollout.pk}/stages/0/approve/", f"/rollouts/{rollout.pk}/stages/0/reject/"):
        assert client.post(url).status_code == 404, url
    assert Rollout.objects.get(pk=rollout.pk).state == rollout.state


def test_group_members_and_counts_hold_only_the_readers_clusters(org, admin_user):
    shop_prod = Cluster.objects.get(name="shop-prod")
    inventory_services.create_group(name="all-prod", selector="environment=prod", user=admin_user,
                                    static_members=[shop_prod])
    body = api_client_for(org["users"]["pay_viewer"]).get("/api/v1/groups/all-prod/").json()
    assert body["members"] == ["pay-prod"] and body["member_count"] == 1
    assert body["static_members"] == []
    assert "shop-prod" not in str(api_client_for(org["users"]["pay_viewer"]).get("/api/v1/groups/").json())
    everything = api_client_for(org["users"]["viewer"]).get("/api/v1/groups/all-prod/").json()
    assert everything["members"] == ["pay-prod", "shop-prod"] and everything["static_members"] == ["shop-prod"]


def test_assignment_enforcement_rows_hold_only_the_readers_clusters(org, admin_user):
    group = inventory_services.create_group(name="all-prod", selector="environment=prod", user=admin_user)
    assignment = governance_services.create_assignment(group=group, rule_key="no-privileged-containers",
                                                       user=admin_user)
    for name in ("pay-prod", "shop-prod"):
        Enforcement.objects.create(assignment=assignment, cluster=Cluster.objects.get(name=name), state="installed")
    rows = api_client_for(org["users"]["pay_viewer"]).get(f"/api/v1/policy-assignments/{assignment.pk}/").json()
    assert [e["cluster"] for e in rows["enforcement"]] == ["pay-prod"]


def test_team_operator_cannot_learn_whether_other_clusters_match_a_selector(org):
    """A selector matching only another team's clusters answers exactly like one matching nothing at all."""
    app = Application.objects.get(name="pay-app")
    operator = org["users"]["pay_operator"]
    answers = {}
    for selector in ("owner=shop", "owner=nobody-at-all"):
        with pytest.raises(services.RolloutError) as refused:
            services.create_rollout(revision=app.latest_revision, user=operator,
                                    stages=[{"name": "probe", "selector": selector}])
        answers[selector] = (refused.value.status, refused.value.message.replace(selector, "SELECTOR"))
    assert answers["owner=shop"] == answers["owner=nobody-at-all"]
    assert "shop-prod" not in answers["owner=shop"][1] and "cannot see" not in answers["owner=shop"][1]
    assert not Rollout.objects.exists()


def test_a_teams_rule_gets_no_drift_of_the_platforms_application_on_a_shared_cluster(org, admin_user):
    from notifications.choices import ChannelKind
    from rollouts.alerts import _drifted

    shared = Cluster.objects.get(name="pay-prod")
    platform_app = services.create_application(name="platform-agent", namespace="platform-agent",
                                               manifests_text=Application.objects.get(name="pay-app")
                                               .latest_revision.manifests, user=admin_user)
    own = Application.objects.get(name="pay-app")
    for app in (platform_app, own):
        deployed = Deployed.objects.create(application=app, cluster=shared, revision=app.latest_revision,
                                           at=timezone.now())
        Drift.objects.create(deployed=deployed, revision=app.latest_revision, state="drifted", objects_state=[])
    channel = Channel.objects.create(name="pay-hook", kind=ChannelKind.WEBHOOK, team=org["teams"]["payments"])
    rule = AlertRule.objects.create(name="pay-drift", team=org["teams"]["payments"], channel=channel,
                                    events=["application.drifted"])
    from inventory.people.access import team_scope

    found, _held = _drifted(rule, team_scope(org["teams"]["payments"].pk), timezone.now())
    assert [f.subject for f in found.values()] == ["pay-app on pay-prod"]
