"""Every side effect of rollouts: applications, revisions, overrides, plans, rollouts and the actions on them.
What each cluster receives is `rollouts.rendering`; approvals and their rules are `rollouts.approvals`.

Pages and API call these same functions, so the approval rules cannot differ between them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from foundation.audit import record
from foundation.queueing import enqueue, enqueue_after_commit
from foundation.roles import ADMIN, has_role
from inventory import selectors
from inventory.access import FLEETWEB_NAMESPACE
from inventory.choices import Environment
from inventory.models import Cluster, ClusterGroup, Team
from inventory.people.access import can, deploy_refusal, require, team_scope
from inventory.validators import dns_label_problem
from rollouts import drift, dryrun, manifests, ownership
from rollouts.alerts import notify
from rollouts.choices import (
    ACTIVE_ROLLOUT_STATES,
    FINISHED_ROLLOUT_STATES,
    RolloutState,
    StageState,
    TargetState,
)
from rollouts.errors import RolloutError, check_change
from rollouts.models import (
    Application,
    Approval,
    Deployed,
    NamespaceHold,
    Override,
    Revision,
    Rollout,
    RolloutPlan,
    Source,
    Stage,
    Target,
)
from rollouts.rendering import _override_view, refresh_pending, refresh_stage

log = logging.getLogger(__name__)

STAGE_LIMITS = {"approvals_required": (0, 3), "max_parallel": (1, 100), "health_deadline": (10, 3600),
                "soak_time": (0, 86400), "failures_allowed": (0, 100)}
STAGE_DEFAULTS = {"approvals_required": 0, "max_parallel": 1, "health_deadline": 300, "soak_time": 0,
                  "failures_allowed": 0}


# ---------------------------------------------------------------------------------------------
# Applications and revisions


def create_application(*, name: str, namespace: str, user, manifests_text: str, owner: str = "",
                       description: str = "", message: str = "", source_ip: str = "",
                       owner_team: Team | None = None,
                       approver_team: Team | None = None, correct_drift: bool = False,
                       drift_ignore: list[str] | str | None = None) -> Application:
    """An application and its first revision; invalid manifests are refused with every error listed, and the members'
    dry run follows in a worker (`rollouts.dryrun`). A team operator creates applications of their own team only;
    naming another approver team is the platform's."""
    if user is not None and not can(user, "create_application", owner_team):
        raise RolloutError({"owner_team": "Choose a team you are an operator of." if owner_team is None else
                            f"You are not an operator of team {owner_team.name}."}, status=403)
    if approver_team is not None and approver_team != owner_team:
        require(user, "choose_approvers", message="Only global operators name an approver team other than the "
                                                  "owner team.")
    if problem := dns_label_problem(name, "name"):
        raise RolloutError({"name": problem})
    problem, status = manifests.namespace_problem(namespace, admin=has_role(user, ADMIN) if user else True)
    if problem:
        raise RolloutError({"namespace": problem}, status=status)
    try:
        parsed = manifests.parse(manifests_text, namespace=namespace)
    except manifests.ManifestError as exc:
        raise RolloutError({"manifests": "\n".join(exc.errors)}) from None
    if Application.objects.filter(name=name).exists():
        raise RolloutError({"name": f"An application named '{name}' already exists."})
    ignore = _drift_ignore(drift_ignore or [])
    with transaction.atomic():
        app = Application.objects.create(name=name, namespace=namespace, owner=owner, description=description,
                                         created_by=_user(user), owner_team=owner_team, approver_team=approver_team,
                                         correct_drift=correct_drift, drift_ignore=ignore)
        revision = _new_revision(app, parsed, manifests_text, user=user, message=message or "first revision")
        record(user=user, action="application.create", target=app, source_ip=source_ip,
               after={"name": name, "namespace": namespace, "owner": owner, "revision": revision.number,
                      "owner_team": owner_team.name if owner_team else None,
                      "approver_team": approver_team.name if approver_team else None,
                      "digest": revision.digest, "correct_drift": correct_drift,
                      "drift_ignore": ignore})
    return app


