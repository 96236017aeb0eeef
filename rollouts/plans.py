"""Rollout plans: reusable lists of stages, shared by every team and changed by global operators only; stages are
checked as a rollout's inline stages are (`services.clean_stages`)."""

from __future__ import annotations

from django.db import transaction

from foundation.audit import record
from inventory.people.access import require
from rollouts.errors import RolloutError
from rollouts.models import RolloutPlan
from rollouts.services import clean_stages


def _check_plans(user) -> None:
    require(user, "edit_plan", message="Plans are shared by every team: only global operators change them.")


def _plan_view(plan: RolloutPlan) -> dict:
    return {"name": plan.name, "description": plan.description, "stages": plan.stages}


def create_plan(*, name: str, user, stages, description: str = "", source_ip: str = "") -> RolloutPlan:
    """A reusable list of stages, validated like inline stages."""
    _check_plans(user)
    cleaned = clean_stages(stages)
    if RolloutPlan.objects.filter(name=name).exists():
        raise RolloutError({"name": f"A plan named '{name}' already exists."})
    with transaction.atomic():
        plan = RolloutPlan.objects.create(name=name, description=description, stages=cleaned)
        record(user=user, action="plan.create", target=plan, source_ip=source_ip, after=_plan_view(plan))
    return plan


def update_plan(plan: RolloutPlan, *, user, source_ip: str = "", **changes) -> RolloutPlan:
    """Change a plan's description or stages (rollouts already created keep the stages they were given)."""
    _check_plans(user)
    unknown = set(changes) - {"description", "stages"}
    if unknown:
        raise RolloutError({"detail": f"These fields cannot be changed: {', '.join(sorted(unknown))}"})
    if "stages" in changes:
        changes["stages"] = clean_stages(changes["stages"])
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        before = _plan_view(plan)
        for field, value in changes.items():
            setattr(plan, field, value)
        plan.save()
        record(user=user, action="plan.update", target=plan, source_ip=source_ip, before=before,
               after=_plan_view(plan))
    return plan


def delete_plan(plan: RolloutPlan, *, user, source_ip: str = "") -> None:
    _check_plans(user)
    with transaction.atomic():
        record(user=user, action="plan.delete", target=plan, source_ip=source_ip, before=_plan_view(plan))
        plan.delete()
