"""Compliance of groups and the fleet: scores over what clusters report, trend points, history for the pages."""


from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import timedelta

from django.db import connection
from django.db.models import Count, Q, Sum
from django.utils import timezone

from governance import rules
from governance.models import (
    ClusterCompliance,
    GroupComplianceSnapshot,
    GroupTally,
    PolicyAssignment,
)
from inventory.models import Cluster, ClusterGroup, member_counts
from inventory.people.access import access_of, scope_query

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Group and fleet compliance


def _rows_seen_by(user, within: frozenset[int] | None):
    """(the clusters seen as a queryset, or None for all; their ClusterCompliance rows): the clusters `user` sees
    (all for no user), narrowed to `within` when given. A team member's scope is the cluster table's own condition
    (`Access.cluster_condition`), decided by the database in each query, never a list of ids."""
    seen = None if user is None or scope_query(user) is None else Cluster.objects.visible_to(user)
    if within is not None:
        seen = (Cluster.objects.all() if seen is None else seen).filter(pk__in=within)
    if seen is None:
        return None, ClusterCompliance.objects.all()
    seen = seen.order_by()
    return seen, ClusterCompliance.objects.filter(cluster_id__in=seen.values("pk"))


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


# A group's tallies from its stored results, for the groups `where` names (an assignment removed).
REBUILD_GROUP_TALLIES = """INSERT INTO governance_grouptally (cluster_id, group_id, failing,
    critical_checks, critical_passed, critical_open,
    high_checks, high_passed, high_open,
    medium_checks, medium_passed, medium_open,
    low_checks, low_passed, low_open)
SELECT r.cluster_id, a.group_id, bool_or(r.violations > 0),
       count(*) FILTER (WHERE r.severity = 'critical'),
       count(*) FILTER (WHERE r.severity = 'critical' AND r.violations = 0),
       coalesce(sum(r.violations) FILTER (WHERE r.severity = 'critical'), 0),
       count(*) FILTER (WHERE r.severity = 'high'),
       count(*) FILTER (WHERE r.severity = 'high' AND r.violations = 0),
       coalesce(sum(r.violations) FILTER (WHERE r.severity = 'high'), 0),
       count(*) FILTER (WHERE r.severity = 'medium'),
       count(*) FILTER (WHERE r.severity = 'medium' AND r.violations = 0),
       coalesce(sum(r.violations) FILTER (WHERE r.severity = 'medium'), 0),
       count(*) FILTER (WHERE r.severity = 'low'),
       count(*) FILTER (WHERE r.severity = 'low' AND r.violations = 0),
       coalesce(sum(r.violations) FILTER (WHERE r.severity = 'low'), 0)
FROM governance_policyresult r JOIN governance_policyassignment a ON a.id = r.assignment_id
{where}GROUP BY r.cluster_id, a.group_id"""


def rebuild_group_tallies(group_ids: list[int]) -> None:
    """The tallies of these groups recomputed from their stored results (after an assignment went, whose results
    went with it), in the caller's transaction."""
    if not group_ids:
        return
    GroupTally.objects.filter(group_id__in=group_ids).delete()
    with connection.cursor() as cursor:
        cursor.execute(REBUILD_GROUP_TALLIES.format(where="WHERE a.group_id = ANY(%s) "), [list(group_ids)])


def store_group_tallies(ids: list[int], wanted: dict[tuple[int, int], tuple[str, int, bool]]) -> None:
    """The tallies per group of the clusters `ids`, from their results as `_store_results` wants them ((cluster,
    assignment) -> (severity, violations, primary)): only rows that changed are written, those of groups no longer
    reaching a cluster deleted."""
    group_of = dict(PolicyAssignment.objects.filter(pk__in={a for _c, a in wanted}).values_list("pk", "group_id"))
    results: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for (cluster_id, assignment_id), (severity, violations, _primary) in wanted.items():
        group_id = group_of.get(assignment_id)
        if group_id is not None:  # None: removed while the rules ran, and its results are left out too
            results[(cluster_id, group_id)].append({"severity": severity, "violations": violations})
    per = {key: {"failing": any(r["violations"] for r in rows), **tallies(rows)} for key, rows in results.items()}
    fields = ("failing", *TALLIES)
    existing = {(c, g): (pk, values) for pk, c, g, *values in GroupTally.objects.filter(cluster_id__in=ids)
                .values_list("pk", "cluster_id", "group_id", *fields)}
    changed = [GroupTally(cluster_id=c, group_id=g, **row) for (c, g), row in per.items()
               if (c, g) not in existing or existing[(c, g)][1] != [row[f] for f in fields]]
    GroupTally.objects.bulk_create(changed, update_conflicts=True, unique_fields=["cluster", "group"],
                                   update_fields=list(fields))
    gone = [pk for key, (pk, _values) in existing.items() if key not in per]
    if gone:
        GroupTally.objects.filter(pk__in=gone).delete()


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
    only: "the fleet" is then their part of it. Three aggregate queries whatever the number of groups and clusters,
    over one row per cluster (and group): `GroupTally`, `ClusterCompliance`'s tallies, and the groups' members.
    `within` narrows further (the team switcher).
    """
    groups = list(groups)
    scope, fleet_rows = _rows_seen_by(user, within)
    checks_by: dict[int | None, list[tuple[str, int, int]]] = defaultdict(list)  # (severity, checks, passed)
    open_by_group: Counter = Counter()
    failing: dict[int, int] = {}
    if groups:
        tallies_seen = GroupTally.objects.filter(group__in=groups)
        if scope is not None:
            tallies_seen = tallies_seen.filter(cluster_id__in=scope.values("pk"))
        for summed in (tallies_seen.order_by().values("group_id")
                       .annotate(failing_n=Count("pk", filter=Q(failing=True)), **{t: Sum(t) for t in TALLIES})):
            row: dict = dict(summed)
            group_id = row["group_id"]
            checks_by[group_id] = [(s, row[f"{s}_checks"], row[f"{s}_passed"]) for s in rules.SEVERITIES
                                   if row[f"{s}_checks"]]
            open_by_group[group_id] = sum(row[f"{s}_open"] for s in rules.SEVERITIES)
            failing[group_id] = row["failing_n"]
    if user is not None and within is None and scope is not None:
        counts = access_of(user).group_member_counts  # (what deciding which groups they see counted already)
    else:
        counts = member_counts(groups, Cluster.objects.all() if scope is None else scope)
    fleet = fleet_tallies(fleet_rows)

    def score(key) -> float | None:
        return rules.weighted_score(checks_by.get(key, ()))

    out: dict[int | None, dict] = {
        g.pk: {"score": score(g.pk), "clusters": counts.get(g.pk, 0), "failing_clusters": failing.get(g.pk, 0),
               "open_violations": open_by_group[g.pk]} for g in groups}
    out[None] = {"score": rules.weighted_score(fleet["checks"]), "clusters": fleet["clusters"],
                 "by_severity": fleet["by_severity"], "failing_clusters": fleet["failing"],
                 "open_violations": fleet["open"]}
    return out


def fleet_summary(*, user=None) -> dict:
    """The fleet's score and open violations only (what the overview polls every 10 s): `fleet_tallies` over the
    clusters the user sees (a team member: their teams' scopes), one aggregate of one row per cluster."""
    _scope, rows = _rows_seen_by(user, None)
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