def _drift_ignore(value) -> list[str]:
    """The rules as stored (one normalized line each), or a 400 naming every bad line."""
    try:
        return drift.normalized_ignore(value)
    except ValueError as exc:
        raise RolloutError({"drift_ignore": str(exc)}) from None


def _user(user):
    return user if getattr(user, "pk", None) else None


def _new_revision(app: Application, parsed: manifests.Parsed, text: str, *, user, message: str,
                  source: dict | None = None, variants: dict[str, dict] | None = None,
                  digest: str = "") -> Revision:
    """The next revision, its dry run queued for when the save commits."""
    number = (app.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    revision = Revision.objects.create(application=app, number=number, manifests=text, digest=digest or parsed.digest,
                                       objects_summary=parsed.summary, message=message[:500], author=_user(user),
                                       validation=dryrun.checking(), source=source or {}, variants=variants or {})
    dryrun.request(revision)
    return revision


def parse_variants(variants: dict[str, dict], *, namespace: str) -> dict[str, manifests.Parsed]:
    """{group id: the parsed manifests} of a revision's per-group renderings, each validated like the revision's own;
    a problem names its group."""
    parsed = {}
    for key, variant in sorted(variants.items()):
        try:
            parsed[key] = manifests.parse(variant["manifests"], namespace=namespace, sourced=True)
        except manifests.ManifestError as exc:
            raise manifests.ManifestError([f"rendered with group {variant['group']}'s values: {error}"
                                           for error in exc.errors]) from None
    return parsed


def variants_digest(digest: str, parsed: dict[str, manifests.Parsed]) -> str:
    """What a revision's digest is: its objects' digest, and when groups have renderings of their own, the digest of
    it and theirs together (a change of one group's values is a new revision)."""
    if not parsed:
        return digest
    joined = json.dumps([digest, sorted((key, p.digest) for key, p in parsed.items())], separators=(",", ":"))
    return hashlib.sha256(joined.encode()).hexdigest()


def queue_source_check(source_id: int, *, after_commit: bool = False) -> None:
    """Queue a check of an application's source (the id only: its credential stays encrypted in the database until
    the worker's check reads it)."""
    (enqueue_after_commit if after_commit else enqueue)(
        "rollouts.tasks.check_source", source_id, what=f"check of application source #{source_id}")


def create_revision(app: Application, *, manifests_text: str, user, message: str = "", source_ip: str = "",
                    source: dict | None = None, variants: dict[str, dict] | None = None) -> Revision:
    """A new immutable revision, checked by the members and Fleetweb's policies in a worker (`rollouts.dryrun`).
    Pasted by a person: pending approvals of this application's rollouts are voided (what the approvers saw has
    changed). Read from the application's source (`source`: what it pins, `rollouts.sourcing`): nothing is voided,
    since an approval binds to its own revision's commit and a new commit is a revision of its own."""
    check_change(user, app)
    try:
        parsed = manifests.parse(manifests_text, namespace=app.namespace, sourced=bool(source))
        by_group = parse_variants(variants or {}, namespace=app.namespace)
        digest = variants_digest(parsed.digest, by_group)
        variants = {key: {**variant, "digest": by_group[key].digest} for key, variant in (variants or {}).items()}
    except manifests.ManifestError as exc:
        raise RolloutError({"manifests": "\n".join(exc.errors)}) from None
    latest = app.latest_revision
    if latest is not None and latest.digest == digest:
        raise RolloutError({"manifests": f"Nothing changed: this is revision {latest.number} "
                                         f"({latest.short_digest})."})
    with transaction.atomic():
        Application.objects.select_for_update().get(pk=app.pk)  # numbers revisions one at a time
        latest = app.latest_revision
        if latest is not None and latest.digest == digest:
            raise RolloutError({"manifests": f"Nothing changed: this is revision {latest.number} "
                                             f"({latest.short_digest})."})
        revision = _new_revision(app, parsed, manifests_text, user=user, message=message, source=source,
                                 variants=variants, digest=digest)
        voided = 0 if source else Approval.objects.filter(
            stage__rollout__application=app, stage__state__in=[StageState.PENDING, StageState.AWAITING_APPROVAL],
            stage__rollout__state__in=[*ACTIVE_ROLLOUT_STATES, RolloutState.PAUSED], voided_at__isnull=True,
        ).update(voided_at=timezone.now(), void_reason=f"revision {revision.number} of {app.name} was created")
        record(user=user, action="application.revision", target=app, source_ip=source_ip,
               after={"revision": revision.number, "digest": revision.digest, "message": message,
                      "approvals_voided": voided, **({"source": source} if source else {})})
    return revision


def set_override(app: Application, *, group: ClusterGroup, user, replicas=None, image_tags=None, labels=None,
                 values: str | None = None, source_ip: str = "") -> Override | None:
    """Set (or, when empty, remove) the per-group patch of an application. `values` (None: keep them): Helm values
    for the group's clusters, for an application read from a source; they are rendered into the next revision,
    which a check of the source queued now makes (a revision pins what it was rendered with)."""
    check_change(user, app)
    image_tags, labels = image_tags or {}, labels or {}
    with transaction.atomic():
        existing = Override.objects.select_for_update().filter(application=app, group=group).first()
        values = (existing.values if existing else "") if values is None else values
        errors = manifests.validate_override(replicas=replicas, image_tags=image_tags, labels=labels, values=values)
        if errors:
            raise RolloutError({e.split(":", 1)[0]: e.split(":", 1)[1].strip() for e in errors})
        source = Source.objects.filter(application=app).first()
        if values.strip() and source is None:
            raise RolloutError({"values": "Helm values are for an application read from a chart: set its source "
                                          "first."})
        before = _override_view(existing)
        if replicas is None and not image_tags and not labels and not values.strip():
            if existing:
                existing.delete()
            override = None
        else:
            override, _ = Override.objects.update_or_create(
                application=app, group=group, defaults={"replicas": replicas, "image_tags": image_tags,
                                                        "labels": labels, "values": values,
                                                        "updated_by": _user(user), "updated_at": timezone.now()})
        voided = refresh_pending(application=app, reason=f"the override of {app.name} for group {group.name} "
                                                          f"was changed by {_name(user)}")
        values_changed = (existing.values if existing else "") != values
        if values_changed and source is not None:  # rendered anew by the next check, queued once this commits
            Source.objects.filter(pk=source.pk).update(seen="", next_check_at=timezone.now())
            queue_source_check(source.pk, after_commit=True)
        record(user=user, action="application.override", target=app, source_ip=source_ip, before=before,
               after={**(_override_view(override) or {}), "group": group.name, "approvals_voided": voided,
                      **({"render_queued": True} if values_changed and source is not None else {})})
    return override


def _name(user) -> str:
    return user.get_username() if getattr(user, "pk", None) else "system"


def update_application(app: Application, *, user, source_ip: str = "", **changes) -> Application:
    """Change owner, description, drift handling or how long its approvals last at most (`approval_ttl`: shorter
    than its environments' only; the owner team's operators), owner team or approver team (global operators
    only: moving an application or its approvers is the platform's); manifests change through a new revision,
    name and namespace never."""
    check_change(user, app)
    unknown = set(changes) - {"owner", "description", "owner_team", "approver_team", "correct_drift",
                              "drift_ignore", "approval_ttl"}
    if unknown:
        raise RolloutError({"detail": "Only owner, description, owner team, approver team, drift correction, "
                                      "the fields drift ignores and how long approvals last change here; manifests "
                                      "change through a new revision, name and namespace never."})
    ttl = changes.get("approval_ttl")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or not 60 <= ttl <= 31 * 86400):
        raise RolloutError({"approval_ttl": "Seconds from 60 to 2678400 (31 days), or none: approvals then last "
                                            "what their clusters' environments say."})
    if "drift_ignore" in changes:
        changes["drift_ignore"] = _drift_ignore(changes["drift_ignore"])
    for field in ("owner_team", "approver_team"):
        if field in changes and changes[field] != getattr(app, field):
            require(user, "choose_approvers", message=f"Only global operators change the {field.replace('_', ' ')} "
                                                      "of an application.")
    with transaction.atomic():
        app = Application.objects.select_for_update().get(pk=app.pk)
        before = {f: _shown(getattr(app, f)) for f in changes}
        for field, value in changes.items():
            setattr(app, field, value)
        app.save(update_fields=list(changes) or None)
        if {"owner_team", "approver_team"} & set(changes):
            refresh_pending(application=app, reason=f"the teams of {app.name} were changed by {_name(user)}")
        record(user=user, action="application.update", target=app, source_ip=source_ip, before=before,
               after={f: _shown(getattr(app, f)) for f in changes})
    return app


