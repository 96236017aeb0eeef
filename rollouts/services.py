"""Every side effect of rollouts: applications, revisions, overrides, rollouts, approvals and the actions on them.

Pages and API call these same functions, so the approval rules cannot differ between them.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from fleetweb.roles import APPROVER, OPERATOR, has_role
from governance.audit import record
from inventory import selectors
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup
from rollouts import manifests
from rollouts.choices import (
    ACTIVE_ROLLOUT_STATES,
    FINISHED_ROLLOUT_STATES,
    Decision,
    RolloutState,
    StageState,
    TargetState,
)
from rollouts.models import Application, Approval, Deployed, Override, Revision, Rollout, RolloutPlan, Stage, Target

log = logging.getLogger(__name__)

STAGE_LIMITS = {"approvals_required": (0, 3), "max_parallel": (1, 100), "health_deadline": (10, 3600),
                "soak_time": (0, 86400), "failures_allowed": (0, 100)}
STAGE_DEFAULTS = {"approvals_required": 0, "max_parallel": 1, "health_deadline": 300, "soak_time": 0,
                  "failures_allowed": 0}


class RolloutError(ValueError):
    """A request Fleetweb refuses; `errors` maps fields to messages; `status`: 400 bad input, 403 not yours to
    do, 409 not possible now."""

    def __init__(self, errors: dict[str, str] | str, *, conflict: bool = False, status: int | None = None):
        if isinstance(errors, str):
            errors = {"detail": errors}
        super().__init__("; ".join(errors.values()))
        self.errors = errors
        self.conflict = conflict or status == 409
        self.status = 409 if conflict else (status or 400)


# ---------------------------------------------------------------------------------------------
# Applications and revisions


def create_application(*, name: str, namespace: str, user, manifests_text: str, owner: str = "",
                       description: str = "", message: str = "", source_ip: str = "") -> Application:
    """An application and its first revision; invalid manifests are refused with every error listed."""
    try:
        parsed = manifests.parse(manifests_text, namespace=namespace)
    except manifests.ManifestError as exc:
        raise RolloutError({"manifests": "\n".join(exc.errors)}) from None
    if Application.objects.filter(name=name).exists():
        raise RolloutError({"name": f"An application named '{name}' already exists."})
    with transaction.atomic():
        app = Application.objects.create(name=name, namespace=namespace, owner=owner, description=description,
                                         created_by=_user(user))
        revision = _new_revision(app, parsed, manifests_text, user=user, message=message or "first revision")
        record(user=user, action="application.create", target=app, source_ip=source_ip,
               after={"name": name, "namespace": namespace, "owner": owner, "revision": revision.number,
                      "digest": revision.digest})
    return app


def _user(user):
    return user if getattr(user, "pk", None) else None


def _new_revision(app: Application, parsed: manifests.Parsed, text: str, *, user, message: str) -> Revision:
    number = (app.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    return Revision.objects.create(application=app, number=number, manifests=text, digest=parsed.digest,
                                   objects_summary=parsed.summary, message=message[:500], author=_user(user))


def create_revision(app: Application, *, manifests_text: str, user, message: str = "",
                    source_ip: str = "") -> Revision:
    """A new immutable revision; pending approvals of this application's rollouts are voided (what the
    approvers saw has changed)."""
    try:
        parsed = manifests.parse(manifests_text, namespace=app.namespace)
    except manifests.ManifestError as exc:
        raise RolloutError({"manifests": "\n".join(exc.errors)}) from None
    with transaction.atomic():
        Application.objects.select_for_update().get(pk=app.pk)  # numbers revisions one at a time
        latest = app.latest_revision
        if latest is not None and latest.digest == parsed.digest:
            raise RolloutError({"manifests": f"Nothing changed: this is revision {latest.number} "
                                             f"({latest.short_digest})."})
        revision = _new_revision(app, parsed, manifests_text, user=user, message=message)
        voided = Approval.objects.filter(
            stage__rollout__application=app, stage__state__in=[StageState.PENDING, StageState.AWAITING_APPROVAL],
            stage__rollout__state__in=[*ACTIVE_ROLLOUT_STATES, RolloutState.PAUSED], voided_at__isnull=True,
        ).update(voided_at=timezone.now(), void_reason=f"revision {revision.number} of {app.name} was created")
        record(user=user, action="application.revision", target=app, source_ip=source_ip,
               after={"revision": revision.number, "digest": revision.digest, "message": message,
                      "approvals_voided": voided})
    return revision


def set_override(app: Application, *, group: ClusterGroup, user, replicas=None, image_tags=None, labels=None,
                 source_ip: str = "") -> Override | None:
    """Set (or, when empty, remove) the per-group patch of an application."""
    image_tags, labels = image_tags or {}, labels or {}
    errors = manifests.validate_override(replicas=replicas, image_tags=image_tags, labels=labels)
    if errors:
        raise RolloutError({e.split(":", 1)[0]: e.split(":", 1)[1].strip() for e in errors})
    with transaction.atomic():
        existing = Override.objects.filter(application=app, group=group).first()
        before = _override_view(existing)
        if replicas is None and not image_tags and not labels:
            if existing:
                existing.delete()
            override = None
        else:
            override, _ = Override.objects.update_or_create(
                application=app, group=group, defaults={"replicas": replicas, "image_tags": image_tags,
                                                        "labels": labels})
        record(user=user, action="application.override", target=app, source_ip=source_ip, before=before,
               after={**(_override_view(override) or {}), "group": group.name})
    return override


def _override_view(o: Override | None) -> dict | None:
    return None if o is None else {"group": o.group.name, "replicas": o.replicas, "image_tags": o.image_tags,
                                   "labels": o.labels}


# ---------------------------------------------------------------------------------------------
# Creating a rollout


def clean_stages(raw) -> list[dict]:
    """Validate stage specs (from a plan or inline); errors name the stage and field."""
    if not isinstance(raw, list) or not raw:
        raise RolloutError({"stages": "give at least one stage"})
    if len(raw) > 20:
        raise RolloutError({"stages": "at most 20 stages"})
    errors: dict[str, str] = {}
    cleaned = []
    for i, spec in enumerate(raw):
        where = f"stages[{i}]"
        if not isinstance(spec, dict):
            errors[where] = "must be an object"
            continue
        unknown = set(spec) - {"name", "group", "selector", *STAGE_DEFAULTS}
        if unknown:
            errors[where] = f"unknown fields: {', '.join(sorted(unknown))}"
            continue
        stage = {"name": str(spec.get("name") or f"stage {i + 1}")[:63], "group": spec.get("group") or "",
                 "selector": (spec.get("selector") or "").strip()}
        if bool(stage["group"]) == bool(stage["selector"]):
            errors[f"{where}.group"] = "give a group or a selector (exactly one)"
        if stage["selector"]:
            try:
                selectors.parse(stage["selector"])
            except selectors.SelectorError as exc:
                errors[f"{where}.selector"] = str(exc)
        for field, (low, high) in STAGE_LIMITS.items():
            value = spec.get(field, STAGE_DEFAULTS[field])
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                errors[f"{where}.{field}"] = f"must be a whole number from {low} to {high}"
            stage[field] = value
        cleaned.append(stage)
    if errors:
        raise RolloutError(errors)
    return cleaned


def _stage_clusters(spec: dict) -> list[Cluster]:
    if spec["group"]:
        group = ClusterGroup.objects.filter(name=spec["group"]).first()
        if group is None:
            raise RolloutError({"stages": f"stage '{spec['name']}': no group named '{spec['group']}'"})
        return list(group.members().order_by("name"))
    return list(Cluster.objects.filter(selectors.parse(spec["selector"]).q()).order_by("name"))


def create_rollout(*, revision: Revision, user, stages=None, plan: RolloutPlan | None = None,
                   source_ip: str = "") -> Rollout:
    """A rollout of one revision through ordered stages; clusters are resolved now and never change.

    Refused: a stage matching no cluster, a cluster in two stages. A stage reaching an
    `environment=prod` cluster requires at least one approval whatever the plan says.
    """
    if plan is not None:
        stages = plan.stages
    specs = clean_stages(stages)
    resolved = []
    seen: dict[int, str] = {}
    for spec in specs:
        clusters = _stage_clusters(spec)
        if not clusters:
            what = f"group {spec['group']}" if spec["group"] else f"selector '{spec['selector']}'"
            raise RolloutError({"stages": f"stage '{spec['name']}' ({what}) matches no cluster"})
        for c in clusters:
            if c.pk in seen:
                raise RolloutError({"stages": f"cluster {c.name} is in stage '{seen[c.pk]}' and in stage "
                                              f"'{spec['name']}': a cluster may be in one stage only"})
            seen[c.pk] = spec["name"]
        prod = [c.name for c in clusters if c.environment == Environment.PROD]
        if prod and spec["approvals_required"] < 1:
            spec = {**spec, "approvals_required": 1,
                    "note": f"approval required: reaches prod cluster(s) {', '.join(prod[:5])}"}
        resolved.append((spec, clusters))
    app = revision.application
    deployed = dict(Deployed.objects.filter(application=app).values_list("cluster_id", "revision_id"))
    with transaction.atomic():
        rollout = Rollout.objects.create(application=app, revision=revision, requested_by=_user(user),
                                         plan_name=plan.name if plan else "", next_step_at=timezone.now())
        for index, (spec, clusters) in enumerate(resolved):
            group = ClusterGroup.objects.filter(name=spec["group"]).first() if spec["group"] else None
            stage = Stage.objects.create(
                rollout=rollout, index=index, name=spec["name"], group=group, selector=spec["selector"],
                message=spec.get("note", ""), **{f: spec[f] for f in STAGE_DEFAULTS})
            Target.objects.bulk_create([Target(stage=stage, cluster=c, previous_revision_id=deployed.get(c.pk))
                                        for c in clusters])
        record(user=user, action="rollout.create", target=rollout, source_ip=source_ip,
               after={"application": app.name, "revision": revision.number, "plan": rollout.plan_name,
                      "stages": [{"name": s["name"], "clusters": [c.name for c in cl],
                                  "approvals_required": s["approvals_required"]} for s, cl in resolved]})
        kick(rollout)
    return rollout


def kick(rollout: Rollout) -> None:
    """Advance the rollout right after this transaction commits (beat also picks it up within seconds)."""
    from rollouts.tasks import advance_rollout

    transaction.on_commit(lambda: advance_rollout.delay(rollout.pk))


# ---------------------------------------------------------------------------------------------
# Approvals: the one place their rules live


def approval_ttl() -> timedelta:
    return timedelta(seconds=settings.FLEETWEB_APPROVAL_TTL)


def valid_approvals(stage: Stage, *, now=None) -> list[Approval]:
    """Approvals that count now: approve decisions for the rollout's revision, not voided, not expired,
    one per user, never the requester's, only from users who still hold the approver role."""
    now = now or timezone.now()
    rollout = stage.rollout
    counted, users = [], set()
    for a in stage.approvals.filter(decision=Decision.APPROVE, voided_at__isnull=True,
                                    revision_id=rollout.revision_id).select_related("user").order_by("created_at"):
        if a.expires_at <= now or a.user_id in users or a.user_id == rollout.requested_by_id:
            continue
        if not has_role(a.user, APPROVER):
            continue
        users.add(a.user_id)
        counted.append(a)
    return counted


