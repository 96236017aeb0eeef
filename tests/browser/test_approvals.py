"""In a real browser: an approver finds the pending production approval, reads what it will touch,
approves with a comment, and watches the production stage start on the real member."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inventory.models import Workload
from rollouts import engine, services
from rollouts.choices import RolloutState, StageState
from rollouts.models import Rollout
from tests.builders import make_cluster, make_user
from tests.conftest import wait_for
from tests.e2e.test_rollouts import app_yaml

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_approver_approves_production_in_the_browser(page, live_server, fleet, celery_worker,
                                                     celery_beat, screenshot):
    requester = make_user("rita-requester", "operator")
    make_user("anna-approver", "approver")
    app = services.create_application(name="storefront", namespace="storefront", user=requester,
                                      manifests_text=app_yaml("4.2"), message="checkout redesign")
    rollout = services.create_rollout(revision=app.latest_revision, user=requester, stages=[
        {"name": "canary", "selector": "name=gke-us-central", "health_deadline": 90},
        {"name": "staging", "group": "staging", "health_deadline": 90},
        {"name": "production", "group": "prod", "health_deadline": 90}])
    wait_for(lambda: rollout.stages.get(index=2).state == StageState.AWAITING_APPROVAL, timeout=120,
             what="the production stage to await approval")

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "anna-approver")
    page.fill("#id_password", "pw-for-tests-1")
    page.click("main button[type=submit]")
    expect(page.locator("#approvals-badge")).to_have_text("1")
    page.click("#approvals-link")
    expect(page.locator(f"#pending-approvals tr[data-rollout='{rollout.pk}']")).to_contain_text("production")
    screenshot("20-my-approvals")
    page.click(f"#pending-approvals tr[data-rollout='{rollout.pk}'] a.btn")

    stage = page.locator("#stage-2")
    expect(stage).to_have_attribute("data-state", "awaiting_approval")
    expect(page.locator("#stage-0 .targets tr[data-cluster=gke-us-central]")).to_contain_text("ready")
    page.click("#approve-open-2")
    confirm = page.locator("#confirm-text-2")
    expect(confirm).to_contain_text("stage 3 “production”")
    expect(confirm).to_contain_text("storefront r1")
    expect(confirm).to_contain_text("aws-eu-west")
    page.fill("#comment-2", "Checked the canary dashboards, go.")
    page.check("#conditions-2 input[name=no_critical]")  # only if no critical violation is open when it starts
    expect(page.locator("#decide-2")).to_contain_text("This approval lasts 24 h (default)")
    screenshot("21-approve-confirmation")
    page.click("#approve-confirm-2")
    expect(page.locator(".alert.success")).to_contain_text("You approved stage 'production'")

    # The page follows the rollout by itself: production starts, then the rollout succeeds.
    expect(page.locator("#stage-2")).not_to_have_attribute("data-state", "awaiting_approval", timeout=20_000)
    expect(page.locator("#rollout-state")).to_have_text("succeeded", timeout=120_000)
    expect(page.locator("#stage-2 .approvals")).to_contain_text("Checked the canary dashboards, go.")
    screenshot("22-rollout-succeeded")
    approval = Rollout.objects.get(pk=rollout.pk).stages.get(index=2).approvals.get()
    assert (approval.user.username, approval.conditions) == ("anna-approver", {"no_critical": True})

    # The receipt: every member read back as approved, who approved production and on what condition.
    page.click("#receipt-link")
    expect(page.locator("h1")).to_contain_text(f"Receipt of rollout #{rollout.pk}")
    for name in ("gke-us-central", "ack-hangzhou", "aws-eu-west"):
        expect(page.locator(f"#receipt tr[data-cluster={name}]")).to_have_attribute("data-matches", "yes")
    expect(page.locator("#receipt tr[data-cluster=aws-eu-west]")).to_contain_text("anna-approver")
    expect(page.locator("#receipt tr[data-cluster=aws-eu-west]")).to_contain_text("no_critical")
    screenshot("26-receipt")

    # The application page says where it runs now: per cluster the revision, the rollout, and health, with the
    # Deployment in the inventory (each cluster was synced when its target became ready).
    wait_for(lambda: Workload.objects.filter(namespace="storefront", name="web", replicas_available=2).count() == 3,
             timeout=30, what="the rolled-out Deployment in the inventory of each cluster")
    page.goto(f"{live_server.url}/applications/storefront/")
    for name in ("gke-us-central", "ack-hangzhou", "aws-eu-west"):
        row = page.locator(f"#placements tr[data-cluster={name}]")
        expect(row).to_contain_text("r1")
        expect(row).to_contain_text(f"#{rollout.pk}")
        expect(row.locator(".badge")).to_have_text("healthy")
        expect(row).to_contain_text("Deployment web: 2/2 → 2/2")
    screenshot("25-where-it-runs")


def test_reject_is_its_own_button_and_needs_a_comment_said_in_the_dialog(page, live_server, screenshot):
    """No member needed: a stage reaching a prod cluster awaits approval before anything is applied."""
    requester = make_user("rita-requester", "operator")
    make_user("anna-approver", "approver")
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="storefront", namespace="storefront", user=requester,
                                      manifests_text=app_yaml("4.2"))
    rollout = services.create_rollout(revision=app.latest_revision, user=requester,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    for _ in range(3):
        engine.step_once(rollout.pk)
    assert rollout.stages.get().state == StageState.AWAITING_APPROVAL

    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", "anna-approver")
    page.fill("#id_password", "pw-for-tests-1")
    page.click("main button[type=submit]")
    page.goto(f"{live_server.url}/rollouts/{rollout.pk}/")
    expect(page.locator("#approve-open-0")).to_be_visible()
    expect(page.locator("#reject-open-0")).to_be_visible()  # not hidden behind "Approve…"
    # The change is on the page before any click: what the cluster runs now (nothing) against what it would get.
    changes = page.locator("#changes-0")
    expect(changes).to_contain_text("prod-1: runs nothing now → r1")
    expect(changes.locator(".add").first).to_contain_text("+")
    expect(changes).to_contain_text("registry.example.com/shop/web:4.2")
    screenshot("22b-approval-shows-the-change")
    page.click("#reject-open-0")
    page.fill("#reject-comment-0", "   ")  # passes the browser's `required`, not the service
    page.click("#reject-0")
    expect(page.locator("#reject-error-0")).to_contain_text("Say why you reject it.")
    expect(page.locator("#reject-dialog-0")).to_have_attribute("open", "")
    screenshot("23-reject-needs-a-comment")
    assert rollout.stages.get().state == StageState.AWAITING_APPROVAL, "nothing was decided"

    page.fill("#reject-comment-0", "The canary error rate doubled.")
    page.click("#reject-0")
    expect(page.locator(".alert.success")).to_contain_text("You rejected stage 'production'")
    expect(page.locator("#rollout-state")).to_have_text("failed")
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.FAILED
