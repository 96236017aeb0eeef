"""In a real browser: log in, attach a real member cluster through the wizard, see it connected with its nodes."""

from __future__ import annotations

import re

import pytest
import yaml
from playwright.sync_api import expect

from inventory.models import Cluster
from tests.builders import make_user

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-for-tests-1")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Fleet overview")


def wait_status(page, name: str, expected: str = "connected") -> None:
    """The header refreshes itself every 10 s; reloading makes the wait shorter, not different."""
    for _ in range(30):
        if page.locator("#cluster-status").inner_text() == expected:
            return
        page.wait_for_timeout(1000)
        page.reload()
    raise AssertionError(f"{name} never showed {expected}: {page.locator('#cluster-status').inner_text()}")


def test_attach_with_token_through_the_wizard(page, live_server, localfleet_members, celery_worker, screenshot):
    member = next(iter(localfleet_members.values()))
    make_user("otto-operator", "operator")
    log_in(page, live_server, "otto-operator")
    screenshot("01-overview-empty")

    page.click("text=Attach cluster")
    page.click("#method-token")
    page.fill("#id_server", member.server)
    page.fill("#id_ca_data", member.ca_pem)
    page.fill("#id_token", member.reader_token)
    page.fill("#id_meta-name", "eu-prod-1")
    page.select_option("#id_meta-environment", "prod")
    page.fill("#id_meta-region", "eu-west-1")
    page.fill("#id_meta-labels", "team=platform\ntier=web")
    page.click("#test-connection")
    expect(page.locator("#test-report")).to_contain_text("ready to attach")
    expect(page.locator("#test-report")).to_contain_text("list pods: allowed")
    expect(page.locator("#test-report")).to_contain_text("apply application objects (rollouts, Re-apply and drift "
                                                         "correction, optional)")
    # The manifest offered is read-only until enforcement or deployment is chosen.
    expect(page.locator("#least-privilege-manifest")).not_to_contain_text("fleetweb-reader-enforcer")
    page.check("#opt-enforce")
    expect(page.locator("#least-privilege-manifest")).to_contain_text("fleetweb-reader-enforcer")
    expect(page.locator("#least-privilege-manifest")).not_to_contain_text("fleetweb-reader-deployer")
    screenshot("02-wizard-connection-tested")
    page.click("#attach-submit")

    expect(page).to_have_url(re.compile(r"/clusters/eu-prod-1/$"))
    wait_status(page, "eu-prod-1")
    nodes = Cluster.objects.get(name="eu-prod-1").node_count
    assert nodes > 0
    expect(page.locator("#nodes-ready")).to_have_text(f"{nodes} / {nodes}")
    screenshot("03-cluster-detail")
    page.click(".tabs >> text=Nodes")
    expect(page.locator("#nodes tbody tr")).to_have_count(nodes)
    expect(page.locator("#nodes")).to_contain_text("Ready")
    screenshot("04-cluster-nodes")
    page.click(".tabs >> text=Workloads")
    expect(page.locator("#workloads")).to_contain_text("frontend")
    screenshot("05-cluster-workloads")

    page.click("nav.side >> text=Clusters")
    expect(page.locator("#clusters")).to_contain_text("eu-prod-1")
    screenshot("06-cluster-list")
    page.click("nav.side >> text=Overview")
    expect(page.locator("#overview")).to_contain_text(member.version.rsplit(".", 1)[0])
    screenshot("07-overview")

    # The same API server again: the test names the cluster it already is, and attaching needs "Attach anyway".
    page.click("text=Attach cluster")
    page.click("#method-token")
    page.fill("#id_server", member.server)
    page.fill("#id_ca_data", member.ca_pem)
    page.fill("#id_token", member.reader_token)
    page.fill("#id_meta-name", "eu-prod-1-again")
    page.click("#test-connection")
    expect(page.locator("#test-report")).to_contain_text("already attached as cluster eu-prod-1")
    page.click("#attach-submit")
    expect(page.locator("#attach-form")).to_contain_text("eu-prod-1-again has the API server of cluster eu-prod-1")
    assert not Cluster.objects.filter(name="eu-prod-1-again").exists()

    # Replacing the credentials from the cluster's page: refused until a test of exactly these passed.
    page.goto(f"{live_server.url}/clusters/eu-prod-1/")
    page.click("#replace-credentials")
    page.click("#method-token")
    page.fill("#id_server", member.server)
    page.fill("#id_ca_data", member.ca_pem)
    page.fill("#id_token", member.reader_token)
    page.click("#replace-submit")
    expect(page.locator("#form-errors")).to_contain_text("Test the connection first")
    page.click("#test-connection")
    expect(page.locator("#test-report")).to_contain_text("ready to attach")
    page.click("#replace-submit")
    expect(page.locator(".alert.success")).to_contain_text("eu-prod-1's credentials replaced")
    expect(page).to_have_url(re.compile(r"/clusters/eu-prod-1/$"))


def test_attach_from_pasted_kubeconfig_picking_a_context(page, live_server, localfleet_members, celery_worker,
                                                         screenshot):
    members = list(localfleet_members.values())
    broken = localfleet_members["ack-hangzhou"]  # the profile with an unschedulable Deployment
    config = members[0].admin_kubeconfig
    second = broken.admin_kubeconfig
    config["clusters"] += second["clusters"]
    config["users"] += second["users"]
    config["contexts"] += second["contexts"]
    make_user("otto-operator", "operator")
    log_in(page, live_server, "otto-operator")
    page.goto(f"{live_server.url}/clusters/attach/?method=kubeconfig")
    page.fill("#id_kubeconfig", "clusters: [not yaml")
    page.click("#read-contexts")
    expect(page.locator("#kubeconfig-error")).to_contain_text("not valid YAML")
    page.fill("#id_kubeconfig", yaml.safe_dump(config))
    page.click("#read-contexts")
    contexts = page.locator("input[name=contexts]")
    expect(contexts).to_have_count(2)
    page.uncheck(f"input[name=contexts][value='{config['current-context']}']")
    page.check(f"input[name=contexts][value='{second['current-context']}']")
    screenshot("08-wizard-kubeconfig-contexts")
    page.click("#attach-submit")  # untested: refused, nothing attached, the choice kept
    expect(page.locator("#attach-form")).to_contain_text("Test the connection first")
    assert not Cluster.objects.exists()
    page.click("#test-connection")
    expect(page.locator("#test-report")).to_contain_text("ready to attach")
    page.click("#attach-submit")
    name = f"localfleet-{broken.name}"
    expect(page).to_have_url(re.compile(rf"/clusters/{name}/$"))
    # This member runs a Deployment that cannot be scheduled, on purpose: it must read as degraded, with why.
    wait_status(page, name, "degraded")
    expect(page.locator("#cluster-header")).to_contain_text("1 workload unavailable")
    assert Cluster.objects.count() == 1
    expect(page.locator(".cards")).to_contain_text(broken.version)
