"""In a real browser at 1280×800: every page the navigation reaches (and the detail pages behind them) fits the
window: no horizontal scroll, the sections grouped beside the page, the account links on screen; on a narrow
window the sections wrap above the page."""

from __future__ import annotations

import pytest
import yaml
from playwright.sync_api import expect

from inventory.services import create_group
from rollouts import services
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user, make_workload

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def test_every_page_fits_1280_by_800_with_the_sections_grouped_and_the_account_links_on_screen(
        page, live_server, screenshot):
    admin = make_user("ada-admin", "admin")
    for i, env in enumerate(("dev", "staging", "prod")):
        cluster = make_cluster(f"eks-{env}-eu-west-1-{i}", environment=env, nodes=2,
                               labels={"team": "payments", "region": "eu-west-1", "cost-center": "cc-12345"})
        make_workload(cluster, "checkout-service", namespace="payments")
    create_group(name="production", selector="environment=prod", user=admin)
    app = services.create_application(name="storefront", namespace="storefront", manifests_text=MANIFESTS,
                                      user=admin)
    rollout = services.create_rollout(revision=app.latest_revision, user=admin,
                                      stages=[{"name": "dev", "selector": "environment=dev"}])
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, "ada-admin")

    groups = page.locator("nav.side .nav-title").all_inner_texts()
    assert [g.strip().lower() for g in groups] == ["fleet", "governance", "delivery", "administration"]
    for account in ("#my-tokens", "#user-name", "header.top button.link", "#api-link"):
        box = page.locator(account).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1280, (account, box)
    screenshot("10-navigation-1280")

    paths = sorted(set(page.locator("nav.side a").evaluate_all("links => links.map(a => a.pathname)")))
    paths += ["/accounts/tokens/", f"/clusters/{'eks-prod-eu-west-1-2'}/", "/groups/production/",
              f"/applications/{app.name}/", f"/applications/{app.name}/rollout/", f"/rollouts/{rollout.pk}/",
              "/compliance/violations/", "/policies/catalog/", "/notifications/deliveries/", "/clusters/register/",
              "/clusters/registrations/", "/people/new/", "/people/ada-admin/"]
    overflowing = {}
    for path in paths:
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, (path, response and response.status)
        if (extra := page.evaluate(OVERFLOW)) > 0:
            overflowing[path] = extra
            screenshot("overflow" + path.replace("/", "-").rstrip("-"))  # to see what is too wide
    assert overflowing == {}, f"pages wider than 1280 px (by so many px): {overflowing}"

    page.set_viewport_size({"width": 700, "height": 800})
    page.goto(f"{live_server.url}/clusters/")
    assert page.evaluate(OVERFLOW) <= 0
    expect(page.locator("nav.side a", has_text="Clusters")).to_be_visible()
    nav, main = page.locator("nav.side").bounding_box(), page.locator("main").bounding_box()
    assert nav is not None and main is not None and nav["y"] + nav["height"] <= main["y"] + 1, "sections above"
