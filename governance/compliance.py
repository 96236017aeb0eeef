"""Compliance of groups and the fleet: scores over what clusters report, trend points, history for the pages."""


from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from governance import rules
from governance.models import (
    ClusterCompliance,
    GroupComplianceSnapshot,
    PolicyResult,
)
from inventory import services as inventory_services
from inventory.models import ClusterGroup
from inventory.people.access import cluster_scope

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Group and fleet compliance


def _rows_seen_by(user, within: frozenset[int] | None):
    """(cluster ids or None for all, PolicyResult rows, ClusterCompliance rows) over the clusters `user` sees
    (all for no user), narrowed to `within` when given."""
    scope = cluster_scope(user) if user is not None else None
    if within is not None:
        scope = within if scope is None else scope & within
    if scope is None:
        return None, PolicyResult.objects.all(), ClusterCompliance.objects.all()
    return scope, PolicyResult.objects.filter(cluster_id__in=scope), ClusterCompliance.objects.filter(
        cluster_id__in=scope)


def group_scores(groups, *, user=None, within: frozenset[int] | None = None) -> dict[int | None, dict]:
    """{group id: {score, clusters, failing_clusters, open_violations}} plus None for the fleet (with by_severity).

    A group's score counts only its own assignments' results (on the clusters that were its members when
    they were last evaluated: every membership change queues an evaluation); the fleet's counts each rule once per
    cluster (primary results: a rule two groups assign is one result). For a
    team member (`user` with no global role) everything is computed over the clusters in their teams' scopes
    only: "the fleet" is then their part of it. Four aggregate queries whatever the number of groups and
    clusters (plus the scope's, once per request). `within` narrows further (the team switcher).
    """
    groups = list(groups)
    scope, results, fleet_rows = _rows_seen_by(user, within)
    checks_by: dict[int | None, list[tuple[str, int, int]]] = defaultdict(list)  # (severity, checks, passed)
    open_by_group: Counter = Counter()
    by_severity: Counter = Counter()
    for group_id, severity, primary, checks, passed, violations in (
            results.order_by().values_list("assignment__group_id", "severity", "primary")
            .annotate(checks=Count("pk"), passed=Count("pk", filter=Q(violations=0)), open=Sum("violations"))
            .values_list("assignment__group_id", "severity", "primary", "checks", "passed", "open")):
        checks_by[group_id].append((severity, checks, passed))
        open_by_group[group_id] += violations
        if primary:  # the fleet counts a rule once per cluster, however many groups assign it
            checks_by[None].append((severity, checks, passed))
            by_severity[severity] += violations
    failing = dict(results.filter(violations__gt=0).order_by().values("assignment__group_id")
                   .annotate(n=Count("cluster_id", distinct=True)).values_list("assignment__group_id", "n"))
    counts = inventory_services.member_counts(groups, within=scope)
    fleet = fleet_rows.aggregate(clusters=Count("pk"), failing=Count("pk", filter=Q(failed__gt=0)),
                                                open=Sum("open_violations"))

    def score(key) -> float | None:
        return rules.weighted_score(checks_by.get(key, ()))

    out: dict[int | None, dict] = {
        g.pk: {"score": score(g.pk), "clusters": counts[g.pk], "failing_clusters": failing.get(g.pk, 0),
               "open_violations": open_by_group[g.pk]} for g in groups}
    out[None] = {"score": score(None), "clusters": fleet["clusters"], "by_severity": dict(by_severity),
                 "failing_clusters": fleet["failing"], "open_violations": fleet["open"] or 0}
    return out


def fleet_summary(*, user=None) -> dict:
    """The fleet's score and open violations only (what the overview polls every 10 s): the score of
    `group_scores(...)[None]` from one aggregate by severity, with no join and no per-group counts, and the
    open violations from the clusters' own counters. Over the user's clusters for a team member."""
    _scope, results, rows = _rows_seen_by(user, None)
    checks = list(results.filter(primary=True).order_by().values("severity").annotate(checks=Count("pk"),
                                                                 passed=Count("pk", filter=Q(violations=0)))
                  .values_list("severity", "checks", "passed"))
    return {"score": rules.weighted_score(checks),
            "open_violations": rows.aggregate(n=Sum("open_violations"))["n"] or 0}


def record_group_history(*, now=None) -> int:
    """Write one trend point per group and one for the fleet (run by beat); returns the points written."""
    now = now or timezone.now()
    groups = list(ClusterGroup.objects.all())
    scores = group_scores(groups)
    points = [GroupComplianceSnapshot(group=g, at=now, score=scores[g.pk]["score"], clusters=scores[g.pk]["clusters"],
                                      failing_clusters=scores[g.pk]["failing_clusters"],
                                      open_violations=scores[g.pk]["open_violations"]) for g in groups]
    fleet = scores[None]
    points.append(GroupComplianceSnapshot(group=None, at=now, score=fleet["score"], clusters=fleet["clusters"],
                                          failing_clusters=fleet["failing_clusters"],
                                          open_violations=fleet["open_violations"]))
    GroupComplianceSnapshot.objects.bulk_create(points)
    return len(points)


def history(queryset, *, days: int = 30) -> list[dict]:
    """Trend points (at, score, open violations) of the last `days`, oldest first."""
    since = timezone.now() - timedelta(days=days)
    return [{"at": at, "score": score, "open_violations": open_v}
            for at, score, open_v in queryset.filter(at__gte=since).order_by("at")
            .values_list("at", "score", "open_violations")[:2000]]


def group_history(*, days: int = 30) -> dict[int | None, list[dict]]:
    """Trend points of every group (and the fleet, key None) in one query, oldest first."""
    since = timezone.now() - timedelta(days=days)
    out: dict[int | None, list[dict]] = defaultdict(list)
    for group_id, at, score, open_v in (GroupComplianceSnapshot.objects.filter(at__gte=since).order_by("at")
                                        .values_list("group_id", "at", "score", "open_violations")):
        out[group_id].append({"at": at, "score": score, "open_violations": open_v})
    return out
