"""Evaluation: every assigned rule against each cluster's stored inventory, in chunks with one query per kind;
results, violations and compliance stored; then the cluster's admission policies brought in line (enforce mode)."""


from __future__ import annotations

import contextlib
import copy
import functools
import gc
import hashlib
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from foundation import bulk
from governance import alerts, compliance, enforcement, rules, upgrades
from governance import kubernetes_releases as releases_module
from governance.choices import Mode
from governance.models import (
    ClusterCompliance,
    ComplianceSnapshot,
    Enforcement,
    PolicyAssignment,
    PolicyResult,
    Violation,
)
from inventory import services as inventory_services
from inventory.models import Cluster, ClusterAddon, ClusterGroup, Namespace, Node, Workload

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate_and_enforce_many(clusters: list[Cluster]) -> dict[int, ClusterCompliance]:
    """What follows every sync and change, for many clusters: one batched evaluation, then each cluster's admission
    policies (only clusters that have or need some are contacted; one failing never stops the others)."""
    compliances = evaluate_clusters(clusters)
    clusters = [c for c in clusters if c.pk in compliances]  # not those detached meanwhile
    try:
        upgrades.refresh(clusters)  # the fleet's Upgrade plan follows every sync and change
    except Exception:  # a bug there must not leave the chunk unenforced
        log.exception("upgrade readiness of %d clusters failed", len(clusters))
    any_enforced = PolicyAssignment.objects.filter(mode=Mode.ENFORCE).exists()
    installed = set(Enforcement.objects.filter(cluster__in=clusters).values_list("cluster_id", flat=True))
    for cluster in clusters:
        if not any_enforced and cluster.pk not in installed:
            continue
        if cluster.busy_since is not None:  # an incident: its admission policies are brought in line once cleared
            continue
        desired = enforcement.desired_for(cluster, assignments_for(cluster))
        if desired or cluster.pk in installed:
            try:
                enforcement.reconcile(cluster, desired)
            except Exception:  # a bug must not leave the rest of the chunk unenforced
                log.exception("enforcement of %s failed", cluster.name)
    return compliances


def assignments_for(cluster: Cluster) -> list[PolicyAssignment]:
    """The rules that apply to a cluster, each once (`effective`)."""
    groups = inventory_services.groups_of(cluster)
    return effective(list(PolicyAssignment.objects.filter(group__in=groups).select_related("group").order_by("pk")))


def effective(assignments: list[PolicyAssignment]) -> list[PolicyAssignment]:
    """A rule applies to a cluster once: of several assignments of one rule reaching it (through two groups), one
    stands for all, with the strictest mode (enforce wins, where the rule can be enforced) and the strictest of each
    parameter (`Param.merge`) and of the excluded namespaces (only those every one excludes) among the assignments of
    that mode: an enforced rule is shaped by its enforce assignments alone, which only admins make. Results,
    violations and the admission policy are that assignment's (the oldest of that mode); it is a copy marked
    `merged_from`, never saved."""
    by_rule: dict[str, list[PolicyAssignment]] = defaultdict(list)
    for a in assignments:
        by_rule[a.rule_key].append(a)
    out = []
    for each in by_rule.values():
        if len(each) == 1:
            out.append(each[0])
            continue
        each.sort(key=lambda a: (not (a.mode == Mode.ENFORCE and a.rule.enforceable), a.pk))
        rule = each[0].rule
        # Where the rule is enforced, only the enforcing (admins') assignments shape it: an audit assignment, which
        # an operator may make, never changes what a cluster's admission refuses.
        deciding = [a for a in each if a.mode == each[0].mode]
        merged = copy.copy(each[0])
        merged.params = rule.strictest_params([{**rule.defaults(), **a.params} for a in deciding])
        merged.excluded_namespaces = [ns for ns in each[0].excluded_namespaces or []
                                      if all(ns in (a.excluded_namespaces or []) for a in deciding[1:])]
        merged.merged_from = [a.pk for a in each]  # type: ignore[attr-defined]
        merged.merged_groups = sorted({a.group.name for a in each})  # type: ignore[attr-defined]
        out.append(merged)
    return sorted(out, key=lambda a: a.pk)


