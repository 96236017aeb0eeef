"""Teams: one table of doors × who asks, each answer asserted (200 with exactly the in-scope rows, 404 for another
team's objects, 403 for someone with no role), plus what a team operator must not be able to do."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from foundation.audit import AuditEvent
from foundation.errors import ServiceError
from foundation.models import ApiToken
from governance import services as governance_services
from inventory import services as inventory_services
from inventory.models import Cluster, ClusterGroup, Team
from inventory.people import services as team_services
from inventory.people.tokens import create_token, digest, revoke_token
from rollouts import approvals, services
from rollouts.models import Application, Rollout
from tests.builders import make_cluster
from tests.conftest import api_client_for
from tests.teams.conftest import MANIFESTS

PAYMENTS = {"pay-prod", "pay-dev", "pay-app"}
SHOP = {"shop-prod", "shop-app"}
EVERYTHING = PAYMENTS | SHOP


# who asks -> what they see (None: no role at all, every door answers 403)
SEES = {"nobody": None, "viewer": EVERYTHING, "admin": EVERYTHING, "pay_viewer": PAYMENTS, "pay_operator": PAYMENTS,
        "pay_approver": PAYMENTS, "shop_viewer": SHOP, "shop_operator": SHOP}

# (door, url, kind) for lists: the answer names exactly the objects in scope
LISTS = [
    ("clusters page", "/clusters/", "page"),
    ("clusters partial", "/clusters/?q=", "partial"),
    ("clusters CSV", "/clusters/export.csv", "export"),
    ("workloads page", "/workloads/", "page"),
    ("workloads CSV", "/workloads/export.csv", "export"),
    ("applications page", "/applications/", "page"),
    ("API clusters", "/api/v1/clusters/", "api"),
    ("API workloads", "/api/v1/workloads/", "api"),
    ("API nodes", "/api/v1/nodes/", "api"),
    ("API applications", "/api/v1/applications/", "api"),
    ("API rollouts", "/api/v1/rollouts/", "api"),
    ("upgrade plan page", "/upgrades/", "page"),
    ("upgrade plan CSV", "/upgrades/export.csv", "export"),
    ("API upgrade plan", "/api/v1/upgrade-plan/", "api"),
]
# (door, url with {cluster}/{cluster_id}/{app}/{app_id}, kind) for one object of one team
DETAILS = [
    ("cluster page", "/clusters/{cluster}/", "page"),
    ("cluster tab partial", "/clusters/{cluster}/?tab=workloads", "partial"),
    ("application page", "/applications/{app}/", "page"),
    ("API cluster", "/api/v1/clusters/{cluster_id}/", "api"),
    ("API application", "/api/v1/applications/{app_id}/", "api"),
    ("API where it runs", "/api/v1/applications/{app_id}/clusters/", "api"),
    ("cluster upgrade tab", "/clusters/{cluster}/?tab=upgrade", "partial"),
    ("API upgrade readiness", "/api/v1/upgrade-plan/{cluster}/", "api"),
]


def _get(org, who: str, url: str, kind: str):
    user = org["users"][who]
    if kind == "api":
        return api_client_for(user).get(url)
    from django.test import Client

    client = Client()
    client.force_login(user)
    headers = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "tab-content"} if kind == "partial" else {}
    return client.get(url, **headers)


@pytest.mark.parametrize("who", sorted(SEES))
@pytest.mark.parametrize(("door", "url", "kind"), LISTS, ids=[d for d, _, _ in LISTS])
def test_lists_hold_exactly_what_the_user_may_see(org, who, door, url, kind):
    response = _get(org, who, url, kind)
    expected = SEES[who]
    if expected is None:
        assert response.status_code == 403, door
        return
    assert response.status_code == 200, (door, response.status_code)
    body = b"".join(response.streaming_content).decode() if response.streaming else response.content.decode()
    shown = {name for name in EVERYTHING if name in body}
    relevant = {n for n in EVERYTHING if _kind_of(n) in _listed(door)}
    assert shown & relevant == expected & relevant, (door, who)


@pytest.mark.parametrize("who", ["pay_viewer", "shop_operator", "viewer"])
def test_overview_counts_only_what_the_user_sees(org, who):
    response = _get(org, who, "/", "page")
    assert response.status_code == 200
    clusters = {n for n in SEES[who] if _kind_of(n) == "cluster"}
    assert response.context["totals"]["clusters"] == len(clusters)


@pytest.mark.parametrize("who", ["pay_viewer", "shop_operator", "viewer"])
def test_the_upgrade_plans_counts_and_pages_hold_only_what_the_user_sees(org, who):
    clusters = {n for n in SEES[who] if _kind_of(n) == "cluster"}
    page = _get(org, who, "/upgrades/", "page")
    assert page.status_code == 200
    assert sum(page.context["counts"].values()) == page.context["page"].paginator.count == len(clusters)
    assert {r.cluster.name for r in page.context["page"].object_list} == clusters
    listed = _get(org, who, "/api/v1/upgrade-plan/?verdict=unknown", "api").json()
    assert listed["count"] == page.context["counts"]["unknown"]
    assert {r["cluster"] for r in listed["results"]} <= clusters
    assert _get(org, who, "/api/v1/upgrade-plan/", "api").json()["count"] == len(clusters)


def _kind_of(name: str) -> str:
    return "app" if name.endswith("-app") else "cluster"


def _listed(door: str) -> set[str]:
    if "application" in door:
        return {"app"}
    if "rollouts" in door:
        return set()
    return {"cluster"}


@pytest.mark.parametrize("who", sorted(SEES))
@pytest.mark.parametrize("team", ["payments", "shop"])
@pytest.mark.parametrize(("door", "url", "kind"), DETAILS, ids=[d for d, _, _ in DETAILS])
def test_another_teams_objects_answer_404_not_403(org, who, team, door, url, kind):
    cluster = Cluster.objects.get(name="pay-prod" if team == "payments" else "shop-prod")
    app = Application.objects.get(name="pay-app" if team == "payments" else "shop-app")
    response = _get(org, who, url.format(cluster=cluster.name, cluster_id=cluster.pk, app=app.name, app_id=app.pk),
                    kind)
    if SEES[who] is None:
        assert response.status_code == 403, door
    elif cluster.name in SEES[who]:
        assert response.status_code == 200, (door, who, response.status_code)
    else:
        assert response.status_code == 404, (door, who, response.status_code)


def test_scoped_lists_cost_a_constant_number_of_queries(org, admin_user):
    client = api_client_for(org["users"]["pay_viewer"])
    client.get("/api/v1/clusters/")  # the token's first use writes its last-used time
    with CaptureQueriesContext(connection) as few:
        assert client.get("/api/v1/clusters/").status_code == 200
    for i in range(10):
        make_cluster(f"pay-more-{i}", owner="payments")
        make_cluster(f"other-{i}", owner="elsewhere")
    second = team_services.save_team(user=admin_user, name="payments-eu", selector="owner=payments,region=eu-west-1")
    team_services.add_member(second, member=org["users"]["pay_viewer"], role="viewer", user=admin_user)
    with CaptureQueriesContext(connection) as many:
        response = client.get("/api/v1/clusters/?page_size=100")
    assert response.status_code == 200 and response.json()["count"] == 12
    assert len(many.captured_queries) == len(few.captured_queries)


def test_compliance_scores_count_only_the_clusters_in_scope(org, admin_user, api_as):
    prod = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    assert ClusterGroup.objects.visible_to(org["users"]["pay_viewer"]).filter(pk=prod.pk).exists()
    response = api_as(org["users"]["pay_viewer"]).get("/api/v1/compliance/")
    assert response.status_code == 200
    groups = {g["name"]: g for g in response.json()["groups"]}
    assert groups["prod"]["clusters"] == 1  # pay-prod only, not shop-prod
    assert response.json()["fleet"]["history"] == []
    assert api_as(admin_user).get("/api/v1/compliance/").json()["groups"][0]["clusters"] == 2


# ---------------------------------------------------------------------------------------------
# What the lowest role that reaches a feature must not be able to do


def test_operator_cannot_roll_out_to_another_teams_cluster(org):
    """A team operator's selector is resolved among the clusters they can see: another team's prod cluster is never
    a target, and nothing (no refusal, no count) says that it matched."""
    app = Application.objects.get(name="pay-app")
    operator = org["users"]["pay_operator"]
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "prod", "selector": "environment=prod"}])
    assert [t.cluster.name for t in rollout.stages.get().targets.all()] == ["pay-prod"]
    with pytest.raises(services.RolloutError) as refused:
        services.create_rollout(revision=app.latest_revision, user=operator,
                                stages=[{"name": "shop", "selector": "owner=shop"}])
    assert "matches no cluster" in refused.value.message and "shop-prod" not in refused.value.message
    assert Rollout.objects.count() == 1


def test_global_operator_cannot_send_a_teams_application_outside_its_scope(org, operator):
    app = Application.objects.get(name="pay-app")
    with pytest.raises(services.RolloutError) as refused:
        services.create_rollout(revision=app.latest_revision, user=operator,
                                stages=[{"name": "all", "selector": "environment=prod"}])
    assert "cluster shop-prod is outside the scope of team payments" in refused.value.message
    assert not Rollout.objects.exists()


def test_operator_cannot_touch_another_teams_application(org, api_as):
    shop_app = Application.objects.get(name="shop-app")
    client = api_as(org["users"]["pay_operator"])
    assert client.patch(f"/api/v1/applications/{shop_app.pk}/", {"description": "mine"}, format="json"
                        ).status_code == 404
    assert client.post("/api/v1/rollouts/", {"revision": shop_app.latest_revision.pk, "stages": [
        {"name": "s", "selector": "owner=shop"}]}, format="json").status_code == 400  # no such revision for them
    with pytest.raises(services.RolloutError):
        services.create_revision(shop_app, manifests_text=MANIFESTS.replace("1.27", "1.28"),
                                 user=org["users"]["pay_operator"])
    shop_app.refresh_from_db()
    assert shop_app.description == "" and shop_app.revisions.count() == 1 and not Rollout.objects.exists()


def test_operator_cannot_change_who_approves(org, api_as):
    app = Application.objects.get(name="pay-app")
    client = api_as(org["users"]["pay_operator"])
    response = client.patch(f"/api/v1/applications/{app.pk}/", {"approver_team": "shop"}, format="json")
    assert response.status_code == 403, response.content
    response = client.patch(f"/api/v1/applications/{app.pk}/", {"owner_team": None}, format="json")
    assert response.status_code == 403
    app.refresh_from_db()
    assert app.approver_team is None and app.owner_team.name == "payments"
    assert client.post("/api/v1/applications/", {"name": "sneaky", "namespace": "sneaky", "manifests": MANIFESTS,
                                                 "owner_team": "payments", "approver_team": "shop"},
                       format="json").status_code == 403
    assert client.post("/api/v1/applications/", {"name": "platformish", "namespace": "p", "manifests": MANIFESTS},
                       format="json").status_code == 403  # an application of no team is the platform's
    assert not Application.objects.filter(name__in=["sneaky", "platformish"]).exists()


def test_operator_cannot_attach_detach_or_edit_groups_teams_and_policies(org, api_as):
    operator = org["users"]["pay_operator"]
    client = api_as(operator)
    cluster = Cluster.objects.get(name="pay-prod")
    group = ClusterGroup.objects.create(name="g")
    changes = AuditEvent.objects.exclude(action__startswith="auth.")  # logging in is on the record too
    before = changes.count()
    assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 403
    assert client.patch(f"/api/v1/clusters/{cluster.pk}/", {"owner": "shop"}, format="json").status_code == 403
    assert client.post("/api/v1/groups/", {"name": "mine", "selector": "owner=payments"},
                       format="json").status_code == 403
    with pytest.raises(ServiceError) as refused:
        governance_services.create_assignment(group=group, rule_key="no-latest-tag", user=operator)
    assert getattr(refused.value, "status", None) == 403
    with pytest.raises(ServiceError) as refused:
        team_services.add_member(org["teams"]["shop"], member=operator, role="approver", user=operator)
    assert getattr(refused.value, "status", None) == 403
    with pytest.raises(ServiceError):
        team_services.save_team(user=operator, team=org["teams"]["payments"], name="payments", selector="")
    from django.test import Client

    page = Client()
    page.force_login(operator)
    assert page.get("/clusters/attach/").status_code == 403
    assert page.get("/teams/new/").status_code == 403
    assert Cluster.objects.get(pk=cluster.pk).owner == "payments"
    assert org["teams"]["payments"].selector == Team.objects.get(name="payments").selector == "owner=payments"
    assert not org["teams"]["shop"].members.filter(user=operator).exists()
    assert changes.count() == before


def test_operator_syncs_their_clusters_only(org, api_as, django_capture_on_commit_callbacks):
    client = api_as(org["users"]["pay_operator"])
    assert client.post(f"/api/v1/clusters/{Cluster.objects.get(name='shop-prod').pk}/sync/").status_code == 404
    assert api_as(org["users"]["pay_viewer"]).post(
        f"/api/v1/clusters/{Cluster.objects.get(name='pay-prod').pk}/sync/").status_code == 403
    assert client.post(f"/api/v1/clusters/{Cluster.objects.get(name='pay-prod').pk}/sync/").status_code == 202


def test_only_the_approver_team_approves(org, approver, admin_user):
    app = Application.objects.get(name="pay-app")
    rollout = services.create_rollout(revision=app.latest_revision, user=org["users"]["pay_operator"],
                                      stages=[{"name": "prod", "selector": "name=pay-prod"}])
    stage = rollout.stages.get()
    for outsider in (org["users"]["shop_approver"], org["users"]["pay_viewer"], approver):  # global approver too
        with pytest.raises(services.RolloutError) as refused:
            approvals.check_can_decide(stage, outsider)
        assert refused.value.status == 403 and "approvers of team payments" in refused.value.message
    with pytest.raises(services.RolloutError) as not_yet:
        approvals.check_can_decide(stage, org["users"]["pay_approver"])
    assert not_yet.value.status == 409  # allowed to decide; the stage just is not awaiting approval yet
    services.update_application(app, user=admin_user, approver_team=org["teams"]["shop"])
    app.refresh_from_db()
    stage.rollout.application = app
    with pytest.raises(services.RolloutError) as moved:
        approvals.check_can_decide(stage, org["users"]["pay_approver"])
    assert moved.value.status == 403


# ---------------------------------------------------------------------------------------------
# Tokens


def test_expired_and_revoked_tokens_get_401_and_read_only_cannot_write(org):
    from rest_framework.test import APIClient

    owner = org["users"]["pay_operator"]
    token, key = create_token(owner=owner, user=owner, name="ci")
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == digest(key) and key not in str(ApiToken.objects.filter(pk=token.pk).values().get())
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/clusters/").status_code == 200
    assert ApiToken.objects.get(pk=token.pk).last_used_at is not None
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/clusters/").status_code == 401
    token2, key2 = create_token(owner=owner, user=owner, name="ci2")
    revoke_token(token2, user=org["users"]["admin"])
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key2}")
    assert client.get("/api/v1/clusters/").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer fwt_not-a-token")
    assert client.get("/api/v1/clusters/").status_code == 401
    _ro, key3 = create_token(owner=owner, user=owner, name="read", read_only=True)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key3}")
    pay_prod = Cluster.objects.get(name="pay-prod")
    assert client.get("/api/v1/clusters/").status_code == 200
    response = client.post(f"/api/v1/clusters/{pay_prod.pk}/sync/")
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert set(AuditEvent.objects.filter(action__startswith="token.").values_list("action", flat=True)) == {
        "token.create", "token.revoke"}
    assert not [e for e in AuditEvent.objects.all() if key in f"{e.before}{e.after}{e.target_name}"]


def test_a_token_acts_with_its_owners_current_roles(org, admin_user):
    from rest_framework.test import APIClient

    owner = org["users"]["pay_viewer"]
    _token, key = create_token(owner=owner, user=owner, name="dash")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert client.get("/api/v1/clusters/").json()["count"] == 2
    grant = org["teams"]["payments"].members.get(user=owner)
    team_services.remove_member(grant, user=admin_user)
    assert client.get("/api/v1/clusters/").status_code == 403


def test_only_owners_and_admins_revoke_and_service_accounts_cannot_log_in(org, admin_user, client):
    other = org["users"]["shop_viewer"]
    token, _key = create_token(owner=org["users"]["pay_viewer"], user=org["users"]["pay_viewer"], name="x")
    client.force_login(other)
    assert client.post(f"/accounts/tokens/{token.pk}/revoke/").status_code == 404
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    from inventory.people.tokens import create_service_account

    with pytest.raises(ServiceError):
        create_service_account(username="ci-bot", user=other)
    bot = create_service_account(username="ci-bot", user=admin_user)
    assert not bot.has_usable_password()
    _t, bot_key = create_token(owner=bot, user=admin_user, name="deploy")
    assert bot_key.startswith("fwt_")
    client.logout()
    response = client.post("/accounts/login/", {"username": "ci-bot", "password": ""})
    assert response.status_code != 302


def test_my_tokens_page_shows_the_key_once(org, client):
    owner = org["users"]["pay_operator"]
    client.force_login(owner)
    form = client.get("/accounts/tokens/").context["form"]
    sent = {"name": "laptop", "days": 30, "once": form.initial["once"]}
    response = client.post("/accounts/tokens/", sent)
    assert response.status_code == 200
    key = response.context["key"]
    assert key.startswith("fwt_") and key in response.content.decode()
    again = client.get("/accounts/tokens/").content.decode()
    assert "laptop" in again and key not in again and key[:12] in again
    assert client.post("/accounts/tokens/", {"name": "", "days": 9999, "once": "x"}).status_code == 400
    # Reloading the answer sends the same form again: no second token, no key, and it says why.
    created = AuditEvent.objects.filter(action="token.create").count()
    reloaded = client.post("/accounts/tokens/", sent)
    assert reloaded.status_code == 400 and reloaded.context["key"] is None
    assert "This form was sent already" in reloaded.content.decode()
    assert ApiToken.objects.filter(user=owner, name="laptop").count() == 1
    assert AuditEvent.objects.filter(action="token.create").count() == created


# ---------------------------------------------------------------------------------------------
# The team switcher (`?team=`) and the teams API


def test_the_team_switcher_narrows_lists_and_never_widens_them(org, admin_user, client):
    client.force_login(admin_user)
    page = client.get("/clusters/?team=payments").content.decode()
    assert "pay-prod" in page and "pay-dev" in page and "shop-prod" not in page
    assert 'id="team-select"' in page
    overview = client.get("/?team=shop")
    assert overview.context["totals"]["clusters"] == 1
    rollouts = client.get("/rollouts/?team=shop")
    assert rollouts.status_code == 200
    api = api_client_for(org["users"]["pay_viewer"])
    assert api.get("/api/v1/clusters/?team=payments").json()["count"] == 2
    assert api.get("/api/v1/clusters/?team=shop").json()["count"] == 0  # another team's: nothing, not more
    assert api.get("/api/v1/workloads/?team=payments").json()["count"] == 2
    schema = client.get("/api/schema/?format=json").json()
    params = {p["name"] for p in schema["paths"]["/api/v1/clusters/"]["get"]["parameters"]}
    assert "team" in params


def test_teams_api_shows_own_teams_with_their_visible_clusters(org, api_as, admin_user):
    mine = api_as(org["users"]["pay_operator"]).get("/api/v1/teams/").json()
    assert [t["name"] for t in mine["results"]] == ["payments"]
    assert mine["results"][0]["clusters"] == ["pay-dev", "pay-prod"]
    assert {"user": "pay-operator", "role": "operator", "source": "manual"} in mine["results"][0]["members"]
    shop = org["teams"]["shop"]
    assert api_as(org["users"]["pay_operator"]).get(f"/api/v1/teams/{shop.pk}/").status_code == 404
    assert api_as(org["users"]["pay_operator"]).post("/api/v1/teams/", {"name": "x"}).status_code == 405
    assert len(api_as(admin_user).get("/api/v1/teams/").json()["results"]) == 2


def test_team_pages_for_admins_and_members(org, admin_user, client):
    client.force_login(org["users"]["pay_viewer"])
    listing = client.get("/teams/").content.decode()
    assert "payments" in listing and "shop" not in listing
    assert client.get("/teams/shop/").status_code == 404
    detail = client.get("/teams/payments/").content.decode()
    assert "pay-prod" in detail and "pay-app" in detail and "shop-prod" not in detail
    assert client.post("/teams/payments/members/", {"username": "shop-viewer", "role": "approver"}).status_code == 403
    client.force_login(admin_user)
    assert client.post("/teams/new/", {"name": "Bad Name", "selector": "owner=x"}).status_code == 400
    assert client.post("/teams/new/", {"name": "ops", "selector": "environment in (prod"}).status_code == 400
    assert client.post("/teams/new/", {"name": "ops", "selector": "environment=prod"}).status_code == 302
    preview = client.post("/teams/preview/", {"selector": "environment=prod"}).content.decode()
    assert "pay-prod" in preview and "shop-prod" in preview and "pay-dev" not in preview
    assert client.post("/teams/ops/members/", {"username": "shop-viewer", "role": "approver"}).status_code == 302
    assert Team.objects.get(name="ops").members.filter(user__username="shop-viewer", role="approver").exists()
    assert AuditEvent.objects.filter(action="team.member_add", after__user="shop-viewer").exists()
    response = client.post("/teams/payments/delete/")
    assert response.status_code == 302 and Team.objects.filter(name="payments").exists()  # owns pay-app: kept


def test_sign_on_mapping_page_is_admin_only(org, admin_user, client):
    client.force_login(org["users"]["pay_operator"])
    assert client.get("/teams/sign-on/").status_code == 403
    client.force_login(admin_user)
    assert client.post("/teams/sign-on/", {"claim_value": "payments-sre", "team": org["teams"]["payments"].pk,
                                           "role": "admin"}).status_code == 400  # admin is no team role
    assert client.post("/teams/sign-on/", {"claim_value": "payments-sre", "team": org["teams"]["payments"].pk,
                                           "role": "operator"}).status_code == 302
    assert AuditEvent.objects.filter(action="sso.mapping_add", after__claim_value="payments-sre").exists()


def test_admins_create_service_accounts_on_the_tokens_page(org, admin_user, client):
    client.force_login(org["users"]["pay_operator"])
    assert client.post("/accounts/service-accounts/", {"username": "ci-deploy"}).status_code == 302
    from django.contrib.auth.models import User

    assert not User.objects.filter(username="ci-deploy").exists()  # refused: not an admin
    client.force_login(admin_user)
    client.post("/accounts/service-accounts/", {"username": "ci-deploy", "description": "pipelines"})
    bot = User.objects.get(username="ci-deploy")
    assert hasattr(bot, "service_account") and not bot.has_usable_password()
    response = client.post("/accounts/tokens/", {"name": "deploy", "days": 30, "owner": bot.pk, "once": "f1"})
    assert response.status_code == 200 and ApiToken.objects.filter(user=bot, name="deploy").exists()
    assert AuditEvent.objects.filter(action="service_account.create", after__username="ci-deploy").exists()


def test_scopes_of_many_teams_match_each_teams_own_clusters(org, admin_user):
    from inventory.people.access import scopes_of

    edge = make_cluster("edge-1", owner="nobody")
    static = inventory_services.create_group(name="edge", user=admin_user, static_members=[edge])
    prod = inventory_services.create_group(name="prod-all", selector="environment=prod", user=admin_user)
    team_services.save_team(user=admin_user, name="mixed", groups=[static, prod], selector="name=pay-dev")
    teams = Team.objects.filter(name__in=["payments", "shop", "mixed"])
    scopes = scopes_of(teams)
    names = {t.name: set(Cluster.objects.filter(pk__in=scopes[t.pk]).values_list("name", flat=True)) for t in teams}
    assert names == {"payments": {"pay-prod", "pay-dev"}, "shop": {"shop-prod"},
                     "mixed": {"edge-1", "pay-prod", "shop-prod", "pay-dev"}}
    for team in teams:  # the same answer as one team at a time, and as the team's own queryset
        assert scopes_of(Team.objects.filter(pk=team.pk))[team.pk] == scopes[team.pk]
        assert set(team.clusters().values_list("pk", flat=True)) == scopes[team.pk]


def test_a_team_members_clusters_are_read_through_the_scopes_own_condition(org, admin_user):
    """A query over clusters filters the cluster table by the scope's condition itself: the table is read once
    (no `pk IN (SELECT ... FROM inventory_cluster ...)` joined against a scan of every cluster), and the rows are
    exactly the scope's, with a static member of a team's group and no duplicates."""
    from governance import compliance
    from inventory.people.access import access_of

    shop_prod = Cluster.objects.get(name="shop-prod")
    static = inventory_services.create_group(name="borrowed", user=admin_user, static_members=[shop_prod])
    also = inventory_services.create_group(name="prod-all", selector="environment=prod", user=admin_user,
                                           static_members=[shop_prod])
    team_services.save_team(user=admin_user, name="payments", selector="owner=payments", groups=[static, also],
                            team=org["teams"]["payments"])
    member = org["users"]["pay_viewer"]
    clusters = Cluster.objects.visible_to(member)
    assert str(clusters.query).count('FROM "inventory_cluster"') == 1
    names = list(clusters.order_by("name").values_list("name", flat=True))
    assert names == ["pay-dev", "pay-prod", "shop-prod"]  # each once, though shop-prod is reached three ways
    groups = list(ClusterGroup.objects.visible_to(member))
    access = access_of(member)
    with CaptureQueriesContext(connection) as ctx:
        scores = compliance.group_scores(groups, user=member)
    assert not any(f'AS "g{also.pk}"' in q["sql"] for q in ctx.captured_queries)  # counted once: for which groups
    in_python = {g.pk: sum(1 for c in Cluster.objects.filter(pk__in=access.cluster_ids) if g.contains(c))
                 for g in groups}
    assert {g.pk: scores[g.pk]["clusters"] for g in groups} == in_python
    assert in_python[also.pk] == 2 and in_python[static.pk] == 1


def test_a_team_member_sees_the_groups_its_scope_reaches(org, admin_user):
    """Groups a team names, groups with a static member in reach and groups whose selector matches a cluster in
    reach (by field or by label); not groups whose clusters all lie outside. Two queries once the scope is known:
    all groups, and one count of each group's members in the scope (the teams' own groups came with the scope)."""
    from inventory.people.access import access_of

    pay_prod = Cluster.objects.get(name="pay-prod")
    pay_prod.labels = {"example.com/tier": "gold"}
    pay_prod.save(update_fields=["labels"])
    create = inventory_services.create_group
    named = create(name="named-empty", user=admin_user)  # named by the team, no members at all
    payments = org["teams"]["payments"]
    team_services.save_team(user=admin_user, name="payments", selector="owner=payments", groups=[named],
                            team=payments)
    expected = {
        create(name="static-in", user=admin_user, static_members=[pay_prod]).pk,
        create(name="field-in", selector="environment=dev", user=admin_user).pk,  # pay-dev
        create(name="label-in", selector="example.com/tier=gold", user=admin_user).pk,
        named.pk,
    }
    create(name="static-out", user=admin_user, static_members=[Cluster.objects.get(name="shop-prod")])
    create(name="field-out", selector="owner=shop", user=admin_user)
    create(name="label-out", selector="example.com/tier=silver", user=admin_user)
    access = access_of(org["users"]["pay_viewer"])
    assert access.cluster_ids  # the scope is computed first
    with CaptureQueriesContext(connection) as ctx:
        groups = access.group_ids
    assert groups == expected and len(ctx.captured_queries) == 2
    in_python = {g.pk for g in ClusterGroup.objects.all()
                 if g.pk == named.pk or any(g.contains(c) for c in Cluster.objects.filter(pk__in=access.cluster_ids))}
    assert in_python == groups
    seen = set(ClusterGroup.objects.visible_to(org["users"]["pay_viewer"]).values_list("name", flat=True))
    assert seen == {"named-empty", "static-in", "field-in", "label-in"}


def test_the_upgrade_plan_partial_costs_a_team_member_only_its_scope(org):
    """The HTMX refresh of the plan does not compute the group choices only the full page shows: a team member
    pays the queries of its scope over a global viewer's, as on the cluster table, and no more."""
    def queries(who: str, url: str) -> int:
        client = Client()
        client.force_login(org["users"][who])
        client.get(url, HTTP_HX_REQUEST="true")  # the session and the like, once
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200
        return len(ctx.captured_queries)

    scope = queries("pay_viewer", "/clusters/?q=pay") - queries("viewer", "/clusters/?q=pay")
    plan = "/upgrades/?environment=prod&verdict=blocked"
    assert scope > 0 and queries("pay_viewer", plan) - queries("viewer", plan) == scope


