"""Every side effect of governance: assignments, evaluation, compliance history. Pages, API and tasks call these."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from fleetweb.roles import ADMIN, has_role
from governance import rules
from governance.audit import record
from governance.choices import Mode
from governance.models import (
    ClusterCompliance,
    ComplianceSnapshot,
    Enforcement,
    GroupComplianceSnapshot,
    PolicyAssignment,
    Violation,
)
from inventory import services as inventory_services
from inventory.models import Cluster, ClusterGroup, Namespace, Node, Workload

log = logging.getLogger(__name__)


class PolicyError(ValueError):
    """An assignment Fleetweb refuses; `errors` maps fields (or params.NAME) to messages."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


# ---------------------------------------------------------------------------------------------
# Assignments


def _clean_namespaces(value) -> list[str]:
    import re

    if isinstance(value, str):
        value = [v.strip() for v in value.replace("\n", ",").split(",")]
    if not isinstance(value, list | tuple):
        raise PolicyError({"excluded_namespaces": "must be a list of namespace names"})
    names = [v.strip() for v in value if isinstance(v, str) and v.strip()]
    bad = [n for n in names if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n)]
    if bad:
        raise PolicyError({"excluded_namespaces": f"not namespace names: {', '.join(bad)}"})
    return list(dict.fromkeys(names))


def _validate(*, rule_key: str, mode: str, params, excluded_namespaces, user) -> tuple[rules.Rule, dict, list]:
    if rule_key not in rules.REGISTRY:
        raise PolicyError({"rule": f"'{rule_key}' is not a rule of the catalog"})
    rule = rules.get(rule_key)
    if mode not in Mode.values:
        raise PolicyError({"mode": f"'{mode}' is not one of: {', '.join(Mode.values)}"})
    if mode == Mode.ENFORCE:
        if not rule.enforceable:
            raise PolicyError({"mode": f"'{rule.title}' cannot be enforced: {rule.audit_only_reason}. "
                                       "It stays audit-only."})
        if user is not None and not has_role(user, ADMIN):
            raise PolicyError({"mode": "Only admins may switch a policy to enforce: member clusters will refuse "
                                       "violating objects."})
    try:
        cleaned = rule.clean_params(params if isinstance(params, dict) else None)
    except rules.ParamError as exc:
        raise PolicyError({f"params.{k}": v for k, v in exc.errors.items()}) from None
    if params is not None and not isinstance(params, dict):
        raise PolicyError({"params": "must be an object of parameter names to values"})
    return rule, cleaned, _clean_namespaces(excluded_namespaces)


def assignment_audit_view(a: PolicyAssignment) -> dict:
    return {"group": a.group.name, "rule": a.rule_key, "mode": a.mode, "params": a.params,
            "excluded_namespaces": a.excluded_namespaces}


def _members(group: ClusterGroup) -> list[int]:
    return list(group.members().values_list("pk", flat=True))


def _reevaluate(cluster_ids) -> None:
    """After commit: re-evaluate (and reconcile enforcement of) these clusters, one task each."""
    ids = sorted(set(cluster_ids))
    if ids:
        transaction.on_commit(lambda: queue_evaluations(ids))


def queue_evaluations(cluster_ids: list[int]) -> None:
    from governance.tasks import evaluate_cluster

    for pk in cluster_ids:
        evaluate_cluster.delay(pk)


def create_assignment(*, group: ClusterGroup, rule_key: str, user, mode: str = Mode.AUDIT, params: dict | None = None,
                      excluded_namespaces=None, source_ip: str = "") -> PolicyAssignment:
    """Assign a rule to a group; its members are evaluated (and, in enforce mode, get the admission policy)."""
    if excluded_namespaces is None:
        excluded_namespaces = list(rules.DEFAULT_EXCLUDED_NAMESPACES)
    _rule, cleaned, excluded = _validate(rule_key=rule_key, mode=mode, params=params,
                                         excluded_namespaces=excluded_namespaces, user=user)
    with transaction.atomic():
        if PolicyAssignment.objects.filter(group=group, rule_key=rule_key).exists():
            raise PolicyError({"rule": f"'{rule_key}' is already assigned to {group.name}; edit that assignment"})
        assignment = PolicyAssignment.objects.create(
            group=group, rule_key=rule_key, mode=mode, params=cleaned, excluded_namespaces=excluded,
            created_by=user if getattr(user, "pk", None) else None)
        record(user=user, action="policy.assign", target=assignment, source_ip=source_ip,
               after=assignment_audit_view(assignment))
        _reevaluate(_members(group))
    return assignment