def _scoped(ctx: rules.Context, excluded: list[str]) -> rules.Context:
    if not excluded:
        return ctx
    skip = set(excluded)
    return rules.Context(
        cluster_name=ctx.cluster_name, kubernetes_version=ctx.kubernetes_version, today=ctx.today,
        workloads=[w for w in ctx.workloads if w["namespace"] not in skip],
        namespaces=[n for n in ctx.namespaces if n["name"] not in skip],
        kubelet_versions=ctx.kubelet_versions, addons=ctx.addons)  # add-ons are the cluster's, kube-system or not


def score_of(results: list[dict]) -> float | None:
    """A cluster's score over its results (`rules.weighted_score`); None when nothing is assigned."""
    return rules.weighted_score((r["severity"], 1, 0 if r["violations"] else 1) for r in results)


CHUNK = 50
CHECK_CHUNK = 1000  # clusters whose inputs are compared (and, unchanged, confirmed) at once
_decode_json = msgspec.json.Decoder()


def evaluate_cluster(cluster: Cluster, *, now=None) -> ClusterCompliance | None:
    """Evaluate one cluster (after its sync, or after a change); None if it was detached meanwhile."""
    return evaluate_clusters([cluster], now=now).get(cluster.pk)


def evaluate_clusters(clusters, *, now=None) -> dict[int, ClusterCompliance]:
    """Run every rule assigned to each cluster's groups over its stored inventory; idempotent. A cluster whose
    inputs (`inputs_of`) are those of its stored evaluation is not run again: its result stands, as of now.

    Violations are keyed by (assignment, cluster, kind, namespace, name): new ones are created,
    vanished ones resolved (last seen = the evaluation before), returning ones re-opened; open ones
    that did not change are not written at all. Groups and assignments are read once, inventory and
    violations in chunks of clusters, so evaluating the whole fleet costs a few queries per chunk.
    """
    now = now or timezone.now()
    clusters = list(clusters)
    assigned = assignments_by_cluster(clusters)
    out: dict[int, ClusterCompliance] = {}
    for start in range(0, len(clusters), CHECK_CHUNK):
        block = clusters[start:start + CHECK_CHUNK]
        inputs = inputs_of(block, assigned, timezone.localdate(now))
        stored = {c.cluster_id: c for c in ClusterCompliance.objects.filter(cluster_id__in=inputs).only(
            "cluster_id", "inputs", "evaluated_at", "score", "passed", "failed", "open_violations")}
        same = {pk for pk, digest in inputs.items() if pk in stored and stored[pk].inputs == digest}
        if same:
            out.update(_confirm(same, {pk: stored[pk] for pk in same}, now))
        changed = [c for c in block if c.pk not in same]
        for at in range(0, len(changed), CHUNK):
            chunk = changed[at:at + CHUNK]
            with _collector_paused():
                out.update(_evaluate_chunk(chunk, {c.pk: assigned[c.pk] for c in chunk}, now, inputs))
    return out


