"""What governance adds to inventory's pages (registered in `GovernanceConfig.ready` through
`inventory.extensions`): the cluster's compliance and upgrade tabs, group scores, and each group member's
compliance."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Min
from django.template.defaultfilters import pluralize
from django.urls import reverse

from governance import compliance as fleet_compliance
from governance import upgrades
from governance.choices import Severity
from governance.compliance import group_scores, history
from governance.models import ClusterCompliance, Enforcement, PolicyAssignment, Violation
from inventory import extensions
from inventory import services as inventory_services
from inventory.models import CustomResourceDefinition, DeprecatedAPIRequest

PAGE_SIZE = 50


def compliance_tab(cluster, page_number, user=None) -> dict:
    """The cluster's score, result per assigned policy, open violations, enforcement and trend."""
    compliance = ClusterCompliance.objects.filter(cluster=cluster).first()
    violations = (Violation.objects.filter(cluster=cluster, resolved_at__isnull=True)
                  .select_related("assignment__group").order_by("rule_key", "namespace", "object_name"))
    return {"compliance": compliance, "page": Paginator(violations, PAGE_SIZE).get_page(page_number),
            "groups": inventory_services.groups_of(cluster),
            "enforcements": Enforcement.objects.filter(cluster=cluster).select_related("assignment")
            .order_by("assignment__rule_key"),
            "history": history(cluster.compliance_snapshots.all(), days=30)}


def group_detail(group, members) -> dict:
    """Per member: its compliance, and how many of this group's policies fail there and with how many
    violations; and the group's assignments."""
    compliance = {c.cluster_id: c for c in ClusterCompliance.objects.filter(cluster__in=[m.pk for m in members])}
    rows = {}
    for m in members:
        c = compliance.get(m.pk)
        own = [r for r in (c.results if c else []) if group.name in r.get("groups", [r["group"]])]
        rows[m.pk] = {"compliance": c, "failing": sum(1 for r in own if r["violations"]),
                      "violations": sum(r["violations"] for r in own)}
    return {"members": rows, "assignments": PolicyAssignment.objects.filter(group=group).order_by("rule_key")}


def overview_cards(user) -> list[dict]:
    """The fleet's compliance score and open violations, for the overview."""
    fleet = fleet_compliance.fleet_summary(user=user)
    score = fleet["score"]
    return [{"id": "card-score", "value": "—" if score is None else f"{score:g}", "label": "fleet compliance score",
             "url": reverse("governance:compliance")},
            {"id": "card-violations", "value": fleet["open_violations"],
             "label": f"open violation{pluralize(fleet['open_violations'])}",
             "url": reverse("governance:violation_list")}]


RANK_CRITICAL = 2  # in the overview's "Needs attention"
ATTENTION_CLUSTERS = 15


def needs_attention(user, clusters, team: str = "") -> list[dict]:
    """The clusters with open critical violations, most first (one row each, counted)."""
    counts = list(ClusterCompliance.objects.filter(critical_open__gt=0, cluster__in=clusters)
                  .order_by("-critical_open", "cluster_id")  # the index's order: the first rows are the answer
                  .values_list("cluster_id", "cluster__name", "critical_open")[:ATTENTION_CLUSTERS])
    since = dict(Violation.objects.filter(resolved_at__isnull=True, severity=Severity.CRITICAL,
                                          cluster_id__in=[pk for pk, _name, _n in counts])
                 .order_by().values("cluster_id").annotate(since=Min("first_seen")).values_list("cluster_id", "since"))
    return [{"subject": f"cluster {name}", "badge": "critical", "tone": "failed",
             "url": f"{reverse('governance:violation_list')}?cluster={name}&severity=critical&state=open",
             "why": f"{n} open critical violation{pluralize(n)}", "at": since.get(pk),
             "rank": RANK_CRITICAL} for pk, name, n in counts]


def upgrade_tab(cluster, page_number, user=None) -> dict:
    """The cluster's readiness for its next minor, with every fact it rests on (deprecated APIs its clients call,
    CRDs' stored versions)."""
    [readiness] = upgrades.plan([cluster])
    return {"readiness": readiness,
            "deprecated_apis": DeprecatedAPIRequest.objects.filter(cluster=cluster),
            "stale_crds": CustomResourceDefinition.objects.filter(cluster=cluster).exclude(stale_versions=[]),
            "crd_count": CustomResourceDefinition.objects.filter(cluster=cluster).count()}


def register() -> None:
    extensions.register(tab=("compliance", compliance_tab), scores=group_scores, detail=group_detail,
                        cards=overview_cards, needs_attention=needs_attention)
    extensions.register(tab=("upgrade", upgrade_tab))