def update_assignment(assignment: PolicyAssignment, *, user, source_ip: str = "", mode: str | None = None,
                      params: dict | None = None, excluded_namespaces=None) -> PolicyAssignment:
    """Change mode, parameters or excluded namespaces; audited with before/after."""
    with transaction.atomic():
        assignment = PolicyAssignment.objects.select_for_update().select_related("group").get(pk=assignment.pk)
        before = assignment_audit_view(assignment)
        new_mode = mode or assignment.mode
        # Switching to enforce needs an admin; keeping an admin's enforce while editing parameters does not.
        check_user = user if (new_mode == Mode.ENFORCE and assignment.mode != Mode.ENFORCE) else None
        _rule, cleaned, excluded = _validate(
            rule_key=assignment.rule_key, mode=new_mode,
            params=assignment.params if params is None else params,
            excluded_namespaces=assignment.excluded_namespaces if excluded_namespaces is None else excluded_namespaces,
            user=check_user)
        if assignment.mode == Mode.ENFORCE and new_mode != Mode.ENFORCE and not has_role(user, ADMIN):
            raise PolicyError({"mode": "Only admins may stop enforcing a policy."})
        assignment.mode, assignment.params, assignment.excluded_namespaces = new_mode, cleaned, excluded
        assignment.save()
        record(user=user, action="policy.update", target=assignment, source_ip=source_ip, before=before,
               after=assignment_audit_view(assignment))
        _reevaluate(_members(assignment.group) + list(assignment.enforcements.values_list("cluster_id", flat=True)))
    return assignment


def delete_assignment(assignment: PolicyAssignment, *, user, source_ip: str = "") -> None:
    """Unassign a rule: its violations go, and member clusters drop its admission policy."""
    if assignment.mode == Mode.ENFORCE and not has_role(user, ADMIN):
        raise PolicyError({"mode": "Only admins may remove an enforced policy."})
    with transaction.atomic():
        clusters = _members(assignment.group) + list(assignment.enforcements.values_list("cluster_id", flat=True))
        record(user=user, action="policy.unassign", target=assignment, source_ip=source_ip,
               before=assignment_audit_view(assignment))
        assignment.delete()
        _reevaluate(clusters)


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_and_enforce(cluster: Cluster) -> ClusterCompliance:
    """What follows every sync and change: evaluate, then bring the cluster's admission policies in line."""
    from governance import enforcement

    assignments = assignments_for(cluster)
    compliance = evaluate_cluster(cluster)
    desired = enforcement.desired_for(cluster, assignments)
    if enforcement.needs_reconcile(cluster, desired):
        enforcement.reconcile(cluster, desired)
    return compliance


def assignments_for(cluster: Cluster) -> list[PolicyAssignment]:
    groups = inventory_services.groups_of(cluster)
    return list(PolicyAssignment.objects.filter(group__in=groups).select_related("group").order_by("pk"))


def _context(cluster: Cluster, assignments: list[PolicyAssignment], today) -> rules.Context:
    """Load only what the assigned rules read."""
    scopes = {a.rule.scope for a in assignments}
    ctx = rules.Context(cluster_name=cluster.name, kubernetes_version=cluster.kubernetes_version, today=today)
    if "workload" in scopes:
        ctx.workloads = list(Workload.objects.filter(cluster=cluster).order_by()
                             .values("namespace", "kind", "name", "labels", "pod_template"))
    if "namespace" in scopes:
        ctx.namespaces = list(Namespace.objects.filter(cluster=cluster).order_by()
                              .values("name", "labels", "resource_quotas", "limit_ranges"))
    if "cluster" in scopes:
        ctx.kubelet_versions = dict(Node.objects.filter(cluster=cluster).order_by().values_list("kubelet_version")
                                    .annotate(n=Count("pk")).values_list("kubelet_version", "n"))
    return ctx


