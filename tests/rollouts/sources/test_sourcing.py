"""An application whose revisions come from a real Git server: a commit becomes a revision that pins it, nothing new
costs one request and makes nothing, a new commit is a revision of its own that voids no approval, errors stay on
the source in Fleetweb's words; and who may point a source at which credentials."""

from __future__ import annotations

import logging

import pytest

from foundation.models import AuditEvent
from inventory.people import services as team_services
from rollouts import services, sourcing
from rollouts.errors import RolloutError
from rollouts.models import Application, Revision, Source, SourceCredential
from rollouts.sources import git
from tests.builders import make_user
from tests.rollouts.sources.conftest import TOKEN, WEB

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]


@pytest.fixture
def credential(admin_user, team):
    return sourcing.create_credential(user=admin_user, name="payments-git", secret=TOKEN, owner_team=team)


def test_a_commit_becomes_a_revision_that_pins_it(git_server, app, credential, admin_user):
    url = git_server.create("payments/deploy-a")
    sha = git_server.commit("payments/deploy-a", {"deploy/web.yaml": WEB % 3, "README.md": "x"},
                            message="Three replicas")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, ref="main", path="deploy",
                                 credential=credential)
    revision = sourcing.check(source)
    assert revision is not None and revision.number == 2
    pins = revision.source
    assert (pins["commit"], pins["subject"], pins["path"], pins["ref"]) == (sha, "Three replicas", "deploy", "main")
    assert pins["author"].startswith("Anna Example") and pins["tool"] == "plain" and pins["url"] == url
    assert "replicas: 3" in revision.manifests and revision.message == "Git repository: Three replicas"
    event = AuditEvent.objects.filter(action="application.revision").latest("pk")
    assert event.after["source"]["commit"] == sha and TOKEN not in str(event.after)
    source.refresh_from_db()
    assert source.seen == sha and source.error == "" and source.next_check_at > source.checked_at


def test_nothing_new_makes_nothing_and_fetches_nothing(git_server, app, credential, admin_user, monkeypatch):
    url = git_server.create("payments/deploy-b")
    git_server.commit("payments/deploy-b", {"web.yaml": WEB % 2}, message="two")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=credential)
    assert sourcing.check(source) is not None
    fetched = []
    monkeypatch.setattr(git, "checkout", lambda *a, **k: fetched.append(a))
    assert sourcing.check(source) is None and fetched == []
    assert app.revisions.count() == 2


def test_a_new_commit_is_its_own_revision_and_voids_no_approval(git_server, app, credential, admin_user):
    url = git_server.create("payments/deploy-c")
    git_server.commit("payments/deploy-c", {"web.yaml": WEB % 2}, message="two")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=credential)
    first = sourcing.check(source)
    second_sha = git_server.commit("payments/deploy-c", {"web.yaml": WEB % 4}, message="four")
    audit_before = AuditEvent.objects.filter(action="application.revision").count()
    second = sourcing.check(source)
    assert second is not None and second.number == first.number + 1 and second.source["commit"] == second_sha
    event = AuditEvent.objects.filter(action="application.revision").latest("pk")
    assert AuditEvent.objects.filter(action="application.revision").count() == audit_before + 1
    assert event.after["approvals_voided"] == 0
    same = git_server.commit("payments/deploy-c", {"README.md": "docs only"}, message="docs")
    assert sourcing.check(source) is None, "a commit that renders the same objects is no new revision"
    source.refresh_from_db()
    assert source.seen == same


def test_a_bad_manifest_in_the_commit_is_kept_on_the_source_and_said_to_a_person(git_server, app, credential,
                                                                               admin_user):
    url = git_server.create("payments/deploy-d")
    git_server.commit("payments/deploy-d", {"web.yaml": "kind: [unclosed"}, message="broken")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=credential)
    assert sourcing.check(source) is None
    source.refresh_from_db()
    assert source.error.startswith("YAML does not parse") and source.error_kind == "invalid"
    with pytest.raises(RolloutError, match="YAML does not parse"):
        sourcing.check(source, user=admin_user, force=True)
    assert app.revisions.count() == 1


def test_a_wrong_token_is_an_auth_error_that_never_shows_the_token(git_server, app, admin_user, team, caplog):
    url = git_server.create("payments/deploy-e")
    git_server.commit("payments/deploy-e", {"web.yaml": WEB % 2}, message="two")
    wrong = sourcing.create_credential(user=admin_user, name="wrong", secret="not-the-token-123", owner_team=team)
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=wrong)
    with caplog.at_level(logging.DEBUG):
        assert sourcing.check(source) is None
    source.refresh_from_db()
    assert source.error_kind == "auth" and "refused the credentials" in source.error
    assert "not-the-token-123" not in caplog.text + source.error
    assert "not-the-token-123" not in repr(wrong) and "not-the-token-123" not in wrong.ciphertext


