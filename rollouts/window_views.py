"""The Change windows page (list, create, edit, delete) and a stage's emergency override: every write through
`rollouts.calendar`, as the API."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import messages
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import OPERATOR, VIEWER
from foundation.web import client_ip
from inventory.choices import Environment
from inventory.models import ClusterGroup, Team
from inventory.people.access import access_of, can
from rollouts import calendar, windows
from rollouts.errors import RolloutError
from rollouts.models import ChangeWindow, Rollout

WEEKDAY_CHOICES = [(str(i), name) for i, name in enumerate(windows.WEEKDAYS)]


class WindowForm(forms.Form):
    """A change window; the service checks every field again (`calendar.save_window`)."""

    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=[("deny", "Freeze: no changes then"),
                                      ("allow", "Allow window: changes only then")])
    reason = forms.CharField(max_length=500, help_text="Shown to everyone a window holds")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False,
                                  help_text="A team's window holds only that team's clusters")
    zone = forms.CharField(max_length=64, initial="UTC", help_text="IANA time zone, e.g. Europe/Berlin")
    weekdays = forms.MultipleChoiceField(choices=WEEKDAY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple,
                                         help_text="Recurring: on these days…")
    start_time = forms.TimeField(required=False, widget=forms.TimeInput(attrs={"type": "time"}),
                                 help_text="…from this local time…")
    end_time = forms.TimeField(required=False, widget=forms.TimeInput(attrs={"type": "time"}),
                               help_text="…to this one (not after the start: the next day)")
    starts_at = forms.DateTimeField(required=False, label="One-off: from",
                                    widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                    help_text="Local time in the zone above")
    ends_at = forms.DateTimeField(required=False, label="One-off: until",
                                  widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    groups = forms.ModelMultipleChoiceField(queryset=ClusterGroup.objects.none(), required=False,
                                            widget=forms.CheckboxSelectMultiple,
                                            help_text="None and no selector: every cluster")
    selector = forms.CharField(max_length=1024, required=False, help_text="e.g. region in (eu-west-1,eu-north-1)")
    environments = forms.MultipleChoiceField(choices=Environment.choices, required=False,
                                             widget=forms.CheckboxSelectMultiple, help_text="None: every environment")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, user=None, window: ChangeWindow | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        access = access_of(user)
        self.fields["groups"].queryset = ClusterGroup.objects.visible_to(user)  # type: ignore[attr-defined]
        if window is not None:
            self.fields.pop("team")
        elif "admin" in access.global_roles:
            self.fields["team"].queryset = Team.objects.all()  # type: ignore[attr-defined]
            self.fields["team"].empty_label = "— the platform (every cluster it names) —"  # type: ignore[attr-defined]
        else:
            self.fields["team"].queryset = Team.objects.filter(  # type: ignore[attr-defined]
                pk__in=access.teams_with(OPERATOR))
            self.fields["team"].required = True
            self.fields["team"].empty_label = None  # type: ignore[attr-defined]

    def service_fields(self) -> dict:
        """The cleaned fields as `calendar.save_window` takes them (one-off times read in the window's zone)."""
        d = self.cleaned_data
        try:
            zone = ZoneInfo(windows.check_zone(d["zone"]))
        except windows.WindowError as exc:
            raise RolloutError({"zone": exc.message}) from None

        def local(value: datetime | None) -> datetime | None:
            return None if value is None else timezone.make_naive(value, timezone.get_current_timezone()).replace(
                tzinfo=zone) if timezone.is_aware(value) else value.replace(tzinfo=zone)

        return {"name": d["name"], "kind": d["kind"], "reason": d["reason"], "zone": d["zone"],
                "weekdays": [int(x) for x in d["weekdays"]], "start_time": d["start_time"], "end_time": d["end_time"],
                "starts_at": local(d["starts_at"]), "ends_at": local(d["ends_at"]), "selector": d["selector"],
                "environments": list(d["environments"]), "enabled": d["enabled"]}


def _initial(window: ChangeWindow) -> dict:
    zone = ZoneInfo(window.zone)
    return {"name": window.name, "kind": window.kind, "reason": window.reason, "zone": window.zone,
            "weekdays": [str(d) for d in window.weekdays], "start_time": window.start_time,
            "end_time": window.end_time,
            "starts_at": window.starts_at.astimezone(zone).replace(tzinfo=None) if window.starts_at else None,
            "ends_at": window.ends_at.astimezone(zone).replace(tzinfo=None) if window.ends_at else None,
            "groups": list(window.groups.all()), "selector": window.selector, "environments": window.environments,
            "enabled": window.enabled}


@role_required(VIEWER, teams=True)
def window_list(request) -> HttpResponseBase:
    """Every window the user may read, whether it is open now and what it holds; a form to make one (operators)."""
    form = WindowForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            created = calendar.save_window(user=request.user, team=form.cleaned_data.get("team"),
                                           groups=list(form.cleaned_data["groups"]), source_ip=client_ip(request),
                                           **form.service_fields())
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Window {created.name} saved.")
            return redirect("rollouts:window_list")
    now = timezone.now()
    rows = [{"window": w, "schedule": calendar.schedule_of(w).describe(),
             "open": calendar.schedule_of(w).is_open(now), "editable": can(request.user, "manage_windows", w.team),
             "groups": calendar.shown_groups(w, request.user)}
            for w in calendar.visible_windows(request.user)]
    may_create = "admin" in access_of(request.user).global_roles or bool(access_of(request.user).teams_with(OPERATOR))
    return render(request, "rollouts/windows.html", {"rows": rows, "form": form, "may_create": may_create},
                  status=400 if request.method == "POST" else 200)


def _readable(request, pk: int) -> ChangeWindow:
    ids = {w.pk for w in calendar.visible_windows(request.user)}
    return get_object_or_404(ChangeWindow.objects.filter(pk__in=ids), pk=pk)


@role_required(OPERATOR, teams=True)
def window_edit(request, pk: int) -> HttpResponseBase:
    window = _readable(request, pk)
    form = WindowForm(request.POST or None, user=request.user, window=window,
                      initial=None if request.POST else _initial(window))
    if request.method == "POST" and form.is_valid():
        try:
            calendar.save_window(user=request.user, window=window, groups=list(form.cleaned_data["groups"]),
                                 source_ip=client_ip(request), **form.service_fields())
        except ServiceError as exc:
            add_to_form(form, exc)
        else:
            messages.success(request, f"Window {window.name} saved.")
            return redirect("rollouts:window_list")
    return render(request, "rollouts/window_form.html", {"form": form, "window": window},
                  status=400 if request.method == "POST" else 200)


@role_required(OPERATOR, teams=True)
@require_POST
def window_delete(request, pk: int) -> HttpResponseBase:
    window = _readable(request, pk)
    try:
        calendar.delete_window(window, user=request.user, source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Window {window.name} deleted.")
    return redirect("rollouts:window_list")


@role_required(VIEWER, teams=True)
@require_POST
def stage_override(request, pk: int, index: int) -> HttpResponseBase:
    """An admin's emergency override of a stage's windows (the service refuses anyone else)."""
    rollout = get_object_or_404(Rollout.objects.visible_to(request.user), pk=pk)
    stage = get_object_or_404(rollout.stages, index=index)
    try:
        calendar.override_stage(stage, user=request.user, reason=request.POST.get("reason", ""),
                                source_ip=client_ip(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Change windows of stage {stage.name} overridden.")
    return redirect(rollout.get_absolute_url())
