"""Drift of rolled-out objects: comparing what Fleetweb applied (as a dry run returns it) with the live object, who
changed a field (managedFields), each object's and each deployment's state, the schedule, the alert condition,
and who may check or Re-apply (attack tests: each refusal leaves nothing changed and nothing queued)."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from django.utils import timezone

from foundation.models import AuditEvent
from inventory import port
from inventory.choices import ClusterStatus
from inventory.models import Cluster
from inventory.people import services as team_services
from notifications.events import conditions
from notifications.models import AlertRule
from rollouts import corrections, drift, manifests, rendering, services
from rollouts.choices import DriftState
from rollouts.models import Deployed, Drift
from tests.builders import make_cluster, make_user
from tests.fakemember import FakeMember, FakeMembers, put
from tests.rollouts.fakes import web

pytestmark = pytest.mark.django_db

APPLIED = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "web", "labels": {"fleetweb.io/application": "web"}},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "web", "image": "registry.example.com/web:1.0", "env": [{"name": "LEVEL", "value": "info"}]}]}}},
}


def _live(**changes) -> dict:
    live = copy.deepcopy(APPLIED)
    live["metadata"].update(uid="u1", resourceVersion="9", generation=3, managedFields=[
        {"manager": "fleetweb", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {"f:replicas": {}}}},
    ])
    live["status"] = {"replicas": 2}
    for path, value in changes.items():
        node = live
        *parents, last = path.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return live


def test_an_untouched_object_is_in_sync():
    assert drift.compare(APPLIED, APPLIED, _live()) == []


def test_a_field_taken_over_by_another_manager_is_drifted_and_names_it():
    live = _live(**{"spec.replicas": 5})
    live["metadata"]["managedFields"].append({"manager": "kubectl-scale", "operation": "Update",
                                              "subresource": "scale", "time": "2026-12-01T10:00:00Z",
                                              "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    [field] = drift.compare(APPLIED, APPLIED, live)
    assert field == {"path": "spec.replicas", "applied": "2", "live": "5",
                     "managers": [{"manager": "kubectl-scale", "operation": "Update", "time": "2026-12-01T10:00:00Z"}]}


def test_list_items_are_matched_by_name_and_removed_fields_say_so():
    live = _live()
    container = live["spec"]["template"]["spec"]["containers"][0]
    container["env"][0]["value"] = "debug"
    del live["metadata"]["labels"]["fleetweb.io/application"]
    live["metadata"]["managedFields"].append({"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {
        "f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {"f:env": {
            'k:{"name":"LEVEL"}': {"f:value": {}}}}}}}}}})
    fields = {f["path"]: f for f in drift.compare(APPLIED, APPLIED, live)}
    assert set(fields) == {"metadata.labels.fleetweb.io/application",
                           "spec.template.spec.containers[web].env[LEVEL].value"}
    env = fields["spec.template.spec.containers[web].env[LEVEL].value"]
    assert (env["applied"], env["live"], [m["manager"] for m in env["managers"]]) == ("info", "debug",
                                                                                       ["kubectl-edit"])
    label = fields["metadata.labels.fleetweb.io/application"]
    assert label["live"] is None and label["managers"] == []


def test_the_dry_run_decides_what_applying_leaves_not_the_manifest_text():
    # The server normalizes 0.5 CPU to 500m: the dry run says so, and the live object agrees: not drift.
    applied = {**copy.deepcopy(APPLIED), "spec": {"template": {"spec": {"containers": [
        {"name": "web", "resources": {"requests": {"cpu": "0.5"}}}]}}}}
    normalized = copy.deepcopy(applied)
    normalized["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    assert drift.compare(applied, normalized, copy.deepcopy(normalized)) == []


def _member(live: dict[tuple[str, str], dict], *, refuse_dry_run: str = "") -> drift.Session:
    """A member as a drift check sees it, through the member port's fake adapter (tests/e2e/test_drift.py runs the
    same checks against a real kube-apiserver)."""
    world = FakeMembers()
    for (kind, name), obj in live.items():
        path = manifests.path_of(obj)
        assert obj["kind"] == kind and obj["metadata"]["name"] == name
        put(world, "c", path, obj)
    if refuse_dry_run:
        world.refuse_apply["c"] = port.KubeError("http", refuse_dry_run, http_status=422)
    session = drift.Session(FakeMember(world, "c"))
    session.world = world  # type: ignore[attr-defined]
    return session


def _calls(session: drift.Session) -> list[str]:
    return [f"{verb} {path}" for _cluster, verb, path in session.world.calls]  # type: ignore[attr-defined]


CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "settings", "namespace": "web", "labels": {"fleetweb.io/application": "web"}},
             "data": {"level": "info"}}


def test_examine_costs_one_list_per_kind_and_one_dry_run_per_object():
    member = _member({("Deployment", "web"): _live(), ("ConfigMap", "settings"): copy.deepcopy(CONFIGMAP)})
    rows = drift.examine(member, [APPLIED, CONFIGMAP], "web")
    assert [r["state"] for r in rows] == [DriftState.IN_SYNC, DriftState.IN_SYNC]
    assert sorted(_calls(member)) == ["dry-run /api/v1/namespaces/web/configmaps/settings",
                                      "dry-run /apis/apps/v1/namespaces/web/deployments/web",
                                      "get /api/v1/namespaces/web/configmaps",
                                      "get /apis/apps/v1/namespaces/web/deployments"]
    assert member.calls == 4
    assert drift.overall(rows) == DriftState.IN_SYNC


def test_a_deleted_object_is_missing_and_a_refused_dry_run_unknown():
    member = _member({("Deployment", "web"): _live()})
    rows = drift.examine(member, [APPLIED, CONFIGMAP], "web")
    assert [r["state"] for r in rows] == [DriftState.IN_SYNC, DriftState.MISSING]
    assert "get /api/v1/namespaces/web/configmaps/settings" in _calls(member)  # asked by name before "missing"
    assert drift.overall(rows) == DriftState.MISSING
    refused = drift.examine(_member({("Deployment", "web"): _live()}, refuse_dry_run="HTTP 422: denied"),
                            [APPLIED], "web")
    assert refused[0]["state"] == DriftState.UNKNOWN and refused[0]["error"] == "HTTP 422: denied"


# --- deployments, the schedule, the alert ----------------------------------------------------------


@pytest.fixture
def deployed(admin_user):
    cluster = make_cluster("a-1")
    app = services.create_application(name="web", namespace="web", manifests_text=web("1.0"), user=admin_user)
    objects = rendering.render_for(app, app.latest_revision, cluster)
    return drift.record_deployed(app, cluster, app.latest_revision, objects, timezone.now())


def _store(deployed, state_rows, *, error=""):
    return corrections._store(deployed, state_rows, error, calls=2, ms=5, now=timezone.now())


DRIFTED_ROW = {"kind": "Deployment", "name": "web", "state": DriftState.DRIFTED, "error": "",
               "fields": [{"path": "spec.replicas", "applied": "2", "live": "5",
                           "managers": [{"manager": "kubectl-scale", "operation": "Update", "time": ""}]}]}


def test_a_deployment_is_first_checked_one_interval_later_and_then_every_interval(deployed, settings):
    row = Drift.objects.get(deployed=deployed)
    assert row.state == DriftState.UNCHECKED and row.next_check_at > timezone.now()
    assert corrections.claim_due() == []
    later = timezone.now() + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL + 1)
    assert corrections.claim_due(now=later) == [deployed.pk]
    assert corrections.claim_due(now=later) == [], "claimed once per interval"
    Cluster.objects.filter(pk=deployed.cluster_id).update(status=ClusterStatus.UNREACHABLE)
    assert corrections.claim_due(now=later + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL + 1)) == []


def test_a_deployment_without_a_drift_row_gets_one(admin_user):
    cluster = make_cluster("a-1")
    app = services.create_application(name="web", namespace="web", manifests_text=web("1.0"), user=admin_user)
    old = Deployed.objects.create(application=app, cluster=cluster, revision=app.latest_revision,
                                  at=timezone.now())  # deployed before drift checks existed
    assert corrections.claim_due() == [old.pk]
    with pytest.raises(services.RolloutError) as refused:  # nothing frozen to re-apply: only a rollout may
        corrections.request_reapply(old, user=admin_user)
    assert refused.value.status == 409 and "roll it out again" in str(refused.value.message)
    assert not AuditEvent.objects.filter(action="application.reapply").exists()


def test_transitions_are_on_the_clusters_history_and_raise_the_alert_condition(deployed):
    from inventory.models import ClusterEvent

    _store(deployed, [DRIFTED_ROW])
    summary = ClusterEvent.objects.filter(cluster=deployed.cluster).latest("at").summary
    assert summary == "web revision 1 drifted: Deployment web: spec.replicas (by kubectl-scale)"
    rule = AlertRule(name="r", events=["application.drifted"], environments=[])
    found, _ = conditions()["application.drifted"](rule, None, timezone.now())
    [finding] = found.values()
    assert finding.subject == "web on a-1" and finding.state == "drifted"
    assert "spec.replicas" in finding.text and "kubectl-scale" in finding.text
    assert conditions()["application.drifted"](rule, frozenset(), timezone.now())[0] == {}, "a team sees its own only"
    _store(deployed, [{**DRIFTED_ROW, "state": DriftState.IN_SYNC, "fields": []}])
    assert ClusterEvent.objects.filter(cluster=deployed.cluster).latest("at").summary == "web revision 1 back in sync"
    assert conditions()["application.drifted"](rule, None, timezone.now())[0] == {}


def test_a_check_made_against_an_older_revision_is_void(deployed, admin_user):
    revision = services.create_revision(deployed.application, manifests_text=web("2.0"), user=admin_user)
    stale = Deployed.objects.get(pk=deployed.pk)
    drift.record_deployed(deployed.application, deployed.cluster, revision, [], timezone.now())
    _store(stale, [DRIFTED_ROW])  # the check began before revision 2 was deployed
    assert Drift.objects.get(deployed=deployed).state == DriftState.UNCHECKED


def test_auto_correct_requests_a_reapply_as_the_system(deployed):
    deployed.application.correct_drift = True
    deployed.application.save()
    _store(deployed, [DRIFTED_ROW])
    event = AuditEvent.objects.get(action="application.reapply")
    assert event.actor is None and event.message == "auto-correct"
    assert Drift.objects.get(deployed=deployed).correcting_since is not None
    _store(deployed, [DRIFTED_ROW])  # the next check before the re-apply ran: not queued twice
    assert AuditEvent.objects.filter(action="application.reapply").count() == 1


# --- who may check and Re-apply ---------------------------------------------------------------------


@pytest.fixture
def team_app(admin_user):
    pay = make_cluster("pay-dev", owner="payments")
    make_cluster("shop-dev", owner="shop")
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    users = {}
    for team, prefix in ((payments, "pay"), (shop, "shop")):
        for role in ("viewer", "operator"):
            users[f"{prefix}_{role}"] = member = make_user(f"{prefix}-{role}")
            team_services.add_member(team, member=member, role=role, user=admin_user)
    app = services.create_application(name="pay-web", namespace="pay-web", manifests_text=web("1.0"),
                                      user=admin_user, owner_team=payments)
    objects = rendering.render_for(app, app.latest_revision, pay)
    deployed = drift.record_deployed(app, pay, app.latest_revision, objects, timezone.now())
    _store(deployed, [DRIFTED_ROW])
    return deployed, users


def _unchanged(deployed, events: int) -> None:
    assert AuditEvent.objects.filter(action="application.reapply").count() == events
    assert Drift.objects.get(deployed=deployed).correcting_since is None


# who -> the answer: no operator role anywhere is 403 before anything is looked up; another team's operator
# finds nothing there (404, as for every object outside one's scope).
REAPPLY_REFUSED = {"pay_viewer": 403, "shop_viewer": 403, "shop_operator": 404}


@pytest.mark.parametrize("who", sorted(REAPPLY_REFUSED))
def test_operator_cannot_reapply_what_is_not_theirs_to_change(team_app, who, api_as, client):
    deployed, users = team_app
    user = users[who]
    response = api_as(user).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert response.status_code == REAPPLY_REFUSED[who]
    client.force_login(user)
    page = client.post("/applications/pay-web/drift/pay-dev/reapply/")
    assert page.status_code == REAPPLY_REFUSED[who]
    with pytest.raises(services.RolloutError):
        corrections.request_reapply(deployed, user=user)
    _unchanged(deployed, 0)


def test_a_global_viewer_cannot_reapply_or_check(team_app, viewer, api_as):
    deployed, _ = team_app
    api = api_as(viewer)
    assert api.get(f"/api/v1/drift/{deployed.pk}/").json()["state"] == DriftState.DRIFTED
    assert api.post(f"/api/v1/drift/{deployed.pk}/reapply/").status_code == 403
    assert api.post(f"/api/v1/drift/{deployed.pk}/check/").status_code == 403
    _unchanged(deployed, 0)


def test_the_owner_teams_operator_reapplies_and_it_is_on_the_record(team_app, api_as):
    deployed, users = team_app
    response = api_as(users["pay_operator"]).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert response.status_code == 202 and response.json()["correcting"] is True
    event = AuditEvent.objects.get(action="application.reapply")
    assert event.actor_name == "pay-operator" and event.message == "api"
    assert event.after == {"cluster": "pay-dev", "revision": 1, "drift": "drifted",
                           "fields": ["Deployment web: spec.replicas"]}
    again = api_as(users["pay_operator"]).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert again.status_code == 409 and "already queued" in again.json()["detail"]


def test_operator_cannot_reapply_while_a_rollout_reaches_the_cluster(team_app, api_as, admin_user):
    deployed, users = team_app
    services.create_rollout(revision=deployed.application.latest_revision, user=admin_user,
                            stages=[{"name": "dev", "selector": "name=pay-dev"}])
    response = api_as(users["pay_operator"]).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert response.status_code == 409 and "is in progress on pay-dev" in response.json()["detail"]
    _unchanged(deployed, 0)
    assert corrections.check(deployed.pk) is None, "no check while a rollout of it reaches the cluster"


def test_operator_cannot_reapply_to_a_cluster_that_left_the_teams_scope(team_app, api_as, admin_user):
    deployed, users = team_app
    Cluster.objects.filter(name="pay-dev").update(owner="elsewhere")
    response = api_as(users["pay_operator"]).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert response.status_code == 404  # out of scope: not even visible any more
    with pytest.raises(services.RolloutError) as refused:
        corrections.request_reapply(Deployed.objects.get(pk=deployed.pk), user=users["pay_operator"])
    assert refused.value.status == 403
    _unchanged(deployed, 0)


def test_the_api_and_pages_list_only_what_the_user_may_see(team_app, api_as, client):
    deployed, users = team_app
    assert api_as(users["shop_viewer"]).get("/api/v1/drift/").json()["count"] == 0
    assert api_as(users["pay_viewer"]).get("/api/v1/drift/?state=drifted").json()["count"] == 1
    client.force_login(users["pay_viewer"])
    html = client.get("/applications/pay-web/").content.decode()
    assert 'data-drift="drifted"' in html and "spec.replicas: 2 → 5" in html and "by kubectl-scale" in html
    assert "data-reapply" not in html, "a viewer gets no Re-apply button"
    tab = client.get("/clusters/pay-dev/?tab=applications", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    assert 'data-application="pay-web"' in tab.content.decode()
    client.force_login(users["pay_operator"])
    assert "data-reapply" in client.get("/applications/pay-web/").content.decode()



def test_a_team_member_is_told_that_other_applications_run_on_their_cluster_without_their_names(
        team_app, admin_user, client):
    deployed, users = team_app
    pay = deployed.cluster
    platform = services.create_application(name="mesh-agent", namespace="mesh", manifests_text=web("2.0"),
                                           user=admin_user)
    drift.record_deployed(platform, pay, platform.latest_revision,
                          rendering.render_for(platform, platform.latest_revision, pay), timezone.now())
    client.force_login(users["pay_viewer"])
    tab = client.get("/clusters/pay-dev/?tab=applications", HTTP_HX_REQUEST="true",
                     HTTP_HX_TARGET="tab-content").content.decode()
    assert 'data-application="pay-web"' in tab and "mesh-agent" not in tab
    assert "1 application of another team or of the platform also runs here" in tab
    deployed.delete()  # only the platform's application left: not "Nothing deployed here"
    tab = client.get("/clusters/pay-dev/?tab=applications", HTTP_HX_REQUEST="true",
                     HTTP_HX_TARGET="tab-content").content.decode()
    assert "No application of yours runs here." in tab and "Nothing deployed" not in tab and "mesh-agent" not in tab


def test_a_check_that_cannot_reach_the_cluster_keeps_the_last_known_state(deployed):
    _store(deployed, [DRIFTED_ROW])
    _store(deployed, [], error="connection refused by 127.0.0.1:1 (API server down or wrong port?)")
    row = Drift.objects.get(deployed=deployed)
    assert row.state == DriftState.DRIFTED and row.error.startswith("connection refused")
    assert row.objects_state == [DRIFTED_ROW], "what was last seen stays shown"
    rule = AlertRule(name="r", events=["application.drifted"], environments=[])
    assert conditions()["application.drifted"](rule, None, timezone.now())[0], "no false recovery"


# --- fields an application leaves to others (drift_ignore) -------------------------------------------


def test_ignore_rules_parse_kind_name_and_path_and_name_every_bad_line():
    rules = drift.parse_ignore("Deployment spec.replicas\n\n# an autoscaler owns these\n"
                               "Deployment/web spec.template.spec.containers[web].resources  # VPA\n"
                               "metadata.annotations\nDeployment spec.replicas\n")
    assert [str(r) for r in rules] == ["Deployment spec.replicas",
                                       "Deployment/web spec.template.spec.containers[web].resources",
                                       "* metadata.annotations"], "normalized, comments dropped, once each"
    with pytest.raises(ValueError) as bad:
        drift.parse_ignore(["Deployment spec.replicas", "deployment spec.replicas", "a b c", "Deployment spec..x[",
                            "metadata.labels", "Deployment metadata.name", "* kind"])
    message = str(bad.value)
    for line in (2, 3, 4):
        assert f"line {line}: " in message and "is not '[Kind[/name]] path'" in message
    assert "line 1" not in message
    assert "line 5: metadata.labels covers metadata.labels.fleetweb.io/application" in message
    assert "line 6: metadata.name covers metadata.name" in message and "line 7: kind covers kind" in message
    with pytest.raises(ValueError, match="at most 50 rules"):
        drift.parse_ignore([f"Deployment spec.f{i}" for i in range(51)])
    with pytest.raises(ValueError, match="a list of lines"):
        drift.parse_ignore({"spec": "replicas"})


def test_a_rule_covers_its_field_and_everything_under_it_of_the_kind_and_name_it_names():
    [any_kind, one, resources] = drift.parse_ignore(["spec.replicas", "ConfigMap/settings data",
                                                     "Deployment spec.template.spec.containers[web].resources"])
    assert any_kind.covers("Deployment", "web", "spec.replicas") and any_kind.covers("StatefulSet", "db",
                                                                                     "spec.replicas")
    assert not any_kind.covers("Deployment", "web", "spec.replicasX"), "a prefix of a name is not the field"
    assert one.covers("ConfigMap", "settings", "data.level") and not one.covers("ConfigMap", "other", "data.level")
    assert resources.covers("Deployment", "web", "spec.template.spec.containers[web].resources.requests.cpu")
    assert not resources.covers("Deployment", "web", "spec.template.spec.containers[web].image")


def test_ignored_differences_are_shown_but_are_not_drift():
    live = _live(**{"spec.replicas": 5})
    live["metadata"]["managedFields"].append({"manager": "horizontal-pod-autoscaler", "operation": "Update",
                                              "subresource": "scale", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    member = _member({("Deployment", "web"): live})
    rules = drift.parse_ignore(["Deployment spec.replicas"])
    [row] = drift.examine(member, [APPLIED], "web", rules)
    assert row["state"] == DriftState.IN_SYNC and row["fields"] == []
    [ignored] = row["ignored"]
    assert (ignored["path"], ignored["applied"], ignored["live"]) == ("spec.replicas", "2", "5")
    assert [m["manager"] for m in ignored["managers"]] == ["horizontal-pod-autoscaler"]
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/web:hotfix"
    [row] = drift.examine(_member({("Deployment", "web"): live}), [APPLIED], "web", rules)
    assert row["state"] == DriftState.DRIFTED
    assert [f["path"] for f in row["fields"]] == ["spec.template.spec.containers[web].image"]
    assert [f["path"] for f in row["ignored"]] == ["spec.replicas"]


def test_reapply_keeps_the_live_value_of_ignored_fields_and_restores_the_rest():
    live = _live(**{"spec.replicas": 5})
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/web:hotfix"
    rules = drift.parse_ignore(["Deployment spec.replicas", "ConfigMap data"])
    applied = drift.keep_ignored(APPLIED, live, rules)
    assert applied["spec"]["replicas"] == 5
    assert applied["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/web:1.0"
    assert APPLIED["spec"]["replicas"] == 2, "the deployed objects are not changed"
    assert drift.keep_ignored(APPLIED, None, rules) is APPLIED, "an object gone is applied as deployed"
    gone = _live()
    del gone["spec"]["replicas"]
    assert drift.keep_ignored(APPLIED, gone, rules)["spec"]["replicas"] == 2, "no live value: the deployed one"


def test_the_rules_are_validated_audited_and_kept_through_every_door(deployed, admin_user, api_as, client):
    app = deployed.application
    api = api_as(admin_user)
    bad = api.patch(f"/api/v1/applications/{app.pk}/", {"drift_ignore": ["metadata"]}, format="json")
    assert bad.status_code == 400 and "covers metadata.name" in str(bad.json()["errors"]["drift_ignore"])
    ok = api.patch(f"/api/v1/applications/{app.pk}/", {"drift_ignore": ["Deployment  spec.replicas"]},
                   format="json")
    assert ok.status_code == 200 and ok.json()["drift_ignore"] == ["Deployment spec.replicas"]
    event = AuditEvent.objects.filter(action="application.update").latest("at")
    assert event.before == {"drift_ignore": []} and event.after == {"drift_ignore": ["Deployment spec.replicas"]}
    client.force_login(admin_user)
    page = client.post(f"/applications/{app.name}/edit/", {"drift_ignore": "spec.replicas\nnot a path at all"})
    assert page.status_code == 400 and "line 2: " in page.content.decode()
    app.refresh_from_db()
    assert app.drift_ignore == ["Deployment spec.replicas"], "a refused edit changes nothing"
    client.post(f"/applications/{app.name}/edit/", {"drift_ignore": "Deployment spec.replicas"})
    latest = AuditEvent.objects.filter(action="application.update").order_by("pk").last()
    assert "drift_ignore" not in latest.after, "unchanged rules are not recorded as a change"
    html = client.get(f"/applications/{app.name}/").content.decode()
    assert 'id="drift-ignore"' in html and "<code>Deployment spec.replicas</code>" in html
    created = api.post("/api/v1/applications/", {"name": "other", "namespace": "other", "manifests": web("1.0"),
                                                 "drift_ignore": ["spec.replicas"]}, format="json")
    assert created.status_code == 201 and created.json()["drift_ignore"] == ["* spec.replicas"]


@pytest.mark.parametrize("who", ["pay_viewer", "shop_operator"])
def test_operator_cannot_hide_drift_of_an_application_that_is_not_theirs(team_app, who, api_as, client):
    """Rules leave fields to others: only those who may change the application write them."""
    deployed, users = team_app
    app = deployed.application
    response = api_as(users[who]).patch(f"/api/v1/applications/{app.pk}/", {"drift_ignore": ["spec"]},
                                        format="json")
    assert response.status_code in (403, 404)
    client.force_login(users[who])
    assert client.post(f"/applications/{app.name}/edit/", {"drift_ignore": "spec"}).status_code in (403, 404)
    with pytest.raises(services.RolloutError):
        services.update_application(app, user=users[who], drift_ignore=["spec"])
    app.refresh_from_db()
    assert app.drift_ignore == [] and not AuditEvent.objects.filter(action="application.update").exists()
