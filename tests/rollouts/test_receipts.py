"""Rollout receipts (rollouts/receipts.py): the digest read back from the cluster, a target whose cluster holds
something else than what was approved does not count, a stage's minimum success ratio, and the receipt as page,
JSON, CSV and signed JSON that verifies with the public key alone."""

from __future__ import annotations

import base64
import copy
import csv
import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management import call_command
from django.test import Client

from inventory.people import services as team_services
from rollouts import drift, receipts, rendering, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Target
from tests.builders import make_user
from tests.rollouts.fakes import run, start

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "web", "labels": {"app": "web"}},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "r.example.com/web:1"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "web"},
           "spec": {"ports": [{"port": 80, "targetPort": 8080}], "selector": {"app": "web"}}}


def as_the_server_keeps_it(obj: dict) -> dict:
    live = copy.deepcopy(obj)
    live["metadata"].update(uid="u-1", resourceVersion="42", managedFields=[{"manager": "fleetweb"}],
                            annotations={"deployment.kubernetes.io/revision": "3"})
    live["status"] = {"replicas": 2}
    if live["kind"] == "Service":
        live["spec"]["ports"][0]["protocol"] = "TCP"
        live["spec"]["clusterIP"] = "10.0.0.7"
    else:
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
        live["spec"]["strategy"] = {"type": "RollingUpdate"}
    return live


def test_what_the_server_adds_is_not_a_difference_and_what_someone_changed_is():
    objects = [DEPLOYMENT, SERVICE]
    lives = [as_the_server_keeps_it(o) for o in objects]
    digest, differences = receipts.read_back_digest(objects, lives)
    assert digest == rendering.objects_digest(objects) and differences == []
    lives[0]["spec"]["replicas"] = 5
    lives[1]["spec"]["ports"][0]["targetPort"] = 9090
    digest, differences = receipts.read_back_digest(objects, lives)
    assert digest != rendering.objects_digest(objects)
    assert differences == ["Deployment web: spec.replicas is 5 on the cluster, 2 applied",
                           "Service web: spec.ports is " + drift._shown([{"port": 80, "targetPort": 9090}])
                           + " on the cluster, " + drift._shown([{"port": 80, "targetPort": 8080}]) + " applied"]
    # A field the application leaves to an autoscaler keeps its applied value in the digest.
    rules = drift.parse_ignore(["Deployment spec.replicas"])
    lives[1]["spec"]["ports"][0]["targetPort"] = 8080
    assert receipts.read_back_digest(objects, lives, rules) == (rendering.objects_digest(objects), [])
    assert receipts.read_back_digest(objects, [None, lives[1]])[1] == ["Deployment web: missing on the cluster"]


