"""The rollout engine: one idempotent step function, run by Celery under a short lease.

Every transition is written before the next side effect, so a worker killed at any point leaves a
state the next run continues from: an interrupted apply is applied again (server-side apply makes
that harmless), an interrupted verify is verified again, and a stage never starts before its gate
(approvals counted by `services.valid_approvals`) passed.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from governance.audit import record
from inventory import kube
from inventory.services import credentials_of, groups_of
from rollouts import manifests, services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Deployed, Override, Revision, Rollout, Stage, Target

log = logging.getLogger(__name__)
POLL = timedelta(seconds=2)
MAX_STEPS = 50


def _lease() -> timedelta:
    return timedelta(seconds=settings.FLEETWEB_ROLLOUT_LEASE)


def acquire(rollout_id: int) -> bool:
    now = timezone.now()
    return Rollout.objects.filter(pk=rollout_id).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)).update(lease_expires_at=now + _lease()) == 1


def release(rollout_id: int) -> None:
    Rollout.objects.filter(pk=rollout_id).update(lease_expires_at=None)


def advance(rollout_id: int) -> str:
    """Take the rollout as far as it can go now; returns its state (or 'busy' when another run holds it)."""
    if not acquire(rollout_id):
        return "busy"
    try:
        for _ in range(MAX_STEPS):
            rollout = Rollout.objects.select_related("application", "revision").get(pk=rollout_id)
            if not step(rollout):
                break
            Rollout.objects.filter(pk=rollout_id).update(lease_expires_at=timezone.now() + _lease())
        return Rollout.objects.get(pk=rollout_id).state
    finally:
        release(rollout_id)


def due_rollouts(now=None) -> list[int]:
    """Active rollouts whose next step is due and that no run holds (beat queues these)."""
    now = now or timezone.now()
    return list(Rollout.objects.filter(state__in=[RolloutState.PENDING, RolloutState.RUNNING,
                                                  RolloutState.ROLLING_BACK], next_step_at__lte=now)
                .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
                .values_list("pk", flat=True)[:200])


def _schedule(rollout: Rollout, when) -> None:
    Rollout.objects.filter(pk=rollout.pk).update(next_step_at=when)


def step(rollout: Rollout) -> bool:
    """One transition; True when something changed and another step may follow at once."""
    now = timezone.now()
    if rollout.state == RolloutState.PENDING:
        Rollout.objects.filter(pk=rollout.pk, state=RolloutState.PENDING).update(
            state=RolloutState.RUNNING, started_at=now)
        return True
    if rollout.state == RolloutState.ROLLING_BACK:
        return _rollback_step(rollout, now)
    if rollout.state != RolloutState.RUNNING:
        return False
    stage = rollout.stages.exclude(state=StageState.SUCCEEDED).order_by("index").first()
    if stage is None:
        _finish(rollout, RolloutState.SUCCEEDED, "every stage succeeded", now)
        services.notify("rollout.succeeded", rollout)
        return False
    if stage.state == StageState.PENDING:
        if stage.approvals_required:
            _set_stage(stage, StageState.AWAITING_APPROVAL)
            services.notify("stage.awaiting_approval", rollout, stage=stage)
            return True
        _start_stage(stage, now)
        return True
    if stage.state == StageState.AWAITING_APPROVAL:
        approvals = services.valid_approvals(stage, now=now)
        if len(approvals) >= stage.approvals_required:
            _start_stage(stage, now, approved=True, approvers=[a.user.get_username() for a in approvals])
            return True
        # Approvals expire: look again when the oldest one counted would lapse, else wait for a click.
        _schedule(rollout, min((a.expires_at for a in approvals), default=None))
        return False
    if stage.state in (StageState.APPLYING, StageState.VERIFYING):
        return _progress_stage(rollout, stage, now)
    if stage.state == StageState.SOAKING:
        if stage.soak_until and now < stage.soak_until:
            _schedule(rollout, stage.soak_until)
            return False
        stage.state, stage.finished_at = StageState.SUCCEEDED, now
        stage.save(update_fields=["state", "finished_at"])
        record(user=None, action="rollout.stage_succeeded", target=rollout,
               target_name=f"rollout #{rollout.pk} stage {stage.name}")
        return True
    return False


def _set_stage(stage: Stage, state: str, **fields) -> None:
    Stage.objects.filter(pk=stage.pk).update(state=state, **fields)


def _start_stage(stage: Stage, now, *, approved: bool = False, approvers=()) -> None:
    fields = {"started_at": now}
    if approved:
        fields["approved_at"] = now
    _set_stage(stage, StageState.APPLYING, **fields)
    record(user=None, action="rollout.stage_started", target=stage.rollout,
           target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
           after={"stage": stage.name, "approved_by": list(approvers)})


def _finish(rollout: Rollout, state: str, message: str, now) -> None:
    Rollout.objects.filter(pk=rollout.pk).update(state=state, message=message[:2000], finished_at=now,
                                                 next_step_at=None)
    rollout.state = state
    record(user=None, action=f"rollout.{state}", target=rollout, message=message)


def _progress_stage(rollout: Rollout, stage: Stage, now) -> bool:
    targets = list(stage.targets.select_related("cluster").order_by("cluster__name"))
    changed = False
    for t in targets:  # left in APPLYING by a run that died mid-apply: apply again
        if t.state == TargetState.APPLYING:
            Target.objects.filter(pk=t.pk).update(attempts=F("attempts") + 1)
            _apply_target(rollout, stage, t, rollout.revision, now)
            changed = True
    for t in targets:
        if t.state == TargetState.VERIFYING:
            changed |= _verify_target(rollout, t, rollout.revision, now, ok=TargetState.READY,
                                      failed=TargetState.FAILED)
    in_flight = sum(1 for t in targets if t.state in (TargetState.APPLYING, TargetState.VERIFYING))
    failures = sum(1 for t in targets if t.state == TargetState.FAILED)
    if failures > stage.failures_allowed:
        names = ", ".join(t.cluster.name for t in targets if t.state == TargetState.FAILED)
        message = f"stage '{stage.name}' failed on {names}: " + "; ".join(
            t.message for t in targets if t.state == TargetState.FAILED)[:1500]
        _set_stage(stage, StageState.FAILED, finished_at=now, message=message)
        _finish(rollout, RolloutState.FAILED, message, now)
        services.notify("rollout.failed", rollout, stage=stage)
        return False
    for t in targets:
        if t.state == TargetState.PENDING and in_flight < stage.max_parallel:
            Target.objects.filter(pk=t.pk).update(state=TargetState.APPLYING, attempts=t.attempts + 1,
                                                  started_at=now)
            t.state, t.attempts = TargetState.APPLYING, t.attempts + 1
            _apply_target(rollout, stage, t, rollout.revision, now)
            in_flight += 1
            changed = True
    if all(t.state in (TargetState.READY, TargetState.FAILED) for t in targets):
        failures = sum(1 for t in targets if t.state == TargetState.FAILED)
        if failures > stage.failures_allowed:
            return True  # the next step fails the stage
        _set_stage(stage, StageState.SOAKING, soak_until=now + timedelta(seconds=stage.soak_time))
        return True
    pending = any(t.state in (TargetState.PENDING, TargetState.APPLYING) for t in targets)
    new_state = StageState.APPLYING if pending else StageState.VERIFYING
    if new_state != stage.state:
        _set_stage(stage, new_state)
    _schedule(rollout, now + POLL)
    return changed and pending


def _objects(rollout: Rollout, revision: Revision, cluster) -> list[dict]:
    """The revision's objects rendered for one cluster (with the override of the first group it is in)."""
    parsed = manifests.parse(revision.manifests, namespace=rollout.application.namespace)
    group_ids = [g.pk for g in groups_of(cluster)]
    override = (Override.objects.filter(application=rollout.application, group_id__in=group_ids)
                .select_related("group").order_by("group__name").first())
    return manifests.render(parsed.objects, application=rollout.application.name, revision=revision.number,
                            digest=revision.digest, override=override)


