"""Clusters, their encrypted credentials, sync runs, groups, attach drafts and the History."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Count, Q
from django.urls import reverse

from foundation import crypto
from inventory import selectors
from inventory.choices import (
    AuthMethod,
    ClusterEventKind,
    ClusterStatus,
    Environment,
    Provider,
    SyncOutcome,
)
from inventory.querysets import (
    ClusterGroupQuerySet,
    ClusterQuerySet,
    InventoryQuerySet,
    Visibility,
)
from inventory.validators import validate_minor_version, validate_selector, validate_server_url


class Cluster(models.Model):
    """An attached Kubernetes cluster, its metadata and the health the last sync saw."""

    name = models.SlugField(max_length=63, unique=True)
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.DEV)
    region = models.CharField(max_length=64, blank=True)
    owner = models.CharField(max_length=128, blank=True, help_text="Owning team")
    cost_center = models.CharField(max_length=64, blank=True)
    labels = models.JSONField(default=dict, blank=True)
    server = models.CharField(max_length=512, validators=[validate_server_url], help_text="API server URL")
    auth_method = models.CharField(max_length=16, choices=AuthMethod.choices)
    insecure_skip_tls_verify = models.BooleanField(default=False)

    provider = models.CharField(max_length=16, choices=Provider.choices, default=Provider.UNKNOWN)
    kubernetes_version = models.CharField(max_length=64, blank=True)
    platform = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=ClusterStatus.choices, default=ClusterStatus.PENDING)
    status_reason = models.CharField(max_length=255, blank=True, help_text="Why the status is not connected")
    last_error = models.TextField(blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="Last time the API server answered")
    last_sync_at = models.DateTimeField(null=True, blank=True, help_text="Last successful full sync")
    consecutive_failures = models.PositiveIntegerField(default=0)
    status_changed_at = models.DateTimeField(null=True, blank=True, help_text="When the status last changed")
    readiness_checked_at = models.DateTimeField(
        null=True, blank=True, help_text="Last read of the upgrade-readiness facts (deprecated APIs, CRDs)")
    readiness_error = models.TextField(blank=True, help_text="What that read could not get, by part")
    credentials_expire_at = models.DateTimeField(
        null=True, blank=True, db_index=True, help_text="When the client certificate or token expires, where it says")

    # Counters kept by each sync so lists need no aggregation over the inventory tables.
    node_count = models.PositiveIntegerField(default=0)
    ready_node_count = models.PositiveIntegerField(default=0)
    namespace_count = models.PositiveIntegerField(default=0)
    workload_count = models.PositiveIntegerField(default=0)
    unhealthy_workload_count = models.PositiveIntegerField(default=0)
    pod_count = models.PositiveIntegerField(default=0)
    problem_pod_count = models.PositiveIntegerField(default=0)

    sync_interval = models.PositiveIntegerField(default=60, help_text="Seconds between syncs")
    next_sync_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set when beat queues a scheduled sync, cleared by the sync's write: a cluster is not queued again meanwhile.
    sync_queued_at = models.DateTimeField(null=True, blank=True, help_text="A scheduled sync was queued then")
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="A sync holds the cluster until then")
    lease_token = models.CharField(max_length=32, blank=True, help_text="Token of the sync holding the lease")

    # Busy (an incident): Fleetweb changes nothing on the cluster (rollouts, Re-apply, drift correction, admission
    # policies) until its team clears it (`inventory.services.set_busy`, `rollouts.calendar`).
    busy_since = models.DateTimeField(null=True, blank=True)
    busy_reason = models.CharField(max_length=500, blank=True)
    busy_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = ClusterQuerySet.as_manager()
    visibility = Visibility(cluster="pk")

    class Meta:
        ordering = ["name"]
        # Every field a selector can name, and the labels: a team's scope and a group's members are a selector,
        # asked inside every query a team member's pages make, and scanning the whole table for them cost each
        # query ~2 ms at 10,000 clusters (0.9 ms through the index, 1,000 in scope). Syncs write none of these
        # columns, so their updates stay HOT.
        indexes = [models.Index(fields=["status"]), models.Index(fields=["environment"]),
                   models.Index(fields=["owner"]), models.Index(fields=["region"]),
                   models.Index(fields=["cost_center"]), GinIndex(fields=["labels"])]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inventory:cluster_detail", args=[self.name])

    @property
    def is_healthy(self) -> bool:
        return self.status == ClusterStatus.CONNECTED

    @property
    def labels_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


class ClusterCredential(models.Model):
    """A cluster's credentials, encrypted with MultiFernet; never shown or returned again."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="credential")
    ciphertext = models.TextField()
    rotated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"credentials of {self.cluster_id}"

    def __repr__(self) -> str:  # never let secrets reach a log through repr()
        return f"<ClusterCredential cluster={self.cluster_id}>"

    @classmethod
    def seal(cls, secret: dict) -> str:
        return crypto.encrypt_json(secret)

    def open(self) -> dict:
        """The decrypted credential dict (see inventory.kube.Credentials)."""
        return crypto.decrypt_json(self.ciphertext)


