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


def test_upgrade_plan_filters_and_the_drift_section_reapplies(page, live_server, screenshot):
    from django.utils import timezone

    from foundation.models import AuditEvent
    from governance import upgrades
    from inventory.models import Cluster, DeprecatedAPIRequest
    from inventory.services import create_group
    from rollouts import corrections, drift, rendering, services
    from rollouts.choices import DriftState
    from rollouts.models import Drift
    from tests.rollouts.fakes import web

    admin = make_user("ada-admin", "admin")
    now = timezone.now()
    for name, env, version, lagging in (("eks-prod", "prod", "v1.34.4", "v1.31.2"), ("gke-dev", "dev", "v1.36.3", ""),
                                        ("aks-prod", "prod", "v1.35.4", "")):
        cluster = make_cluster(name, environment=env, version=version, readiness_checked_at=now)
        for i, kubelet in enumerate([version, lagging] if lagging else [version]):
            Node.objects.create(cluster=cluster, uid=f"{name}-{i}", name=f"{name}-{i}", ready=True,
                                pool="legacy" if i else "general", kubelet_version=kubelet)
    DeprecatedAPIRequest.objects.create(cluster=Cluster.objects.get(name="eks-prod"), group="policy",
                                        version="v1beta1", resource="poddisruptionbudgets", removed_release="1.25",
                                        first_seen_at=now, last_seen_at=now)
    create_group(name="prod", selector="environment=prod", user=admin, upgrade_target="1.36")
    upgrades.refresh(Cluster.objects.all())
    app = services.create_application(name="shop-web", namespace="shop-web", manifests_text=web("1.0"), user=admin)
    target = Cluster.objects.get(name="gke-dev")
    deployed = drift.record_deployed(app, target, app.latest_revision,
                                     rendering.render_for(app, app.latest_revision, target), now)
    scaled = {"manager": "kubectl-scale", "operation": "Update", "time": "2026-12-01T10:00:00Z"}
    corrections._store(deployed, [{"kind": "Deployment", "name": "web", "state": DriftState.DRIFTED, "error": "",
                             "fields": [{"path": "spec.replicas", "applied": "2", "live": "5", "managers": [scaled]}]}],
                 "", calls=2, ms=40, now=now)

    log_in(page, live_server, "ada-admin")
    page.click("#upgrades-link")
    expect(page.locator("#upgrade-plan tr[data-cluster]")).to_have_count(3)
    expect(page.locator("#upgrade-plan tr[data-cluster]").first).to_have_attribute("data-cluster", "eks-prod")
    expect(page.locator("#upgrade-plan tr[data-cluster=eks-prod]")).to_contain_text("removed in Kubernetes 1.25")
    expect(page.locator("#upgrade-plan tr[data-cluster=eks-prod]")).to_contain_text("group prod")
    page.select_option("#upgrade-verdict", "blocked")
    expect(page.locator("#upgrade-plan tr[data-cluster]")).to_have_count(1)  # HTMX swapped the table
    assert "verdict=blocked" in page.url
    page.select_option("#upgrade-verdict", "")
    expect(page.locator("#upgrade-plan tr[data-cluster]")).to_have_count(3)
    screenshot("52-upgrade-plan")
    page.click("#upgrade-plan tr[data-cluster=eks-prod] a")
    expect(page.locator("#upgrade-blockers tr[data-code=pool]")).to_contain_text("node pool legacy runs kubelet")

    page.goto(f"{live_server.url}/applications/shop-web/")
    row = page.locator("#drift tr[data-cluster=gke-dev]")
    expect(row).to_contain_text("spec.replicas: 2 → 5")
    expect(row).to_contain_text("by kubectl-scale")
    screenshot("53-drift")
    row.locator("button[data-reapply]").click()
    expect(page.locator("#drift-message")).to_contain_text("Re-apply of shop-web on gke-dev queued")
    expect(page.locator("#drift tr[data-cluster=gke-dev]")).to_contain_text("re-apply queued")
    assert Drift.objects.get(deployed=deployed).correcting_since is not None
    assert AuditEvent.objects.filter(action="application.reapply", actor_name="ada-admin").count() == 1
