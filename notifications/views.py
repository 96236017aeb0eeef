"""Notification pages: channels and alert rules (list, create, edit, delete, send a test message), the delivery
log with each payload and answer. Everyone with a role sees the channels, rules and deliveries of their scope
(a team's for its members, all for global roles); changes go through notifications.services."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from foundation.decorators import role_required
from foundation.errors import ServiceError, add_to_form
from foundation.roles import VIEWER
from foundation.web import client_ip
from inventory.choices import Environment, Severity
from inventory.models import Team
from inventory.people.access import can
from notifications import events as event_types
from notifications import services
from notifications.choices import ChannelKind, DeliveryState
from notifications.models import AlertRule, Channel, Delivery

PAGE_SIZE = 50


def _manageable_teams(user) -> list[tuple[str, str]]:
    """Where the user may add channels and rules: ("", platform) for admins, then each team they operate."""
    choices = [("", "Platform (no team)")] if can(user, "manage_notifications", None) else []
    teams = Team.objects.visible_to(user).order_by("name")
    return choices + [(t.name, f"Team {t.name}") for t in teams if can(user, "manage_notifications", t)]


def _choices(form: forms.Form, name: str) -> forms.ChoiceField:
    field = form.fields[name]
    assert isinstance(field, forms.ChoiceField)
    return field


def _own_choice(obj) -> list[tuple[str, str]]:
    name = services.team_name(obj)
    return [(name, f"Team {name}" if name else "Platform (no team)")]


def _require_a_manager(user) -> None:
    """The new-channel and new-rule pages: for admins and team operators only (the service checks the team)."""
    if not _manageable_teams(user):
        raise ServiceError("Notifications are managed by admins and by each team's operators.", status=403)


def _channel_initial(channel: Channel) -> dict:
    return {"team": services.team_name(channel), "name": channel.name, "kind": channel.kind,
            "recipients": ", ".join(channel.recipients), "enabled": channel.enabled}


def _team_named(user, name: str) -> Team | None:
    return get_object_or_404(Team.objects.visible_to(user), name=name) if name else None


class ChannelForm(forms.Form):
    team = forms.ChoiceField(required=False, help_text="A team's channel receives only what the team may see.")
    name = forms.SlugField(max_length=63)
    kind = forms.ChoiceField(choices=ChannelKind.choices)
    url = forms.CharField(required=False, max_length=2048, label="URL",
                          widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 60}),
                          help_text="Webhook or Slack incoming-webhook URL. Stored encrypted and never shown again; "
                                    "leave blank to keep the stored one.")
    secret = forms.CharField(required=False, max_length=256, label="Signing secret",
                             widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                             help_text="Webhooks: HMAC-SHA256 of the body in X-Fleetweb-Signature (16+ characters). "
                                       "Blank keeps the stored one.")
    recipients = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                 help_text="Email: addresses, comma or newline separated.")
    enabled = forms.BooleanField(required=False, initial=True)

    def __init__(self, *args, user, channel: Channel | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        _choices(self, "team").choices = _manageable_teams(user)
        if channel is not None:
            for name in ("team", "kind"):
                self.fields[name].disabled = True
            _choices(self, "team").choices = _own_choice(channel)


class ChannelChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj) -> str:
        return f"{services.team_name(obj)}/{obj.name}" if obj.team_id else f"{obj.name} (platform)"


class RuleForm(forms.Form):
    team = forms.ChoiceField(required=False)
    name = forms.CharField(max_length=100)
    channel = ChannelChoiceField(queryset=Channel.objects.none())
    events = forms.MultipleChoiceField(choices=event_types.choices, widget=forms.CheckboxSelectMultiple)
    environments = forms.MultipleChoiceField(choices=Environment.choices, required=False,
                                             widget=forms.CheckboxSelectMultiple, help_text="None: every environment.")
    min_severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.HIGH, label="Violations from severity")
    hold_down = forms.IntegerField(initial=120, min_value=0, max_value=86400, label="Hold-down (seconds)",
                                   help_text="A cluster must stay in a state this long before it alerts or recovers.")
    enabled = forms.BooleanField(required=False, initial=True)

    @property
    def param_fields(self) -> list[forms.BoundField]:
        return [self[param.name] for param in event_types.params()]

    def __init__(self, *args, user, rule: AlertRule | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for param in event_types.params():  # each condition's declared parameters, checked again by the service
            self.fields[param.name] = param.form_field(required=False)
        _choices(self, "team").choices = _manageable_teams(user)
        manageable = [t.pk for t in Team.objects.visible_to(user) if can(user, "manage_notifications", t)]
        channels = Channel.objects.filter(team__in=manageable)
        if can(user, "manage_notifications", None):
            channels = channels | Channel.objects.filter(team__isnull=True)
        field = self.fields["channel"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = channels.select_related("team").order_by("team__name", "name")
        if rule is not None:
            self.fields["team"].disabled = True
            _choices(self, "team").choices = _own_choice(rule)


@role_required(VIEWER, teams=True)
def notification_list(request) -> HttpResponseBase:
    channels = Channel.objects.visible_to(request.user).select_related("team")
    rules = AlertRule.objects.visible_to(request.user).select_related("team", "channel")
    return render(request, "notifications/notifications.html", {
        "channels": channels, "rules": rules, "can_add": bool(_manageable_teams(request.user)),
        "no_base_url": not settings.FLEETWEB_BASE_URL})


def _channel_form(request, channel: Channel | None) -> HttpResponseBase:
    initial = _channel_initial(channel) if channel is not None else None
    form = ChannelForm(request.POST or None, user=request.user, channel=channel, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            team = channel.team if channel is not None else _team_named(request.user, d["team"])
            saved = services.save_channel(user=request.user, channel=channel, team=team, name=d["name"],
                                          kind=d["kind"] if channel is None else channel.kind, url=d["url"],
                                          secret=d["secret"], recipients=d["recipients"], enabled=d["enabled"],
                                          source_ip=client_ip(request))
        except ServiceError as exc:
            if exc.status in (403, 404):  # not theirs to change: the refusal page, not a form error
                raise
            add_to_form(form, exc)
        else:
            messages.success(request, f"Channel {saved.name} saved.")
            return redirect(saved.get_absolute_url())
    status = 400 if request.method == "POST" else 200
    return render(request, "notifications/channel_form.html", {"form": form, "channel": channel}, status=status)


@role_required(VIEWER, teams=True)
def channel_create(request) -> HttpResponseBase:
    _require_a_manager(request.user)
    return _channel_form(request, None)


def _visible_channel(request, pk: int) -> Channel:
    return get_object_or_404(Channel.objects.visible_to(request.user).select_related("team"), pk=pk)


@role_required(VIEWER, teams=True)
def channel_detail(request, pk: int) -> HttpResponseBase:
    channel = _visible_channel(request, pk)
    if request.method == "POST":
        return _channel_form(request, channel)
    deliveries = channel.deliveries.order_by("-created_at")[:20]
    return render(request, "notifications/channel_detail.html", {
        "channel": channel, "deliveries": deliveries, "rules": channel.rules.order_by("name"),
        "can_manage": can(request.user, "manage_notifications", channel.team),
        "form": ChannelForm(user=request.user, channel=channel, initial=_channel_initial(channel))})


@require_POST
@role_required(VIEWER, teams=True)
def channel_test(request, pk: int) -> HttpResponseBase:
    channel = _visible_channel(request, pk)
    delivery = services.send_test(channel, user=request.user, source_ip=client_ip(request))
    if request.htmx:  # the answer, and the channel's deliveries with it (out of band: the table is elsewhere)
        return render(request, "notifications/partials/_test_delivery.html",
                      {"delivery": delivery, "deliveries": channel.deliveries.order_by("-created_at")[:20]})
    level = messages.success if delivery.state == DeliveryState.SENT else messages.error
    level(request, f"Test message: {delivery.get_state_display()} ({delivery.answer}).")
    return redirect(channel.get_absolute_url())


@require_POST
@role_required(VIEWER, teams=True)
def channel_delete(request, pk: int) -> HttpResponseBase:
    channel = _visible_channel(request, pk)
    services.delete_channel(channel, user=request.user, source_ip=client_ip(request))
    messages.success(request, f"Channel {channel.name} deleted.")
    return redirect("notifications:notifications")


def _rule_form(request, rule: AlertRule | None) -> HttpResponseBase:
    initial = None
    if rule is not None:
        initial = {"team": services.team_name(rule), "name": rule.name, "channel": rule.channel,
                   **{f: getattr(rule, f) for f in services.RULE_FIELDS},
                   **{p.name: event_types.param(rule, p.name) for p in event_types.params()}}
    form = RuleForm(request.POST or None, user=request.user, rule=rule, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            team = rule.team if rule is not None else _team_named(request.user, d["team"])
            params = {p.name: d[p.name] for p in event_types.params() if d.get(p.name) is not None}
            saved = services.save_rule(user=request.user, rule=rule, team=team, name=d["name"], channel=d["channel"],
                                       **{f: d[f] for f in services.RULE_FIELDS}, source_ip=client_ip(request),
                                       params=params)
        except ServiceError as exc:
            if exc.status in (403, 404):  # not theirs to change: the refusal page, not a form error
                raise
            add_to_form(form, exc)
        else:
            messages.success(request, f"Alert rule {saved.name} saved.")
            return redirect("notifications:notifications")
    status = 400 if request.method == "POST" else 200
    return render(request, "notifications/rule_form.html", {"form": form, "rule": rule}, status=status)


@role_required(VIEWER, teams=True)
def rule_create(request) -> HttpResponseBase:
    _require_a_manager(request.user)
    return _rule_form(request, None)


@role_required(VIEWER, teams=True)
def rule_edit(request, pk: int) -> HttpResponseBase:
    rule = get_object_or_404(AlertRule.objects.visible_to(request.user).select_related("team", "channel"), pk=pk)
    if not can(request.user, "manage_notifications", rule.team):
        raise ServiceError("Only the rule's managers may change it.", status=403)
    return _rule_form(request, rule)


@require_POST
@role_required(VIEWER, teams=True)
def rule_delete(request, pk: int) -> HttpResponseBase:
    rule = get_object_or_404(AlertRule.objects.visible_to(request.user).select_related("team"), pk=pk)
    services.delete_rule(rule, user=request.user, source_ip=client_ip(request))
    messages.success(request, f"Alert rule {rule.name} deleted.")
    return redirect("notifications:notifications")


def visible_deliveries(user) -> QuerySet:
    return Delivery.objects.visible_to(user).select_related("channel", "channel__team", "rule")


@role_required(VIEWER, teams=True)
def delivery_list(request) -> HttpResponseBase:
    rows = visible_deliveries(request.user)
    state, channel = request.GET.get("state", ""), request.GET.get("channel", "")
    if state in DeliveryState.values:
        rows = rows.filter(state=state)
    if channel.isdigit():
        rows = rows.filter(channel_id=int(channel))
    page = Paginator(rows.order_by("-created_at", "-pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "notifications/delivery_list.html", {
        "page": page, "states": DeliveryState.choices, "state": state, "filters": request.GET,
        "channels": Channel.objects.visible_to(request.user).order_by("name"), "channel": channel})


@role_required(VIEWER, teams=True)
def delivery_detail(request, pk: int) -> HttpResponseBase:
    delivery = get_object_or_404(visible_deliveries(request.user), pk=pk)
    return render(request, "notifications/delivery_detail.html", {"delivery": delivery})
