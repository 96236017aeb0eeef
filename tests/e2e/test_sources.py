"""End to end: an application read from a real Git server (git http-backend). A commit becomes a revision pinned to
it, rolls to dev and staging and waits for approval; a second commit pushed meanwhile is a revision of its own and
voids nothing; the approved commit, and only it, reaches the real prod member."""

from __future__ import annotations

import pytest

from localfleet.gitserver import GitServer
from rollouts.choices import RolloutState, StageState
from rollouts.models import Approval, Revision, Rollout
from tests.builders import make_user
from tests.conftest import wait_for
from tests.e2e.test_rollouts import STAGES, app_yaml, at_revision, live_deployment, stage_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
TOKEN = "e2e-git-token"


@pytest.fixture
def git_server(tmp_path, settings):
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.0/8"]
    server = GitServer(tmp_path, token=TOKEN).start()
    yield server
    server.stop()


def test_a_pushed_commit_rolls_out_and_the_approved_commit_reaches_prod(fleet, celery_worker, celery_beat, api_as,
                                                                         approver, git_server):
    members = fleet["members"]
    url = git_server.create("shop/deploy")
    first = git_server.commit("shop/deploy", {"deploy/app.yaml": app_yaml("1.0")}, message="Web 1.0")
    rita = make_user("rita-requester", "operator")
    client = api_as(rita)
    created = client.post("/api/v1/applications/", {"name": "shop-git", "namespace": "shop-git",
                                                    "manifests": app_yaml("0.9")}, format="json")
    assert created.status_code == 201, created.json()
    app_id = created.json()["id"]
    assert client.post("/api/v1/source-credentials/", {"name": "shop-git", "secret": TOKEN},
                       format="json").status_code == 201
    answer = client.put(f"/api/v1/applications/{app_id}/source/", {
        "kind": "git", "url": url, "ref": "main", "path": "deploy", "credential": "shop-git", "poll_interval": 30},
        format="json")
    assert answer.status_code == 200, answer.json()

    # The worker reads the commit: revision 2, pinned to it.
    wait_for(lambda: Revision.objects.filter(application_id=app_id, number=2).exists(), timeout=60,
             what="the commit to become revision 2")
    revision = Revision.objects.get(application_id=app_id, number=2)
    assert revision.source["commit"] == first and revision.source["subject"] == "Web 1.0"
    started = client.post("/api/v1/rollouts/", {"revision": revision.pk, "stages": STAGES}, format="json")
    assert started.status_code == 201, started.json()
    rollout = Rollout.objects.get(pk=started.json()["id"])
    wait_for(lambda: stage_state(rollout, 2) == StageState.AWAITING_APPROVAL, timeout=120,
             what="the prod stage to await approval")
    assert at_revision(members["gke-us-central"], "shop-git", 2) and at_revision(members["ack-hangzhou"], "shop-git", 2)
    assert live_deployment(members["aws-eu-west"], "shop-git") is None

    # A second commit while prod waits: a revision of its own, nothing voided, the stage still on revision 2.
    second = git_server.commit("shop/deploy", {"deploy/app.yaml": app_yaml("1.1")}, message="Web 1.1")
    assert client.post(f"/api/v1/applications/{app_id}/source/check/").status_code == 202
    wait_for(lambda: Revision.objects.filter(application_id=app_id, number=3).exists(), timeout=60,
             what="the second commit to become revision 3")
    assert Revision.objects.get(application_id=app_id, number=3).source["commit"] == second
    rollout.refresh_from_db()
    assert rollout.revision_id == revision.pk and stage_state(rollout, 2) == StageState.AWAITING_APPROVAL
    assert not Approval.objects.filter(stage__rollout=rollout, voided_at__isnull=False).exists()

    approved = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "1.0 to prod"},
                                     format="json")
    assert approved.status_code == 200, approved.json()
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the rollout to succeed")
    prod = live_deployment(members["aws-eu-west"], "shop-git")
    assert prod.metadata.annotations["fleetweb.io/revision"] == "2"
    assert prod.spec.template.spec.containers[0].image.endswith(":1.0"), "the approved commit, not the newer one"
