"""Every change to notification channels and alert rules, and the test message: whatever the door (pages, API),
through `can(user, "manage_notifications", team)` and audited in the same transaction.

A team's channels and rules are its operators' (and admins'); the platform's (no team) are admins'. A rule
sends only to a channel of its own team, so no rule carries what a team may not see to a team's channel, nor a
team's messages to the platform's. URLs are checked by the outbound address policy when saved and again at
each delivery; the URL (which for Slack is itself the secret) and the signing secret are stored encrypted and
never shown, logged or returned again.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from foundation import outbound
from foundation.audit import record
from foundation.errors import ServiceError
from inventory.choices import Environment, Severity
from inventory.models import Team
from inventory.people.access import require
from inventory.validators import dns_label_problem
from notifications import channels
from notifications import events as _events
from notifications.alerting import Message
from notifications.choices import ChannelKind, DeliveryState
from notifications.models import AlertRule, Channel, Delivery

MAX_RECIPIENTS = 20


def _check(user, team: Team | None) -> None:
    require(user, "manage_notifications", team,
            message=f"Team {team.name}'s notifications are managed by its operators." if team is not None
            else "The platform's notifications are managed by admins.")


def team_name(obj) -> str:
    """The name of a channel's or rule's team, "" for the platform's (no query when it has none)."""
    team = obj.team if obj.team_id else None
    return team.name if team is not None else ""


def channel_view(channel: Channel) -> dict:
    """What the record says of a channel: never its URL nor its secret."""
    return {"name": channel.name, "team": team_name(channel), "kind": channel.kind,
            "destination": channel.destination, "enabled": channel.enabled}


def parse_recipients(text) -> list[str]:
    values = text if isinstance(text, list | tuple) else str(text or "").replace(";", ",").replace("\n", ",").split(",")
    recipients = [v.strip() for v in values if str(v).strip()]
    if not recipients:
        raise ServiceError({"recipients": "Give at least one email address."})
    if len(recipients) > MAX_RECIPIENTS:
        raise ServiceError({"recipients": f"At most {MAX_RECIPIENTS} addresses per channel."})
    for address in recipients:
        try:
            validate_email(address)
        except ValidationError:
            raise ServiceError({"recipients": f"'{address[:100]}' is not an email address."}) from None
    return recipients


def check_channel_url(url: str) -> outbound.Target:
    """The URL as the policy sees it (text, then the addresses its host resolves to); ServiceError saying why not."""
    try:
        return outbound.check_and_resolve(url, schemes=channels.SCHEMES, what="channel URL", purpose="channel")
    except outbound.OutboundRefused as exc:
        raise ServiceError({"url": str(exc)}) from None


def save_channel(*, user, name: str, kind: str, team: Team | None = None, url: str = "", secret: str = "",
                 recipients=None, enabled: bool = True, channel: Channel | None = None,
                 source_ip: str = "") -> Channel:
    """Create a channel (channel None) or change one. On a change a blank URL or secret keeps the stored one."""
    _check(user, team)
    if channel is not None:
        _check(user, channel.team)
        if channel.team_id != (team.pk if team else None):
            raise ServiceError({"team": "A channel cannot move to another team; create a new one."})
        kind = channel.kind
    if kind not in ChannelKind.values:
        raise ServiceError({"kind": f"One of {', '.join(ChannelKind.values)}."})
    if problem := dns_label_problem(name, "name"):
        raise ServiceError({"name": problem})
    taken = Channel.objects.filter(name=name, team=team)
    if channel is not None:
        taken = taken.exclude(pk=channel.pk)
    if taken.exists():
        raise ServiceError({"name": f"A channel named '{name}' already exists here."})
    stored = channel.open() if channel is not None else {}
    fields: dict = {"name": name, "enabled": bool(enabled)}
    if kind == ChannelKind.EMAIL:
        if not settings.EMAIL_HOST:
            raise ServiceError({"kind": "Email is not configured: set FLEETWEB_EMAIL_HOST (and FLEETWEB_EMAIL_FROM)."})
        fields["recipients"] = parse_recipients(recipients)
        fields["target_host"], secret_data = "", {}
    else:
        url = (url or "").strip() or stored.get("url", "")
        if not url:
            raise ServiceError({"url": "The URL of the receiver is required."})
        fields["target_host"] = check_channel_url(url).host
        secret_data = {"url": url}
        if kind == ChannelKind.WEBHOOK:
            secret = (secret or "").strip() or stored.get("secret", "")
            if secret and len(secret) < 16:
                raise ServiceError({"secret": "A signing secret has at least 16 characters."})
            if secret:
                secret_data["secret"] = secret
        fields["recipients"] = []
    fields["ciphertext"] = Channel.seal(secret_data) if secret_data else ""
    with transaction.atomic():
        before = channel_view(channel) if channel is not None else None
        if channel is None:
            channel = Channel.objects.create(team=team, kind=kind, created_by=user if user.pk else None, **fields)
        else:
            for field, value in fields.items():
                setattr(channel, field, value)
            channel.save()
        after = {**channel_view(channel), "signing_secret": "set" if secret_data.get("secret") else "none"}
        record(user=user, action="channel.create" if before is None else "channel.update", target=channel,
               target_name=_label(channel), source_ip=source_ip, before=before, after=after)
    return channel


def _label(obj) -> str:
    return f"{team_name(obj)}/{obj.name}" if obj.team_id else obj.name


