"""Pages of rollouts: applications, revisions and diffs, rollouts with live progress, approvals, plans."""

from __future__ import annotations

import yaml
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.forms import BaseFormSet
from django.http import Http404, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import add_to_form
from foundation.exports import csv_response
from foundation.htmx import htmx_partial
from foundation.lists import filtered
from foundation.roles import OPERATOR, VIEWER
from foundation.web import client_ip
from inventory.choices import Environment
from inventory.group_views import preview_of, selector_preview
from inventory.models import Cluster, ClusterGroup
from inventory.people.access import can, team_scope
from rollouts import (
    approvals,
    corrections,
    dryrun,
    evidence,
    manifests,
    placement,
    plans,
    receipts,
    rendering,
    services,
    sourcing,
)
from rollouts.choices import ACTIVE_ROLLOUT_STATES, RolloutState
from rollouts.filtersets import RolloutFilterSet
from rollouts.forms import (
    ApplicationDeleteForm,
    ApplicationEditForm,
    ApplicationForm,
    CredentialForm,
    DecisionForm,
    OverrideForm,
    RevisionForm,
    RolloutForm,
    SourceForm,
    StageFormSet,
    builder_stages,
    stage_initial,
)
from rollouts.models import Application, Revision, Rollout, Source, SourceCredential, SourceTest, Stage
from rollouts.services import STAGE_DEFAULTS

DEFAULT_STAGES = """- name: canary
  selector: environment=dev
  health_deadline: 300
- name: staging
  selector: environment=staging
  max_parallel: 2
- name: production
  selector: environment=prod
  approvals_required: 1
  max_parallel: 2
  soak_time: 60
"""


def default_stages(user, app: Application) -> list[dict]:
    """The builder's first rows: the default stages that reach a cluster the application may go to and the user can
    see (a team whose clusters are dev and prod gets no staging row to delete); all of them when none does."""
    stages = yaml.safe_load(DEFAULT_STAGES)
    clusters = Cluster.objects.visible_to(user)
    if app.owner_team_id is not None:
        clusters = clusters.filter(pk__in=team_scope(app.owner_team_id))
    present = set(clusters.values_list("environment", flat=True).distinct())
    reachable = [s for s in stages if s["selector"].split("=", 1)[1] in present]
    return reachable or stages


def stages_field(path: str) -> str:
    """A stage's error (`stages[1].selector`) goes on the stages box; its message names the stage as people count."""
    return "stages" if path.startswith("stages") else path


# ---------------------------------------------------------------------------------------------
# Applications


@role_required(VIEWER)
def application_list(request) -> HttpResponseBase:
    apps = Application.objects.visible_to(request.user).select_related("owner_team").prefetch_related("revisions")
    latest = {}
    for app in apps:
        revisions = sorted(app.revisions.all(), key=lambda r: r.number)
        latest[app.pk] = revisions[-1] if revisions else None
    rows = [{"app": a, "latest": latest[a.pk]} for a in apps]
    return render(request, "rollouts/application_list.html", {"rows": rows})


