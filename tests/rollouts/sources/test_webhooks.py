"""Push webhooks: GitHub, Gitea and GitLab formats verified against the source's secret, which is shown once; a
wrong signature and an unknown address get the same refusal and queue nothing; a burst of pushes is one check."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.test import Client

from foundation.models import AuditEvent
from foundation.queueing import purge_queues
from inventory.people import services as team_services
from rollouts import services, sourcing
from rollouts.models import Source
from tests.builders import make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]
BODY = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()


@pytest.fixture
def hooked(admin_user, git_server, monkeypatch):
    purge_queues()
    team = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    app = services.create_application(name="pay", namespace="pay", user=None, owner_team=team,
                                      manifests_text="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    sourcing.set_source(app, user=admin_user, kind="git", url=git_server.url("payments/hook"))
    path, secret = sourcing.issue_webhook(app, user=admin_user)
    queued: list = []
    monkeypatch.setattr(services, "enqueue", lambda name, *args, **kwargs: queued.append((name, args)))
    yield {"app": app, "team": team, "path": path, "secret": secret, "queued": queued}
    purge_queues()


def _post(path: str, headers: dict, body: bytes = BODY):
    return Client().post(path, body, content_type="application/json", headers=headers)


def _sign(secret: str, body: bytes = BODY) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("form", ["github", "gitea", "gitlab"])
def test_each_hosts_signed_push_queues_one_check(hooked, form):
    headers = {"github": {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={_sign(hooked['secret'])}"},
               "gitea": {"X-Gitea-Event": "push", "X-Gitea-Signature": _sign(hooked["secret"])},
               "gitlab": {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": hooked["secret"]}}[form]
    answer = _post(hooked["path"], headers)
    assert answer.status_code == 202 and answer.json() == {"queued": True}
    source = Source.objects.get()
    assert hooked["queued"] == [("rollouts.tasks.check_source", (source.pk,))], "the id only, never the secret"
    assert _post(hooked["path"], headers).json() == {"queued": False}, "a burst is one check"
    assert len(hooked["queued"]) == 1


@pytest.mark.parametrize("headers", [
    {"X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-Gitea-Signature": "deadbeef"},
    {"X-Gitlab-Token": "guess"},
    {},
])
def test_a_wrong_or_missing_signature_is_refused_and_queues_nothing(hooked, headers):
    answer = _post(hooked["path"], {"X-GitHub-Event": "push", **headers})
    assert answer.status_code == 403 and answer.json() == {"detail": "The signature does not match."}
    assert hooked["queued"] == []


def test_an_unknown_address_reads_like_a_wrong_signature(hooked):
    answer = _post("/hooks/sources/nope/", {"X-Hub-Signature-256": f"sha256={_sign(hooked['secret'])}"})
    assert answer.status_code == 403 and answer.json() == {"detail": "The signature does not match."}
    assert hooked["queued"] == []


def test_a_body_signed_for_another_payload_is_refused(hooked):
    other = json.dumps({"ref": "refs/heads/evil"}).encode()
    answer = _post(hooked["path"], {"X-Hub-Signature-256": f"sha256={_sign(hooked['secret'], other)}"})
    assert answer.status_code == 403 and hooked["queued"] == []


def test_an_oversized_payload_is_refused_unread(hooked):
    big = b"x" * (sourcing.WEBHOOK_MAX_BYTES + 1)
    answer = _post(hooked["path"], {"X-Hub-Signature-256": f"sha256={_sign(hooked['secret'], big)}"}, big)
    assert answer.status_code == 413 and hooked["queued"] == []


def test_a_new_secret_replaces_the_old_one_and_is_audited(hooked, admin_user):
    path, secret = sourcing.issue_webhook(hooked["app"], user=admin_user)
    assert path != hooked["path"] and secret != hooked["secret"]
    old = _post(hooked["path"], {"X-Hub-Signature-256": f"sha256={_sign(hooked['secret'])}"})
    assert old.status_code == 403
    assert _post(path, {"X-Hub-Signature-256": f"sha256={_sign(secret)}"}).status_code == 202
    events = AuditEvent.objects.filter(action="application.source_webhook")
    assert events.count() == 2 and all(secret not in str(e.after) for e in events)
    assert secret not in Source.objects.get().webhook_ciphertext


def test_viewer_and_another_teams_operator_cannot_issue_a_webhook(hooked, admin_user):
    viewer = make_user("pay-viewer")
    team_services.add_member(hooked["team"], member=viewer, role="viewer", user=admin_user)
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    outsider = make_user("shop-operator")
    team_services.add_member(shop, member=outsider, role="operator", user=admin_user)
    before = Source.objects.get().webhook_ciphertext
    for user, status in ((viewer, 403), (outsider, 404)):
        client = Client()
        client.force_login(user)
        assert client.post("/applications/pay/source/webhook/").status_code == status
    assert Source.objects.get().webhook_ciphertext == before
    assert AuditEvent.objects.filter(action="application.source_webhook").count() == 1


def test_the_page_shows_the_secret_once_and_never_caches_it(hooked, admin_user):
    client = Client()
    client.force_login(admin_user)
    answer = client.post("/applications/pay/source/webhook/")
    assert answer.status_code == 200 and answer["Cache-Control"] == "no-store"
    secret = answer.content.decode().split('id="webhook-secret">')[1].split("<")[0]
    assert len(secret) > 30
    assert secret not in client.get("/applications/pay/").content.decode()