def check_can_decide(stage: Stage, user) -> None:
    """Raise RolloutError (403 or 409) unless `user` may approve or reject `stage` now."""
    rollout = stage.rollout
    if not has_role(user, APPROVER):
        raise RolloutError("Only users with the approver role may approve or reject a stage.", status=403)
    if rollout.requested_by_id == user.pk:
        raise RolloutError("You requested this rollout: someone else must approve it.", status=403)
    if stage.state != StageState.AWAITING_APPROVAL:
        raise RolloutError(f"Stage '{stage.name}' is {stage.get_state_display()}, not awaiting approval.",
                           conflict=True)
    if rollout.state not in (RolloutState.RUNNING, RolloutState.PAUSED):
        raise RolloutError(f"The rollout is {rollout.get_state_display()}.", conflict=True)
    if stage.approvals.filter(user=user, voided_at__isnull=True, revision_id=rollout.revision_id,
                              expires_at__gt=timezone.now()).exists():
        raise RolloutError("You already decided on this stage.", conflict=True)


def approve_stage(stage: Stage, *, user, comment: str = "", source_ip: str = "") -> Stage:
    """Record an approval; the stage starts once enough distinct approvers agreed (checked by the engine too)."""
    with transaction.atomic():
        stage = Stage.objects.select_for_update().select_related("rollout").get(pk=stage.pk)
        check_can_decide(stage, user)
        Approval.objects.create(stage=stage, user=user, decision=Decision.APPROVE, comment=comment[:2000],
                                revision_id=stage.rollout.revision_id, expires_at=timezone.now() + approval_ttl())
        count = len(valid_approvals(stage))
        record(user=user, action="rollout.approve", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "comment": comment, "approvals": count,
                      "required": stage.approvals_required, "revision": stage.rollout.revision.number})
        # Beat picks it up too if the kick below is lost (worker down): the gate is re-checked either way.
        Rollout.objects.filter(pk=stage.rollout_id).update(next_step_at=timezone.now())
        kick(stage.rollout)
    return stage


