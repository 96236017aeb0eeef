"""Team pages: the list (admins: all; others: their teams), a team's members, scope and applications, and the
admin's create/edit/member forms. Every change goes through inventory.people.services."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import ADMIN, VIEWER
from foundation.web import client_ip
from inventory.choices import TeamRole
from inventory.group_views import preview_of
from inventory.models import Cluster, ClusterGroup, Team, TeamMember
from inventory.people import services as team_services
from inventory.people.access import scopes_of, team_scope
from inventory.validators import validate_dns_label, validate_selector


class TeamForm(forms.Form):
    name = forms.CharField(max_length=63, validators=[validate_dns_label],
                           help_text="Lowercase letters, digits and dashes; cannot change later.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    groups = forms.ModelMultipleChoiceField(queryset=ClusterGroup.objects.order_by("name"), required=False,
                                            widget=forms.SelectMultiple(attrs={"size": 6}),
                                            help_text="The team owns every cluster of these groups…")
    selector = forms.CharField(max_length=1024, required=False, validators=[validate_selector],
                               widget=forms.TextInput(attrs={"size": 60, "autocomplete": "off",
                                                             "placeholder": "owner=payments"}),
                               help_text="…and every cluster this selector matches (the groups' syntax).")


class MemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=TeamRole.choices)


@role_required(VIEWER)
def team_list(request) -> HttpResponseBase:
    teams = list(Team.objects.visible_to(request.user).prefetch_related("groups"))
    scopes = scopes_of(Team.objects.filter(pk__in=[t.pk for t in teams]))
    counts: dict[int, int] = {}
    for team_id in TeamMember.objects.filter(team__in=teams).values_list("team_id", flat=True):
        counts[team_id] = counts.get(team_id, 0) + 1
    rows = [{"team": t, "clusters": len(scopes.get(t.pk, ())), "members": counts.get(t.pk, 0)} for t in teams]
    return render(request, "inventory/team_list.html", {"rows": rows})


@role_required(VIEWER)
def team_detail(request, name: str) -> HttpResponseBase:
    team = get_object_or_404(Team.objects.visible_to(request.user).prefetch_related("groups"), name=name)
    scope = team_scope(team.pk)
    preview = preview_of(Cluster.objects.filter(pk__in=scope), user=request.user)
    members = team.members.select_related("user").order_by("user__username", "role")
    apps = list(team.applications.order_by("name").values_list("name", flat=True))
    return render(request, "inventory/team_detail.html", {
        "team": team, "members": members, "preview": preview, "applications": apps,
        "member_form": MemberForm() if request.user.is_authenticated else None})


def _team_form(request, team: Team | None) -> HttpResponseBase:
    initial = ({"name": team.name, "description": team.description, "selector": team.selector,
                "groups": list(team.groups.all())} if team else None)
    form = TeamForm(request.POST or None, initial=initial)
    if team is not None:
        form.fields["name"].disabled = True
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            saved = team_services.save_team(user=request.user, team=team, name=d["name"] if team is None else
                                            team.name, selector=d["selector"], description=d["description"],
                                            groups=d["groups"], source_ip=client_ip(request))
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Team {saved.name} saved.")
            return redirect(saved)
    return render(request, "inventory/team_form.html", {"form": form, "team": team},
                  status=400 if request.method == "POST" else 200)


@role_required(ADMIN)
def team_create(request) -> HttpResponseBase:
    return _team_form(request, None)


@role_required(ADMIN)
def team_edit(request, name: str) -> HttpResponseBase:
    return _team_form(request, get_object_or_404(Team, name=name))


@role_required(ADMIN)
@require_POST
def team_delete(request, name: str) -> HttpResponseBase:
    team = get_object_or_404(Team, name=name)
    try:
        team_services.delete_team(team, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(team)
    messages.success(request, f"Team {name} deleted.")
    return redirect("inventory:team_list")


@role_required(ADMIN)
@require_POST
def team_member_add(request, name: str) -> HttpResponseBase:
    team = get_object_or_404(Team, name=name)
    form = MemberForm(request.POST)
    if form.is_valid():
        member = User.objects.filter(username=form.cleaned_data["username"]).first()
        if member is None:
            messages.error(request, f"No user named '{form.cleaned_data['username']}'.")
        else:
            try:
                team_services.add_member(team, member=member, role=form.cleaned_data["role"], user=request.user,
                                         source_ip=client_ip(request))
            except ServiceError as exc:
                messages.error(request, exc.message)
    else:
        messages.error(request, "Give a username and a role.")
    return redirect(team)


@role_required(ADMIN)
@require_POST
def team_member_remove(request, name: str, pk: int) -> HttpResponseBase:
    grant = get_object_or_404(TeamMember.objects.select_related("team", "user"), team__name=name, pk=pk)
    try:
        team_services.remove_member(grant, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(grant.team)


@role_required(ADMIN)
def team_preview(request) -> HttpResponseBase:
    """HTMX: the clusters a team's scope (groups + selector) holds now, as it is edited."""
    data = request.POST if request.method == "POST" else request.GET
    selector = data.get("selector", "")
    try:
        validate_selector(selector)
    except forms.ValidationError as exc:
        return render(request, "inventory/partials/_group_preview.html", {"error": " ".join(exc.messages),
                                                                           "position": 0, "text": selector})
    groups = list(ClusterGroup.objects.filter(pk__in=[g for g in data.getlist("groups") if g.isdigit()]))
    clusters = Cluster.objects.filter(Team(selector=selector).scope_q(groups)).distinct()
    return render(request, "inventory/partials/_group_preview.html", preview_of(clusters, user=request.user))
