"""Attacks of the second trust review (issue 25) on applications and rollouts, each of which must fail: the refusal,
and nothing changed (rows, record, what would reach a cluster)."""

from __future__ import annotations

import re

import pytest
import yaml
from django.test import Client
from django.utils import timezone

from foundation.models import AuditEvent
from inventory.models import Cluster, ClusterGroup
from inventory.services import create_group, update_cluster
from rollouts import approvals, corrections, engine, manifests, members, ownership, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Application, Deployed, NamespaceHold, Override, Revision, Rollout, Target
from tests.builders import make_cluster, make_user
from tests.fakemember import FakeMembers

pytestmark = pytest.mark.django_db


def deployment(**metadata) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", **metadata},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}


WEB = yaml.safe_dump(deployment())


@pytest.fixture
def app(operator, admin_user):
    make_cluster("dev-1")
    create_group(name="dev", selector="environment=dev", user=admin_user)
    return services.create_application(name="web", namespace="web", manifests_text=WEB, user=operator)


# -- Fleetweb's own label and annotation keys ---------------------------------------------------

@pytest.mark.parametrize(("doc", "key"), [
    (deployment(labels={"fleetweb.io/application": "payments"}), "metadata.labels.fleetweb.io/application"),
    (deployment(labels={"app.kubernetes.io/managed-by": "fleetweb"}), "metadata.labels.app.kubernetes.io/managed-by"),
    (deployment(annotations={"fleetweb.io/digest": "x"}), "metadata.annotations.fleetweb.io/digest"),
    ({**deployment(), "spec": {**deployment()["spec"], "template": {
        "metadata": {"labels": {"app": "web", "fleetweb.io/application": "payments"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}},
     "spec.template.metadata.labels.fleetweb.io/application"),
])
def test_operator_cannot_set_fleetwebs_own_keys_in_a_revision(app, operator, api_as, doc, key):
    revisions = Revision.objects.count()
    response = api_as(operator).post(f"/api/v1/applications/{app.pk}/revisions/",
                                     {"manifests": yaml.safe_dump(doc)}, format="json")
    assert response.status_code == 400, response.content
    assert key in response.content.decode()
    assert Revision.objects.count() == revisions
    assert not AuditEvent.objects.filter(action="application.revision").exists()


@pytest.mark.parametrize("label", ["fleetweb.io/application", "app.kubernetes.io/managed-by"])
def test_operator_cannot_set_fleetwebs_own_keys_in_an_override(app, operator, api_as, label):
    response = api_as(operator).put(f"/api/v1/applications/{app.pk}/overrides/dev/",
                                    {"labels": {label: "payments"}}, format="json")
    assert response.status_code == 400, response.content
    assert f"labels.{label}" in response.content.decode()
    assert not Override.objects.exists()
    assert not AuditEvent.objects.filter(action="application.override").exists()


def test_operator_cannot_create_an_application_whose_manifests_set_fleetwebs_keys(operator, api_as):
    text = yaml.safe_dump(deployment(labels={"fleetweb.io/application": "payments"}))
    response = api_as(operator).post("/api/v1/applications/", {"name": "thief", "namespace": "thief",
                                                                "manifests": text}, format="json")
    assert response.status_code == 400, response.content
    assert "fleetweb.io/application" in response.content.decode()
    assert not Application.objects.filter(name="thief").exists()


# -- overrides of the wrong type ----------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    ([1, 2], "non_field_errors"),
    ({"replicas": True}, "replicas"),
    ({"replicas": "3"}, "replicas"),
    ({"image_tags": ["web", "evil"]}, "image_tags"),
    ({"image_tags": {"web": {"tag": "evil"}}}, "image_tags.web"),
    ({"labels": "tier=gold"}, "labels"),
    ({"labels": {"tier": {"nested": "x"}}}, "labels.tier"),
])
def test_an_override_of_the_wrong_type_is_a_400_naming_the_field(app, operator, api_as, body, field):
    response = api_as(operator).put(f"/api/v1/applications/{app.pk}/overrides/dev/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"], response.json()
    assert not Override.objects.exists()
    assert ClusterGroup.objects.filter(name="dev").exists()


# -- what reaches a cluster is what somebody approved -------------------------------------------

@pytest.fixture
def applied(monkeypatch):
    """What the engine sends to clusters, (cluster, objects) per push: the members are the port's fake adapter,
    everything else is real."""
    return FakeMembers().install(monkeypatch).pushes


def _run(rollout, steps: int = 8) -> None:
    for _ in range(steps):
        engine.step_once(rollout.pk)


def _images(objects: list[dict]) -> list[str]:
    return [c["image"] for o in objects for c in o["spec"]["template"]["spec"]["containers"]]


def _web(image: str) -> str:
    doc = deployment()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
    return yaml.safe_dump(doc)


@pytest.fixture
def on_prod(operator, approver, admin_user, applied):
    """web r1 (nginx:1.27) approved and deployed on prod-1; r2 (nginx:1.28) approved and deployed over it."""
    make_cluster("prod-1", environment="prod")
    create_group(name="prod", selector="environment=prod", user=admin_user)
    app = services.create_application(name="web", namespace="web", manifests_text=_web("nginx:1.27"), user=operator)

    def roll(revision):
        rollout = services.create_rollout(revision=revision, user=operator,
                                          stages=[{"name": "production", "selector": "environment=prod"}])
        _run(rollout, 2)
        approvals.approve_stage(rollout.stages.get(), user=approver)
        _run(rollout)
        assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED
        return rollout

    roll(app.latest_revision)
    second = roll(services.create_revision(app, manifests_text=_web("nginx:1.28"), user=operator))
    applied.clear()
    return second


def test_operator_cannot_ship_an_unapproved_image_by_editing_the_override_and_rolling_back(
        on_prod, operator, applied, django_capture_on_commit_callbacks):
    """The prod override now names an image nobody approved; the rollback re-applies what prod ran and was verified
    with before (frozen), and Re-apply keeps that too."""
    app = on_prod.application
    services.set_override(app, group=ClusterGroup.objects.get(name="prod"), user=operator,
                          image_tags={"web": "evil"})
    with django_capture_on_commit_callbacks(execute=False):
        services.rollback_rollout(on_prod, user=operator)
    _run(on_prod)
    assert Rollout.objects.get(pk=on_prod.pk).state == RolloutState.ROLLED_BACK
    assert [(name, _images(objects)) for name, objects in applied] == [("prod-1", ["nginx:1.27"])]
    deployed = Deployed.objects.get(application=app)
    assert deployed.revision.number == 1 and _images(deployed.objects_applied) == ["nginx:1.27"] and deployed.approved
    applied.clear()
    corrections.reapply(deployed.pk)
    assert [_images(objects) for _name, objects in applied] == [["nginx:1.27"]]


def test_a_rollback_into_prod_with_nothing_kept_needs_an_approval(on_prod, operator, applied,
                                                                  django_capture_on_commit_callbacks):
    """Where the earlier deployment's objects were never kept, a rollback would apply the old revision rendered now:
    on a prod cluster the target is skipped, saying so, and nothing is applied."""
    Target.objects.filter(stage__rollout=on_prod).update(previous_objects=[], previous_approved=False)
    with django_capture_on_commit_callbacks(execute=False):
        services.rollback_rollout(on_prod, user=operator)
    _run(on_prod)
    target = Target.objects.get(stage__rollout=on_prod)
    assert target.state == TargetState.SKIPPED
    assert "is prod and nothing deployed there before was kept" in target.message
    assert applied == []
    assert Deployed.objects.get(application=on_prod.application).revision.number == 2


def test_a_cluster_that_became_prod_after_its_stage_was_planned_is_skipped(operator, admin_user, applied):
    make_cluster("dev-a")
    make_cluster("dev-b")
    app = services.create_application(name="web", namespace="web", manifests_text=WEB, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "dev", "selector": "environment=dev", "max_parallel": 1}])
    engine.step_once(rollout.pk)  # running
    engine.step_once(rollout.pk)  # the stage starts: no approval needed, both clusters are dev
    assert rollout.stages.get().state == StageState.APPLYING
    update_cluster(Cluster.objects.get(name="dev-b"), user=admin_user, environment="prod")
    _run(rollout)
    b = Target.objects.get(cluster__name="dev-b")
    assert b.state == TargetState.SKIPPED and "became prod after this stage was planned" in b.message
    assert [name for name, _objects in applied] == ["dev-a"]
    assert not Deployed.objects.filter(cluster__name="dev-b").exists()


