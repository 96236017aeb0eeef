"""Enforce mode: Fleetweb's rules as native ValidatingAdmissionPolicies inside member clusters.

For each enforce-mode assignment that applies to a cluster, one ValidatingAdmissionPolicy and one
binding (both named `fleetweb-<rule>-<assignment id>`, labelled as managed by Fleetweb) are
server-side applied with field manager `fleetweb`; policies Fleetweb manages that no longer apply
(assignment removed, cluster left the group) are deleted. The cluster's own API server then
refuses violating objects, whether or not Fleetweb is running.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from foundation.audit import record
from governance.choices import EnforcementState, Mode
from governance.models import Enforcement, PolicyAssignment
from inventory import history, port
from inventory.choices import ClusterEventKind
from inventory.models import Cluster

log = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "fleetweb"}
SELECTOR = "app.kubernetes.io/managed-by=fleetweb"


def manifests(assignment: PolicyAssignment) -> tuple[dict, dict]:
    """The ValidatingAdmissionPolicy and its binding for one assignment."""
    rule = assignment.rule
    if rule.admission is None:
        raise ValueError(f"rule {rule.key} cannot be enforced")  # callers pass enforceable rules only
    admission = rule.admission({**rule.defaults(), **assignment.params})
    name = assignment.policy_name()
    groups: dict[str, list[str]] = {}
    for group, resource in admission.resources:
        groups.setdefault(group, []).append(resource)
    labels = {**MANAGED_BY, "fleetweb.io/rule": rule.key, "fleetweb.io/assignment": str(assignment.pk)}
    policy: dict[str, Any] = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels,
                     "annotations": {"fleetweb.io/title": rule.title, "fleetweb.io/group": assignment.group.name}},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": [g], "apiVersions": ["v1"], "operations": list(admission.operations),
                 "resources": sorted(r)} for g, r in groups.items()]},
            "variables": [dict(v) for v in admission.variables],
            "validations": [dict(v) for v in admission.validations],
        },
    }
    if not policy["spec"]["variables"]:
        del policy["spec"]["variables"]
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                 "values": assignment.excluded_namespaces}]} if assignment.excluded_namespaces else {}},
        },
    }
    digest = hashlib.sha256(json.dumps([policy, binding], sort_keys=True).encode()).hexdigest()
    policy["metadata"]["annotations"]["fleetweb.io/digest"] = digest
    return policy, binding


def _digest(policy: dict) -> str:
    return policy["metadata"]["annotations"]["fleetweb.io/digest"]


def desired_for(cluster: Cluster, assignments: list[PolicyAssignment]) -> list[PolicyAssignment]:
    return [a for a in assignments if a.mode == Mode.ENFORCE and a.rule.enforceable]


def reconcile(cluster: Cluster, desired: list[PolicyAssignment]) -> dict[int, Enforcement]:
    """Install the desired policies in the cluster and remove Fleetweb's others; returns {assignment: state}."""
    now = timezone.now()
    states: dict[int, tuple[str, str, str]] = {}
    removed: list[str] = []
    cleaned = False
    try:
        with port.connect(cluster) as member:
            installed = port.admission_policies(member, SELECTOR,
                                                server=cluster.kubernetes_version or "this API server")
            wanted = {}
            for a in desired:
                policy, binding = manifests(a)
                wanted[policy["metadata"]["name"]] = a
                current = installed.get(policy["metadata"]["name"])
                if current and current["metadata"].get("annotations", {}).get("fleetweb.io/digest") == _digest(policy):
                    states[a.pk] = (EnforcementState.INSTALLED, "", _digest(policy))
                    continue
                try:
                    port.install_admission_policy(member, policy, binding)
                except port.KubeError as exc:
                    states[a.pk] = (EnforcementState.FAILED, _explain(exc), "")
                else:
                    states[a.pk] = (EnforcementState.INSTALLED, "", _digest(policy))
            for name in installed:
                if name not in wanted:
                    port.remove_admission_policy(member, name)
                    removed.append(name)
            cleaned = True
    except port.KubeError as exc:
        for a in desired:
            states.setdefault(a.pk, (EnforcementState.FAILED, _explain(exc), ""))
    return _store(cluster, desired, states, removed, now, cleaned=cleaned)


def _explain(exc: port.KubeError) -> str:
    if exc.http_status == 403:
        return (f"{exc.message}. Grant Fleetweb's credentials the fleetweb-reader-enforcer role from the "
                "attach page's manifest.")
    return exc.message


def _store(cluster, desired, states, removed, now, *, cleaned: bool) -> dict[int, Enforcement]:
    out = {}
    with transaction.atomic():
        Cluster.objects.select_for_update().filter(pk=cluster.pk).first()  # one writer per cluster
        existing = {e.assignment_id: e for e in Enforcement.objects.filter(cluster=cluster, assignment__isnull=False)}
        events = []
        for a in desired:
            state, message, digest = states.get(a.pk, (EnforcementState.PENDING, "", ""))
            e = existing.get(a.pk) or Enforcement(assignment=a, cluster=cluster)
            changed = (e.state, e.message, e.digest) != (state, message, digest) or e.pk is None
            was_installed = e.state == EnforcementState.INSTALLED and e.digest == digest
            e.state, e.message, e.digest = state, message[:2000], digest
            if state == EnforcementState.INSTALLED and not was_installed:
                e.installed_at = now
            if changed:
                failed_before = e.state == EnforcementState.FAILED
                e.save()
                if state == EnforcementState.INSTALLED:
                    record(user=None, action="enforcement.install", target=a, target_name=f"{a.policy_name()} on "
                           f"{cluster.name}", after={"cluster": cluster.name, "rule": a.rule_key, "digest": digest})
                    events.append(history.event(cluster.pk, ClusterEventKind.POLICY,
                                                f"installed {a.policy_name()} ({a.rule_key}, enforce)",
                                                after={"rule": a.rule_key, "digest": digest}, at=now))
                elif state == EnforcementState.FAILED:
                    record(user=None, action="enforcement.fail", target=a, target_name=f"{a.policy_name()} on "
                           f"{cluster.name}", message=message)
                    if not failed_before:
                        events.append(history.event(cluster.pk, ClusterEventKind.POLICY,
                                                    f"installing {a.policy_name()} failed: {message}",
                                                    after={"rule": a.rule_key}, at=now))
            out[a.pk] = e
        wanted = {a.pk for a in desired}
        stale = [e for e in Enforcement.objects.filter(cluster=cluster) if e.assignment_id not in wanted]
        if stale and cleaned:  # only once the cluster confirmed it holds none of them
            Enforcement.objects.filter(pk__in=[e.pk for e in stale]).delete()
        for name in removed:
            record(user=None, action="enforcement.remove", target=cluster, target_name=f"{name} on {cluster.name}",
                   message="the policy no longer applies to this cluster")
            events.append(history.event(cluster.pk, ClusterEventKind.POLICY, f"removed {name} (no longer assigned)",
                                        at=now))
        history.record(*events)
    return out
