"""Drift corrections, the back office of `rollouts.drift`: checking deployments (scheduled by beat and on demand),
storing what a check found, Re-apply (by an operator, audited, or by the application's own automatic correction),
and the requests for both that pages and the API make. What drift is, and how a check compares, is `rollouts.drift`.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from foundation.audit import record
from foundation.queueing import enqueue_after_commit
from inventory import history, port
from inventory.choices import ClusterEventKind, ClusterStatus, Environment
from inventory.models import Cluster
from inventory.people.access import deploy_refusal
from rollouts import calendar, members, rendering
from rollouts.choices import ACTIVE_ROLLOUT_STATES, DriftState, RolloutState
from rollouts.drift import Session, examine, ignore_rules, keep_ignored, overall
from rollouts.errors import RolloutError, check_change
from rollouts.models import Application, Deployed, Drift, Rollout

log = logging.getLogger(__name__)


def rollout_in_progress(deployed: Deployed) -> Rollout | None:
    """An active or paused rollout of the application that reaches this cluster."""
    return (Rollout.objects.filter(application_id=deployed.application_id,
                                   stages__targets__cluster_id=deployed.cluster_id)
            .filter(Q(state__in=ACTIVE_ROLLOUT_STATES) | Q(state=RolloutState.PAUSED)).order_by("pk").first())


CORRECTING_FOR = timedelta(minutes=10)  # a re-apply lost with the broker no longer holds auto-correct back


def correcting(drift: Drift, now) -> bool:
    return drift.correcting_since is not None and drift.correcting_since > now - CORRECTING_FOR


def check(deployed_id: int, *, now=None) -> Drift | None:
    """Check one deployment now and store the result (None: it is gone, or a rollout of it is in progress)."""
    try:
        deployed = Deployed.objects.select_related("application", "cluster", "revision").get(pk=deployed_id)
    except Deployed.DoesNotExist:
        return None
    if rollout_in_progress(deployed) is not None:
        return None
    started = time.monotonic()
    # Deployed before Fleetweb kept the applied objects: compare with the revision as rendered now.
    objects = deployed.objects_applied or rendering.render_for(deployed.application, deployed.revision,
                                                               deployed.cluster)
    rows: list[dict] = []
    error = ""
    session = None
    try:
        session = Session(port.connect(deployed.cluster))
        rows = examine(session, objects, deployed.application.name, ignore_rules(deployed.application))
    except port.KubeError as exc:
        error = exc.message
    except Exception as exc:  # bad data from a cluster must not stop the checks of the others
        log.exception("drift check of %s failed", deployed)
        error = f"internal error during the drift check: {type(exc).__name__}"
    finally:
        calls = session.calls if session is not None else 0
        if session is not None:
            session.close()
    return _store(deployed, rows, error, calls=calls, ms=int((time.monotonic() - started) * 1000),
                  now=now or timezone.now())


def _summary(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if r["state"] == DriftState.DRIFTED:
            who = sorted({m["manager"] for f in r["fields"] for m in f["managers"]})
            parts.append(f"{r['kind']} {r['name']}: " + ", ".join(f["path"] for f in r["fields"][:3])
                         + (f" (by {', '.join(who)})" if who else ""))
        elif r["state"] == DriftState.MISSING:
            parts.append(f"{r['kind']} {r['name']} missing")
    return "; ".join(parts)


def _store(deployed: Deployed, rows: list[dict], error: str, *, calls: int, ms: int, now) -> Drift | None:
    """Keep the result; a check that could not be made keeps the last known state (an unreachable cluster is not
    "back in sync") and says why."""
    with transaction.atomic():
        drift = Drift.objects.select_for_update().filter(deployed_id=deployed.pk).first()
        if drift is None:
            if not Deployed.objects.filter(pk=deployed.pk).exists():
                return None  # rolled back to nothing meanwhile
            drift = Drift.objects.create(deployed=deployed)
        if drift.revision_id not in (None, deployed.revision_id):
            return drift  # a rollout deployed another revision while this check ran: its result is void
        before = drift.state
        state = overall(rows) if not error else before if before != DriftState.UNCHECKED else DriftState.UNKNOWN
        drifted = state in (DriftState.DRIFTED, DriftState.MISSING)
        drift.revision = deployed.revision
        drift.state = state
        if not error or not drift.objects_state:
            drift.objects_state = rows
        drift.error = error[:2000]
        drift.checked_at = now
        drift.since = (drift.since or now) if drifted else None
        drift.next_check_at = now + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL)
        drift.requests, drift.duration_ms = calls, ms
        drift.save()
        if state != before and (drifted or before in (DriftState.DRIFTED, DriftState.MISSING)):
            app = deployed.application
            what = f"{app.name} revision {deployed.revision.number}"
            summary = (f"{what} drifted: {_summary(rows)}" if state == DriftState.DRIFTED else
                       f"{what}: {_summary(rows)}" if state == DriftState.MISSING else
                       f"{what} back in sync" if state == DriftState.IN_SYNC else f"{what}: drift unknown, {error}")
            history.record(history.event(deployed.cluster_id, ClusterEventKind.ROLLOUT, summary[:500], at=now,
                                         before={"drift": before}, after={"drift": state,
                                                                          "application": app.name}))
    if state in (DriftState.DRIFTED, DriftState.MISSING) and deployed.application.correct_drift \
            and not correcting(drift, now):
        try:
            request_reapply(deployed, user=None, via="auto-correct")
        except RolloutError as exc:  # a rollout started meanwhile, or one is already queued
            log.info("drift of %s not corrected now: %s", deployed, exc)
    return drift


# ---------------------------------------------------------------------------------------------
# Scheduling and Re-apply


ANSWERING = (ClusterStatus.CONNECTED, ClusterStatus.DEGRADED)


def claim_due(*, now=None, limit: int = 200) -> list[int]:
    """Deployments due for a check, on clusters that answer; their next check moves one interval on."""
    now = now or timezone.now()
    missing = Deployed.objects.filter(drift__isnull=True).values_list("pk", "revision_id")[:1000]
    Drift.objects.bulk_create([Drift(deployed_id=pk, revision_id=revision, next_check_at=now)
                               for pk, revision in missing], ignore_conflicts=True)
    with transaction.atomic():
        due = list(Drift.objects.filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True),
                                        deployed__cluster__status__in=ANSWERING)
                   .order_by("next_check_at").select_for_update(skip_locked=True, of=("self",))
                   .values_list("deployed_id", flat=True)[:limit])
        Drift.objects.filter(deployed_id__in=due).update(
            next_check_at=now + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL))
    return due


def stuck_reapplies(*, now=None) -> list[int]:
    """Re-applies requested more than two minutes ago whose task never ran (lost with the broker)."""
    now = now or timezone.now()
    return list(Drift.objects.filter(correcting_since__lt=now - timedelta(minutes=2),
                                     correcting_since__gt=now - CORRECTING_FOR).values_list("deployed_id", flat=True))


def reapply_refusal(deployed: Deployed) -> str:
    """Why the deployed objects may not be applied to the cluster as it is now ('' when they may): it left the owner
    team's scope, or it is prod now and no approval covered those objects."""
    refusal = deploy_refusal(None, deployed.application, [deployed.cluster])
    if refusal:
        return f"not re-applied: {refusal}"
    if deployed.cluster.environment == Environment.PROD and not deployed.approved:
        return (f"not re-applied: {deployed.cluster.name} is prod now and no approval covered what was deployed "
                "there; roll the application out again (a prod stage needs an approval)")
    return ""


