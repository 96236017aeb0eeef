""""Test source": what the source form (or the API) holds, fetched and rendered by a worker against a real Git server
without saving anything; the same permission and field checks as saving it, the fields sealed in the test and only its
id in the task, the answer readable by the one who asked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from foundation.models import AuditEvent
from inventory.people import services as team_services
from rollouts import services, sourcing, tasks
from rollouts.errors import RolloutError
from rollouts.models import Revision, Source, SourceTest
from tests.builders import make_user
from tests.rollouts.sources.conftest import TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]

WEB = """apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data: {a: "%s"}
"""


@pytest.fixture
def app(team):
    return services.create_application(name="pay", namespace="pay", manifests_text=WEB % 0, user=None,
                                       owner_team=team)


@pytest.fixture
def repo(git_server):
    url = git_server.create("payments/tested")
    sha = git_server.commit("payments/tested", {"deploy/web.yaml": WEB % 1, "deploy/other.yaml": WEB.replace(
        "web", "other") % 2}, message="Two maps")
    return url, sha


@pytest.fixture
def credential(admin_user, team):
    return sourcing.create_credential(user=admin_user, name="payments-git", secret=TOKEN, owner_team=team)


def _form(url: str, **more) -> dict:
    return {"kind": "git", "url": url, "ref": "main", "path": "deploy", "chart": "", "version": "", "values": "",
            "poll_interval": 300, **more}


def test_the_form_tests_a_source_in_a_worker_and_saves_nothing(repo, app, credential, admin_user, monkeypatch):
    url, sha = repo
    queued: list = []
    monkeypatch.setattr(sourcing, "enqueue_after_commit", lambda *args, **kwargs: queued.append(args))
    client = Client()
    client.force_login(admin_user)
    answer = client.post(reverse("rollouts:source_test", args=[app.name]),
                         _form(url, credential="payments-git", values="secret: hunter2\n"),
                         headers={"HX-Request": "true"})
    assert answer.status_code == 200 and b"testing in a worker" in answer.content
    test = SourceTest.objects.get()
    assert queued == [("rollouts.tasks.test_source", str(test.pk))], "the task gets the test's id, nothing else"
    assert "hunter2" not in test.ciphertext and TOKEN not in test.ciphertext
    event = AuditEvent.objects.get(action="application.source_test")
    assert "hunter2" not in str(event.after) and event.after["credential__name"] == "payments-git"

    assert tasks.test_source(str(test.pk)) == "done"
    shown = client.get(reverse("rollouts:source_test_status", args=[app.name, test.pk]),
                       headers={"HX-Request": "true"})
    assert shown.status_code == 200 and sha[:12].encode() in shown.content
    assert b"2 objects" in shown.content and b"ConfigMap/other" in shown.content and b"hx-get" not in shown.content
    test.refresh_from_db()
    assert test.result["commit"] == sha and test.result["object_count"] == 2 and test.error == ""
    assert not Source.objects.filter(application=app).exists(), "a test saves no source"
    assert Revision.objects.filter(application=app).count() == 1, "nor a revision"
    assert tasks.test_source(str(test.pk)) == "gone", "run once"


def test_a_failed_test_says_why_in_fleetwebs_words_and_never_shows_the_token(repo, app, admin_user, team):
    url, _sha = repo
    wrong = sourcing.create_credential(user=admin_user, name="wrong-git", secret="not-the-token", owner_team=team)
    test = sourcing.request_test(app, user=admin_user, credential=wrong, **{k: v for k, v in _form(url).items()
                                                                            if k != "poll_interval"})
    tasks.test_source(str(test.pk))
    test.refresh_from_db()
    assert test.state == "done" and test.error_kind == "auth" and "not-the-token" not in test.error
    client = Client()
    client.force_login(admin_user)
    shown = client.get(reverse("rollouts:source_test_status", args=[app.name, test.pk]))
    assert b"Test failed (auth)" in shown.content and b"not-the-token" not in shown.content
    right = sourcing.create_credential(user=admin_user, name="right-git", secret=TOKEN, owner_team=team)
    missing = sourcing.request_test(app, user=admin_user, kind="git", url=url, ref="no-such-branch", path="deploy",
                                    credential=right)
    tasks.test_source(str(missing.pk))
    missing.refresh_from_db()
    assert missing.error_kind == "not_found" and "no-such-branch" in missing.error


def test_bad_fields_are_refused_before_anything_is_queued(app, admin_user):
    client = Client()
    client.force_login(admin_user)
    answer = client.post(reverse("rollouts:source_test", args=[app.name]),
                         _form("http://169.254.169.254/latest/meta-data.git"), headers={"HX-Request": "true"})
    assert answer.status_code == 200 and b"Not tested" in answer.content
    assert not SourceTest.objects.exists() and not AuditEvent.objects.filter(action="application.source_test")


def test_viewer_cannot_test_a_source(repo, app, team):
    viewer = make_user("pay-viewer")
    team_services.add_member(team, member=viewer, role="viewer", user=None)
    client = Client()
    client.force_login(viewer)
    answer = client.post(reverse("rollouts:source_test", args=[app.name]), _form(repo[0]))
    assert answer.status_code == 403
    with pytest.raises(RolloutError):
        sourcing.request_test(app, user=viewer, kind="git", url=repo[0])
    assert not SourceTest.objects.exists()


def test_operator_cannot_test_with_another_teams_credentials_or_read_anothers_test(repo, app, admin_user, team,
                                                                                   credential):
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    theirs = sourcing.create_credential(user=admin_user, name="shop-git", secret="shop-token", owner_team=shop)
    operator = make_user("pay-operator")
    team_services.add_member(team, member=operator, role="operator", user=admin_user)
    with pytest.raises(RolloutError) as refused:
        sourcing.request_test(app, user=operator, kind="git", url=repo[0], credential=theirs)
    assert refused.value.status == 403 and not SourceTest.objects.exists()
    mine = sourcing.request_test(app, user=admin_user, kind="git", url=repo[0], credential=credential)
    client = Client()
    client.force_login(operator)
    assert client.get(reverse("rollouts:source_test_status", args=[app.name, mine.pk])).status_code == 404
    assert client.get(f"/api/v1/applications/{app.pk}/source/tests/{mine.pk}/").status_code == 404


def test_a_test_whose_asker_lost_the_right_reports_the_refusal(repo, app, team, credential):
    operator = make_user("pay-operator")
    grant = team_services.add_member(team, member=operator, role="operator", user=None)
    test = sourcing.request_test(app, user=operator, kind="git", url=repo[0], ref="main", path="deploy",
                                 credential=credential)
    team_services.remove_member(grant, user=None)
    tasks.test_source(str(test.pk))
    test.refresh_from_db()
    assert test.error_kind == "refused" and test.result == {}


def test_the_api_tests_a_source_and_answers_with_what_was_found(repo, app, credential, admin_user):
    url, sha = repo
    client = Client()
    client.force_login(admin_user)
    answer = client.post(f"/api/v1/applications/{app.pk}/source/test/", _form(url, credential="payments-git"),
                         content_type="application/json")
    assert answer.status_code == 202, answer.content
    test_id = answer.json()["id"]
    assert answer.json()["state"] == "queued"
    tasks.test_source(test_id)
    found = client.get(f"/api/v1/applications/{app.pk}/source/tests/{test_id}/").json()
    assert found["state"] == "done" and found["result"]["commit"] == sha and found["error"] == ""
    assert [o["name"] for o in found["result"]["objects"]] == ["other", "web"]


def test_tests_are_forgotten_after_an_hour(repo, app, admin_user):
    old = sourcing.request_test(app, user=admin_user, kind="git", url=repo[0])
    new = sourcing.request_test(app, user=admin_user, kind="git", url=repo[0])
    SourceTest.objects.filter(pk=old.pk).update(requested_at=timezone.now() - timedelta(hours=2))
    tasks.check_due_sources()
    assert list(SourceTest.objects.values_list("pk", flat=True)) == [new.pk]
