"""In a real browser at 1280x800: a team operator opens Change windows from the menu, makes a recurring freeze for
the team in the team's time zone, sees it listed (open or closed now, in words), and cannot edit the platform's
year-end freeze; on a cluster of the team, the operator marks it busy with a reason and clears it again."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from inventory.models import Cluster
from inventory.people import services as team_services
from rollouts import calendar
from rollouts.models import ChangeWindow
from tests.browser.test_layout import OVERFLOW
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_team_operator_makes_a_freeze_and_marks_a_cluster_busy(page, live_server, screenshot):
    admin = make_user("ada-admin", "admin")
    make_cluster("pay-prod", environment="prod", owner="payments")
    payments = team_services.save_team(user=admin, name="payments", selector="owner=payments")
    pat = make_user("pat")
    team_services.add_member(payments, member=pat, role="operator", user=admin)
    calendar.save_window(user=admin, name="year-end", kind="deny", reason="year-end freeze", zone="Europe/Berlin",
                         starts_at="2026-12-24T00:00+01:00", ends_at="2027-01-04T00:00+01:00", environments=["prod"])
    page.set_viewport_size({"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server, "pat")

    page.click("#windows-link")
    expect(page.locator("h1")).to_have_text("Change windows")
    platform = page.locator('tr[data-window="year-end"]')
    expect(platform).to_contain_text("2026-12-24 00:00 to 2027-01-04 00:00 Europe/Berlin")
    expect(platform.locator("a:has-text('Edit')")).to_have_count(0)
    page.fill("#id_name", "pay-nights")
    page.select_option("#id_kind", "deny")
    page.fill("#id_reason", "nightly settlement batch")
    page.select_option("#id_team", label="payments")
    page.fill("#id_zone", "Asia/Singapore")
    for day in ("0", "1", "2", "3", "4"):
        page.check(f'input[name=weekdays][value="{day}"]')
    page.fill("#id_start_time", "22:00")
    page.fill("#id_end_time", "06:00")
    page.click("#window-save")
    row = page.locator('tr[data-window="pay-nights"]')
    expect(row).to_contain_text("Mon, Tue, Wed, Thu, Fri 22:00-06:00 (next day) Asia/Singapore")
    expect(row).to_contain_text("payments")
    assert ChangeWindow.objects.get(name="pay-nights").team == payments
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("32-change-windows")

    page.goto(f"{live_server.url}/clusters/pay-prod/")
    page.click("#busy-switch summary")
    page.fill("#busy-switch input[name=reason]", "INC-42 database failover")
    page.click("#busy-mark")
    expect(page.locator("#cluster-busy")).to_contain_text("INC-42 database failover")
    assert Cluster.objects.get(name="pay-prod").busy_reason == "INC-42 database failover"
    page.click("#busy-clear")
    expect(page.locator("#cluster-busy")).to_have_count(0)
    assert Cluster.objects.get(name="pay-prod").busy_since is None
