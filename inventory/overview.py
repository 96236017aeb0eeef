"""The fleet overview page: totals, health, versions, providers and what needs attention."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from django.db.models import Count, Sum
from django.http import HttpResponse
from django.urls import path, reverse
from django.utils import timezone

from foundation.decorators import role_required
from foundation.htmx import htmx_partial
from foundation.roles import VIEWER
from inventory import extensions
from inventory.choices import STATUS_SEVERITY, ClusterStatus, Environment, Provider
from inventory.models import Cluster
from inventory.people.access import narrowed_scope


def _minor(version: str) -> str:
    """'v1.35.4' -> 'v1.35'; anything else as it is."""
    parts = version.split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else (version or "unknown")


def overview_context(user, team: str = "") -> dict:
    """Everything the overview shows, in a fixed number of queries whatever the fleet size; `team` narrows it to
    that team's clusters (the team switcher)."""
    clusters = Cluster.objects.visible_to(user)
    narrowed = narrowed_scope(user, team) if team else None
    if narrowed is not None:
        clusters = clusters.filter(pk__in=narrowed)
    # One pass over the clusters, grouped by what the cards split them by (a few hundred rows at most), added up here.
    totals = dict.fromkeys(("clusters", "nodes", "ready_nodes", "workloads", "pods", "problem_pods", "healthy"), 0)
    by_status: Counter = Counter()
    by_env: Counter = Counter()
    by_provider: Counter = Counter()
    versions: Counter = Counter()
    for status, env, provider, version, n, *sums in (
            clusters.order_by().values_list("status", "environment", "provider", "kubernetes_version")
            .annotate(n=Count("id"), nodes=Sum("node_count"), ready_nodes=Sum("ready_node_count"),
                      workloads=Sum("workload_count"), pods=Sum("pod_count"), problem_pods=Sum("problem_pod_count"))
            .values_list("status", "environment", "provider", "kubernetes_version", "n", "nodes", "ready_nodes",
                         "workloads", "pods", "problem_pods")):
        totals["clusters"] += n
        totals["healthy"] += n if status == ClusterStatus.CONNECTED else 0
        for key, value in zip(("nodes", "ready_nodes", "workloads", "pods", "problem_pods"), sums, strict=True):
            totals[key] += value or 0
        by_status[status] += n
        by_env[env] += n
        by_provider[provider] += n
        versions[_minor(version)] += n
    most = max(versions.values(), default=1)
    version_bars = [{"label": v, "count": n, "pct": round(100 * n / most)}
                    for v, n in sorted(versions.items(), key=lambda item: item[0], reverse=True)]
    attention = needs_attention(user, clusters, team)
    return {
        "totals": totals,
        "status_cards": [{"value": s.value, "label": s.label, "count": by_status.get(s.value, 0)}
                         for s in ClusterStatus if by_status.get(s.value)],
        "by_env": [(e.label, by_env.get(e.value, 0)) for e in Environment],
        "by_provider": [(p.label, by_provider[p.value]) for p in Provider if by_provider.get(p.value)],
        "version_bars": version_bars,
        "attention": attention,
        "more_cards": [card for cards in extensions.overview_cards for card in cards(user)],
    }


ATTENTION_ROWS = 50
CREDENTIALS_WARNING = timedelta(days=14)
RANK_CLUSTER, RANK_CREDENTIALS = 0, 4  # rollouts and governance rank theirs between (extensions.attention), >= 1


def needs_attention(user, clusters, team: str = "") -> list[dict]:
    """What someone should look at now, most urgent first: clusters not connected, then what the other apps add
    (failed rollouts, critical violations, drifted applications, stages awaiting approval), then credentials
    that expire within two weeks. Each part is a bounded query, whatever the fleet size."""
    now = timezone.now()
    rows: list[dict] = []
    for c in clusters.exclude(status=ClusterStatus.CONNECTED).only(
            "name", "status", "status_reason", "environment", "last_seen_at")[:ATTENTION_ROWS]:
        rows.append({"subject": f"cluster {c.name}", "url": c.get_absolute_url(), "badge": c.get_status_display(),
                     "tone": c.status, "why": c.status_reason, "at": c.last_seen_at,
                     "rank": RANK_CLUSTER + STATUS_SEVERITY.get(ClusterStatus(c.status), 9) / 10})
    if len(rows) < ATTENTION_ROWS:
        # Every other row ranks after every cluster row (RANK_CLUSTER < the apps' ranks < RANK_CREDENTIALS): with
        # the list full of clusters nothing else would be shown, so nothing else is asked.
        rows += _expiring_credentials(clusters, now)
        for provider in extensions.attention:
            rows += provider(user, clusters, team)
    rows.sort(key=lambda r: (r["rank"], r["subject"]))
    return rows[:ATTENTION_ROWS]


def _expiring_credentials(clusters, now) -> list[dict]:
    rows = []
    for c in (clusters.filter(credentials_expire_at__lt=now + CREDENTIALS_WARNING)
              .order_by("credentials_expire_at").only("name", "credentials_expire_at")[:ATTENTION_ROWS]):
        expired = c.credentials_expire_at <= now
        rows.append({"subject": f"credentials of {c.name}", "url": reverse("inventory:cluster_credentials",
                                                                            args=[c.name]),
                     "badge": "expired" if expired else "expiring", "tone": "failed" if expired else "degraded",
                     "why": ("expired" if expired else "expire") + f" {c.credentials_expire_at:%Y-%m-%d %H:%M} UTC: "
                            "replace them (tested first) on its Credentials page", "at": c.credentials_expire_at,
                     "rank": RANK_CREDENTIALS})
    return rows


@role_required(VIEWER)
def overview(request) -> HttpResponse:
    """Fleet overview; the partial refreshes itself every 10 s."""
    return htmx_partial(request, "fleetweb/overview.html", "fleetweb/partials/_overview.html",
                        overview_context(request.user, request.GET.get("team", "").strip()))


urlpatterns = [path("", overview, name="overview")]
