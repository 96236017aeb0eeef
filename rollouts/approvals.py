"""Approvals: the one place their rules live (who may decide, what counts, how long it lasts), for pages, API
and the engine alike."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from foundation.audit import record
from foundation.roles import APPROVER, has_role_anywhere
from governance.choices import Severity
from governance.models import Violation
from inventory.choices import ClusterStatus
from inventory.people.access import access_of, can
from rollouts import calendar, windows
from rollouts.alerts import notify
from rollouts.choices import (
    Decision,
    RolloutState,
    StageState,
    TargetState,
)
from rollouts.models import Approval, Rollout, Stage
from rollouts.rendering import overrides_in_effect, refresh_stage, stage_digest, stage_digests
from rollouts.services import RolloutError, kick

log = logging.getLogger(__name__)
HEALTHY = (ClusterStatus.CONNECTED,)


# ---------------------------------------------------------------------------------------------
# Approvals: the one place their rules live


def approval_ttl(stage: Stage) -> tuple[timedelta, str]:
    """How long an approval of `stage` lasts, and why: the shortest of its clusters' environments'
    (FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT, FLEETWEB_APPROVAL_TTL where one has none), or the application's own
    `approval_ttl` when shorter (its owners may shorten it, never lengthen it)."""
    default = settings.FLEETWEB_APPROVAL_TTL
    by_environment = settings.FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT
    environments = set(stage.targets.values_list("cluster__environment", flat=True))
    seconds, why = min(((by_environment[e], f"{e} clusters") if e in by_environment else (default, "default")
                        for e in environments), default=(default, "default"))
    app = stage.rollout.application
    if app.approval_ttl and app.approval_ttl < seconds:
        seconds, why = app.approval_ttl, f"application {app.name}"
    return timedelta(seconds=seconds), why


def duration(span: timedelta) -> str:
    """4 h, 30 min, 45 s."""
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


# What an approver may require to hold when the stage starts; a condition that fails voids the approval.
CONDITIONS = {
    "in_window": "each cluster inside one of its allow windows",
    "healthy_minutes": "every earlier stage succeeded and healthy for at least N minutes",
    "no_critical": "no open critical violation on the stage's clusters",
}
MAX_HEALTHY_MINUTES = 7 * 24 * 60


def clean_conditions(raw) -> dict:
    """Checked conditions (RolloutError naming the field otherwise); empty: none."""
    if raw in (None, "", {}):
        return {}
    if not isinstance(raw, dict) or set(raw) - set(CONDITIONS):
        raise RolloutError({"conditions": f"Conditions are an object of {', '.join(CONDITIONS)}."})
    out: dict = {}
    for key in ("in_window", "no_critical"):
        if key in raw:
            if not isinstance(raw[key], bool):
                raise RolloutError({"conditions": f"{key} is true or false."})
            if raw[key]:
                out[key] = True
    if raw.get("healthy_minutes") not in (None, 0):
        minutes = raw["healthy_minutes"]
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 < minutes <= MAX_HEALTHY_MINUTES:
            raise RolloutError({"conditions": f"healthy_minutes is a number of minutes, 1 to {MAX_HEALTHY_MINUTES}."})
        out["healthy_minutes"] = minutes
    return out


def describe_conditions(conditions: dict) -> str:
    words = []
    if conditions.get("in_window"):
        words.append("only inside an allow window")
    if conditions.get("healthy_minutes"):
        words.append(f"only once earlier stages were healthy for {conditions['healthy_minutes']} min")
    if conditions.get("no_critical"):
        words.append("only with no open critical violation")
    return "; ".join(words)


def condition_verdict(approval: Approval, stage: Stage, now) -> tuple[str, datetime | None, str]:
    """('ok' | 'wait' | 'fail', when to look again for 'wait', why for 'fail') of an approval's conditions now."""
    conditions = approval.conditions or {}
    wait: datetime | None = None
    clusters = [t.cluster for t in stage.targets.select_related("cluster")]
    if conditions.get("no_critical"):
        critical = sorted(set(Violation.objects.filter(cluster__in=clusters, resolved_at__isnull=True,
                                                       severity=Severity.CRITICAL)
                              .values_list("cluster__name", flat=True)))
        if critical:
            return "fail", None, f"a critical violation is open on {', '.join(critical[:5])}"
    if conditions.get("healthy_minutes"):
        need = timedelta(minutes=conditions["healthy_minutes"])
        for earlier in stage.rollout.stages.filter(index__lt=stage.index).order_by("index"):
            if earlier.state != StageState.SUCCEEDED or earlier.finished_at is None:
                return "wait", None, ""
            failed = list(earlier.targets.filter(state=TargetState.FAILED).values_list("cluster__name", flat=True))
            unhealthy = list(earlier.targets.exclude(cluster__status__in=HEALTHY)
                             .values_list("cluster__name", flat=True))
            if failed or unhealthy:
                return "fail", None, (f"stage {earlier.name} did not stay healthy: "
                                      f"{', '.join((failed + unhealthy)[:5])}")
            if earlier.finished_at + need > now:
                wait = max(wait or now, earlier.finished_at + need)
    if conditions.get("in_window"):
        held = calendar.holding(clusters)
        decided = calendar.decisions(clusters, now)
        without = [c.name for c in clusters if not any(w.kind == windows.ALLOW for w in held[c.pk])]
        if without:
            return "fail", None, f"no allow window holds {', '.join(without[:5])}"
        closed = [d for c in clusters if not (d := decided[c.pk]).allowed]
        if closed:
            opens = [d.opens_at for d in closed if d.opens_at is not None]
            return "wait", max(opens) if opens and len(opens) == len(closed) else now + timedelta(minutes=1), ""
    return ("wait", wait, "") if wait else ("ok", None, "")