def reject_stage(stage: Stage, *, user, comment: str, source_ip: str = "") -> Stage:
    """A rejection stops the rollout: the stage is rejected, later stages never run."""
    if not comment.strip():
        raise RolloutError({"comment": "Say why you reject it."})
    with transaction.atomic():
        stage = Stage.objects.select_for_update().select_related("rollout").get(pk=stage.pk)
        check_can_decide(stage, user)
        now = timezone.now()
        Approval.objects.create(stage=stage, user=user, decision=Decision.REJECT, comment=comment[:2000],
                                revision_id=stage.rollout.revision_id, expires_at=now + approval_ttl())
        stage.state, stage.finished_at = StageState.REJECTED, now
        stage.message = f"rejected by {user.get_username()}: {comment}"[:2000]
        stage.save()
        Rollout.objects.filter(pk=stage.rollout_id).update(state=RolloutState.FAILED, finished_at=now,
                                                           message=stage.message, next_step_at=None)
        record(user=user, action="rollout.reject", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "comment": comment})
        notify("rollout.failed", stage.rollout, stage=stage)
    return stage


def pending_approvals_for(user):
    """Stages awaiting approval that this user may approve now (never their own rollouts)."""
    if not has_role(user, APPROVER):
        return Stage.objects.none()
    decided = Approval.objects.filter(user=user, voided_at__isnull=True, expires_at__gt=timezone.now()
                                      ).values_list("stage_id", flat=True)
    return (Stage.objects.filter(state=StageState.AWAITING_APPROVAL,
                                 rollout__state__in=[RolloutState.RUNNING, RolloutState.PAUSED])
            .exclude(rollout__requested_by=user).exclude(pk__in=decided)
            .select_related("rollout__application", "rollout__revision", "rollout__requested_by", "group"))


