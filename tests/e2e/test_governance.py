"""End to end on real member clusters: enforce mode installs admission policies the member's own API
server applies; audit mode reports existing violations and resolves them once fixed and re-synced."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from governance import enforcement, rules, services
from governance.choices import EnforcementState, Mode
from governance.models import Enforcement, PolicyAssignment, Violation
from inventory import services as inventory_services
from inventory.choices import SyncOutcome
from inventory.models import Cluster, ClusterGroup, Namespace, SyncRun
from localfleet import seed
from localfleet.fleet import Fleet
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def members(localfleet_members):
    """Both members; afterwards every Fleetweb admission policy is removed so other tests create freely."""
    handles = list(localfleet_members.values())
    yield handles
    for handle in handles:
        with handle.admin_api() as api:
            admission = k8s.AdmissionregistrationV1Api(api)
            for binding in admission.list_validating_admission_policy_binding(
                    label_selector=enforcement.SELECTOR).items:
                admission.delete_validating_admission_policy_binding(binding.metadata.name)
            for policy in admission.list_validating_admission_policy(label_selector=enforcement.SELECTOR).items:
                admission.delete_validating_admission_policy(policy.metadata.name)


def _attach(handle, name: str, *, environment: str, user) -> Cluster:
    return inventory_services.attach_cluster(name=name, credentials=handle.token_credentials(), user=user,
                                             environment=environment, labels={"member": handle.name})


def _pod(name: str, *, privileged: bool = False, image: str = "registry.example.com/tools/probe:1.0") -> dict:
    container = {"name": "main", "image": image}
    if privileged:
        container["securityContext"] = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [container], "nodeSelector": {"nowhere": "true"}}}


def _create_pod(handle, namespace: str, pod: dict):
    """Create a pod as the member's admin; returns None when accepted, the ApiException when refused."""
    with handle.admin_api() as api:
        core = k8s.CoreV1Api(api)
        try:
            core.create_namespaced_pod(namespace, pod)
        except ApiException as exc:
            return exc
        core.delete_namespaced_pod(pod["metadata"]["name"], namespace, grace_period_seconds=0)
    return None


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_enforce_mode_makes_group_members_refuse_privileged_pods(members, celery_worker, api_as, admin_user):
    inside, outside = members[:2]
    prod = _attach(inside, "enforce-prod", environment="prod", user=admin_user)
    _attach(outside, "enforce-dev", environment="dev", user=admin_user)
    client = api_as(admin_user)
    assert client.post("/api/v1/groups/", {"name": "production", "selector": "environment=prod"},
                       format="json").status_code == 201
    response = client.post("/api/v1/policy-assignments/", {
        "group": "production", "rule": "no-privileged-containers", "mode": "enforce"}, format="json")
    assert response.status_code == 201, response.json()
    assignment = PolicyAssignment.objects.get(pk=response.json()["id"])

    enforced = wait_for(lambda: Enforcement.objects.filter(assignment=assignment, cluster=prod,
                                                           state=EnforcementState.INSTALLED).first(),
                        what="admission policy installed in the prod member", timeout=60)
    assert not Enforcement.objects.filter(assignment=assignment).exclude(cluster=prod).exists()
    assert enforced.installed_at is not None

    # The API server loads new policies from its informer within a second or so.
    refused = wait_for(lambda: _create_pod(inside, "shop", _pod(_name("priv"), privileged=True)),
                       what="the privileged pod refused by the prod member", timeout=30)
    assert refused.status in (403, 422), refused
    assert "privileged containers are not allowed" in refused.body
    assert _create_pod(inside, "shop", _pod(_name("plain"))) is None, "a compliant pod is still accepted"
    assert _create_pod(inside, "kube-system", _pod(_name("sys"), privileged=True)) is None, \
        "excluded namespaces stay open"
    assert _create_pod(outside, "shop", _pod(_name("priv"), privileged=True)) is None, \
        "a member outside the group accepts it"
    with inside.admin_api() as api:  # a Deployment whose template is privileged is refused at the door too
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": _name("dep")},
                      "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                          "metadata": {"labels": {"a": "b"}}, "spec": _pod("x", privileged=True)["spec"]}}}
        with pytest.raises(ApiException) as excinfo:
            k8s.AppsV1Api(api).create_namespaced_deployment("shop", deployment)
        assert "privileged containers are not allowed" in excinfo.value.body

    # Unassign: the policy leaves the member and privileged pods are accepted again.
    assert client.delete(f"/api/v1/policy-assignments/{assignment.pk}/").status_code == 204
    wait_for(lambda: not Enforcement.objects.filter(cluster=prod).exists(), what="enforcement removed", timeout=60)
    with inside.admin_api() as api:
        left = k8s.AdmissionregistrationV1Api(api).list_validating_admission_policy(
            label_selector=enforcement.SELECTOR).items
    assert left == []
    wait_for(lambda: _create_pod(inside, "shop", _pod(_name("priv"), privileged=True)) is None,
             what="privileged pods accepted again once the policy is gone", timeout=30)


