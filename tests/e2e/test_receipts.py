"""End to end on real members: a rollout's receipt. Between Fleetweb's apply and its verification someone changes
an applied ConfigMap on one member: that target's read-back digest differs from the approved one, names the field,
and the target does not count; the other member's matches. The signed receipt verifies with the public key alone."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from rollouts import receipts, services
from rollouts.choices import RolloutState, TargetState
from rollouts.models import Rollout, Target
from tests.conftest import wait_for
from tests.e2e.test_rollouts import app_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def slow_app() -> str:
    """A Deployment that counts as available only 20 s after its pods are ready, and a ConfigMap."""
    docs = list(yaml.safe_load_all(app_yaml("1.0", configmaps=1)))
    docs[0]["spec"]["minReadySeconds"] = 20
    return yaml.safe_dump_all(docs)


def test_a_change_between_apply_and_verification_shows_on_the_receipt_and_does_not_count(
        fleet, celery_worker, celery_beat, api_as, operator):
    members = fleet["members"]
    app = services.create_application(name="proof", namespace="proof", manifests_text=slow_app(), user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "early", "selector": "environment in (dev,staging)", "max_parallel": 2, "failures_allowed": 1,
         "min_success_ratio": 0.5, "health_deadline": 120}])
    wait_for(lambda: Target.objects.get(stage__rollout=rollout, cluster__name="ack-hangzhou").state
             == TargetState.VERIFYING, timeout=90, interval=0.1, what="the staging target to be applied")
    with members["ack-hangzhou"].admin_api() as api:
        k8s.CoreV1Api(api).patch_namespaced_config_map("settings-0", "proof", {"data": {"tag": "hand-edited"}},
                                                       field_manager="kubectl-edit")
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state in (RolloutState.SUCCEEDED, RolloutState.FAILED),
             timeout=180, what="the rollout to end")
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, "1 of 2 is within the stage's budget"
    changed = Target.objects.get(stage__rollout=rollout, cluster__name="ack-hangzhou")
    assert changed.state == TargetState.FAILED, "a target the cluster holds otherwise does not count"
    assert changed.message == ("what the cluster holds is not what was approved: ConfigMap settings-0: data.tag is "
                               "hand-edited on the cluster, 1.0 applied")
    answer = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/receipt/")
    assert answer.status_code == 200
    by_cluster = {c["cluster"]: c for c in answer.json()["clusters"]}
    assert by_cluster["gke-us-central"]["matches"] is True
    assert by_cluster["gke-us-central"]["read_back_digest"] == by_cluster["gke-us-central"]["sent_digest"]
    staging = by_cluster["ack-hangzhou"]
    assert staging["matches"] is False and staging["read_back_digest"] != staging["sent_digest"]
    assert staging["differences"] == ["ConfigMap settings-0: data.tag is hand-edited on the cluster, 1.0 applied"]
    assert by_cluster["gke-us-central"]["health"][0]["ready"] is True
    signed = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/receipt/?signed=1").json()
    key = api_as(operator).get("/api/v1/receipt-key/").json()["public_key"]
    assert receipts.verify(signed, public=key)
    [forged] = [c for c in signed["receipt"]["clusters"] if c["cluster"] == "ack-hangzhou"]
    forged["matches"] = True
    assert not receipts.verify(signed, public=key)
