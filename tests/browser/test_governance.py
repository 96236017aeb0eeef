"""In a real browser: group clusters by selector with the live preview, switch a policy on in the matrix,
and watch the compliance page change once the worker has evaluated the real member clusters."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from governance.models import PolicyAssignment
from inventory import services as inventory_services
from inventory.choices import SyncOutcome
from inventory.models import SyncRun
from tests.browser.test_onboarding import log_in
from tests.builders import make_user
from tests.conftest import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_toggle_a_policy_in_the_matrix_and_see_compliance_change(page, live_server, localfleet_members,
                                                                  celery_worker, screenshot):
    admin = make_user("ada-admin", "admin")
    members = list(localfleet_members.values())
    clusters = [inventory_services.attach_cluster(name=name, credentials=m.token_credentials(), user=admin,
                                                  environment=env, region=region)
                for m, (name, env, region) in zip(members, [("eu-prod-1", "prod", "eu-west-1"),
                                                            ("cn-staging-1", "staging", "cn-hangzhou")], strict=False)]
    for cluster in clusters:
        wait_for(lambda c=cluster: SyncRun.objects.filter(cluster=c, outcome=SyncOutcome.SUCCEEDED).exists(),
                 what=f"first sync of {cluster.name}")
    log_in(page, live_server, "ada-admin")

    # A group by selector: the preview follows the typing, errors point at the character.
    page.goto(f"{live_server.url}/groups/new/")
    page.fill("#id_name", "production")
    page.fill("#id_selector", "environment in prod")
    expect(page.locator("#selector-error")).to_contain_text("expected '(' after 'in'")
    page.fill("#id_selector", "environment in (prod)")
    expect(page.locator("#preview-count")).to_contain_text("1 cluster matches")
    expect(page.locator("#preview [data-cluster=eu-prod-1]")).to_be_visible()
    screenshot("10-group-editor-preview")
    page.click("#group-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Group production")
    expect(page.locator("#members [data-cluster=eu-prod-1]")).to_be_visible()

    # Nothing assigned yet: the cluster has no score.
    page.goto(f"{live_server.url}/compliance/")
    expect(page.locator("#open-violations")).to_have_text("0")

    # Switch "No privileged containers" to audit for the group, in place.
    page.goto(f"{live_server.url}/policies/")
    cell = page.locator("#policy-matrix td[data-group=production][data-rule=no-privileged-containers]")
    cell.locator("select").select_option("audit")
    expect(page.locator("#policy-matrix td[data-group=production][data-rule=no-privileged-containers]")) \
        .to_have_class("cell on-audit")
    screenshot("11-policy-matrix")

    # The worker evaluates the member; the page polls every 15 s, reloading only shortens the wait.
    page.goto(f"{live_server.url}/compliance/")
    for _ in range(40):
        if page.locator("#open-violations").inner_text() != "0":
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator("#open-violations")).not_to_have_text("0")
    row = page.locator("#group-scores tr[data-group=production]")
    expect(row.locator(".score")).to_have_class("score poor")
    screenshot("12-compliance-overview")

    page.click("#group-scores tr[data-group=production] td.num a")
    expect(page.locator("#violations")).to_contain_text("old-admin")
    expect(page.locator("#violations")).to_contain_text("privileged container(s): admin")
    screenshot("13-violations")

    page.goto(f"{live_server.url}/clusters/eu-prod-1/?tab=compliance")
    expect(page.locator("#policy-results tr[data-rule=no-privileged-containers]")).to_contain_text("1")
    screenshot("14-cluster-compliance-tab")

    # Enforce with eyes open: the cell first says what already violates the rule; nothing changes until confirmed.
    page.goto(f"{live_server.url}/policies/")
    cell = page.locator("#policy-matrix td[data-group=production][data-rule=no-privileged-containers]")
    cell.locator("select").select_option("enforce")
    confirm = page.locator("#policy-matrix td[data-group=production][data-rule=no-privileged-containers] "
                           ".confirm-enforce")
    expect(confirm.locator(".enforce-count")).to_contain_text("existing object")
    expect(confirm).to_contain_text("eu-prod-1: Deployment legacy/old-admin")
    screenshot("15-enforce-confirmation")
    assert PolicyAssignment.objects.get(group__name="production", rule_key="no-privileged-containers").mode == "audit"
    confirm.locator("button", has_text="Cancel").click()
    expect(page.locator("#policy-matrix td[data-group=production][data-rule=no-privileged-containers]")) \
        .to_have_class("cell on-audit")
    assert PolicyAssignment.objects.get(group__name="production", rule_key="no-privileged-containers").mode == "audit"