# What the fleet benchmark loads (issue 31), as a team member: every page, partial and API of the fleet.
FLEET_DOORS = [
    ("/", {}), ("/", {"HTTP_HX_REQUEST": "true"}), ("/clusters/?environment=prod&q=pay", {}),
    ("/clusters/?q=pay&environment=prod", {"HTTP_HX_REQUEST": "true"}), ("/compliance/", {}), ("/upgrades/", {}),
    ("/upgrades/?environment=prod&verdict=blocked", {"HTTP_HX_REQUEST": "true"}),
    ("/api/v1/clusters/?page_size=100", {}), ("/api/v1/nodes/?page_size=100", {}),
    ("/api/v1/workloads/?page_size=100", {}), ("/api/v1/violations/?page_size=100", {}),
    ("/api/v1/compliance/clusters/?page_size=100", {}), ("/api/v1/upgrade-plan/?page_size=100", {}),
]


def _fleet_queries(user) -> dict[str, list[str]]:
    from django.test import Client

    client = Client()
    client.force_login(user)
    api = api_client_for(user)
    api.get("/api/v1/clusters/")  # the token's first use writes its last-used time
    seen = {}
    for url, headers in FLEET_DOORS:
        with CaptureQueriesContext(connection) as ctx:
            response = (api if url.startswith("/api/") else client).get(url, **headers)
        assert response.status_code == 200, url
        seen[f"{url} {headers}"] = [q["sql"] for q in ctx.captured_queries]
    return seen