def _shown(value):
    return value.name if isinstance(value, Team) else value


def delete_application(app: Application, *, user, source_ip: str = "") -> None:
    """Delete an application with its revisions and rollouts; refused while one of its rollouts is active."""
    check_change(user, app)
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
# Creating a rollout


STAGE_FIELDS = ("name", "group", "selector", *STAGE_DEFAULTS, "min_success_ratio")


def clean_stages(raw) -> list[dict]:
    """Validate stage specs (from a plan or inline). Error keys are paths (`stages[0].selector`); every message
    starts with the stage as people count it ("stage 1 'canary': …"), since that is what the page shows."""
    if not isinstance(raw, list) or not raw:
        raise RolloutError({"stages": "give at least one stage"})
    if len(raw) > 20:
        raise RolloutError({"stages": "at most 20 stages"})
    errors: dict[str, str] = {}
    cleaned = []
    seen: dict[str, int] = {}
    for i, spec in enumerate(raw):
        where = f"stages[{i}]"
        if not isinstance(spec, dict):
            errors[where] = f"stage {i + 1}: must be a mapping (name: …, selector: …), not {type(spec).__name__}"
            continue
        name = spec.get("name")
        label = f"stage {i + 1}" + (f" '{name}'" if isinstance(name, str) and name.strip() else "")
        key = name.strip() if isinstance(name, str) else ""
        if key and key in seen:
            errors[f"{where}.name"] = f"{label}: the name is already used by stage {seen[key] + 1}"
        seen.setdefault(key, i)
        unknown = sorted(set(spec) - set(STAGE_FIELDS), key=str)
        if unknown:
            errors[where] = f"{label}: " + "; ".join(_unknown_field(str(key)) for key in unknown)
            continue
        stage = _clean_stage(spec, label, where, errors)
        cleaned.append(stage)
    if errors:
        raise RolloutError(errors)
    return cleaned


