"""Rollouts API and pages: roles on every endpoint, 409 with a reason, validation by field, signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import yaml

from rollouts import services
from rollouts.choices import RolloutState, StageState
from rollouts.models import Application, Rollout
from rollouts.tasks import send_webhook
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db

MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


@pytest.fixture
def rollout(operator):
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    return services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "canary", "selector": "environment=dev"}, {"name": "production", "selector": "environment=prod"}])


READS = ["/api/v1/applications/", "/api/v1/applications/{app}/", "/api/v1/applications/{app}/revisions/",
         "/api/v1/rollouts/", "/api/v1/rollouts/{rollout}/", "/api/v1/rollout-plans/"]
PAGES = ["/applications/", "/applications/web/", "/rollouts/", "/rollouts/{rollout}/", "/rollouts/approvals/",
         "/rollouts/plans/"]


@pytest.mark.parametrize("url", READS)
def test_api_reads_need_a_role(api_as, rollout, viewer, outsider, url):
    url = url.format(app=rollout.application_id, rollout=rollout.pk)
    assert api_as(viewer).get(url).status_code == 200
    assert api_as(outsider).get(url).status_code == 403
    assert api_as(None).get(url).status_code in (401, 403)


@pytest.mark.parametrize("url", PAGES)
def test_pages_need_a_role(client, rollout, viewer, outsider, url):
    url = url.format(rollout=rollout.pk)
    client.force_login(viewer)
    assert client.get(url).status_code == 200
    client.force_login(outsider)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(("url", "body"), [
    ("/api/v1/applications/", {"name": "x", "namespace": "x", "manifests": MANIFESTS}),
    ("/api/v1/rollouts/", {"revision": 0, "stages": []}),
    ("/api/v1/rollouts/{rollout}/pause/", {}), ("/api/v1/rollouts/{rollout}/abort/", {}),
    ("/api/v1/rollouts/{rollout}/rollback/", {}), ("/api/v1/rollout-plans/", {"name": "p", "stages": []}),
])
def test_viewers_and_approvers_cannot_write(api_as, rollout, viewer, approver, url, body):
    url = url.format(rollout=rollout.pk)
    for user in (viewer, approver):
        assert api_as(user).post(url, body, format="json").status_code == 403
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PENDING


def test_actions_answer_with_the_state_or_409(api_as, rollout, operator, approver):
    client = api_as(operator)
    paused = client.post(f"/api/v1/rollouts/{rollout.pk}/pause/")
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    again = client.post(f"/api/v1/rollouts/{rollout.pk}/pause/")
    assert again.status_code == 409 and "not possible now" in again.json()["detail"]
    nothing = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {}, format="json")
    assert nothing.status_code == 409 and "No stage of this rollout is awaiting approval" in nothing.json()["detail"]
    assert client.post(f"/api/v1/rollouts/{rollout.pk}/resume/").json()["state"] == "pending"
    assert client.post(f"/api/v1/rollouts/{rollout.pk}/abort/").json()["state"] == "aborted"
    assert client.post(f"/api/v1/rollouts/{rollout.pk}/resume/").status_code == 409


def test_approve_over_the_api(api_as, rollout, approver):
    Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.RUNNING)
    rollout.stages.filter(index=1).update(state=StageState.AWAITING_APPROVAL)
    response = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "go"}, format="json")
    assert response.status_code == 200
    detail = api_as(approver).get(f"/api/v1/rollouts/{rollout.pk}/").json()
    assert detail["stage_list"][1]["approvals"][0]["user"] == approver.username
    assert detail["stage_list"][1]["approvals"][0]["comment"] == "go"


def test_creating_applications_revisions_and_rollouts_validates_by_field(api_as, rollout, operator):
    client = api_as(operator)
    bad = client.post("/api/v1/applications/", {"name": "bad", "namespace": "bad", "manifests":
                                                "kind: Secret\napiVersion: v1\nmetadata: {name: s}\n"}, format="json")
    assert bad.status_code == 400 and "Secrets are not shipped" in bad.json()["errors"]["manifests"][0]
    assert not Application.objects.filter(name="bad").exists()
    same = client.post(f"/api/v1/applications/{rollout.application_id}/revisions/", {"manifests": MANIFESTS},
                       format="json")
    assert same.status_code == 400 and "Nothing changed" in same.json()["errors"]["manifests"][0]
    empty = client.post("/api/v1/rollouts/", {"revision": rollout.revision_id, "stages": [
        {"name": "x", "selector": "environment=qa"}]}, format="json")
    assert empty.status_code == 400 and "matches no cluster" in empty.json()["errors"]["stages[0].selector"][0]
    neither = client.post("/api/v1/rollouts/", {"revision": rollout.revision_id}, format="json")
    assert neither.status_code == 400


def test_override_over_the_api(api_as, rollout, operator, admin_user):
    from inventory import services as inventory_services

    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    client = api_as(operator)
    url = f"/api/v1/applications/{rollout.application_id}/overrides/prod/"
    ok = client.put(url, {"replicas": 4, "image_tags": {"web": "2.0"}, "labels": {"tier": "gold"}}, format="json")
    assert ok.status_code == 200 and ok.json()["replicas"] == 4
    bad = client.put(url, {"replicas": 5000}, format="json")
    assert bad.status_code == 400 and "replicas" in bad.json()["errors"]
    assert client.put(url, {}, format="json").status_code == 204
    assert client.put(f"/api/v1/applications/{rollout.application_id}/overrides/nope/", {},
                      format="json").status_code == 404


def test_rollout_detail_shows_the_approval_form_only_to_someone_who_may_use_it(client, rollout, operator, approver):
    Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.RUNNING)
    rollout.stages.filter(index=1).update(state=StageState.AWAITING_APPROVAL)
    client.force_login(approver)
    page = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert 'id="approve-confirm-1"' in page
    assert "It applies to: <strong>prod-1</strong>" in page
    client.force_login(operator)
    page = client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert 'id="approve-confirm-1"' not in page
    assert client.post(f"/rollouts/{rollout.pk}/stages/1/approve/", {"comment": "x"}).status_code == 403


def test_application_pages_create_and_diff(client, operator):
    client.force_login(operator)
    bad = client.post("/applications/new/", {"name": "web", "namespace": "web", "manifests": "kind: [",
                                             "message": ""})
    assert bad.status_code == 400 and b"YAML does not parse" in bad.content and b"kind: [" in bad.content
    ok = client.post("/applications/new/", {"name": "web", "namespace": "web", "manifests": MANIFESTS})
    assert ok.status_code == 302
    client.post("/applications/web/revisions/new/", {"manifests": MANIFESTS.replace("'1'", "'2'"),
                                                     "message": "bump"})
    page = client.get("/applications/web/").content.decode()
    assert 'id="diff"' in page and "<span class=\"add\">+  a: &#x27;2&#x27;</span>" in page


def test_webhook_is_signed_and_refusals_are_retried(settings, http_receiver):
    http_receiver.statuses["/hook"] = [503]
    settings.FLEETWEB_WEBHOOK_URL = http_receiver.url("/hook")
    settings.FLEETWEB_WEBHOOK_SECRET = "s3cret"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    payload = {"event": "rollout.succeeded", "delivery": "d-1", "rollout": 7}
    with pytest.raises(Exception):  # noqa: B017 - the eager retry surfaces the receiver's 503
        send_webhook.apply(args=[payload], throw=True)
    assert send_webhook.apply(args=[payload]).result == "HTTP 204 No Content"
    received = http_receiver.at("/hook")
    headers, body = received[-1].headers, received[-1].body
    assert json.loads(body) == payload
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Fleetweb-Signature"] == expected and headers["X-Fleetweb-Event"] == "rollout.succeeded"
    assert len(received) == 2
