"""In a real browser: the fleet's node pools filtered by kubelet version (the table swapped by HTMX), a cluster's
Node pools tab, and the add-on matrix filtered by environment."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inventory.models import ClusterAddon, Node
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_node_pools_and_addons_pages(page, live_server, screenshot):
    make_user("vera-viewer", "viewer")
    for name, env, pools, coredns in (("eks-prod", "prod", (("general", "v1.35.4"), ("spot", "v1.34.4")), "v1.11.4"),
                                      ("gke-dev", "dev", (("default-pool", "v1.35.4"),), "v1.10.1")):
        cluster = make_cluster(name, environment=env)
        for pool, kubelet in pools:
            for i in range(2):
                Node.objects.create(cluster=cluster, uid=f"{name}-{pool}-{i}", name=f"{name}-{pool}-{i}", pool=pool,
                                    kubelet_version=kubelet, ready=True, instance_type="m6i.xlarge",
                                    zone="eu-west-1a", cpu_allocatable_millis=4000,
                                    memory_allocatable_bytes=16 * 2**30)
        ClusterAddon.objects.create(cluster=cluster, addon="coredns", version=coredns, namespace="kube-system",
                                    workload="coredns", kind="Deployment", image=f"coredns/coredns:{coredns}")
    log_in(page, live_server, "vera-viewer")
    page.click("#node-pools-link")
    expect(page.locator("#node-pools tbody tr")).to_have_count(3)
    page.fill("input[name=kubelet_version]", "v1.34.4")
    expect(page.locator("#node-pools tbody tr")).to_have_count(1)  # HTMX swapped the table
    expect(page.locator("#node-pools tr[data-pool=spot]")).to_contain_text("eks-prod")
    assert "kubelet_version=v1.34.4" in page.url  # the filter is in the address, to share
    page.fill("input[name=kubelet_version]", "")
    expect(page.locator("#node-pools tbody tr")).to_have_count(3)
    screenshot("50-node-pools")
    page.click("#node-pools tr[data-pool=general] a")
    expect(page.locator("#node-pools tbody tr")).to_have_count(2)  # the cluster's Node pools tab
    page.click("#addons-link")
    expect(page.locator("#addons tr[data-cluster]")).to_have_count(2)
    page.select_option("select[name=environment]", "prod")
    expect(page.locator("#addons tr[data-cluster]")).to_have_count(1)
    expect(page.locator("#addons tr[data-cluster=eks-prod]")).to_contain_text("v1.11.4")
    screenshot("51-addons")