def _scoped(ctx: rules.Context, excluded: list[str]) -> rules.Context:
    if not excluded:
        return ctx
    skip = set(excluded)
    return rules.Context(
        cluster_name=ctx.cluster_name, kubernetes_version=ctx.kubernetes_version, today=ctx.today,
        workloads=[w for w in ctx.workloads if w["namespace"] not in skip],
        namespaces=[n for n in ctx.namespaces if n["name"] not in skip],
        kubelet_versions=ctx.kubelet_versions)


def score_of(results: list[dict]) -> float | None:
    """Severity-weighted share of passed checks (0-100); None when nothing is assigned."""
    total = sum(rules.SEVERITY_WEIGHT[r["severity"]] for r in results)
    if not total:
        return None
    passed = sum(rules.SEVERITY_WEIGHT[r["severity"]] for r in results if not r["violations"])
    return round(100 * passed / total, 1)


def evaluate_cluster(cluster: Cluster, *, now=None) -> ClusterCompliance:
    """Run every rule assigned to the cluster's groups over its stored inventory; idempotent.

    Violations are keyed by (assignment, cluster, kind, namespace, name): new ones are created,
    still-present ones get last_seen, vanished ones are resolved, returning ones re-opened.
    """
    now = now or timezone.now()
    assignments = assignments_for(cluster)
    base = _context(cluster, assignments, timezone.localdate(now))
    found: dict[tuple, tuple[PolicyAssignment, rules.Finding]] = {}
    results = []
    for a in assignments:
        rule = a.rule
        try:
            findings = list(rule.check(_scoped(base, a.excluded_namespaces), {**rule.defaults(), **a.params}))
        except Exception:  # one broken rule must not hide the others' results
            log.exception("rule %s failed on %s", a.rule_key, cluster.name)
            findings = []
        for f in findings:
            found[(a.pk, f.kind, f.namespace, f.name)] = (a, f)
        results.append({"assignment": a.pk, "group": a.group.name, "rule": a.rule_key, "severity": rule.severity,
                        "mode": a.mode, "violations": len(findings)})

    with transaction.atomic():
        # Evaluations of one cluster (after a sync and after a group change, say) write one at a time.
        Cluster.objects.select_for_update().filter(pk=cluster.pk).first()
        existing = {(v.assignment_id, v.object_kind, v.namespace, v.object_name): v
                    for v in Violation.objects.filter(cluster=cluster).only(
                        "pk", "assignment_id", "object_kind", "namespace", "object_name", "resolved_at", "message",
                        "times_reopened")}
        still_open, new, changed = [], [], []
        for key, (a, f) in found.items():
            v = existing.get(key)
            if v is None:
                new.append(Violation(assignment=a, cluster=cluster, rule_key=a.rule_key, severity=a.rule.severity,
                                     object_kind=f.kind, namespace=f.namespace, object_name=f.name,
                                     message=f.message, first_seen=now, last_seen=now))
            elif v.resolved_at is not None:
                v.resolved_at, v.reopened_at, v.times_reopened = None, now, v.times_reopened + 1
                v.message, v.last_seen = f.message, now
                changed.append(v)
            elif v.message != f.message:
                v.message, v.last_seen = f.message, now
                changed.append(v)
            else:
                still_open.append(v.pk)
        gone = [v.pk for key, v in existing.items() if key not in found and v.resolved_at is None]
        Violation.objects.bulk_create(new, batch_size=1000)
        Violation.objects.bulk_update(changed, ["resolved_at", "reopened_at", "times_reopened", "message",
                                                "last_seen"], batch_size=1000)
        if still_open:
            Violation.objects.filter(pk__in=still_open).update(last_seen=now)
        if gone:
            Violation.objects.filter(pk__in=gone).update(resolved_at=now)
        compliance = _store_compliance(cluster, results, open_violations=len(found), now=now)
    return compliance


