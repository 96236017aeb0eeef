"""Assignments of rules to groups, and the guard that keeps an enforced policy from being weakened by anyone but
an admin, whatever the door. Evaluation: `governance.evaluation`; scores and history: `governance.compliance`."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import msgspec
from django.conf import settings
from django.db import transaction

from foundation.audit import record
from foundation.errors import ServiceError
from foundation.queueing import gather, gather_after_commit, take_gathered, task
from foundation.roles import ADMIN, has_role
from governance import compliance, evaluation, rules
from governance.choices import Mode
from governance.evaluation import CHUNK
from governance.models import (
    PolicyAssignment,
)
from inventory import services as inventory_services
from inventory.models import Cluster, ClusterGroup
from inventory.people.access import require

log = logging.getLogger(__name__)


class PolicyError(ServiceError):
    """An assignment Fleetweb refuses; `errors` maps fields (or params.NAME) to messages."""


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


def check_assignment(*, rule_key: str, mode: str, user, params: dict | None = None,
                     excluded_namespaces=None) -> None:
    """Refuse (PolicyError) what `create_assignment`/`update_assignment` would refuse, changing nothing: for a
    confirmation asked before the change."""
    _validate(rule_key=rule_key, mode=mode, params=params, user=user,
              excluded_namespaces=list(rules.DEFAULT_EXCLUDED_NAMESPACES) if excluded_namespaces is None
              else excluded_namespaces)


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


# ---------------------------------------------------------------------------------------------
# Enforcement is removed or weakened only by admins, whatever the door


def enforced_on(cluster_ids) -> dict[int, list[tuple[str, str, frozenset, str]]]:
    """{cluster id: [(rule key, parameters as canonical JSON, excluded namespaces, group name)]} of the enforce
    assignments that cover each cluster now."""
    ids = list(cluster_ids)
    enforced = list(PolicyAssignment.objects.filter(mode=Mode.ENFORCE).select_related("group"))
    if not ids or not enforced:
        return {cid: [] for cid in ids}
    groups = {a.group_id: a.group for a in enforced}
    members = inventory_services.membership(groups.values(), list(Cluster.objects.filter(pk__in=ids)))
    covered: dict[int, list] = {cid: [] for cid in ids}
    for a in enforced:
        for c in members.get(a.group_id, []):
            covered[c.pk].append((a.rule_key, msgspec.json.encode(a.params, order="sorted").decode(),
                                  frozenset(a.excluded_namespaces), a.group.name))
    return covered


def weakened(before: dict, after: dict) -> dict[str, set[str]]:
    """{"rule (group g)": {cluster names}} of enforcement that `before` had and `after` lacks: a rule is kept only
    when the cluster is still enforced by it with the same parameters and no more excluded namespaces."""
    lost: dict[str, set[int]] = defaultdict(set)
    for cid, items in before.items():
        now = after.get(cid, [])
        for rule_key, params, excluded, group in items:
            if not any(r == rule_key and p == params and e <= excluded for r, p, e, _g in now):
                lost[f"{rule_key} (group {group})"].add(cid)
    if not lost:
        return {}
    names = dict(Cluster.objects.filter(pk__in={c for ids in lost.values() for c in ids}).values_list("pk", "name"))
    return {what: {names.get(c, f"#{c}") for c in ids} for what, ids in lost.items()}


def enforcement_refusal(lost: dict[str, set[str]]) -> str:
    parts = [f"{what} on {', '.join(sorted(clusters)[:5])}{' …' if len(clusters) > 5 else ''}"
             for what, clusters in sorted(lost.items())]
    return ("Only admins may remove or weaken an enforced policy; this change would stop enforcing "
            + "; ".join(parts) + ".")


class EnforcementGuard:
    """Registered with inventory: group edits and deletes and cluster edits that would remove or weaken an enforced
    rule on any cluster are refused for non-admins (inventory.services.guarded)."""

    def snapshot(self, cluster_ids) -> dict:
        return enforced_on(cluster_ids)

    def refusal(self, before, cluster_ids, user) -> str | None:
        if user is None or has_role(user, ADMIN):
            return None
        lost = weakened(before, enforced_on(cluster_ids))
        return enforcement_refusal(lost) if lost else None


def assignment_audit_view(a: PolicyAssignment) -> dict:
    return {"group": a.group.name, "rule": a.rule_key, "mode": a.mode, "params": a.params,
            "excluded_namespaces": a.excluded_namespaces}


def _members(group: ClusterGroup) -> list[int]:
    return list(group.members().values_list("pk", flat=True))


_batch: ContextVar[set[int] | None] = ContextVar("governance_evaluation_batch", default=None)


@contextmanager
def one_evaluation() -> Iterator[None]:
    """Changes made inside queue one evaluation of the clusters they touch, at the end (a policy set's ten rules
    on a group of a thousand clusters are one pass, not ten). Use it inside the caller's transaction."""
    collected: set[int] = set()
    token = _batch.set(collected)
    try:
        yield
    finally:
        _batch.reset(token)
    _reevaluate(collected)


