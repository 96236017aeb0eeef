"""What each role sees around every page: the navigation, the admin link, the overview's cards, and no empty
promises (Roll back only where something was applied)."""

from __future__ import annotations

import pytest
import yaml

from rollouts import engine, services
from tests.builders import make_cluster, make_user

pytestmark = pytest.mark.django_db

MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


def test_a_user_with_no_role_sees_no_navigation_and_is_told_why(client):
    client.force_login(make_user("newcomer"))
    response = client.get("/")
    body = response.content.decode()
    assert response.status_code == 403
    assert "has no role yet" in body and "Ask a Fleetweb admin" in body
    for link in ("/clusters/", "/rollouts/", "/policies/", "/api/docs/"):
        assert f'href="{link}"' not in body, link


def test_a_team_operator_refused_a_global_page_is_told_which_role_it_needs_not_that_they_have_none(
        client, admin_user):
    from inventory.models import Team
    from inventory.people import services as team_services

    team = Team.objects.create(name="payments", selector="owner=payments")
    member = make_user("pat")
    team_services.add_member(team, member=member, role="operator", user=admin_user)
    client.force_login(member)
    response = client.get("/audit/")
    body = response.content.decode()
    assert response.status_code == 403 and "has no role yet" not in body
    assert 'id="forbidden-reason"' in body


def test_only_admins_get_the_admin_link(client, admin_user, operator):
    client.force_login(operator)
    assert 'id="admin-link"' not in client.get("/").content.decode()
    client.force_login(admin_user)
    assert 'href="/admin/" id="admin-link"' in client.get("/").content.decode()


def test_overview_cards_link_to_their_lists_and_count_rollouts_approvals_and_the_score(client, operator, viewer):
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    for _ in range(3):
        engine.step_once(rollout.pk)
    client.force_login(viewer)
    body = client.get("/").content.decode()
    assert 'id="card-clusters" href="/clusters/"' in body and "1</div><div class=\"label\">cluster<" in body
    assert 'id="card-rollouts" href="/rollouts/?state=active"' in body and "active rollout<" in body
    assert 'id="card-awaiting" href="/rollouts/approvals/"' in body and "stage awaiting approval" in body
    assert 'id="card-score" href="/compliance/"' in body
    assert "1 workloads" not in body and "1 clusters" not in body


def test_roll_back_is_offered_only_where_the_revision_was_applied(client, operator):
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    services.abort_rollout(rollout, user=operator)
    client.force_login(operator)
    assert 'id="rollback"' not in client.get(f"/rollouts/{rollout.pk}/").content.decode(), \
        "an aborted rollout that applied nothing has nothing to roll back"
    target = rollout.stages.get().targets.get()
    target.applied_revision = app.latest_revision
    target.save()
    assert 'id="rollback"' in client.get(f"/rollouts/{rollout.pk}/").content.decode()
