"""End to end: an application read from a real Git server (git http-backend). A commit becomes a revision pinned to
it, rolls to dev and staging and waits for approval; a second commit pushed meanwhile is a revision of its own and
voids nothing; the approved commit, and only it, reaches the real prod member. The same for a chart version bump in a
real chart repository, with Helm values of the prod group's own rendered for prod alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from localfleet import binaries
from localfleet.charts import ChartRepository
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


@pytest.fixture
def chart_repository(tmp_path, settings):
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.0/8"]
    settings.FLEETWEB_HELM = str(binaries.path_of("helm"))
    repository = ChartRepository(tmp_path).start()
    yield repository
    repository.stop()


def web_chart(root: Path, *, version: str, tag: str) -> Path:
    """The shop's chart at `version`, whose default values run image tag `tag` with 2 replicas."""
    files = {
        "Chart.yaml": f"apiVersion: v2\nname: web\nversion: {version}\n",
        "values.yaml": f"replicas: 2\ntag: \"{tag}\"\n",
        "templates/web.yaml": textwrap.dedent("""\
            apiVersion: apps/v1
            kind: Deployment
            metadata: {name: web, labels: {app: web}}
            spec:
              replicas: {{ .Values.replicas }}
              selector: {matchLabels: {app: web}}
              template:
                metadata: {labels: {app: web}}
                spec:
                  containers:
                    - name: web
                      image: "registry.example.com/shop/web:{{ .Values.tag }}"
                      resources: {requests: {cpu: 10m, memory: 16Mi}}
            ---
            apiVersion: v1
            kind: Service
            metadata: {name: web}
            spec:
              selector: {app: web}
              ports: [{port: 80, targetPort: 8080}]
            """)}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_chart_version_bump_is_a_revision_and_the_approved_version_reaches_prod_with_its_group_values(
        fleet, celery_worker, celery_beat, api_as, approver, chart_repository, tmp_path):
    members = fleet["members"]
    chart_repository.publish(web_chart(tmp_path / "web-1.0.0", version="1.0.0", tag="1.0"))
    rita = make_user("rita-requester", "operator")
    client = api_as(rita)
    created = client.post("/api/v1/applications/", {"name": "shop-chart", "namespace": "shop-chart",
                                                    "manifests": app_yaml("0.9")}, format="json")
    assert created.status_code == 201, created.json()
    app_id = created.json()["id"]
    answer = client.put(f"/api/v1/applications/{app_id}/source/", {
        "kind": "helm", "url": chart_repository.url, "chart": "web", "version": "^1.0", "poll_interval": 30},
        format="json")
    assert answer.status_code == 200, answer.json()
    values = client.put(f"/api/v1/applications/{app_id}/overrides/prod/", {"values": "replicas: 3\n"},
                        format="json")
    assert values.status_code == 200, values.json()

    # The worker renders chart 1.0.0, and again for the prod group with its values: one revision pins both.
    def rendered_for_prod():
        return Revision.objects.filter(application_id=app_id, source__version="1.0.0").exclude(variants={}).first()

    wait_for(lambda: rendered_for_prod() is not None, timeout=90, what="chart 1.0.0 rendered with prod's values")
    revision = rendered_for_prod()
    assert revision.source["chart"] == "web" and revision.source["chart_digest"].startswith("sha256:")
    assert [v["group"] for v in revision.variants.values()] == ["prod"]
    started = client.post("/api/v1/rollouts/", {"revision": revision.pk, "stages": STAGES}, format="json")
    assert started.status_code == 201, started.json()
    rollout = Rollout.objects.get(pk=started.json()["id"])
    wait_for(lambda: stage_state(rollout, 2) == StageState.AWAITING_APPROVAL, timeout=120,
             what="the prod stage to await approval")
    staging = live_deployment(members["ack-hangzhou"], "shop-chart")
    assert at_revision(members["ack-hangzhou"], "shop-chart", revision.number) and staging.spec.replicas == 2

    # Chart 1.1.0 published while prod waits: a revision of its own, nothing voided, the stage on 1.0.0.
    chart_repository.publish(web_chart(tmp_path / "web-1.1.0", version="1.1.0", tag="1.1"))
    assert client.post(f"/api/v1/applications/{app_id}/source/check/").status_code == 202
    wait_for(lambda: Revision.objects.filter(application_id=app_id, source__version="1.1.0").exists(), timeout=90,
             what="chart 1.1.0 to become a revision")
    rollout.refresh_from_db()
    assert rollout.revision_id == revision.pk and stage_state(rollout, 2) == StageState.AWAITING_APPROVAL
    assert not Approval.objects.filter(stage__rollout=rollout, voided_at__isnull=False).exists()

    approved = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "chart 1.0.0"},
                                     format="json")
    assert approved.status_code == 200, approved.json()
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the rollout to succeed")
    prod = live_deployment(members["aws-eu-west"], "shop-chart")
    assert prod.metadata.annotations["fleetweb.io/revision"] == str(revision.number)
    assert prod.spec.template.spec.containers[0].image.endswith(":1.0"), "the approved version, not the newer one"
    assert prod.spec.replicas == 3, "prod's own values, rendered into the approved revision"
