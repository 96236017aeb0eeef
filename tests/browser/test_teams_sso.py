"""In a real browser, through the real identity provider: a payments engineer signs in, sees only the payments
clusters and applications, is refused a stage on another team's cluster, starts a rollout to the payments
clusters; a payments approver signs in and approves production, which then runs on the real member."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inventory.people import services as team_services
from rollouts import services
from rollouts.choices import StageState
from rollouts.models import Rollout
from tests.conftest import wait_for
from tests.e2e.test_rollouts import app_yaml
from tests.sso.conftest import person, sso  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def sso_sign_in(page, live_server, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.click("#sso-login")
    page.fill("#idp-username", username)  # the provider's own login page
    page.fill("#idp-password", password)
    page.click("#idp-submit")
    expect(page.locator("h1")).to_have_text("Fleet overview")


def test_a_team_signs_in_through_the_provider_and_deploys_to_its_own_clusters(
        page, live_server, fleet, sso, celery_worker, celery_beat, admin_user, screenshot):  # noqa: F811
    payments = team_services.save_team(user=admin_user, name="payments",
                                       selector="name in (gke-us-central,aws-eu-west)")
    shop = team_services.save_team(user=admin_user, name="shop", selector="name=ack-hangzhou")
    team_services.add_mapping(claim_value="payments-sre", team=payments, role="operator", user=admin_user)
    team_services.add_mapping(claim_value="payments-leads", team=payments, role="approver", user=admin_user)
    services.create_application(name="checkout", namespace="checkout", manifests_text=app_yaml("1.0"), user=None,
                                owner_team=payments)
    services.create_application(name="storefront", namespace="storefront", manifests_text=app_yaml("1.0"),
                                user=None, owner_team=shop)
    idp = sso(f"{live_server.url}/accounts/sso/callback/")
    engineer, engineer_pw = person(idp, ["payments-sre"])
    lead, lead_pw = person(idp, ["payments-leads"])

    sso_sign_in(page, live_server, engineer, engineer_pw)
    page.goto(f"{live_server.url}/clusters/")
    expect(page.locator("tr[data-cluster=aws-eu-west]")).to_be_visible()
    expect(page.locator("tr[data-cluster=gke-us-central]")).to_be_visible()
    expect(page.locator("tr[data-cluster=ack-hangzhou]")).to_have_count(0)
    screenshot("30-team-sees-its-clusters")
    page.goto(f"{live_server.url}/applications/")
    expect(page.locator("tr[data-application=checkout]")).to_be_visible()
    expect(page.locator("tr[data-application=storefront]")).to_have_count(0)
    assert page.goto(f"{live_server.url}/clusters/ack-hangzhou/").status == 404  # not 403: no existence leak

    page.goto(f"{live_server.url}/applications/checkout/rollout/")
    page.fill("#id_stage-0-selector", "name=ack-hangzhou")  # another team's cluster
    expect(page.locator("#stage-preview-0 .stage-nothing")).to_be_visible()  # the preview shows nothing of it
    # The team's clusters are dev and prod: no staging row to delete.
    expect(page.locator(".stage-row")).to_have_count(2)
    page.fill("#id_stage-1-soak_time", "0")
    page.click("#start-rollout")
    # Refused exactly as a selector matching nothing at all: nothing says the other team's cluster exists.
    expect(page.locator("#stage-row-0")).to_contain_text("matches no cluster")
    expect(page.locator("#stage-row-0")).not_to_contain_text("ack-hangzhou is")
    screenshot("31-another-teams-cluster-refused")
    assert not Rollout.objects.exists()
    page.fill("#id_stage-0-selector", "environment=dev")
    page.click("#start-rollout")
    expect(page.locator("#rollout-state")).to_be_visible()
    rollout = Rollout.objects.get()
    assert sorted(rollout.stages.values_list("targets__cluster__name", flat=True)) == ["aws-eu-west",
                                                                                       "gke-us-central"]
    wait_for(lambda: rollout.stages.get(index=1).state == StageState.AWAITING_APPROVAL, timeout=120,
             what="production to await approval")
    expect(page.locator("#approve-open-1")).to_have_count(0)  # the engineer is no approver

    page.context.clear_cookies()
    sso_sign_in(page, live_server, lead, lead_pw)
    expect(page.locator("#approvals-badge")).to_have_text("1")
    page.goto(f"{live_server.url}/rollouts/{rollout.pk}/")
    page.click("#approve-open-1")
    page.fill("#comment-1", "Payments lead: go.")
    page.click("#approve-confirm-1")
    expect(page.locator(".alert.success")).to_contain_text("You approved stage 'production'")
    expect(page.locator("#rollout-state")).to_have_text("succeeded", timeout=120_000)
    screenshot("32-team-approver-approved")
    assert rollout.stages.get(index=1).approvals.get().user.username == lead

    page.goto(f"{live_server.url}/teams/payments/")  # the team as its members see it
    expect(page.locator(f"#members tr[data-member={lead}-approver]")).to_contain_text("from the identity provider")
    expect(page.locator("[data-cluster=aws-eu-west]")).to_be_visible()
    expect(page.locator("main")).to_contain_text("checkout")
    screenshot("33-team-page")
