"""Well-known add-ons and their versions, found from the images a cluster's workloads run.

One table (`ADDONS`): each add-on names the image repositories that mark it (regular expressions on the
repository path, registry included, tag excluded). To teach Fleetweb another add-on, add a row. The version
is read from the image tag (`v1.11.3`, `1.11.3-eksbuild.1`, `v1.29.1-aliyun.1`); an image pinned by digest
only has version "unknown". Each sync stores what it found as `ClusterAddon` rows (`write`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

UNKNOWN = "unknown"


@dataclasses.dataclass(frozen=True)
class Addon:
    key: str
    name: str
    category: str  # dns, network, cni, ingress, certificates, autoscaling, monitoring, storage
    images: tuple[str, ...]  # regexes matched (search) against the image repository

    def matches(self, repository: str) -> bool:
        return any(re.search(pattern, repository) for pattern in self.images)


ADDONS: tuple[Addon, ...] = (
    Addon("coredns", "CoreDNS", "dns", (r"(^|/)coredns(/coredns)?$",)),
    Addon("kube-proxy", "kube-proxy", "network", (r"(^|/)kube-proxy(-amd64|-arm64)?$",)),
    Addon("metrics-server", "metrics-server", "monitoring", (r"(^|/)metrics-server(-amd64)?$",)),
    Addon("calico", "Calico", "cni", (r"(^|/)calico/node$", r"(^|/)calico-node$")),
    Addon("cilium", "Cilium", "cni", (r"(^|/)cilium/cilium$", r"(^|/)cilium$")),
    Addon("aws-vpc-cni", "AWS VPC CNI", "cni", (r"(^|/)amazon-k8s-cni$",)),
    Addon("azure-cni", "Azure CNI", "cni", (r"(^|/)azure-cns$", r"(^|/)azure-cni$")),
    Addon("terway", "Terway", "cni", (r"(^|/)terway(-controlplane)?$",)),
    Addon("flannel", "Flannel", "cni", (r"(^|/)flannel$", r"(^|/)flannel/flannel$")),
    Addon("ingress-nginx", "ingress-nginx", "ingress", (r"(^|/)ingress-nginx/controller$",)),
    Addon("traefik", "Traefik", "ingress", (r"(^|/)traefik$",)),
    Addon("cert-manager", "cert-manager", "certificates", (r"(^|/)cert-manager-controller$",)),
    Addon("external-dns", "ExternalDNS", "dns", (r"(^|/)external-dns$",)),
    Addon("cluster-autoscaler", "Cluster Autoscaler", "autoscaling", (r"(^|/)cluster-autoscaler$",)),
    Addon("karpenter", "Karpenter", "autoscaling", (r"(^|/)karpenter/controller$",)),
    Addon("aws-ebs-csi", "AWS EBS CSI driver", "storage", (r"(^|/)aws-ebs-csi-driver$",)),
    Addon("gce-pd-csi", "GCE PD CSI driver", "storage", (r"(^|/)gcp-compute-persistent-disk-csi-driver$",)),
    Addon("azuredisk-csi", "Azure Disk CSI driver", "storage", (r"(^|/)azuredisk-csi$",)),
    Addon("alicloud-csi", "Alibaba Cloud CSI plugin", "storage", (r"(^|/)csi-plugin$",)),
)
BY_KEY = {a.key: a for a in ADDONS}


def split_image(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag is "" when only a digest (or nothing) pins it."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, ""


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def version_of(tag: str) -> str:
    """The version a tag states, as v<major>.<minor>[.<patch>] ("unknown" when it states none)."""
    match = _VERSION.search(tag)
    if not match:
        return UNKNOWN
    return "v" + ".".join(part for part in match.groups() if part is not None)


def version_key(version: str) -> tuple[int, ...] | None:
    match = _VERSION.fullmatch(version)
    return tuple(int(p) for p in match.groups() if p is not None) if match else None


def detect(workloads: Iterable[dict]) -> list[dict]:
    """One row per add-on found: {addon, version, namespace, workload, kind, image}. Workload rows are the
    collector's (namespace, name, kind, images). An add-on running in two workloads gives two rows."""
    found: dict[tuple[str, str, str], dict] = {}
    for w in workloads:
        for image in w.get("images") or ():
            repository, tag = split_image(image)
            addon = next((a for a in ADDONS if a.matches(repository)), None)
            key = (addon.key if addon else "", w["namespace"], w["name"])
            if addon is not None and key not in found:  # its first matching image tells the version
                found[key] = {"addon": addon.key, "version": version_of(tag), "namespace": w["namespace"],
                              "workload": w["name"], "kind": w["kind"], "image": image[:512]}
    return sorted(found.values(), key=lambda r: (r["addon"], r["namespace"], r["workload"]))
