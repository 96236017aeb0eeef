"""Inventory's metrics (foundation/metrics.py): one row per cluster from one query, with its latest finished sync's
duration and bytes as correlated subqueries on the (cluster, -started_at) index."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from foundation.metrics import Gauge, gauge, labels, register
from inventory.choices import ClusterStatus
from inventory.models import Cluster, SyncRun

CLUSTER_FIELDS = ("name", "environment", "region", "provider", "owner")
UP = {ClusterStatus.CONNECTED, ClusterStatus.DEGRADED}


def cluster_labels(name: str, environment: str, region: str, provider: str, owner: str) -> str:
    """The labels of every per-cluster series: bounded by the attached clusters."""
    return labels(cluster=name, environment=environment, region=region, provider=provider, owner_team=owner[:64])


@register
def clusters() -> Iterable[Gauge]:
    last_run = SyncRun.objects.filter(cluster=OuterRef("pk"), finished_at__isnull=False).order_by("-started_at")
    rows = (Cluster.objects.order_by().annotate(
        run_ms=Subquery(last_run.values("duration_ms")[:1]), run_bytes=Subquery(last_run.values("bytes_read")[:1]))
        .values_list(*CLUSTER_FIELDS, "status", "last_sync_at", "node_count", "ready_node_count", "workload_count",
                     "unhealthy_workload_count", "problem_pod_count", "credentials_expire_at", "run_ms", "run_bytes"))
    up = gauge("fleetweb_cluster_up", "1 when the cluster's last sync connected (connected or degraded)")
    status = gauge("fleetweb_cluster_status", "1 for the cluster's current status, 0 for the others")
    since = gauge("fleetweb_cluster_last_sync_age_seconds", "Seconds since the last successful full sync")
    duration = gauge("fleetweb_cluster_last_sync_duration_seconds", "Duration of the last finished sync")
    read = gauge("fleetweb_cluster_last_sync_bytes", "Bytes read from the API server by the last finished sync")
    nodes = gauge("fleetweb_cluster_nodes", "Nodes")
    ready = gauge("fleetweb_cluster_nodes_ready", "Ready nodes")
    workloads = gauge("fleetweb_cluster_workloads", "Workloads (Deployments, StatefulSets, DaemonSets, Jobs, CronJobs)")
    unavailable = gauge("fleetweb_cluster_workloads_unavailable", "Workloads not fully available")
    problems = gauge("fleetweb_cluster_problem_pods", "Pods crash-looping, pending too long or failed")
    expiry = gauge("fleetweb_cluster_credentials_expiry_timestamp_seconds",
                   "When the cluster's client certificate or token expires (only where it says)")
    now = timezone.now()
    statuses = [(value, f',status="{value}"') for value in ClusterStatus.values]
    for (name, environment, region, provider, owner, state, last_sync, node_count, ready_nodes, workload_count,
         unhealthy, problem_pods, expires, run_ms, run_bytes) in rows.iterator(chunk_size=2000):
        text = cluster_labels(name, environment, region, provider, owner)
        up.add(text, 1 if state in UP else 0)
        for value, suffix in statuses:  # every status, 1 for the current one (kube-state-metrics' convention)
            status.add(text + suffix, 1 if value == state else 0)
        if last_sync is not None:
            since.add(text, (now - last_sync).total_seconds())
        if run_ms is not None:
            duration.add(text, run_ms / 1000)
            read.add(text, run_bytes or 0)
        nodes.add(text, node_count)
        ready.add(text, ready_nodes)
        workloads.add(text, workload_count)
        unavailable.add(text, unhealthy)
        problems.add(text, problem_pods)
        if expires is not None:
            expiry.add(text, expires.timestamp())
    yield from (up, status, since, duration, read, nodes, ready, workloads, unavailable, problems, expiry)
