"""End to end on a real member shared by two teams: team shop's application cannot reach the namespace team payments
holds, nor its objects, through the rollout (refused at save), nor at apply (the member itself is asked), and team
payments' Deployment is unchanged on the member afterwards."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from inventory import kube
from inventory import services as inventory_services
from inventory.people import services as team_services
from rollouts import manifests, members, services
from rollouts.choices import RolloutState
from rollouts.models import ManagedObject, NamespaceHold, Rollout
from tests.builders import make_user
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NAMESPACE = "own-payments"


def web(image: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image,
                                                       "resources": {"requests": {"cpu": "10m"}}}]}}}})


@pytest.fixture
def shared(localfleet_members, admin_user):
    handle = next(iter(localfleet_members.values()))
    cluster = inventory_services.attach_cluster(name="shared-1", credentials=handle.token_credentials(), user=None,
                                                owner="shared")
    teams, operators = {}, {}
    for name in ("payments", "shop"):
        teams[name] = team_services.save_team(user=admin_user, name=name, selector="owner=shared")
        operators[name] = make_user(f"{name}-operator")
        team_services.add_member(teams[name], member=operators[name], role="operator", user=admin_user)
    yield {"handle": handle, "cluster": cluster, "teams": teams, "operators": operators}
    with handle.admin_api() as api:
        core = k8s.CoreV1Api(api)
        if NAMESPACE in {n.metadata.name for n in core.list_namespace().items}:
            core.delete_namespace(NAMESPACE)

        def gone():
            return NAMESPACE not in {n.metadata.name for n in core.list_namespace().items}

        wait_for(gone, timeout=120, interval=1, what=f"{NAMESPACE} deleted")


def test_team_shop_cannot_reach_team_payments_namespace_or_objects(shared, celery_worker, celery_beat):
    payments_app = services.create_application(
        name="payments-web", namespace=NAMESPACE, manifests_text=web("registry.example.com/payments/web:1"),
        user=shared["operators"]["payments"], owner_team=shared["teams"]["payments"])
    rollout = services.create_rollout(revision=payments_app.latest_revision, user=shared["operators"]["payments"],
                                      stages=[{"name": "all", "selector": "name=shared-1", "health_deadline": 90}])
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="team payments' rollout to succeed")
    hold = NamespaceHold.objects.get(cluster=shared["cluster"], name=NAMESPACE)
    assert hold.team == shared["teams"]["payments"]
    with shared["handle"].admin_api() as api:
        live = k8s.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE)
    assert ManagedObject.objects.get(cluster=shared["cluster"], uid=live.metadata.uid).application == payments_app

    shop_app = services.create_application(
        name="shop-web", namespace=NAMESPACE, manifests_text=web("registry.example.com/shop/takeover:6"),
        user=shared["operators"]["shop"], owner_team=shared["teams"]["shop"])
    with pytest.raises(services.RolloutError, match=f"namespace {NAMESPACE} on shared-1 is held by team payments"):
        services.create_rollout(revision=shop_app.latest_revision, user=shared["operators"]["shop"],
                                stages=[{"name": "all", "selector": "name=shared-1"}])

    # At apply the member itself is asked too: with Fleetweb's hold forgotten, the namespace that exists there is
    # still not shop's to use, and payments' Deployment (recorded by uid) is never shop's to change.
    rendered = manifests.render(manifests.parse(shop_app.latest_revision.manifests, namespace=NAMESPACE).objects,
                                application=shop_app.name, revision=1, digest="d")
    NamespaceHold.objects.filter(pk=hold.pk).delete()
    with pytest.raises(kube.KubeError, match=f"namespace {NAMESPACE} on shared-1 exists and is held by the platform"):
        members.push(shared["cluster"], NAMESPACE, rendered, renew=lambda: None, application=shop_app)
    NamespaceHold.objects.create(cluster=shared["cluster"], name=NAMESPACE, team=shared["teams"]["shop"],
                                 at=hold.at)  # even were the namespace handed over, the objects stay payments'
    with pytest.raises(kube.KubeError, match="belongs to the Fleetweb application 'payments-web'"):
        members.push(shared["cluster"], NAMESPACE, rendered, renew=lambda: None, application=shop_app)

    with shared["handle"].admin_api() as api:
        after = k8s.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE)
    assert after.spec.template.spec.containers[0].image == "registry.example.com/payments/web:1"
    assert after.metadata.labels[manifests.APPLICATION_LABEL] == "payments-web"
    assert after.metadata.resource_version == live.metadata.resource_version, "nothing changed it"
