"""The stage builder on the rollout page: stages as form rows (add, remove, reorder, limits), the live preview of
what each stage reaches with the prod rule, errors on the stage at fault; YAML and plans stay."""

from __future__ import annotations

import pytest
import yaml

from rollouts import plans, services
from rollouts.models import Rollout, RolloutPlan
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db
MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


@pytest.fixture
def app(operator):
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-1", environment="prod")
    return services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)


def builder_post(app, stages: list[dict], **extra) -> dict:
    data = {"revision": app.latest_revision.pk, "source": "builder", "stage-TOTAL_FORMS": len(stages),
            "stage-INITIAL_FORMS": 0, "stage-MIN_NUM_FORMS": 1, "stage-MAX_NUM_FORMS": 20, **extra}
    for i, stage in enumerate(stages):
        row = {"ORDER": i + 1, "group": "", "selector": "", "approvals_required": 0, "max_parallel": 1,
               "health_deadline": 300, "soak_time": 0, "failures_allowed": 0, **stage}
        data.update({f"stage-{i}-{k}": v for k, v in row.items()})
    return data


def test_the_builder_starts_a_rollout_in_the_order_given_without_the_removed_stage(client, operator, app):
    client.force_login(operator)
    response = client.post("/applications/web/rollout/", builder_post(app, [
        {"name": "production", "selector": "environment=prod", "ORDER": 3},
        {"name": "scratch", "selector": "environment=dev", "DELETE": "on"},
        {"name": "canary", "selector": "environment=dev", "ORDER": 1, "max_parallel": 2}]))
    assert response.status_code == 302, response.content.decode()[:2000]
    rollout = Rollout.objects.get()
    assert list(rollout.stages.order_by("index").values_list("name", "max_parallel", "approvals_required")) == [
        ("canary", 2, 0), ("production", 1, 1)], "order as given; prod got its approval"


def test_the_builder_sets_a_minimum_success_share_in_percent(client, operator, app):
    client.force_login(operator)
    response = client.post("/applications/web/rollout/", builder_post(app, [
        {"name": "canary", "selector": "environment=dev", "min_success_ratio": 90},
        {"name": "production", "selector": "environment=prod"}]))
    assert response.status_code == 302, response.content.decode()[:2000]
    stages = Rollout.objects.get().stages.order_by("index")
    assert [s.min_success_ratio for s in stages] == [0.9, None]


def test_add_a_stage_keeps_what_was_typed(client, operator, app):
    client.force_login(operator)
    page = client.post("/applications/web/rollout/", builder_post(app, [{"name": "canary", "selector": "x=y"}],
                                                                  builder_action="add"))
    body = page.content.decode()
    assert page.status_code == 200 and 'id="stage-row-1"' in body and 'value="x=y"' in body
    assert not Rollout.objects.exists()


@pytest.mark.parametrize(("stage", "field", "message"), [
    ({"name": "canary", "selector": "environment=staging"}, "selector", "matches no cluster"),
    ({"name": "canary", "selector": "environment in prod"}, "selector", "expected &#x27;(&#x27;"),
    ({"name": "canary", "selector": "environment=dev", "max_parallel": 0}, "max_parallel", "greater than or equal"),
    ({"name": "", "selector": "environment=dev"}, "name", "required"),
])
def test_errors_land_on_the_stage_at_fault_and_nothing_starts(client, operator, app, stage, field, message):
    client.force_login(operator)
    response = client.post("/applications/web/rollout/", builder_post(app, [stage]))
    body = response.content.decode()
    assert response.status_code == 400 and message in body, body[:3000]
    assert not Rollout.objects.exists()


def test_the_builders_stages_can_be_saved_as_a_plan(client, operator, app):
    client.force_login(operator)
    response = client.post("/applications/web/rollout/", builder_post(
        app, [{"name": "canary", "selector": "environment=dev"}], save_as_plan="dev-only"))
    assert response.status_code == 302
    assert RolloutPlan.objects.get(name="dev-only").stages[0]["name"] == "canary"
    assert Rollout.objects.get().plan_name == "dev-only"


def test_yaml_and_plans_still_work(client, operator, app):
    client.force_login(operator)
    yaml_stages = "- name: canary\n  selector: environment=dev\n"
    assert client.post("/applications/web/rollout/", {"revision": app.latest_revision.pk, "source": "yaml",
                                                      "stages": yaml_stages, "stage-TOTAL_FORMS": 0,
                                                      "stage-INITIAL_FORMS": 0}).status_code == 302
    plans.create_plan(name="p", stages=[{"name": "all", "selector": "environment in (dev,prod)"}], user=operator)
    plan = RolloutPlan.objects.get(name="p")
    Rollout.objects.all().update(state="succeeded")
    assert client.post("/applications/web/rollout/", {"revision": app.latest_revision.pk, "source": "plan",
                                                      "plan": plan.pk, "stage-TOTAL_FORMS": 0,
                                                      "stage-INITIAL_FORMS": 0}).status_code == 302


def test_the_preview_says_what_a_stage_reaches_and_when_the_prod_rule_applies(client, viewer, app):
    client.force_login(viewer)
    prod = client.get("/rollouts/stages/preview/", {"stage-0-group": "", "stage-0-selector": "environment=prod"})
    assert 'data-cluster="prod-1"' in prod.content.decode() and "at least one approval is required" in \
        prod.content.decode()
    dev = client.get("/rollouts/stages/preview/", {"stage-1-selector": "environment=dev"}).content.decode()
    assert 'data-cluster="dev-1"' in dev and "approval" not in dev
    nothing = client.get("/rollouts/stages/preview/", {"stage-2-selector": "environment=qa"}).content.decode()
    assert "Matches no cluster" in nothing
    broken = client.get("/rollouts/stages/preview/", {"stage-2-selector": "environment in qa"}).content.decode()
    assert "expected" in broken


def test_the_prod_rule_is_seen_beyond_the_clusters_the_preview_lists(client, viewer):
    for i in range(52):
        make_cluster(f"a-{i:02d}", environment="dev", labels={"tier": "web"})
    make_cluster("z-prod", environment="prod", labels={"tier": "web"})
    client.force_login(viewer)
    body = client.get("/rollouts/stages/preview/", {"stage-0-selector": "tier=web"}).content.decode()
    assert 'data-cluster="z-prod"' not in body, "only the first 50 are listed"
    assert "<strong>53</strong> clusters" in body and "Reaches prod</strong> (z-prod)" in body


def test_the_first_rows_are_the_default_stages_that_reach_a_cluster_the_user_and_application_can(
        client, operator, admin_user):
    from inventory.models import Team
    from inventory.people import services as team_services
    from tests.builders import make_user

    make_cluster("pay-dev", environment="dev", owner="payments")
    make_cluster("pay-prod", environment="prod", owner="payments")
    make_cluster("shop-staging", environment="staging", owner="shop")
    payments = Team.objects.create(name="payments", selector="owner=payments")
    pat = make_user("pat")
    team_services.add_member(payments, member=pat, role="operator", user=admin_user)
    app = services.create_application(name="pay-web", namespace="pay-web", manifests_text=MANIFESTS, user=pat,
                                      owner_team=payments)
    client.force_login(pat)
    rows = client.get(f"/applications/{app.name}/rollout/").context["builder"].initial
    assert [r["name"] for r in rows] == ["canary", "production"], "no staging row: none of the team's is staging"
    client.force_login(operator)
    platform = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    rows = client.get(f"/applications/{platform.name}/rollout/").context["builder"].initial
    assert [r["name"] for r in rows] == ["canary", "staging", "production"]
