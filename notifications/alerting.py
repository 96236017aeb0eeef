"""Alerts: which rules a condition or an event matches, one message per transition, digests, deliveries.

Two kinds of things alert:

- **Conditions** (a cluster unreachable, credentials about to expire, a group's score low, an enforcement
  failing) are found by beat every FLEETWEB_ALERT_INTERVAL seconds (`evaluate`). Each rule keeps an `Alert`
  per subject: opened once when the condition is found (for cluster states, after it held for the rule's
  hold-down, so a flapping cluster does not alert), closed once by a recovery message when it is gone (also
  after the hold-down). A subject failing in another way while its alert is open (unreachable, then
  unauthorized) stays that one alert. Each app registers its conditions and events (`notifications.events`).
- **Events** (a violation opened, a rollout awaiting approval, failed, succeeded, rolled back) are sent as
  they happen (`emit`), in the transaction that made them.

Both end in `queue`: one Delivery per channel and message, queued to a worker after commit; a channel with
more than FLEETWEB_ALERT_DIGEST_OVER messages from one evaluation or one event batch gets one digest instead.
A team's rule matches only its team's clusters (its scope), groups and applications.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from foundation import metrics
from foundation.queueing import enqueue, enqueue_after_commit
from inventory.choices import SEVERITY_RANK, ClusterStatus
from inventory.models import Team
from inventory.people.access import scopes_of
from notifications import channels, events
from notifications.choices import DeliveryState
from notifications.models import Alert, AlertRule, Delivery

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Message:
    """Something to tell: an event, or a condition firing or resolved. `clusters` and `teams` decide which
    teams' rules see it; `environments` which rules' environment filters pass it."""

    event: str
    title: str
    text: str = ""
    severity: str = "warning"  # critical, warning, info, resolved
    url: str = ""
    data: dict = dataclasses.field(default_factory=dict)
    clusters: tuple[int, ...] = ()
    teams: tuple[int, ...] = ()
    environments: tuple[str, ...] = ()
    rank: int | None = None  # a violation's severity rank, for rules' min_severity
    by_team: bool = False  # reaches team rules through `teams` only (an application's events), not clusters

    def payload(self, *, delivery: str = "") -> dict:
        return {"event": self.event, "delivery": delivery or str(uuid.uuid4()), "at": timezone.now().isoformat(),
                "title": self.title, "text": self.text, "severity": self.severity, "url": self.url,
                "data": self.data}


@dataclasses.dataclass
class Finding:
    """A condition holding for one subject now, as a rule's condition function sees it."""

    state: str
    subject: str
    text: str = ""
    url: str = ""
    cluster_id: int | None = None
    environment: str = ""
    data: dict = dataclasses.field(default_factory=dict)


def link(path: str) -> str:
    return f"{settings.FLEETWEB_BASE_URL}{path}" if settings.FLEETWEB_BASE_URL else path


# ---------------------------------------------------------------------------------------------
# Matching


class Scopes:
    """Team id -> the clusters in its scope, computed once for every team holding a rule (3 queries)."""

    def __init__(self, rules: Iterable[AlertRule]):
        teams = {r.team_id for r in rules if r.team_id is not None}
        self._scopes = scopes_of(Team.objects.filter(pk__in=teams)) if teams else {}

    def of(self, rule: AlertRule) -> frozenset[int] | None:
        return None if rule.team_id is None else self._scopes.get(rule.team_id, frozenset())


def matches(rule: AlertRule, message: Message, scope: frozenset[int] | None) -> bool:
    if message.event not in rule.events:
        return False
    if rule.environments and message.environments and not set(rule.environments) & set(message.environments):
        return False
    if message.rank is not None and message.rank > SEVERITY_RANK.get(rule.min_severity, 3):
        return False
    if rule.team_id is None:
        return True
    if message.teams or message.by_team:
        return rule.team_id in message.teams
    return bool(message.clusters) and scope is not None and bool(scope & set(message.clusters))


def active_rules(events: Iterable[str] | None = None) -> list[AlertRule]:
    rules = list(AlertRule.objects.filter(enabled=True, channel__enabled=True).select_related("channel"))
    if events is not None:
        wanted = set(events)
        rules = [r for r in rules if wanted & set(r.events)]
    return rules