def test_nothing_unapproved_is_reapplied_to_a_cluster_that_became_prod(operator, admin_user, applied,
                                                                        django_capture_on_commit_callbacks):
    make_cluster("dev-a")
    app = services.create_application(name="web", namespace="web", manifests_text=WEB, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "dev", "selector": "environment=dev"}])
    _run(rollout)
    deployed = Deployed.objects.get(application=app)
    assert not deployed.approved
    update_cluster(deployed.cluster, user=admin_user, environment="prod")
    applied.clear()
    with pytest.raises(services.RolloutError, match="is prod now and no approval covered") as err:
        corrections.request_reapply(Deployed.objects.get(pk=deployed.pk), user=operator)
    assert err.value.status == 403
    with django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(services.RolloutError, match="is prod now"):
            corrections.request_reapply(Deployed.objects.get(pk=deployed.pk), user=None)  # the automatic correction
    corrections.reapply(deployed.pk)  # a task queued before the change
    assert applied == []
    assert not AuditEvent.objects.filter(action="application.reapply").exists()


def test_a_cluster_that_left_the_owner_teams_scope_is_never_deployed(admin_user, applied):
    """The payments team's rollout targets its two dev clusters; before the second is reached, the platform hands it
    to another team (owner changed). The engine asks again before each apply: skipped, with the reason shown."""
    from inventory.people import services as team_services

    make_cluster("pay-dev-a", owner="payments")
    make_cluster("pay-dev-b", owner="payments")
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    operator = make_user("pay-operator")
    team_services.add_member(payments, member=operator, role="operator", user=admin_user)
    app = services.create_application(name="pay-web", namespace="pay-web", manifests_text=WEB, user=operator,
                                      owner_team=payments)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "dev", "selector": "owner=payments", "max_parallel": 1}])
    engine.step_once(rollout.pk)
    engine.step_once(rollout.pk)
    update_cluster(Cluster.objects.get(name="pay-dev-b"), user=admin_user, owner="shop")
    _run(rollout)
    b = Target.objects.get(cluster__name="pay-dev-b")
    assert b.state == TargetState.SKIPPED
    assert "skipped: cluster pay-dev-b is outside the scope of team payments" in b.message
    assert [name for name, _objects in applied] == ["pay-dev-a"]
    page = Client()
    page.force_login(admin_user)
    assert b"outside the scope of team payments" in page.get(f"/rollouts/{rollout.pk}/").content