class SyncRun(models.Model):
    """One sync of one cluster: when, how long, what it read and how it ended."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="sync_runs")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=SyncOutcome.choices, default=SyncOutcome.RUNNING)
    status = models.CharField(max_length=16, choices=ClusterStatus.choices, blank=True)
    counts = models.JSONField(default=dict, blank=True, help_text="Objects read per kind")
    timings_ms = models.JSONField(default=dict, blank=True, help_text="Milliseconds spent reading each kind")
    bytes_read = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    triggered_by = models.CharField(max_length=32, default="schedule")

    objects = InventoryQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["cluster", "-started_at"])]

    def __str__(self) -> str:
        return f"sync of {self.cluster_id} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class SelectorMixin:
    """`parsed_selector`: the `selector` text parsed once per text (membership checks ask it per cluster)."""

    selector: str

    @property
    def parsed_selector(self) -> selectors.Selector:
        cached = self.__dict__.get("_parsed_selector")
        if cached is None or cached[0] != self.selector:
            cached = (self.selector, selectors.parse(self.selector))
            self.__dict__["_parsed_selector"] = cached
        return cached[1]


class ClusterGroup(SelectorMixin, models.Model):
    """A named set of clusters: static members plus every cluster its label selector matches, now or later."""

    name = models.SlugField(max_length=63, unique=True)
    description = models.TextField(blank=True)
    owner = models.CharField(max_length=128, blank=True, help_text="Owning team")
    selector = models.CharField(max_length=1024, blank=True, validators=[validate_selector],
                                help_text="Kubernetes-style selector over cluster fields and labels")
    static_members = models.ManyToManyField(Cluster, blank=True, related_name="static_groups")
    upgrade_target = models.CharField(
        max_length=8, blank=True, validators=[validate_minor_version],
        help_text="Kubernetes minor its clusters plan to upgrade to, e.g. 1.37 (empty: each one's next minor)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = ClusterGroupQuerySet.as_manager()
    visibility = Visibility(group="pk")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inventory:group_detail", args=[self.name])

    def members(self) -> ClusterQuerySet:
        """Static members and every cluster the selector matches, as one query."""
        return Cluster.objects.filter(Q(static_groups=self) | self.parsed_selector.q()).distinct()

    def contains(self, cluster: Cluster, *, static_ids: set[int] | None = None) -> bool:
        """Membership without a query when the static member ids are given (see `membership`)."""
        if static_ids is None:
            static_ids = set(self.static_members.values_list("pk", flat=True))
        return cluster.pk in static_ids or self.parsed_selector.matches(cluster)


def member_counts(groups, clusters: ClusterQuerySet) -> dict[int, int]:
    """{group id: how many of `clusters` are its members now (static or by selector)}, counted by the database in
    one aggregate over `clusters` for all groups."""
    groups = list(groups)
    if not groups:
        return {}
    static = ClusterGroup.static_members.through.objects
    counts = clusters.order_by().aggregate(**{
        f"g{g.pk}": Count("pk", filter=Q(pk__in=static.filter(clustergroup_id=g.pk).values("cluster_id"))
                          | g.parsed_selector.q()) for g in groups})
    return {g.pk: counts[f"g{g.pk}"] for g in groups}


class AttachDraft(models.Model):
    """What someone is attaching, held encrypted between the wizard's steps so secrets are never sent back to the
    browser: the parsed kubeconfig or the credentials, and the last connection test (run by a worker). Kept one
    hour; deleted when the attach succeeds."""

    TTL = timedelta(hours=1)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    method = models.CharField(max_length=16)  # "kubeconfig" or "token"
    ciphertext = models.TextField()
    summary = models.CharField(max_length=512, blank=True)  # what the page may show: servers or contexts, no secret
    test_state = models.CharField(max_length=16, blank=True)  # "", queued, running, done
    test_requested_at = models.DateTimeField(null=True, blank=True)
    test_finished_at = models.DateTimeField(null=True, blank=True)
    test_request = models.JSONField(default=dict, blank=True)  # {"contexts": [...], "insecure": bool}
    test_results = models.JSONField(default=list, blank=True)
    test_error = models.CharField(max_length=1024, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"attach draft {self.pk}"

    def __repr__(self) -> str:
        return f"<AttachDraft {self.pk} by={self.created_by_id}>"

    @classmethod
    def seal(cls, source: dict) -> str:
        return crypto.encrypt_json(source)

    def open(self) -> dict:
        return crypto.decrypt_json(self.ciphertext)


class ClusterEvent(models.Model):
    """One line of a cluster's History: what changed and when, written as it happened, in the transaction
    that changed it (status transitions, version and node-count changes, credentials, enforcement, rollouts)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=ClusterEventKind.choices)
    summary = models.CharField(max_length=255)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150, blank=True, help_text="Who did it; empty for Fleetweb's own syncs")

    objects = InventoryQuerySet.as_manager()
    visibility = Visibility(cluster="cluster_id")

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["cluster", "-at"])]

    def __str__(self) -> str:
        return f"{self.cluster_id} {self.kind} at {self.at:%Y-%m-%d %H:%M:%S}: {self.summary}"