_paused = 0
_paused_lock = threading.Lock()
_enabled_before = True


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a chunk is evaluated: a chunk builds some hundred thousand small
    acyclic objects (decoded workloads, findings) that reference counting frees, and each collection the allocations
    trigger walks all of them again (a fifth of a first evaluation). Process-wide, hence counted across the threads
    of a worker: on again when the last chunk in progress ends."""
    global _paused, _enabled_before
    with _paused_lock:
        _paused += 1
        if _paused == 1:
            _enabled_before = gc.isenabled()
            gc.disable()
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _enabled_before:
                gc.enable()


def assignments_by_cluster(clusters: list[Cluster]) -> dict[int, list[PolicyAssignment]]:
    """{cluster id: the rules of every group it is in now, each once (`effective`), by id}; groups and assignments
    read once."""
    groups = list(ClusterGroup.objects.all())
    members = {pk: {c.pk for c in cs} for pk, cs in inventory_services.membership(groups, clusters).items()}
    by_group: dict[int, list[PolicyAssignment]] = defaultdict(list)
    for a in PolicyAssignment.objects.select_related("group").order_by("pk"):
        by_group[a.group_id].append(a)
    return {c.pk: effective([a for g in groups if c.pk in members[g.pk] for a in by_group[g.pk]]) for c in clusters}


def _load(chunk: list[Cluster], assigned: dict[int, list[PolicyAssignment]], today) -> dict[int, rules.Context]:
    """Only what the assigned rules read, for a chunk of clusters, one query per kind."""
    contexts = {c.pk: rules.Context(cluster_name=c.name, kubernetes_version=c.kubernetes_version, today=today)
                for c in chunk}
    scopes: dict[str, list[int]] = defaultdict(list)
    for c in chunk:
        for scope in {a.rule.scope for a in assigned[c.pk]}:
            scopes[scope].append(c.pk)
    if scopes["workload"]:
        # JSON as text, decoded by msgspec: several times faster than json.loads per row.
        rows = (Workload.objects.filter(cluster_id__in=scopes["workload"]).order_by()
                .values_list("cluster_id", "namespace", "kind", "name", Cast("labels", output_field=TextField()),
                             Cast("pod_template", output_field=TextField())))
        for cluster_id, namespace, kind, name, labels, template in rows.iterator(chunk_size=5000):
            contexts[cluster_id].workloads.append({"namespace": namespace, "kind": kind, "name": name,
                                                   "labels": _decode_json.decode(labels),
                                                   "pod_template": _decode_json.decode(template)})
    if scopes["namespace"]:
        for row in (Namespace.objects.filter(cluster_id__in=scopes["namespace"]).order_by()
                    .values("cluster_id", "name", "labels", "resource_quotas", "limit_ranges")):
            ns: dict = dict(row)
            contexts[ns.pop("cluster_id")].namespaces.append(ns)
    if scopes["cluster"]:
        for cluster_id, version, n in (Node.objects.filter(cluster_id__in=scopes["cluster"]).order_by()
                                       .values_list("cluster_id", "kubelet_version")
                                       .annotate(n=Count("pk")).values_list("cluster_id", "kubelet_version", "n")):
            contexts[cluster_id].kubelet_versions[version] = n
    if scopes["addon"]:
        for cluster_id, addon, version, namespace, workload, kind in (
                ClusterAddon.objects.filter(cluster_id__in=scopes["addon"]).order_by()
                .values_list("cluster_id", "addon", "version", "namespace", "workload", "kind")):
            contexts[cluster_id].addons.append({"addon": addon, "version": version, "namespace": namespace,
                                                "workload": workload, "kind": kind})
    return contexts


Found = dict[tuple, tuple[PolicyAssignment, rules.Finding]]  # (cluster, assignment, kind, namespace, name) -> …


def preview(assignment: PolicyAssignment, clusters: list[Cluster], *, now=None) -> dict:
    """What `assignment` (saved or not) finds on `clusters` by their stored inventory, writing nothing:
    {"objects": findings, "clusters": clusters with one, "examples": a few "cluster: kind namespace/name"}."""
    now = now or timezone.now()
    found: Found = {}
    for start in range(0, len(clusters), CHUNK):
        chunk = clusters[start:start + CHUNK]
        found.update(_run_rules(chunk, {c.pk: [assignment] for c in chunk}, now)[0])
    names = {c.pk: c.name for c in clusters}
    examples = [f"{names[key[0]]}: {f.kind} {f.namespace + '/' if f.namespace else ''}{f.name}"
                for key, (_a, f) in sorted(found.items(), key=str)[:5]]
    return {"objects": len(found), "clusters": len({key[0] for key in found}), "examples": examples}


def _evaluate_chunk(chunk: list[Cluster], assigned: dict[int, list[PolicyAssignment]], now,
                    inputs: dict[int, str]) -> dict:
    """Run the rules over the stored inventory (no lock held), then write what changed in one transaction, with
    each cluster's `inputs` digest."""
    found, results = _run_rules(chunk, assigned, now)
    ids = [c.pk for c in chunk]
    with transaction.atomic():
        # Evaluations of one cluster (after a sync and after a group change, say) write one at a time; a
        # cluster detached or an assignment removed while the rules ran (their deletions lock those rows
        # first) is left out rather than written for.
        present = set(Cluster.objects.select_for_update().filter(pk__in=ids).order_by("pk")
                      .values_list("pk", flat=True))
        used = {r["assignment"] for pk in ids for r in results[pk]}
        alive = _lock_assignments_shared(used)
        if present != set(ids) or alive != used:
            ids = [pk for pk in ids if pk in present]
            found = {key: value for key, value in found.items() if key[0] in present and key[1] in alive}
            results = {pk: [r for r in results[pk] if r["assignment"] in alive] for pk in ids}
        digests = _digests(ids, found)
        previous, unchanged = _previous_evaluations(ids, digests)
        merged_away = {(pk, a_pk) for pk in ids for a in assigned.get(pk, [])
                       for a_pk in getattr(a, "merged_from", [])[1:]}
        _write_violations(found, [pk for pk in ids if pk not in unchanged], unchanged, previous, now,
                          merged_away=merged_away)
        open_counts = Counter(key[0] for key in found)
        return _store_compliance(ids, results, open_counts, digests, now, inputs, evaluated=previous.keys())


