"""Every side effect of rollouts: applications, revisions, overrides, rollouts, approvals and the actions on them.

Pages and API call these same functions, so the approval rules cannot differ between them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from fleetweb.audit import record
from fleetweb.errors import ServiceError
from fleetweb.queueing import after_commit
from fleetweb.roles import ADMIN, APPROVER, OPERATOR, has_role
from inventory import selectors
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup
from inventory.services import membership
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


class RolloutError(ServiceError):
    """A request Fleetweb refuses; `errors` maps fields to messages; `status`: 400 bad input, 403 not yours to
    do, 409 not possible now."""

    def __init__(self, errors: dict[str, str] | str, *, conflict: bool = False, status: int | None = None):
        super().__init__(errors, status=409 if conflict else (status or 400))


# ---------------------------------------------------------------------------------------------
# Applications and revisions


def create_application(*, name: str, namespace: str, user, manifests_text: str, owner: str = "",
                       description: str = "", message: str = "", source_ip: str = "") -> Application:
    """An application and its first revision; invalid manifests are refused with every error listed."""
    problem, status = manifests.namespace_problem(namespace, admin=has_role(user, ADMIN) if user else True)
    if problem:
        raise RolloutError({"namespace": problem}, status=status)
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
                                                        "labels": labels, "updated_by": _user(user),
                                                        "updated_at": timezone.now()})
        voided = refresh_pending(application=app, reason=f"the override of {app.name} for group {group.name} "
                                                          f"was changed by {_name(user)}")
        record(user=user, action="application.override", target=app, source_ip=source_ip, before=before,
               after={**(_override_view(override) or {}), "group": group.name, "approvals_voided": voided})
    return override


def _name(user) -> str:
    return user.get_username() if getattr(user, "pk", None) else "system"


def update_application(app: Application, *, user, source_ip: str = "", **changes) -> Application:
    """Change owner or description; manifests change through a new revision, name and namespace never."""
    _check_operator(user)
    unknown = set(changes) - {"owner", "description"}
    if unknown:
        raise RolloutError({"detail": "Only owner and description change here; manifests change through a new "
                                      "revision, name and namespace never."})
    with transaction.atomic():
        app = Application.objects.select_for_update().get(pk=app.pk)
        before = {f: getattr(app, f) for f in changes}
        for field, value in changes.items():
            setattr(app, field, value)
        app.save(update_fields=list(changes) or None)
        record(user=user, action="application.update", target=app, source_ip=source_ip, before=before,
               after={f: getattr(app, f) for f in changes})
    return app


def delete_application(app: Application, *, user, source_ip: str = "") -> None:
    """Delete an application with its revisions and rollouts; refused while one of its rollouts is active."""
    _check_operator(user)
    with transaction.atomic():
        app = Application.objects.select_for_update().get(pk=app.pk)
        active = app.rollouts.filter(state__in=[*ACTIVE_ROLLOUT_STATES, RolloutState.PAUSED])
        first = active.first()
        if first is not None:
            raise RolloutError(f"Rollout #{first.pk} of {app.name} is still active: abort it first.",
                               conflict=True)
        record(user=user, action="application.delete", target=app, source_ip=source_ip,
               before={"name": app.name, "namespace": app.namespace, "owner": app.owner,
                       "revisions": app.revisions.count(), "rollouts": app.rollouts.count()})
        # Rollouts protect their revisions (PROTECT): remove them first, in the same transaction.
        Rollout.objects.filter(application=app).delete()
        app.delete()


# ---------------------------------------------------------------------------------------------
# Plans


def _plan_view(plan: RolloutPlan) -> dict:
    return {"name": plan.name, "description": plan.description, "stages": plan.stages}


def create_plan(*, name: str, user, stages, description: str = "", source_ip: str = "") -> RolloutPlan:
    """A reusable list of stages, validated like inline stages."""
    _check_operator(user)
    cleaned = clean_stages(stages)
    if RolloutPlan.objects.filter(name=name).exists():
        raise RolloutError({"name": f"A plan named '{name}' already exists."})
    with transaction.atomic():
        plan = RolloutPlan.objects.create(name=name, description=description, stages=cleaned)
        record(user=user, action="plan.create", target=plan, source_ip=source_ip, after=_plan_view(plan))
    return plan


def update_plan(plan: RolloutPlan, *, user, source_ip: str = "", **changes) -> RolloutPlan:
    """Change a plan's description or stages (rollouts already created keep the stages they were given)."""
    _check_operator(user)
    unknown = set(changes) - {"description", "stages"}
    if unknown:
        raise RolloutError({"detail": f"These fields cannot be changed: {', '.join(sorted(unknown))}"})
    if "stages" in changes:
        changes["stages"] = clean_stages(changes["stages"])
    with transaction.atomic():
        plan = RolloutPlan.objects.select_for_update().get(pk=plan.pk)
        before = _plan_view(plan)
        for field, value in changes.items():
            setattr(plan, field, value)
        plan.save()
        record(user=user, action="plan.update", target=plan, source_ip=source_ip, before=before,
               after=_plan_view(plan))
    return plan


