"""Pages of the inventory app. Views check input and roles; services act."""

from __future__ import annotations

from typing import cast

from django.apps import apps
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import models
from django.db.models import QuerySet
from django.http import HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import select_template
from django.urls import reverse
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.exports import csv_response
from foundation.htmx import htmx_partial
from foundation.lists import filtered, filtered_page
from foundation.roles import ADMIN, OPERATOR, VIEWER, has_role
from foundation.web import client_ip
from inventory import access, extensions, kinds, kubeconfigs, onboarding, pools, services
from inventory.addons import ADDONS
from inventory.choices import AuthMethod, Environment, Provider
from inventory.filtersets import ClusterFilterSet, NodePoolFilterSet, WorkloadFilterSet
from inventory.forms import ClusterEditForm, ClusterMetadataForm, KubeconfigForm, TokenCredentialsForm
from inventory.models import Cluster, ClusterAddon, ClusterEvent, Namespace, Node, ProblemPod, SyncRun, Workload

PAGE_SIZE = 50
# The cluster page's inventory tabs: tab -> (model, ordering); each has `inventory/partials/_tab_<tab>.html`.
INVENTORY_TABS: dict[str, tuple[type[models.Model], tuple[str, ...]]] = {
    "nodes": (Node, ("name",)),
    "namespaces": (Namespace, ("name",)),
    "workloads": (Workload, ("namespace", "kind", "name")),
    "problems": (ProblemPod, ("namespace", "name")),
}
BASE_TABS = ("summary", "nodes", "pools", "namespaces", "workloads", "problems")


def inventory_tabs() -> dict[str, tuple[type[models.Model], tuple[str, ...]]]:
    """Tab -> (model, ordering) of every tab listing stored rows: the built-in ones, and each kind with a model of
    its own from the kind table."""
    return {**INVENTORY_TABS, **{k.tab: (apps.get_model("inventory", k.stored_as), k.ordering)
                                 for k in kinds.stored() if k.tab}}


def tabs() -> tuple[str, ...]:
    """The cluster page's tabs: inventory's own, the collected kinds' with a model of their own, those other apps
    registered (inventory.extensions), history and syncs."""
    own = tuple(t for t in inventory_tabs() if t not in BASE_TABS)
    return (*BASE_TABS, *own, *extensions.cluster_tabs, "history", "syncs")


def tab_template(tab: str) -> str:
    """The tab's own template, or for a collected kind without one a plain table of its model's columns."""
    return select_template([f"inventory/partials/_tab_{tab}.html", "inventory/partials/_tab_rows.html"]).template.name


def _cluster_filter(request) -> ClusterFilterSet:
    return ClusterFilterSet(request.GET or None, queryset=Cluster.objects.visible_to(request.user), request=request)


@role_required(VIEWER)
def cluster_list(request) -> HttpResponseBase:
    """Clusters with search, filters, sorting and pagination; HTMX swaps only the table."""
    context = filtered_page(request, _cluster_filter(request))  # ?ordering=, else by name
    return htmx_partial(request, "inventory/cluster_list.html", "inventory/partials/_cluster_table.html", context)


@role_required(VIEWER)
def cluster_export(request) -> HttpResponseBase:
    """CSV of the filtered cluster list."""
    queryset = filtered(_cluster_filter(request))
    columns = ["name", "environment", "region", "owner", "cost_center", "provider", "kubernetes_version", "status",
               "status_reason", "node_count", "ready_node_count", "workload_count", "pod_count", "problem_pod_count",
               "last_seen_at", "last_sync_at", "server"]
    rows = ([getattr(cluster, c) for c in columns] + [cluster.labels_text]
            for cluster in queryset.iterator(chunk_size=1000))
    return csv_response("fleetweb-clusters.csv", columns + ["labels"], rows)


