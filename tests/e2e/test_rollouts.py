"""End to end on real member clusters: a staged rollout canary → staging → prod with an approval gate,
a health deadline that fails a stage, rollback, and a worker killed mid-apply and mid-verify."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from foundation.queueing import QUEUES
from rollouts import engine, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Approval, Rollout, Target
from tests.builders import make_user
from tests.conftest import child_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

def app_yaml(tag: str, *, replicas: int = 2, ready: bool = True, configmaps: int = 0) -> str:
    """A Deployment + Service (+ ConfigMaps to make an apply take a while). `ready=False` pins the pods to a
    node that does not exist, so they stay Pending and the Deployment never becomes available."""
    pod_spec: dict = {"containers": [{"name": "web", "image": f"registry.example.com/shop/web:{tag}",
                                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    if not ready:
        pod_spec["nodeSelector"] = {"kubernetes.io/hostname": "no-such-node"}
    docs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]
    docs += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"settings-{i}"},
              "data": {"tag": tag, "index": str(i)}} for i in range(configmaps)]
    return yaml.safe_dump_all(docs)


STAGES = [{"name": "canary", "selector": "name=gke-us-central", "health_deadline": 90},
          {"name": "staging", "group": "staging", "health_deadline": 90},
          {"name": "production", "group": "prod", "health_deadline": 90}]


def live_deployment(handle, namespace: str, name: str = "web"):
    with handle.admin_api() as api:
        try:
            return k8s.AppsV1Api(api).read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def at_revision(handle, namespace: str, number: int) -> bool:
    d = live_deployment(handle, namespace)
    return bool(d and d.metadata.annotations.get("fleetweb.io/revision") == str(number)
                and (d.status.available_replicas or 0) == d.spec.replicas
                and (d.status.updated_replicas or 0) == d.spec.replicas)


def stage_state(rollout: Rollout, index: int) -> str:
    return rollout.stages.get(index=index).state


def test_three_stage_rollout_waits_for_a_real_approver(fleet, celery_worker, celery_beat, api_as, operator,
                                                        approver, client):
    members = fleet["members"]
    # The requester holds the approver role too: the rule that stops them is "never your own rollout".
    rita = make_user("rita-requester", "operator", "approver")
    requester = api_as(rita)
    created = requester.post("/api/v1/applications/", {"name": "shop-web", "namespace": "shop-web",
                                                       "manifests": app_yaml("1.0")}, format="json")
    assert created.status_code == 201, created.json()
    app_id = created.json()["id"]
    revision = created.json()["latest_revision"]["id"]
    response = requester.post("/api/v1/rollouts/", {"revision": revision, "stages": STAGES}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    rollout = Rollout.objects.get(pk=body["id"])
    prod_stage = rollout.stages.get(index=2)
    assert prod_stage.approvals_required == 1 and "reaches prod cluster" in prod_stage.message

    # Canary and staging go by themselves; production waits for a human.
    wait_for(lambda: stage_state(rollout, 2) == StageState.AWAITING_APPROVAL, timeout=120,
             what="the prod stage to await approval")
    assert at_revision(members["gke-us-central"], "shop-web", 1), "canary: pods Running via KWOK, all available"
    assert at_revision(members["ack-hangzhou"], "shop-web", 1)
    assert live_deployment(members["aws-eu-west"], "shop-web") is None, "nothing reached prod before approval"

    # The requester cannot approve, through the API or the page; an operator without the role neither.
    refused = requester.post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "lgtm"}, format="json")
    assert refused.status_code == 403 and "someone else must approve" in refused.json()["detail"]
    client.force_login(rita)
    page = client.post(f"/rollouts/{rollout.pk}/stages/2/approve/", {"comment": "mine"})
    assert page.status_code == 403 and b"someone else must approve" in page.content
    no_role = api_as(operator).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {}, format="json")
    assert no_role.status_code == 403 and "approver role" in no_role.json()["detail"]
    # Not "sleep and hope": run the engine over the rollout once more ourselves (waiting while a worker holds it)
    # and see that the refused approvals moved nothing.
    wait_for(lambda: engine.advance(rollout.pk) != "busy", timeout=30, what="an engine pass after the refusals")
    assert stage_state(rollout, 2) == StageState.AWAITING_APPROVAL
    assert live_deployment(members["aws-eu-west"], "shop-web") is None

    approved = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "ship it"},
                                     format="json")
    assert approved.status_code == 200, approved.json()
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the rollout to succeed")
    for name, handle in members.items():
        assert at_revision(handle, "shop-web", 1), name
        service = k8s.CoreV1Api(handle.admin_api()).read_namespaced_service("web", "shop-web")
        assert service.metadata.labels["app.kubernetes.io/managed-by"] == "fleetweb"
    stage = rollout.stages.get(index=2)
    assert stage.approved_at is not None and stage.approvals.get().user == approver

    # A second revision through the same stages: every target ends on it.
    second = requester.post(f"/api/v1/applications/{app_id}/revisions/", {"manifests": app_yaml("1.1"),
                                                                          "message": "1.1"}, format="json")
    assert second.status_code == 201 and second.json()["number"] == 2
    r2 = requester.post("/api/v1/rollouts/", {"revision": second.json()["id"], "stages": STAGES}, format="json")
    rollout2 = Rollout.objects.get(pk=r2.json()["id"])
    wait_for(lambda: stage_state(rollout2, 2) == StageState.AWAITING_APPROVAL, timeout=120, what="approval gate")
    assert api_as(approver).post(f"/api/v1/rollouts/{rollout2.pk}/approve/", {}, format="json").status_code == 200
    wait_for(lambda: Rollout.objects.get(pk=rollout2.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="rollout of revision 2")
    for name, handle in members.items():
        assert at_revision(handle, "shop-web", 2), name
        image = live_deployment(handle, "shop-web").spec.template.spec.containers[0].image
        assert image.endswith(":1.1"), (name, image)
    assert set(Target.objects.filter(stage__rollout=rollout2).values_list("previous_revision__number", flat=True)) \
        == {1}


def test_deadline_fails_the_stage_and_rollback_restores_the_previous_revision(fleet, celery_worker, celery_beat,
                                                                              operator):
    members = fleet["members"]
    app = services.create_application(name="cart", namespace="cart", user=operator, manifests_text=app_yaml("2.0"))
    stages = [{"name": "canary", "selector": "name=gke-us-central", "health_deadline": 60},
              {"name": "staging", "group": "staging", "health_deadline": 60}]
    good = services.create_rollout(revision=app.latest_revision, stages=stages, user=operator)
    wait_for(lambda: Rollout.objects.get(pk=good.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="revision 1 everywhere")

    broken = services.create_revision(app, manifests_text=app_yaml("2.1", ready=False), user=operator,
                                      message="pods never schedule")
    bad = services.create_rollout(revision=broken, user=operator, stages=[
        {"name": "canary", "selector": "name=gke-us-central", "health_deadline": 15},
        {"name": "staging", "group": "staging", "health_deadline": 60}])
    wait_for(lambda: Rollout.objects.get(pk=bad.pk).state == RolloutState.FAILED, timeout=90,
             what="the canary stage to fail on its deadline")
    bad.refresh_from_db()
    canary = bad.stages.get(index=0)
    assert canary.state == StageState.FAILED and "not ready within the health deadline" in canary.message
    assert "Deployment web: 1/2 updated" in canary.message  # the old pods stay available meanwhile
    assert bad.stages.get(index=1).state == StageState.PENDING, "later stages untouched"
    assert at_revision(members["ack-hangzhou"], "cart", 1), "staging still runs revision 1"
    assert live_deployment(members["gke-us-central"], "cart").metadata.annotations["fleetweb.io/revision"] == "2"

    services.rollback_rollout(bad, user=operator)
    wait_for(lambda: Rollout.objects.get(pk=bad.pk).state == RolloutState.ROLLED_BACK, timeout=90,
             what="rollback to finish")
    assert at_revision(members["gke-us-central"], "cart", 1), "the canary runs revision 1 again, all available"
    target = Target.objects.get(stage=canary)
    assert target.state == TargetState.ROLLED_BACK
    assert not Target.objects.filter(stage__rollout=bad, cluster__name="ack-hangzhou").exclude(
        state=TargetState.PENDING).exists(), "rollback touched only clusters that got the bad revision"


def _worker_env() -> dict:
    """A separate worker process on the test database and broker, with a short lease so it is quick to
    take over from a killed one."""
    env = child_env()
    env["FLEETWEB_ROLLOUT_LEASE"] = "6"
    # The lease must outlast the longest single call to a cluster (settings refuse it otherwise).
    env["FLEETWEB_KUBE_CONNECT_TIMEOUT"], env["FLEETWEB_KUBE_READ_TIMEOUT"] = "1", "4"
    return env


def _start_worker(tmp_path: Path, name: str) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - the process owns it until it ends
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-Q", ",".join(QUEUES),
                             "-c", "2", "-P", "threads", "-n", f"{name}@%h", "-l", "WARNING"],
                            env=_worker_env(), stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR)


def test_rollout_survives_a_worker_killed_during_apply_and_during_verify(fleet, beat_process, operator, tmp_path):
    members = fleet["members"]
    # 150 ConfigMaps make an apply take seconds, long enough to kill the worker in the middle of it.
    app = services.create_application(name="ledger", namespace="ledger", user=operator,
                                      manifests_text=app_yaml("3.0", configmaps=150))
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "canary", "selector": "name=gke-us-central", "health_deadline": 120},
        {"name": "staging", "group": "staging", "health_deadline": 120}])
    worker = _start_worker(tmp_path, "first")
    try:
        target = wait_for(lambda: Target.objects.filter(stage__rollout=rollout, state=TargetState.APPLYING).first(),
                          interval=0.02, timeout=60, what="a target being applied")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        killed_in = target.cluster.name
        target.refresh_from_db()
        assert target.state == TargetState.APPLYING, "the worker died in the middle of the apply"
        worker = _start_worker(tmp_path, "second")
        verifying = wait_for(lambda: Target.objects.filter(stage__rollout=rollout, state=TargetState.VERIFYING)
                             .exclude(cluster__name=killed_in).first(), interval=0.05, timeout=90,
                             what="a target being verified")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        assert Target.objects.get(pk=verifying.pk).state == TargetState.VERIFYING
        worker = _start_worker(tmp_path, "third")
        wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=150,
                 what="the rollout to finish after two kills")
    finally:
        worker.kill()
        worker.wait(10)
    stages = list(rollout.stages.order_by("index").values_list("state", "started_at"))
    assert [s for s, _ in stages] == [StageState.SUCCEEDED, StageState.SUCCEEDED]
    assert stages[0][1] < stages[1][1], "no stage skipped or run out of order"
    killed = Target.objects.get(stage__rollout=rollout, cluster__name=killed_in)
    assert killed.attempts >= 2, "the interrupted apply was started again"
    assert Target.objects.get(pk=verifying.pk).state == TargetState.READY
    for name in ("gke-us-central", "ack-hangzhou"):
        assert at_revision(members[name], "ledger", 1), name
        with members[name].admin_api() as api:
            maps = k8s.CoreV1Api(api).list_namespaced_config_map("ledger", label_selector="fleetweb.io/application")
        assert len(maps.items) == 150
    assert live_deployment(members["aws-eu-west"], "ledger") is None


def test_an_override_changed_after_approval_never_reaches_the_prod_member(fleet, celery_worker, celery_beat, api_as,
                                                                          operator, approver):
    """The approver approves web:2.0 for prod; an operator then sets a prod override to an image nobody approved.
    The approval is void, prod keeps running nothing, and only what a second approval covers is applied."""
    members = fleet["members"]
    app = services.create_application(name="pay", namespace="pay", manifests_text=app_yaml("2.0"), user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "production", "group": "prod", "health_deadline": 90}])
    wait_for(lambda: stage_state(rollout, 0) == StageState.AWAITING_APPROVAL, timeout=60,
             what="the prod stage to await approval")
    shown = api_as(approver).get(f"/api/v1/rollouts/{rollout.pk}/").json()["stage_list"][0]["digest"]
    # Approve and change the override in one go, before any worker can start the stage: the approval commits
    # first, the override second, both before the engine runs (it is paused between them).
    services.pause_rollout(rollout, user=operator)
    approved = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/",
                                     {"comment": "2.0 for prod", "stage_digest": shown}, format="json")
    assert approved.status_code == 200, approved.json()
    evil = api_as(operator).put(f"/api/v1/applications/{app.pk}/overrides/prod/", {"image_tags": {"web": "evil"}},
                                format="json")
    assert evil.status_code == 200, evil.json()
    services.resume_rollout(rollout, user=operator)
    assert Rollout.objects.get(pk=rollout.pk).next_step_at is not None  # resume makes it due at once

    def engine_looked():  # at the gate with no valid approval the engine waits for a click: nothing scheduled
        now = Rollout.objects.get(pk=rollout.pk)
        return now.next_step_at is None and now.lease_expires_at is None

    wait_for(engine_looked, timeout=60, interval=0.25, what="beat and a worker to look at the gate after resume")
    assert Approval.objects.filter(stage__rollout=rollout).exclude(void_reason="").exists()
    assert stage_state(rollout, 0) == StageState.AWAITING_APPROVAL
    assert live_deployment(members["aws-eu-west"], "pay") is None, "the unapproved image never reached prod"
    body = api_as(approver).get(f"/api/v1/rollouts/{rollout.pk}/").json()["stage_list"][0]
    assert "override of pay for group prod was changed by otto-operator" in body["approvals"][0]["void_reason"]
    # A second approver looks at what would really be applied now and approves exactly that.
    second = make_user("second-approver", "approver")
    assert api_as(second).post(f"/api/v1/rollouts/{rollout.pk}/approve/",
                               {"comment": "seen", "stage_digest": body["digest"]}, format="json").status_code == 200
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the re-approved rollout to finish")
    live = live_deployment(members["aws-eu-west"], "pay")
    assert live.spec.template.spec.containers[0].image == "registry.example.com/shop/web:evil", \
        "what the second approval covered, and only that, was applied"