def inputs_of(chunk: list[Cluster], assigned: dict[int, list[PolicyAssignment]], today) -> dict[int, str]:
    """A digest per cluster of everything its assigned rules read: the rules' code, the day, the cluster's name and
    version, its effective assignments (parameters, modes, exclusions, groups), and what it stores of each kind the
    rules look at. Workloads and namespaces count by their rows' ids and PostgreSQL row versions (`xmin`, `ctid`):
    any write to a row, by whatever writer, gives it a new one (within one transaction too), and a workload's pod
    template is never read. Equal to the stored digest means the evaluation would find what it found: an unchanged
    fleet costs a few queries per thousand clusters."""
    ids = [c.pk for c in chunk]
    parts: dict[int, list] = {c.pk: [_RULES_CODE(), today.isoformat(), c.name, c.kubernetes_version] for c in chunk}
    signatures: dict[int, str] = {}  # one per assignment object (most clusters share them), by identity
    for c in chunk:
        for a in assigned[c.pk]:
            if id(a) not in signatures:
                signatures[id(a)] = hashlib.blake2b(msgspec.json.encode((
                    a.pk, a.rule_key, a.params, a.mode, sorted(a.excluded_namespaces or []), a.group.name,
                    getattr(a, "merged_from", None), getattr(a, "merged_groups", None))), digest_size=16).hexdigest()
        parts[c.pk].append([signatures[id(a)] for a in assigned[c.pk]])
    with connection.cursor() as cursor:
        for model in (Workload, Namespace):
            cursor.execute("SELECT cluster_id, count(*), "
                           "sum(hashtextextended(id || ':' || xmin || ':' || ctid::text, 0)) "
                           f"FROM {model._meta.db_table} WHERE cluster_id = ANY(%s) GROUP BY cluster_id", [ids])
            for cluster_id, n, hashed in cursor.fetchall():
                parts[cluster_id].append((model.__name__, n, str(hashed)))
    for cluster_id, version, n in (Node.objects.filter(cluster_id__in=ids).order_by("cluster_id", "kubelet_version")
                                   .values_list("cluster_id", "kubelet_version").annotate(n=Count("pk"))
                                   .values_list("cluster_id", "kubelet_version", "n")):
        parts[cluster_id].append(("kubelet", version, n))
    for row in (ClusterAddon.objects.filter(cluster_id__in=ids).order_by("cluster_id", "addon", "namespace", "pk")
                .values_list("cluster_id", "addon", "version", "namespace", "workload", "kind")):
        parts[row[0]].append(("addon", *row[1:]))
    return {pk: hashlib.blake2b(msgspec.json.encode(p), digest_size=16).hexdigest() for pk, p in parts.items()}


