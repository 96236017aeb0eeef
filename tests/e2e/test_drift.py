"""End to end on the member that runs the newest release (kube-apiserver 1.37): an application rolled out by
Fleetweb, then changed by hand. A `kubectl scale`-style change by another field manager shows as drifted within
two intervals, naming spec.replicas and the manager, and an alert fires (a real HTTP receiver); Re-apply brings
it back in sync, restoring the revision as deployed (not an override written since, which needs a rollout and
its approvals); a deleted ConfigMap shows as missing; fields an application leaves to an autoscaler are shown,
not drift, and its automatic correction keeps them. Real worker, real beat."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from kubernetes import client as k8s

from foundation.models import AuditEvent
from inventory import services as inventory_services
from inventory.choices import ClusterEventKind
from inventory.models import ClusterEvent
from notifications import services as notification_services
from notifications.choices import ChannelKind
from rollouts import services
from rollouts.choices import DriftState, RolloutState
from rollouts.models import Deployed, Drift, Rollout
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

INTERVAL = 5
NAMESPACE = "drifty"


@pytest.fixture
def beat_env() -> dict:
    return {"FLEETWEB_DRIFT_INTERVAL": str(INTERVAL), "FLEETWEB_ALERT_INTERVAL": "1"}


MANIFESTS = yaml.safe_dump_all([
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.0",
                                                    "env": [{"name": "LEVEL", "value": "info"}],
                                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"level": "info"}},
])


@pytest.fixture
def newest(localfleet_members):
    handle = localfleet_members["gke-us-central"]
    yield handle
    with handle.admin_api() as api:
        try:
            k8s.CoreV1Api(api).delete_namespace(NAMESPACE)
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise

    def gone():
        with handle.admin_api() as api:
            try:
                k8s.CoreV1Api(api).read_namespace(NAMESPACE)
            except k8s.ApiException as exc:
                return exc.status == 404
        return False
    wait_for(gone, timeout=120, interval=1, what="the test namespace deleted")


def _drift(deployed) -> Drift:
    return Drift.objects.get(deployed=deployed)


def test_hand_changes_show_as_drift_alert_and_reapply_restores_the_deployed_revision(
        newest, celery_beat, http_receiver, admin_user, api_as, settings):
    settings.FLEETWEB_DRIFT_INTERVAL = INTERVAL
    cluster = inventory_services.attach_cluster(name="drift-dev", credentials=newest.token_credentials(),
                                                user=None, environment="dev")
    group = inventory_services.create_group(name="drift-dev", selector="name=drift-dev", user=admin_user)
    hook = notification_services.save_channel(user=admin_user, name="drift-hook", kind=ChannelKind.WEBHOOK,
                                              url=http_receiver.url("/drift"), secret="s" * 20)
    notification_services.save_rule(user=admin_user, name="drift", channel=hook, events=["application.drifted"],
                                    hold_down=0)
    app = services.create_application(name="drifty", namespace=NAMESPACE, manifests_text=MANIFESTS,
                                      user=admin_user)
    rollout = services.create_rollout(revision=app.latest_revision, user=admin_user, stages=[
        {"name": "dev", "selector": "name=drift-dev", "health_deadline": 90}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=150,
             what="the rollout to succeed")
    deployed = Deployed.objects.get(application=app, cluster=cluster)
    assert [o["kind"] for o in deployed.objects_applied] == ["ConfigMap", "Deployment"]  # in apply order
    wait_for(lambda: _drift(deployed).state == DriftState.IN_SYNC, timeout=4 * INTERVAL, what="a first check")
    first = _drift(deployed)
    assert first.requests == 4, "one LIST per kind and one dry run per object"

    # What `kubectl scale` does: the scale subresource, under its own field manager.
    with newest.admin_api() as api:
        k8s.AppsV1Api(api).patch_namespaced_deployment_scale("web", NAMESPACE, {"spec": {"replicas": 5}},
                                                             field_manager="kubectl-scale")
    changed = time.monotonic()
    wait_for(lambda: _drift(deployed).state == DriftState.DRIFTED, timeout=4 * INTERVAL, what="the drift")
    assert time.monotonic() - changed <= 2 * INTERVAL + 2, "within two intervals (plus the check itself)"
    drift = _drift(deployed)
    [web] = [o for o in drift.objects_state if o["state"] == DriftState.DRIFTED]
    [field] = web["fields"]
    assert (web["kind"], web["name"], field["path"], field["applied"], field["live"]) == (
        "Deployment", "web", "spec.replicas", "2", "5")
    assert [m["manager"] for m in field["managers"]] == ["kubectl-scale"]
    assert next(o for o in drift.objects_state if o["kind"] == "ConfigMap")["state"] == DriftState.IN_SYNC

    def alerts(state):
        return [r.json() for r in http_receiver.at("/drift") if r.json()["data"].get("alert") == state]
    wait_for(lambda: alerts("firing"), timeout=15, what="the drift alert")
    [firing] = alerts("firing")
    assert firing["data"]["application"] == "drifty" and "spec.replicas" in firing["text"]
    assert "kubectl-scale" in firing["text"]

    listed = api_as(admin_user).get("/api/v1/drift/?state=drifted").json()
    assert [d["cluster"] for d in listed["results"]] == ["drift-dev"]

    # An override written since (replicas 7) is not what Re-apply restores: that needs a rollout and approvals.
    services.set_override(app, group=group, user=admin_user, replicas=7)
    response = api_as(admin_user).post(f"/api/v1/drift/{deployed.pk}/reapply/")
    assert response.status_code == 202, response.json()

    def replicas():
        with newest.admin_api() as api:
            return k8s.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE).spec.replicas
    wait_for(lambda: replicas() == 2 and _drift(deployed).state == DriftState.IN_SYNC, timeout=30,
             what="the re-apply to restore replicas 2")
    event = AuditEvent.objects.filter(action="application.reapply").latest("at")
    assert event.actor_name == admin_user.username and event.after["fields"] == ["Deployment web: spec.replicas"]
    wait_for(lambda: alerts("resolved"), timeout=15, what="the drift alert's recovery")

    # A ConfigMap deleted by hand is missing.
    with newest.admin_api() as api:
        k8s.CoreV1Api(api).delete_namespaced_config_map("settings", NAMESPACE)
    wait_for(lambda: _drift(deployed).state == DriftState.MISSING, timeout=4 * INTERVAL, what="the missing object")
    states = {(o["kind"], o["state"]) for o in _drift(deployed).objects_state}
    assert states == {("Deployment", DriftState.IN_SYNC), ("ConfigMap", DriftState.MISSING)}
    wait_for(lambda: len(alerts("firing")) == 2, timeout=15, what="a new alert: a new drift after the recovery")
    assert "ConfigMap settings missing" in alerts("firing")[1]["text"]
    history = list(ClusterEvent.objects.filter(cluster=cluster, kind=ClusterEventKind.ROLLOUT).order_by("at")
                   .values_list("summary", flat=True))
    assert any(s.startswith("drifty revision 1 drifted: Deployment web: spec.replicas (by kubectl-scale)")
               for s in history), history
    assert "re-applied drifty revision 1 to correct drift" in history
    assert any(s == "drifty revision 1: ConfigMap settings missing" for s in history), history
    assert json.dumps(firing).count("secret") == 0


def correcting_deployment(handle, cluster_name: str, admin_user) -> Deployed:
    """The member attached as `cluster_name` (dev), and an application that corrects its drift rolled out there."""
    cluster = inventory_services.attach_cluster(name=cluster_name, credentials=handle.token_credentials(),
                                                user=None, environment="dev")
    app = services.create_application(name="drifty", namespace=NAMESPACE, manifests_text=MANIFESTS,
                                      user=admin_user, correct_drift=True)
    rollout = services.create_rollout(revision=app.latest_revision, user=admin_user, stages=[
        {"name": "dev", "selector": f"name={cluster_name}", "health_deadline": 90}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=150,
             what="the rollout to succeed")
    return Deployed.objects.get(application=app, cluster=cluster)


def test_an_application_that_corrects_drift_puts_the_change_back_by_itself(newest, celery_beat, admin_user,
                                                                            settings):
    settings.FLEETWEB_DRIFT_INTERVAL = INTERVAL
    deployed = correcting_deployment(newest, "drift-auto", admin_user)
    with newest.admin_api() as api:
        k8s.CoreV1Api(api).patch_namespaced_config_map("settings", NAMESPACE, {"data": {"level": "debug"}},
                                                       field_manager="kubectl-edit")

    def level():
        with newest.admin_api() as api:
            return k8s.CoreV1Api(api).read_namespaced_config_map("settings", NAMESPACE).data["level"]
    wait_for(lambda: AuditEvent.objects.filter(action="application.reapply", message="auto-correct").exists(),
             timeout=4 * INTERVAL, what="the automatic re-apply")
    wait_for(lambda: level() == "info" and _drift(deployed).state == DriftState.IN_SYNC, timeout=30,
             what="the ConfigMap put back")
    event = AuditEvent.objects.get(action="application.reapply")
    assert event.actor_name == "" and event.after["fields"] == ["ConfigMap settings: data.level"]


def test_fields_left_to_an_autoscaler_are_shown_not_drift_and_correcting_keeps_them(newest, celery_beat, admin_user,
                                                                                    settings):
    """An application whose replicas an autoscaler sets: its changes are shown beside the state, never drift; a
    real drift elsewhere is corrected, and the correction leaves the replicas the autoscaler chose."""
    settings.FLEETWEB_DRIFT_INTERVAL = INTERVAL
    cluster = inventory_services.attach_cluster(name="drift-hpa", credentials=newest.token_credentials(),
                                                user=None, environment="dev")
    app = services.create_application(name="drifty", namespace=NAMESPACE, manifests_text=MANIFESTS,
                                      user=admin_user, correct_drift=True, drift_ignore=["Deployment spec.replicas"])
    rollout = services.create_rollout(revision=app.latest_revision, user=admin_user, stages=[
        {"name": "dev", "selector": "name=drift-hpa", "health_deadline": 90}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=150,
             what="the rollout to succeed")
    deployed = Deployed.objects.get(application=app, cluster=cluster)
    with newest.admin_api() as api:  # what an HPA does: the scale subresource, under its own manager
        k8s.AppsV1Api(api).patch_namespaced_deployment_scale("web", NAMESPACE, {"spec": {"replicas": 3}},
                                                             field_manager="horizontal-pod-autoscaler")

    def web_row():
        return next((o for o in _drift(deployed).objects_state if o["kind"] == "Deployment"), {})
    wait_for(lambda: web_row().get("ignored"), timeout=4 * INTERVAL, what="a check after the autoscaler's change")
    drift = _drift(deployed)
    assert drift.state == DriftState.IN_SYNC and web_row()["fields"] == []
    [ignored] = web_row()["ignored"]
    assert (ignored["path"], ignored["applied"], ignored["live"]) == ("spec.replicas", "2", "3")
    assert [m["manager"] for m in ignored["managers"]] == ["horizontal-pod-autoscaler"]
    assert not AuditEvent.objects.filter(action="application.reapply").exists(), "nothing to correct"

    with newest.admin_api() as api:
        k8s.CoreV1Api(api).patch_namespaced_config_map("settings", NAMESPACE, {"data": {"level": "debug"}},
                                                       field_manager="kubectl-edit")

    def live():
        with newest.admin_api() as api:
            return (k8s.CoreV1Api(api).read_namespaced_config_map("settings", NAMESPACE).data["level"],
                    k8s.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE).spec.replicas)
    wait_for(lambda: AuditEvent.objects.filter(action="application.reapply", message="auto-correct").exists(),
             timeout=4 * INTERVAL, what="the automatic re-apply")
    wait_for(lambda: live()[0] == "info" and _drift(deployed).state == DriftState.IN_SYNC, timeout=30,
             what="the ConfigMap put back")
    assert live() == ("info", 3), "the correction restored the ConfigMap and left the autoscaler's replicas"
    event = AuditEvent.objects.get(action="application.reapply")
    assert event.after["fields"] == ["ConfigMap settings: data.level"]
