"""Fill a member cluster with realistic content: KWOK nodes shaped like a cloud provider's, namespaces,
workloads (some violating common policies), and Fleetweb's least-privilege reader token."""

from __future__ import annotations

import concurrent.futures
import secrets
import time

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

# Provider shapes: providerID, labels and node info as each cloud's nodes report them; each member's nodes
# alternate between two node pools labelled as the provider labels them, on two kubelet versions.
PROFILES = [
    {"key": "aws-eu-west", "provider": "aws", "region": "eu-west-1",
     "zones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
     "instance_types": ["m6i.xlarge", "m6i.2xlarge"], "os_image": "Amazon Linux 2023.6.20250115",
     "kernel": "6.1.119-129.201.amzn2023.x86_64", "runtime": "containerd://1.7.27", "cpu": "4", "memory": "16Gi",
     "extra_labels": {}, "apiserver": "v1.36.3",
     "pools": [{"labels": {"eks.amazonaws.com/nodegroup": "general"}, "kubelet": "v1.35.4"},
               {"labels": {"karpenter.sh/nodepool": "spot", "karpenter.sh/capacity-type": "spot"},
                "kubelet": "v1.36.3"}],
     "addons": [("Deployment", "coredns",
                 "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/coredns:v1.11.4-eksbuild.2"),
                ("DaemonSet", "kube-proxy",
                 "602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/kube-proxy:v1.35.4-minimal-eksbuild.1"),
                ("DaemonSet", "aws-node", "602401143452.dkr.ecr.eu-west-1.amazonaws.com/amazon-k8s-cni:v1.19.2")],
     "environment": "prod", "broken": False},
    {"key": "ack-hangzhou", "provider": "alibaba", "region": "cn-hangzhou", "zones": ["cn-hangzhou-h", "cn-hangzhou-i"],
     "instance_types": ["ecs.g7.xlarge"], "os_image": "Alibaba Cloud Linux 3.2104 U10",
     "kernel": "5.10.134-17.al8.x86_64", "runtime": "containerd://1.6.36", "cpu": "4", "memory": "16Gi",
     "extra_labels": {}, "apiserver": "v1.35.4",
     "pools": [{"labels": {"alibabacloud.com/nodepool-id": "np5b7c0d"}, "kubelet": "v1.35.4"},
               {"labels": {"alibabacloud.com/nodepool-id": "np9e1f2a3"}, "kubelet": "v1.34.4"}],
     "addons": [("Deployment", "coredns",
                 "registry-cn-hangzhou.ack.aliyuncs.com/acs/coredns:v1.11.3.9-c9a7e5d-aliyun"),
                ("DaemonSet", "terway-eniip", "registry-cn-hangzhou.ack.aliyuncs.com/acs/terway:v1.9.4"),
                ("DaemonSet", "kube-proxy-worker",
                 "registry-cn-hangzhou.ack.aliyuncs.com/acs/kube-proxy:v1.35.4-aliyun.1")],
     "environment": "staging", "broken": True},
    {"key": "gke-us-central", "provider": "gce", "region": "us-central1", "zones": ["us-central1-a", "us-central1-b"],
     "instance_types": ["e2-standard-4"], "os_image": "Container-Optimized OS from Google",
     "kernel": "6.6.56+", "runtime": "containerd://1.7.24", "cpu": "4", "memory": "16Gi",
     # The newest release, serving one deprecated API (removed in v1.38) for the upgrade-readiness tests.
     "extra_labels": {}, "apiserver": "v1.37.2", "runtime_config": "resource.k8s.io/v1beta1=true",
     "pools": [{"labels": {"cloud.google.com/gke-nodepool": "default-pool"}, "kubelet": "v1.34.4"},
               {"labels": {"cloud.google.com/gke-nodepool": "highmem-pool"}, "kubelet": "v1.35.4"}],
     "addons": [("DaemonSet", "anetd", "gke.gcr.io/cilium/cilium:v1.15.10-gke.1200"),
                ("Deployment", "metrics-server-v1.37", "gke.gcr.io/metrics-server:v0.7.1-gke.23"),
                ("Deployment", "kube-dns", "gke.gcr.io/coredns/coredns:v1.10.1-gke.2")],
     "environment": "dev", "broken": False},
    {"key": "aks-westeurope", "provider": "azure", "region": "westeurope", "zones": ["westeurope-1", "westeurope-2"],
     "instance_types": ["Standard_D4s_v5"], "os_image": "Ubuntu 22.04.5 LTS", "kernel": "5.15.0-1079-azure",
     "runtime": "containerd://1.7.25-1", "cpu": "4", "memory": "16Gi",
     "extra_labels": {"kubernetes.azure.com/cluster": "MC_rg_aks_westeurope"}, "apiserver": "v1.36.3",
     "pools": [{"labels": {"kubernetes.azure.com/agentpool": "nodepool1", "agentpool": "nodepool1"},
                "kubelet": "v1.36.3"},
               {"labels": {"kubernetes.azure.com/agentpool": "userpool", "agentpool": "userpool"},
                "kubelet": "v1.35.4"}],
     "addons": [("Deployment", "coredns", "mcr.microsoft.com/oss/kubernetes/coredns:v1.9.4-2"),
                ("DaemonSet", "azure-cns", "mcr.microsoft.com/containernetworking/azure-cns:v1.6.13"),
                ("DaemonSet", "kube-proxy", "mcr.microsoft.com/oss/kubernetes/kube-proxy:v1.36.3-hotfix.20251001")],
     "environment": "prod", "broken": False},
]