@role_required(VIEWER, teams=True)
def node_pool_list(request) -> HttpResponseBase:
    """The fleet's node pools: kubelet versions by pool, with filters; HTMX swaps only the table."""
    nodes = NodePoolFilterSet(request.GET, queryset=Node.objects.visible_to(request.user), request=request).qs
    version = request.GET.get("kubelet_version", "").strip()
    page = Paginator(pools.pools(nodes, kubelet_version=version), 100).get_page(request.GET.get("page"))
    context = {"page": page, "rows": [pools.tidy(r) for r in page.object_list], "versions": pools.versions(nodes),
               "filters": request.GET, "environments": Environment.choices, "providers": Provider.choices}
    return htmx_partial(request, "inventory/node_pool_list.html", "inventory/partials/_node_pool_table.html", context)


@role_required(VIEWER, teams=True)
def addon_matrix(request) -> HttpResponseBase:
    """Add-on × cluster → version across the fleet (clusters filtered like the cluster list, 100 a page)."""
    clusters = _cluster_filter(request).qs.order_by("name")
    page = Paginator(clusters.only("pk", "name", "environment", "kubernetes_version"), 100).get_page(
        request.GET.get("page"))
    present = set(ClusterAddon.objects.filter(cluster__in=clusters).order_by().values_list("addon", flat=True)
                  .distinct())
    columns = [a for a in ADDONS if a.key in present]
    cells: dict[int, dict[str, set[str]]] = {}
    for cluster_id, addon, version in ClusterAddon.objects.filter(
            cluster__in=[c.pk for c in page.object_list]).values_list("cluster_id", "addon", "version"):
        cells.setdefault(cluster_id, {}).setdefault(addon, set()).add(version)
    rows = [{"cluster": c, "cells": [sorted(cells.get(c.pk, {}).get(a.key, ())) for a in columns]}
            for c in page.object_list]
    return htmx_partial(request, "inventory/addon_matrix.html", "inventory/partials/_addon_matrix.html", {
        "page": page, "rows": rows, "columns": columns, "filters": request.GET, "environments": Environment.choices})


def _workload_filter(request) -> WorkloadFilterSet:
    visible = Workload.objects.visible_to(request.user).select_related("cluster").order_by(
        "cluster__name", "namespace", "kind", "name")
    return WorkloadFilterSet(request.GET or None, queryset=visible, request=request)


@role_required(VIEWER)
def workload_list(request) -> HttpResponseBase:
    """Fleet-wide workload search over the stored inventory (name, namespace, image, label, cluster, kind)."""
    context = filtered_page(request, _workload_filter(request))
    return htmx_partial(request, "inventory/workload_list.html", "inventory/partials/_workload_table.html", context)


@role_required(VIEWER)
def workload_export(request) -> HttpResponseBase:
    """CSV of the filtered fleet-wide workload search."""
    queryset = filtered(_workload_filter(request))
    columns = ["cluster", "namespace", "kind", "name", "replicas_desired", "replicas_available", "restarts",
               "pods_crashlooping", "available", "images"]
    rows = ([w.cluster.name, w.namespace, w.kind, w.name, w.replicas_desired, w.replicas_available, w.restarts,
             w.pods_crashlooping, w.is_available, " ".join(w.images)] for w in queryset.iterator(chunk_size=1000))
    return csv_response("fleetweb-workloads.csv", columns, rows)


def _tab_context(cluster: Cluster, tab: str, request) -> dict:
    page_number = request.GET.get("page")
    rows: QuerySet
    if tab in (stored := inventory_tabs()):
        model, ordering = stored[tab]
        rows = model._default_manager.filter(cluster=cluster).order_by(*ordering)
    elif tab == "syncs":
        rows = SyncRun.objects.filter(cluster=cluster).order_by("-started_at")
    elif tab == "pools":
        return {"pools": [pools.tidy(r) for r in pools.pools(Node.objects.filter(cluster=cluster))]}
    elif tab == "history":
        rows = ClusterEvent.objects.filter(cluster=cluster).order_by("-at", "-pk")
    elif tab in extensions.cluster_tabs:
        return extensions.cluster_tabs[tab](cluster, page_number, request.user)
    else:
        return {"latest_run": SyncRun.objects.filter(cluster=cluster).order_by("-started_at").first()}
    page = Paginator(rows, PAGE_SIZE).get_page(page_number)
    if tab == "namespaces":  # who holds each namespace (an app above says; two queries for the page)
        namespaces = cast(list[Namespace], list(page.object_list))
        held = extensions.namespace_holders(cluster, [ns.name for ns in namespaces])
        for ns in namespaces:
            ns.held_by = held.get(ns.name, "")  # type: ignore[attr-defined]  # shown in the tab only
        page.object_list = namespaces
    if tab not in INVENTORY_TABS:  # a collected kind's rows: the plain table shows its model's own columns
        columns = [f.name for f in page.object_list.model._meta.concrete_fields  # type: ignore[attr-defined]
                   if f.name not in ("id", "cluster", "uid", "fingerprint", "labels")]
        return {"page": page, "columns": columns,
                "cells": [[getattr(row, c) for c in columns] for row in page.object_list]}
    return {"page": page}