def test_what_the_server_normalizes_is_not_a_change_and_a_changed_quantity_is():
    applied = copy.deepcopy(DEPLOYMENT)
    container = applied["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "0.5", "memory": "1024Mi"}, "limits": {"cpu": 1}}
    container["env"] = []
    applied["metadata"]["annotations"] = {}
    live = as_the_server_keeps_it(applied)
    live_container = live["spec"]["template"]["spec"]["containers"][0]
    live_container["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}}
    del live_container["env"]
    live["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "3"}
    assert receipts.read_back_digest([applied], [live]) == (rendering.objects_digest([applied]), [])
    live_container["resources"]["requests"]["cpu"] = "250m"
    assert receipts.read_back_digest([applied], [live])[1] == [
        "Deployment web: spec.template.spec.containers[web].resources.requests.cpu is 250m on the cluster, 0.5 "
        "applied"]
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"ratio": "0.5"}}
    changed = copy.deepcopy(config)
    changed["data"]["ratio"] = "500m"
    assert receipts.read_back_digest([config], [changed])[1], "a ConfigMap's text is not a quantity"


@pytest.mark.django_db
def test_a_verified_target_keeps_the_digest_read_back_and_the_receipt_verifies(fleet, operator, approver):
    fleet.ready.update({"a-1", "b-1"})
    rollout = run(start(operator, [{"name": "ring-a", "selector": "name=a-1"},
                                   {"name": "ring-b", "selector": "name=b-1", "approvals_required": 1}]), 6)
    stage = rollout.stages.get(index=1)
    from rollouts import approvals
    approvals.approve_stage(stage, user=approver, conditions={"no_critical": True})
    rollout = run(rollout, 10)
    assert rollout.state == RolloutState.SUCCEEDED
    for t in Target.objects.filter(stage__rollout=rollout):
        assert t.read_back_digest == t.rendered_digest and t.verified_at is not None
    data = receipts.receipt(rollout)
    assert [(c["cluster"], c["stage"], c["matches"]) for c in data["clusters"]] == [("a-1", "ring-a", True),
                                                                                    ("b-1", "ring-b", True)]
    b1 = data["clusters"][1]
    assert b1["approved_digest"] == b1["sent_digest"] == b1["read_back_digest"]
    assert [(a["by"], a["conditions"]) for a in b1["approvals"]] == [("anna-approver", {"no_critical": True})]
    assert b1["health"] and b1["health"][0]["ready"] is True
    signed = receipts.sign(data)
    assert receipts.verify(signed) and receipts.verify(json.loads(json.dumps(signed)))
    tampered = copy.deepcopy(signed)
    tampered["receipt"]["clusters"][1]["read_back_digest"] = "0" * 64
    assert not receipts.verify(tampered)
    other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert not receipts.verify(signed, public=base64.b64encode(other).decode()), "checked against the given key"


@pytest.mark.django_db
def test_a_change_on_the_cluster_between_apply_and_verification_does_not_count(fleet, operator):
    def changed_by_hand(cluster, path, body):  # right after Fleetweb's apply, someone scales it
        fleet.on_apply_hook(cluster, path, body)

    fleet.on_apply = changed_by_hand
    rollout = start(operator, [{"name": "ring-b", "selector": "name=b-1"}])
    for _ in range(6):
        rollout = run(rollout, 1)
        target = Target.objects.get(stage__rollout=rollout)
        if target.state == TargetState.VERIFYING:
            break
    assert target.state == TargetState.VERIFYING
    [path] = [p for p in fleet.objects["b-1"] if "deployments" in p]
    fleet.objects["b-1"][path]["spec"]["replicas"] = 5
    fleet.ready.add("b-1")
    rollout = run(rollout, 6)
    target.refresh_from_db()
    assert target.state == TargetState.FAILED and target.read_back_digest != target.rendered_digest
    assert target.message == ("what the cluster holds is not what was approved: "
                              "Deployment web: spec.replicas is 5 on the cluster, 2 applied")
    assert rollout.state == RolloutState.FAILED
    assert receipts.receipt(rollout)["clusters"][0]["matches"] is False


@pytest.mark.django_db
def test_a_stage_fails_below_its_minimum_success_ratio_whatever_failures_it_allows(fleet, operator):
    fleet.ready.update({"a-1", "a-2", "a-3"})
    fleet.failing["a-3"] = "admission webhook said no"
    rollout = run(start(operator, [{"name": "ring-a", "selector": "ring=a", "failures_allowed": 3,
                                    "max_parallel": 3, "min_success_ratio": 0.66}]), 10)
    assert rollout.state == RolloutState.SUCCEEDED, "2 of 3 is at least 0.66"
    fleet.failing["a-2"] = "admission webhook said no"
    second = run(start(operator, [{"name": "ring-a", "selector": "ring=a", "failures_allowed": 3, "max_parallel": 3,
                                   "min_success_ratio": 0.66}], tag="2.0", app=rollout.application), 10)
    stage = second.stages.get()
    assert second.state == RolloutState.FAILED and stage.state == StageState.FAILED
    assert "at most 1 of 3 targets can succeed, at least 66% needed" in stage.message


@pytest.mark.parametrize("ratio", [0, 1.5, "most", True])
@pytest.mark.django_db
def test_a_minimum_success_ratio_must_be_a_share(fleet, operator, ratio):
    with pytest.raises(services.RolloutError) as refused:
        start(operator, [{"name": "ring-a", "selector": "ring=a", "min_success_ratio": ratio}])
    assert "stages[0].min_success_ratio" in refused.value.errors


@pytest.mark.django_db
def test_the_receipt_as_page_csv_json_and_signed_json_for_those_who_see_the_rollout(fleet, operator, admin_user,
                                                                                     api_as, tmp_path):
    fleet.ready.add("b-1")
    rollout = run(start(operator, [{"name": "ring-b", "selector": "name=b-1"}]), 8)
    client = Client()
    client.force_login(operator)
    page = client.get(f"/rollouts/{rollout.pk}/receipt/")
    assert page.status_code == 200 and b"b-1" in page.content and b"matches" in page.content
    exported = client.get(f"/rollouts/{rollout.pk}/receipt.csv")
    rows = list(csv.reader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert rows[0] == receipts.CSV_HEADER and rows[1][0] == "b-1" and rows[1][8] == "yes"
    answer = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/receipt/")
    assert answer.status_code == 200 and answer.json()["clusters"][0]["matches"] is True
    signed = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/receipt/?signed=1").json()
    assert receipts.verify(signed, public=api_as(operator).get("/api/v1/receipt-key/").json()["public_key"])
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(signed))
    out = io.StringIO()
    call_command("verify_receipt", str(path), stdout=out)
    assert "intact, signed by this Fleetweb" in out.getvalue()
    signed["receipt"]["state"] = "succeeded-really"
    path.write_text(json.dumps(signed))
    with pytest.raises(SystemExit):
        call_command("verify_receipt", str(path), stdout=io.StringIO(), stderr=io.StringIO())
    outsider = make_user("olga")
    team = team_services.save_team(user=admin_user, name="elsewhere", selector="owner=nobody")
    team_services.add_member(team, member=outsider, role="viewer", user=admin_user)
    assert api_as(outsider).get(f"/api/v1/rollouts/{rollout.pk}/receipt/").status_code == 404
    lurker = Client()
    lurker.force_login(outsider)
    assert lurker.get(f"/rollouts/{rollout.pk}/receipt/").status_code == 404