def _session(cluster):
    return kube.connect(credentials_of(cluster), insecure=cluster.insecure_skip_tls_verify)


def _ensure_namespace(session, name: str) -> None:
    try:
        kube.get_json(session, f"/api/v1/namespaces/{name}")
    except kube.KubeError as exc:
        if exc.http_status != 404:
            raise
        kube.apply(session, f"/api/v1/namespaces/{name}", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "fleetweb"}}})


def _apply_target(rollout: Rollout, stage: Stage, t: Target, revision: Revision, now, *,
                  next_state: str = TargetState.VERIFYING, failed: str = TargetState.FAILED) -> None:
    """Server-side apply every object (namespace first); then the target waits for readiness until its deadline."""
    try:
        objects = _objects(rollout, revision, t.cluster)
        with _session(t.cluster) as session:
            _ensure_namespace(session, rollout.application.namespace)
            for obj in objects:
                kube.apply(session, manifests.path_of(obj), obj)
    except kube.KubeError as exc:
        Target.objects.filter(pk=t.pk).update(state=failed, message=f"apply failed: {exc.message}"[:2000],
                                              finished_at=timezone.now())
        t.state, t.message = failed, f"apply failed: {exc.message}"
        return
    deadline = timezone.now() + timedelta(seconds=stage.health_deadline)
    fields = {"state": next_state, "deadline": deadline, "message": ""}
    if next_state == TargetState.VERIFYING:
        fields["applied_revision"] = revision
    Target.objects.filter(pk=t.pk).update(**fields)
    t.state, t.deadline = next_state, deadline