def _unknown_field(key: str) -> str:
    close = difflib.get_close_matches(key, STAGE_FIELDS, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(STAGE_FIELDS)})"
    return f"unknown field '{key}'{hint}"


def _clean_stage(spec: dict, label: str, where: str, errors: dict[str, str]) -> dict:
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        errors[f"{where}.name"] = f"{label}: a name is required (approvers and the timeline show it)"
        name = ""
    elif len(name.strip()) > 63:
        errors[f"{where}.name"] = f"{label}: the name is longer than 63 characters"
    stage = {"name": (name or "").strip()[:63], "group": spec.get("group") or "",
             "selector": str(spec.get("selector") or "").strip()}
    if bool(stage["group"]) == bool(stage["selector"]):
        errors[f"{where}.group"] = f"{label}: give a group or a selector (exactly one)"
    if stage["selector"]:
        try:
            selectors.parse(stage["selector"])
        except selectors.SelectorError as exc:
            errors[f"{where}.selector"] = f"{label}: {exc}"
    for field, (low, high) in STAGE_LIMITS.items():
        value = spec.get(field, STAGE_DEFAULTS[field])
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            errors[f"{where}.{field}"] = f"{label}: {field} must be a whole number from {low} to {high}"
        stage[field] = value
    ratio = spec.get("min_success_ratio")
    if ratio is not None and (not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1):
        errors[f"{where}.min_success_ratio"] = (f"{label}: min_success_ratio is the share of targets that must "
                                                "succeed, above 0 and at most 1 (e.g. 0.9)")
        ratio = None
    stage["min_success_ratio"] = float(ratio) if ratio is not None else None
    return stage