def delete_plan(plan: RolloutPlan, *, user, source_ip: str = "") -> None:
    _check_operator(user)
    with transaction.atomic():
        record(user=user, action="plan.delete", target=plan, source_ip=source_ip, before=_plan_view(plan))
        plan.delete()


# ---------------------------------------------------------------------------------------------
# What each cluster receives: rendered once, frozen, and what approvals cover


def overrides_in_effect(application: Application, clusters) -> dict[int, Override | None]:
    """{cluster id: the override of the first group (by name) the cluster is in now, or None}, for many clusters at
    once: only the groups that carry an override of this application are matched (inventory.services.membership)."""
    clusters = list(clusters)
    result: dict[int, Override | None] = {c.pk: None for c in clusters}
    overrides = list(Override.objects.filter(application=application).select_related("group").order_by("group__name"))
    if not overrides or not clusters:
        return result
    members = membership([o.group for o in overrides], clusters)
    for override in overrides:  # by group name: the first group a cluster is in wins
        for cluster in members[override.group_id]:
            if result[cluster.pk] is None:
                result[cluster.pk] = override
    return result


def render_all(application: Application, revision: Revision, clusters) -> dict[int, list[dict]]:
    """{cluster id: the revision's objects as they would be applied there now} (override and labels included);
    the manifests are parsed once for all clusters."""
    clusters = list(clusters)
    parsed = manifests.parse(revision.manifests, namespace=application.namespace)
    overrides = overrides_in_effect(application, clusters)
    return {c.pk: manifests.render(parsed.objects, application=application.name, revision=revision.number,
                                   digest=revision.digest, override=overrides[c.pk]) for c in clusters}


def render_for(application: Application, revision: Revision, cluster: Cluster) -> list[dict]:
    """The revision's objects for one cluster as they would be applied now."""
    return render_all(application, revision, [cluster])[cluster.pk]


