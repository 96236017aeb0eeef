"""Policy set pages: the sets, one set with its rules, creating and editing one's own, and applying a set to a
group in one step with a preview of what changes and what already violates it. Changes go through
governance.policysets."""

from __future__ import annotations

import yaml
from django import forms
from django.contrib import messages
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import OPERATOR, VIEWER, has_role
from foundation.web import client_ip
from governance import evaluation, policysets, rules
from governance.choices import Mode
from governance.models import PolicyAssignment, PolicySet
from inventory.models import ClusterGroup

PARAMS_BYTES = 16_384


class PolicySetForm(forms.Form):
    name = forms.SlugField(max_length=63, help_text="Lowercase letters, digits and dashes; cannot change later.")
    title = forms.CharField(max_length=120)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    rules = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, label="Rules")
    params = forms.CharField(
        required=False, label="Parameters (YAML)", widget=forms.Textarea(attrs={"rows": 5, "class": "mono"}),
        help_text="Only where the defaults do not fit, by rule: e.g. allowed-registries: {registries: "
                  "[registry.example.com/]}. Rules not named here use their defaults.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rules"].choices = [(r.key, f"{r.title} ({r.severity}{'' if r.enforceable else ', audit only'})")
                                        for r in rules.catalog()]

    def clean_params(self) -> dict:
        text = self.cleaned_data.get("params") or ""
        if len(text.encode()) > PARAMS_BYTES:
            raise forms.ValidationError(f"At most {PARAMS_BYTES // 1024} KiB.")
        try:
            value = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise forms.ValidationError("Not YAML" + (f" (line {mark.line + 1})" if mark else "") + ".") from None
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise forms.ValidationError("Give a mapping of rule key to its parameters.")
        return value

    def items(self) -> list[dict]:
        params = self.cleaned_data.get("params") or {}
        chosen = self.cleaned_data["rules"]
        stray = sorted(set(params) - set(chosen))
        if stray:
            raise ServiceError({"params": f"Parameters for a rule not chosen: {', '.join(map(str, stray))[:200]}."})
        return [{"rule": key, **({"params": params[key]} if key in params else {})} for key in chosen]


