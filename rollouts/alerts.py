"""Rollouts' part of alerting (notifications/alerting.py): a deployed application that drifted (a field
Fleetweb applied changed by another field manager) or lost an object is a condition, open until a check finds it
in sync again (Re-apply, auto-correct, or the change undone by hand); a stage awaiting approval and a rollout
failed, succeeded or rolled back are events, sent by `rollouts.services.notify`."""

from __future__ import annotations

from django.db.models import Q

from notifications import events
from notifications.alerting import Finding, link
from rollouts.choices import DriftState
from rollouts.models import Drift

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
