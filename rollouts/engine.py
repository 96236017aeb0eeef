"""The rollout engine: one idempotent step function, run by Celery under a fenced lease.

Every transition is written before the next side effect, so a worker killed at any point leaves a
state the next run continues from: an interrupted apply is applied again (server-side apply makes
that harmless), an interrupted verify is verified again, and a stage never starts before its gate
(approvals counted by `approvals.valid_approvals`) passed.

One engine per rollout, provably: a run holds the lease under a random token (the fence). Every state
write happens inside `Fence.hold`, which locks the rollout row, checks the token and the state the step
started from, and renews the lease; the lease is also renewed before every call to a cluster and is longer
than any single call. So a run whose lease was taken over, or whose rollout was paused, aborted or
rejected meanwhile, stops at its next write and never overwrites the newer state.

What is applied is what was approved: each target's objects are rendered and frozen on the target
(`Target.rendered`, `rendered_digest`) when its stage awaits approval or starts; approvals record the
digests they cover; a stage starts only when they match, and a target whose digest its stage's approvals
did not cover is never applied.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from foundation import leases
from foundation.audit import record
from governance import precheck
from inventory import history, port
from inventory import services as inventory_services
from inventory.choices import ClusterEventKind, Environment
from inventory.people.access import deploy_refusal
from rollouts import alerts, drift, dryrun, gates, manifests, members, ownership, receipts, rendering
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.fence import Fence, LeaseLost, acquire, release
from rollouts.models import Deployed, Revision, Rollout, Stage, Target

log = logging.getLogger(__name__)
POLL = timedelta(seconds=2)
MAX_STEPS = 50
# A message queued and not picked up within this time is queued again by beat (the first may be lost).
QUEUE_GRACE = timedelta(minutes=5)


def advance(rollout_id: int) -> str:
    """Take the rollout as far as it can go now; returns its state (or 'busy' when another run holds it)."""
    Rollout.objects.filter(pk=rollout_id).update(queued_at=None)  # picked up: beat may queue it again
    fence = acquire(rollout_id)
    if fence is None:
        return "busy"
    try:
        for _ in range(MAX_STEPS):
            rollout = Rollout.objects.select_related("application", "revision").get(pk=rollout_id)
            fence.expected = rollout.state
            if not step(rollout, fence):
                break
    except LeaseLost as exc:
        log.info("%s; this run stops", exc)
    finally:
        release(fence)
    return Rollout.objects.get(pk=rollout_id).state


def step_once(rollout_id: int) -> bool | None:
    """One step under its own lease (commands and tests); None when another run holds the rollout."""
    fence = acquire(rollout_id)
    if fence is None:
        return None
    try:
        rollout = Rollout.objects.select_related("application", "revision").get(pk=rollout_id)
        fence.expected = rollout.state
        return step(rollout, fence)
    except LeaseLost:
        return False
    finally:
        release(fence)


def _due():
    now = timezone.now()
    return (Rollout.objects.filter(state__in=[RolloutState.PENDING, RolloutState.RUNNING, RolloutState.ROLLING_BACK],
                                   next_step_at__lte=now)
            .filter(leases.free(now))
            .filter(Q(queued_at__isnull=True) | Q(queued_at__lt=now - QUEUE_GRACE)))


def due_rollouts() -> list[int]:
    """Claim active rollouts whose next step is due, that no run holds and that are not queued already (beat
    queues these); each claimed one is marked queued until a worker picks it up."""
    with transaction.atomic():
        ids = list(_due().select_for_update(skip_locked=True).values_list("pk", flat=True)[:200])
        Rollout.objects.filter(pk__in=ids).update(queued_at=timezone.now())
    return ids


def _schedule(fence: Fence, when) -> None:
    Rollout.objects.filter(pk=fence.rollout_id, lease_token=fence.token).update(next_step_at=when)


def step(rollout: Rollout, fence: Fence) -> bool:
    """One transition; True when something changed and another step may follow at once."""
    now = timezone.now()
    if rollout.state == RolloutState.PENDING:
        with fence.hold():
            Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.RUNNING, started_at=now)
        return True
    if rollout.state == RolloutState.ROLLING_BACK:
        return _rollback_step(rollout, fence, now)
    if rollout.state != RolloutState.RUNNING:
        return False
    stage = rollout.stages.exclude(state=StageState.SUCCEEDED).order_by("index").first()
    if stage is None:
        with fence.hold():
            _finish(rollout, RolloutState.SUCCEEDED, "every stage succeeded", now)
            alerts.notify("rollout.succeeded", rollout)
        return False
    stage.rollout = rollout
    if stage.state in (StageState.PENDING, StageState.AWAITING_APPROVAL):
        return _enter_stage(rollout, stage, fence, now)
    if stage.state in (StageState.APPLYING, StageState.VERIFYING):
        return _progress_stage(rollout, stage, fence, now)
    if stage.state == StageState.SOAKING:
        return _leave_stage(rollout, stage, fence, now)
    return False


def _enter_stage(rollout: Rollout, stage: Stage, fence: Fence, now) -> bool:
    """Start the stage when its entry gates pass (`rollouts.gates.entry`); else wait for approval or recheck."""
    waiting_for = "changed while the stage awaited approval" if stage.state == StageState.AWAITING_APPROVAL else \
        "changed before the stage started"
    if (rollout.revision.validation or {}).get("state") == dryrun.CHECKING:
        # Its check's message is queued behind others (or was lost): this is a worker too, so check it here, before
        # the rollout is locked (within the dry run's budget, well inside the lease).
        dryrun.run(rollout.revision_id)
        rollout.revision.refresh_from_db(fields=["validation"])
        fence.renew()
    with fence.hold():
        rendering.refresh_stage(stage, reason=waiting_for)
        verdict = gates.entry(stage, now)
        if verdict.passed:
            _start_stage(stage, now, verdict)
            return True
        if verdict.refused:
            _refuse_stage(rollout, stage, verdict, now)
            return False
        if stage.approvals_required and stage.state == StageState.PENDING and not verdict.not_yet:
            _set_stage(stage, StageState.AWAITING_APPROVAL, awaiting_since=now)
            alerts.notify("stage.awaiting_approval", rollout, stage=stage)
            return True
        _schedule(fence, verdict.recheck_at)
    return False


def _refuse_stage(rollout: Rollout, stage: Stage, verdict: gates.Verdict, now) -> None:
    """An entry gate refused the stage before anything was applied (called inside `Fence.hold`): the refused targets
    say why, the stage and the rollout fail, the people who follow it are told."""
    for target_id, words in verdict.evidence.get("target_refusals", {}).items():
        Target.objects.filter(pk=target_id).update(state=TargetState.FAILED, finished_at=now,
                                                   message=f"not applied: {words}"[:2000])
    message = f"stage '{stage.name}' refused before it started: {verdict.message}"
    _set_stage(stage, StageState.FAILED, finished_at=now, message=message[:2000])
    _finish(rollout, RolloutState.FAILED, message, now)
    alerts.notify("rollout.failed", rollout, stage=stage)


def _leave_stage(rollout: Rollout, stage: Stage, fence: Fence, now) -> bool:
    """Mark the soaking stage succeeded when its exit gates pass (`rollouts.gates.exit`)."""
    verdict = gates.exit(stage, now)
    if not verdict.passed:
        _schedule(fence, verdict.recheck_at)
        return False
    with fence.hold():
        _set_stage(stage, StageState.SUCCEEDED, finished_at=now)
        record(user=None, action="rollout.stage_succeeded", target=rollout,
               target_name=f"rollout #{rollout.pk} stage {stage.name}", after=verdict.evidence or None)
    return True


def _set_stage(stage: Stage, state: str, **fields) -> None:
    """Move a stage on from the state it was read in (never over a state someone else wrote meanwhile)."""
    if not Stage.objects.filter(pk=stage.pk, state=stage.state).update(state=state, **fields):
        raise LeaseLost(f"stage {stage.pk} is no longer {stage.state}")
    stage.state = state


def _start_stage(stage: Stage, now, verdict: gates.Verdict) -> None:
    """Into APPLYING; the digests the approvals covered are frozen on the stage (what may be applied)."""
    digests = verdict.evidence.get("digests") or {}
    fields = {"started_at": now, "approved_digests": digests}
    if stage.approvals_required:
        fields["approved_at"] = now
    _set_stage(stage, StageState.APPLYING, **fields)
    stage.approved_digests = digests
    record(user=None, action="rollout.stage_started", target=stage.rollout,
           target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
           after={"stage": stage.name, "approved_by": verdict.evidence.get("approved_by", []),
                  "stage_digest": rendering.stage_digest(stage)})


def _finish(rollout: Rollout, state: str, message: str, now) -> None:
    """Called inside `Fence.hold`: the rollout is locked and still in the state the step read."""
    Rollout.objects.filter(pk=rollout.pk).update(state=state, message=message[:2000], finished_at=now,
                                                 next_step_at=None)
    rollout.state = state
    record(user=None, action=f"rollout.{state}", target=rollout, message=message)


def _progress_stage(rollout: Rollout, stage: Stage, fence: Fence, now) -> bool:
    """Apply and verify the stage's targets, at most `max_parallel` in flight; fail the stage past its failure
    budget; soak when every target is ready (or failed within the budget)."""
    targets = list(stage.targets.select_related("cluster").order_by("cluster__name"))
    changed = _resume_interrupted(rollout, stage, targets, fence)
    for t in targets:
        if t.state == TargetState.VERIFYING:
            changed |= _verify_target(rollout, t, rollout.revision, fence, now, ok=TargetState.READY,
                                      failed=TargetState.FAILED)
    if _over_budget(targets, stage):
        _fail_stage(rollout, stage, targets, fence, now)
        return False
    changed |= _start_targets(rollout, stage, targets, fence, now)
    if all(t.state in (TargetState.READY, TargetState.FAILED, TargetState.SKIPPED) for t in targets):
        if _over_budget(targets, stage):
            return True  # the next step fails the stage
        with fence.hold():
            _set_stage(stage, StageState.SOAKING, soak_until=now + timedelta(seconds=stage.soak_time))
        return True
    pending = any(t.state in (TargetState.PENDING, TargetState.APPLYING) for t in targets)
    new_state = StageState.APPLYING if pending else StageState.VERIFYING
    if new_state != stage.state:
        with fence.hold():
            _set_stage(stage, new_state)
    _schedule(fence, now + POLL)
    return changed and pending


def _resume_interrupted(rollout: Rollout, stage: Stage, targets: list[Target], fence: Fence) -> bool:
    """Targets left in APPLYING by a run that died mid-apply are applied again (server-side apply is idempotent)."""
    changed = False
    for t in targets:
        if t.state == TargetState.APPLYING:
            with fence.hold():
                Target.objects.filter(pk=t.pk).update(attempts=F("attempts") + 1)
            _apply_target(rollout, stage, t, rollout.revision, fence)
            changed = True
    return changed


def _over_budget(targets: list[Target], stage: Stage) -> bool:
    """More targets failed than the stage allows, or too few can still succeed for its minimum success ratio
    (skipped targets do not succeed)."""
    if sum(1 for t in targets if t.state == TargetState.FAILED) > stage.failures_allowed:
        return True
    if stage.min_success_ratio is None or not targets:
        return False
    possible = sum(1 for t in targets if t.state not in (TargetState.FAILED, TargetState.SKIPPED))
    return possible / len(targets) < stage.min_success_ratio


def _fail_stage(rollout: Rollout, stage: Stage, targets: list[Target], fence: Fence, now) -> None:
    failed = [t for t in targets if t.state == TargetState.FAILED]
    message = (f"stage '{stage.name}' failed on {', '.join(t.cluster.name for t in failed)}: "
               + "; ".join(t.message for t in failed)[:1500])
    if stage.min_success_ratio is not None and len(failed) <= stage.failures_allowed:
        possible = sum(1 for t in targets if t.state not in (TargetState.FAILED, TargetState.SKIPPED))
        message = (f"stage '{stage.name}': at most {possible} of {len(targets)} targets can succeed, at least "
                   f"{stage.min_success_ratio:.0%} needed; " + message)
    with fence.hold():
        _set_stage(stage, StageState.FAILED, finished_at=now, message=message)
        _finish(rollout, RolloutState.FAILED, message, now)
        alerts.notify("rollout.failed", rollout, stage=stage)


def _start_targets(rollout: Rollout, stage: Stage, targets: list[Target], fence: Fence, now) -> bool:
    """Apply pending targets while fewer than `max_parallel` are applying or verifying."""
    in_flight = sum(1 for t in targets if t.state in (TargetState.APPLYING, TargetState.VERIFYING))
    changed = False
    for t in targets:
        if t.state != TargetState.PENDING or in_flight >= stage.max_parallel:
            continue
        with fence.hold():
            if not Target.objects.filter(pk=t.pk, state=TargetState.PENDING).update(
                    state=TargetState.APPLYING, attempts=t.attempts + 1, started_at=now):
                raise LeaseLost(f"target {t.pk} is no longer pending")
        t.state, t.attempts = TargetState.APPLYING, t.attempts + 1
        _apply_target(rollout, stage, t, rollout.revision, fence)
        in_flight += 1
        changed = True
    return changed


def _objects(rollout: Rollout, t: Target, revision: Revision) -> list[dict]:
    """The rollout's revision as frozen for this target; the previous one (rollback) as deployed and verified then
    (frozen with the rollout). Only a deployment from before objects were kept is rendered now."""
    if revision.pk == rollout.revision_id and t.rendered_digest:
        return t.rendered
    if revision.pk == t.previous_revision_id and t.previous_objects:
        return t.previous_objects
    return rendering.render_for(rollout.application, revision, t.cluster)


def _refusal(rollout: Rollout, stage: Stage, t: Target, *, forward: bool) -> str:
    """Why this target may not receive anything now, judged on the cluster as it is now ('' when it may): it left
    the owner team's scope, or it is prod and nothing approved what would be applied. Asked before every apply:
    stage start, resume after a crash, rollback."""
    refusal = deploy_refusal(None, rollout.application, [t.cluster])
    if refusal:
        return f"skipped: {refusal}"
    if t.cluster.environment != Environment.PROD:
        return ""
    if forward and stage.approvals_required < 1:
        return (f"skipped: {t.cluster.name} became prod after this stage was planned without an approval; roll out "
                "to it in a stage that needs one")
    if not forward and not t.previous_objects:
        return (f"skipped: {t.cluster.name} is prod and nothing deployed there before was kept; a rollback would apply "
                f"revision {t.previous_revision.number if t.previous_revision else '?'} rendered now, which no "
                "approval covered. Roll that revision out instead (its prod stage needs an approval)")
    if not forward and not t.previous_approved:
        return (f"skipped: {t.cluster.name} is prod now and no approval covered what it ran before; roll that "
                "revision out instead (its prod stage needs an approval)")
    return ""


def _apply_target(rollout: Rollout, stage: Stage, t: Target, revision: Revision, fence: Fence, *,
                  next_state: str = TargetState.VERIFYING, failed: str = TargetState.FAILED) -> None:
    """Server-side apply the target's objects (namespace first); then the target waits for readiness until its
    deadline. On the forward path only frozen objects an approval covered (or that needed none) are applied."""
    forward = revision.pk == rollout.revision_id
    skipped = _refusal(rollout, stage, t, forward=forward)
    if skipped:
        with fence.hold():
            Target.objects.filter(pk=t.pk).update(state=TargetState.SKIPPED, message=skipped[:2000],
                                                  finished_at=timezone.now())
        t.state, t.message = TargetState.SKIPPED, skipped
        return
    problem = ""
    if forward and stage.approvals_required and stage.approved_digests.get(str(t.cluster_id)) != t.rendered_digest:
        problem = "not applied: these objects are not the ones the approval covered"
    elif forward and not t.rendered_digest:
        problem = "not applied: nothing was rendered for this cluster when the stage started"
    if not problem:
        problem = ownership.namespace_refusal(rollout.application, t.cluster)
        problem = f"not applied: {problem}" if problem else ""
    objects = _objects(rollout, t, revision) if not problem else []
    if not problem:
        refused = [r for r in precheck.check({t.cluster_id: objects}, [t.cluster])[t.cluster_id] if r.enforced]
        problem = f"not applied: {'; '.join(r.words() for r in refused)}" if refused else ""
    if not problem:
        try:
            members.push(t.cluster, rollout.application.namespace, objects, renew=fence.renew,
                         application=rollout.application)
        except port.KubeError as exc:
            problem = f"apply failed: {exc.message}"
    with fence.hold():
        if problem:
            Target.objects.filter(pk=t.pk).update(state=failed, message=problem[:2000], finished_at=timezone.now())
            t.state, t.message = failed, problem
            return
        deadline = gates.health_deadline(stage, timezone.now())
        fields = {"state": next_state, "deadline": deadline, "message": ""}
        if next_state == TargetState.VERIFYING:
            fields["applied_revision"] = revision
        Target.objects.filter(pk=t.pk).update(**fields)
    t.state, t.deadline = next_state, deadline


def _verify_target(rollout: Rollout, t: Target, revision: Revision, fence: Fence, now, *, ok: str,
                   failed: str) -> bool:
    """Read every workload back: ready when observed at the new generation with all replicas updated and
    available. Unreachable clusters are retried until the deadline."""
    try:
        observed = []
        for obj, live in members.read_back(t.cluster, _objects(rollout, t, revision), renew=fence.renew):
            live_revision = (live.get("metadata", {}).get("annotations") or {}).get("fleetweb.io/revision")
            state = manifests.readiness(obj["kind"], live)
            state["ready"] = state["ready"] and live_revision == str(revision.number)
            observed.append({"kind": obj["kind"], "name": obj["metadata"]["name"], **state})
        problem = ""
    except port.KubeError as exc:
        observed, problem = t.observed, exc.message
    verdict, message = gates.health(t, observed, problem, now)
    read_back: dict = {}
    if verdict == "ready":
        # Ready: what the cluster holds must be what was sent and approved, read back now, or it does not count.
        objects = _objects(rollout, t, revision)
        try:
            lives = members.read_all(t.cluster, objects, renew=fence.renew)
        except port.KubeError as exc:
            verdict, message = gates.health(t, observed, f"could not read the objects back: {exc.message}", now)
        else:
            digest, differences = receipts.read_back_digest(objects, lives, drift.ignore_rules(rollout.application))
            read_back = {"read_back_digest": digest, "read_back_differences": differences, "verified_at": now}
            expected = ((t.stage.approved_digests or {}).get(str(t.cluster_id)) or t.rendered_digest
                        if ok == TargetState.READY else rendering.objects_digest(objects))
            if digest != expected:
                verdict = "failed"
                message = ("what the cluster holds is not what was approved: " + "; ".join(differences)
                           if differences else "what the cluster holds is not what was approved")
    with fence.hold():
        if verdict == "ready":
            Target.objects.filter(pk=t.pk).update(state=ok, observed=observed, message="", finished_at=now,
                                                  **read_back)
            t.state = ok
            if ok == TargetState.READY:
                drift.record_deployed(rollout.application, t.cluster, revision, _objects(rollout, t, revision), now,
                                      approved=t.stage.approvals_required > 0)
            _history(rollout, t, revision, "rolled out" if ok == TargetState.READY else "rolled back to", now)
            # The inventory shows the change now, not at the cluster's next periodic sync.
            cluster_id, why = t.cluster_id, f"rollout #{rollout.pk}"
            transaction.on_commit(lambda: inventory_services.request_sync(cluster_id, triggered_by=why))
            return True
        if verdict == "failed":
            Target.objects.filter(pk=t.pk).update(state=failed, observed=observed, message=message[:2000],
                                                  finished_at=now, **read_back)
            t.state, t.message = failed, message
            _history(rollout, t, revision,
                     "failed to roll out" if ok == TargetState.READY else "failed to roll back to", now, message)
            return True
        Target.objects.filter(pk=t.pk).update(observed=observed, message=message[:2000])
    return False


def _history(rollout: Rollout, t: Target, revision: Revision, what: str, now, problem: str = "") -> None:
    """The line on the cluster's History saying what this rollout did there."""
    app = rollout.application
    summary = f"{what} {app.name} revision {revision.number} (rollout #{rollout.pk})"
    if problem:
        summary += f": {problem}"
    actor = rollout.requested_by.get_username() if rollout.requested_by is not None else ""
    history.record(history.event(t.cluster_id, ClusterEventKind.ROLLOUT, summary, at=now, actor=actor,
                                 after={"application": app.name, "revision": revision.number, "rollout": rollout.pk}))