@role_required(OPERATOR, teams=True)
def application_create(request) -> HttpResponseBase:
    form = ApplicationForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            app = services.create_application(name=d["name"], namespace=d["namespace"], owner=d["owner"],
                                              owner_team=d.get("owner_team"), approver_team=d.get("approver_team"),
                                              description=d["description"], manifests_text=d["manifests"],
                                              message=d["message"], user=request.user,
                                              source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"{app.name} created with revision 1; the member clusters and Fleetweb's "
                                      "policies are checking it now (below).")
            return redirect(app)
    return render(request, "rollouts/application_form.html", {"form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(VIEWER)
def application_detail(request, name: str) -> HttpResponseBase:
    """Revisions (with a diff between any two), overrides and the rollouts of one application."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    revisions = list(app.revisions.select_related("author").order_by("-number"))
    diff_text, old, new = "", None, None
    if len(revisions) > 1:
        by_number = {r.number: r for r in revisions}
        try:
            new = by_number.get(int(request.GET.get("to", revisions[0].number)))
            old = by_number.get(int(request.GET.get("from", new.number - 1 if new else 0)))
        except (TypeError, ValueError):
            new = old = None
        if old and new:
            diff_text = manifests.diff(old.manifests, new.manifests, old_label=f"r{old.number}",
                                       new_label=f"r{new.number}")
    for revision in revisions:
        revision.checked = dryrun.for_user(revision.validation, request.user)  # type: ignore[attr-defined]
    rollouts = app.rollouts.select_related("revision", "requested_by").order_by("-created_at")[:20]
    return render(request, "rollouts/application_detail.html", {
        "app": app, "revisions": revisions, "diff": diff_text, "old": old, "new": new, "rollouts": rollouts,
        "overrides": app.overrides.select_related("group"), "placements": placement.where_it_runs(app),
        "drifts": corrections.of_application(app),
        "source": Source.objects.filter(application=app).select_related("credential", "plan").first()})


@role_required(VIEWER)
def revision_check(request, name: str, number: int) -> HttpResponseBase:
    """HTMX partial: one revision's check, polled while a worker is still asking the members."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    revision = get_object_or_404(app.revisions, number=number)
    return render(request, "rollouts/partials/_revision_check.html",
                  {"app": app, "r": revision, "v": dryrun.for_user(revision.validation, request.user)})


DRIFT_ACTIONS = ("check", "reapply")


@role_required(OPERATOR, teams=True)
@require_POST
def drift_action(request, name: str, cluster: str, action: str) -> HttpResponseBase:
    """Check now, or Re-apply the deployed revision, for one cluster of an application; HTMX swaps the section."""
    if action not in DRIFT_ACTIONS:
        raise Http404
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    target = get_object_or_404(Cluster.objects.visible_to(request.user), name=cluster)
    level, text = "success", ""
    try:
        if action == "check":
            corrections.request_drift_check(app, target, user=request.user)
            text = f"Drift check of {target.name} queued."
        else:
            corrections.request_reapply(corrections.deployment_of(app, target), user=request.user, via="page",
                                     source_ip=client_ip(request))
            text = f"Re-apply of {app.name} on {target.name} queued: it applies the deployed revision as deployed."
    except services.RolloutError as exc:
        level, text = "error", exc.message
    if not request.htmx:
        getattr(messages, level)(request, text)
        return redirect(app.get_absolute_url() + "#drift")
    return render(request, "rollouts/partials/_drift_section.html", {
        "app": app, "drifts": corrections.of_application(app),
        "may_change": can(request.user, "change_application", app),
        "drift_message": text, "drift_message_level": level})


@role_required(OPERATOR, teams=True)
def application_edit(request, name: str) -> HttpResponseBase:
    """Owner and description; manifests change through a new revision, name and namespace never."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    form = ApplicationEditForm(request.POST or None, user=request.user, instance=app, initial={
        "owner": app.owner, "description": app.description, "owner_team": app.owner_team,
        "approver_team": app.approver_team, "correct_drift": app.correct_drift,
        "drift_ignore": "\n".join(app.drift_ignore), "approval_ttl": app.approval_ttl})
    if request.method == "POST" and form.is_valid():
        try:
            changes = {k: v for k, v in form.cleaned_data.items()
                       if k in ("owner", "description") or v != getattr(app, k)}  # teams, drift: when changed
            services.update_application(app, user=request.user, source_ip=client_ip(request), **changes)
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"{app.name} saved.")
            return redirect(app)
    return render(request, "rollouts/application_edit.html", {"app": app, "form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
def application_delete(request, name: str) -> HttpResponseBase:
    """Delete with its revisions and rollouts (refused while a rollout is active); the clusters keep their objects."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    form = ApplicationDeleteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if form.cleaned_data["confirm_name"] != app.name:
            form.add_error("confirm_name", f"Type '{app.name}' exactly to delete it.")
        else:
            try:
                services.delete_application(app, user=request.user, source_ip=client_ip(request))
            except services.RolloutError as exc:
                add_to_form(form, exc)
            else:
                messages.success(request, f"{app.name} deleted; the clusters keep the objects it rolled out.")
                return redirect("rollouts:application_list")
    return render(request, "rollouts/application_delete.html", {"app": app, "form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
def override_edit(request, name: str) -> HttpResponseBase:
    """Set, change or (all empty) remove the per-group patch of an application; pending approvals it touches
    are voided by the service."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    existing = app.overrides.select_related("group").filter(group__name=request.GET.get("group", "")).first()
    initial = {}
    if existing:
        initial = {"group": existing.group.name, "replicas": existing.replicas,
                   "image_tags": "\n".join(f"{k}={v}" for k, v in existing.image_tags.items()),
                   "labels": "\n".join(f"{k}={v}" for k, v in existing.labels.items()),
                   "values": existing.values}
    sourced = Source.objects.filter(application=app).exists()
    form = OverrideForm(request.POST or None, initial=initial, user=request.user, sourced=sourced)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            services.set_override(app, group=d["group"], user=request.user, replicas=d["replicas"],
                                  image_tags=d["image_tags"], labels=d["labels"], values=d.get("values"),
                                  source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Override of {app.name} for group {d['group'].name} saved.")
            return redirect(app)
    return render(request, "rollouts/override_form.html", {"app": app, "form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
def source_edit(request, name: str) -> HttpResponseBase:
    """Read the application's revisions from a Git repository, a chart repository or an OCI registry; a worker checks
    it at once (`rollouts.sourcing`)."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    existing = Source.objects.filter(application=app).select_related("credential", "plan").first()
    initial = {field: getattr(existing, field) for field in sourcing.SOURCE_FIELDS} if existing else {}
    if existing and existing.credential:
        initial["credential"] = existing.credential.name
    if existing and existing.plan:
        initial["plan"] = existing.plan.name
    form = SourceForm(request.POST or None, initial=initial, user=request.user)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            source = sourcing.set_source(app, user=request.user, source_ip=client_ip(request), **_source_fields(d),
                                         poll_interval=d["poll_interval"], plan=d["plan"])
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"{app.name} now reads its revisions from {source.url}; a worker is checking "
                                      "it now (below).")
            return redirect(app)
    return render(request, "rollouts/source_form.html", {"app": app, "form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
def credential_list(request) -> HttpResponseBase:
    """Source credentials the user may use, with each deploy key's public half (to add to the repository) and pinned
    host key; a form to store another (`sourcing.create_credential`: the same checks as the API)."""
    form = CredentialForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        ssh = d["kind"] == SourceCredential.Kind.SSH
        try:
            created = sourcing.create_credential(user=request.user, name=d["name"], owner_team=d["owner_team"],
                                                 kind=d["kind"], username=d["username"], secret=d["secret"],
                                                 host_key=d["host_key"], generate=ssh and not d["secret"].strip(),
                                                 source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Credentials {created.name} stored." + (
                " Add the deploy key below to the repository (read-only is enough)." if ssh else ""))
            form = CredentialForm(user=request.user)
    credentials = SourceCredential.objects.visible_to(request.user).select_related("owner_team").order_by("name")
    return render(request, "rollouts/credentials.html", {"form": form, "credentials": credentials,
                                                         "created": created},
                  status=400 if request.method == "POST" and created is None else 200)


@role_required(OPERATOR, teams=True)
@require_POST
def credential_delete(request, name: str) -> HttpResponseBase:
    credential = get_object_or_404(SourceCredential.objects.visible_to(request.user), name=name)
    try:
        sourcing.delete_credential(credential=credential, user=request.user, source_ip=client_ip(request))
    except services.RolloutError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Credentials {name} deleted.")
    return redirect("rollouts:credential_list")


def _source_fields(d: dict) -> dict:
    """Where the source form says to read from (what saving and testing it share)."""
    return {field: d[field] for field in ("kind", "url", "ref", "path", "chart", "version", "values", "credential")}


@role_required(OPERATOR, teams=True)
@require_POST
def source_test(request, name: str) -> HttpResponseBase:
    """"Test source": what the form holds, fetched and rendered by a worker without saving it; the answer is the
    test's panel, which polls until the worker is done (htmx), or the form with it."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    form = SourceForm(request.POST, user=request.user)
    test = None
    if form.is_valid():
        d = form.cleaned_data
        try:
            test = sourcing.request_test(app, user=request.user, source_ip=client_ip(request), **_source_fields(d))
        except services.RolloutError as exc:
            add_to_form(form, exc)
    context = {"app": app, "form": form, "test": test, "tested": True}
    if request.htmx:
        return render(request, "rollouts/partials/_source_test.html", context)
    return render(request, "rollouts/source_form.html", context, status=202 if test else 400)


@role_required(OPERATOR, teams=True)
def source_test_status(request, name: str, test_id: str) -> HttpResponseBase:
    """The panel of one's own source test (polled while the worker runs it)."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    test = get_object_or_404(SourceTest.objects.filter(application=app, requested_by=request.user), pk=test_id)
    return render(request, "rollouts/partials/_source_test.html", {"app": app, "test": test})


@role_required(OPERATOR, teams=True)
@require_POST
def source_check(request, name: str) -> HttpResponseBase:
    """Check now: queued for a worker; what it finds shows on the page (the source's last check, a new revision)."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    source = get_object_or_404(Source, application=app)
    try:
        sourcing.request_check(source, user=request.user)
    except services.RolloutError as exc:
        messages.error(request, str(exc))
        return redirect(app)
    messages.success(request, f"Checking {source.url} now.")
    return redirect(app)


@role_required(OPERATOR, teams=True)
def revision_create(request, name: str) -> HttpResponseBase:
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    latest = app.latest_revision
    form = RevisionForm(request.POST or None, initial={"manifests": latest.manifests if latest else ""})
    if request.method == "POST" and form.is_valid():
        try:
            revision = services.create_revision(app, manifests_text=form.cleaned_data["manifests"],
                                                message=form.cleaned_data["message"], user=request.user,
                                                source_ip=client_ip(request))
        except services.RolloutError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Revision {revision.number} of {app.name} saved; the member clusters and "
                                      "Fleetweb's policies are checking it now (below).")
            return redirect(f"{app.get_absolute_url()}?to={revision.number}")
    return render(request, "rollouts/revision_form.html", {"app": app, "form": form},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
def rollout_create(request, name: str) -> HttpResponseBase:
    """Start a rollout with stages from the stage builder (the default), a saved plan, or YAML."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    post = request.POST if request.method == "POST" else None
    form = RolloutForm(post, application=app, initial={"stages": DEFAULT_STAGES, "source": "builder"})
    # Bound without initial: a submitted stage equal to a default one must still count as a stage.
    user_kwargs = {"user": request.user}
    builder = (StageFormSet(post, prefix="stage", form_kwargs=user_kwargs) if post is not None
               else StageFormSet(prefix="stage", initial=stage_initial(default_stages(request.user, app)),
                                 form_kwargs=user_kwargs))
    if post is not None and post.get("builder_action") == "add":
        builder = _with_one_more_stage(post, request.user)
        return render(request, "rollouts/rollout_form.html", {"app": app, "form": form, "builder": builder})
    if post is not None and form.is_valid():
        d = form.cleaned_data
        source = d["source"]
        stages = d["stages"] if source == "yaml" else None
        if source == "builder":
            stages = builder_stages(builder) if builder.is_valid() else None
        if source != "builder" or stages is not None:
            try:
                plan = d["plan"] if source == "plan" else None
                if source == "builder" and d["save_as_plan"]:
                    plan = plans.create_plan(name=d["save_as_plan"], stages=stages, user=request.user,
                                                source_ip=client_ip(request))
                rollout = services.create_rollout(revision=d["revision"], plan=plan, stages=stages,
                                                  user=request.user, source_ip=client_ip(request))
            except services.RolloutError as exc:
                if source == "builder":
                    _errors_to_builder(builder, form, exc)
                else:
                    add_to_form(form, exc, field_name=stages_field)
            else:
                messages.success(request, f"Rollout of {app.name} r{rollout.revision.number} started.")
                return redirect(rollout)
    return render(request, "rollouts/rollout_form.html", {"app": app, "form": form, "builder": builder},
                  status=400 if request.method == "POST" else 200)


def _with_one_more_stage(post, user) -> BaseFormSet:
    """The builder as submitted plus one empty stage at the end (the "Add a stage" button, no JavaScript)."""
    data = post.copy()
    total = int(data.get("stage-TOTAL_FORMS", "0") or 0)
    data["stage-TOTAL_FORMS"] = str(total + 1)
    data[f"stage-{total}-ORDER"] = str(total + 1)
    for field, value in STAGE_DEFAULTS.items():
        data[f"stage-{total}-{field}"] = str(value)
    return StageFormSet(data, prefix="stage", form_kwargs={"user": user})


def _errors_to_builder(builder, form, exc: services.RolloutError) -> None:
    """A refusal of `stages[i].field` goes on that stage's field in the builder; others on top of the form."""
    kept = list(builder.ordered_forms)
    for path, message in exc.errors.items():
        if path.startswith("stages[") and "]" in path:
            index, _, field = path[len("stages["):].partition("]")
            field = field.lstrip(".")
            if index.isdigit() and int(index) < len(kept):
                target = kept[int(index)]
                target.add_error(field if field in target.fields else None, message)
                continue
        form.add_error(None, message)


@role_required(VIEWER)
def stage_preview(request) -> HttpResponseBase:
    """HTMX: which clusters a builder stage reaches now (its group or selector), and whether the prod rule applies.
    Reads the first `*-group` / `*-selector` parameter, so every builder row can send its own fields."""
    group_name = next((v for k, v in request.GET.items() if k.endswith("group") and v), "")
    selector = next((v for k, v in request.GET.items() if k.endswith("selector")), "")
    if group_name:
        group = ClusterGroup.objects.visible_to(request.user).filter(name=group_name).first()
        members = group.members() if group else Cluster.objects.none()
        context = {**preview_of(members, user=request.user), "source": f"group {group_name}"}
    else:
        context = {**selector_preview(selector, user=request.user),
                   "source": f"selector '{selector}'" if selector else ""}
    # Over every match, not only the ones listed: the prod rule applies if any of them is prod.
    matched = context.get("queryset")
    context["prod"] = (list(matched.filter(environment=Environment.PROD).values_list("name", flat=True)[:5])
                       if matched is not None else [])
    context.update(_revision_findings(request, matched))
    return render(request, "rollouts/partials/_stage_preview.html", context)


def _revision_findings(request, matched) -> dict:
    """What the chosen revision's check found on the stage's clusters: {"checking": bool, "refusals": [words]}."""
    wanted = request.GET.get("revision", "")
    revision = Revision.objects.visible_to(request.user).filter(pk=wanted).first() if wanted.isdigit() else None
    if revision is None or matched is None:
        return {}
    validation = dryrun.for_user(revision.validation, request.user)
    if validation.get("state") == dryrun.CHECKING:
        return {"checking": revision.number}
    enforced = [p for p in validation.get("policies", []) if p.get("enforced")]
    here = set(matched.filter(name__in={p["cluster"] for p in enforced}).values_list("name", flat=True))
    return {"refusals": [p["words"] for p in enforced if p["cluster"] in here]}


# ---------------------------------------------------------------------------------------------
# Rollouts


@role_required(VIEWER)
def rollout_list(request) -> HttpResponseBase:
    queryset = Rollout.objects.visible_to(request.user).select_related("application", "revision", "requested_by")
    state = request.GET.get("state", "")
    filterset = RolloutFilterSet(request.GET or None, queryset=queryset, request=request)
    page = Paginator(filtered(filterset).order_by("-created_at"), 50).get_page(request.GET.get("page"))
    return htmx_partial(request, "rollouts/rollout_list.html", "rollouts/partials/_rollout_table.html",
                        {"page": page, "rows": page.object_list, "state": state, "states": RolloutState.choices})


def _rollout_context(request, rollout: Rollout) -> dict:
    stages = list(rollout.stages.select_related("group").prefetch_related("targets__cluster",
                                                                          "targets__applied_revision",
                                                                          "approvals__user").order_by("index"))
    user = request.user
    decidable = {}
    for stage in stages:
        if stage.state == "awaiting_approval":
            try:
                approvals.check_can_decide(stage, user)
            except services.RolloutError as exc:
                decidable[stage.pk] = exc.message
            else:
                decidable[stage.pk] = ""
            stage.valid_count = len(approvals.valid_approvals(stage))  # type: ignore[attr-defined]
            stage.rollout = rollout
            stage.changes = evidence.stage_changes(stage)  # type: ignore[attr-defined]
            stage.drift = evidence.live_drift(stage)  # type: ignore[attr-defined]
            stage.findings = evidence.stage_findings(stage)  # type: ignore[attr-defined]
            stage.earlier = evidence.earlier_stages(rollout, stage)  # type: ignore[attr-defined]
            lasts, why = approvals.approval_ttl(stage)
            stage.approval_lasts, stage.approval_lasts_why = approvals.duration(lasts), why  # type: ignore[attr-defined]
        for approval in stage.approvals.all():
            approval.conditions_words = approvals.describe_conditions(approval.conditions)  # type: ignore[attr-defined]
        # What the template shows of each stage, set on it (not model fields).
        stage.can_decide = decidable.get(stage.pk) == ""  # type: ignore[attr-defined]
        stage.refusal = decidable.get(stage.pk, "")  # type: ignore[attr-defined]
        stage.cluster_names = [t.cluster.name for t in stage.targets.all()]  # type: ignore[attr-defined]
        stage.digest = rendering.stage_digest(stage)  # type: ignore[attr-defined]
    # Roll back is offered only where this revision reached a cluster (the service refuses it elsewhere).
    applied = any(t.applied_revision_id == rollout.revision_id for s in stages for t in s.targets.all())
    return {"rollout": rollout, "stages": stages, "active": rollout.state in (*ACTIVE_ROLLOUT_STATES,
                                                                              RolloutState.PAUSED),
            "form": DecisionForm(), "can_roll_back": applied}


@role_required(VIEWER)
def rollout_detail(request, pk: int) -> HttpResponseBase:
    """Stage timeline, per-cluster status and approvals; the body refreshes itself while the rollout runs."""
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user).select_related(
        "application", "revision", "requested_by"), pk=pk)
    return htmx_partial(request, "rollouts/rollout_detail.html", "rollouts/partials/_rollout_body.html",
                        _rollout_context(request, rollout))


def _decide(request, pk: int, index: int, fn, verb: str):
    rollout: Rollout = get_object_or_404(Rollout.objects.visible_to(request.user).select_related(
        "application", "revision"), pk=pk)
    stage = get_object_or_404(Stage, rollout=rollout, index=index)
    form = DecisionForm(request.POST)
    valid = form.is_valid()
    comment = form.cleaned_data["comment"] if valid else ""
    seen = form.cleaned_data["stage_digest"] if valid else ""
    extra = {"conditions": form.conditions() if valid else {}} if fn is approvals.approve_stage else {}
    try:
        fn(stage, user=request.user, comment=comment, seen_digest=seen, source_ip=client_ip(request), **extra)
    except services.RolloutError as exc:
        reason = exc.message
        if exc.status == 403:
            raise PermissionDenied(reason) from None
        if fn is approvals.reject_stage and "comment" in exc.errors:
            # Said in the dialog, which stays open, not in a banner above a closed one.
            context = {**_rollout_context(request, rollout), "reject_error": exc.errors["comment"],
                       "reject_index": stage.index}
            return render(request, "rollouts/rollout_detail.html", context, status=400)
        messages.error(request, reason)
        return redirect(rollout)
    messages.success(request, f"You {verb} stage '{stage.name}' of {rollout.application.name} "
                              f"r{rollout.revision.number}.")
    return redirect(rollout)


@role_required(VIEWER)
@require_POST
def stage_approve(request, pk: int, index: int) -> HttpResponseBase:
    return _decide(request, pk, index, approvals.approve_stage, "approved")


@role_required(VIEWER)
@require_POST
def stage_reject(request, pk: int, index: int) -> HttpResponseBase:
    return _decide(request, pk, index, approvals.reject_stage, "rejected")


ACTIONS = {"pause": services.pause_rollout, "resume": services.resume_rollout, "abort": services.abort_rollout,
           "rollback": services.rollback_rollout}


@role_required(OPERATOR, teams=True)
@require_POST
def rollout_action(request, pk: int, action: str) -> HttpResponseBase:
    if action not in ACTIONS:
        raise Http404
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user), pk=pk)
    try:
        rollout = ACTIONS[action](rollout, user=request.user, source_ip=client_ip(request))
    except services.RolloutError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Rollout #{rollout.pk} is {rollout.get_state_display()}.")
    return redirect(rollout)


