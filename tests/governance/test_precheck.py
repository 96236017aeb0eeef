"""Fleetweb's policies asked of what an application would send (governance.precheck): the same rule functions as
the inventory's evaluation, on the same objects the e2e test proves the CEL form refuses
(tests/e2e/test_governance.py), so the Python form and the admission a cluster runs decide alike."""

from __future__ import annotations

import copy

import pytest

from governance import precheck, rules
from governance.choices import Mode
from governance.models import PolicyAssignment
from inventory.models import ClusterGroup
from tests.builders import make_cluster
from tests.e2e.test_governance import BAD, BAD_SPEC, GOOD


def deployment(container: dict, *, spec_patch: dict | None = None, labels: dict | None = None,
               namespace: str = "shop") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace,
                         "labels": {"app.kubernetes.io/name": "web"} if labels is None else labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [container], **(spec_patch or {})}}}}


def test_workloads_read_like_the_inventory_pod_cronjob_and_numeric_quantities():
    cron = {"kind": "CronJob", "metadata": {"name": "nightly", "namespace": "shop"},
            "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "x:1", "securityContext": {"privileged": True},
                 "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}}}}
    pod = {"kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
           "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x:1"}]}}
    config = {"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "shop"}, "data": {}}
    broken = {"kind": "Deployment", "metadata": {"name": "bad", "namespace": "shop"},
              "spec": {"template": {"spec": {"containers": "not a list"}}}}
    workloads = precheck.workloads_of([cron, pod, config, broken])
    assert [(w["kind"], w["name"]) for w in workloads] == [("CronJob", "nightly"), ("Pod", "p")]
    cron_container = workloads[0]["pod_template"]["containers"][0]
    assert cron_container["privileged"] is True and cron_container["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert workloads[1]["pod_template"]["host_network"] is True


@pytest.mark.django_db
@pytest.mark.parametrize("key", sorted({*BAD, *BAD_SPEC} | {"required-labels", "probes-set"}))
def test_each_enforceable_rule_refuses_what_the_clusters_admission_refuses_and_passes_the_compliant(key):
    cluster = make_cluster("prod-eu", environment="prod")
    group = ClusterGroup.objects.create(name="production", selector="environment=prod")
    rule = rules.get(key)
    params = {"registries": ["registry.example.com"]} if key == "allowed-registries" else None
    PolicyAssignment.objects.create(group=group, rule_key=key, mode=Mode.ENFORCE, params=rule.clean_params(params))
    if key == "required-labels":
        bad = deployment(GOOD, labels={})
    elif key == "probes-set":
        bad = deployment({k: v for k, v in GOOD.items() if k != "readinessProbe"})
    else:
        bad = deployment({**GOOD, **BAD.get(key, {})}, spec_patch=BAD_SPEC.get(key))
    found = precheck.check({cluster.pk: [bad]}, [cluster])[cluster.pk]
    assert [(r.rule, r.enforced, r.object) for r in found] == [(key, True, "Deployment shop/web")], found
    assert found[0].words().startswith(f"refused by prod-eu: policy {key} is enforced there (Deployment shop/web: ")
    assert precheck.check({cluster.pk: [deployment(copy.deepcopy(GOOD))]}, [cluster])[cluster.pk] == []


@pytest.mark.django_db
def test_a_rule_assigned_by_two_groups_is_one_finding_enforced_when_either_enforces():
    cluster = make_cluster("prod-eu", environment="prod", region="eu-west-1")
    audit = ClusterGroup.objects.create(name="eu", selector="region=eu-west-1")
    enforce = ClusterGroup.objects.create(name="production", selector="environment=prod")
    PolicyAssignment.objects.create(group=audit, rule_key="no-privileged-containers", mode=Mode.AUDIT)
    PolicyAssignment.objects.create(group=enforce, rule_key="no-privileged-containers", mode=Mode.ENFORCE)
    staging = make_cluster("staging-eu", environment="staging", region="eu-west-1")
    privileged = deployment({**GOOD, "securityContext": {"privileged": True}})
    found = precheck.check({cluster.pk: [privileged], staging.pk: [privileged]}, [cluster, staging])
    assert [(r.rule, r.enforced) for r in found[cluster.pk]] == [("no-privileged-containers", True)]
    assert [(r.rule, r.enforced) for r in found[staging.pk]] == [("no-privileged-containers", False)]
    assert found[staging.pk][0].words().startswith("violates no-privileged-containers on staging-eu (audit only")


@pytest.mark.django_db
def test_an_excluded_namespace_and_cluster_level_rules_find_nothing_in_an_applications_objects():
    cluster = make_cluster("prod-eu", environment="prod")
    group = ClusterGroup.objects.create(name="production", selector="environment=prod")
    PolicyAssignment.objects.create(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE,
                                    excluded_namespaces=["monitoring"])
    PolicyAssignment.objects.create(group=group, rule_key="namespace-pod-security", mode=Mode.ENFORCE)
    privileged = {**GOOD, "securityContext": {"privileged": True}}
    found = precheck.check({cluster.pk: [deployment(privileged, namespace="monitoring")]}, [cluster])
    assert found[cluster.pk] == []
    found = precheck.check({cluster.pk: [deployment(privileged)]}, [cluster])
    assert [r.rule for r in found[cluster.pk]] == ["no-privileged-containers"]
