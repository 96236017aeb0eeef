"""Decoding raw list pages with msgspec, quantities, provider detection and problem pods."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from inventory import decode, kinds, nodefacts
from inventory.collector import Snapshot, _Reader


def page(items: list[dict], cont: str = "") -> bytes:
    return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"continue": cont, "resourceVersion": "9"},
                       "items": items}).encode()


def pod(name: str, *, phase: str = "Running", ready: bool = True, restarts: int = 0, waiting: str = "",
        owner: dict | None = None, namespace: str = "shop") -> dict:
    status: dict = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                    "containerStatuses": [{"name": "c", "ready": ready, "restartCount": restarts,
                                           "state": {"waiting": {"reason": waiting, "message": "back-off"}}
                                           if waiting else {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}
    return {"metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "creationTimestamp": "2026-01-01T00:00:00Z", "ownerReferences": [owner] if owner else [],
                         "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1.27"}]}, "status": status}


def test_continue_token_is_read_from_the_page():
    assert decode.decode_list_meta(page([], cont="abc")) == "abc"
    assert decode.decode_list_meta(page([])) == ""


def test_unknown_fields_are_skipped_and_missing_ones_default():
    items = kinds.decode_page("Pod", page([pod("p1")])).items
    assert items[0].metadata.name == "p1"
    assert items[0].status.container_statuses[0].restart_count == 0
    empty = kinds.decode_page("Node", page([{"metadata": {"name": "bare", "uid": "u"}}])).items[0]
    assert empty.spec.provider_id == "" and empty.status.conditions == []


def test_a_page_that_is_not_json_is_a_clear_decode_error():
    with pytest.raises(decode.DecodeError, match="Pod list is not valid"):
        kinds.decode_page("Pod", b"<html>502 Bad Gateway</html>")


@pytest.mark.parametrize(("value", "expected"), [
    ("500m", Decimal("0.5")), ("2", Decimal(2)), ("16Gi", Decimal(16 * 2**30)), ("1000Ki", Decimal(1024000)),
    ("1e3", Decimal(1000)), ("128974848", Decimal(128974848)), ("1.5G", Decimal(1500000000)), ("", Decimal(0)),
])
def test_quantities(value, expected):
    assert decode.parse_quantity(value) == expected


def test_bad_quantity_is_an_error_but_node_fields_fall_back_to_zero():
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        decode.parse_quantity("lots")
    assert decode.cpu_millis("lots") == 0
    assert decode.cpu_millis("250m") == 250


@pytest.mark.parametrize(("provider_id", "labels", "expected"), [
    ("aws:///eu-west-1a/i-0abc", {}, "aws"),
    ("gce://proj/us-central1-a/gke-x", {}, "gce"),
    ("azure:///subscriptions/x/resourceGroups/y", {}, "azure"),
    ("cn-hangzhou.i-bp1abcdef012345", {}, "alibaba"),
    ("alicloud://cn-beijing.i-2ze", {}, "alibaba"),
    ("kind://docker/kind/kind-control-plane", {}, "kind"),
    ("k3s://node1", {}, "k3s"),
    ("", {"eks.amazonaws.com/nodegroup": "ng"}, "aws"),
    ("", {"cloud.google.com/gke-nodepool": "default"}, "gce"),
    ("", {"kubernetes.azure.com/cluster": "mc"}, "azure"),
    ("", {"alibabacloud.com/nodepool-id": "np"}, "alibaba"),
    ("", {"type": "kwok"}, "kwok"),
    ("openstack:///abc", {}, "other"),
    ("", {}, "unknown"),
])
def test_provider_detection(provider_id, labels, expected):
    assert nodefacts.detect_provider(provider_id, labels) == expected


def test_cluster_provider_is_the_majority_and_ignores_unknown():
    assert nodefacts.cluster_provider({"aws": 3, "unknown": 10, "other": 1}) == "aws"
    assert nodefacts.cluster_provider({}) == "unknown"


def test_pod_problems():
    ok = kinds.decode_page("Pod", page([pod("ok")])).items[0]
    assert decode.pod_problem(ok) is None
    crash_pod = pod("crash", ready=False, restarts=7, waiting="CrashLoopBackOff")
    crash = kinds.decode_page("Pod", page([crash_pod])).items[0]
    assert decode.pod_problem(crash) == ("CrashLoopBackOff", "back-off", 7, False, True)
    pending = kinds.decode_page("Pod", page([pod("pending", phase="Pending", ready=False)])).items[0]
    assert decode.pod_problem(pending)[0] == "Pending"
    restarted = kinds.decode_page("Pod", page([pod("restarted", restarts=2)])).items[0]
    assert decode.pod_problem(restarted)[0] == "Restarting"
    done = kinds.decode_page("Pod", page([pod("done", phase="Succeeded", ready=False)])).items[0]
    assert decode.pod_problem(done) is None


def test_pods_count_against_their_deployment_through_the_replicaset():
    snapshot = Snapshot()
    reader = _Reader(snapshot)
    reader.add("ReplicaSet", kinds.decode_page("ReplicaSet", page([{"metadata": {
        "name": "web-5d8f", "uid": "rs-1", "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "dep-1",
                                                                 "controller": True}]}}])).items)
    owner = {"kind": "ReplicaSet", "name": "web-5d8f", "uid": "rs-1", "controller": True}
    reader.add("Pod", kinds.decode_page("Pod", page([
        pod("web-5d8f-a", owner=owner), pod("web-5d8f-b", owner=owner, ready=False, waiting="CrashLoopBackOff",
                                            restarts=3)])).items)
    counts = snapshot.pods_by_workload["dep-1"]
    assert (counts.total, counts.ready, counts.crashlooping, counts.restarts) == (2, 1, 1, 3)
    assert snapshot.pods_by_namespace["shop"].total == 2
    assert [p["name"] for p in snapshot.problem_pods] == ["web-5d8f-b"]
    assert snapshot.problem_pods[0]["workload_kind"] == "Deployment"
    assert snapshot.problem_pods[0]["workload_name"] == "web"


def test_pod_template_normalization_keeps_what_policies_read():
    template = decode.PodTemplate(spec=kinds.decode_page("Deployment", page([{
        "metadata": {"name": "d", "uid": "u"},
        "spec": {"template": {"spec": {
            "hostNetwork": True, "hostPID": True, "volumes": [{"name": "p", "hostPath": {"path": "/proc"}}],
            "securityContext": {"runAsNonRoot": True},
            "containers": [{"name": "a", "image": "x:latest", "securityContext": {"privileged": True},
                            "livenessProbe": {"exec": {"command": ["true"]}}}],
            "initContainers": [{"name": "i", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}]}}}}])
    ).items[0].spec.template.spec)
    normalized = decode.normalize_template(template)
    assert normalized["host_network"] and normalized["host_pid"] and not normalized["host_ipc"]
    assert normalized["host_path_volumes"] == ["/proc"]
    main, init = normalized["containers"]
    assert main["privileged"] and main["liveness_probe"] and not main["readiness_probe"]
    assert main["run_as_non_root"] is True  # inherited from the pod
    assert init["init"] and init["limits"] == {"cpu": "1"}
