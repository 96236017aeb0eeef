"""Plan pages: the list, the editor (create and edit) and delete; changes go through rollouts.plans."""

from __future__ import annotations

import yaml
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import add_to_form
from foundation.roles import OPERATOR, VIEWER
from foundation.web import client_ip
from rollouts import plans, services
from rollouts.forms import PlanForm
from rollouts.models import RolloutPlan
from rollouts.views import DEFAULT_STAGES, stages_field


@role_required(VIEWER)
def plan_list(request) -> HttpResponseBase:
    return render(request, "rollouts/plan_list.html", {"plans": RolloutPlan.objects.visible_to(request.user)})


@role_required(OPERATOR)
def plan_create(request) -> HttpResponseBase:
    form = PlanForm(request.POST or None, initial={"stages": DEFAULT_STAGES})
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            plans.create_plan(name=d["name"], description=d["description"], stages=d["stages"],
                                 user=request.user, source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc, field_name=stages_field)
        else:
            messages.success(request, f"Plan {d['name']} saved.")
            return redirect("rollouts:plan_list")
    return render(request, "rollouts/plan_form.html", {"form": form}, status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
def plan_edit(request, name: str) -> HttpResponseBase:
    """Change a plan's description and stages (its name stays: rollouts record the plan they came from by name)."""
    plan = get_object_or_404(RolloutPlan.objects.visible_to(request.user), name=name)
    initial = {"name": plan.name, "description": plan.description,
               "stages": yaml.safe_dump(plan.stages, sort_keys=False)}
    form = PlanForm(request.POST or None, initial=initial, renaming=False)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            plans.update_plan(plan, description=d["description"], stages=d["stages"], user=request.user,
                                 source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc, field_name=stages_field)
        else:
            messages.success(request, f"Plan {plan.name} saved.")
            return redirect("rollouts:plan_list")
    return render(request, "rollouts/plan_form.html", {"form": form, "plan": plan},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
@require_POST
def plan_delete(request, name: str) -> HttpResponseBase:
    """Delete a plan; rollouts made from it keep their stages."""
    plan = get_object_or_404(RolloutPlan.objects.visible_to(request.user), name=name)
    plans.delete_plan(plan, user=request.user, source_ip=client_ip(request))
    messages.success(request, f"Plan {name} deleted; rollouts made from it keep their stages.")
    return redirect("rollouts:plan_list")
