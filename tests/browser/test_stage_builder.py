"""In a real browser: build a rollout's stages row by row, see which clusters each reaches as you type (and when
the prod rule applies), and have a stage that matches nothing refused before anything starts."""

from __future__ import annotations

import pytest
import yaml
from playwright.sync_api import expect

from rollouts import services
from rollouts.models import Rollout
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


def test_stage_builder_preview_prod_rule_and_a_stage_matching_nothing(page, live_server, screenshot):
    operator = make_user("olga-operator", "operator")
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-eu-1", environment="prod")
    services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    log_in(page, live_server, "olga-operator")
    page.goto(f"{live_server.url}/applications/web/rollout/")

    # The default rows are those that reach a cluster (this fleet has no staging: no staging row to delete), and
    # preview themselves: canary reaches dev-1, production reaches prod and needs an approval.
    expect(page.locator(".stage-row")).to_have_count(2)
    expect(page.locator("#id_stage-1-name")).to_have_value("production")
    expect(page.locator("#stage-preview-0 [data-cluster=dev-1]")).to_be_visible()
    expect(page.locator("#stage-preview-1 .stage-prod")).to_contain_text("at least one approval is required")
    screenshot("24-stage-builder")

    # Typing a selector updates that row's preview; a typo points at the character; nothing matches: said so.
    selector = page.locator("#id_stage-0-selector")
    selector.fill("environment in dev")
    expect(page.locator("#stage-preview-0 .stage-preview-error")).to_contain_text("expected '('")
    selector.fill("environment=qa")
    expect(page.locator("#stage-preview-0 .stage-nothing")).to_contain_text("Matches no cluster")

    # Submitting it anyway: refused on that stage, before anything starts.
    page.click("#start-rollout")
    expect(page.locator("#stage-row-0")).to_contain_text("matches no cluster")
    assert not Rollout.objects.exists()

    # Fixed, a stage added and removed again (its tick survives adding another): the rollout starts as built.
    page.locator("#id_stage-0-selector").fill("environment=dev")
    page.click("#add-stage")
    expect(page.locator("#stage-row-2")).to_be_visible()
    page.fill("#id_stage-2-name", "late")
    page.fill("#id_stage-2-selector", "name=nothing-here")
    page.check("#id_stage-2-DELETE")
    page.click("#add-stage")
    expect(page.locator("#stage-row-3")).to_be_visible()
    expect(page.locator("#id_stage-2-DELETE")).to_be_checked()
    page.check("#id_stage-3-DELETE")
    page.click("#start-rollout")
    expect(page.locator("#rollout-state")).to_be_visible()
    rollout = Rollout.objects.get()
    assert list(rollout.stages.order_by("index").values_list("name", "approvals_required")) == [
        ("canary", 0), ("production", 1)]
