"""Policy sets: named baselines ("Pod Security: restricted", "Production baseline") applied to a group in one
step, with a mode, instead of one rule at a time. Every door (the Policy sets pages, `/api/v1/policy-sets/`,
`make run`'s demo) comes here; applying goes through the assignment services, so each rule gets the same checks
(enforce needs an admin, nothing enforced is weakened) and its own audit event, all in one transaction with the
set's own event, and all or nothing.

Applying adds the set's rules a group lacks, with the set's parameters, and raises the mode of those it has in
a lower mode; it never lowers a mode nor changes an existing assignment's parameters (edit those one by one).
A rule that cannot be enforced is assigned in audit mode, and the plan says why.
"""

from __future__ import annotations

import dataclasses

from django.db import transaction
from django.db.models.signals import post_migrate
from django.dispatch import receiver

from foundation.audit import record
from foundation.errors import ServiceError
from governance import rules, services
from governance.choices import Mode
from governance.models import PolicyAssignment, PolicySet
from inventory.models import ClusterGroup
from inventory.people.access import require
from inventory.validators import dns_label_problem

BUILT_IN: tuple[dict, ...] = (
    {"name": "pod-security-restricted", "title": "Pod Security: restricted",
     "description": "What the Kubernetes Pod Security Standards' restricted profile asks of workloads: no "
                    "privileged containers, no privilege escalation, non-root users, no host paths or host "
                    "namespaces, and namespaces labelled to enforce the restricted level.",
     "items": [{"rule": "no-privileged-containers"}, {"rule": "no-privilege-escalation"},
               {"rule": "run-as-non-root"}, {"rule": "no-host-path"}, {"rule": "no-host-namespaces"},
               {"rule": "namespace-pod-security", "params": {"levels": ["restricted"]}}]},
    {"name": "production-baseline", "title": "Production baseline",
     "description": "What a production cluster should hold to: no privileged containers or host access, pinned "
                    "image tags, resources and probes set, quotas in every namespace, and a supported "
                    "Kubernetes with kubelets close to their API server.",
     "items": [{"rule": "no-privileged-containers"}, {"rule": "no-host-namespaces"}, {"rule": "no-host-path"},
               {"rule": "no-latest-tag"}, {"rule": "resources-set"}, {"rule": "probes-set"},
               {"rule": "namespace-quota"}, {"rule": "kubernetes-version-supported"},
               {"rule": "kubernetes-support-ending"}, {"rule": "kubelet-version-skew"}]},
)
MODE_ORDER: dict[str, int] = {Mode.AUDIT: 0, Mode.ENFORCE: 1}


def _check(user) -> None:
    require(user, "edit_policy", message="Policies are the platform's: this needs the global operator role.")


check_apply = _check  # the dry run asks the same question as the apply


def set_view(policy_set: PolicySet) -> dict:
    return {"name": policy_set.name, "title": policy_set.title, "description": policy_set.description,
            "items": policy_set.items}


def clean_items(raw) -> list[dict]:
    """[{"rule", "params"}] with every rule known, once, and its parameters validated by the rule."""
    if not isinstance(raw, list) or not raw:
        raise ServiceError({"items": "Choose at least one rule."})
    if len(raw) > len(rules.REGISTRY):
        raise ServiceError({"items": f"At most {len(rules.REGISTRY)} rules (each once)."})
    items, seen = [], set()
    for n, item in enumerate(raw, 1):
        if isinstance(item, str):
            item = {"rule": item}
        if not isinstance(item, dict) or set(item) - {"rule", "params"}:
            raise ServiceError({"items": f"Rule {n}: give {{\"rule\": key, \"params\": {{…}}}}."})
        key = item.get("rule")
        if not isinstance(key, str) or key not in rules.REGISTRY:
            raise ServiceError({"items": f"Rule {n}: {str(key)[:64]!r} is not a rule of the catalog."})
        if key in seen:
            raise ServiceError({"items": f"Rule {n}: {key} is in the set twice."})
        seen.add(key)
        params = item.get("params")
        if params is not None and not isinstance(params, dict):
            raise ServiceError({"items": f"{key}: params must be an object of parameter names to values."})
        rule = rules.get(key)
        try:
            cleaned = rule.clean_params(params)
        except rules.ParamError as exc:
            detail = "; ".join(f"{k}: {v}" for k, v in exc.errors.items())
            raise ServiceError({"items": f"{key}: {detail}"}) from None
        items.append({"rule": key, "params": cleaned})
    return items