def _stage_clusters(spec: dict, *, field: str = "stages", user=None) -> list[Cluster]:
    """The clusters a stage reaches, among those `user` can see: a team member's selector is resolved inside their
    scope, so no refusal, count or preview says whether clusters they cannot see match it."""
    visible = Cluster.objects.all() if user is None else Cluster.objects.visible_to(user)
    if spec["group"]:
        groups = ClusterGroup.objects.all() if user is None else ClusterGroup.objects.visible_to(user)
        group = groups.filter(name=spec["group"]).first()
        if group is None:
            raise RolloutError({field: f"stage '{spec['name']}': no group named '{spec['group']}'"})
        return list(group.members().filter(pk__in=visible.values("pk")).order_by("name"))
    return list(visible.filter(selectors.parse(spec["selector"]).q()).order_by("name"))


def prod_approval_note(prod_names: list[str]) -> str:
    """Why a stage needs an approval its plan did not ask for (at creation, and again when the stage starts)."""
    return f"approval required: reaches prod cluster(s) {', '.join(prod_names[:5])}"


def create_rollout(*, revision: Revision, user, stages=None, plan: RolloutPlan | None = None,
                   source_ip: str = "") -> Rollout:
    """A rollout of one revision through ordered stages; clusters are resolved now and never change.

    Refused: a revision every member refused in its dry run, a stage matching no cluster, a cluster in two stages. A
    stage reaching an `environment=prod` cluster requires at least one approval whatever the plan says. A revision
    still being checked may be rolled out: its first stage waits for the verdict (`rollouts.gates.PolicyGate`).
    """
    if (revision.validation or {}).get("state") == dryrun.FAILED:
        raise RolloutError({"revision": f"Revision {revision.number} failed its dry run (every member asked refused "
                            "it): a rollout never starts from it. Fix the manifests in a new revision.\n"
                            + dryrun.summary(revision.validation)}, status=409)
    app = revision.application
    check_change(user, app)
    if plan is not None:
        stages = plan.stages
    specs = clean_stages(stages)
    owner_scope = team_scope(app.owner_team_id) if app.owner_team_id is not None else None  # once, not per stage
    resolved = []
    seen: dict[int, str] = {}
    for i, spec in enumerate(specs):
        # Keys are paths like clean_stages's, so the builder puts each refusal on the stage at fault.
        field = f"stages[{i}].{'group' if spec['group'] else 'selector'}"
        clusters = _stage_clusters(spec, field=field, user=user)
        if not clusters:
            what = f"group {spec['group']}" if spec["group"] else f"selector '{spec['selector']}'"
            raise RolloutError({field: f"stage {i + 1} '{spec['name']}' ({what}) matches no cluster"})
        for c in clusters:
            if c.pk in seen:
                raise RolloutError({field: f"cluster {c.name} is in stage '{seen[c.pk]}' and in stage "
                                           f"'{spec['name']}': a cluster may be in one stage only"})
            seen[c.pk] = spec["name"]
        if refusal := deploy_refusal(user, app, clusters, owner_scope=owner_scope):
            raise RolloutError({field: f"stage {i + 1} '{spec['name']}': {refusal}"}, status=403)
        if held := ownership.namespace_refusals(app, clusters):
            raise RolloutError({field: f"stage {i + 1} '{spec['name']}': {_held_message(clusters, held)}"},
                               status=403)
        prod = [c.name for c in clusters if c.environment == Environment.PROD]
        if prod and spec["approvals_required"] < 1:
            spec = {**spec, "approvals_required": 1, "note": prod_approval_note(prod)}
        resolved.append((spec, clusters))
    # What each cluster runs now, frozen with the rollout: a rollback re-applies exactly these objects (deployed and
    # verified then), never the older revision rendered again with today's overrides.
    deployed = {d.cluster_id: d for d in Deployed.objects.filter(application=app)}
    with transaction.atomic():
        rollout = Rollout.objects.create(application=app, revision=revision, requested_by=_user(user),
                                         plan_name=plan.name if plan else "", next_step_at=timezone.now())
        for index, (spec, clusters) in enumerate(resolved):
            group = ClusterGroup.objects.filter(name=spec["group"]).first() if spec["group"] else None
            stage = Stage.objects.create(
                rollout=rollout, index=index, name=spec["name"], group=group, selector=spec["selector"],
                message=spec.get("note", ""), min_success_ratio=spec.get("min_success_ratio"),
                **{f: spec[f] for f in STAGE_DEFAULTS})
            Target.objects.bulk_create([
                Target(stage=stage, cluster=c, previous_revision_id=d.revision_id if d else None,
                       previous_objects=d.objects_applied if d else [], previous_approved=bool(d and d.approved))
                for c in clusters for d in [deployed.get(c.pk)]])
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
    pk = rollout.pk
    Rollout.objects.filter(pk=pk).update(queued_at=timezone.now(), next_step_at=timezone.now())
    enqueue_after_commit("rollouts.tasks.advance_rollout", pk, what=f"rollout #{pk}",
                         on_failure=lambda: Rollout.objects.filter(pk=pk).update(queued_at=None))


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