@role_required(VIEWER)
def my_approvals(request) -> HttpResponseBase:
    """Stages awaiting an approval this user may give."""
    stages = list(approvals.pending_approvals_for(request.user).prefetch_related("targets__cluster"))
    return render(request, "rollouts/my_approvals.html", {"stages": stages})


@role_required(VIEWER)
def revision_raw(request, name: str, number: int) -> HttpResponseBase:
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    revision = get_object_or_404(app.revisions, number=number)
    group = request.GET.get("group")
    if group is None:
        return HttpResponse(revision.manifests, content_type="text/plain; charset=utf-8")
    variant = next((v for v in (revision.variants or {}).values() if v["group"] == group), None)
    if variant is None:
        raise Http404(f"r{revision.number} has no rendering of its own for group '{group[:63]}'.")
    return HttpResponse(variant["manifests"], content_type="text/plain; charset=utf-8")


@role_required(OPERATOR, teams=True)
@require_POST
def source_webhook_issue(request, name: str) -> HttpResponseBase:
    """A new push webhook address and secret, on a page of their own, shown this once."""
    app = get_object_or_404(Application.objects.visible_to(request.user), name=name)
    try:
        path, secret = sourcing.issue_webhook(app, user=request.user, source_ip=client_ip(request))
    except services.RolloutError as exc:
        messages.error(request, str(exc))
        return redirect(app)
    response = render(request, "rollouts/source_webhook.html",
                      {"app": app, "url": request.build_absolute_uri(path), "secret": secret})
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
def source_webhook(request, hook_id: str) -> HttpResponseBase:
    """A Git host's push webhook (GitHub, GitLab, Gitea): no login, the signature is the credential
    (`rollouts.sourcing.receive_webhook`); the body is read only up to its cap."""
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > sourcing.WEBHOOK_MAX_BYTES:
        return JsonResponse({"detail": "The payload is too large or has no length."}, status=413)
    headers = {key.lower(): value for key, value in request.headers.items()}
    try:
        queued = sourcing.receive_webhook(hook_id, headers=headers, body=request.read(int(length)))
    except sourcing.WebhookRefused as exc:
        return JsonResponse({"detail": str(exc)}, status=exc.status)
    return JsonResponse({"queued": queued}, status=202)


@role_required(VIEWER, teams=True)
def rollout_receipt(request, pk: int) -> HttpResponseBase:
    """The rollout's receipt: per cluster what was sent, approved and read back, health, when, who approved."""
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user).select_related(
        "application", "revision", "requested_by"), pk=pk)
    return render(request, "rollouts/receipt.html", {"rollout": rollout, "receipt": receipts.receipt(rollout),
                                                      "key_id": receipts.key_id(receipts.public_key())})


@role_required(VIEWER, teams=True)
def rollout_receipt_csv(request, pk: int) -> HttpResponseBase:
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user), pk=pk)
    return csv_response(f"fleetweb-rollout-{rollout.pk}-receipt.csv", receipts.CSV_HEADER,
                        receipts.csv_rows(receipts.receipt(rollout)))


@role_required(VIEWER, teams=True)
def rollout_receipt_json(request, pk: int) -> HttpResponseBase:
    """The receipt signed with Fleetweb's receipt key, as a file to keep."""
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user), pk=pk)
    response = JsonResponse(receipts.sign(receipts.receipt(rollout)), json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="fleetweb-rollout-{rollout.pk}-receipt.json"'
    return response
