"""Rollouts' metrics (foundation/metrics.py): rollouts by state (one aggregate), the stages awaiting approval with how
long each has waited (one query), and the stages a change window holds with when it opens (one query)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from foundation.metrics import Gauge, gauge, labels, register
from rollouts.choices import RolloutState, StageState
from rollouts.models import Rollout, Stage


@register
def rollouts() -> Iterable[Gauge]:
    by_state = gauge("fleetweb_rollouts", "Rollouts by state")
    counts = dict(Rollout.objects.order_by().values("state").annotate(n=Count("pk")).values_list("state", "n"))
    for state in RolloutState.values:
        by_state.add(labels(state=state), counts.get(state, 0))
    yield by_state
    now = timezone.now()
    waiting = list(Stage.objects.filter(state=StageState.AWAITING_APPROVAL)
                   .values_list("rollout__application__name", "awaiting_since"))
    awaiting = gauge("fleetweb_stages_awaiting_approval", "Stages awaiting approval")
    awaiting.add("", len(waiting))
    yield awaiting
    oldest = gauge("fleetweb_stage_approval_wait_seconds",
                   "How long the longest-waiting stage of each application has awaited approval")
    longest: dict[str, float] = {}
    for app, since in waiting:
        if since is not None:
            longest[app] = max(longest.get(app, 0.0), (now - since).total_seconds())
    for app, seconds in sorted(longest.items()):
        oldest.add(labels(application=app), seconds)
    yield oldest
    held = gauge("fleetweb_stage_window_opens_in_seconds",
                 "Stages held by a change window or a busy cluster: seconds until the window opens (-1: not known, "
                 "a busy cluster or no opening within the horizon)")
    for app, rollout, stage, hold in (Stage.objects.filter(state__in=(StageState.PENDING, StageState.AWAITING_APPROVAL),
                                                           rollout__state=RolloutState.RUNNING,
                                                           window_hold__has_key="clusters")
                                      .order_by("rollout_id", "index")
                                      .values_list("rollout__application__name", "rollout_id", "name", "window_hold")):
        opens = datetime.fromisoformat(hold["opens_at"]) if hold.get("opens_at") else None
        held.add(labels(application=app, rollout=str(rollout), stage=stage),
                 max(0.0, (opens - now).total_seconds()) if opens else -1)
    yield held
