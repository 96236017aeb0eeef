"""Deploy and approve, end to end against real member clusters: a typo is refused by a member's own dry run (in a
worker, after save), naming the field, the member and its version; a rollout refreshes the inventory of each cluster
it reached; the application page and API say where it runs, with what health."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from inventory import services as inventory_services
from inventory import sync
from inventory.models import Workload
from rollouts import dryrun, services
from rollouts.choices import RolloutState
from rollouts.models import Application, Rollout
from tests.conftest import wait_for
from tests.e2e.test_rollouts import app_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def typo(text: str) -> str:
    docs = list(yaml.safe_load_all(text))
    docs[0]["spec"]["replica"] = docs[0]["spec"].pop("replicas")
    return yaml.safe_dump_all(docs)


@pytest.fixture
def member_cluster(localfleet_members):
    name, handle = next(iter(localfleet_members.items()))
    cluster = inventory_services.attach_cluster(name=name, credentials=handle.token_credentials(), user=None,
                                                sync_interval=3600)
    sync.sync_cluster(cluster.pk)
    cluster.refresh_from_db()
    assert cluster.kubernetes_version, "the member answered its first sync"
    yield cluster, handle
    with handle.admin_api() as api:
        for ns in k8s.CoreV1Api(api).list_namespace(label_selector="app.kubernetes.io/managed-by=fleetweb").items:
            k8s.CoreV1Api(api).delete_namespace(ns.metadata.name)


def test_a_typo_is_refused_by_the_members_dry_run_in_a_worker(member_cluster, celery_worker, operator, api_as):
    """The save waits for no member (a worker asks them); the verdict names the field, the member and its version,
    and no rollout starts from a revision every member refused."""
    cluster, _handle = member_cluster
    created = api_as(operator).post("/api/v1/applications/", {"name": "shop", "namespace": "shop-typo",
                                                              "manifests": typo(app_yaml("1.0"))}, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["latest_revision"]["validation"]["state"] == "checking"
    app = Application.objects.get(pk=created.json()["id"])
    verdict = wait_for(lambda: _checked(app.latest_revision), timeout=60, what="the worker's dry run verdict")
    assert verdict["state"] == "failed"
    message = dryrun.summary(verdict)
    text = typo(app_yaml("1.0"))
    name = next(yaml.safe_load_all(text))["metadata"]["name"]
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith("replica:"))
    # The object, the field, the field the member's own schema knows, and the line of the YAML; once, with the member.
    assert message == (f"Deployment {name}: spec.replica is not a field of apps/v1 Deployment (did you mean "
                       f"'replicas'?), line {line} (said by {cluster.name} ({cluster.kubernetes_version}))"), message
    listed = api_as(operator).get(f"/api/v1/applications/{app.pk}/revisions/").json()["results"][0]["validation"]
    assert listed["state"] == "failed" and "replica" in listed["members"][0]["problems"][0]
    with pytest.raises(services.RolloutError) as no_rollout:
        services.create_rollout(revision=app.latest_revision, user=operator,
                                stages=[{"name": "all", "selector": f"name={cluster.name}"}])
    assert no_rollout.value.status == 409 and "failed its dry run" in no_rollout.value.message

    # The fixed revision passes, checked by that member.
    fixed = services.create_revision(app, manifests_text=app_yaml("1.0"), user=operator)
    verdict = wait_for(lambda: _checked(fixed), timeout=60, what="the fixed revision's verdict")
    assert verdict["state"] == "passed"
    assert [(m["cluster"], m["checked"], m["problems"]) for m in verdict["members"]] == [(cluster.name, True, [])]


def _checked(revision) -> dict | None:
    """The revision's verdict once a worker filed it."""
    revision.refresh_from_db(fields=["validation"])
    return revision.validation if revision.validation.get("state") != "checking" else None


def test_a_rollout_refreshes_the_inventory_and_the_application_page_says_where_it_runs(
        member_cluster, celery_worker, celery_beat, operator, viewer, client, api_as):
    cluster, _handle = member_cluster
    app = services.create_application(name="shop", namespace="shop-live", manifests_text=app_yaml("1.0"),
                                      user=operator)
    assert not Workload.objects.filter(cluster=cluster, namespace="shop-live").exists()
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "all", "selector": f"name={cluster.name}",
                                               "health_deadline": 90}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the rollout to succeed")
    # The cluster syncs every hour here: only the sync the rollout asked for can bring the Deployment in.
    wait_for(lambda: Workload.objects.filter(cluster=cluster, namespace="shop-live", name="web",
                                             replicas_available=2).exists(),
             timeout=30, what="the rolled-out Deployment in the inventory")

    client.force_login(viewer)
    page = client.get(f"/applications/{app.name}/").content.decode()
    row = page[page.index(f'data-cluster="{cluster.name}"'):]
    row = row[:row.index("</tr>")]
    assert "r1" in row and f"#{rollout.pk}" in row and "healthy" in row and "2/2" in row, row
    body = api_as(viewer).get(f"/api/v1/applications/{app.pk}/clusters/").json()
    assert body[0]["cluster"] == cluster.name and body[0]["revision"] == 1 and body[0]["healthy"]
    assert body[0]["rollout"] == rollout.pk
    assert body[0]["workloads"][0] == {
        "kind": "Deployment", "name": "web", "desired": 2, "available": 2, "in_inventory": True,
        "available_now": True, "replicas_now": "2/2", "restarts": 0, "crashlooping": 0}