# ---------------------------------------------------------------------------------------------
# Rollback


def _rollback_step(rollout: Rollout, fence: Fence, now) -> bool:
    targets = list(Target.objects.filter(stage__rollout=rollout, state__in=[
        TargetState.ROLLING_BACK, TargetState.ROLLBACK_VERIFYING, TargetState.ROLLED_BACK,
        TargetState.ROLLBACK_FAILED]).select_related("cluster", "stage", "previous_revision"))
    for t in targets:
        if t.state == TargetState.ROLLING_BACK:
            if t.previous_revision is None:
                _remove(rollout, t, fence, now)
            else:
                _apply_target(rollout, t.stage, t, t.previous_revision, fence,
                              next_state=TargetState.ROLLBACK_VERIFYING, failed=TargetState.ROLLBACK_FAILED)
        elif t.state == TargetState.ROLLBACK_VERIFYING and t.previous_revision is not None:
            if _verify_target(rollout, t, t.previous_revision, fence, now, ok=TargetState.ROLLED_BACK,
                              failed=TargetState.ROLLBACK_FAILED) and t.state == TargetState.ROLLED_BACK:
                with fence.hold():
                    drift.record_deployed(rollout.application, t.cluster, t.previous_revision,
                                          _objects(rollout, t, t.previous_revision), now,
                                          approved=t.previous_approved and bool(t.previous_objects))
    if any(t.state in (TargetState.ROLLING_BACK, TargetState.ROLLBACK_VERIFYING) for t in targets):
        _schedule(fence, now + POLL)
        return False
    failed = [t.cluster.name for t in targets if t.state == TargetState.ROLLBACK_FAILED]
    with fence.hold():
        if failed:
            _finish(rollout, RolloutState.FAILED, f"rollback failed on {', '.join(failed)}", now)
        else:
            _finish(rollout, RolloutState.ROLLED_BACK, f"rolled back on {len(targets)} cluster(s)", now)
        alerts.notify("rollout.rolled_back" if not failed else "rollout.failed", rollout)
    return False


def _remove(rollout: Rollout, t: Target, fence: Fence, now) -> None:
    """Rollback where nothing ran before: delete what this rollout applied."""
    try:
        left = members.remove(t.cluster, _objects(rollout, t, rollout.revision), renew=fence.renew,
                              application=rollout.application)
    except port.KubeError as exc:
        with fence.hold():
            Target.objects.filter(pk=t.pk).update(state=TargetState.ROLLBACK_FAILED,
                                                  message=f"removal failed: {exc.message}"[:2000], finished_at=now)
        t.state = TargetState.ROLLBACK_FAILED
        return
    with fence.hold():
        message = "removed: the cluster ran no earlier revision"
        if left:
            message += "; left alone, not created by this application: " + ", ".join(left)
        Target.objects.filter(pk=t.pk).update(state=TargetState.ROLLED_BACK, finished_at=now, message=message[:2000])
        Deployed.objects.filter(application=rollout.application, cluster=t.cluster).delete()
    t.state = TargetState.ROLLED_BACK
