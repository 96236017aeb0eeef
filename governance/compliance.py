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


TALLIES = tuple(f"{severity}_{what}" for severity in rules.SEVERITIES for what in ("checks", "passed", "open"))


def tallies(results: list[dict]) -> dict[str, int]:
    """A cluster's results added up by severity: checks, passed and open violations (`ClusterCompliance`'s
    `<severity>_checks`, `_passed`, `_open`)."""
    out = dict.fromkeys(TALLIES, 0)
    for r in results:
        out[f"{r['severity']}_checks"] += 1
        out[f"{r['severity']}_passed"] += 0 if r["violations"] else 1
        out[f"{r['severity']}_open"] += r["violations"]
    return out


def fleet_tallies(rows) -> dict:
    """Over ClusterCompliance `rows`, in one aggregate of one row per cluster: the clusters, those failing, the open
    violations, the checks and passes by severity (`TALLIES`) and the open violations by severity."""
    sums = rows.aggregate(clusters=Count("pk"), failing=Count("pk", filter=Q(failed__gt=0)),
                          open=Sum("open_violations"), **{name: Sum(name) for name in TALLIES})
    return {"clusters": sums["clusters"], "failing": sums["failing"], "open": sums["open"] or 0,
            "checks": [(s, sums[f"{s}_checks"] or 0, sums[f"{s}_passed"] or 0) for s in rules.SEVERITIES],
            "by_severity": {s: sums[f"{s}_open"] for s in rules.SEVERITIES if sums[f"{s}_open"]}}


def group_scores(groups, *, user=None, within: frozenset[int] | None = None) -> dict[int | None, dict]:
    """{group id: {score, clusters, failing_clusters, open_violations}} plus None for the fleet (with by_severity).

    A group's score counts only its own assignments' results (on the clusters that were its members when
    they were last evaluated: every membership change queues an evaluation); the fleet's counts each rule once per
    cluster (a cluster's own results, added up by severity on its ClusterCompliance row: `fleet_tallies`). For a
    team member (`user` with no global role) everything is computed over the clusters in their teams' scopes
    only: "the fleet" is then their part of it. Four aggregate queries whatever the number of groups and
    clusters (plus the scope's, once per request). `within` narrows further (the team switcher).
    """
    groups = list(groups)
    scope, results, fleet_rows = _rows_seen_by(user, within)
    checks_by: dict[int | None, list[tuple[str, int, int]]] = defaultdict(list)  # (severity, checks, passed)
    open_by_group: Counter = Counter()
    if groups:
        for group_id, severity, checks, passed, violations in (
                results.filter(assignment__group__in=groups).order_by()
                .values_list("assignment__group_id", "severity")
                .annotate(checks=Count("pk"), passed=Count("pk", filter=Q(violations=0)), open=Sum("violations"))
                .values_list("assignment__group_id", "severity", "checks", "passed", "open")):
            checks_by[group_id].append((severity, checks, passed))
            open_by_group[group_id] += violations
    failing = dict(results.filter(violations__gt=0, assignment__group__in=groups).order_by()
                   .values("assignment__group_id").annotate(n=Count("cluster_id", distinct=True))
                   .values_list("assignment__group_id", "n")) if groups else {}
    counts = inventory_services.member_counts(groups, within=scope)
    fleet = fleet_tallies(fleet_rows)

    def score(key) -> float | None:
        return rules.weighted_score(checks_by.get(key, ()))

    out: dict[int | None, dict] = {
        g.pk: {"score": score(g.pk), "clusters": counts[g.pk], "failing_clusters": failing.get(g.pk, 0),
               "open_violations": open_by_group[g.pk]} for g in groups}
    out[None] = {"score": rules.weighted_score(fleet["checks"]), "clusters": fleet["clusters"],
                 "by_severity": fleet["by_severity"], "failing_clusters": fleet["failing"],
                 "open_violations": fleet["open"]}
    return out


def fleet_summary(*, user=None) -> dict:
    """The fleet's score and open violations only (what the overview polls every 10 s): `fleet_tallies` over the
    clusters the user sees (a team member: their teams' scopes), one aggregate of one row per cluster."""
    _scope, _results, rows = _rows_seen_by(user, None)
    fleet = fleet_tallies(rows)
    return {"score": rules.weighted_score(fleet["checks"]), "open_violations": fleet["open"]}


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