def emit(*messages: Message, rules: list[AlertRule] | None = None) -> int:
    """Send these event messages to every rule they match (in the caller's transaction; queued after commit).
    Returns the deliveries made. Never raises: an alerting problem must not undo what happened. `rules`: the
    caller's `active_rules(...)`, when it asked first whether building the messages is worth it."""
    if not messages:
        return 0
    try:
        with transaction.atomic():
            rules = active_rules(m.event for m in messages) if rules is None else rules
            if not rules:
                return 0
            scopes = Scopes(rules)
            pairs = [(rule, m) for m in messages for rule in rules if matches(rule, m, scopes.of(rule))]
            return len(queue(pairs))
    except Exception:
        log.exception("notifications for %s could not be queued", ", ".join(sorted({m.event for m in messages})))
        return 0


# ---------------------------------------------------------------------------------------------
# Conditions


def evaluate(*, now=None) -> int:
    """Open and close every rule's alerts (run by beat); returns the deliveries made. A rule another evaluator
    holds is skipped (SKIP LOCKED), so two beats never send one transition twice."""
    now = now or timezone.now()
    pairs: list[tuple[AlertRule, Message]] = []
    with transaction.atomic():
        rules = list(AlertRule.objects.filter(enabled=True, channel__enabled=True).select_related("channel")
                     .select_for_update(skip_locked=True, of=("self",)))
        conditions = events.conditions()
        rules = [r for r in rules if set(r.events) & set(conditions)]
        scopes = Scopes(rules)
        for rule in rules:
            for event in rule.events:
                if event in conditions:
                    try:
                        with transaction.atomic():  # a savepoint: a failed query leaves the others usable
                            pairs += _reconcile(rule, event, conditions[event], scopes.of(rule), now)
                    except Exception:  # one broken condition must not stop the others
                        log.exception("alert rule %s: condition %s failed", rule.pk, event)
        deliveries = queue(pairs)
    requeue_stuck(now=now)
    return len(deliveries)


def _reconcile(rule: AlertRule, event: str, condition: Callable, scope, now) -> list[tuple[AlertRule, Message]]:
    found, held = condition(rule, scope, now)
    open_alerts = {a.key: a for a in Alert.objects.filter(rule=rule, event=event, closed_at__isnull=True)}
    out = []
    for key, finding in found.items():
        alert = open_alerts.get(key)
        if alert is not None:
            # Still failing, perhaps differently (unreachable, then 401 while its apiserver starts up): one alert,
            # whose recovery names the last state; the cluster's History has each transition.
            if alert.state != finding.state:
                alert.state = finding.state
                alert.save(update_fields=["state"])
            continue
        Alert.objects.create(rule=rule, key=key, event=event, state=finding.state, subject=finding.subject[:255],
                             cluster_id=finding.cluster_id, opened_at=now)
        out.append((rule, Message(event=event, title=f"{finding.subject}: {finding.state}", text=finding.text,
                                  severity="critical" if finding.state in _CRITICAL else "warning", url=finding.url,
                                  data={**finding.data, "key": key, "state": finding.state, "alert": "firing"},
                                  clusters=(finding.cluster_id,) if finding.cluster_id else (),
                                  environments=(finding.environment,) if finding.environment else ())))
    for key, alert in open_alerts.items():
        if key in found or key in held:
            continue
        alert.closed_at = now
        alert.save(update_fields=["closed_at"])
        out.append((rule, Message(event=event, title=f"{alert.subject}: recovered (was {alert.state})",
                                  severity="resolved", data={"key": key, "state": "resolved", "was": alert.state,
                                                             "alert": "resolved"},
                                  clusters=(alert.cluster_id,) if alert.cluster_id else ())))
    return out


_CRITICAL = {ClusterStatus.UNREACHABLE, ClusterStatus.UNAUTHORIZED, ClusterStatus.TLS_ERROR, "expired"}


# ---------------------------------------------------------------------------------------------
# Deliveries