def save_set(*, user, name: str, title: str, items, description: str = "", policy_set: PolicySet | None = None,
             source_ip: str = "") -> PolicySet:
    """Create a set (policy_set None) or change one's title, description and rules; built-in sets stay as shipped."""
    _check(user)
    if policy_set is not None and policy_set.built_in:
        raise ServiceError("A built-in set stays as shipped: make a new set from it.", status=409)
    if policy_set is None and (problem := dns_label_problem(name, "name")):
        raise ServiceError({"name": problem})
    title = (title or "").strip()
    if not title or len(title) > 120:
        raise ServiceError({"title": "A title of 1-120 characters."})
    cleaned = clean_items(items)
    with transaction.atomic():
        if policy_set is None:
            if PolicySet.objects.filter(name=name).exists():
                raise ServiceError({"name": f"A set named '{name}' exists already."}, status=409)
            policy_set = PolicySet.objects.create(name=name, title=title, description=description or "",
                                                  items=cleaned, created_by=user if getattr(user, "pk", None) else None)
            record(user=user, action="policy_set.create", target=policy_set, source_ip=source_ip,
                   after=set_view(policy_set))
        else:
            policy_set = PolicySet.objects.select_for_update().get(pk=policy_set.pk)
            before = set_view(policy_set)
            policy_set.title, policy_set.description, policy_set.items = title, description or "", cleaned
            policy_set.save(update_fields=["title", "description", "items", "updated_at"])
            record(user=user, action="policy_set.update", target=policy_set, source_ip=source_ip, before=before,
                   after=set_view(policy_set))
    return policy_set


def delete_set(policy_set: PolicySet, *, user, source_ip: str = "") -> None:
    """Delete a set; what it assigned stays (assignments are the groups')."""
    _check(user)
    if policy_set.built_in:
        raise ServiceError("A built-in set cannot be deleted.", status=409)
    with transaction.atomic():
        record(user=user, action="policy_set.delete", target=policy_set, source_ip=source_ip,
               before=set_view(policy_set))
        policy_set.delete()


@dataclasses.dataclass(frozen=True)
class Step:
    """What applying a set does to one rule on one group."""

    rule: rules.Rule
    action: str  # add, raise, keep
    mode: str  # the mode the rule has after applying
    before: str = ""  # the mode it had ("" when not assigned)
    params: dict = dataclasses.field(default_factory=dict)
    note: str = ""

    @property
    def changes(self) -> bool:
        return self.action != "keep"

    def as_dict(self) -> dict:
        return {"rule": self.rule.key, "title": self.rule.title, "action": self.action, "mode": self.mode,
                "before": self.before, "params": self.params, "note": self.note}


def plan(policy_set: PolicySet, group: ClusterGroup, mode: str) -> list[Step]:
    """What `apply_set` would do, rule by rule (reads only)."""
    if mode not in MODE_ORDER:
        raise ServiceError({"mode": f"One of {', '.join(MODE_ORDER)}."})
    assigned = {a.rule_key: a for a in PolicyAssignment.objects.filter(group=group)}
    steps = []
    for item in policy_set.items:
        if item["rule"] not in rules.REGISTRY:  # a rule retired since the set was saved
            continue
        rule = rules.get(item["rule"])
        want, note = mode, ""
        if mode == Mode.ENFORCE and not rule.enforceable:
            want, note = Mode.AUDIT, f"audit only: {rule.audit_only_reason}"
        current = assigned.get(rule.key)
        if current is None:
            steps.append(Step(rule, "add", want, params=rule.clean_params(item.get("params")), note=note))
        elif MODE_ORDER[want] > MODE_ORDER.get(current.mode, 0):
            steps.append(Step(rule, "raise", want, before=current.mode, params=current.params,
                              note="its parameters are kept"))
        else:
            steps.append(Step(rule, "keep", current.mode, before=current.mode, params=current.params,
                              note=note or ("already assigned; its parameters are kept"
                                            if current.mode == want else f"already {current.mode}: never lowered")))
    return steps


def apply_set(*, policy_set: PolicySet, group: ClusterGroup, mode: str, user, source_ip: str = "") -> list[Step]:
    """Apply the set to the group in `mode`: all of it or nothing (the first refusal names its rule)."""
    _check(user)
    with transaction.atomic(), services.one_evaluation():
        steps = plan(policy_set, group, mode)
        for step in steps:
            try:
                if step.action == "add":
                    services.create_assignment(group=group, rule_key=step.rule.key, user=user, mode=step.mode,
                                               params=step.params, source_ip=source_ip)
                elif step.action == "raise":
                    assignment = PolicyAssignment.objects.get(group=group, rule_key=step.rule.key)
                    services.update_assignment(assignment, user=user, mode=step.mode, source_ip=source_ip)
            except ServiceError as exc:
                raise ServiceError({"mode" if "mode" in exc.errors else "__all__":
                                    f"{step.rule.title}: {exc.message}"}, status=exc.status) from None
        record(user=user, action="policy_set.apply", target=policy_set, source_ip=source_ip,
               target_name=f"{policy_set.name} on {group.name}",
               after={"group": group.name, "mode": mode, "steps": [s.as_dict() for s in steps if s.changes]})
    return steps


@receiver(post_migrate)
def install_built_in(sender, **kwargs) -> None:
    """The shipped sets, as this version of Fleetweb defines them, after every migrate (and test flush)."""
    if getattr(sender, "name", "") != "governance":
        return
    for spec in BUILT_IN:
        PolicySet.objects.update_or_create(name=spec["name"], defaults={
            "title": spec["title"], "description": spec["description"], "built_in": True,
            "items": [{"rule": i["rule"], "params": rules.get(i["rule"]).clean_params(i.get("params"))}
                      for i in spec["items"]]})
