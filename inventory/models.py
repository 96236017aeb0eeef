"""Clusters, their encrypted credentials and the inventory the collector stores for them."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from fleetweb import crypto
from inventory import selectors
from inventory.choices import (
    AuthMethod,
    ClusterEventKind,
    ClusterStatus,
    Environment,
    GrantSource,
    Provider,
    SyncOutcome,
    TeamRole,
    WorkloadKind,
    workload_unavailable,
)
from inventory.querysets import (
    ClusterGroupQuerySet,
    ClusterQuerySet,
    InventoryQuerySet,
    ScopedQuerySet,
    Visibility,
    WorkloadQuerySet,
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
        null=True, blank=True, help_text="When the client certificate or token expires, where it says")

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
    lease_expires_at = models.DateTimeField(null=True, blank=True, help_text="A sync holds the cluster until then")
    lease_token = models.CharField(max_length=32, blank=True, help_text="Token of the sync holding the lease")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    objects = ClusterQuerySet.as_manager()
    visibility = Visibility(cluster="pk")

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status"]), models.Index(fields=["environment"])]

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


class Team(SelectorMixin, models.Model):
    """People who own part of the fleet: members with a role here, and a scope of clusters (the clusters of its
    groups plus every cluster its selector matches, now or later). A cluster may be in several teams' scopes."""

    name = models.SlugField(max_length=63, unique=True)
    description = models.TextField(blank=True)
    groups = models.ManyToManyField(ClusterGroup, blank=True, related_name="teams",
                                    help_text="The team owns every cluster of these groups")
    selector = models.CharField(max_length=1024, blank=True, validators=[validate_selector],
                                help_text="…and every cluster this selector matches (the groups' syntax)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="pk")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inventory:team_detail", args=[self.name])

    def scope_q(self, groups: list[ClusterGroup] | None = None) -> Q:
        """Clusters in scope as one condition: static members of its groups, their selectors, its own selector."""
        groups = list(self.groups.all()) if groups is None else groups
        q = self.parsed_selector.q()
        if groups:
            # A subquery, not a join: the condition can then also be an annotation (teams.scopes_of).
            q |= Q(pk__in=ClusterGroup.static_members.through.objects.filter(
                clustergroup_id__in=[g.pk for g in groups]).values("cluster_id"))
            for group in groups:
                q |= group.parsed_selector.q()
        return q

    def clusters(self) -> ClusterQuerySet:
        return Cluster.objects.filter(self.scope_q())


class TeamMember(models.Model):
    """One role of one person in one team; a person may hold several (operator and approver)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_roles")
    role = models.CharField(max_length=16, choices=TeamRole.choices)
    source = models.CharField(max_length=8, choices=GrantSource.choices, default=GrantSource.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="team_id")

    class Meta:
        ordering = ["team__name", "user__username", "role"]
        constraints = [models.UniqueConstraint(fields=["team", "user", "role"], name="one_grant_per_team_role")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.role} in {self.team_id}"


class RoleMapping(models.Model):
    """Single sign-on: people whose claim (default `groups`) holds `claim_value` get `role`, in `team` or, with
    no team, globally (viewer, operator, approver, admin). Re-applied at every login; removed with the claim."""

    claim_value = models.CharField(max_length=255)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="mappings")
    role = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility()  # admins only

    class Meta:
        ordering = ["claim_value", "team__name", "role"]
        constraints = [models.UniqueConstraint(fields=["claim_value", "team", "role"], name="one_mapping",
                                               nulls_distinct=False)]

    def __str__(self) -> str:
        where = f"team {self.team_id}" if self.team_id else "global"
        return f"{self.claim_value} -> {where}: {self.role}"


class SsoIdentity(models.Model):
    """Who a user is at the identity provider: (issuer, subject) links a sign-in to one account, never the
    username (an IdP user named 'admin' does not become the local admin)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity")
    issuer = models.CharField(max_length=512)
    subject = models.CharField(max_length=255)
    claim_values = models.JSONField(default=list, blank=True, help_text="The groups claim at the last sign-in")
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="one_account_per_subject")]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"


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
