"""In a real browser at 1280x800, against a real member (issue 30, item 8): an admin applies the built-in
"Pod Security: restricted" set to a group in enforce mode in one step, after a preview of what already violates
it and an explicit tick; the member's API server then refuses a privileged pod, and a cluster outside the
group still accepts it."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from governance.choices import EnforcementState, Mode
from governance.models import Enforcement, PolicyAssignment, PolicySet
from inventory import services as inventory_services
from inventory.choices import SyncOutcome
from inventory.models import SyncRun
from tests.browser.test_layout import OVERFLOW
from tests.browser.test_onboarding import log_in
from tests.builders import make_user
from tests.conftest import wait_for
from tests.e2e.test_governance import _attach, _create_pod, _name, _pod, members  # noqa: F401 - fixture by name

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_applies_a_policy_set_in_enforce_mode_and_the_member_refuses(
        page, live_server, members, celery_worker, screenshot):  # noqa: F811 - `members`: the fixture imported
    admin = make_user("ada-admin", "admin")
    inside, outside = members[:2]
    prod = _attach(inside, "sets-prod", environment="prod", user=admin)
    _attach(outside, "sets-dev", environment="dev", user=admin)
    wait_for(lambda: SyncRun.objects.filter(cluster=prod, outcome=SyncOutcome.SUCCEEDED).exists(),
             what="a first sync of the prod member")
    inventory_services.create_group(name="production", selector="environment=prod", user=admin)
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, "ada-admin")

    page.goto(f"{live_server.url}/policies/")
    page.click("#policy-sets-link")
    expect(page.locator('tr[data-set="production-baseline"]')).to_contain_text("built in")
    page.click("tr[data-set=pod-security-restricted] a:has-text('Pod Security: restricted')")
    expect(page.locator("#set-rules tr[data-rule=run-as-non-root]")).to_be_visible()
    page.select_option("#id_group", "production")
    page.check("#apply-form input[name=mode][value=enforce]")
    expect(page.locator("#set-plan tr[data-plan=no-privileged-containers]")).to_contain_text("add in enforce")
    expect(page.locator("#plan")).to_contain_text("will refuse new objects")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("31-policy-set-apply")
    page.click("#apply-submit")
    expect(page.locator("#apply-form")).to_contain_text("tick this to enforce")
    assert not PolicyAssignment.objects.exists(), "nothing applied without the tick"
    page.check("#id_confirmed")
    page.click("#apply-submit")
    expect(page.locator(".alert.success")).to_contain_text("Pod Security: restricted applied to production")
    restricted = PolicySet.objects.get(name="pod-security-restricted")
    assert dict(PolicyAssignment.objects.values_list("rule_key", "mode")) == {k: Mode.ENFORCE
                                                                             for k in restricted.rule_keys}
    wait_for(lambda: Enforcement.objects.filter(cluster=prod, state=EnforcementState.INSTALLED).count()
             == len(restricted.rule_keys), what="every rule of the set installed on the prod member", timeout=90)
    refused = wait_for(lambda: _create_pod(inside, "shop", _pod(_name("priv"), privileged=True)),
                       what="the privileged pod refused by the prod member", timeout=30)
    assert refused.status == 403 and "ValidatingAdmissionPolicy" in refused.body, refused.body
    assert _create_pod(outside, "shop", _pod(_name("priv"), privileged=True)) is None, \
        "a member outside the group accepts it"
