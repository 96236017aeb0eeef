"""Node pools: a cluster's nodes grouped by the pool their provider's labels name (`Node.pool`, set by the
collector through `nodefacts.node_pool`), each with its counts, kubelet versions, OS images, instance types, zones
and allocatable CPU and memory. One grouped query over the nodes, whatever the number of clusters."""

from __future__ import annotations

from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Q, QuerySet, Sum, TextField, Value
from django.db.models.functions import Cast, Concat

from inventory.addons import version_key, version_of
from inventory.models import Node

FIELDS = ("kubelet_versions", "os_images", "instance_types", "zones")


def pools(nodes: QuerySet[Node], *, kubelet_version: str = "") -> QuerySet:
    """One dict per (cluster, pool) of `nodes`, ordered by cluster and pool name; `kubelet_version`: only pools
    with a node of that version."""
    rows = (nodes.order_by().values("cluster_id", "cluster__name", "cluster__environment", "pool")
            .annotate(nodes=Count("pk"), ready=Count("pk", filter=Q(ready=True)),
                      kubelet_versions=ArrayAgg("kubelet_version", distinct=True, default=[]),
                      os_images=ArrayAgg("os_image", distinct=True, default=[]),
                      instance_types=ArrayAgg("instance_type", distinct=True, default=[]),
                      zones=ArrayAgg("zone", distinct=True, default=[]),
                      cpu_allocatable_millis=Sum("cpu_allocatable_millis"),
                      memory_allocatable_bytes=Sum("memory_allocatable_bytes"))
            .order_by("cluster__name", "pool"))
    if kubelet_version:
        rows = rows.filter(**{"kubelet_versions__contains": [kubelet_version]})  # HAVING on the array
    return rows


def tidy(row: dict) -> dict:
    """A pool row for pages and the API: empty values dropped, lists sorted."""
    return {**row, **{f: sorted(v for v in row[f] if v) for f in FIELDS}}


def versions(nodes: QuerySet[Node]) -> list[dict]:
    """The fleet's kubelet versions, newest first: how many nodes run each and in how many pools."""
    pool_key = Concat(Cast("cluster_id", TextField()), Value("/"), "pool")
    rows = (nodes.order_by().values("kubelet_version")
            .annotate(nodes=Count("pk"), pools=Count(pool_key, distinct=True), clusters=Count("cluster_id",
                                                                                                distinct=True)))
    return sorted((dict(r) for r in rows), reverse=True,
                  key=lambda r: version_key(version_of(r["kubelet_version"])) or ())