def _reevaluate(cluster_ids) -> None:
    """After commit: re-evaluate (and reconcile enforcement of) these clusters, one task each."""
    if (batch := _batch.get()) is not None:
        batch.update(cluster_ids)
        return
    ids = sorted(set(cluster_ids))
    if ids:
        transaction.on_commit(lambda: queue_evaluations(ids))


def reevaluate_after_sync(cluster_ids) -> None:
    """After a sync commits: evaluate these clusters within FLEETWEB_EVALUATION_GATHER seconds, together with every
    other cluster synced meanwhile. Agents report a change a minute each, and each report is a sync: gathered, two
    thousand of them are one task every two seconds over about seventy clusters, not seventy tasks over one."""
    gather_after_commit("governance.tasks.evaluate_gathered", cluster_ids,
                        within=settings.FLEETWEB_EVALUATION_GATHER, what="the evaluation of synced clusters")


def evaluate_gathered(cluster_ids: list[int] | None = None) -> int:
    """Evaluate (and enforce on) the clusters gathered by `reevaluate_after_sync` (or `cluster_ids`, when Redis was
    away as they were gathered): the first chunk here, the others as tasks of their own for the other workers. A
    chunk that fails goes back to be gathered again."""
    ids = take_gathered("governance.tasks.evaluate_gathered") if cluster_ids is None else sorted(set(cluster_ids))
    first, rest = ids[:CHUNK], ids[CHUNK:]
    if rest:
        queue_evaluations(rest)
    try:
        evaluation.evaluate_and_enforce_many(list(Cluster.objects.filter(pk__in=first)))
    except Exception:
        gather("governance.tasks.evaluate_gathered", first, within=settings.FLEETWEB_EVALUATION_GATHER,
               what="the evaluation of synced clusters")
        raise
    return len(ids)


def queue_evaluations(cluster_ids: list[int]) -> None:
    """One task per chunk of clusters: a group change over a thousand clusters is twenty tasks, not a thousand."""
    evaluate = task("governance.tasks.evaluate_clusters")
    for start in range(0, len(cluster_ids), CHUNK):
        evaluate.delay(cluster_ids[start:start + CHUNK])


def create_assignment(*, group: ClusterGroup, rule_key: str, user, mode: str = Mode.AUDIT, params: dict | None = None,
                      excluded_namespaces=None, source_ip: str = "") -> PolicyAssignment:
    """Assign a rule to a group; its members are evaluated (and, in enforce mode, get the admission policy)."""
    require(user, "edit_policy", message="Policies are the platform's: this needs the global operator role.")
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
    require(user, "edit_policy", message="Policies are the platform's: this needs the global operator role.")
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
        # Wider parameters (allowed_paths: ["/"]) or more excluded namespaces weaken what clusters refuse: the
        # same guard as group and cluster edits decides, before and after the change.
        members, guard = _members(assignment.group), EnforcementGuard()
        before_enforced = guard.snapshot(members) if assignment.mode == Mode.ENFORCE else None
        assignment.mode, assignment.params, assignment.excluded_namespaces = new_mode, cleaned, excluded
        assignment.save()
        refusal = guard.refusal(before_enforced, members, user) if before_enforced is not None else None
        if refusal:
            raise PolicyError({"params": refusal})
        record(user=user, action="policy.update", target=assignment, source_ip=source_ip, before=before,
               after=assignment_audit_view(assignment))
        _reevaluate(_members(assignment.group) + list(assignment.enforcements.values_list("cluster_id", flat=True)))
    return assignment


def delete_assignment(assignment: PolicyAssignment, *, user, source_ip: str = "") -> None:
    """Unassign a rule: its violations go, and member clusters drop its admission policy."""
    require(user, "edit_policy", message="Policies are the platform's: this needs the global operator role.")
    if assignment.mode == Mode.ENFORCE and not has_role(user, ADMIN):
        raise PolicyError({"mode": "Only admins may remove an enforced policy."})
    with transaction.atomic():
        # Lock first: an evaluation writing violations for it finishes before they are collected for deletion.
        list(PolicyAssignment.objects.select_for_update().filter(pk=assignment.pk).values_list("pk"))
        clusters = _members(assignment.group) + list(assignment.enforcements.values_list("cluster_id", flat=True))
        record(user=user, action="policy.unassign", target=assignment, source_ip=source_ip,
               before=assignment_audit_view(assignment))
        group_id = assignment.group_id
        assignment.delete()
        compliance.rebuild_group_tallies([group_id])  # its results went with it: the group's score follows now
        _reevaluate(clusters)
