"""What rollouts add to inventory's pages (registered in `RolloutsConfig.ready` through `inventory.extensions`)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Exists, OuterRef, Q
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone

from foundation.queries import any_rows
from inventory import extensions
from rollouts import corrections, ownership
from rollouts.choices import ACTIVE_ROLLOUT_STATES, DriftState, RolloutState, StageState
from rollouts.models import Application, Deployed, Drift, Rollout, Stage

RANK_FAILED, RANK_DRIFTED, RANK_AWAITING = 1, 3, 3.5  # in the overview's "Needs attention" (critical violations: 2)
ATTENTION_EACH = 15
FAILED_FOR = timedelta(days=7)


def overview_cards(user) -> list[dict]:
    """Active rollouts, and stages waiting for an approval, for the overview (two counts in one query each, each only
    where the fleet has some at all: one query when there are none)."""
    any_active, any_waiting = any_rows(Rollout.objects.filter(state__in=ACTIVE_ROLLOUT_STATES),
                                       Stage.objects.filter(state=StageState.AWAITING_APPROVAL))
    active = (Rollout.objects.visible_to(user).aggregate(n=Count("pk", filter=Q(state__in=ACTIVE_ROLLOUT_STATES)))["n"]
              if any_active else 0)
    waiting = (Stage.objects.filter(state=StageState.AWAITING_APPROVAL,
                                    rollout__in=Rollout.objects.visible_to(user)).count() if any_waiting else 0)
    return [{"id": "card-rollouts", "value": active, "label": f"active rollout{pluralize(active)}",
             "url": reverse("rollouts:rollout_list") + "?state=active"},
            {"id": "card-awaiting", "value": waiting, "label": f"stage{pluralize(waiting)} awaiting approval",
             "url": reverse("rollouts:my_approvals")}]


def needs_attention(user, clusters, team: str = "") -> list[dict]:
    """Failed rollouts (the last of their application, within a week), applications drifted or missing on a
    cluster of `clusters`, and stages awaiting approval; of the applications the user may see (the team's, with
    the team switcher on)."""
    failed = Rollout.objects.filter(state=RolloutState.FAILED, finished_at__gte=timezone.now() - FAILED_FOR)
    drifted = Drift.objects.filter(state__in=[DriftState.DRIFTED, DriftState.MISSING])
    awaiting = Stage.objects.filter(state=StageState.AWAITING_APPROVAL)
    # Most refreshes find none of the three anywhere: then the scoped queries below (their planning alone cost more
    # than this) are not asked.
    any_failed, any_drifted, any_awaiting = any_rows(failed, drifted, awaiting)
    apps = Application.objects.visible_to(user)
    if team:
        apps = apps.filter(owner_team__name=team)
    rows: list[dict] = []
    newer = Rollout.objects.filter(application=OuterRef("application"), created_at__gt=OuterRef("created_at"))
    for r in (failed.filter(application__in=apps).exclude(Exists(newer)).select_related("application")
              .order_by("-finished_at")[:ATTENTION_EACH] if any_failed else failed.none()):
        rows.append({"subject": f"rollout #{r.pk} of {r.application.name}", "url": r.get_absolute_url(),
                     "badge": "failed", "tone": "failed", "why": r.message, "at": r.finished_at,
                     "rank": RANK_FAILED})
    for d in (drifted.filter(deployed__application__in=apps, deployed__cluster__in=clusters)
              .select_related("deployed__application", "deployed__cluster")
              .only("state", "objects_state", "since", "deployed__application__name", "deployed__cluster__name")
              .order_by("since")[:ATTENTION_EACH] if any_drifted else drifted.none()):  # (not the wide rows of either)
        objects = [f"{o.get('kind')} {o.get('name')}" for o in d.objects_state or []
                   if o.get("state") in (DriftState.DRIFTED, DriftState.MISSING)]
        app = d.deployed.application
        rows.append({"subject": f"{app.name} on {d.deployed.cluster.name}",
                     "url": reverse("rollouts:application_detail", args=[app.name]) + "#drift-section",
                     "badge": d.get_state_display(), "tone": "degraded",
                     "why": f"{', '.join(objects[:3])}{' and more' if len(objects) > 3 else ''} "
                            f"{'drifted from' if d.state == DriftState.DRIFTED else 'missing since'} what Fleetweb "
                            "applied", "at": d.since, "rank": RANK_DRIFTED})
    for s in (awaiting.filter(rollout__application__in=apps).select_related("rollout__application")
              .order_by("awaiting_since")[:ATTENTION_EACH] if any_awaiting else awaiting.none()):
        rows.append({"subject": f"{s.rollout.application.name}: stage {s.name}", "url": s.rollout.get_absolute_url(),
                     "badge": "awaiting approval", "tone": "pending",
                     "why": f"{s.approvals_required} approval{pluralize(s.approvals_required)} needed before rollout "
                            f"#{s.rollout_id} goes on", "at": s.awaiting_since, "rank": RANK_AWAITING})
    return rows


def applications_tab(cluster, page_number, user=None) -> dict:
    """The applications Fleetweb deployed to this cluster that the user may see, with their drift, and how many
    others run here (another team's or the platform's: counted, not named; the cluster's workloads show them)."""
    here = Deployed.objects.filter(cluster=cluster)
    deployments = (here.filter(application__in=Application.objects.visible_to(user))
                   .select_related("application", "cluster", "revision", "drift").order_by("application__name"))
    drifts = corrections.rows_for(deployments)
    return {"drifts": drifts, "on_cluster": True, "others_here": here.count() - len(drifts)}


def register() -> None:
    extensions.register(cards=overview_cards, tab=("applications", applications_tab), holders=ownership.holders_of,
                        needs_attention=needs_attention)
