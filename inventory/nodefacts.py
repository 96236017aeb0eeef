"""What a node's labels and provider ID say: its cloud provider, node pool and roles (the collector stores them)."""

from __future__ import annotations

import re

from inventory.choices import Provider


def detect_provider(provider_id: str, labels: dict[str, str]) -> str:
    """Provider of a node from its providerID or labels (ACK, EKS, GKE, AKS, kind, k3s, KWOK, other)."""
    pid = provider_id.lower()
    prefixes = (("aws://", Provider.AWS), ("gce://", Provider.GCE), ("azure://", Provider.AZURE),
                ("alicloud://", Provider.ALIBABA), ("kind://", Provider.KIND), ("k3s://", Provider.K3S),
                ("kwok://", Provider.KWOK))
    for prefix, provider in prefixes:
        if pid.startswith(prefix):
            return provider
    # ACK nodes: "<region-id>.<instance-id>", e.g. "cn-hangzhou.i-bp1abc…"
    if re.match(r"^[a-z]{2}-[a-z]+(?:-\d+)?\.i-[0-9a-z]+$", pid):
        return Provider.ALIBABA
    label_hints = (("eks.amazonaws.com/", Provider.AWS), ("cloud.google.com/gke", Provider.GCE),
                   ("kubernetes.azure.com/", Provider.AZURE), ("alibabacloud.com/", Provider.ALIBABA),
                   ("node.k3s.io/", Provider.K3S), ("kwok.x-k8s.io/", Provider.KWOK))
    for key in labels:
        for hint, provider in label_hints:
            if key.startswith(hint):
                return provider
    if labels.get("node.kubernetes.io/instance-type") == "k3s":
        return Provider.K3S
    if labels.get("type") == "kwok":
        return Provider.KWOK
    return Provider.OTHER if pid else Provider.UNKNOWN


def cluster_provider(node_providers: dict[str, int]) -> str:
    """The provider most nodes report; unknown when there are no nodes."""
    known = {p: n for p, n in node_providers.items() if p != Provider.UNKNOWN}
    if not known:
        return Provider.UNKNOWN
    return max(sorted(known), key=lambda p: known[p])


# Where each provider says which node pool a node belongs to, first match wins; FLEETWEB_NODE_POOL_LABEL is
# asked first (k3s, kind, kubeadm and others have no such label of their own). Add a row for a new provider.
NODE_POOL_LABELS = (
    "eks.amazonaws.com/nodegroup",      # EKS managed node groups
    "karpenter.sh/nodepool",            # Karpenter (EKS, AKS node auto-provisioning)
    "cloud.google.com/gke-nodepool",    # GKE
    "kubernetes.azure.com/agentpool",   # AKS
    "agentpool",                        # AKS, older clusters
    "alibabacloud.com/nodepool-id",     # ACK
    "node.kubernetes.io/pool",          # a common convention elsewhere
)
DEFAULT_POOL = "default"


def node_pool(labels: dict[str, str], configured: str = "") -> str:
    """The node's pool from its provider's labels, or "default"."""
    for key in ((configured,) if configured else ()) + NODE_POOL_LABELS:
        value = labels.get(key)
        if value:
            return value[:128]
    return DEFAULT_POOL


def node_roles(labels: dict[str, str]) -> list[str]:
    roles = sorted(key.split("/", 1)[1] for key in labels if key.startswith("node-role.kubernetes.io/"))
    if labels.get("kubernetes.io/role"):
        roles.append(labels["kubernetes.io/role"])
    return [r for r in roles if r] or []