READER_NAMESPACE = "fleetweb-system"
READER_NAME = "fleetweb-reader"


def api_client(kubeconfig: dict) -> k8s.ApiClient:
    return k8s_config.new_client_from_config_dict(kubeconfig)


def _provider_id(profile: dict, zone: str, index: int) -> str:
    token = secrets.token_hex(8)
    provider = profile["provider"]
    if provider == "aws":
        return f"aws:///{zone}/i-0{token}"
    if provider == "alibaba":
        return f"{profile['region']}.i-bp1{token[:14]}"
    if provider == "gce":
        return f"gce://fleet-demo/{zone}/gke-fleet-default-pool-{token[:8]}-{index:04d}"
    if provider == "azure":
        return ("azure:///subscriptions/0000/resourceGroups/mc_rg/providers/Microsoft.Compute/"
                f"virtualMachineScaleSets/aks-nodepool1/virtualMachines/{index}")
    return f"kwok://{token}"


def node_body(profile: dict, index: int, *, cluster: str) -> dict:
    zone = profile["zones"][index % len(profile["zones"])]
    instance = profile["instance_types"][index % len(profile["instance_types"])]
    pool = profile["pools"][index % len(profile["pools"])]
    name = f"{cluster}-node-{index:05d}"
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/region": profile["region"], "topology.kubernetes.io/zone": zone,
        "node.kubernetes.io/instance-type": instance, "type": "kwok", **profile["extra_labels"], **pool["labels"],
    }
    resources = {"cpu": profile["cpu"], "memory": profile["memory"], "pods": "110"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
        "spec": {"providerID": _provider_id(profile, zone, index)},
        "status": {
            "capacity": resources, "allocatable": resources,
            "nodeInfo": {"kubeletVersion": pool["kubelet"], "kubeProxyVersion": pool["kubelet"],
                         "osImage": profile["os_image"], "kernelVersion": profile["kernel"],
                         "containerRuntimeVersion": profile["runtime"], "architecture": "amd64",
                         "operatingSystem": "linux", "bootID": secrets.token_hex(16),
                         "machineID": secrets.token_hex(16), "systemUUID": secrets.token_hex(16)},
        },
    }


