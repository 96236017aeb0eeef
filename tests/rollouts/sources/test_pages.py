"""The application page's source: set through a form (the same service as the API), its last check and error shown,
Check now, and revisions that say which commit or chart they came from."""

from __future__ import annotations

import pytest
from django.test import Client

from foundation.models import AuditEvent
from inventory.models import Team
from inventory.people import services as team_services
from rollouts import services, sourcing
from rollouts.models import Source
from tests.builders import make_user
from tests.rollouts.sources.conftest import TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]

WEB = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: '%d'}\n"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def org(admin_user):
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    users = {}
    for team, prefix in ((payments, "pay"), (shop, "shop")):
        for role in ("viewer", "operator"):
            users[f"{prefix}_{role}"] = member = make_user(f"{prefix}-{role}")
            team_services.add_member(team, member=member, role=role, user=admin_user)
    app = services.create_application(name="pay", namespace="pay", manifests_text=WEB % 1, user=None,
                                      owner_team=payments)
    credential = sourcing.create_credential(user=admin_user, name="pay-git", secret=TOKEN, owner_team=payments)
    return {"app": app, "credential": credential, **users}


def test_an_operator_sets_the_source_and_sees_the_commit_on_each_revision(org, git_server):
    url = git_server.create("payments/page")
    sha = git_server.commit("payments/page", {"app/web.yaml": WEB % 2}, message="Bump a to two")
    client = _client(org["pay_operator"])
    assert client.get("/applications/pay/source/").status_code == 200
    answer = client.post("/applications/pay/source/", {"kind": "git", "url": url, "ref": "main", "path": "app",
                                                       "credential": "pay-git", "poll_interval": 300})
    assert answer.status_code == 302, answer.content.decode()[:500]
    source = Source.objects.get(application=org["app"])
    assert (source.url, source.path, source.credential.name) == (url, "app", "pay-git")
    assert AuditEvent.objects.filter(action="application.source", actor=org["pay_operator"]).exists()
    sourcing.check(source)  # what the queued worker task does
    page = client.get("/applications/pay/").content.decode()
    assert sha[:12] in page and "Bump a to two" in page and 'id="source-check"' in page
    assert TOKEN not in page


def test_a_failed_check_says_why_on_the_page(org, git_server, admin_user):
    source = sourcing.set_source(org["app"], user=admin_user, kind="git", url=git_server.url("payments/none"),
                                 credential=org["credential"])
    sourcing.check(source)
    page = _client(org["pay_viewer"]).get("/applications/pay/").content.decode()
    assert "has no Git repository at this URL" in page and 'id="source-check"' not in page


def test_a_bad_field_is_shown_on_the_form_and_nothing_is_saved(org):
    answer = _client(org["pay_operator"]).post("/applications/pay/source/", {
        "kind": "git", "url": "https://169.254.169.254/x.git", "poll_interval": 300})
    assert answer.status_code == 400 and "link-local" in answer.content.decode()
    assert not Source.objects.exists()


def test_viewer_cannot_open_or_post_the_source_form(org, git_server):
    client = _client(org["pay_viewer"])
    assert client.get("/applications/pay/source/").status_code == 403
    assert client.post("/applications/pay/source/", {"kind": "git", "url": git_server.url("p/x"),
                                                     "poll_interval": 300}).status_code == 403
    assert not Source.objects.exists()


def test_operator_of_another_team_cannot_see_or_change_the_source(org, git_server, admin_user):
    sourcing.set_source(org["app"], user=admin_user, kind="git", url=git_server.url("p/x"))
    client = _client(org["shop_operator"])
    assert client.get("/applications/pay/source/").status_code == 404
    assert client.post("/applications/pay/source/check/").status_code == 404
    assert client.post("/applications/pay/source/", {"kind": "git", "url": git_server.url("shop/y"),
                                                     "poll_interval": 300}).status_code == 404
    assert Source.objects.get().url == git_server.url("p/x")


def test_another_teams_credential_is_not_offered(org, admin_user):
    sourcing.create_credential(user=admin_user, name="shop-git", secret="s", owner_team=Team.objects.get(name="shop"))
    page = _client(org["pay_operator"]).get("/applications/pay/source/").content.decode()
    assert "pay-git" in page and "shop-git" not in page


def test_the_rollout_and_its_approval_say_which_commit_they_carry(org, git_server, admin_user, fleet):
    from rollouts.models import Rollout

    app = services.create_application(name="edge", namespace="edge", manifests_text=WEB % 1, user=None)
    url = git_server.create("platform/approve")
    sha = git_server.commit("platform/approve", {"web.yaml": WEB % 7}, message="Seven for prod")
    token = sourcing.create_credential(user=admin_user, name="platform-git", secret=TOKEN)
    revision = sourcing.check(sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=token))
    rollout = services.create_rollout(revision=revision, user=admin_user, stages=[
        {"name": "ring-a", "selector": "ring=a", "approvals_required": 1}])
    assert Rollout.objects.get(pk=rollout.pk).stages.get().approvals_required == 1
    page = _client(admin_user).get(f"/rollouts/{rollout.pk}/").content.decode()
    assert f"commit <span class=\"mono\">{sha[:12]}</span> “Seven for prod” by Anna Example" in page
    assert url in page


def test_a_commit_links_to_its_page_on_hosts_whose_pages_are_known():
    from rollouts.models import Revision

    sha = "a" * 40
    for url, link in (("https://github.com/org/repo.git", f"https://github.com/org/repo/commit/{sha}"),
                      ("https://gitlab.com/group/sub/repo", f"https://gitlab.com/group/sub/repo/-/commit/{sha}"),
                      ("https://git.internal.example/team/repo.git", ""),
                      ("http://github.com/org/repo.git", "")):
        assert Revision(source={"commit": sha, "url": url}).source_link == link
