"""Fleetweb's own policies asked before anything is applied: the objects an application would send to each cluster,
checked against the rules assigned to that cluster now, by the same rule functions that evaluate its inventory.

A finding in an enforce-mode assignment is what the cluster's admission will refuse ("will be refused"); one in audit
mode only becomes a violation. A revision shows these at save, the stage builder and the approval page show them for
their clusters, and a stage does not start (nor a target get applied) while an enforced rule refuses what it would
send. Workload rules are checked (pod security, images, resources, probes); namespace, cluster and add-on rules read
what a cluster has, not what an application sends.

What is checked is the rule's Python form; the ValidatingAdmissionPolicy a cluster runs is its CEL form of the same
rule: tests/e2e/test_governance.py shows the CEL form refusing a set of objects, and tests/governance/test_precheck.py
shows the Python form finding exactly those.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

import msgspec

from governance import rules
from governance.choices import Mode
from governance.evaluation import assignments_by_cluster
from governance.models import PolicyAssignment
from inventory import decode
from inventory.models import Cluster

log = logging.getLogger(__name__)

_TEMPLATE = msgspec.json.Decoder(decode.PodTemplate)


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One rule one object breaks on one cluster; `enforced`: that cluster's admission refuses it."""

    cluster: str
    rule: str
    title: str
    severity: str
    enforced: bool
    object: str
    message: str

    def words(self) -> str:
        """The one sentence every door shows for it."""
        if self.enforced:
            return (f"refused by {self.cluster}: policy {self.rule} is enforced there ({self.object}: "
                    f"{self.message})")
        return f"violates {self.rule} on {self.cluster} (audit only: {self.object}: {self.message})"

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "words": self.words()}


def _pod_template(obj: dict) -> dict | None:
    """The pod template of a workload object (or of a Pod itself), None for anything else."""
    kind, spec = obj.get("kind"), obj.get("spec")
    if not isinstance(spec, dict):
        return None
    if kind == "Pod":
        return {"metadata": obj.get("metadata") or {}, "spec": spec}
    if kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        return job.get("template") if isinstance(job, dict) else None
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return spec.get("template")
    return None


def _quantities_as_text(template: dict) -> dict:
    """YAML reads `cpu: 1` as a number; the inventory stores quantities as the API server returns them, text."""
    template = json.loads(json.dumps(template))
    spec = template.get("spec") or {}
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            resources = container.get("resources") if isinstance(container, dict) else None
            if not isinstance(resources, dict):
                continue
            for part in ("requests", "limits"):
                values = resources.get(part)
                if isinstance(values, dict):
                    resources[part] = {k: str(v) for k, v in values.items()}
    return template


def workloads_of(objects: list[dict]) -> list[dict]:
    """The objects as the rules see a cluster's workloads (`rules.Context.workloads`); an object whose pod template
    does not decode is left out (the members' dry run names its schema error)."""
    out = []
    for obj in objects:
        template = _pod_template(obj)
        if not isinstance(template, dict):
            continue
        try:
            decoded = _TEMPLATE.decode(json.dumps(_quantities_as_text(template)))
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError, ValueError):
            continue
        meta = obj.get("metadata") or {}
        out.append({"namespace": meta.get("namespace", ""), "kind": obj["kind"], "name": meta.get("name", ""),
                    "labels": meta.get("labels") or {}, "pod_template": decode.normalize_template(decoded)})
    return out


def check(objects_by_cluster: dict[int, list[dict]], clusters: list[Cluster], *,
          today: datetime.date | None = None) -> dict[int, list[Refusal]]:
    """{cluster id: what the rules assigned to it find in the objects it would receive}, each rule once with the
    strictest of the assignments that reach the cluster (`evaluation.effective`, as its inventory is evaluated)."""
    assigned = assignments_by_cluster(clusters)
    today = today or datetime.date.today()
    out: dict[int, list[Refusal]] = {}
    for cluster in clusters:
        workloads = workloads_of(objects_by_cluster.get(cluster.pk) or [])
        found = [r for a in assigned[cluster.pk] for r in _findings(cluster, a, workloads, today)]
        out[cluster.pk] = sorted(found, key=lambda r: (not r.enforced, r.rule, r.object))
    return out


def _findings(cluster: Cluster, assignment: PolicyAssignment, workloads: list[dict], today) -> list[Refusal]:
    rule = assignment.rule
    if rule.scope != "workload" or not workloads:
        return []
    skip = set(assignment.excluded_namespaces or [])
    context = rules.Context(cluster_name=cluster.name, kubernetes_version=cluster.kubernetes_version, today=today,
                            workloads=[w for w in workloads if w["namespace"] not in skip])
    try:
        findings = list(rule.check(context, {**rule.defaults(), **assignment.params}))
    except Exception:  # one broken rule must not hide the others
        log.exception("rule %s failed on the objects for %s", rule.key, cluster.name)
        return []
    enforced = assignment.mode == Mode.ENFORCE and rule.enforceable
    return [Refusal(cluster=cluster.name, rule=rule.key, title=rule.title, severity=rule.severity, enforced=enforced,
                    object=f"{f.kind} {f.namespace + '/' if f.namespace else ''}{f.name}", message=f.message)
            for f in findings]