def test_a_team_member_with_a_thousand_clusters_in_scope_costs_what_one_with_two_does(org, admin_user):
    """The team member's guard of issue 31: the same number of queries with 2 clusters in scope as with 1,002 (of
    1,003 and more), and no statement that grows with the scope: the scope is decided by the database in each
    query, never sent as a list of ids."""
    from governance import evaluation
    from inventory.models import Cluster, ClusterCredential

    user = org["users"]["pay_viewer"]
    evaluation.evaluate_clusters(list(Cluster.objects.all()))
    few = _fleet_queries(user)
    made = Cluster.objects.bulk_create([
        Cluster(name=f"pay-bulk-{i:04d}", environment=["dev", "staging", "prod"][i % 3], owner="payments",
                region="eu-west-1", server=f"https://10.1.{i // 250}.{i % 250}:6443", auth_method="token",
                kubernetes_version="v1.35.4", status="connected") for i in range(1000)])
    ClusterCredential.objects.bulk_create([ClusterCredential(cluster=c, ciphertext=ClusterCredential.seal(
        {"method": "token", "server": c.server, "ca_data": "", "token": "unused"})) for c in made[:1]])
    for i in range(20):
        make_cluster(f"other-{i}", owner="elsewhere")
    evaluation.evaluate_clusters(list(Cluster.objects.all()))
    many = _fleet_queries(user)
    longest_few = max(len(sql) for queries in few.values() for sql in queries)
    for door, queries in many.items():
        assert len(queries) == len(few[door]), "\n".join(
            [f"{door}: {len(few[door])} queries with 2 clusters, {len(queries)}", *[q[:120] for q in few[door]], "--",
             *[q[:120] for q in queries]])
        for sql in queries:
            assert len(sql) <= longest_few + 2000, f"{door}: a statement grew with the scope: {sql[:300]}"
