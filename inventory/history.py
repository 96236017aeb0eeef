"""A cluster's History: rows written as things happen, in the transaction that made them happen.

Syncs write status transitions, Kubernetes version and node-count changes; services write attaches,
credential and metadata changes; governance writes enforcement installs and removals; rollouts write the
revisions they applied. Nothing here is derived later from other tables, so the History of a detached
policy or a deleted rollout still reads true.
"""

from __future__ import annotations

from django.utils import timezone

from inventory.choices import ClusterEventKind, ClusterStatus
from inventory.models import Cluster, ClusterEvent


def event(cluster_id: int, kind: str, summary: str, *, before: dict | None = None, after: dict | None = None,
          actor: str = "", at=None) -> ClusterEvent:
    """Build (not save) one History row; `record` saves a list of them in one INSERT."""
    return ClusterEvent(cluster_id=cluster_id, kind=kind, summary=summary[:255], before=before or {},
                        after=after or {}, actor=actor[:150], at=at or timezone.now())


def record(*events: ClusterEvent) -> None:
    if events:
        ClusterEvent.objects.bulk_create(events)


def label(status: str) -> str:
    return str(ClusterStatus(status).label) if status in ClusterStatus.values else status


def status_change(cluster_id: int, old: str, new: str, reason: str = "", *, at=None) -> ClusterEvent:
    summary = f"{label(old)} → {label(new)}" + (f": {reason}" if reason and new != ClusterStatus.CONNECTED else "")
    return event(cluster_id, ClusterEventKind.STATUS, summary, before={"status": old},
                 after={"status": new, "reason": reason[:255]}, at=at)


def sync_changes(cluster: Cluster, before: dict, *, at=None) -> list[ClusterEvent]:
    """What a successful sync changed of the cluster row (`before`: status, version, node count as loaded)."""
    rows = []
    if before["status"] != cluster.status:
        rows.append(status_change(cluster.pk, before["status"], cluster.status, cluster.status_reason, at=at))
    old, new = before["kubernetes_version"], cluster.kubernetes_version
    if old != new and new:
        rows.append(event(cluster.pk, ClusterEventKind.VERSION, f"Kubernetes {old or 'unknown'} → {new}",
                          before={"version": old}, after={"version": new}, at=at))
    old_nodes, new_nodes = before["node_count"], cluster.node_count
    if old_nodes != new_nodes and before["status"] != ClusterStatus.PENDING:
        rows.append(event(cluster.pk, ClusterEventKind.NODES, f"nodes {old_nodes} → {new_nodes}",
                          before={"nodes": old_nodes}, after={"nodes": new_nodes}, at=at))
    return rows


# What `sync_changes` compares: a sync reads these from the locked row before it writes.
HISTORY_FIELDS = ("status", "kubernetes_version", "node_count")