def _create(fn, *args, replace=None, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:  # already there: seeding is idempotent
            raise
        if replace is not None:  # RBAC follows Fleetweb's manifest when a member outlives a change of it
            replace(*args, **kwargs)


def create_nodes(api: k8s.ApiClient, profile: dict, *, cluster: str, start: int, count: int, workers: int = 16) -> None:
    core = k8s.CoreV1Api(api)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: _create(core.create_node, node_body(profile, i, cluster=cluster)),
                      range(start, start + count)))


def _container(name: str, image: str, *, limits: bool = True, privileged: bool = False, probes: bool = True,
               non_root: bool = False) -> dict:
    container: dict = {"name": name, "image": image}
    if limits:
        container["resources"] = {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "500m", "memory": "256Mi"}}
    if privileged:
        container["securityContext"] = {"privileged": True}
    elif non_root:
        container["securityContext"] = {"runAsNonRoot": True, "runAsUser": 10001, "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
    if probes:
        container["readinessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
        container["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
    return container


def _deployment(namespace: str, name: str, replicas: int, containers: list[dict], **pod_spec) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {**labels, "team": namespace}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": containers, **pod_spec}}}}


def _addons(profile: dict) -> list[dict]:
    """The provider's system add-ons in kube-system (CoreDNS, kube-proxy, its CNI …), at its versions."""
    docs = []
    for kind, name, image in profile.get("addons", ()):
        labels = {"k8s-app": name}
        # Container names may not hold dots (GKE's metrics-server-v1.37 workload runs a container "metrics-server").
        container = name.split("-v1.")[0]
        pod = {"metadata": {"labels": labels}, "spec": {"containers": [_container(container, image)]}}
        spec: dict = {"selector": {"matchLabels": labels}, "template": pod}
        if kind == "Deployment":
            spec["replicas"] = 1
        docs.append({"apiVersion": "apps/v1", "kind": kind,
                     "metadata": {"name": name, "namespace": "kube-system", "labels": labels}, "spec": spec})
    return docs


def workloads(profile: dict) -> list[dict]:
    """The demo content: healthy apps, policy violations, the provider's add-ons, and (on 'broken' profiles) a
    stuck Deployment."""
    docs: list[dict] = [*_addons(profile),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "payments", "labels": {"team": "payments", "pod-security.kubernetes.io/enforce": "baseline"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {
            "name": "monitoring", "labels": {"pod-security.kubernetes.io/enforce": "privileged"}}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "legacy"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "batch"}},
        # Only payments is fenced in: the other namespaces break the quota and LimitRange policies.
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "payments", "namespace": "payments"},
         "spec": {"hard": {"requests.cpu": "8", "requests.memory": "16Gi", "pods": "100"}}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "payments"},
         "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
                              "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]}},
        _deployment("shop", "frontend", 3, [_container("web", "registry.example.com/shop/frontend:3.2.0")]),
        # Missing requests/limits: a common policy violation.
        _deployment("shop", "cart", 2, [_container("cart", "registry.example.com/shop/cart:2.4.1", limits=False)]),
        _deployment("payments", "api", 2, [_container("api", "registry.example.com/payments/api:1.9.3",
                                                      non_root=True)]),
        # Privileged container and a :latest image.
        _deployment("legacy", "old-admin", 1, [_container("admin", "busybox:latest", privileged=True, probes=False,
                                                          limits=False)]),
        {"apiVersion": "apps/v1", "kind": "StatefulSet",
         "metadata": {"name": "ledger-db", "namespace": "payments", "labels": {"app": "ledger-db"}},
         "spec": {"replicas": 2, "serviceName": "ledger-db", "selector": {"matchLabels": {"app": "ledger-db"}},
                  "template": {"metadata": {"labels": {"app": "ledger-db"}},
                               "spec": {"containers": [_container("postgres", "postgres:16.4")]}}}},
        # hostNetwork/hostPID/hostPath: typical of node agents, flagged by baseline policies.
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": "node-exporter", "namespace": "monitoring", "labels": {"app": "node-exporter"}},
         "spec": {"selector": {"matchLabels": {"app": "node-exporter"}},
                  "template": {"metadata": {"labels": {"app": "node-exporter"}},
                               "spec": {"hostNetwork": True, "hostPID": True,
                                        "volumes": [{"name": "proc", "hostPath": {"path": "/proc"}}],
                                        "containers": [_container("exporter",
                                                                  "quay.io/prometheus/node-exporter:v1.8.2")]}}}},
        {"apiVersion": "batch/v1", "kind": "CronJob",
         "metadata": {"name": "nightly-report", "namespace": "batch"},
         "spec": {"schedule": "30 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {
             "restartPolicy": "OnFailure", "containers": [_container("report", "busybox:1.36", probes=False)]}}}}}},
        {"apiVersion": "batch/v1", "kind": "Job",
         "metadata": {"name": "schema-migrate", "namespace": "batch"},
         "spec": {"template": {"spec": {"restartPolicy": "Never",
                                        "containers": [_container("migrate", "registry.example.com/tools/migrate:5",
                                                                  probes=False)]}}}},
    ]
    if profile.get("broken"):
        # Asks for a node pool that does not exist: its pods stay Pending and the cluster is degraded.
        docs.append(_deployment("shop", "recommendations", 2,
                                [_container("rec", "registry.example.com/shop/recommendations:0.9.0")],
                                nodeSelector={"node.kubernetes.io/instance-type": "gpu-a100"}))
    return docs