def _verify_target(rollout: Rollout, t: Target, revision: Revision, now, *, ok: str, failed: str) -> bool:
    """Read every workload back: ready when observed at the new generation with all replicas updated and
    available. Unreachable clusters are retried until the deadline."""
    try:
        objects = _objects(rollout, revision, t.cluster)
        observed = []
        with _session(t.cluster) as session:
            for obj in objects:
                if obj["kind"] not in manifests.WORKLOADS:
                    continue
                live = kube.get_json(session, manifests.path_of(obj))
                live_revision = (live.get("metadata", {}).get("annotations") or {}).get("fleetweb.io/revision")
                state = manifests.readiness(obj["kind"], live)
                state["ready"] = state["ready"] and live_revision == str(revision.number)
                observed.append({"kind": obj["kind"], "name": obj["metadata"]["name"], **state})
        problem = ""
    except kube.KubeError as exc:
        observed, problem = t.observed, exc.message
    ready = not problem and all(o["ready"] for o in observed)
    if ready:
        Target.objects.filter(pk=t.pk).update(state=ok, observed=observed, message="", finished_at=now)
        t.state = ok
        if ok == TargetState.READY:
            Deployed.objects.update_or_create(application=rollout.application, cluster=t.cluster,
                                              defaults={"revision": revision, "at": now})
        return True
    waiting = problem or "; ".join(f"{o['kind']} {o['name']}: {o['updated']}/{o['desired']} updated, "
                                   f"{o['available']}/{o['desired']} available" for o in observed if not o["ready"])
    if t.deadline and now >= t.deadline:
        message = f"not ready within the health deadline: {waiting}"
        Target.objects.filter(pk=t.pk).update(state=failed, observed=observed, message=message[:2000],
                                              finished_at=now)
        t.state, t.message = failed, message
        return True
    Target.objects.filter(pk=t.pk).update(observed=observed, message=waiting[:2000])
    return False


# ---------------------------------------------------------------------------------------------
# Rollback


def _rollback_step(rollout: Rollout, now) -> bool:
    targets = list(Target.objects.filter(stage__rollout=rollout, state__in=[
        TargetState.ROLLING_BACK, TargetState.ROLLBACK_VERIFYING, TargetState.ROLLED_BACK,
        TargetState.ROLLBACK_FAILED]).select_related("cluster", "stage", "previous_revision"))
    for t in targets:
        if t.state == TargetState.ROLLING_BACK:
            if t.previous_revision is None:
                _remove(rollout, t, now)
            else:
                _apply_target(rollout, t.stage, t, t.previous_revision, now,
                              next_state=TargetState.ROLLBACK_VERIFYING, failed=TargetState.ROLLBACK_FAILED)
        elif t.state == TargetState.ROLLBACK_VERIFYING:
            if _verify_target(rollout, t, t.previous_revision, now, ok=TargetState.ROLLED_BACK,
                              failed=TargetState.ROLLBACK_FAILED) and t.state == TargetState.ROLLED_BACK:
                Deployed.objects.update_or_create(application=rollout.application, cluster=t.cluster,
                                                  defaults={"revision": t.previous_revision, "at": now})
    if any(t.state in (TargetState.ROLLING_BACK, TargetState.ROLLBACK_VERIFYING) for t in targets):
        _schedule(rollout, now + POLL)
        return False
    failed = [t.cluster.name for t in targets if t.state == TargetState.ROLLBACK_FAILED]
    with transaction.atomic():
        if failed:
            _finish(rollout, RolloutState.FAILED, f"rollback failed on {', '.join(failed)}", now)
        else:
            _finish(rollout, RolloutState.ROLLED_BACK, f"rolled back on {len(targets)} cluster(s)", now)
    services.notify("rollout.rolled_back" if not failed else "rollout.failed", rollout)
    return False


def _remove(rollout: Rollout, t: Target, now) -> None:
    """Rollback where nothing ran before: delete what this rollout applied."""
    try:
        objects = _objects(rollout, rollout.revision, t.cluster)
        with _session(t.cluster) as session:
            for obj in reversed(objects):
                kube.delete(session, manifests.path_of(obj))
    except kube.KubeError as exc:
        Target.objects.filter(pk=t.pk).update(state=TargetState.ROLLBACK_FAILED,
                                              message=f"removal failed: {exc.message}"[:2000], finished_at=now)
        t.state = TargetState.ROLLBACK_FAILED
        return
    Target.objects.filter(pk=t.pk).update(state=TargetState.ROLLED_BACK, finished_at=now,
                                          message="removed: the cluster ran no earlier revision")
    Deployed.objects.filter(application=rollout.application, cluster=t.cluster).delete()
    t.state = TargetState.ROLLED_BACK
