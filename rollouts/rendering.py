"""What each cluster receives: the revision rendered with the override of its first group, frozen on the target
when its stage awaits approval or starts, and the digests approvals cover. A change that alters a rendering voids
the pending approvals it concerns."""

from __future__ import annotations

import hashlib
import json
import logging

from django.utils import timezone

from inventory.models import Cluster
from inventory.services import membership
from rollouts import manifests
from rollouts.choices import (
    ACTIVE_ROLLOUT_STATES,
    RolloutState,
    StageState,
)
from rollouts.models import Application, Override, Revision, Stage, Target

log = logging.getLogger(__name__)


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
    """{cluster id: the revision's objects as they would be applied there now} (override and labels included, and for
    a group rendered with its own Helm values, that rendering); the manifests are parsed once for all clusters."""
    clusters = list(clusters)
    parsed = manifests.parse(revision.manifests, namespace=application.namespace,
                             sourced=bool(revision.source))
    overrides = overrides_in_effect(application, clusters)
    variants: dict[str, list[dict]] = {}

    def objects(override: Override | None) -> list[dict]:
        """The revision's objects, or those rendered with the override's group values when the revision has them
        (a revision pins what it was rendered with: values set since are in the next one)."""
        key = str(override.group_id) if override is not None else ""
        variant = (revision.variants or {}).get(key)
        if variant is None:
            return parsed.objects
        if key not in variants:
            variants[key] = manifests.parse(variant["manifests"], namespace=application.namespace,
                                            sourced=True).objects
        return variants[key]

    return {c.pk: manifests.render(objects(overrides[c.pk]), application=application.name,
                                   revision=revision.number, digest=revision.digest, override=overrides[c.pk])
            for c in clusters}


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
    """An override as its audit events show it: the values by their digest (they may be long, and name secrets)."""
    if o is None:
        return None
    view = {"group": o.group.name, "replicas": o.replicas, "image_tags": o.image_tags, "labels": o.labels}
    if o.values.strip():
        view["values_digest"] = manifests.values_digest(o.values)
    return view