def apply_docs(api: k8s.ApiClient, docs: list[dict], *, refused: list[str] | None = None) -> None:
    """Create each object (409 means it exists: seeding is idempotent). With `refused`, an object the member's
    admission refuses (403/422) is named there and skipped instead of raising."""
    core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
    rbac = k8s.RbacAuthorizationV1Api(api)
    for doc in docs:
        kind, ns = doc["kind"], doc["metadata"].get("namespace")
        create = {
            "Namespace": lambda d: core.create_namespace(d),
            "ServiceAccount": lambda d, ns=ns: core.create_namespaced_service_account(ns, d),
            "Secret": lambda d, ns=ns: core.create_namespaced_secret(ns, d),
            "ResourceQuota": lambda d, ns=ns: core.create_namespaced_resource_quota(ns, d),
            "LimitRange": lambda d, ns=ns: core.create_namespaced_limit_range(ns, d),
            "ClusterRole": lambda d: rbac.create_cluster_role(d),
            "ClusterRoleBinding": lambda d: rbac.create_cluster_role_binding(d),
            "Deployment": lambda d, ns=ns: apps.create_namespaced_deployment(ns, d),
            "StatefulSet": lambda d, ns=ns: apps.create_namespaced_stateful_set(ns, d),
            "DaemonSet": lambda d, ns=ns: apps.create_namespaced_daemon_set(ns, d),
            "CronJob": lambda d, ns=ns: batch.create_namespaced_cron_job(ns, d),
            "Job": lambda d, ns=ns: batch.create_namespaced_job(ns, d),
        }[kind]
        replace = {
            "ClusterRole": lambda d: rbac.replace_cluster_role(d["metadata"]["name"], d),
            "ClusterRoleBinding": lambda d: rbac.replace_cluster_role_binding(d["metadata"]["name"], d),
        }.get(kind)
        try:
            _create(create, doc, replace=replace)
        except ApiException as exc:
            if refused is None or exc.status not in (403, 422):
                raise
            refused.append(f"{kind} {ns + '/' if ns else ''}{doc['metadata']['name']}")


def _wait_default_service_account(api: k8s.ApiClient, namespaces: list[str], timeout: float = 60) -> None:
    """Pods need the `default` ServiceAccount, which the controller-manager creates per namespace."""
    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    for ns in namespaces:
        while True:
            try:
                core.read_namespaced_service_account("default", ns)
                break
            except ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(0.3)


