"""Only our own objects: application namespaces, taking over existing objects, and removing on rollback."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from rollouts import manifests, members, services
from rollouts.choices import RolloutState, TargetState
from rollouts.models import Application, Rollout, Target
from tests.conftest import wait_for

DEPLOYMENT = yaml.safe_dump({
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1"}]}}}})


@pytest.mark.parametrize(("namespace", "message", "status"), [
    ("kube-system", "Kubernetes system namespace", 400), ("kube-public", "system namespace", 400),
    ("fleetweb-system", "Fleetweb's own namespace", 400), ("default", "Only admins may deploy", 403),
    ("Demo", "not a Kubernetes namespace name", 400), ("demo_ns", "not a Kubernetes namespace name", 400),
])
def test_operator_cannot_deploy_into_namespaces_that_are_not_theirs(operator, namespace, message, status):
    with pytest.raises(services.RolloutError, match=message) as err:
        services.create_application(name="web", namespace=namespace, user=operator, manifests_text=DEPLOYMENT)
    assert err.value.status == status
    assert not Application.objects.exists()


def test_operator_cannot_deploy_into_kube_system_through_the_api(operator, api_as):
    response = api_as(operator).post("/api/v1/applications/", {"name": "web", "namespace": "kube-system",
                                                               "manifests": DEPLOYMENT}, format="json")
    assert response.status_code == 400
    assert "system namespace" in str(response.json())
    assert not Application.objects.exists()


def test_an_admin_may_choose_default(admin_user):
    app = services.create_application(name="web", namespace="default", user=admin_user, manifests_text=DEPLOYMENT)
    assert app.namespace == "default"


@pytest.mark.parametrize(("labels", "managers", "refusal"), [
    ({"fleetweb.io/application": "web"}, ["kubectl", "kube-controller-manager"], ""),
    ({}, ["fleetweb"], ""),
    ({"fleetweb.io/application": "other"}, ["fleetweb"], "belongs to the Fleetweb application 'other'"),
    ({}, ["kubectl-client-side-apply"], "was not created by Fleetweb"),
    ({}, ["fleetweb", "kubectl-edit"], "was not created by Fleetweb"),
])
def test_ownership_of_a_live_object(labels, managers, refusal):
    obj = {"kind": "Deployment", "metadata": {"name": "web", "labels": {"fleetweb.io/application": "web"}}}
    live = {"metadata": {"labels": labels, "managedFields": [{"manager": m} for m in managers]}}
    assert members.not_ours(obj, live) == refusal


def test_rendered_objects_carry_the_application_label():
    parsed = manifests.parse(DEPLOYMENT, namespace="shop")
    rendered = manifests.render(parsed.objects, application="web", revision=1, digest="d")
    assert rendered[0]["metadata"]["labels"]["fleetweb.io/application"] == "web"


def _configmap(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})


def _unschedulable() -> str:
    doc = yaml.safe_load(DEPLOYMENT)
    doc["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "no-such-node"}
    return yaml.safe_dump(doc)


@pytest.fixture
def member_namespace(localfleet_members):
    handle = next(iter(localfleet_members.values()))
    namespace = "ownership-e2e"
    with handle.admin_api() as api:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace,
                                                          "labels": {"app.kubernetes.io/managed-by": "fleetweb"}}})
    yield handle, namespace
    with handle.admin_api() as api:
        k8s.CoreV1Api(api).delete_namespace(namespace)

    def gone():
        with handle.admin_api() as api:
            return namespace not in {n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items}

    wait_for(gone, timeout=120, interval=1, what="the test namespace deleted")


def _attach(handle):
    from inventory import services as inventory_services

    return inventory_services.attach_cluster(name="own-1", credentials=handle.token_credentials(), user=None)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_rollout_never_takes_over_what_others_made(member_namespace, celery_worker, celery_beat, operator):
    """A ConfigMap someone made by hand is not overwritten by a same-named one in an application: the target fails
    naming it, before anything of the application is applied."""
    handle, namespace = member_namespace
    cluster = _attach(handle)
    with handle.admin_api() as api:
        k8s.CoreV1Api(api).create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                                    "data": {"theirs": "yes"}})
    app = services.create_application(name="web", namespace=namespace, user=operator,
                                      manifests_text=DEPLOYMENT + "---\n" + _configmap("settings"))
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "only", "selector": f"name={cluster.name}", "health_deadline": 60}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.FAILED, timeout=90,
             what="the rollout to fail on the hand-made ConfigMap")
    target = Target.objects.get(stage__rollout=rollout)
    assert f"ConfigMap {namespace}/settings already exists and was not created by Fleetweb" in target.message
    with handle.admin_api() as api:
        assert k8s.CoreV1Api(api).read_namespaced_config_map("settings", namespace).data == {"theirs": "yes"}
        assert not k8s.AppsV1Api(api).list_namespaced_deployment(namespace).items, "nothing applied"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_rolling_back_a_first_deploy_deletes_only_what_fleetweb_made(member_namespace, celery_worker, celery_beat,
                                                                     operator):
    handle, namespace = member_namespace
    cluster = _attach(handle)
    app = services.create_application(name="web", namespace=namespace, user=operator,
                                      manifests_text=_unschedulable() + "---\n" + _configmap("settings"))
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "only", "selector": f"name={cluster.name}", "health_deadline": 10}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.FAILED, timeout=90,
             what="the first deploy to fail on its deadline")
    # Meanwhile someone replaced the Deployment with their own, of the same name.
    theirs = yaml.safe_load(DEPLOYMENT)
    theirs["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/theirs:7"
    with handle.admin_api() as api:
        k8s.AppsV1Api(api).delete_namespaced_deployment("web", namespace)
        wait_for(lambda: not k8s.AppsV1Api(api).list_namespaced_deployment(namespace).items, timeout=30,
                 interval=0.5, what="the Deployment deleted")
        k8s.AppsV1Api(api).create_namespaced_deployment(namespace, theirs)
    services.rollback_rollout(rollout, user=operator)
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.ROLLED_BACK, timeout=90,
             what="rollback to finish")
    target = Target.objects.get(stage__rollout=rollout)
    assert target.state == TargetState.ROLLED_BACK
    assert f"left alone, not created by this application: Deployment {namespace}/web" in target.message
    with handle.admin_api() as api:
        live = k8s.AppsV1Api(api).read_namespaced_deployment("web", namespace)
        assert live.spec.template.spec.containers[0].image == "registry.example.com/theirs:7"
        assert not k8s.CoreV1Api(api).list_namespaced_config_map(
            namespace, field_selector="metadata.name=settings").items, "Fleetweb's own ConfigMap removed"
