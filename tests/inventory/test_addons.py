"""Add-ons: the table that finds them from images (one row per provider's real image names), the fleet matrix
and the API, scoped like the clusters, and the addon-baseline rule."""

from __future__ import annotations

import datetime

import pytest

from governance import rules
from inventory.addons import UNKNOWN, detect, split_image, version_of
from inventory.models import ClusterAddon, Team, TeamMember
from tests.builders import make_cluster, make_user


@pytest.mark.parametrize(("image", "addon", "version"), [
    ("registry.k8s.io/coredns/coredns:v1.11.3", "coredns", "v1.11.3"),
    ("602401143452.dkr.ecr.eu-west-1.amazonaws.com/eks/coredns:v1.11.4-eksbuild.2", "coredns", "v1.11.4"),
    ("registry-cn-hangzhou.ack.aliyuncs.com/acs/coredns:v1.11.3.9-c9a7e5d-aliyun", "coredns", "v1.11.3"),
    ("mcr.microsoft.com/oss/kubernetes/coredns:v1.9.4-2", "coredns", "v1.9.4"),
    ("registry.k8s.io/kube-proxy:v1.35.4", "kube-proxy", "v1.35.4"),
    ("gke.gcr.io/kube-proxy-amd64:v1.35.4-gke.1", "kube-proxy", "v1.35.4"),
    ("registry.k8s.io/metrics-server/metrics-server:v0.7.2", "metrics-server", "v0.7.2"),
    ("docker.io/calico/node:v3.29.1", "calico", "v3.29.1"),
    ("quay.io/cilium/cilium:v1.16.5@sha256:758ca0793f5995bb938a2fa219dcce63dc0b3fa7fc4ce5cc851125281fb7361d",
     "cilium", "v1.16.5"),
    ("602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.2", "aws-vpc-cni", "v1.19.2"),
    ("mcr.microsoft.com/containernetworking/azure-cns:v1.6.13", "azure-cni", "v1.6.13"),
    ("registry-cn-hangzhou.ack.aliyuncs.com/acs/terway:v1.9.4", "terway", "v1.9.4"),
    ("ghcr.io/flannel-io/flannel:v0.26.1", "flannel", "v0.26.1"),
    ("registry.k8s.io/ingress-nginx/controller:v1.12.0@sha256:e6b8de175acda6ca913891f0f727bca4527e797d52688cbe9fec9040d6f6b6fa",
     "ingress-nginx", "v1.12.0"),
    ("docker.io/traefik:v3.2.3", "traefik", "v3.2.3"),
    ("quay.io/jetstack/cert-manager-controller:v1.16.2", "cert-manager", "v1.16.2"),
    ("registry.k8s.io/external-dns/external-dns:v0.15.1", "external-dns", "v0.15.1"),
    ("registry.k8s.io/autoscaling/cluster-autoscaler:v1.31.1", "cluster-autoscaler", "v1.31.1"),
    ("public.ecr.aws/karpenter/controller:1.1.1", "karpenter", "v1.1.1"),
    ("public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.38.1", "aws-ebs-csi", "v1.38.1"),
    ("gke.gcr.io/gcp-compute-persistent-disk-csi-driver:v1.15.3-gke.0", "gce-pd-csi", "v1.15.3"),
    ("mcr.microsoft.com/oss/kubernetes-csi/azuredisk-csi:v1.31.2", "azuredisk-csi", "v1.31.2"),
    ("registry-cn-hangzhou.ack.aliyuncs.com/acs/csi-plugin:v1.32.1-aliyun", "alicloud-csi", "v1.32.1"),
    ("localhost:5000/coredns/coredns:1.11.1", "coredns", "v1.11.1"),
])
def test_the_table_finds_each_addon_and_its_version(image, addon, version):
    [found] = detect([{"namespace": "kube-system", "name": "x", "kind": "Deployment", "images": [image]}])
    assert (found["addon"], found["version"]) == (addon, version)


