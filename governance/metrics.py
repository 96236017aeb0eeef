"""Governance's metrics (foundation/metrics.py): per cluster its score and failing enforcement installs (one query),
open violations by severity (one aggregate over the per-assignment result rows, not the violations table), each
group's latest score (one DISTINCT ON query)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Q, Sum

from foundation.metrics import Gauge, gauge, labels, register
from governance.choices import EnforcementState, Severity
from governance.models import GroupComplianceSnapshot, PolicyResult
from inventory.metrics import CLUSTER_FIELDS, cluster_labels
from inventory.models import Cluster


@register
def compliance() -> Iterable[Gauge]:
    score = gauge("fleetweb_cluster_compliance_score", "Severity-weighted share of passed checks (0-100)")
    failing = gauge("fleetweb_enforcement_installs_failing", "Enforce-mode policies failing to install")
    rows = (Cluster.objects.order_by()
            .annotate(failing=Count("enforcements", filter=Q(enforcements__state=EnforcementState.FAILED,
                                                              enforcements__assignment__isnull=False)))
            .values_list(*CLUSTER_FIELDS, "compliance__score", "failing"))
    for *fields, value, failures in rows.iterator(chunk_size=2000):
        text = cluster_labels(*fields)
        if value is not None:
            score.add(text, value)
        failing.add(text, failures)
    yield score
    yield failing
    open_by = gauge("fleetweb_violations_open", "Open violations by severity")
    counts = dict(PolicyResult.objects.filter(primary=True).order_by().values("severity").annotate(n=Sum("violations"))
                  .values_list("severity", "n"))
    for severity in Severity.values:
        open_by.add(labels(severity=severity), counts.get(severity) or 0)
    yield open_by
    groups = gauge("fleetweb_group_compliance_score", "Each group's latest compliance score (0-100)")
    latest = (GroupComplianceSnapshot.objects.filter(group__isnull=False, score__isnull=False)
              .order_by("group_id", "-at").distinct("group_id").values_list("group__name", "score"))
    for name, value in latest:
        groups.add(labels(group=name), value or 0.0)
    yield groups