def test_a_cluster_leaving_the_group_loses_the_policy(members, celery_worker, admin_user):
    inside = members[0]
    cluster = _attach(inside, "leaver", environment="prod", user=admin_user)
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    services.create_assignment(group=group, rule_key="no-host-namespaces", user=admin_user, mode=Mode.ENFORCE)
    wait_for(lambda: Enforcement.objects.filter(cluster=cluster, state=EnforcementState.INSTALLED).exists(),
             what="installed", timeout=60)
    inventory_services.update_cluster(cluster, user=admin_user, environment="staging")
    wait_for(lambda: not Enforcement.objects.filter(cluster=cluster).exists(), what="removed after leaving",
             timeout=60)
    with inside.admin_api() as api:
        assert k8s.AdmissionregistrationV1Api(api).list_validating_admission_policy(
            label_selector=enforcement.SELECTOR).items == []


def test_audit_mode_reports_existing_violations_and_resolves_them_after_a_fix(members, celery_worker, admin_user):
    handle = members[0]
    cluster = _attach(handle, "audited", environment="staging", user=admin_user)
    wait_for(lambda: SyncRun.objects.filter(cluster=cluster, outcome=SyncOutcome.SUCCEEDED).exists(),
             what="first sync")
    # The collector counts quotas per namespace (the seed fences in only payments).
    quotas = dict(Namespace.objects.filter(cluster=cluster).values_list("name", "resource_quotas"))
    assert quotas["payments"] == 1 and quotas["shop"] == 0
    group = inventory_services.create_group(name="staging", selector="environment=staging", user=admin_user)
    services.create_assignment(group=group, rule_key="no-privileged-containers", user=admin_user)

    violation = wait_for(lambda: Violation.objects.filter(cluster=cluster, namespace="legacy",
                                                          object_name="old-admin").first(),
                         what="violation of the seeded privileged Deployment")
    assert violation.object_kind == "Deployment" and violation.resolved_at is None
    assert violation.severity == "critical" and "admin" in violation.message
    assert cluster.compliance.failed == 1

    with handle.admin_api() as api:  # fix it in the cluster, as its owner would
        k8s.AppsV1Api(api).patch_namespaced_deployment("old-admin", "legacy", {"spec": {"template": {"spec": {
            "containers": [{"name": "admin", "securityContext": {"privileged": False}}]}}}})
    try:
        inventory_services.request_sync(cluster.pk)
        wait_for(lambda: Violation.objects.get(pk=violation.pk).resolved_at is not None,
                 what="violation resolved after the fix and a re-sync", timeout=60)
        cluster.compliance.refresh_from_db()
        assert cluster.compliance.failed == 0 and cluster.compliance.score == 100.0
    finally:
        with handle.admin_api() as api:  # put the seeded violation back for other tests
            k8s.AppsV1Api(api).patch_namespaced_deployment("old-admin", "legacy", {"spec": {"template": {"spec": {
                "containers": [{"name": "admin", "securityContext": {"privileged": True}}]}}}})
    inventory_services.request_sync(cluster.pk)
    reopened = wait_for(lambda: Violation.objects.filter(pk=violation.pk, resolved_at__isnull=True).first(),
                        what="violation re-opened when it came back", timeout=60)
    assert reopened.times_reopened == 1 and reopened.first_seen == violation.first_seen


# Each enforceable rule, installed for real: a compliant pod passes, a violating one is refused with
# the rule's own message. This is what proves the CEL the catalog ships compiles and decides right.
GOOD = {"name": "main", "image": "registry.example.com/app/web:1.2.3",
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
        "readinessProbe": {"exec": {"command": ["true"]}}, "livenessProbe": {"exec": {"command": ["true"]}}}
