"""In a real browser: a new revision is saved at once and checked while you watch; where an enforced Fleetweb policy
refuses it, the revision says which cluster and which policy, and the stage builder says it again for a stage that
reaches that cluster."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from governance.choices import Mode
from governance.models import PolicyAssignment
from inventory.models import ClusterGroup
from rollouts import dryrun, services
from rollouts.models import Revision
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user
from tests.rollouts.fakes import web
from tests.rollouts.test_revision_check import PRIVILEGED, WORDS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_revision_is_checked_while_you_watch_and_names_what_prod_refuses(page, live_server, screenshot):
    operator = make_user("olga-operator", "operator")
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-eu", environment="prod")
    group = ClusterGroup.objects.create(name="production", selector="environment=prod")
    PolicyAssignment.objects.create(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE)
    app = services.create_application(name="web", namespace="web", manifests_text=web("1.0"), user=operator)
    dryrun.run(app.latest_revision.pk)

    log_in(page, live_server, "olga-operator")
    page.goto(f"{live_server.url}/applications/web/revisions/new/")
    page.fill("#id_manifests", PRIVILEGED)
    page.fill("#id_message", "debug shell")
    page.click("#revision-form button[type=submit]")
    expect(page.locator(".alert.success")).to_contain_text("Revision 2 of web saved")
    cell = page.locator("#check-r2")
    expect(cell).to_contain_text("checking…")

    dryrun.run(Revision.objects.get(application=app, number=2).pk)  # what the worker does
    expect(cell).to_contain_text("refused by prod-eu", timeout=10_000)  # the cell polls itself
    expect(cell.locator(".finding.enforced")).to_have_text(WORDS)
    expect(page.locator("#check-r1")).to_contain_text("unchecked")
    screenshot("26-revision-refused-by-prod-policy")

    page.goto(f"{live_server.url}/applications/web/rollout/")
    expect(page.locator("#stage-preview-1 .stage-refusals")).to_contain_text(WORDS)
    expect(page.locator("#stage-preview-0 .stage-refusals")).to_have_count(0)