# -- an application changes only what it owns: namespaces and objects ---------------------------

@pytest.fixture
def two_teams(admin_user):
    """Teams payments and shop, both reaching the shared cluster `shared-1`; an operator in each."""
    from inventory.people import services as team_services

    make_cluster("shared-1", owner="shared")
    teams, operators = {}, {}
    for name in ("payments", "shop"):
        teams[name] = team_services.save_team(user=admin_user, name=name, selector="owner=shared")
        operators[name] = make_user(f"{name}-operator")
        team_services.add_member(teams[name], member=operators[name], role="operator", user=admin_user)
    return {"teams": teams, "operators": operators, "cluster": Cluster.objects.get(name="shared-1")}


def _team_app(two_teams, team: str, namespace: str) -> Application:
    return services.create_application(name=f"{team}-web", namespace=namespace, manifests_text=WEB,
                                       user=two_teams["operators"][team], owner_team=two_teams["teams"][team])


def test_team_operator_cannot_roll_out_into_a_namespace_another_team_holds(two_teams, api_as):
    NamespaceHold.objects.create(cluster=two_teams["cluster"], name="payments", team=two_teams["teams"]["payments"],
                                 at=timezone.now())
    app = _team_app(two_teams, "shop", "payments")
    body = {"application": app.name, "revision": app.latest_revision.pk,
            "stages": [{"name": "all", "selector": "owner=shared"}]}
    response = api_as(two_teams["operators"]["shop"]).post("/api/v1/rollouts/", body, format="json")
    assert response.status_code == 403, response.content
    assert "namespace payments on shared-1 is held by team payments, not by team shop" in response.content.decode()
    assert not Rollout.objects.exists()
    assert not AuditEvent.objects.filter(action="rollout.create").exists()


