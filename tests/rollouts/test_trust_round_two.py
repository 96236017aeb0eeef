"""Attacks of the second trust review (issue 25) on applications and rollouts, each of which must fail: the refusal,
and nothing changed (rows, record, what would reach a cluster)."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from fleetweb.models import AuditEvent
from inventory.models import Cluster, ClusterGroup
from inventory.services import create_group, update_cluster
from rollouts import approvals, drift, engine, members, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Application, Deployed, Override, Revision, Rollout, Target
from tests.builders import make_cluster, make_user

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
    """What the engine sends to clusters: the cluster talk is replaced, everything else is real."""
    sent: list[tuple[str, list[dict]]] = []

    def push(cluster, namespace, objects, *, renew, adjust=None):
        renew()
        sent.append((cluster.name, objects))

    monkeypatch.setattr(members, "push", push)
    monkeypatch.setattr(members, "read_back", lambda cluster, objects, *, renew: [])
    return sent


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
    drift.reapply(deployed.pk)
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
        services.request_reapply(Deployed.objects.get(pk=deployed.pk), user=operator)
    assert err.value.status == 403
    with django_capture_on_commit_callbacks(execute=False):
        with pytest.raises(services.RolloutError, match="is prod now"):
            services.request_reapply(Deployed.objects.get(pk=deployed.pk), user=None)  # the automatic correction
    drift.reapply(deployed.pk)  # a task queued before the change
    assert applied == []
    assert not AuditEvent.objects.filter(action="application.reapply").exists()


def test_a_cluster_that_left_the_owner_teams_scope_is_never_deployed(admin_user, applied):
    """The payments team's rollout targets its two dev clusters; before the second is reached, the platform hands it
    to another team (owner changed). The engine asks again before each apply: skipped, with the reason shown."""
    from inventory import team_services

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
