"""Rollout plans by page and API (create, edit, delete, each audited, refused to viewers with nothing changed),
and the rollout pages' query counts and HTMX partials."""

from __future__ import annotations

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.models import AuditEvent
from inventory import services as inventory_services
from rollouts import plans, services
from rollouts.choices import RolloutState
from rollouts.models import Application, Rollout, RolloutPlan
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db

STAGES = [{"name": "canary", "selector": "environment=dev"}, {"name": "production", "selector": "environment=prod"}]
MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


def test_plan_create_edit_delete_by_page_each_audited(client, operator):
    client.force_login(operator)
    created = client.post("/rollouts/plans/new/", {"name": "two-rings", "description": "dev then prod",
                                                   "stages": yaml.safe_dump(STAGES)})
    assert created.status_code == 302
    plan = RolloutPlan.objects.get(name="two-rings")
    assert [s["name"] for s in plan.stages] == ["canary", "production"]
    listing = client.get("/rollouts/plans/")
    assert "canary → production" in listing.content.decode()
    assert b"/rollouts/plans/two-rings/edit/" in listing.content

    form = client.get("/rollouts/plans/two-rings/edit/")
    assert form.status_code == 200 and b"environment=prod" in form.content, "the stages come back as YAML"
    edited = client.post("/rollouts/plans/two-rings/edit/", {"name": "renamed", "description": "only dev",
                                                             "stages": yaml.safe_dump(STAGES[:1])})
    assert edited.status_code == 302
    plan.refresh_from_db()
    assert plan.name == "two-rings", "the name is not taken from the request"
    assert plan.description == "only dev" and [s["name"] for s in plan.stages] == ["canary"]
    update = AuditEvent.objects.get(action="plan.update")
    assert len(update.before["stages"]) == 2 and len(update.after["stages"]) == 1

    deleted = client.post("/rollouts/plans/two-rings/delete/")
    assert deleted.status_code == 302 and not RolloutPlan.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="plan.").order_by("pk")
                .values_list("action", flat=True)) == ["plan.create", "plan.update", "plan.delete"]


def test_bad_stages_on_edit_name_the_stage_and_keep_what_was_typed(client, operator):
    plans.create_plan(name="p", stages=STAGES, user=operator)
    client.force_login(operator)
    typed = "- name: canary\n  selector: environment=dev\n  max_paralel: 2\n"
    response = client.post("/rollouts/plans/p/edit/", {"description": "", "stages": typed})
    assert response.status_code == 400
    assert b"max_paralel: 2" in response.content, "what was typed is still in the box"
    shown = response.content.decode().replace("&#x27;", "'")
    assert "stage 1 'canary': unknown field 'max_paralel' (did you mean 'max_parallel'?)" in shown
    assert b"stages[0]" not in response.content, "people count stages from one"
    assert len(RolloutPlan.objects.get(name="p").stages) == 2
    assert not AuditEvent.objects.filter(action="plan.update").exists()


def test_viewer_cannot_edit_or_delete_a_plan_through_the_page(client, operator, viewer):
    plans.create_plan(name="p", stages=STAGES, user=operator)
    client.force_login(viewer)
    assert b"/rollouts/plans/p/edit/" not in client.get("/rollouts/plans/").content
    assert client.post("/rollouts/plans/p/edit/", {"description": "x", "stages": yaml.safe_dump(STAGES[:1])}
                       ).status_code == 403
    assert client.post("/rollouts/plans/p/delete/").status_code == 403
    plan = RolloutPlan.objects.get(name="p")
    assert plan.description == "" and len(plan.stages) == 2
    assert not AuditEvent.objects.filter(action__in=["plan.update", "plan.delete"]).exists()


