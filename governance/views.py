"""Pages of governance: policy catalog and matrix, assignments, compliance, violations, the audit log, the
Upgrade plan."""


from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import F
from django.http import HttpResponse, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import add_to_form
from foundation.exports import csv_response
from foundation.htmx import htmx_partial, is_partial
from foundation.lists import Counted, KeysFirst, filtered, page_rows
from foundation.models import AuditEvent
from foundation.roles import ADMIN, OPERATOR, VIEWER, has_role
from foundation.web import client_ip
from governance import compliance, evaluation, rules, services, upgrades
from governance.choices import Mode
from governance.filtersets import AuditEventFilterSet, UpgradePlanFilterSet, ViolationFilterSet
from governance.forms import AssignmentForm
from governance.models import (
    ClusterCompliance,
    GroupComplianceSnapshot,
    PolicyAssignment,
    Violation,
)
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup
from inventory.people.access import narrowed_scope, scope_query


def _filtered(request):
    filterset = AuditEventFilterSet(request.GET or None, queryset=AuditEvent.objects.visible_to(request.user))
    return filterset, filtered(filterset)


@role_required(ADMIN)
def audit_list(request) -> HttpResponseBase:
    filterset, queryset = _filtered(request)
    page = Paginator(queryset.order_by("-at", "-id"), 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return htmx_partial(request, "governance/audit_list.html", "governance/partials/_audit_table.html",
                        {"filterset": filterset, "page": page, "query": query.urlencode()})


@role_required(ADMIN)
def audit_export(request) -> HttpResponseBase:
    """The filtered audit log as CSV, streamed."""
    _, queryset = _filtered(request)
    header = ["at", "actor", "source_ip", "action", "target_type", "target_name", "before", "after", "message"]
    rows = ([e.at.isoformat(), e.actor_name, e.source_ip, e.action, e.target_type, e.target_name, e.before or "",
             e.after or "", e.message] for e in queryset.order_by("at", "id").iterator(chunk_size=2000))
    return csv_response("fleetweb-audit.csv", header, rows)


# ---------------------------------------------------------------------------------------------
# Policies: catalog, matrix, assignment editor


def _policy_error(form, exc: services.PolicyError) -> None:
    add_to_form(form, exc, field_name=lambda field: field.replace("params.", "param_", 1), name_unknown=False)


@role_required(VIEWER)
def policy_catalog(request) -> HttpResponseBase:
    """Every built-in rule: why it matters, severity, parameters, fix, and whether clusters can enforce it."""
    return render(request, "governance/policy_catalog.html", {"rules": rules.catalog()})


def _matrix_cell(group: ClusterGroup, rule: rules.Rule, assignment: PolicyAssignment | None, **extra) -> dict:
    return {"group": group, "rule": rule, "assignment": assignment, **extra}


@role_required(VIEWER)
def policy_matrix(request) -> HttpResponseBase:
    """Rules × groups: each cell off / audit / enforce; operators switch it in place (HTMX)."""
    groups = list(ClusterGroup.objects.visible_to(request.user))
    assigned = {(a.group_id, a.rule_key): a for a in PolicyAssignment.objects.visible_to(request.user)}
    scores = compliance.group_scores(groups, user=request.user)
    columns = [{"group": g, "score": scores[g.pk]["score"], "clusters": scores[g.pk]["clusters"]} for g in groups]
    rows = [{"rule": r, "cells": [_matrix_cell(g, r, assigned.get((g.pk, r.key))) for g in groups]}
            for r in rules.catalog()]
    return render(request, "governance/policy_matrix.html", {"rows": rows, "columns": columns})


@role_required(OPERATOR)
@require_POST
def policy_toggle(request) -> HttpResponseBase:
    """HTMX: set one matrix cell to off, audit or enforce; answers with the new cell (or why not)."""
    group = get_object_or_404(ClusterGroup, name=request.POST.get("group", ""))
    key = request.POST.get("rule", "")
    if key not in rules.REGISTRY:
        return HttpResponseBadRequest(f"No rule '{key}'.")
    rule = rules.get(key)
    mode = request.POST.get("mode", "off")
    assignment = PolicyAssignment.objects.filter(group=group, rule_key=key).first()
    if mode == Mode.ENFORCE and getattr(assignment, "mode", None) != Mode.ENFORCE and not request.POST.get("confirmed"):
        # Enforce with eyes open: what already violates it, then an explicit second click.
        probe = assignment or PolicyAssignment(group=group, rule_key=key, mode=Mode.ENFORCE, params=rule.defaults(),
                                               excluded_namespaces=list(rules.DEFAULT_EXCLUDED_NAMESPACES))
        try:
            services.check_assignment(rule_key=key, mode=Mode.ENFORCE, user=request.user,
                                      params=assignment.params if assignment else None,
                                      excluded_namespaces=probe.excluded_namespaces)
        except services.PolicyError as exc:
            return render(request, "governance/partials/_matrix_cell.html",
                          {"cell": _matrix_cell(group, rule, assignment, error="; ".join(exc.errors.values()))})
        found = evaluation.preview(probe, list(group.members()))
        return render(request, "governance/partials/_matrix_cell.html",
                      {"cell": _matrix_cell(group, rule, assignment, confirm=found)})
    error = ""
    try:
        if mode == "off":
            if assignment is not None:
                services.delete_assignment(assignment, user=request.user, source_ip=client_ip(request))
                assignment = None
        elif assignment is None:
            if rule.needs_input:
                response = HttpResponse(status=204)
                response["HX-Redirect"] = f"{reverse('governance:assignment_create')}?group={group.name}&rule={key}"
                return response
            assignment = services.create_assignment(group=group, rule_key=key, mode=mode, user=request.user,
                                                    source_ip=client_ip(request))
        elif assignment.mode != mode:
            assignment = services.update_assignment(assignment, mode=mode, user=request.user,
                                                    source_ip=client_ip(request))
    except services.PolicyError as exc:
        error = "; ".join(exc.errors.values())
        assignment = PolicyAssignment.objects.filter(group=group, rule_key=key).first()
    return render(request, "governance/partials/_matrix_cell.html",
                  {"cell": _matrix_cell(group, rule, assignment, error=error)}, status=200)


def _enforce_question(request, form, *, group, rule_key: str, current_mode: str | None) -> dict | None:
    """Switching to enforce from the form: first what already violates it (like the matrix), unless confirmed.
    None when no question is due; the refusal, if any, is put on the form by the caller's save."""
    data = form.cleaned_data
    if data["mode"] != Mode.ENFORCE or current_mode == Mode.ENFORCE or request.POST.get("confirmed"):
        return None
    try:
        services.check_assignment(rule_key=rule_key, mode=Mode.ENFORCE, user=request.user, params=form.params(),
                                  excluded_namespaces=data["excluded_namespaces"])
    except services.PolicyError:
        return None  # the save refuses it with the reason
    probe = PolicyAssignment(group=group, rule_key=rule_key, mode=Mode.ENFORCE,
                             params=rules.get(rule_key).clean_params(form.params()),
                             excluded_namespaces=data["excluded_namespaces"])
    return evaluation.preview(probe, list(group.members()))


@role_required(OPERATOR)
def assignment_create(request) -> HttpResponseBase:
    key = request.POST.get("rule") or request.GET.get("rule", "")
    if key not in rules.REGISTRY:
        return render(request, "governance/assignment_pick.html",
                      {"rules": rules.catalog(), "group": request.GET.get("group", "")})
    rule = rules.get(key)
    initial = {"group": request.GET.get("group", ""), "mode": "audit",
               "excluded_namespaces": "\n".join(rules.DEFAULT_EXCLUDED_NAMESPACES),
               **{f"param_{p.name}": "\n".join(p.default) if p.kind == "list" else p.default  # type: ignore[arg-type]
                  for p in rule.params}}
    form = AssignmentForm(request.POST or None, rule=rule, initial=initial)
    if request.method == "POST" and form.is_valid():
        question = _enforce_question(request, form, group=form.cleaned_data["group"], rule_key=key, current_mode=None)
        if question is not None:
            return render(request, "governance/assignment_form.html", {"form": form, "rule": rule,
                                                                        "confirm": question})
        try:
            assignment = services.create_assignment(
                group=form.cleaned_data["group"], rule_key=key, mode=form.cleaned_data["mode"], params=form.params(),
                excluded_namespaces=form.cleaned_data["excluded_namespaces"], user=request.user,
                source_ip=client_ip(request))
        except services.PolicyError as exc:
            _policy_error(form, exc)
        else:
            messages.success(request, f"{rule.title} assigned to {assignment.group.name}; evaluation is queued.")
            return redirect("governance:assignment_edit", assignment.pk)
    return render(request, "governance/assignment_form.html", {"form": form, "rule": rule},
                  status=400 if request.method == "POST" else 200)


@role_required(VIEWER)
def assignment_edit(request, pk: int) -> HttpResponseBase:
    """The assignment: parameters, mode, excluded namespaces, and enforcement per member cluster."""
    assignment = get_object_or_404(PolicyAssignment.objects.visible_to(request.user).select_related("group"), pk=pk)
    rule = assignment.rule
    can_edit = has_role(request.user, OPERATOR)
    form = AssignmentForm(request.POST if request.method == "POST" and can_edit else None, rule=rule,
                          assignment=assignment)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("Editing a policy needs the operator role.")
        question = (_enforce_question(request, form, group=assignment.group, rule_key=assignment.rule_key,
                                      current_mode=assignment.mode) if form.is_valid() else None)
        if question is not None:
            return render(request, "governance/assignment_form.html", {
                "form": form, "rule": rule, "assignment": assignment, "can_edit": can_edit, "confirm": question,
                "enforcements": assignment.enforcements.none(),
                "open_count": assignment.violations.filter(resolved_at__isnull=True).count()})
        if form.is_valid():
            try:
                services.update_assignment(assignment, mode=form.cleaned_data["mode"], params=form.params(),
                                           excluded_namespaces=form.cleaned_data["excluded_namespaces"],
                                           user=request.user, source_ip=client_ip(request))
            except services.PolicyError as exc:
                _policy_error(form, exc)
            else:
                messages.success(request, "Saved; the group's clusters are being re-evaluated.")
                return redirect("governance:assignment_edit", assignment.pk)
    enforcements = assignment.enforcements.select_related("cluster").order_by("cluster__name")
    open_count = assignment.violations.filter(resolved_at__isnull=True).count()
    return render(request, "governance/assignment_form.html", {
        "form": form, "rule": rule, "assignment": assignment, "enforcements": enforcements,
        "open_count": open_count, "can_edit": can_edit}, status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
@require_POST
def assignment_delete(request, pk: int) -> HttpResponseBase:
    assignment = get_object_or_404(PolicyAssignment.objects.select_related("group"), pk=pk)
    group = assignment.group
    try:
        services.delete_assignment(assignment, user=request.user, source_ip=client_ip(request))
    except services.PolicyError as exc:
        messages.error(request, "; ".join(exc.errors.values()))
        return redirect("governance:assignment_edit", pk)
    messages.success(request, f"{assignment.rule.title} removed from {group.name}.")
    return redirect(group)


# ---------------------------------------------------------------------------------------------
# Compliance and violations


@role_required(VIEWER)
def compliance_overview(request) -> HttpResponseBase:
    """Score of the fleet, each group and each cluster (worst first), with the fleet's trend."""
    groups = list(ClusterGroup.objects.visible_to(request.user))
    team = request.GET.get("team", "").strip()
    within = narrowed_scope(request.user, team) if team else None
    scores = compliance.group_scores(groups, user=request.user, within=within)
    group_rows = sorted(({"group": g, **scores[g.pk]} for g in groups),
                        key=lambda r: (r["score"] is None, r["score"] or 0, r["group"].name))
    clusters = (ClusterCompliance.objects.visible_to(request.user).select_related("cluster")
                .only("cluster__name", "score", "passed", "failed", "open_violations", "evaluated_at")
                .order_by(F("score").asc(nulls_last=True), "cluster__name"))
    if within is not None:
        clusters = clusters.filter(cluster_id__in=within)
    # The same rows, counted by the fleet's sums already.
    paginator: Paginator[ClusterCompliance] = Paginator(Counted(clusters, count=scores[None]["clusters"]), 50)
    page = paginator.get_page(request.GET.get("page"))
    # The trend is kept for the whole fleet: a team member's "fleet" (their scope) has no stored history.
    fleet_history = (compliance.history(GroupComplianceSnapshot.objects.filter(group=None), days=30)
                     if scope_query(request.user) is None and within is None else [])
    by_severity = scores[None]["by_severity"]  # from the latest evaluations: no scan of the violations table
    context = {"fleet": scores[None], "group_rows": group_rows, "page": page, "history": fleet_history,
               "by_severity": [(s, by_severity.get(s, 0)) for s in rules.SEVERITIES]}
    return htmx_partial(request, "governance/compliance.html", "governance/partials/_compliance_body.html", context)


def _violations(request):
    filterset = ViolationFilterSet(request.GET or None, request=request,
                                   queryset=Violation.objects.visible_to(request.user)
                                   .select_related("cluster__compliance", "assignment__group")
                .defer("cluster__compliance__results", "cluster__labels", "cluster__last_error"))
    return filterset, filtered(filterset).order_by("-id")  # newest first; the primary key keeps it cheap at any size


@role_required(VIEWER)
def violation_list(request) -> HttpResponseBase:
    filterset, queryset = _violations(request)
    page = Paginator(queryset, 100).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return htmx_partial(request, "governance/violation_list.html", "governance/partials/_violation_table.html",
                        {"filterset": filterset, "page": page, "query": query.urlencode(), "rules": rules.catalog()})


@role_required(VIEWER)
def violation_export(request) -> HttpResponseBase:
    """The filtered violations as CSV, streamed."""
    _, queryset = _violations(request)
    header = ["cluster", "group", "rule", "severity", "kind", "namespace", "name", "message", "state", "first_seen",
              "last_seen", "resolved_at", "times_reopened"]
    rows = ([v.cluster.name, v.assignment.group.name, v.rule_key, v.severity, v.object_kind, v.namespace,
             v.object_name, v.message, "open" if v.resolved_at is None else "resolved", v.first_seen.isoformat(),
             v.seen_until.isoformat(), v.resolved_at.isoformat() if v.resolved_at else "", v.times_reopened]
            for v in queryset.iterator(chunk_size=2000))
    return csv_response("fleetweb-violations.csv", header, rows)


# ---------------------------------------------------------------------------------------------
# Upgrade plan


def _upgrade_filter(request) -> UpgradePlanFilterSet:
    return UpgradePlanFilterSet(request.GET or None, queryset=Cluster.objects.visible_to(request.user),
                                request=request)


@role_required(VIEWER, teams=True)
def upgrade_plan(request) -> HttpResponseBase:
    """Every cluster's readiness for its next minor (or its groups' target), earliest end of support first."""
    filterset = _upgrade_filter(request)
    clusters = filtered(filterset)
    verdict = request.GET.get("verdict", "")
    # The verdict counts and the page's keys in one statement; `fleet` then reads that page's rows only (a page
    # number past the end is shown as the last page, whose keys the paginator asks for itself).
    rows = page_rows(request.GET.get("page"), 50)
    tally = upgrades.tally(clusters, verdict=verdict, keys=rows)
    paginator: Paginator[Cluster] = Paginator(KeysFirst(upgrades.fleet(clusters, verdict=verdict),
                                                        count=tally.count(verdict), keys=(rows, tally.keys)), 50)
    page = paginator.get_page(request.GET.get("page"))
    page.object_list = [upgrades.stored(c) for c in page.object_list]  # type: ignore[misc]  # shown, not queried
    # The group choices are the full page's; a team member's visible groups cost queries the partial would waste.
    groups = [] if is_partial(request) else ClusterGroup.objects.visible_to(request.user).values_list("name", flat=True)
    return htmx_partial(request, "governance/upgrade_plan.html", "governance/partials/_upgrade_table.html", {
        "page": page, "counts": tally.counts, "verdicts": upgrades.VERDICTS, "filters": request.GET,
        "filterset": filterset, "groups": groups, "environments": Environment.choices,
        "errors": filterset.errors if filterset.is_bound else {}})


@role_required(VIEWER, teams=True)
def upgrade_plan_export(request) -> HttpResponseBase:
    """The filtered Upgrade plan as CSV, one row per cluster with its blockers and how to fix them."""
    clusters = upgrades.fleet(filtered(_upgrade_filter(request)), verdict=request.GET.get("verdict", ""))
    rows = (upgrades.stored(c) for c in clusters.iterator(chunk_size=500))
    return csv_response("fleetweb-upgrade-plan.csv", upgrades.CSV_HEADER, upgrades.csv_rows(rows))
