"""In a real browser at 1280×800: an admin registers a cluster behind a firewall. Attach → Register a cluster,
the apply line shown once, the agent's registration waiting on Registrations with what identifies it, Accept, and
the cluster page showing it via its agent, silent or not."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from agents.models import Registration
from inventory.models import Cluster
from tests.agents.helpers import FakeAgent
from tests.browser.test_onboarding import log_in
from tests.builders import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def test_an_admin_registers_a_cluster_and_accepts_its_agent(page, live_server, screenshot):
    make_user("ada-admin", "admin")
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, "ada-admin")
    page.goto(f"{live_server.url}/clusters/attach/")
    page.click("#method-agent")
    expect(page.locator("h1")).to_have_text("Register a cluster behind a firewall")
    page.fill("#id_name", "edge-1")
    page.select_option("#id_environment", "prod")
    page.click("#register-submit")
    command = page.locator("#apply-command")
    expect(command).to_contain_text("kubectl apply -f")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("40-register-a-cluster")
    token = re.search(r"token=(fwb_[A-Za-z0-9_-]+)", command.inner_text()).group(1)

    agent = FakeAgent()  # what the agent in the cluster does with the token
    fingerprint = ":".join(["3F", "A2", "7C", "19"] * 8)  # a SHA-256 fingerprint's length
    assert agent.register(token, kube_system_uid="6c1f0a52-ffff-4000-8000-00000000abcd",
                          ca_fingerprint=fingerprint).status_code == 201
    page.goto(f"{live_server.url}/clusters/registrations/")
    row = page.locator("#registration-edge-1")
    expect(row).to_contain_text("6c1f0a52-ffff-4000-8000-00000000abcd")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("41-registration-pending")
    page.click("#accept-edge-1")
    expect(page.locator("#no-pending")).to_be_visible()
    assert Cluster.objects.filter(name="edge-1", auth_method="agent").exists()
    assert Registration.objects.get(name="edge-1").state == "accepted"

    assert agent.pickup().status_code == 200
    assert agent.call("POST", "heartbeat", {"agent_version": "0.1.0", "checks": [
        {"name": "list nodes", "ok": True}]}).status_code == 200
    page.goto(f"{live_server.url}/clusters/edge-1/")
    expect(page.locator("#via-agent")).to_be_visible()
    expect(page.locator("#agent-heartbeat")).to_contain_text("last heartbeat")
    expect(page.locator("#revoke-agent")).to_be_visible()
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("42-cluster-via-agent")