def test_operator_cannot_point_a_source_at_another_teams_credentials(git_server, app, admin_user, team):
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    theirs = sourcing.create_credential(user=admin_user, name="shop-git", secret="shop-token", owner_team=shop)
    operator = make_user("pay-operator")
    team_services.add_member(team, member=operator, role="operator", user=admin_user)
    with pytest.raises(RolloutError) as refused:
        sourcing.set_source(app, user=operator, kind="git", url=git_server.url("shop/secret"), credential=theirs)
    assert refused.value.status == 403
    assert not Source.objects.filter(application=app).exists()
    assert not AuditEvent.objects.filter(action="application.source").exists()
    with pytest.raises(RolloutError) as mismatch:  # not even a global operator joins two teams' things
        sourcing.set_source(app, user=admin_user, kind="git", url=git_server.url("shop/secret"), credential=theirs)
    assert "another team" in str(mismatch.value.errors)


def test_operator_cannot_store_credentials_for_another_team(admin_user, team):
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    operator = make_user("pay-operator")
    team_services.add_member(team, member=operator, role="operator", user=admin_user)
    for owner in (shop, None):
        with pytest.raises(RolloutError) as refused:
            sourcing.create_credential(user=operator, name="x", secret="s", owner_team=owner)
        assert refused.value.status == 403
    assert not SourceCredential.objects.exists()
    mine = sourcing.create_credential(user=operator, name="mine", secret="s", owner_team=team)
    assert mine.open() == "s"


def test_viewer_cannot_set_a_source(app, team, admin_user, git_server):
    viewer = make_user("pay-viewer")
    team_services.add_member(team, member=viewer, role="viewer", user=admin_user)
    with pytest.raises(RolloutError) as refused:
        sourcing.set_source(app, user=viewer, kind="git", url=git_server.url("payments/x"))
    assert refused.value.status == 403 and not Source.objects.exists()


@pytest.mark.parametrize(("fields", "field"), [
    ({"kind": "svn", "url": "https://example.com/r"}, "kind"),
    ({"kind": "git", "url": "https://169.254.169.254/r.git"}, "url"),
    ({"kind": "git", "url": "https://example.com/r.git", "path": "../../etc"}, "path"),
    ({"kind": "helm", "url": "https://charts.example.com"}, "chart"),
    ({"kind": "helm", "url": "https://charts.example.com", "chart": "web", "version": "banana"}, "version"),
    ({"kind": "oci", "url": "https://registry.example.com/web"}, "url"),
    ({"kind": "oci", "url": "oci://169.254.169.254/charts/web"}, "url"),
    ({"kind": "git", "url": "https://example.com/r.git", "poll_interval": 5}, "poll_interval"),
])
def test_bad_source_fields_are_refused_each_by_name(app, admin_user, fields, field, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    with pytest.raises(RolloutError) as refused:
        sourcing.set_source(app, user=admin_user, **fields)
    assert field in refused.value.errors and not Source.objects.exists()


def test_due_sources_are_claimed_once(app, admin_user, git_server):
    sourcing.set_source(app, user=admin_user, kind="git", url=git_server.url("payments/due"))
    assert sourcing.claim_due() == [Source.objects.get().pk]
    assert sourcing.claim_due() == [], "its next check moved forward"
    assert Application.objects.count() == 1 and Revision.objects.count() == 1


def test_a_new_revision_starts_the_sources_plan_up_to_its_first_gate(git_server, admin_user, fleet):
    from rollouts import plans
    from rollouts.models import Rollout

    app = services.create_application(name="edge", namespace="edge", manifests_text=WEB % 1, user=None)
    plan = plans.create_plan(name="rings", user=admin_user, stages=[
        {"name": "ring-a", "selector": "ring=a"}, {"name": "ring-b", "selector": "ring=b", "approvals_required": 1}])
    url = git_server.create("platform/edge")
    git_server.commit("platform/edge", {"web.yaml": WEB % 2}, message="two")
    token = sourcing.create_credential(user=admin_user, name="platform-git", secret=TOKEN)
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=token, plan=plan)
    revision = sourcing.check(source)
    rollout = Rollout.objects.get(revision=revision)
    assert rollout.plan_name == "rings" and rollout.requested_by is None
    assert list(rollout.stages.values_list("approvals_required", flat=True)) == [0, 1], "the gate stays a gate"
    assert AuditEvent.objects.filter(action="rollout.create", actor__isnull=True).count() == 1


def test_a_plan_that_cannot_start_leaves_the_revision_and_says_why(git_server, app, credential, admin_user, fleet):
    from rollouts import plans

    plan = plans.create_plan(name="nowhere", user=admin_user, stages=[{"name": "x", "selector": "ring=zzz"}])
    url = git_server.create("payments/noplan")
    git_server.commit("payments/noplan", {"web.yaml": WEB % 5}, message="five")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=credential, plan=plan)
    revision = sourcing.check(source)
    assert revision is not None
    source.refresh_from_db()
    assert source.error_kind == "rollout" and "did not start" in source.error and "matches no cluster" in source.error
