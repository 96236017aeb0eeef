"""Group pages: the list with member counts and compliance, a group's members, the editor with its live
preview, delete. Views check input and roles; services act."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render

from foundation.decorators import role_required
from foundation.errors import add_to_form
from foundation.htmx import htmx_partial
from foundation.lists import filtered
from foundation.roles import OPERATOR, VIEWER
from foundation.web import client_ip
from inventory import extensions, services
from inventory.filtersets import ClusterGroupFilterSet
from inventory.forms import ClusterGroupForm
from inventory.models import Cluster, ClusterGroup
from inventory.people.access import cluster_scope
from inventory.selectors import FIELDS, SelectorError, parse


@role_required(VIEWER)
def group_list(request) -> HttpResponseBase:
    """Groups with their member counts and compliance (three queries, whatever the number of groups)."""
    filterset = ClusterGroupFilterSet(request.GET or None, queryset=ClusterGroup.objects.visible_to(request.user))
    groups = list(filtered(filterset))
    scores = extensions.group_scores(groups, user=request.user)
    rows = [{"group": g, **scores[g.pk]} for g in groups]
    return htmx_partial(request, "inventory/group_list.html", "inventory/partials/_group_table.html",
                        {"filterset": filterset, "rows": rows})


def selector_preview(selector_text: str, static_names: str = "", *, user) -> dict:
    """Who a selector (plus static members) would hold right now, or where it fails to parse."""
    try:
        selector = parse(selector_text)
    except SelectorError as exc:
        return {"error": exc.message, "position": exc.position, "text": selector_text,
                "before": selector_text[:exc.position], "at": selector_text[exc.position:exc.position + 1] or " ",
                "after": selector_text[exc.position + 1:]}
    names = [n for n in static_names.replace(",", " ").split() if n]
    return {**preview_of(Cluster.objects.filter(Q(name__in=names) | selector.q()), user=user),
            "empty_selector": selector.is_empty}


def preview_of(clusters: QuerySet, *, user) -> dict:
    """The first PREVIEW_LIMIT clusters by name that the user may see, how many in all, and the queryset itself
    (for more questions)."""
    scope = cluster_scope(user)  # None: a global role sees every cluster, and the preview needs no filter
    queryset = (clusters if scope is None else clusters.filter(pk__in=scope)).order_by("name")
    return {"matches": queryset[:PREVIEW_LIMIT], "count": queryset.count(), "limit": PREVIEW_LIMIT,
            "queryset": queryset}


PREVIEW_LIMIT = 50


@role_required(VIEWER)
def group_preview(request) -> HttpResponseBase:
    """HTMX: the live preview of a selector as it is typed in the editor."""
    data = request.POST if request.method == "POST" else request.GET
    return render(request, "inventory/partials/_group_preview.html",
                  selector_preview(data.get("selector", ""), data.get("static_members", ""), user=request.user))


def _save_group(request, form: ClusterGroupForm, group: ClusterGroup | None):
    data = form.cleaned_data
    fields = {"description": data["description"], "owner": data["owner"], "selector": data["selector"],
              "upgrade_target": data["upgrade_target"], "static_members": data["static_members"],
              "user": request.user, "source_ip": client_ip(request)}
    try:
        if group is None:
            return services.create_group(name=data["name"], **fields)
        return services.update_group(group, **fields)
    except SelectorError as exc:
        form.add_error("selector", str(exc))
    except services.AttachError as exc:
        add_to_form(form, exc)
    return None


@role_required(OPERATOR)
def group_create(request) -> HttpResponseBase:
    form = ClusterGroupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        group = _save_group(request, form, None)
        if group:
            messages.success(request, f"Group {group.name} created.")
            return redirect(group)
    preview = (selector_preview(form.data.get("selector", ""), form.data.get("static_members", ""), user=request.user)
               if form.is_bound else {})
    return render(request, "inventory/group_form.html", {"form": form, "preview": preview},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR)
def group_edit(request, name: str) -> HttpResponseBase:
    group = get_object_or_404(ClusterGroup.objects.visible_to(request.user), name=name)
    form = ClusterGroupForm(request.POST or None, group=group)
    if request.method == "POST" and form.is_valid():
        if _save_group(request, form, group):
            messages.success(request, f"Group {group.name} saved.")
            return redirect(group)
    preview = selector_preview(form["selector"].value() or "", form["static_members"].value() or "", user=request.user)
    return render(request, "inventory/group_form.html", {"form": form, "group": group, "preview": preview},
                  status=400 if request.method == "POST" else 200)


@role_required(VIEWER)
def group_detail(request, name: str) -> HttpResponseBase:
    """Members with their status and compliance, and the policies assigned to the group."""
    group = get_object_or_404(ClusterGroup.objects.visible_to(request.user).prefetch_related("static_members"),
                              name=name)
    visible = Cluster.objects.visible_to(request.user).only("pk", "name", "labels", *FIELDS, "status")
    members = services.membership([group], list(visible))[group.pk]
    static = {c.pk for c in group.static_members.all()}
    extra = extensions.group_detail(group, members)
    rows = [{"cluster": m, "static": m.pk in static, **extra["members"].get(m.pk, {})} for m in members]
    context = {k: v for k, v in extra.items() if k != "members"}
    return render(request, "inventory/group_detail.html", {"group": group, "rows": rows, **context})


@role_required(OPERATOR)
def group_delete(request, name: str) -> HttpResponseBase:
    group = get_object_or_404(ClusterGroup.objects.visible_to(request.user), name=name)
    if request.method == "POST":
        if request.POST.get("confirm_name") != group.name:
            return render(request, "inventory/group_delete.html",
                          {"group": group, "error": "Type the group's name to confirm."}, status=400)
        try:
            services.delete_group(group, user=request.user, source_ip=client_ip(request))
        except services.AttachError as exc:
            return render(request, "inventory/group_delete.html", {"group": group, "error": exc.message},
                          status=exc.status)
        messages.success(request, f"Group {name} deleted with its policy assignments.")
        return redirect("inventory:group_list")
    return render(request, "inventory/group_delete.html", {"group": group})