@pytest.mark.parametrize("namespace", ["infra", "default"])
def test_team_operator_cannot_deploy_into_the_platforms_namespaces(two_teams, admin_user, settings, namespace):
    settings.FLEETWEB_PLATFORM_NAMESPACES = ["default", "infra"]
    app = services.create_application(name="shop-web", namespace=namespace, manifests_text=WEB, user=admin_user,
                                      owner_team=two_teams["teams"]["shop"])
    with pytest.raises(services.RolloutError, match=f"namespace {namespace} on shared-1 is held by the platform"):
        services.create_rollout(revision=app.latest_revision, user=two_teams["operators"]["shop"],
                                stages=[{"name": "all", "selector": "owner=shared"}])
    assert not Rollout.objects.exists()


def test_an_existing_namespace_no_team_created_is_the_platforms(two_teams):
    from inventory.models import Namespace

    Namespace.objects.create(cluster=two_teams["cluster"], uid="ns-1", name="legacy")
    app = _team_app(two_teams, "shop", "legacy")
    assert ownership.namespace_refusal(app, two_teams["cluster"]) == (
        "namespace legacy on shared-1 exists and is held by the platform (no team's application created it), not by "
        "team shop")
    assert ownership.namespace_refusal(app, two_teams["cluster"], exists=False) == "", "gone since: claimable"
    Deployed.objects.create(application=app, cluster=two_teams["cluster"], revision=app.latest_revision,
                            at=timezone.now())
    assert ownership.namespace_refusal(app, two_teams["cluster"]) == "", "the team already ran there: it keeps it"


def test_a_namespace_claimed_after_the_rollout_was_planned_stops_the_apply(two_teams, applied):
    app = _team_app(two_teams, "shop", "checkout")
    rollout = services.create_rollout(revision=app.latest_revision, user=two_teams["operators"]["shop"],
                                      stages=[{"name": "all", "selector": "owner=shared"}])
    NamespaceHold.objects.create(cluster=two_teams["cluster"], name="checkout", team=two_teams["teams"]["payments"],
                                 at=timezone.now())
    _run(rollout)
    target = Target.objects.get(stage__rollout=rollout)
    assert target.state == TargetState.FAILED
    assert "not applied: namespace checkout on shared-1 is held by team payments" in target.message
    assert applied == []


def test_ownership_of_an_object_is_fleetwebs_record_of_its_uid_not_its_label(two_teams):
    """A label says whose an object is only where Fleetweb recorded nothing: a recorded uid decides."""
    shop = _team_app(two_teams, "shop", "shop")
    pay = _team_app(two_teams, "payments", "payments")
    cluster = two_teams["cluster"]
    ownership.record_applied(pay, cluster, {"kind": "Deployment", "metadata": {"uid": "u-pay", "name": "web",
                                                                                "namespace": "payments"}})
    obj = {"kind": "Deployment", "metadata": {"name": "web", "labels": {"fleetweb.io/application": "shop-web"}}}
    disguised = {"metadata": {"uid": "u-pay", "labels": {"fleetweb.io/application": "shop-web"},
                              "managedFields": [{"manager": "fleetweb"}]}}
    assert members._ownership_refusal(obj, disguised, cluster, shop) == (
        "belongs to the Fleetweb application 'payments-web'")
    assert members._ownership_refusal(obj, disguised, cluster, pay) == ""
    unrecorded = {"metadata": {"uid": "u-other", "labels": {}, "managedFields": [{"manager": "kubectl"}]}}
    assert members._ownership_refusal(obj, unrecorded, cluster, shop) == "was not created by Fleetweb"