def delete_channel(channel: Channel, *, user, source_ip: str = "") -> None:
    """Delete a channel with its rules and delivery log."""
    _check(user, channel.team)
    with transaction.atomic():
        record(user=user, action="channel.delete", target=channel, target_name=_label(channel), source_ip=source_ip,
               before={**channel_view(channel), "rules": sorted(channel.rules.values_list("name", flat=True))})
        channel.delete()


def rule_view(rule: AlertRule) -> dict:
    return {"name": rule.name, "team": team_name(rule), "channel": rule.channel.name,
            "events": list(rule.events), "environments": list(rule.environments), "min_severity": rule.min_severity,
            "hold_down": rule.hold_down, **{p.name: _events.param(rule, p.name) for p in _events.params()},
            "enabled": rule.enabled}


RULE_FIELDS = ("events", "environments", "min_severity", "hold_down", "enabled")


def save_rule(*, user, name: str, channel: Channel, team: Team | None = None, events=(), environments=(),
              min_severity: str = Severity.HIGH, hold_down: int = 120, enabled: bool = True,
              rule: AlertRule | None = None, params: dict | None = None, source_ip: str = "",
              **param_values) -> AlertRule:
    """Create an alert rule (rule None) or change one. `params` (or each by name, `score_below=75`): the declared
    parameters of the conditions (notifications.events), checked as each declares; those not given keep the
    rule's value, or take their default."""
    event_keys = events  # the argument's name is the API field's; the module is _events
    _check(user, team)
    if rule is not None:
        _check(user, rule.team)
        if rule.team_id != (team.pk if team else None):
            raise ServiceError({"team": "A rule cannot move to another team; create a new one."})
    errors = {}
    name = (name or "").strip()
    if not name or len(name) > 100:
        errors["name"] = "A name of 1 to 100 characters is required."
    if channel.team_id != (team.pk if team else None):
        errors["channel"] = ("Choose one of the team's own channels." if team is not None
                             else "Choose one of the platform's channels (a team's channel gets only its team's).")
    chosen = list(dict.fromkeys(event_keys))
    if not chosen:
        errors["events"] = "Choose at least one event."
    elif unknown := [e for e in chosen if e not in _events.EVENTS]:
        errors["events"] = f"Unknown events: {', '.join(map(str, unknown))[:200]}."
    environments = list(dict.fromkeys(environments))
    if bad := [e for e in environments if e not in Environment.values]:
        errors["environments"] = f"Unknown environments: {', '.join(map(str, bad))[:200]}."
    if min_severity not in Severity.values:
        errors["min_severity"] = f"One of {', '.join(Severity.values)}."
    try:
        if not 0 <= int(hold_down) <= 86400:
            raise ValueError
    except (TypeError, ValueError):
        errors["hold_down"] = "A whole number from 0 to 86400."
    given = {**(dict(rule.params or {}) if rule is not None else {}), **(params or {}), **param_values}
    cleaned: dict = {}
    try:
        cleaned = _events.clean_params(given)
    except _events.ParamError as exc:
        errors.update(exc.errors)
    if errors:
        raise ServiceError(errors)
    values = {"events": chosen, "environments": environments, "min_severity": min_severity,
              "hold_down": int(hold_down), "params": cleaned, "enabled": bool(enabled)}
    with transaction.atomic():
        before = rule_view(rule) if rule is not None else None
        if rule is None:
            rule = AlertRule.objects.create(name=name, team=team, channel=channel,
                                            created_by=user if user.pk else None, **values)
        else:
            rule.name, rule.channel = name, channel
            for field, value in values.items():
                setattr(rule, field, value)
            rule.save()
            if before and (before["events"] != rule.events or before["channel"] != channel.name):
                # Alerts of events no longer listened to (or opened for another channel) close silently.
                rule.alerts.filter(closed_at__isnull=True).exclude(event__in=rule.events).update(
                    closed_at=timezone.now())
        record(user=user, action="alert_rule.create" if before is None else "alert_rule.update", target=rule,
               target_name=_label(rule), source_ip=source_ip, before=before, after=rule_view(rule))
    return rule


def delete_rule(rule: AlertRule, *, user, source_ip: str = "") -> None:
    _check(user, rule.team)
    with transaction.atomic():
        record(user=user, action="alert_rule.delete", target=rule, target_name=_label(rule), source_ip=source_ip,
               before=rule_view(rule))
        rule.delete()


def send_test(channel: Channel, *, user, source_ip: str = "") -> Delivery:
    """'Send test message': one delivery now, in this request (a few seconds at most), its answer shown at once."""
    _check(user, channel.team)
    message = Message(event="test", title=f"Test message to channel {channel.name}", severity="info",
                      text=f"Sent by {user.get_username()} from Fleetweb to check this channel works.",
                      data={"channel": channel.name})
    payload = message.payload()
    with transaction.atomic():
        delivery = Delivery.objects.create(channel=channel, event="test", title=message.title, payload=payload,
                                           is_test=True, attempts=1, last_attempt_at=timezone.now())
        try:
            delivery.answer = channels.send(channel, payload)[:255]
            delivery.state, delivery.sent_at = DeliveryState.SENT, timezone.now()
        except channels.DeliveryError as exc:
            delivery.answer, delivery.state = str(exc)[:255], DeliveryState.FAILED
        delivery.save(update_fields=["answer", "state", "sent_at"])
        record(user=user, action="channel.test", target=channel, target_name=_label(channel), source_ip=source_ip,
               after={"state": delivery.state, "answer": delivery.answer})
    return delivery