# (A privileged pod always breaks no-privilege-escalation too, so which message comes first is the API
# server's choice; test_enforce_mode_makes_group_members_refuse_privileged_pods covers that rule alone.)
BAD = {
    "no-privilege-escalation": {"securityContext": {"runAsNonRoot": True}},
    "run-as-non-root": {"securityContext": {"allowPrivilegeEscalation": False, "runAsUser": 0}},
    "resources-set": {"resources": {"limits": {"memory": "32Mi"}}},
    "allowed-registries": {"image": "docker.io/library/nginx:1.27"},
    "no-latest-tag": {"image": "registry.example.com/app/web:latest"},
}
BAD_SPEC = {"no-host-path": {"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]},
            "no-host-namespaces": {"hostNetwork": True}}


def test_every_enforceable_rule_is_valid_cel_and_decides_like_the_audit(members, admin_user):
    handle = members[0]
    cluster = _attach(handle, "all-rules", environment="prod", user=admin_user)
    group = ClusterGroup.objects.create(name="everything", selector="name=all-rules")
    params = {"allowed-registries": {"registries": ["registry.example.com"]}}
    assignments = [PolicyAssignment.objects.create(group=group, rule_key=r.key, mode=Mode.ENFORCE,
                                                   params=r.clean_params(params.get(r.key)))
                   for r in rules.catalog() if r.enforceable]
    states = enforcement.reconcile(cluster, assignments)
    assert {a.rule_key: states[a.pk].state for a in assignments} == \
        {a.rule_key: EnforcementState.INSTALLED for a in assignments}, {a.rule_key: states[a.pk].message
                                                                        for a in assignments}

    def pod(container_patch=None, spec_patch=None, labels=None):
        spec = {"containers": [{**GOOD, **(container_patch or {})}], "nodeSelector": {"nowhere": "true"},
                **(spec_patch or {})}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": _name("p"), "labels": labels or {}},
                "spec": spec}

    # The API server loads each new policy from its informer on its own schedule (within a second or so,
    # longer on a loaded machine; waiting for one policy says nothing of the others): wait for each rule to
    # refuse its violating pod, then check that the compliant pod passes all of them at once.
    for key, patch in {**BAD, **{k: None for k in BAD_SPEC}}.items():
        refused = wait_for(lambda key=key, patch=patch: _create_pod(handle, "shop", pod(patch, BAD_SPEC.get(key))),
                           timeout=30, what=f"policy {key} to refuse a violating pod")
        assert f"Fleetweb policy {key}" in refused.body, (key, refused.body)
    assert _create_pod(handle, "shop", pod()) is None, "the compliant pod must pass every installed rule"

    # Workload-level rules: probes and labels are checked on Deployments.
    with handle.admin_api() as api:
        apps = k8s.AppsV1Api(api)

        def deployment(labels, container):
            return {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": _name("d"), "labels": labels},
                    "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}}, "template": {
                        "metadata": {"labels": {"a": "b"}}, "spec": {"containers": [container]}}}}

        good = apps.create_namespaced_deployment("shop", deployment({"app.kubernetes.io/name": "x"}, GOOD))
        apps.delete_namespaced_deployment(good.metadata.name, "shop")
        def refusal(create, delete):
            """The ApiException of a refused create, or None (the accepted object is deleted again)."""
            try:
                created = create()
            except ApiException as exc:
                return exc
            delete(created.metadata.name)
            return None

        # Like the pods' rules above, each of these loads on the API server's own schedule: wait for each one.
        for key, labels, container in (("required-labels", {}, GOOD),
                                       ("probes-set", {"app.kubernetes.io/name": "x"},
                                        {k: v for k, v in GOOD.items() if k != "readinessProbe"})):
            refused = wait_for(lambda labels=labels, container=container: refusal(
                lambda: apps.create_namespaced_deployment("shop", deployment(labels, container)),
                lambda name: apps.delete_namespaced_deployment(name, "shop")),
                timeout=30, what=f"policy {key} to refuse a violating Deployment")
            assert f"Fleetweb policy {key}" in refused.body

        core = k8s.CoreV1Api(api)
        refused = wait_for(lambda: refusal(lambda: core.create_namespace({"metadata": {"name": _name("ns")}}),
                                           core.delete_namespace),
                           timeout=30, what="policy namespace-pod-security to refuse an unlabelled namespace")
        assert "Fleetweb policy namespace-pod-security" in refused.body
        name = _name("ns")
        core.create_namespace({"metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "baseline"}}})
        core.delete_namespace(name)

    # Nothing desired any more: everything Fleetweb installed is removed.
    enforcement.reconcile(cluster, [])
    with handle.admin_api() as api:
        assert k8s.AdmissionregistrationV1Api(api).list_validating_admission_policy(
            label_selector=enforcement.SELECTOR).items == []


def test_demo_seeding_leaves_out_what_an_enforced_policy_refuses_and_never_fails(members, admin_user):
    """`make run` seeds its members again at every start: with a Fleetweb policy enforced on them, the refused
    demo objects are named and left out; the seeding itself goes through (it used to stop `make run`)."""
    handle = members[0]
    cluster = _attach(handle, "seeded", environment="prod", user=admin_user)
    group = ClusterGroup.objects.create(name="seeded", selector="name=seeded")
    assignment = PolicyAssignment.objects.create(group=group, rule_key="probes-set", mode=Mode.ENFORCE,
                                                 params=rules.get("probes-set").clean_params(None))
    states = enforcement.reconcile(cluster, [assignment])
    assert states[assignment.pk].state == EnforcementState.INSTALLED, states[assignment.pk].message
    with handle.admin_api() as api:
        k8s.AppsV1Api(api).delete_namespaced_deployment("old-admin", "legacy")  # the probe-less demo workload
    profile = Fleet.profile_for(handle.member.profile["index"])

    def seeded_without_it():
        with handle.admin_api() as api:
            return "Deployment legacy/old-admin" in seed.seed(api, profile, cluster=handle.name,
                                                                nodes=handle.member.profile["nodes"])

    wait_for(seeded_without_it, timeout=30, what="the seeding to report the refused demo Deployment")
    # Put the member back as the other tests expect it, once the policy is gone.
    enforcement.reconcile(cluster, [])

    def restored():
        with handle.admin_api() as api:
            return not seed.seed(api, profile, cluster=handle.name, nodes=handle.member.profile["nodes"])
    wait_for(restored, timeout=30, what="the demo Deployment re-created once the policy is removed")