@functools.cache
def _RULES_CODE() -> str:  # noqa: N802 (a constant, computed once)
    """A digest of the rules' source (and the release table they read): a new Fleetweb evaluates everything anew."""
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(Path(rules.__file__).parent.glob("*.py")) + [Path(releases_module.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _confirm(ids: set[int], compliances: dict[int, ClusterCompliance], now) -> dict[int, ClusterCompliance]:
    """Clusters whose inputs did not change: their stored evaluation stands as of `now` (open violations are seen
    until then) and their history gets its periodic point; nothing else is written. Clusters detached meanwhile are
    left out."""
    with transaction.atomic():
        present = set(Cluster.objects.select_for_update().filter(pk__in=ids).order_by("pk")
                      .values_list("pk", flat=True))
        ClusterCompliance.objects.filter(cluster_id__in=present).update(evaluated_at=now)
        due = [s for s in _latest_points(present).values() if s.at <= _history_due(now)]
        ComplianceSnapshot.objects.bulk_create([
            ComplianceSnapshot(cluster_id=s.cluster_id, at=now, score=s.score, passed=s.passed, failed=s.failed,
                               open_violations=s.open_violations, by_rule=s.by_rule,
                               failed_by_severity=s.failed_by_severity) for s in due])
    for pk in present:
        compliances[pk].evaluated_at = now
    return {pk: compliances[pk] for pk in present}


def _run_rules(chunk: list[Cluster], assigned: dict[int, list[PolicyAssignment]], now) -> tuple[Found, dict]:
    """Findings by key, and per cluster one result row per assignment; a rule that raises counts as no finding."""
    contexts = _load(chunk, assigned, timezone.localdate(now))
    found: Found = {}
    results: dict[int, list[dict]] = {}
    for c in chunk:
        results[c.pk] = []
        for a in assigned[c.pk]:
            rule = a.rule
            try:
                findings = list(rule.check(_scoped(contexts[c.pk], a.excluded_namespaces),
                                           {**rule.defaults(), **a.params}))
            except Exception:  # one broken rule must not hide the others' results
                log.exception("rule %s failed on %s", a.rule_key, c.name)
                findings = []
            for f in findings:
                found[(c.pk, a.pk, f.kind, f.namespace, f.name)] = (a, f)
            results[c.pk].append({"assignment": a.pk, "group": a.group.name, "rule": a.rule_key,
                                  "severity": rule.severity, "mode": a.mode, "violations": len(findings),
                                  "groups": getattr(a, "merged_groups", [a.group.name]),
                                  "merged_from": getattr(a, "merged_from", [a.pk])})
    return found, results


def _digests(ids: list[int], found: Found) -> dict[int, str]:
    """A hash of each cluster's open findings: equal to the stored one means no violation row to touch."""
    hashes = {pk: hashlib.blake2b(digest_size=16) for pk in ids}
    for key in sorted(found, key=str):
        hashes[key[0]].update(repr((key, found[key][1].message)).encode())
    return {pk: d.hexdigest() for pk, d in hashes.items()}


def _previous_evaluations(ids: list[int], digests: dict[int, str]) -> tuple[dict, set[int]]:
    """(cluster -> when it was last evaluated, clusters whose findings are the same as then)."""
    previous, unchanged = {}, set()
    for cluster_id, evaluated_at, digest in ClusterCompliance.objects.filter(cluster_id__in=ids).values_list(
            "cluster_id", "evaluated_at", "digest"):
        previous[cluster_id] = evaluated_at
        if digest == digests[cluster_id]:
            unchanged.add(cluster_id)
    return previous, unchanged


_NEW_VIOLATION = ("assignment", "cluster", "rule_key", "severity", "object_kind", "namespace", "object_name", "message",
                  "first_seen", "last_seen", "times_reopened")


def _write_violations(found: Found, diff_ids: list[int], unchanged: set[int], previous: dict, now, *,
                      merged_away: set[tuple[int, int]] | frozenset[tuple[int, int]] = frozenset()) -> None:
    """Open new violations, reopen resolved ones found again, update changed messages, resolve those gone. Those of
    an assignment another one of the same rule now stands for on that cluster (`merged_away`: (cluster,
    assignment)) are deleted: they were the same finding counted twice, not fixed."""
    # Plain tuples, not model instances: a fleet holds hundreds of thousands of violations and most
    # evaluations change none of them.
    existing = {(cluster_id, assignment_id, kind, namespace, name): (pk, resolved_at, message, reopened)
                for pk, cluster_id, assignment_id, kind, namespace, name, resolved_at, message, reopened
                in Violation.objects.filter(cluster_id__in=diff_ids).order_by().values_list(
                    "pk", "cluster_id", "assignment_id", "object_kind", "namespace", "object_name",
                    "resolved_at", "message", "times_reopened").iterator(chunk_size=5000)}
    new: list[tuple] = []
    changed: list[Violation] = []
    opened: list[tuple[int, str, str, str, str, str]] = []  # for violation.opened alerts
    for key, (a, f) in found.items():
        if key[0] in unchanged:
            continue
        row = existing.get(key)
        if row is None or row[1] is not None:
            opened.append((key[0], a.rule_key, a.rule.severity, f.kind, f.namespace, f.name))
        if row is None:
            new.append((a.pk, key[0], a.rule_key, a.rule.severity, f.kind, f.namespace, f.name, f.message, now, now,
                        0))
            continue
        pk, resolved_at, message, reopened = row
        if resolved_at is not None:
            changed.append(Violation(pk=pk, resolved_at=None, reopened_at=now, times_reopened=reopened + 1,
                                     message=f.message, last_seen=now))
        elif message != f.message:
            changed.append(Violation(pk=pk, resolved_at=None, reopened_at=None, times_reopened=reopened,
                                     message=f.message, last_seen=now))
    # A first evaluation opens tens of thousands at once: COPY, not model instances and quoted parameter arrays.
    bulk.copy_rows(Violation, _NEW_VIOLATION, new)
    Violation.objects.bulk_update([v for v in changed if v.reopened_at is not None],
                                  ["resolved_at", "reopened_at", "times_reopened", "message", "last_seen"],
                                  batch_size=1000)
    Violation.objects.bulk_update([v for v in changed if v.reopened_at is None], ["message", "last_seen"],
                                  batch_size=1000)
    gone: dict[int, list[int]] = defaultdict(list)
    duplicates = [pk for key, (pk, *_rest) in existing.items() if (key[0], key[1]) in merged_away]
    if duplicates:
        Violation.objects.filter(pk__in=duplicates).delete()
    for key, (pk, resolved_at, _message, _reopened) in existing.items():
        if key not in found and resolved_at is None and (key[0], key[1]) not in merged_away:
            gone[key[0]].append(pk)
    for cluster_id, pks in gone.items():  # last seen: the evaluation before this one
        Violation.objects.filter(pk__in=pks).update(resolved_at=now, last_seen=previous.get(cluster_id) or now)
    alerts.violations_opened(opened)


def _lock_assignments_shared(ids: set[int]) -> set[int]:
    """FOR SHARE on these assignments until commit (evaluations share it; deleting one waits for them and
    evaluations wait for a deletion in progress); returns the ids that still exist. Django's
    select_for_update has no shared mode, hence SQL."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {PolicyAssignment._meta.db_table} WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                       [sorted(ids)])
        return {row[0] for row in cursor.fetchall()}


_POINT = ("cluster", "at", "score", "passed", "failed", "open_violations", "by_rule", "failed_by_severity")


def _store_compliance(ids: list[int], results: dict[int, list[dict]], open_counts: Counter, digests: dict,
                      now, inputs: dict[int, str], evaluated: Iterable[int]) -> dict:
    """Store each cluster's evaluation (`evaluated`: those with one stored already; their rows are locked), its
    trend point where due, and its results."""
    compliances = {}
    for pk in ids:
        passed = sum(1 for r in results[pk] if not r["violations"])
        compliances[pk] = ClusterCompliance(cluster_id=pk, evaluated_at=now, score=score_of(results[pk]),
                                            passed=passed, failed=len(results[pk]) - passed,
                                            open_violations=open_counts[pk], results=results[pk],
                                            digest=digests[pk], inputs=inputs[pk], **compliance.tallies(results[pk]))
    # Written as rows, not an upsert of parameter arrays: psycopg quotes every JSON text of an array in Python.
    fields = ["evaluated_at", "score", "passed", "failed", "open_violations", "results", "digest", "inputs",
              *compliance.TALLIES]
    bulk.update_rows([c for pk, c in compliances.items() if pk in evaluated], fields)
    bulk.copy_rows(ClusterCompliance, ["cluster", *fields],
                   ([pk, *(getattr(c, name) for name in fields)] for pk, c in compliances.items()
                    if pk not in evaluated))
    last = _latest_points(ids)
    points = []
    for pk, c in compliances.items():
        by_rule = {r["rule"]: {"severity": r["severity"], "passed": not r["violations"],
                               "violations": r["violations"]} for r in results[pk]}
        prev = last.get(pk)
        # One point per evaluation would be 1,440 rows a day per cluster at a 60 s interval: write a point
        # when the result changed, and otherwise at most once per history interval.
        if prev is None or prev.by_rule != by_rule or prev.score != c.score or prev.at <= _history_due(now):
            points.append((pk, now, c.score, c.passed, c.failed, c.open_violations, by_rule,
                           dict(Counter(r["severity"] for r in results[pk] if r["violations"]))))
    bulk.copy_rows(ComplianceSnapshot, _POINT, points)
    _store_results(ids, results)
    return compliances


def _latest_points(ids) -> dict[int, ComplianceSnapshot]:
    """Each of these clusters' newest trend point, in one query."""
    return {s.cluster_id: s for s in ComplianceSnapshot.objects.filter(cluster_id__in=ids)
            .order_by("cluster_id", "-at").distinct("cluster_id")}


def _history_due(now: datetime) -> datetime:
    """A trend point at or before this is old enough for the next one, even if nothing changed."""
    return now - timedelta(seconds=settings.FLEETWEB_COMPLIANCE_HISTORY_INTERVAL)


def _store_results(ids: list[int], results: dict[int, list[dict]]) -> None:
    """Bring the `PolicyResult` rows of these clusters in line with their results, writing only changes."""
    existing = {(cluster_id, assignment_id): (pk, severity, violations, primary)
                for pk, cluster_id, assignment_id, severity, violations, primary in PolicyResult.objects.filter(
                    cluster_id__in=ids).values_list("pk", "cluster_id", "assignment_id", "severity", "violations",
                                                    "primary")}
    # Each assignment merged into a result gets the same result (its group's score sees it); one is primary.
    wanted = {(pk, a_pk): (r["severity"], r["violations"], a_pk == r["assignment"])
              for pk in ids for r in results[pk] for a_pk in r.get("merged_from") or [r["assignment"]]}
    changed = [PolicyResult(pk=existing[key][0], severity=severity, violations=violations, primary=primary)
               for key, (severity, violations, primary) in wanted.items()
               if key in existing and existing[key][1:] != (severity, violations, primary)]
    bulk.update_rows(changed, ["severity", "violations", "primary"])
    # The rows' clusters are locked (`_evaluate_chunk`): no other evaluation adds theirs meanwhile.
    bulk.copy_rows(PolicyResult, ("cluster", "assignment", "severity", "violations", "primary"),
                   ((*key, *value) for key, value in wanted.items() if key not in existing))
    gone = [row[0] for key, row in existing.items() if key not in wanted]
    if gone:
        PolicyResult.objects.filter(pk__in=gone).delete()
    compliance.store_group_tallies(ids, wanted)