@role_required(VIEWER)
def cluster_detail(request, name: str) -> HttpResponseBase:
    """Summary and tabs (nodes, namespaces, workloads, problem pods, sync history)."""
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    tab = request.GET.get("tab", "summary")
    if tab not in tabs():
        tab = "summary"
    context = {"cluster": cluster, "tab": tab, "tabs": tabs(), "tab_template": tab_template(tab),
               **_tab_context(cluster, tab, request)}
    if request.htmx and request.htmx.target == "tab-content":
        return render(request, context["tab_template"], context)
    context["panels"] = [p for p in (panel(cluster, request.user) for panel in extensions.cluster_panels) if p]
    if request.htmx and request.htmx.target == "cluster-header":
        return render(request, "inventory/partials/_cluster_header.html", context)
    return render(request, "inventory/cluster_detail.html", context)


@role_required(OPERATOR, teams=True)
@require_POST
def cluster_sync(request, name: str) -> HttpResponseBase:
    """'Sync now': queue a sync; the header polls until it finishes."""
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    services.sync_now(cluster, user=request.user, via="page")
    if request.htmx:
        return render(request, "inventory/partials/_sync_button.html", {"cluster": cluster, "queued": True})
    messages.info(request, f"Sync of {cluster.name} queued.")
    return redirect(cluster)


@role_required(OPERATOR)
def cluster_edit(request, name: str) -> HttpResponseBase:
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    form = ClusterEditForm(request.POST or None, cluster=cluster)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        # Only admins see the TLS option; for anyone else the form's missing checkbox means "unchanged".
        insecure = data["insecure_skip_tls_verify"] if has_role(request.user, ADMIN) else None
        try:
            services.update_cluster(
                cluster, user=request.user, source_ip=client_ip(request), insecure=insecure,
                **{f: data[f] for f in ("environment", "region", "owner", "cost_center", "labels", "sync_interval")})
        except services.AttachError as exc:
            add_to_form(form, exc)
            return render(request, "inventory/cluster_edit.html", {"cluster": cluster, "form": form},
                          status=exc.status)
        else:
            messages.success(request, f"{cluster.name} updated.")
            return redirect(cluster)
    return render(request, "inventory/cluster_edit.html", {"cluster": cluster, "form": form})


