"""In a real browser: an admin adds a webhook channel (to a real HTTP receiver), sends a test message and sees
the answer in place, adds an alert rule, reads the delivery log and a cluster's History tab."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from inventory.choices import ClusterEventKind
from inventory.models import ClusterEvent
from notifications.models import AlertRule, Channel
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_sets_up_a_channel_and_a_rule(page, live_server, http_receiver, screenshot):
    make_user("ada-admin", "admin")
    cluster = make_cluster("pay-prod", environment="prod")
    ClusterEvent.objects.create(cluster=cluster, at=timezone.now(), kind=ClusterEventKind.STATUS,
                                summary="connected → unreachable: connection refused")
    log_in(page, live_server, "ada-admin")
    page.click("#notifications-link")
    page.click("#channel-new")
    page.select_option("#id_kind", "webhook")
    page.fill("#id_name", "oncall")
    page.fill("#id_url", "ftp://nowhere.example/x")
    page.click("#channel-save")
    expect(page.locator(".errorlist")).to_contain_text("must start with https:// or http://")
    expect(page.locator("#id_name")).to_have_value("oncall")  # bad input loses nothing but the secret
    page.fill("#id_url", http_receiver.url("/oncall"))
    page.fill("#id_secret", "a-signing-secret-of-24ch")
    page.click("#channel-save")
    expect(page.locator("h1")).to_have_text("Channel oncall")
    http_receiver.statuses["/oncall"] = [503]
    page.click("#channel-test")
    expect(page.locator("#test-delivery")).to_contain_text("HTTP 503 Service Unavailable")
    page.click("#channel-test")
    expect(page.locator("#test-delivery")).to_have_attribute("data-state", "sent")
    # The channel's delivery table shows both test messages at once, not "Nothing sent yet" until a reload.
    expect(page.locator("#channel-deliveries tr[data-delivery]")).to_have_count(2)
    expect(page.locator("#channel-deliveries tr[data-state=sent]")).to_have_count(1)
    assert [r.json()["event"] for r in http_receiver.at("/oncall")] == ["test", "test"]
    screenshot("40-alert-channel")
    page.goto(f"{live_server.url}/notifications/rules/new/")
    page.fill("#id_name", "prod clusters down")
    page.select_option("#id_channel", label="oncall (platform)")
    page.check("input[name=events][value='cluster.status']")
    page.check("input[name=environments][value=prod]")
    page.fill("#id_hold_down", "60")
    page.click("#rule-save")
    expect(page.locator("tr[data-rule='prod clusters down']")).to_contain_text("cluster.status")
    rule = AlertRule.objects.get()
    assert rule.channel == Channel.objects.get() and rule.environments == ["prod"] and rule.hold_down == 60
    page.click("#delivery-log")
    expect(page.locator("tr[data-state=sent]")).to_have_count(1)
    expect(page.locator("tr[data-state=failed]")).to_have_count(1)
    screenshot("41-delivery-log")
    page.goto(f"{live_server.url}/clusters/pay-prod/")
    page.click("nav.tabs a:has-text('History')")
    expect(page.locator("#history tr[data-kind=status]")).to_contain_text("connected → unreachable")
    screenshot("42-cluster-history")