def void(approvals: list[tuple[Approval, str]], stage: Stage, now) -> None:
    """Void these approvals, each with its reason; the stage says so and asks its approvers again."""
    if not approvals:
        return
    for approval, reason in approvals:
        Approval.objects.filter(pk=approval.pk, voided_at__isnull=True).update(voided_at=now, void_reason=reason[:255])
    words = "; ".join(f"the approval by {a.user.get_username()} is void: {reason}" for a, reason in approvals)
    Stage.objects.filter(pk=stage.pk).update(message=words[:2000])
    stage.message = words[:2000]
    if stage.state == StageState.AWAITING_APPROVAL:
        notify("stage.awaiting_approval", stage.rollout, stage=stage)


def excluded_deciders(stage: Stage) -> dict[int, str]:
    """{user id: why} of the people who may not decide on this stage: whoever requested the rollout, wrote the
    revision, or wrote an override in effect for one of the stage's clusters (no one reviews their own change)."""
    rollout = stage.rollout
    excluded: dict[int, str] = {}
    targets = list(stage.targets.select_related("cluster"))
    overrides = overrides_in_effect(rollout.application, [t.cluster for t in targets])
    for t in targets:
        override = overrides[t.cluster_id]
        if override is not None and override.updated_by_id:
            excluded.setdefault(override.updated_by_id,
                                f"You wrote the override for group {override.group.name} that {t.cluster.name} "
                                f"receives: someone else must approve it.")
    if rollout.revision.author_id:
        excluded[rollout.revision.author_id] = (f"You wrote revision {rollout.revision.number}: someone else must "
                                                f"approve it.")
    if rollout.requested_by_id:
        excluded[rollout.requested_by_id] = "You requested this rollout: someone else must approve it."
    return excluded


def valid_approvals(stage: Stage, *, now=None) -> list[Approval]:
    """Approvals that count now: approve decisions for the rollout's revision covering exactly the objects each
    cluster would receive now, not voided, not expired, one per person, none from an excluded person (requester,
    revision author, override author), only from users who still hold the approver role."""
    now = now or timezone.now()
    rollout = stage.rollout
    current = stage_digests(stage)
    excluded = excluded_deciders(stage)
    counted, users = [], set()
    for a in stage.approvals.filter(decision=Decision.APPROVE, voided_at__isnull=True,
                                    revision_id=rollout.revision_id).select_related("user").order_by("created_at"):
        if a.expires_at <= now or a.user_id in users or a.user_id in excluded or a.digests != current:
            continue
        if not can(a.user, "approve", rollout.application):  # still an approver of this application's team
            continue
        users.add(a.user_id)
        counted.append(a)
    return counted


def check_can_decide(stage: Stage, user) -> None:
    """Raise RolloutError (403 or 409) unless `user` may approve or reject `stage` now."""
    rollout = stage.rollout
    if not can(user, "approve", rollout.application):
        team = rollout.application.approving_team_id
        who = (f"approvers of team {rollout.application.approver_team or rollout.application.owner_team}"
               if team else "users with the approver role")
        raise RolloutError(f"Only {who} may approve or reject a stage of {rollout.application.name}.", status=403)
    excluded = excluded_deciders(stage)
    if user.pk in excluded:
        raise RolloutError(excluded[user.pk], status=403)
    if stage.state != StageState.AWAITING_APPROVAL:
        raise RolloutError(f"Stage '{stage.name}' is {stage.get_state_display()}, not awaiting approval.",
                           conflict=True)
    if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
        raise RolloutError(f"The rollout is {rollout.get_state_display()}.", conflict=True)
    if stage.approvals.filter(user=user, voided_at__isnull=True, revision_id=rollout.revision_id,
                              expires_at__gt=timezone.now()).exists():
        raise RolloutError("You already decided on this stage.", conflict=True)