def queue(pairs: list[tuple[AlertRule, Message]]) -> list[Delivery]:
    """One Delivery per channel and message (two rules sending one message to one channel send it once); a
    channel with more than FLEETWEB_ALERT_DIGEST_OVER messages gets one digest. Queued after commit."""
    by_channel: dict[int, list[tuple[AlertRule, Message]]] = defaultdict(list)
    seen: set[tuple[int, int]] = set()
    for rule, message in pairs:
        if (rule.channel_id, id(message)) not in seen:
            seen.add((rule.channel_id, id(message)))
            by_channel[rule.channel_id].append((rule, message))
    rows = []
    for channel_id, items in by_channel.items():
        if len(items) > settings.FLEETWEB_ALERT_DIGEST_OVER:
            rows.append(_digest(channel_id, items))
        else:
            rows += [Delivery(channel_id=channel_id, rule=rule, event=m.event, title=m.title[:255],
                              payload=m.payload()) for rule, m in items]
    rows = Delivery.objects.bulk_create(rows)
    for row in rows:
        enqueue_after_commit("notifications.tasks.deliver", row.pk, what=f"notification delivery #{row.pk}")
    return rows


def _digest(channel_id: int, items: list[tuple[AlertRule, Message]]) -> Delivery:
    firing = sum(1 for _, m in items if m.severity != "resolved")
    title = f"{len(items)} alerts: {firing} firing, {len(items) - firing} resolved"
    counts: dict[str, int] = defaultdict(int)
    for _, m in items:
        counts[m.event] += 1
    payload = Message(event="digest", title=title, text=", ".join(f"{n} {e}" for e, n in sorted(counts.items())),
                      severity="critical" if firing else "resolved", url=link("/notifications/deliveries/"),
                      data={"messages": [{"event": m.event, "title": m.title, "severity": m.severity, **m.data}
                                         for _, m in items]}).payload()
    payload["items"] = [m.title for _, m in items]
    return Delivery(channel_id=channel_id, rule=items[0][0], event="digest", title=title, payload=payload)




def requeue_stuck(*, now=None) -> int:
    """Deliveries whose message was lost (the broker down when queued, or a retry lost with a Redis flush):
    queued again after a minute, or after the longest backoff."""
    now = now or timezone.now()
    lost = (Q(state=DeliveryState.PENDING, attempts=0, created_at__lt=now - timedelta(seconds=60))
            | Q(state=DeliveryState.RETRYING, last_attempt_at__lt=now - timedelta(seconds=900)))
    stuck = list(Delivery.objects.filter(lost).values_list("pk", flat=True)[:500])
    for pk in stuck:
        enqueue("notifications.tasks.deliver", pk, what=f"notification delivery #{pk}")
    return len(stuck)


def backoff(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: 10, 20, 40 … at most 10 minutes, with jitter."""
    return min(600, 10 * 2 ** max(attempt - 1, 0)) * random.uniform(0.8, 1.2)


def attempt(delivery_id: int) -> tuple[str, float | None]:
    """Try one delivery once; (state, seconds until the next try or None). Another worker holding it, or a
    delivery already sent, is left alone."""
    with transaction.atomic():
        delivery = (Delivery.objects.select_for_update(skip_locked=True).select_related("channel")
                    .filter(pk=delivery_id, state__in=[DeliveryState.PENDING, DeliveryState.RETRYING]).first())
        if delivery is None:
            return "skipped", None
        delivery.attempts += 1
        delivery.last_attempt_at = timezone.now()
        if not delivery.channel.enabled:
            delivery.answer, delivery.state = "not sent: the channel was disabled", DeliveryState.FAILED
            delivery.save(update_fields=["attempts", "last_attempt_at", "answer", "state"])
            return delivery.state, None
        try:
            delivery.answer = channels.send(delivery.channel, delivery.payload)[:255]
            delivery.state, delivery.sent_at, retry_in = DeliveryState.SENT, timezone.now(), None
        except channels.DeliveryError as exc:
            delivery.answer = str(exc)[:255]
            if exc.retry and delivery.attempts < settings.FLEETWEB_DELIVERY_ATTEMPTS:
                delivery.state, retry_in = DeliveryState.RETRYING, backoff(delivery.attempts)
            else:
                delivery.state, retry_in = DeliveryState.FAILED, None
        except Exception as exc:  # a bug in a sender: recorded, not retried forever
            log.exception("delivery #%s failed", delivery.pk)
            delivery.answer, retry_in = f"internal error ({type(exc).__name__})", None
            delivery.state = DeliveryState.FAILED
        delivery.save(update_fields=["attempts", "last_attempt_at", "answer", "state", "sent_at"])
    if delivery.state == DeliveryState.FAILED:

        metrics.DELIVERY_FAILURES.labels(kind=delivery.channel.kind).inc()
    return delivery.state, retry_in
