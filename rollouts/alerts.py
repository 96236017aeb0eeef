"""Rollouts' part of alerting (notifications/alerting.py): a deployed application that drifted (a field
Fleetweb applied changed by another field manager) or lost an object is a condition, open until a check finds it
in sync again (Re-apply, auto-correct, or the change undone by hand); a stage awaiting approval and a rollout
failed, succeeded or rolled back are events, sent by `notify` below."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from foundation.queueing import enqueue_after_commit
from notifications import alerting, events
from notifications.alerting import Finding, link
from rollouts.choices import DriftState
from rollouts.models import Drift, Rollout, Stage, Target

DRIFTED = "application.drifted"
AWAITING_APPROVAL = "rollout.awaiting_approval"
ROLLOUT_FAILED = "rollout.failed"
ROLLOUT_SUCCEEDED = "rollout.succeeded"
ROLLOUT_ROLLED_BACK = "rollout.rolled_back"


@events.condition(DRIFTED, "a deployed application changed or deleted by hand (and back in sync)")
def _drifted(rule, scope, now):
    """Deployments drifted or missing, on the clusters the rule sees; a team's rule: of the team's own applications
    (owned or approved) on its clusters, never the platform's or another team's on a shared cluster."""
    rows = Drift.objects.filter(state__in=[DriftState.DRIFTED, DriftState.MISSING])
    if scope is not None:
        rows = rows.filter(Q(deployed__application__owner_team_id=rule.team_id)
                           | Q(deployed__application__approver_team_id=rule.team_id),
                           deployed__cluster_id__in=scope)
    if rule.environments:
        rows = rows.filter(deployed__cluster__environment__in=rule.environments)
    found = {}
    for drift in rows.select_related("deployed__application", "deployed__cluster", "revision"):
        app, cluster = drift.deployed.application, drift.deployed.cluster
        changed = [f"{o['kind']} {o['name']}" + (" missing" if o["state"] == DriftState.MISSING else
                                                  ": " + ", ".join(f["path"] for f in o["fields"][:3]))
                   for o in drift.objects_state if o["state"] in (DriftState.DRIFTED, DriftState.MISSING)]
        managers = sorted({m["manager"] for o in drift.objects_state for f in o.get("fields", [])
                           for m in f["managers"]})
        found[f"drift:{drift.pk}"] = Finding(
            state=drift.state, subject=f"{app.name} on {cluster.name}",
            text="; ".join(changed)[:500] + (f" (changed by {', '.join(managers)})" if managers else ""),
            cluster_id=cluster.pk, environment=cluster.environment,
            url=link(f"{app.get_absolute_url()}#drift"),
            data={"application": app.name, "cluster": cluster.name, "state": drift.state,
                  "revision": drift.revision.number if drift.revision else None, "managers": managers})
    return found, set()


events.register(events.Event(AWAITING_APPROVAL, "rollout stage awaiting approval"))
events.register(events.Event(ROLLOUT_FAILED, "rollout failed"))
events.register(events.Event(ROLLOUT_SUCCEEDED, "rollout succeeded"))
events.register(events.Event(ROLLOUT_ROLLED_BACK, "rollout rolled back"))


# Rollout events -> the alert rules' events (registered in rollouts/alerts.py) they are sent as.
ALERT_EVENTS = {"stage.awaiting_approval": AWAITING_APPROVAL, "rollout.failed": ROLLOUT_FAILED,
                "rollout.succeeded": ROLLOUT_SUCCEEDED, "rollout.rolled_back": ROLLOUT_ROLLED_BACK}


def notify(event: str, rollout: Rollout, *, stage: Stage | None = None) -> None:
    """Tell the alert rules listening (a stage awaiting approval goes to the teams whose approvers approve it), and
    queue the signed webhook to FLEETWEB_WEBHOOK_URL when it is set; both after commit."""
    if event in ALERT_EVENTS:
        _alert(ALERT_EVENTS[event], rollout, stage)
    if not settings.FLEETWEB_WEBHOOK_URL:
        return
    payload = {
        "event": event, "delivery": str(uuid.uuid4()), "at": timezone.now().isoformat(),
        "rollout": rollout.pk, "state": rollout.state,
        "application": rollout.application.name, "revision": rollout.revision.number,
        "url": f"{settings.FLEETWEB_BASE_URL}{rollout.get_absolute_url()}" if settings.FLEETWEB_BASE_URL else "",
    }
    if stage is not None:
        payload["stage"] = {"name": stage.name, "index": stage.index, "state": stage.state,
                            "approvals_required": stage.approvals_required,
                            "clusters": list(stage.targets.values_list("cluster__name", flat=True))}
    enqueue_after_commit("rollouts.tasks.send_webhook", payload, what=f"webhook {event} of rollout #{rollout.pk}")



def _alert(event: str, rollout: Rollout, stage: Stage | None) -> None:
    rules = alerting.active_rules([event])
    if not rules:
        return
    app = rollout.application
    teams: tuple[int, ...]
    if event == AWAITING_APPROVAL:
        teams = (app.approving_team_id,) if app.approving_team_id else ()
    else:
        teams = tuple(t for t in {app.owner_team_id, app.approver_team_id} if t)
    targets = (stage.targets if stage is not None else Target.objects.filter(stage__rollout=rollout))
    clusters = list(targets.values_list("cluster_id", "cluster__environment", "cluster__name"))
    what: str = {AWAITING_APPROVAL: f"stage {stage.name if stage else ''} awaits approval",
                 ROLLOUT_FAILED: "failed", ROLLOUT_SUCCEEDED: "succeeded", ROLLOUT_ROLLED_BACK: "rolled back"}[event]
    names = sorted({name for _, _, name in clusters})
    alerting.emit(alerting.Message(
        event=event, title=f"{app.name} revision {rollout.revision.number}: {what}",
        text=f"rollout #{rollout.pk} on {', '.join(names[:10])}" + (f" and {len(names) - 10} more" if len(names) > 10
                                                                   else ""),
        severity="critical" if event == ROLLOUT_FAILED else "info",
        url=alerting.link(rollout.get_absolute_url()), teams=teams, by_team=True,
        clusters=tuple({pk for pk, _, _ in clusters}), environments=tuple({env for _, env, _ in clusters}),
        data={"rollout": rollout.pk, "application": app.name, "revision": rollout.revision.number,
              "state": rollout.state, "stage": stage.name if stage else "", "clusters": names}), rules=rules)
