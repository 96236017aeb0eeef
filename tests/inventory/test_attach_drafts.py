"""The wizard never sends a secret back, loses nothing on a rejected submit, and tests connections in a worker
within one time budget."""

from __future__ import annotations

import base64
import json
import socket
import time

import redis
import yaml
from django.conf import settings

from inventory import onboarding
from inventory.models import AttachDraft, Cluster
from tests.builders import make_user

HX = {"HTTP_HX_REQUEST": "true"}
TOKEN = "s3cr3t-bearer-token-never-rendered"


def kubeconfig(*contexts: str, server: str = "https://api.example.com:6443") -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": contexts[0],
        "clusters": [{"name": f"c-{c}", "cluster": {"server": server}} for c in contexts],
        "users": [{"name": f"u-{c}", "user": {"token": f"{TOKEN}-{c}"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": f"c-{c}", "user": f"u-{c}"}} for c in contexts],
    })


META = {"meta-environment": "dev", "meta-sync_interval": "60"}


def test_a_rejected_token_attach_renders_no_secret_and_loses_nothing(client, operator,
                                                                     django_capture_on_commit_callbacks):
    client.force_login(operator)
    body = {"method": "token", "server": "https://api.example.com:6443", "token": TOKEN, **META,
            "meta-labels": "not a label"}
    response = client.post("/clusters/attach/", body)
    assert response.status_code == 400
    assert TOKEN.encode() not in response.content
    assert b"Held for this attach" in response.content
    draft = AttachDraft.objects.get()
    assert draft.created_by == operator and TOKEN not in draft.ciphertext
    # The second submit leaves the token field empty and names the draft: the held token is used.
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/clusters/attach/", {**body, "token": "", "meta-labels": "team=web",
                                                     "meta-name": "web-1", "draft": str(draft.pk),
                                                     "meta-attach_anyway": "on"})  # (untested: nothing answers)
    assert response.status_code == 302, response.content.decode()[:2000]
    cluster = Cluster.objects.get(name="web-1")
    assert cluster.credential.open()["token"] == TOKEN
    assert not AttachDraft.objects.exists()  # used up


def test_a_rejected_kubeconfig_attach_renders_no_kubeconfig(client, operator, django_capture_on_commit_callbacks):
    client.force_login(operator)
    body = {"method": "kubeconfig", "kubeconfig": kubeconfig("east", "west"), **META}
    response = client.post("/clusters/attach/", body)  # no context picked
    assert response.status_code == 400
    assert TOKEN.encode() not in response.content
    assert b"Pick at least one context" in response.content
    assert b'value="west"' in response.content  # the contexts are still offered
    draft = AttachDraft.objects.get()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig": "", **META,
                                                     "contexts": ["west"], "draft": str(draft.pk),
                                                     "meta-attach_anyway": "on"})
    assert response.status_code == 302
    assert Cluster.objects.get(name="west").credential.open()["kubeconfig"]["users"][0]["user"]["token"] == \
        f"{TOKEN}-west"


def test_operator_cannot_use_someone_elses_draft(client, operator, django_capture_on_commit_callbacks):
    client.force_login(operator)
    client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig": kubeconfig("east"), **META})
    draft = AttachDraft.objects.get()
    other = make_user("olga-operator", "operator")
    client.force_login(other)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/clusters/attach/", {"method": "kubeconfig", **META, "contexts": ["east"],
                                                     "draft": str(draft.pk)})
    assert response.status_code == 400
    assert b"Paste a kubeconfig or upload one" in response.content
    assert not Cluster.objects.exists()
    assert client.get(f"/clusters/attach/test/{draft.pk}/", **HX).content.count(TOKEN.encode()) == 0


def test_the_connection_test_task_carries_only_the_draft_id(client, operator, django_capture_on_commit_callbacks):
    broker = redis.Redis.from_url(settings.REDIS_URL)
    broker.delete("default")
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/clusters/attach/test/", {"method": "token", "server": "https://127.0.0.1:1",
                                                          "token": TOKEN}, **HX)
    assert response.status_code == 200
    draft = AttachDraft.objects.get()
    messages = broker.lrange("default", 0, -1)
    broker.delete("default")
    assert len(messages) == 1
    envelope = json.loads(messages[0])
    task_body = base64.b64decode(envelope["body"]).decode()
    assert str(draft.pk) in task_body
    assert TOKEN not in task_body and TOKEN not in messages[0].decode()
    assert draft.test_state == "queued"


def test_many_contexts_are_tested_at_once_within_the_budget(operator, settings):
    """Twelve contexts against a server that accepts and never answers: the whole test ends at the budget."""
    settings.FLEETWEB_CONNECTION_TEST_BUDGET = 5
    settings.FLEETWEB_KUBE_READ_TIMEOUT = 30
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    names = [f"ctx-{i}" for i in range(12)]
    try:
        draft = onboarding.save_draft(user=operator, method="kubeconfig", source={"kubeconfig": yaml.safe_load(
            kubeconfig(*names, server=f"https://127.0.0.1:{silent.getsockname()[1]}"))})
        onboarding.request_test(draft, contexts=names, insecure=False, user=operator)
        started = time.monotonic()
        onboarding.run_test(str(draft.pk))
        elapsed = time.monotonic() - started
    finally:
        silent.close()
    draft.refresh_from_db()
    assert draft.test_state == "done"
    assert [r["target"] for r in draft.test_results] == names
    assert all(not r["ok"] for r in draft.test_results)
    assert all("budget" in r["checks"][-1]["detail"] or "timed out" in r["checks"][-1]["detail"]
               or "no answer" in r["checks"][-1]["detail"] for r in draft.test_results)
    assert elapsed < 5 + 4, elapsed