def _lock_for_decision(stage: Stage, *, seen_digest: str) -> Stage:
    """Lock the rollout, then the stage (the engine and the actions lock the rollout first too), bring the
    frozen objects up to date and refuse when they are not what the approver was shown."""
    Rollout.objects.select_for_update().filter(pk=stage.rollout_id).first()
    stage = Stage.objects.select_for_update().select_related("rollout__application", "rollout__revision").get(
        pk=stage.pk)
    if stage.state == StageState.AWAITING_APPROVAL:
        refresh_stage(stage, reason="changed before this decision")
    if seen_digest and seen_digest != stage_digest(stage):
        raise RolloutError("What this stage would apply changed since you opened it: look at it again before "
                           "deciding.", conflict=True)
    return stage


def approve_stage(stage: Stage, *, user, comment: str = "", seen_digest: str = "", source_ip: str = "",
                  conditions: dict | None = None) -> Stage:
    """Record an approval of exactly the objects each of the stage's clusters would receive now (`seen_digest`,
    when given, must be the stage digest the approver was shown), lasting `approval_ttl(stage)`, with the
    `conditions` (`CONDITIONS`) that must hold when the stage starts; the stage starts once enough distinct approvers
    agreed (checked by the engine too)."""
    conditions = clean_conditions(conditions)
    with transaction.atomic():
        stage = _lock_for_decision(stage, seen_digest=seen_digest)
        check_can_decide(stage, user)
        digests = stage_digests(stage)
        lasts, why = approval_ttl(stage)
        Approval.objects.create(stage=stage, user=user, decision=Decision.APPROVE, comment=comment[:2000],
                                revision_id=stage.rollout.revision_id, digests=digests, conditions=conditions,
                                expires_at=timezone.now() + lasts)
        count = len(valid_approvals(stage))
        record(user=user, action="rollout.approve", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "comment": comment, "approvals": count,
                      "required": stage.approvals_required, "revision": stage.rollout.revision.number,
                      "stage_digest": stage_digest(stage), "conditions": conditions,
                      "lasts_seconds": int(lasts.total_seconds()), "lasts_because": why})
        # Beat picks it up too if the kick below is lost (broker down): the gate is re-checked either way.
        kick(stage.rollout)
    return stage


def reject_stage(stage: Stage, *, user, comment: str, seen_digest: str = "", source_ip: str = "") -> Stage:
    """A rejection stops the rollout: the stage is rejected, later stages never run. `seen_digest` is accepted for
    one signature with `approve_stage` and not compared: a rejection stands whatever changed since."""
    if not comment.strip():
        raise RolloutError({"comment": "Say why you reject it."})
    with transaction.atomic():
        stage = _lock_for_decision(stage, seen_digest="")
        check_can_decide(stage, user)
        now = timezone.now()
        Approval.objects.create(stage=stage, user=user, decision=Decision.REJECT, comment=comment[:2000],
                                revision_id=stage.rollout.revision_id, digests=stage_digests(stage),
                                expires_at=now + approval_ttl(stage)[0])
        stage.state, stage.finished_at = StageState.REJECTED, now
        stage.message = f"rejected by {user.get_username()}: {comment}"[:2000]
        stage.save()
        Rollout.objects.filter(pk=stage.rollout_id).update(state=RolloutState.FAILED, finished_at=now,
                                                           message=stage.message, next_step_at=None)
        stage.rollout.state, stage.rollout.finished_at = RolloutState.FAILED, now  # what the webhook announces
        stage.rollout.message = stage.message
        record(user=user, action="rollout.reject", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "comment": comment})
        notify("rollout.failed", stage.rollout, stage=stage)
    return stage


def pending_approvals_for(user) -> QuerySet:
    """Stages awaiting approval that this user may approve now (never their own rollouts), of the applications
    whose approver team they approve for (global approvers: applications of no team)."""
    if not has_role_anywhere(user, APPROVER):
        return Stage.objects.none()
    access = access_of(user)
    teams = Q(rollout__application__owner_team_id__in=access.teams_with(APPROVER),
              rollout__application__approver_team__isnull=True)
    teams |= Q(rollout__application__approver_team_id__in=access.teams_with(APPROVER))
    if APPROVER in access.global_roles:
        teams |= Q(rollout__application__owner_team__isnull=True, rollout__application__approver_team__isnull=True)
    decided = Approval.objects.filter(user=user, voided_at__isnull=True, expires_at__gt=timezone.now()
                                      ).values_list("stage_id", flat=True)
    stages = (Stage.objects.filter(teams, state=StageState.AWAITING_APPROVAL,
                                   rollout__state__in=[RolloutState.RUNNING, RolloutState.PAUSED])
              .exclude(rollout__requested_by=user).exclude(rollout__revision__author=user).exclude(pk__in=decided)
              .select_related("rollout__application", "rollout__revision", "rollout__requested_by", "group"))
    # Override authors are excluded per cluster: few stages await approval at once, so ask each.
    return Stage.objects.filter(pk__in=[s.pk for s in stages if user.pk not in excluded_deciders(s)]).select_related(
        "rollout__application", "rollout__revision", "rollout__requested_by", "group")
