"""In a real browser at 1280×800: an operator points an application at a real Git server through the source form,
tests it there (a worker fetches and renders it, nothing saved), a worker turns the commit into a revision, the page
shows which commit it is; a push webhook's secret is shown once. Every page of it fits the window."""

from __future__ import annotations

import pytest
import yaml
from playwright.sync_api import expect

from localfleet.gitserver import GitServer
from rollouts import services, sourcing
from tests.browser.test_onboarding import log_in
from tests.builders import make_user

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"
TOKEN = "browser-git-token"


def _config(value: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                           "data": {"value": value}})


def test_an_operator_reads_an_application_from_git_and_sees_the_commit(page, live_server, celery_worker, tmp_path,
                                                                       settings, screenshot):
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.0/8"]
    server = GitServer(tmp_path, token=TOKEN).start()
    try:
        url = server.create("shop/settings")
        sha = server.commit("shop/settings", {"deploy/settings.yaml": _config("from git")},
                            message="Settings from Git")
        operator = make_user("otto-operator", "operator")
        services.create_application(name="storefront", namespace="storefront", manifests_text=_config("pasted"),
                                    user=operator)
        sourcing.create_credential(user=operator, name="shop-git", secret=TOKEN)
        page.set_viewport_size({"width": 1280, "height": 800})
        log_in(page, live_server, "otto-operator")
        page.goto(f"{live_server.url}/applications/storefront/")
        page.click("#source-edit")
        assert page.evaluate(OVERFLOW) <= 0
        page.select_option("#id_kind", "git")
        page.fill("#id_url", url)
        page.fill("#id_ref", "main")
        page.fill("#id_path", "deploy")
        page.select_option("#id_credential", "shop-git")
        page.click("#source-test-button")  # a worker fetches and renders it; the panel polls until it has
        expect(page.locator("#source-test-ok")).to_contain_text(sha[:12], timeout=30_000)
        expect(page.locator("#source-test-ok")).to_contain_text("1 object")
        assert page.evaluate(OVERFLOW) <= 0
        screenshot("source-form")
        page.click("#source-save")
        expect(page.locator("#source")).to_contain_text(url)
        for _ in range(30):  # the worker's check: reload until its revision is listed
            if page.locator('tr[data-revision="2"]').count():
                break
            page.wait_for_timeout(1000)
            page.reload()
        expect(page.locator('tr[data-revision="2"]')).to_contain_text(sha[:12])
        expect(page.locator('tr[data-revision="2"]')).to_contain_text("Settings from Git")
        expect(page.locator('tr[data-revision="1"]')).to_contain_text("pasted")
        assert page.evaluate(OVERFLOW) <= 0
        screenshot("source-revision")

        page.click("#source-webhook")
        secret = page.locator("#webhook-secret").inner_text()
        assert len(secret) > 30 and page.evaluate(OVERFLOW) <= 0
        page.goto(f"{live_server.url}/applications/storefront/")
        expect(page.locator("#source")).to_contain_text("Push webhook: set")
        assert secret not in page.content()
    finally:
        server.stop()


def test_an_operator_generates_a_deploy_key_and_reads_git_over_ssh_with_it(page, live_server, celery_worker,
                                                                          tmp_path, settings, screenshot):
    from localfleet import sshgit
    from localfleet.pytest_plugin import require

    require(sshgit.available(), "sshd (openssh-server), git-shell and ssh-keygen are needed for Git over SSH")
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.0/8"]
    server = GitServer(tmp_path).start()
    ssh = sshgit.SshGitServer(tmp_path, server.root).start()
    try:
        server.create("shop/ssh")
        sha = server.commit("shop/ssh", {"settings.yaml": _config("over ssh")}, message="Settings over SSH")
        make_user("olga-operator", "operator")
        services.create_application(name="checkout", namespace="checkout", manifests_text=_config("pasted"),
                                    user=None)
        page.set_viewport_size({"width": 1280, "height": 800})
        log_in(page, live_server, "olga-operator")
        page.click("#credentials-link")
        page.fill("#id_name", "shop-deploy")
        page.select_option("#id_kind", "ssh")
        page.fill("#id_host_key", f"[127.0.0.1]:{ssh.port} {ssh.host_key}")
        page.click("#credential-save")
        public = page.locator("#new-public-key").inner_text().strip()
        assert public.startswith("ssh-ed25519 ") and page.evaluate(OVERFLOW) <= 0
        expect(page.locator("#credential-shop-deploy")).to_contain_text(public.split()[1][:20])
        screenshot("source-credentials")
        ssh.authorize(public)  # as the repository's owner adds a deploy key
        page.goto(f"{live_server.url}/applications/checkout/source/")
        page.select_option("#id_kind", "git")
        page.fill("#id_url", ssh.url("shop/ssh"))
        page.select_option("#id_credential", "shop-deploy")
        page.click("#source-test-button")
        expect(page.locator("#source-test-ok")).to_contain_text(sha[:12], timeout=30_000)
        assert page.evaluate(OVERFLOW) <= 0
    finally:
        ssh.stop()
        server.stop()