def seed(api: k8s.ApiClient, profile: dict, *, cluster: str, nodes: int) -> list[str]:
    """Nodes, namespaces and workloads; safe to run again. Returns the demo objects the member refused (an
    enforced Fleetweb policy's admission check, say): they are left out, never a reason not to start."""
    create_nodes(api, profile, cluster=cluster, start=0, count=nodes)
    docs = workloads(profile)
    namespaces = [d for d in docs if d["kind"] == "Namespace"]
    refused: list[str] = []
    apply_docs(api, namespaces, refused=refused)
    _wait_default_service_account(api, [d["metadata"]["name"] for d in namespaces
                                        if f"Namespace {d['metadata']['name']}" not in refused])
    apply_docs(api, [d for d in docs if d["kind"] != "Namespace"], refused=refused)
    return refused


def install_reader(api: k8s.ApiClient, timeout: float = 60) -> str:
    """Apply Fleetweb's least-privilege manifest and return the reader's token (from its Secret)."""
    import yaml

    from inventory.access import least_privilege_manifest

    docs = list(yaml.safe_load_all(least_privilege_manifest(READER_NAMESPACE, READER_NAME)))
    apply_docs(api, [d for d in docs if d["kind"] == "Namespace"])
    _wait_default_service_account(api, [READER_NAMESPACE])
    apply_docs(api, [d for d in docs if d["kind"] != "Namespace"])
    return wait_token(api, f"{READER_NAME}-token", timeout=timeout)


def wait_token(api: k8s.ApiClient, secret: str, *, timeout: float = 60) -> str:
    """The token the controller-manager writes into a service-account-token Secret."""
    import base64

    core = k8s.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = core.read_namespaced_secret(secret, READER_NAMESPACE).data or {}
        if data.get("token"):
            return base64.b64decode(data["token"]).decode()
        time.sleep(0.3)
    raise TimeoutError(f"Secret {READER_NAMESPACE}/{secret} got no token within {timeout:.0f}s "
                       "(is the controller-manager running?)")


def revoke_reader_token(api: k8s.ApiClient) -> None:
    """Delete the reader's token Secret: the API server rejects the token from then on (401)."""
    k8s.CoreV1Api(api).delete_namespaced_secret(f"{READER_NAME}-token", READER_NAMESPACE)


def restore_reader_token(api: k8s.ApiClient) -> str:
    """A new token Secret for the reader (after `revoke_reader_token`)."""
    import yaml

    from inventory.access import least_privilege_manifest

    docs = [d for d in yaml.safe_load_all(least_privilege_manifest(READER_NAMESPACE, READER_NAME))
            if d["kind"] == "Secret"]
    deadline = time.monotonic() + 30
    while True:  # the old Secret may still be terminating
        try:
            apply_docs(api, docs)
            core = k8s.CoreV1Api(api)
            core.read_namespaced_secret(f"{READER_NAME}-token", READER_NAMESPACE)
            break
        except ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return wait_token(api, f"{READER_NAME}-token")


def wait_ready(api: k8s.ApiClient, *, nodes: int, timeout: float = 180) -> dict:
    """Wait until all nodes are Ready and every Deployment meant to run is available."""
    core, apps = k8s.CoreV1Api(api), k8s.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    last: dict = {}
    while time.monotonic() < deadline:
        node_list = core.list_node().items
        ready = sum(1 for n in node_list if n.status and any(c.type == "Ready" and c.status == "True"
                                                             for c in (n.status.conditions or [])))
        pending = []
        for d in apps.list_deployment_for_all_namespaces().items:
            meta, status, spec = d.metadata, d.status, d.spec
            if meta is None or meta.name == "recommendations":
                continue  # deliberately unschedulable
            if ((status.available_replicas if status else 0) or 0) < ((spec.replicas if spec else 0) or 0):
                pending.append(f"{meta.namespace}/{meta.name}")
        last = {"nodes_ready": ready, "nodes": len(node_list), "deployments_pending": pending}
        if ready >= nodes and not pending:
            return last
        time.sleep(0.5)
    raise TimeoutError(f"member not ready within {timeout:.0f}s: {last}")