# ---------------------------------------------------------------------------------------------
# Actions: pause, resume, abort, rollback


def _claim(rollout: Rollout, allowed: tuple, new_state: str, **fields) -> Rollout:
    """Move the rollout to `new_state` only from an allowed state (one conditional UPDATE)."""
    updated = Rollout.objects.filter(pk=rollout.pk, state__in=allowed).update(state=new_state, **fields)
    rollout.refresh_from_db()
    if not updated:
        raise RolloutError(f"The rollout is {rollout.get_state_display()}: this action is not possible now.",
                           conflict=True)
    return rollout


def _check_operator(user) -> None:
    if not has_role(user, OPERATOR):
        raise RolloutError("This action needs the operator role.", status=403)


def pause_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Stop advancing: nothing new is applied until resumed (in-flight applies finish)."""
    _check_operator(user)
    with transaction.atomic():
        current = Rollout.objects.select_for_update().get(pk=rollout.pk)
        rollout = _claim(current, (RolloutState.PENDING, RolloutState.RUNNING), RolloutState.PAUSED,
                         paused_from=current.state)
        record(user=user, action="rollout.pause", target=rollout, source_ip=source_ip)
    return rollout


def resume_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    _check_operator(user)
    with transaction.atomic():
        current = Rollout.objects.select_for_update().get(pk=rollout.pk)
        back = current.paused_from or RolloutState.RUNNING
        rollout = _claim(current, (RolloutState.PAUSED,), back, paused_from="", next_step_at=timezone.now())
        record(user=user, action="rollout.resume", target=rollout, source_ip=source_ip)
        kick(rollout)
    return rollout


def abort_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Stop for good: no further stage or cluster is touched; what was applied stays (roll back to undo)."""
    _check_operator(user)
    now = timezone.now()
    with transaction.atomic():
        rollout = _claim(rollout, (RolloutState.PENDING, RolloutState.RUNNING, RolloutState.PAUSED),
                         RolloutState.ABORTED, finished_at=now, next_step_at=None,
                         message=f"aborted by {user.get_username()}")
        rollout.stages.exclude(state__in=[StageState.SUCCEEDED, StageState.FAILED, StageState.REJECTED]).update(
            state=StageState.ABORTED, finished_at=now)
        record(user=user, action="rollout.abort", target=rollout, source_ip=source_ip)
    return rollout


