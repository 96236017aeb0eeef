"""In a real browser, under the Content-Security-Policy: the API docs and the admin work with no inline code
(the `page` fixture fails on any violation)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_api_docs_render_under_the_policy(page, live_server):
    make_user("vera-viewer", "viewer")
    log_in(page, live_server, "vera-viewer")
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/clusters/")


def test_admin_and_pages_render_under_the_policy(page, live_server):
    admin = make_user("ada-admin", "admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    make_cluster("c1", nodes=2)
    log_in(page, live_server, "ada-admin")
    for path in ("/clusters/", "/clusters/c1/", "/groups/", "/policies/", "/compliance/", "/applications/",
                 "/rollouts/", "/audit/", "/clusters/attach/"):
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("main")).to_be_visible()
    page.goto(f"{live_server.url}/clusters/c1/")
    page.click(".tabs >> text=Nodes")
    expect(page.locator(".tabs a.active")).to_have_text("Nodes")
    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#content")).to_contain_text("Site administration")
    page.goto(f"{live_server.url}/admin/auth/user/")
    expect(page.locator("#result_list")).to_contain_text("ada-admin")