def window_refusal(cluster: Cluster) -> str:
    """'' when the cluster's change windows allow a change now and it is not busy; else why not."""
    why = calendar.refusal(cluster)
    return f"not re-applied: {why}" if why else ""


def reapply(deployed_id: int) -> Drift | None:
    """Apply the deployment's objects again, exactly as deployed (never taking over what is not the
    application's), then check it; run by a worker after `request_reapply`."""
    try:
        deployed = Deployed.objects.select_related("application", "cluster", "revision").get(pk=deployed_id)
    except Deployed.DoesNotExist:
        return None
    active = rollout_in_progress(deployed)
    problem = f"not re-applied: rollout #{active.pk} of {deployed.application.name} is in progress" if active else ""
    # Whoever asked (a person, or the application's own correction), the cluster as it is now decides, and its change
    # windows now (a freeze may have begun since it was asked).
    problem = problem or reapply_refusal(deployed) or window_refusal(deployed.cluster)
    if not problem:
        try:
            rules = ignore_rules(deployed.application)
            members.push(deployed.cluster, deployed.application.namespace, deployed.objects_applied,
                         renew=lambda: None, application=deployed.application,
                         adjust=(lambda obj, live: keep_ignored(obj, live, rules)) if rules else None)
        except port.KubeError as exc:
            problem = f"re-apply failed: {exc.message}"
    now = timezone.now()
    Drift.objects.filter(deployed_id=deployed.pk).update(correcting_since=None)
    what = f"{deployed.application.name} revision {deployed.revision.number}"
    history.record(history.event(deployed.cluster_id, ClusterEventKind.ROLLOUT,
                                 (problem or f"re-applied {what} to correct drift")[:500], at=now,
                                 after={"application": deployed.application.name,
                                        "revision": deployed.revision.number, "reapplied": not problem}))
    if problem:
        Drift.objects.filter(deployed_id=deployed.pk).update(error=problem[:2000])
        return Drift.objects.filter(deployed_id=deployed.pk).first()
    return check(deployed.pk, now=now)