def objects_digest(objects: list[dict]) -> str:
    """sha256 of the exact objects sent to a cluster (canonical JSON)."""
    return hashlib.sha256(json.dumps(objects, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stage_digests(stage: Stage) -> dict[str, str]:
    """{cluster id: rendered digest} of the stage's targets as frozen now."""
    return {str(cid): d for cid, d in stage.targets.values_list("cluster_id", "rendered_digest")}


def digest_of(digests: dict[str, str]) -> str:
    """One digest over {cluster id: digest}: what the approver is shown and what a decision names."""
    lines = sorted(f"{cid}:{d}" for cid, d in digests.items())
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def stage_digest(stage: Stage) -> str:
    return digest_of(stage_digests(stage))


def refresh_stage(stage: Stage, *, reason: str) -> list[str]:
    """Render every target of a stage not yet started and freeze the result; when what a cluster would receive
    changed, the stage's pending approvals are void (with `reason`). Returns the clusters whose objects changed."""
    rollout = stage.rollout
    changed = []
    targets = list(stage.targets.select_related("cluster"))
    rendered = render_all(rollout.application, rollout.revision, [t.cluster for t in targets])
    for t in targets:
        objects = rendered[t.cluster_id]
        digest = objects_digest(objects)
        if digest != t.rendered_digest:
            if t.rendered_digest:
                changed.append(t.cluster.name)
            Target.objects.filter(pk=t.pk).update(rendered=objects, rendered_digest=digest)
    if changed:
        stage.approvals.filter(voided_at__isnull=True).update(
            voided_at=timezone.now(),
            void_reason=f"{reason}: what {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''} would "
                        f"receive changed"[:255])
    return changed


def _not_started():
    return Stage.objects.filter(state__in=[StageState.PENDING, StageState.AWAITING_APPROVAL],
                                rollout__state__in=[*ACTIVE_ROLLOUT_STATES, RolloutState.PAUSED])


def refresh_pending(*, reason: str, application: Application | None = None, cluster_ids=None) -> int:
    """Re-render the stages not yet started of an application's rollouts, or those reaching these clusters;
    returns how many approvals were voided because what they covered changed."""
    stages = _not_started()
    if application is not None:
        stages = stages.filter(rollout__application=application)
    if cluster_ids is not None:
        stages = stages.filter(targets__cluster_id__in=list(cluster_ids))
    voided = 0
    for stage in stages.select_related("rollout__application", "rollout__revision").distinct():
        before = stage.approvals.filter(voided_at__isnull=True).count()
        if refresh_stage(stage, reason=reason):
            voided += before
    return voided


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


def prod_approval_note(prod_names: list[str]) -> str:
    """Why a stage needs an approval its plan did not ask for (at creation, and again when the stage starts)."""
    return f"approval required: reaches prod cluster(s) {', '.join(prod_names[:5])}"


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
            spec = {**spec, "approvals_required": 1, "note": prod_approval_note(prod)}
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
            stage.rollout = rollout
            refresh_stage(stage, reason="created")
        record(user=user, action="rollout.create", target=rollout, source_ip=source_ip,
               after={"application": app.name, "revision": revision.number, "plan": rollout.plan_name,
                      "stages": [{"name": s["name"], "clusters": [c.name for c in cl],
                                  "approvals_required": s["approvals_required"]} for s, cl in resolved]})
        kick(rollout)
    return rollout


def kick(rollout: Rollout) -> None:
    """Advance the rollout right after this transaction commits. It is marked queued so beat does not queue it
    again meanwhile; when the broker cannot take the message, the mark is cleared and beat queues it."""
    from rollouts.tasks import advance_rollout

    pk = rollout.pk
    Rollout.objects.filter(pk=pk).update(queued_at=timezone.now(), next_step_at=timezone.now())
    after_commit(lambda: advance_rollout.delay(pk), what=f"rollout #{pk}",
                 on_failure=lambda: Rollout.objects.filter(pk=pk).update(queued_at=None))


# ---------------------------------------------------------------------------------------------
# Approvals: the one place their rules live


def approval_ttl() -> timedelta:
    return timedelta(seconds=settings.FLEETWEB_APPROVAL_TTL)


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


def approve_stage(stage: Stage, *, user, comment: str = "", seen_digest: str = "", source_ip: str = "") -> Stage:
    """Record an approval of exactly the objects each of the stage's clusters would receive now (`seen_digest`,
    when given, must be the stage digest the approver was shown); the stage starts once enough distinct approvers
    agreed (checked by the engine too)."""
    with transaction.atomic():
        stage = _lock_for_decision(stage, seen_digest=seen_digest)
        check_can_decide(stage, user)
        digests = stage_digests(stage)
        Approval.objects.create(stage=stage, user=user, decision=Decision.APPROVE, comment=comment[:2000],
                                revision_id=stage.rollout.revision_id, digests=digests,
                                expires_at=timezone.now() + approval_ttl())
        count = len(valid_approvals(stage))
        record(user=user, action="rollout.approve", target=stage.rollout, source_ip=source_ip,
               target_name=f"rollout #{stage.rollout_id} stage {stage.name}",
               after={"stage": stage.name, "comment": comment, "approvals": count,
                      "required": stage.approvals_required, "revision": stage.rollout.revision.number,
                      "stage_digest": stage_digest(stage)})
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
                                expires_at=now + approval_ttl())
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


def pending_approvals_for(user):
    """Stages awaiting approval that this user may approve now (never their own rollouts)."""
    if not has_role(user, APPROVER):
        return Stage.objects.none()
    decided = Approval.objects.filter(user=user, voided_at__isnull=True, expires_at__gt=timezone.now()
                                      ).values_list("stage_id", flat=True)
    stages = (Stage.objects.filter(state=StageState.AWAITING_APPROVAL,
                                   rollout__state__in=[RolloutState.RUNNING, RolloutState.PAUSED])
              .exclude(rollout__requested_by=user).exclude(rollout__revision__author=user).exclude(pk__in=decided)
              .select_related("rollout__application", "rollout__revision", "rollout__requested_by", "group"))
    # Override authors are excluded per cluster: few stages await approval at once, so ask each.
    return Stage.objects.filter(pk__in=[s.pk for s in stages if user.pk not in excluded_deciders(s)]).select_related(
        "rollout__application", "rollout__revision", "rollout__requested_by", "group")


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
        # An operator's emergency action without approval: announced, so approvers learn of it at once.
        notify("rollout.rollback_requested", rollout)
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
    after_commit(lambda: send_webhook.delay(payload), what=f"webhook {event} of rollout #{rollout.pk}")