def _store_compliance(cluster: Cluster, results: list[dict], *, open_violations: int, now) -> ClusterCompliance:
    passed = sum(1 for r in results if not r["violations"])
    score = score_of(results)
    compliance, _ = ClusterCompliance.objects.update_or_create(
        cluster=cluster, defaults={"evaluated_at": now, "score": score, "passed": passed,
                                   "failed": len(results) - passed, "open_violations": open_violations,
                                   "results": results})
    by_rule = {r["rule"]: {"severity": r["severity"], "passed": not r["violations"], "violations": r["violations"]}
               for r in results}
    failed_by_severity = dict(Counter(r["severity"] for r in results if r["violations"]))
    last = ComplianceSnapshot.objects.filter(cluster=cluster).order_by("-at").first()
    every = timedelta(seconds=settings.FLEETWEB_COMPLIANCE_HISTORY_INTERVAL)
    # One point per evaluation would be 1,440 rows a day per cluster at a 60 s interval: write a point
    # when the result changed, and otherwise at most once per history interval.
    if last is None or last.by_rule != by_rule or last.score != score or last.at <= now - every:
        ComplianceSnapshot.objects.create(cluster=cluster, at=now, score=score, passed=passed,
                                          failed=len(results) - passed, open_violations=open_violations,
                                          by_rule=by_rule, failed_by_severity=failed_by_severity)
    return compliance


# ---------------------------------------------------------------------------------------------
# Group and fleet compliance


def group_scores(groups, *, clusters=None) -> dict[int | None, dict]:
    """{group id: {score, clusters, failing_clusters, open_violations, members}} plus None for the fleet.

    A group's score counts only its own assignments' results on its members; the fleet's counts all.
    Three queries whatever the number of groups.
    """
    groups = list(groups)
    members = inventory_services.membership(groups, clusters)
    compliance = {c.cluster_id: c for c in ClusterCompliance.objects.all()}
    out: dict[int | None, dict] = {}
    for g in groups:
        results, failing, open_v = [], 0, 0
        for cluster in members[g.pk]:
            c = compliance.get(cluster.pk)
            own = [r for r in (c.results if c else []) if r["group"] == g.name]
            results += own
            failing += 1 if any(r["violations"] for r in own) else 0
            open_v += sum(r["violations"] for r in own)
        out[g.pk] = {"score": score_of(results), "clusters": len(members[g.pk]), "failing_clusters": failing,
                     "open_violations": open_v, "members": members[g.pk]}
    every = [r for c in compliance.values() for r in c.results]
    out[None] = {"score": score_of(every), "clusters": len(compliance),
                 "failing_clusters": sum(1 for c in compliance.values() if c.failed),
                 "open_violations": sum(c.open_violations for c in compliance.values()), "members": []}
    return out


def record_group_history(*, now=None) -> int:
    """Write one trend point per group and one for the fleet (run by beat); returns the points written."""
    now = now or timezone.now()
    groups = list(ClusterGroup.objects.all())
    scores = group_scores(groups)
    points = [GroupComplianceSnapshot(group=g, at=now, score=scores[g.pk]["score"], clusters=scores[g.pk]["clusters"],
                                      failing_clusters=scores[g.pk]["failing_clusters"],
                                      open_violations=scores[g.pk]["open_violations"]) for g in groups]
    fleet = scores[None]
    points.append(GroupComplianceSnapshot(group=None, at=now, score=fleet["score"], clusters=fleet["clusters"],
                                          failing_clusters=fleet["failing_clusters"],
                                          open_violations=fleet["open_violations"]))
    GroupComplianceSnapshot.objects.bulk_create(points)
    return len(points)


def history(queryset, *, days: int = 30) -> list[dict]:
    """Trend points (at, score, open violations) of the last `days`, oldest first."""
    since = timezone.now() - timedelta(days=days)
    return [{"at": at, "score": score, "open_violations": open_v}
            for at, score, open_v in queryset.filter(at__gte=since).order_by("at")
            .values_list("at", "score", "open_violations")[:2000]]


def group_history(*, days: int = 30) -> dict[int | None, list[dict]]:
    """Trend points of every group (and the fleet, key None) in one query, oldest first."""
    since = timezone.now() - timedelta(days=days)
    out: dict[int | None, list[dict]] = defaultdict(list)
    for group_id, at, score, open_v in (GroupComplianceSnapshot.objects.filter(at__gte=since).order_by("at")
                                        .values_list("group_id", "at", "score", "open_violations")):
        out[group_id].append({"at": at, "score": score, "open_violations": open_v})
    return out


def enforcement_by_assignment(assignment_ids) -> dict[int, list[Enforcement]]:
    out: dict[int, list[Enforcement]] = defaultdict(list)
    for e in Enforcement.objects.filter(assignment_id__in=assignment_ids).select_related("cluster"):
        out[e.assignment_id].append(e)
    return out
