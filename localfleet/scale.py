"""Grow a running member for benchmarks: thousands of KWOK nodes and tens of thousands of pods.

Pods are created with `spec.nodeName` set (no scheduling), in parallel over pooled HTTPS
connections with plain JSON bodies: the `kubernetes` client's per-object validation would be the
bottleneck at this size. Every 150 pods belong to a ReplicaSet owned by a paused Deployment whose
replica counts equal the pods they own, so the collector's per-workload counting is exercised.
The controller-manager is stopped while they are written and started after: it then finds desired
equal to actual and leaves the pods alone (running it meanwhile would race the pod creation).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time

import urllib3

from localfleet import seed
from localfleet.member import Member

NAMESPACE = "scale"
PODS_PER_WORKLOAD = 150
SCALE_LEASE_SECONDS = 240


class _Http:
    """Thread-safe pooled HTTPS client with the member's admin certificate."""

    def __init__(self, member: Member, workers: int):
        pki = member.dir / "pki"
        self.base = member.server
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=workers, ca_certs=str(pki / "ca.crt"),
                                        cert_file=str(pki / "admin.crt"), key_file=str(pki / "admin.key"),
                                        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[429, 500,
                                                                                                             503, 504]),
                                        timeout=urllib3.Timeout(connect=5, read=60))

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        response = self.pool.request(method, self.base + path, body=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            return response.status, json.loads(response.data or b"{}")
        except ValueError:
            return response.status, {}

    def create(self, path: str, body: dict) -> None:
        status, answer = self.request("POST", path, body)
        if status not in (200, 201, 409):
            raise RuntimeError(f"POST {path} -> {status}: {answer.get('message', answer)}")


def _count(http: _Http, path: str) -> int:
    total, token = 0, ""
    while True:
        status, page = http.request("GET", f"{path}?limit=5000" + (f"&continue={token}" if token else ""))
        if status != 200:
            raise RuntimeError(f"GET {path} -> {status}")
        total += len(page.get("items", []))
        token = page.get("metadata", {}).get("continue", "")
        if not token:
            return total


def _not_running(http: _Http) -> int:
    """Pods of the scale namespace not yet Running, asking only for metadata of just those pods.

    Listing every pod whole to count the Running ones costs ~500 MB of JSON per poll at 150,000
    pods and slows the very apiserver being waited on.
    """
    count, token = 0, ""
    headers = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"}
    while True:
        url = (f"{http.base}/api/v1/namespaces/{NAMESPACE}/pods?limit=5000&fieldSelector=status.phase%21%3DRunning"
               + (f"&continue={token}" if token else ""))
        response = http.pool.request("GET", url, headers=headers)
        page = json.loads(response.data)
        if response.status != 200:
            raise RuntimeError(f"counting pods -> {response.status}: {page.get('message')}")
        count += len(page.get("items") or [])  # a metadata-only list with no items says "items": null
        token = page.get("metadata", {}).get("continue", "")
        if not token:
            return count


def _parallel(workers: int, fn, items) -> None:
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for future in concurrent.futures.as_completed([pool.submit(fn, item) for item in items]):
            future.result()


def scale(member: Member, profile: dict, *, nodes: int, pods: int, workers: int, say) -> dict:
    """Grow to `nodes` nodes and `pods` pods in the scale namespace; report times, rates and memory."""
    started = time.monotonic()
    if member.profile.get("node_lease_seconds") != SCALE_LEASE_SECONDS:
        # Longer leases: 1,000 nodes renewing every 10 s would keep 2 cores busy with lease updates alone.
        member.profile["node_lease_seconds"] = SCALE_LEASE_SECONDS
        member.stop_component("kwok")
        member.start_component("kwok")
    http = _Http(member, workers)
    have_nodes = _count(http, "/api/v1/nodes")
    t0 = time.monotonic()
    if nodes > have_nodes:
        say(f"{member.name}: creating {nodes - have_nodes} nodes")
        _parallel(workers, lambda i: http.create("/api/v1/nodes", seed.node_body(profile, i, cluster=member.name)),
                  range(have_nodes, nodes))
    node_seconds = time.monotonic() - t0
    member.profile["nodes"] = max(nodes, have_nodes)
    member.save()

    http.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    api = seed.api_client(member.kubeconfig("admin"))
    try:
        seed._wait_default_service_account(api, [NAMESPACE])
    finally:
        api.close()
    node_names = [f"{member.name}-node-{i:05d}" for i in range(member.profile["nodes"])]
    have_pods = _count(http, f"/api/v1/namespaces/{NAMESPACE}/pods")
    sizes = [min(PODS_PER_WORKLOAD, pods - start) for start in range(0, pods, PODS_PER_WORKLOAD)]
    member.stop_component("kube-controller-manager")
    owners = _ensure_owners(http, sizes, workers)
    t1 = time.monotonic()
    created = 0
    lock = threading.Lock()

    def create_pod(i: int) -> None:
        nonlocal created
        w = i // PODS_PER_WORKLOAD
        rs_name, rs_uid = owners[w]
        http.create(f"/api/v1/namespaces/{NAMESPACE}/pods", {
            "metadata": {"name": f"{rs_name}-{i:06d}", "labels": {"app": f"bench-{w}", "pod-template-hash": "static"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                              "uid": rs_uid, "controller": True}]},
            "spec": {"nodeName": node_names[i % len(node_names)], "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": f"registry.example.com/bench/app-{w % 20}:1.{w % 7}",
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
        })
        with lock:
            created += 1
            if created % 5000 == 0:
                say(f"{member.name}: {created} pods created ({created / (time.monotonic() - t1):.0f}/s)")

    if pods > have_pods:
        say(f"{member.name}: creating {pods - have_pods} pods on {len(node_names)} nodes")
        _parallel(workers, create_pod, range(have_pods, pods))
    pod_seconds = time.monotonic() - t1
    member.start_component("kube-controller-manager")
    t2 = time.monotonic()
    deadline = max(900, pods / 20)  # KWOK on 2 cores makes ~90 pods/s Running; give it room
    pending = _not_running(http)
    while pending and time.monotonic() - t2 < deadline:
        time.sleep(15)
        pending = _not_running(http)
    running = pods - pending
    ready_seconds = time.monotonic() - t2
    result = {
        "member": member.name, "nodes": member.profile["nodes"], "pods": pods, "pods_running": running,
        "node_create_seconds": round(node_seconds, 1), "pod_create_seconds": round(pod_seconds, 1),
        "pods_per_second": round((pods - have_pods) / pod_seconds, 1) if pods > have_pods and pod_seconds else None,
        "until_all_running_seconds": round(ready_seconds, 1), "total_seconds": round(time.monotonic() - started, 1),
        "member_rss_mib": round(member.rss_bytes() / 2**20),
        "etcd_db_mib": round((member.dir / "etcd" / "member" / "snap" / "db").stat().st_size / 2**20),
    }
    say(f"{member.name}: {result}")
    return result


def _ensure_owners(http: _Http, sizes: list[int], workers: int) -> list[tuple[str, str]]:
    """A paused Deployment and its ReplicaSet per group of pods, replicas equal to the group's size."""
    owners: list[tuple[str, str]] = [("", "")] * len(sizes)

    def make(w: int) -> None:
        labels = {"app": f"bench-{w}"}
        spec = {"containers": [{"name": "app", "image": f"registry.example.com/bench/app-{w % 20}:1.{w % 7}"}]}
        http.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", {
            "metadata": {"name": f"bench-{w}", "labels": labels},
            "spec": {"replicas": sizes[w], "paused": True, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}})
        _, deployment = http.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/bench-{w}")
        rs_name = f"bench-{w}-static"
        rs_labels = {**labels, "pod-template-hash": "static"}
        http.create(f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets", {
            "metadata": {"name": rs_name, "labels": rs_labels,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": f"bench-{w}",
                                              "uid": deployment["metadata"]["uid"], "controller": True}]},
            "spec": {"replicas": sizes[w], "selector": {"matchLabels": rs_labels},
                     "template": {"metadata": {"labels": rs_labels}, "spec": spec}}})
        _, rs = http.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/replicasets/{rs_name}")
        owners[w] = (rs_name, rs["metadata"]["uid"])

    _parallel(min(workers, 16), make, range(len(sizes)))
    return owners