@pytest.mark.parametrize("image", ["nginx:1.27", "registry.example.com/shop/frontend:3.2.0", "busybox:latest",
                                   "registry.example.com/not-coredns:1.0", "quay.io/prometheus/node-exporter:v1.8.2"])
def test_other_images_are_no_addon(image):
    assert detect([{"namespace": "default", "name": "x", "kind": "Deployment", "images": [image]}]) == []


def test_digest_only_and_one_row_per_workload():
    assert split_image("localhost:5000/coredns@sha256:abc") == ("localhost:5000/coredns", "")
    assert version_of("") == UNKNOWN and version_of("latest") == UNKNOWN
    rows = detect([{"namespace": "kube-system", "name": "calico-node", "kind": "DaemonSet",
                    "images": ["calico/node:v3.29.1", "calico/node:v3.28.0"]},
                   {"namespace": "kube-system", "name": "coredns", "kind": "Deployment",
                    "images": ["registry.k8s.io/coredns/coredns@sha256:" + "9c" * 32]}])
    assert [(r["addon"], r["version"]) for r in rows] == [("calico", "v3.29.1"), ("coredns", UNKNOWN)]


def ctx(*addons) -> rules.Context:
    return rules.Context(cluster_name="c", kubernetes_version="v1.35.4", today=datetime.date(2026, 12, 1),
                         addons=[{"addon": a, "version": v, "namespace": "kube-system", "workload": a,
                                  "kind": "Deployment"} for a, v in addons])


def test_addon_baseline_rule():
    rule = rules.get("addon-baseline")
    params = rule.clean_params({"minimums": "coredns=v1.11.1\ncilium=1.15"})
    findings = list(rule.check(ctx(("coredns", "v1.9.4"), ("coredns", "v1.11.3"), ("cilium", "v1.16.5"),
                                   ("kube-proxy", "v1.20.0"), ("cilium", UNKNOWN)), params))
    assert [f.message for f in findings] == [
        "CoreDNS v1.9.4 is below the baseline v1.11.1",
        "Cilium's version cannot be read from its image (pinned by digest?); the baseline is v1.15"]
    assert not rule.enforceable and rule.needs_input
    with pytest.raises(rules.ParamError) as refused:
        rule.clean_params({"minimums": "kube-dns=v1.0"})
    assert "'kube-dns' is not an add-on Fleetweb knows" in refused.value.errors["minimums"]
    with pytest.raises(rules.ParamError):
        rule.clean_params({"minimums": "coredns=latest"})


@pytest.mark.django_db
def test_matrix_and_api_are_scoped(client, viewer, api_as):
    pay = make_cluster("pay-prod", owner="payments", environment="prod")
    shop = make_cluster("shop-dev", owner="shop")
    for cluster, version in ((pay, "v1.11.3"), (shop, "v1.9.4")):
        ClusterAddon.objects.create(cluster=cluster, addon="coredns", version=version, namespace="kube-system",
                                    workload="coredns", kind="Deployment", image=f"coredns/coredns:{version}")
    ClusterAddon.objects.create(cluster=pay, addon="cilium", version="v1.16.5", namespace="kube-system",
                                workload="cilium", kind="DaemonSet", image="cilium/cilium:v1.16.5")
    client.force_login(viewer)
    page = client.get("/addons/").content.decode()
    assert 'data-addon="coredns"' in page and 'data-addon="cilium"' in page and "v1.9.4" in page
    prod = client.get("/addons/?environment=prod", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-cluster="pay-prod"' in prod and "shop-dev" not in prod
    assert api_as(viewer).get("/api/v1/addons/?addon=coredns&version=v1.9").json()["count"] == 1
    team = Team.objects.create(name="payments", selector="owner=payments")
    member = make_user("pat")
    TeamMember.objects.create(team=team, user=member, role="viewer")
    client.force_login(member)
    mine = client.get("/addons/").content.decode()
    assert 'data-cluster="pay-prod"' in mine and "shop-dev" not in mine and "v1.9.4" not in mine
    assert {r["cluster_name"] for r in api_as(member).get("/api/v1/addons/").json()["results"]} == {"pay-prod"}