def test_an_override_stored_with_fleetwebs_keys_cannot_replace_them(two_teams):
    """Overrides saved before the keys were refused render with Fleetweb's own labels winning."""
    app = _team_app(two_teams, "shop", "shop")
    group = ClusterGroup.objects.create(name="shared", selector="owner=shared")
    override = Override.objects.create(application=app, group=group, labels={"fleetweb.io/application": "payments-web",
                                                                             "tier": "gold"}, updated_at=timezone.now())
    [rendered] = manifests.render(manifests.parse(WEB, namespace="shop").objects, application=app.name, revision=1,
                                  digest="d", override=override)
    assert rendered["metadata"]["labels"]["fleetweb.io/application"] == "shop-web"
    assert rendered["metadata"]["labels"]["tier"] == "gold"


def test_an_admin_hands_an_existing_namespace_to_a_team(two_teams, admin_user, api_as):
    from inventory.models import Namespace

    Namespace.objects.create(cluster=two_teams["cluster"], uid="ns-legacy", name="legacy")
    app = _team_app(two_teams, "shop", "legacy")
    assert "held by the platform" in ownership.namespace_refusal(app, two_teams["cluster"])
    response = api_as(admin_user).post("/api/v1/namespace-holds/", {"cluster": "shared-1", "name": "legacy",
                                                                     "team": "shop"}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["team"] == "shop"
    assert ownership.namespace_refusal(app, two_teams["cluster"]) == ""
    event = AuditEvent.objects.get(action="namespace.hold")
    assert event.actor == admin_user and event.after["team"] == "shop"
    listed = api_as(two_teams["operators"]["shop"]).get("/api/v1/namespace-holds/").json()["results"]
    assert [(h["cluster"], h["name"], h["team"]) for h in listed] == [("shared-1", "legacy", "shop")]


@pytest.mark.parametrize("who", ["team_operator", "global_operator"])
def test_operator_cannot_take_a_namespace_for_a_team(two_teams, operator, api_as, who):
    NamespaceHold.objects.create(cluster=two_teams["cluster"], name="payments", team=two_teams["teams"]["payments"],
                                 at=timezone.now())
    user = two_teams["operators"]["shop"] if who == "team_operator" else operator
    response = api_as(user).post("/api/v1/namespace-holds/", {"cluster": "shared-1", "name": "payments",
                                                               "team": "shop"}, format="json")
    assert response.status_code == 403, response.content
    assert NamespaceHold.objects.get(name="payments").team == two_teams["teams"]["payments"]
    assert not AuditEvent.objects.filter(action="namespace.hold").exists()


def test_the_platforms_namespaces_are_never_a_teams(two_teams, admin_user):
    for name in ("kube-system", "fleetweb-system", "default"):
        with pytest.raises(services.RolloutError, match="one of the platform's own namespaces"):
            services.hold_namespace(cluster=two_teams["cluster"], name=name, team=two_teams["teams"]["shop"],
                                    user=admin_user)
    assert not NamespaceHold.objects.exists()


def test_the_namespaces_tab_says_who_holds_each_namespace(two_teams, admin_user):
    from inventory.models import Namespace

    cluster = two_teams["cluster"]
    for uid, name in enumerate(("kube-system", "payments", "legacy", "old-shop")):
        Namespace.objects.create(cluster=cluster, uid=f"ns-{uid}", name=name)
    NamespaceHold.objects.create(cluster=cluster, name="payments", team=two_teams["teams"]["payments"],
                                 at=timezone.now())
    old = _team_app(two_teams, "shop", "old-shop")
    Deployed.objects.create(application=old, cluster=cluster, revision=old.latest_revision, at=timezone.now())
    page = Client()
    page.force_login(two_teams["operators"]["shop"])
    body = page.get(f"/clusters/{cluster.name}/?tab=namespaces", HTTP_HX_REQUEST="true").content.decode()
    held = dict(re.findall(r'data-namespace="([^"]+)"><td>[^<]*</td><td class="held-by">([^<]*)</td>', body))
    assert held == {"kube-system": "the platform", "payments": "team payments", "legacy": "the platform",
                    "old-shop": "team shop"}