def test_plan_create_update_delete_over_the_api_each_audited(api_as, operator, viewer):
    api = api_as(operator)
    created = api.post("/api/v1/rollout-plans/", {"name": "p", "stages": STAGES}, format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/v1/rollout-plans/{created.json()['id']}/"
    bad = api.patch(url, {"stages": [{"name": "", "selector": "x"}]}, format="json")
    assert bad.status_code == 400 and "a name is required" in bad.json()["errors"]["stages[0].name"][0]
    assert api_as(viewer).patch(url, {"description": "mine"}, format="json"
                                ).status_code == 403
    patched = api.patch(url, {"description": "two rings"}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "two rings"
    assert api_as(viewer).delete(url).status_code == 403
    assert RolloutPlan.objects.filter(name="p").exists()
    assert api.delete(url).status_code == 204
    assert list(AuditEvent.objects.filter(action__startswith="plan.").order_by("pk")
                .values_list("action", flat=True)) == ["plan.create", "plan.update", "plan.delete"]


def _rollouts(operator, count: int, clusters: int) -> None:
    for i in range(clusters):
        make_cluster(f"dev-{i}", environment="dev")
        make_cluster(f"prod-{i}", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    for _ in range(count):
        services.create_rollout(revision=app.latest_revision, user=operator, stages=STAGES)


def _queries(client, url: str, **headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code == 200
    return len(captured)


@pytest.mark.parametrize("htmx", [False, True])
def test_rollout_pages_make_as_many_queries_for_many_targets_as_for_few(client, operator, approver, htmx):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    _rollouts(operator, 1, 1)
    client.force_login(approver)

    first = Rollout.objects.get()
    few = (_queries(client, "/rollouts/", **headers), _queries(client, f"/rollouts/{first.pk}/", **headers))
    for i in range(1, 8):
        make_cluster(f"dev-x{i}", environment="dev")
        make_cluster(f"prod-x{i}", environment="prod")
    app = first.application
    for _ in range(6):
        services.create_rollout(revision=app.latest_revision, user=operator, stages=STAGES)
    last = Rollout.objects.order_by("-pk").first()
    assert last.stages.get(index=1).targets.count() == 8
    many = (_queries(client, "/rollouts/", **headers), _queries(client, f"/rollouts/{last.pk}/", **headers))
    assert many == few, f"queries grow with rollouts or targets: {few} -> {many}"


def test_htmx_requests_get_only_the_partial_and_responses_vary_on_it(client, operator, viewer):
    _rollouts(operator, 1, 1)
    client.force_login(viewer)

    rollout = Rollout.objects.get()
    for url, marker in (("/rollouts/", b"<table"), (f"/rollouts/{rollout.pk}/", b"canary")):
        full = client.get(url)
        partial = client.get(url, HTTP_HX_REQUEST="true")
        assert b"<html" in full.content and b"<html" not in partial.content
        assert marker in partial.content
        assert "HX-Request" in partial["Vary"] and "HX-Request" in full["Vary"]


@pytest.mark.parametrize(("name", "namespace", "field"), [
    ("Shop", "shop", "name"), ("shop_web", "shop", "name"), ("shop", "Demo", "namespace"),
    ("shop", "demo_ns", "namespace"), ("shop", "-demo", "namespace")])
def test_names_follow_the_kubernetes_rule_and_say_it_on_the_page_and_in_the_api(client, api_as, operator, name,
                                                                                 namespace, field):
    client.force_login(operator)
    page = client.post("/applications/new/", {"name": name, "namespace": namespace, "manifests": MANIFESTS})
    api = api_as(operator).post("/api/v1/applications/", {"name": name, "namespace": namespace,
                                                          "manifests": MANIFESTS}, format="json")
    rule = "lowercase letters, digits and &#x27;-&#x27;, starting and ending with a letter or digit"
    assert page.status_code == 400 and rule in page.content.decode()
    assert api.status_code == 400 and "starting and ending with a letter or digit" in api.json()["errors"][field][0]
    assert not Application.objects.exists()


def test_application_edit_and_delete_by_page_through_the_services(client, operator):
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    client.force_login(operator)
    assert client.post("/applications/web/edit/", {"owner": "team-shop", "description": "the shop"}).status_code == 302
    app.refresh_from_db()
    assert (app.owner, app.description) == ("team-shop", "the shop")
    assert AuditEvent.objects.get(action="application.update").after == {"owner": "team-shop",
                                                                           "description": "the shop"}
    make_cluster("dev-1")
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "dev", "selector": "name=dev-1"}])
    wrong = client.post("/applications/web/delete/", {"confirm_name": "wbe"})
    assert wrong.status_code == 400 and b"Type &#x27;web&#x27; exactly" in wrong.content
    busy = client.post("/applications/web/delete/", {"confirm_name": "web"})
    assert busy.status_code == 400 and f"Rollout #{rollout.pk} of web is still active".encode() in busy.content
    services.abort_rollout(rollout, user=operator)
    assert client.post("/applications/web/delete/", {"confirm_name": "web"}).status_code == 302
    assert not Application.objects.exists() and AuditEvent.objects.filter(action="application.delete").exists()


def test_override_set_changed_and_removed_in_the_page(client, operator, admin_user):
    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    client.force_login(operator)
    bad = client.post("/applications/web/overrides/", {"group": "prod", "image_tags": "web"})
    assert bad.status_code == 400 and b"is not container=tag" in bad.content and not app.overrides.exists()
    saved = client.post("/applications/web/overrides/", {"group": "prod", "replicas": 3, "image_tags": "web=4.2",
                                                         "labels": "tier=front"})
    assert saved.status_code == 302
    override = app.overrides.get()
    assert (override.replicas, override.image_tags, override.labels) == (3, {"web": "4.2"}, {"tier": "front"})
    form = client.get("/applications/web/overrides/?group=prod").content.decode()
    assert "web=4.2" in form and 'value="3"' in form
    assert client.post("/applications/web/overrides/", {"group": "prod"}).status_code == 302
    assert not app.overrides.exists()
    assert AuditEvent.objects.filter(action="application.override").count() == 2


@pytest.mark.parametrize("role", ["viewer", "approver"])
def test_viewer_and_approver_cannot_edit_delete_or_override_an_application(client, operator, admin_user, role,
                                                                           request):
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    user = request.getfixturevalue(role)
    client.force_login(user)
    assert client.post("/applications/web/edit/", {"owner": "mine"}).status_code == 403
    assert client.post("/applications/web/delete/", {"confirm_name": "web"}).status_code == 403
    assert client.post("/applications/web/overrides/", {"group": "prod", "replicas": 9}).status_code == 403
    with pytest.raises(services.RolloutError) as refused:
        services.set_override(app, group=group, user=user, replicas=9)
    assert refused.value.status == 403
    app.refresh_from_db()
    assert app.owner == "" and not app.overrides.exists() and Application.objects.filter(pk=app.pk).exists()
    assert not AuditEvent.objects.filter(action__in=["application.update", "application.delete",
                                                     "application.override"]).exists()


def test_the_rollout_list_and_the_api_filter_alike(client, api_as, operator):
    """One filterset (rollouts/filtersets.py) behind the page and the API: a state, "active" (what still needs
    someone), an application; a state that does not exist is an error on the API, not a silently empty list."""
    make_cluster("dev-1", environment="dev")
    web = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    api = services.create_application(name="api", namespace="api", manifests_text=MANIFESTS, user=operator)
    running = services.create_rollout(revision=web.latest_revision, user=operator, stages=STAGES[:1])
    paused = services.create_rollout(revision=api.latest_revision, user=operator, stages=STAGES[:1])
    services.pause_rollout(paused, user=operator)
    done = services.create_rollout(revision=web.latest_revision, user=operator, stages=STAGES[:1])
    Rollout.objects.filter(pk=done.pk).update(state=RolloutState.SUCCEEDED)

    def ids(query: str) -> set[int]:
        return {r["id"] for r in api_as(operator).get(f"/api/v1/rollouts/?{query}").json()["results"]}

    assert ids("state=active") == {running.pk, paused.pk}
    assert ids("state=succeeded") == {done.pk}
    assert ids("application=web") == ids("application__name=web") == {running.pk, done.pk}
    assert api_as(operator).get("/api/v1/rollouts/?state=exploded").status_code == 400
    client.force_login(operator)
    page = client.get("/rollouts/?state=active").content.decode()
    assert f"/rollouts/{running.pk}/" in page and f"/rollouts/{paused.pk}/" in page
    assert f"/rollouts/{done.pk}/" not in page