@role_required(OPERATOR)
def cluster_credentials(request, name: str) -> HttpResponseBase:
    """Replace a cluster's credentials, tested first: the page's connection test (the attach wizard's, on a draft
    held encrypted) must have passed for exactly what is given, or 'Replace anyway' be ticked. Replacing goes
    through `services.update_cluster` like the API, audited and on the cluster's History."""
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    if cluster.auth_method == AuthMethod.AGENT:
        messages.error(request, f"{cluster.name} is reached through its agent, which holds no credentials of ours: "
                                "revoke the agent and register the cluster again to replace it.")
        return redirect(cluster)
    method, _meta, creds, draft = _wizard_forms(request)
    problem = ""
    if request.method == "POST" and creds.is_valid():
        draft = _hold(request, method, creds, draft)
        targets: list[tuple[str, dict]] = []
        if draft is not None:
            try:
                targets = _targets(method, creds)
            except kubeconfigs.KubeconfigError as exc:
                creds.add_error(None, str(exc))
        contexts = creds.cleaned_data.get("contexts", []) if method == "kubeconfig" else []
        if draft is not None and len(targets) != 1:
            creds.add_error(None, "Pick exactly one context: its credentials replace this cluster's.")
        elif targets:
            if not onboarding.test_passed(draft, contexts) and request.POST.get("replace_anyway") != "on":
                tested = bool(draft and draft.test_results)
                problem = (("The connection test did not pass for these credentials" if tested else
                            "Test the connection first: these credentials have not passed a test yet")
                           + ". Fix them, or tick 'Replace anyway' to store them regardless (the cluster then shows "
                           "why it cannot be reached).")
            else:
                try:
                    services.update_cluster(cluster, user=request.user, source_ip=client_ip(request),
                                            credentials=targets[0][1])
                except services.AttachError as exc:
                    problem = exc.message
                else:
                    onboarding.discard(draft)
                    messages.success(request, f"{cluster.name}'s credentials replaced; a sync is queued.")
                    return redirect(cluster)
    extra = {}
    if method == "kubeconfig" and hasattr(creds, "parsed"):
        extra = {"contexts": _context_choices(creds, chosen=creds.cleaned_data.get("contexts", []))}
    return render(request, "inventory/cluster_credentials.html",
                  {"cluster": cluster, "method": method, "creds": creds, "draft": draft, "problem": problem,
                   **extra}, status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
def cluster_detach(request, name: str) -> HttpResponseBase:
    """Confirm, then remove the cluster with its credentials and inventory."""
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    if request.method == "POST":
        if request.POST.get("confirm_name") != cluster.name:
            return render(request, "inventory/cluster_detach.html",
                          {"cluster": cluster, "error": "Type the cluster's name to confirm."}, status=400)
        services.detach_cluster(cluster, user=request.user, source_ip=client_ip(request))
        messages.success(request, f"{name} detached: its credentials and inventory are deleted.")
        return redirect("inventory:cluster_list")
    return render(request, "inventory/cluster_detach.html", {"cluster": cluster})


# ---------------------------------------------------------------------------------------------
# Onboarding wizard


def _wizard_forms(request):
    """(method, metadata form, credentials form, draft): the draft holds what an earlier submit gave, encrypted,
    so a rejected submit loses nothing without sending a secret back to the browser."""
    method = request.POST.get("method") or request.GET.get("method") or "kubeconfig"
    if method not in ("kubeconfig", "token"):
        method = "kubeconfig"
    data = request.POST if request.method == "POST" else None
    files = request.FILES if request.method == "POST" else None
    draft, held = None, None
    if data is not None and data.get("draft"):
        try:
            draft = onboarding.draft_of(request.user, data["draft"])
        except onboarding.DraftError:
            draft = None  # the form then asks for the credentials again
        if draft is not None and draft.method == method:
            held = draft.open()
    meta = ClusterMetadataForm(data, prefix="meta")
    if method == "kubeconfig":
        creds = KubeconfigForm(data, files, held=held)
    else:
        creds = TokenCredentialsForm(data, held=(held or {}).get("credentials"))
    return method, meta, creds, draft


def _hold(request, method: str, creds, draft):
    """Save what the valid credentials form holds into the user's draft (a new one when there is none); a refusal
    becomes the form's error and holds nothing."""
    try:
        return onboarding.save_draft(user=request.user, method=method, source=creds.source(), draft=draft)
    except ServiceError as exc:
        add_to_form(creds, exc)
        return None


def _wizard_context(method, meta, creds, draft=None, **extra) -> dict:
    return {"method": method, "meta": meta, "creds": creds, "draft": draft,
            "manifest": access.least_privilege_manifest(enforce=False, deploy=False),
            "commands": access.least_privilege_commands(), **extra}


@role_required(OPERATOR)
def cluster_attach_manifest(request) -> HttpResponseBase:
    """HTMX: the least-privilege manifest, read-only unless enforcement or deployment is chosen."""
    return render(request, "inventory/partials/_manifest.html", {
        "manifest": access.least_privilege_manifest(enforce=request.GET.get("enforce") == "on",
                                                    deploy=request.GET.get("deploy") == "on")})


def _targets(method: str, creds) -> list[tuple[str, dict]]:
    """[(suggested name, credentials)] for the chosen contexts, or the one token/cert target."""
    if method == "token":
        return [("", creds.credentials())]
    return [(context, credentials) for context, credentials in creds.selected()]


@role_required(OPERATOR)
def cluster_attach(request) -> HttpResponseBase:
    """Attach by kubeconfig (one or more contexts) or by API URL + CA + token/client certificate."""
    method, meta, creds, draft = _wizard_forms(request)
    if request.method == "POST":
        meta_ok, creds_ok = meta.is_valid(), creds.is_valid()
        if creds_ok:
            draft = _hold(request, method, creds, draft)
            creds_ok = draft is not None
        if meta_ok and creds_ok:
            try:
                targets = _targets(method, creds)
            except kubeconfigs.KubeconfigError as exc:
                creds.add_error(None, str(exc))
                targets = []
            if method == "kubeconfig" and creds.is_valid() and not creds.cleaned_data["contexts"]:
                creds.add_error("contexts", "Pick at least one context to attach.")
                targets = []
            contexts = creds.cleaned_data.get("contexts", []) if method == "kubeconfig" else []
            if targets:
                attached = _attach_all(request, method, meta, targets,
                                       tested=onboarding.test_passed(draft, contexts), draft=draft)
                if attached:
                    onboarding.discard(draft)
                    names = ", ".join(c.name for c in attached)
                    messages.success(request, f"Attached {names}. The first sync is queued.")
                    return redirect(attached[0] if len(attached) == 1 else reverse("inventory:cluster_list"))
    extra = {}
    if method == "kubeconfig" and hasattr(creds, "parsed"):
        # Re-show the contexts the user picked, so a rejected submit loses nothing.
        extra = {"contexts": _context_choices(creds, chosen=creds.cleaned_data.get("contexts", [])), "form": creds}
    return render(request, "inventory/cluster_attach.html", _wizard_context(method, meta, creds, draft, **extra),
                  status=400 if request.method == "POST" else 200)


def _attach_all(request, method: str, meta: ClusterMetadataForm, targets: list[tuple[str, dict]], *,
                tested: bool, draft=None) -> list[Cluster]:
    """Attach every target or none (services.attach_many); the single target may carry the name field's name.
    Credentials that have not passed the page's connection test are attached only with 'Attach anyway' (after the
    names are found free, so a re-attach still says its name is taken first)."""
    data = meta.cleaned_data
    names = []
    for context, _credentials in targets:
        if len(targets) == 1 and data["name"]:
            names.append(data["name"])
        elif context:
            names.append(kubeconfigs.default_name(context))
        else:
            meta.add_error("name", "Give the cluster a name.")
            return []
    try:  # who may attach what first: a refusal of rights is said before "test it first"
        onboarding.require_exec_rights(request.user, targets)
    except ServiceError as exc:
        add_to_form(meta, exc)
        return []
    if not tested and not data["attach_anyway"] and not services.names_problem(names):
        meta.add_error("attach_anyway", (
            "The connection test did not pass for these credentials" if draft is not None and draft.test_results
            else "Test the connection first: nothing is attached before its credentials passed a test")
            + ". Fix them, or tick 'Attach anyway' to attach regardless (the cluster then shows why it cannot be "
            "reached).")
        return []
    try:
        return services.attach_many(
            [(name, credentials) for name, (_context, credentials) in zip(names, targets, strict=True)],
            user=request.user, environment=data["environment"], region=data["region"], owner=data["owner"],
            cost_center=data["cost_center"], labels=data["labels"], insecure=data["insecure_skip_tls_verify"],
            sync_interval=data["sync_interval"], allow_same_server=data["attach_anyway"],
            kube_system_uids=[r.get("kube_system_uid", "") for r in (draft.test_results if draft and tested else [])],
            source_ip=client_ip(request))
    except services.AttachError as exc:
        add_to_form(meta, exc)
        return []


@role_required(OPERATOR)
def cluster_attach_test(request) -> HttpResponseBase:
    """HTMX: queue a connection test of what the wizard holds (run by a worker, within one time budget); the
    answer polls `cluster_attach_test_result`. Nothing is attached."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    method, _meta, creds, draft = _wizard_forms(request)
    if not creds.is_valid():
        error = "; ".join(str(e) for errors in creds.errors.values() for e in errors)
        return render(request, "inventory/partials/_test_result.html", {"error": error, "draft": draft})
    draft = _hold(request, method, creds, draft)
    if draft is None:
        error = "; ".join(str(e) for errors in creds.errors.values() for e in errors)
        return render(request, "inventory/partials/_test_result.html", {"error": error}, status=403)
    contexts = creds.cleaned_data["contexts"] if method == "kubeconfig" else []
    if method == "kubeconfig" and not contexts:
        return render(request, "inventory/partials/_test_result.html",
                      {"error": "Pick at least one context to test.", "draft": draft})
    insecure = request.POST.get("meta-insecure_skip_tls_verify") == "on" and has_role(request.user, ADMIN)
    try:
        onboarding.request_test(draft, contexts=contexts, insecure=insecure, user=request.user,
                                source_ip=client_ip(request))
    except ServiceError as exc:
        return render(request, "inventory/partials/_test_result.html", {"error": exc.message, "draft": draft},
                      status=exc.status)
    draft.refresh_from_db()
    return render(request, "inventory/partials/_test_result.html", {"draft": draft, "polling": True})


@role_required(OPERATOR)
def cluster_attach_test_result(request, draft_id) -> HttpResponseBase:
    """HTMX: the connection test's report once the worker wrote it; until then the same polling placeholder."""
    try:
        draft = onboarding.draft_of(request.user, draft_id)
    except onboarding.DraftError as exc:
        return render(request, "inventory/partials/_test_result.html", {"error": str(exc)})
    done = draft.test_state == "done"
    return render(request, "inventory/partials/_test_result.html",
                  {"draft": draft, "polling": not done, "reports": draft.test_results if done else [],
                   "error": draft.test_error if done else ""})


@role_required(OPERATOR)
def cluster_attach_contexts(request) -> HttpResponseBase:
    """HTMX: read a pasted/uploaded kubeconfig and offer its contexts."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    form = KubeconfigForm(request.POST, request.FILES)
    contexts = _context_choices(form, chosen=None) if form.is_valid() else []
    return render(request, "inventory/partials/_contexts.html", {"form": form, "contexts": contexts})


def _context_choices(form: KubeconfigForm, *, chosen: list[str] | None) -> list[dict]:
    """Each context of a parsed kubeconfig with its suggested name and any problem that stops it."""
    current = form.parsed.get("current-context")
    suggested = [kubeconfigs.default_name(n) for n in kubeconfigs.context_names(form.parsed)]
    taken = set(Cluster.objects.filter(name__in=suggested).values_list("name", flat=True))
    contexts = []
    for name in kubeconfigs.context_names(form.parsed):
        problem = ""
        try:
            kubeconfigs.extract_context(form.parsed, name)
        except kubeconfigs.KubeconfigError as exc:
            problem = str(exc)
        checked = (name in chosen) if chosen is not None else (name == current)
        contexts.append({"name": name, "suggested": kubeconfigs.default_name(name), "problem": problem,
                         "checked": checked and not problem, "exists": kubeconfigs.default_name(name) in taken})
    return contexts


@role_required(OPERATOR, teams=True)
@require_POST
def cluster_busy(request, name: str) -> HttpResponseBase:
    """Mark a cluster busy, or clear it (the operators over it; the service checks)."""
    cluster = get_object_or_404(Cluster.objects.visible_to(request.user), name=name)
    busy = request.POST.get("busy") == "1"
    try:
        services.set_busy(cluster, user=request.user, busy=busy, reason=request.POST.get("reason", ""),
                                    source_ip=client_ip(request))
    except ServiceError as exc:  # a bad reason, or not the user's to change: both say why
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{cluster.name} marked busy." if busy else f"{cluster.name} is no longer busy.")
    return redirect(cluster.get_absolute_url())
