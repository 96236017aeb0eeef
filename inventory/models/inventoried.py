"""What the collector stores of each cluster: nodes, namespaces, workloads, problem pods, add-ons, deprecated API
requests and CRDs."""

from __future__ import annotations

from django.db import models

from inventory.choices import (
    WorkloadKind,
    workload_unavailable,
)
from inventory.models.clusters import Cluster
from inventory.querysets import (
    InventoryQuerySet,
    Visibility,
    WorkloadQuerySet,
)


class InventoryModel(models.Model):
    """Rows the collector upserts by (cluster, uid)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE)
    uid = models.CharField(max_length=64)
    name = models.CharField(max_length=253)
    labels = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(null=True, blank=True, help_text="creationTimestamp in the cluster")
    fingerprint = models.CharField(max_length=32, blank=True, help_text="Hash of the row as last written by a sync")

    objects = InventoryQuerySet.as_manager()

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Node(InventoryModel):
    """A node of a cluster, as its status reports it."""

    roles = models.JSONField(default=list, blank=True)
    kubelet_version = models.CharField(max_length=64, blank=True)
    os_image = models.CharField(max_length=255, blank=True)
    kernel_version = models.CharField(max_length=128, blank=True)
    container_runtime = models.CharField(max_length=128, blank=True)
    architecture = models.CharField(max_length=32, blank=True)
    zone = models.CharField(max_length=128, blank=True)
    region = models.CharField(max_length=128, blank=True)
    instance_type = models.CharField(max_length=128, blank=True)
    pool = models.CharField(max_length=128, default="default", help_text="Node pool, from the provider's labels")
    provider_id = models.CharField(max_length=512, blank=True)
    cpu_capacity_millis = models.BigIntegerField(default=0)
    memory_capacity_bytes = models.BigIntegerField(default=0)
    pods_capacity = models.IntegerField(default=0)
    cpu_allocatable_millis = models.BigIntegerField(default=0)
    memory_allocatable_bytes = models.BigIntegerField(default=0)
    pods_allocatable = models.IntegerField(default=0)
    ready = models.BooleanField(default=False)
    pressure = models.JSONField(default=list, blank=True, help_text="Pressure conditions that are True")
    unschedulable = models.BooleanField(default=False)
    taints = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["cluster", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="node_cluster_uid")]
        indexes = [models.Index(fields=["cluster", "pool"])]


class Namespace(InventoryModel):
    """A namespace with its Pod Security labels and pod counts."""

    phase = models.CharField(max_length=32, blank=True)
    pod_security_enforce = models.CharField(max_length=32, blank=True)
    pods_total = models.IntegerField(default=0)
    pods_running = models.IntegerField(default=0)
    pods_pending = models.IntegerField(default=0)
    pods_failed = models.IntegerField(default=0)
    # None: not known (the list was never read, e.g. the credentials may not list them).
    resource_quotas = models.IntegerField(null=True, blank=True, help_text="ResourceQuota objects in the namespace")
    limit_ranges = models.IntegerField(null=True, blank=True, help_text="LimitRange objects in the namespace")

    class Meta:
        ordering = ["cluster", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="namespace_cluster_uid")]


class Workload(InventoryModel):
    """A Deployment, StatefulSet, DaemonSet, Job or CronJob with counts of its pods."""

    kind = models.CharField(max_length=16, choices=WorkloadKind.choices)
    namespace = models.CharField(max_length=253)
    replicas_desired = models.IntegerField(default=0)
    replicas_ready = models.IntegerField(default=0)
    replicas_available = models.IntegerField(default=0)
    replicas_updated = models.IntegerField(default=0)
    generation = models.BigIntegerField(default=0)
    observed_generation = models.BigIntegerField(default=0)
    images = models.JSONField(default=list, blank=True)
    pod_template = models.JSONField(default=dict, blank=True, help_text="Normalized pod spec fields policies read")
    pods_total = models.IntegerField(default=0)
    pods_ready = models.IntegerField(default=0)
    pods_pending = models.IntegerField(default=0)
    pods_crashlooping = models.IntegerField(default=0)
    restarts = models.IntegerField(default=0)

    objects = WorkloadQuerySet.as_manager()  # type: ignore[misc]

    class Meta:
        ordering = ["cluster", "namespace", "kind", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="workload_cluster_uid")]
        indexes = [models.Index(fields=["cluster", "namespace"]), models.Index(fields=["kind"])]

    @property
    def is_available(self) -> bool:
        return not workload_unavailable(self.kind, desired=self.replicas_desired, available=self.replicas_available,
                                        crashlooping=self.pods_crashlooping)


class ProblemPod(InventoryModel):
    """A pod that is not running, not ready, restarting or failed (healthy pods are only counted)."""

    namespace = models.CharField(max_length=253)
    workload_kind = models.CharField(max_length=16, blank=True)
    workload_name = models.CharField(max_length=253, blank=True)
    node_name = models.CharField(max_length=253, blank=True)
    phase = models.CharField(max_length=32, blank=True)
    reason = models.CharField(max_length=128, blank=True)
    message = models.TextField(blank=True)
    ready = models.BooleanField(default=False)
    restarts = models.IntegerField(default=0)

    class Meta:
        ordering = ["cluster", "namespace", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "uid"], name="problempod_cluster_uid")]


class ClusterAddon(models.Model):
    """A well-known add-on (inventory/addons.py) running in a cluster, as its last complete sync of workloads saw
    it: which workload runs it and the version its image tag states."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="addons")
    addon = models.CharField(max_length=32)
    version = models.CharField(max_length=32)
    namespace = models.CharField(max_length=253)
    workload = models.CharField(max_length=253)
    kind = models.CharField(max_length=16, choices=WorkloadKind.choices)
    image = models.CharField(max_length=512)

    objects = InventoryQuerySet.as_manager()
    visibility = Visibility(cluster="cluster_id")

    class Meta:
        ordering = ["cluster__name", "addon", "namespace", "workload"]
        constraints = [models.UniqueConstraint(fields=["cluster", "addon", "namespace", "workload"],
                                               name="one_addon_row_per_workload")]
        indexes = [models.Index(fields=["addon", "version"])]

    def __str__(self) -> str:
        return f"{self.addon} {self.version} on {self.cluster_id}"