class ApplyForm(forms.Form):
    group: forms.ModelChoiceField = forms.ModelChoiceField(queryset=ClusterGroup.objects.none(), to_field_name="name",
                                                           empty_label="— group —")
    mode = forms.ChoiceField(choices=Mode.choices, initial=Mode.AUDIT, widget=forms.RadioSelect)
    confirmed = forms.BooleanField(required=False, label="Member clusters will refuse new violating objects: "
                                                         "I have read what already violates it.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].queryset = ClusterGroup.objects.visible_to(user).order_by("name")


def _differs(policy_set: PolicySet) -> dict:
    """The set's parameters that are not the rule's defaults, for the YAML field."""
    out = {}
    for item in policy_set.items:
        if item["rule"] in rules.REGISTRY and item.get("params") != rules.get(item["rule"]).defaults():
            out[item["rule"]] = item["params"]
    return out


def _rules_of(policy_set: PolicySet) -> list[dict]:
    """The set's rules of the catalog with their parameters, for its page."""
    return [{"rule": rules.get(i["rule"]), "params": i.get("params") or {}}
            for i in policy_set.items if i["rule"] in rules.REGISTRY]


def _initial_of(policy_set: PolicySet, **fields) -> dict:
    """The set form's fields from a set (to edit it, or to copy it)."""
    differs = _differs(policy_set)
    return {"description": policy_set.description, "rules": policy_set.rule_keys,
            "params": yaml.safe_dump(differs, sort_keys=True) if differs else "", **fields}


@role_required(VIEWER)
def policy_set_list(request) -> HttpResponseBase:
    sets = list(PolicySet.objects.all())
    return render(request, "governance/policy_sets.html", {
        "sets": [{"set": s, "rules": [rules.get(k) for k in s.rule_keys if k in rules.REGISTRY]} for s in sets],
        "can_edit": has_role(request.user, OPERATOR)})


def _plan_context(request, policy_set: PolicySet, form: ApplyForm) -> dict:
    if not form.is_valid():
        return {}
    group, mode = form.cleaned_data["group"], form.cleaned_data["mode"]
    steps = policysets.plan(policy_set, group, mode)
    members = list(group.members())
    rows = []
    for step in steps:
        found = None
        if step.changes:
            probe = PolicyAssignment(group=group, rule_key=step.rule.key, mode=step.mode, params=step.params,
                                     excluded_namespaces=list(rules.DEFAULT_EXCLUDED_NAMESPACES))
            found = evaluation.preview(probe, members)
        rows.append({"step": step, "found": found})
    return {"plan": rows, "group": group, "mode": mode, "members": len(members),
            "enforcing": any(s.mode == Mode.ENFORCE and s.changes for s in steps)}


@role_required(VIEWER)
def policy_set_detail(request, name: str) -> HttpResponseBase:
    policy_set = get_object_or_404(PolicySet, name=name)
    form = ApplyForm(request.GET if request.GET.get("group") else None, user=request.user)
    context = {"set": policy_set, "form": form, "can_edit": has_role(request.user, OPERATOR),
               "rules": _rules_of(policy_set),
               **_plan_context(request, policy_set, form)}
    if request.htmx:
        return render(request, "governance/partials/_policy_set_plan.html", context)
    return render(request, "governance/policy_set_detail.html", context)


@role_required(OPERATOR)
@require_POST
def policy_set_apply(request, name: str) -> HttpResponseBase:
    policy_set = get_object_or_404(PolicySet, name=name)
    form = ApplyForm(request.POST, user=request.user)
    context = {"set": policy_set, "form": form, "can_edit": True,
               "rules": _rules_of(policy_set)}
    if form.is_valid():
        context.update(_plan_context(request, policy_set, form))
        if context["enforcing"] and not form.cleaned_data["confirmed"]:
            form.add_error("confirmed", "Read what already violates it below, then tick this to enforce.")
        else:
            try:
                steps = policysets.apply_set(policy_set=policy_set, group=form.cleaned_data["group"],
                                             mode=form.cleaned_data["mode"], user=request.user,
                                             source_ip=client_ip(request))
            except ServiceError as exc:
                add_to_form(form, exc)
            else:
                changed = sum(1 for s in steps if s.changes)
                messages.success(request, f"{policy_set.title} applied to {form.cleaned_data['group'].name}: "
                                          f"{changed} of {len(steps)} rules added or raised; evaluation is queued.")
                return redirect("governance:policy_matrix")
    return render(request, "governance/policy_set_detail.html", context, status=400)


def _set_form(request, policy_set: PolicySet | None) -> HttpResponseBase:
    initial = None
    if policy_set is not None:
        initial = _initial_of(policy_set, name=policy_set.name, title=policy_set.title)
    elif (source := request.GET.get("from")) and (base := PolicySet.objects.filter(name=source).first()):
        initial = _initial_of(base, title=f"{base.title} (copy)")
    form = PolicySetForm(request.POST or None, initial=initial)
    if policy_set is not None:
        form.fields["name"].disabled = True
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            saved = policysets.save_set(user=request.user, name=policy_set.name if policy_set else d["name"],
                                        title=d["title"], description=d["description"], items=form.items(),
                                        policy_set=policy_set, source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Policy set {saved.title} saved.")
            return redirect(saved)
    return render(request, "governance/policy_set_form.html", {"form": form, "set": policy_set},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
def policy_set_create(request) -> HttpResponseBase:
    return _set_form(request, None)


@role_required(OPERATOR)
def policy_set_edit(request, name: str) -> HttpResponseBase:
    policy_set = get_object_or_404(PolicySet, name=name)
    if policy_set.built_in:
        messages.error(request, "A built-in set stays as shipped: make a new set from it.")
        return redirect(policy_set)
    return _set_form(request, policy_set)


@role_required(OPERATOR)
@require_POST
def policy_set_delete(request, name: str) -> HttpResponseBase:
    policy_set = get_object_or_404(PolicySet, name=name)
    try:
        policysets.delete_set(policy_set, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(policy_set)
    messages.success(request, f"Policy set {policy_set.title} deleted; what it assigned stays.")
    return redirect("governance:policy_set_list")
