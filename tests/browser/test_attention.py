"""In a real browser at 1280x800 (issue 30, item 6): the overview's "Needs attention" lists a drifted application
and a stage awaiting approval beside a cluster that is down; clicking through, "Where it runs" says the
application is drifted there, not healthy, and the approval page says what the cluster runs now beside what the
stage would set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inventory.models import Cluster
from rollouts import services
from rollouts.choices import DriftState, RolloutState, StageState
from rollouts.models import Deployed, Drift, Rollout, Stage, Target
from tests.browser.test_layout import OVERFLOW
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user
from tests.teams.conftest import MANIFESTS
from tests.teams.test_one_health import DRIFTED_FIELDS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_needs_attention_leads_to_the_drift_and_the_approval(page, live_server, screenshot):
    make_user("ada-admin", "admin")
    prod = make_cluster("eks-prod", environment="prod")
    make_cluster("aks-dev", environment="dev", status="unreachable", status_reason="connection refused")
    app = services.create_application(name="shop", namespace="shop", manifests_text=MANIFESTS, user=None)
    deployed = Deployed.objects.create(application=app, cluster=prod, revision=app.latest_revision,
                                       at=timezone.now())
    Drift.objects.create(deployed=deployed, revision=app.latest_revision, state=DriftState.DRIFTED,
                         objects_state=DRIFTED_FIELDS, since=timezone.now() - timedelta(minutes=3),
                         checked_at=timezone.now())
    rollout = Rollout.objects.create(application=app, revision=app.latest_revision, state=RolloutState.RUNNING)
    stage = Stage.objects.create(rollout=rollout, index=0, name="prod", state=StageState.AWAITING_APPROVAL,
                                 approvals_required=1, awaiting_since=timezone.now())
    Target.objects.create(stage=stage, cluster=prod, rendered=[{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"replicas": 2}}])
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, "ada-admin")

    attention = page.locator("#attention")
    expect(attention.locator('tr[data-attention="cluster aks-dev"]')).to_contain_text("connection refused")
    expect(attention.locator('tr[data-attention="shop on eks-prod"]')).to_contain_text("drifted")
    expect(attention.locator('tr[data-attention="shop: stage prod"]')).to_contain_text("awaiting approval")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("32-needs-attention")
    attention.locator('tr[data-attention="shop on eks-prod"] a').click()
    expect(page.locator('#placements tr[data-cluster="eks-prod"] .health-drift')).to_have_text("drifted")
    assert Cluster.objects.filter(name="eks-prod").exists()

    page.goto(f"{live_server.url}/")
    page.locator('#attention tr[data-attention="shop: stage prod"] a').click()
    expect(page.locator("#live-drift-0")).to_contain_text("eks-prod runs Deployment web spec.replicas = 5 now "
                                                          "(set by kubectl-scale); Fleetweb applied 1; this sets 2")