class DeprecatedAPIRequest(models.Model):
    """A deprecated API version the cluster's clients requested since its API server started, as the API server's
    `apiserver_requested_deprecated_apis` metric said at the last upgrade-readiness read."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="deprecated_api_requests")
    group = models.CharField(max_length=253, blank=True)
    version = models.CharField(max_length=64)
    resource = models.CharField(max_length=253)
    subresource = models.CharField(max_length=64, blank=True)
    removed_release = models.CharField(max_length=16, blank=True, help_text="e.g. 1.38; empty when none is planned")
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    objects = InventoryQuerySet.as_manager()
    visibility = Visibility(cluster="cluster_id")

    class Meta:
        ordering = ["cluster__name", "group", "version", "resource", "subresource"]
        constraints = [models.UniqueConstraint(fields=["cluster", "group", "version", "resource", "subresource"],
                                               name="one_deprecated_api_row")]

    def __str__(self) -> str:
        return f"{self.api_version} {self.resource} on {self.cluster_id}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


class CustomResourceDefinition(models.Model):
    """A CRD of a cluster as the last upgrade-readiness read saw it: its versions (served, storage, deprecated)
    and the versions objects are still stored at (`status.storedVersions`)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="crds")
    name = models.CharField(max_length=253)
    group = models.CharField(max_length=253)
    kind = models.CharField(max_length=128)
    versions = models.JSONField(default=list, help_text='[{"name", "served", "storage", "deprecated"}]')
    stored_versions = models.JSONField(default=list)
    stale_versions = models.JSONField(
        default=list, blank=True,
        help_text="Stored versions the CRD marks deprecated, no longer serves or no longer lists")

    objects = InventoryQuerySet.as_manager()
    visibility = Visibility(cluster="cluster_id")

    class Meta:
        ordering = ["cluster__name", "name"]
        constraints = [models.UniqueConstraint(fields=["cluster", "name"], name="one_crd_row_per_cluster")]
        indexes = [models.Index(fields=["cluster"], condition=~models.Q(stale_versions=[]), name="crd_stale")]

    def __str__(self) -> str:
        return f"{self.name} on {self.cluster_id}"


# ---------------------------------------------------------------------------------------------
# History and notifications