def pause_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Stop advancing: nothing new is applied until resumed (in-flight applies finish)."""
    check_change(user, rollout.application)
    with transaction.atomic():
        current = Rollout.objects.select_for_update().get(pk=rollout.pk)
        rollout = _claim(current, (RolloutState.PENDING, RolloutState.RUNNING), RolloutState.PAUSED,
                         paused_from=current.state)
        record(user=user, action="rollout.pause", target=rollout, source_ip=source_ip)
    return rollout


def resume_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    check_change(user, rollout.application)
    with transaction.atomic():
        current = Rollout.objects.select_for_update().get(pk=rollout.pk)
        back = current.paused_from or RolloutState.RUNNING
        rollout = _claim(current, (RolloutState.PAUSED,), back, paused_from="", next_step_at=timezone.now())
        record(user=user, action="rollout.resume", target=rollout, source_ip=source_ip)
        kick(rollout)
    return rollout


def abort_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Stop for good: no further stage or cluster is touched; what was applied stays (roll back to undo)."""
    check_change(user, rollout.application)
    now = timezone.now()
    with transaction.atomic():
        rollout = _claim(rollout, (RolloutState.PENDING, RolloutState.RUNNING, RolloutState.PAUSED),
                         RolloutState.ABORTED, finished_at=now, next_step_at=None,
                         message=f"aborted by {user.get_username()}")
        rollout.stages.exclude(state__in=[StageState.SUCCEEDED, StageState.FAILED, StageState.REJECTED]).update(
            state=StageState.ABORTED, finished_at=now)
        record(user=user, action="rollout.abort", target=rollout, source_ip=source_ip)
    return rollout


def _held_message(clusters: list, held: dict[int, str]) -> str:
    """The namespace refusals of a stage (its clusters are among those the person can see: `_stage_clusters`)."""
    return "; ".join([held[c.pk] for c in clusters if c.pk in held][:10])


def hold_namespace(*, cluster: Cluster, name: str, team: Team | None, user, source_ip: str = "") -> NamespaceHold:
    """Hand a namespace on a member to a team (or back to the platform, `team=None`): from then on only that owner's
    applications deploy into it. Admins only; the platform's own namespaces stay the platform's. Audited."""
    require(user, "hold_namespace", message="Only admins hand namespaces to teams.")
    problem = dns_label_problem(name, "namespace name")
    if problem:
        raise RolloutError({"name": problem})
    if team is not None and ownership.platform_namespace(name):
        raise RolloutError({"name": f"'{name}' is one of the platform's own namespaces (kube-*, {FLEETWEB_NAMESPACE}, "
                                    "FLEETWEB_PLATFORM_NAMESPACES); it is never a team's."})
    with transaction.atomic():
        existing = NamespaceHold.objects.select_for_update().filter(cluster=cluster, name=name).first()
        before = {"team": existing.team.name if existing and existing.team else None} if existing else None
        hold, _ = NamespaceHold.objects.update_or_create(cluster=cluster, name=name,
                                                         defaults={"team": team, "at": timezone.now()})
        record(user=user, action="namespace.hold", target_name=f"{name} on {cluster.name}", source_ip=source_ip,
               before=before, after={"cluster": cluster.name, "namespace": name,
                                     "team": team.name if team else None})
    return hold


def rollback_rollout(rollout: Rollout, *, user, source_ip: str = "") -> Rollout:
    """Re-apply, on every cluster that got this revision, what it ran before (or remove it where it ran
    nothing), and verify it."""
    check_change(user, rollout.application)
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