def rollback_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Re-apply, on every cluster that got this revision, what it ran before (or remove it where it ran
    nothing), and verify it."""
    _check_operator(user)
    with transaction.atomic():
        got = Target.objects.filter(stage__rollout=rollout, applied_revision_id=rollout.revision_id)
        if not got.exists():
            raise RolloutError("No cluster received this revision: there is nothing to roll back.", conflict=True)
        rollout = _claim(rollout, FINISHED_ROLLOUT_STATES[:3] + (RolloutState.PAUSED,), RolloutState.ROLLING_BACK,
                         finished_at=None, next_step_at=timezone.now(),
                         message=f"rollback requested by {user.get_username()}")
        rollout.stages.filter(state__in=[StageState.PENDING, StageState.AWAITING_APPROVAL, StageState.APPLYING,
                                         StageState.VERIFYING, StageState.SOAKING]).update(
            state=StageState.ABORTED, finished_at=timezone.now())
        clusters = list(got.values_list("cluster__name", flat=True))
        got.update(state=TargetState.ROLLING_BACK, message="", deadline=None)
        record(user=user, action="rollout.rollback", target=rollout, source_ip=source_ip,
               after={"clusters": clusters})
        kick(rollout)
    return rollout


# ---------------------------------------------------------------------------------------------
# Notifications


def notify(event: str, rollout: Rollout, *, stage: Stage | None = None) -> None:
    """Queue a signed webhook after commit, when FLEETWEB_WEBHOOK_URL is set."""
    if not settings.FLEETWEB_WEBHOOK_URL:
        return
    from rollouts.tasks import send_webhook

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
    transaction.on_commit(lambda: send_webhook.delay(payload))