def rows_for(deployments) -> list[Drift]:
    """Each deployment's drift (unchecked when none was made yet), for pages and the API."""
    out = []
    for deployed in deployments:
        try:
            out.append(deployed.drift)
        except Drift.DoesNotExist:
            out.append(Drift(deployed=deployed, state=DriftState.UNCHECKED))
    return out


def of_application(app) -> list[Drift]:
    deployments = (Deployed.objects.filter(application=app).select_related("cluster", "revision", "drift")
                   .order_by("cluster__name"))
    return rows_for(deployments)


# ---------------------------------------------------------------------------------------------
# Requests from pages and the API


def deployment_of(app: Application, cluster: Cluster) -> Deployed:
    deployed = (Deployed.objects.select_related("application__owner_team", "cluster", "revision")
                .filter(application=app, cluster=cluster).first())
    if deployed is None:
        raise RolloutError(f"{app.name} is not deployed on {cluster.name}: there is nothing to check or re-apply.",
                           conflict=True)
    return deployed


def request_drift_check(app: Application, cluster: Cluster, *, user) -> None:
    """"Check now" from a page or the API: the operators who may change the application (a check only reads, but
    it dials the cluster, like Sync now)."""
    check_change(user, app)
    deployed = deployment_of(app, cluster)
    enqueue_after_commit("rollouts.tasks.check_drift", deployed.pk,
                         what=f"drift check of {app.name} on {cluster.name}")


def request_reapply(deployed: Deployed, *, user, via: str = "page", source_ip: str = "") -> None:
    """Re-apply the deployed objects of an application on one cluster, exactly as deployed but for the fields its
    `drift_ignore` rules leave to others, which keep their live values (operators who may
    change the application and deploy to that cluster; `user=None`: the application's own drift correction).
    Audited; refused while a rollout of the application reaches that cluster. A worker applies (ids only)."""
    app, cluster = deployed.application, deployed.cluster
    if user is not None:
        check_change(user, app)
        refusal = deploy_refusal(user, app, [cluster])
        if refusal:
            raise RolloutError(f"Not re-applied: {refusal}.", status=403)
    if refusal := reapply_refusal(deployed):
        raise RolloutError(refusal[0].upper() + refusal[1:] + ".", status=403)
    if refusal := window_refusal(cluster):
        raise RolloutError(refusal[0].upper() + refusal[1:] + ".", conflict=True)
    if not deployed.objects_applied:
        raise RolloutError(f"{app.name} was deployed on {cluster.name} before Fleetweb kept the objects it applied: "
                           "roll it out again (re-applying objects rendered now could carry an unapproved "
                           "change).", conflict=True)
    active = rollout_in_progress(deployed)
    if active is not None:
        raise RolloutError(f"Rollout #{active.pk} of {app.name} is in progress on {cluster.name}: it applies "
                           "what it approved; re-apply after it ends.", conflict=True)
    now = timezone.now()
    with transaction.atomic():
        state = Drift.objects.select_for_update().filter(deployed_id=deployed.pk).first()
        if state is not None and correcting(state, now):
            raise RolloutError(f"A re-apply of {app.name} on {cluster.name} is already queued.", conflict=True)
        Drift.objects.update_or_create(deployed=deployed, defaults={"correcting_since": now})
        record(user=user, action="application.reapply", target=app, source_ip=source_ip, message=via,
               after={"cluster": cluster.name, "revision": deployed.revision.number,
                      "drift": state.state if state else "unchecked",
                      "fields": [f"{o['kind']} {o['name']}: {f['path']}" for o in (state.objects_state if state
                                                                                  else []) for f in o["fields"]][:50]})
        enqueue_after_commit("rollouts.tasks.reapply", deployed.pk, what=f"re-apply of {app.name} on {cluster.name}")
