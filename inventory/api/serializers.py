"""API serializers. Credentials are write-only: nothing ever reads them back."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import serializers

from inventory import credentials, kubeconfigs, services
from inventory.choices import Environment
from inventory.models import (
    Cluster,
    ClusterAddon,
    ClusterEvent,
    ClusterGroup,
    Namespace,
    Node,
    ProblemPod,
    SyncRun,
    Team,
    TeamMember,
    Workload,
)
from inventory.people.access import cluster_scope
from inventory.services import membership as compute
from inventory.validators import validate_label

READ_ONLY_CLUSTER_FIELDS = (
    "id", "auth_method", "provider", "kubernetes_version", "platform", "status", "status_reason",
    "last_error", "last_seen_at", "last_sync_at", "node_count", "ready_node_count", "namespace_count",
    "workload_count", "unhealthy_workload_count", "pod_count", "problem_pod_count", "created_at", "url",
    "busy_since", "busy_reason",
)


class ClusterSerializer(serializers.ModelSerializer):
    """A cluster; create with `kubeconfig` (+ `context`) or `server` + `ca_data` + `token` (or client cert).

    `server` reads back as the API server URL; written, it comes with new credentials.
    """

    url = serializers.HyperlinkedIdentityField(view_name="api:cluster-detail")
    kubeconfig = serializers.CharField(write_only=True, required=False, style={"base_template": "textarea.html"},
                                       help_text="A kubeconfig (YAML); with `context`, or its current context")
    # A field named like Serializer.context: DRF's metaclass moves declared fields off the class, so no clash.
    context = serializers.CharField(write_only=True, required=False)  # type: ignore[assignment]
    ca_data = serializers.CharField(write_only=True, required=False, allow_blank=True)
    token = serializers.CharField(write_only=True, required=False, style={"input_type": "password"})
    client_cert = serializers.CharField(write_only=True, required=False)
    client_key = serializers.CharField(write_only=True, required=False)

    class Meta:
        model = Cluster
        fields = (
            "id", "url", "name", "environment", "region", "owner", "cost_center", "labels", "server", "auth_method",
            "insecure_skip_tls_verify", "provider", "kubernetes_version", "platform", "status", "status_reason",
            "last_error", "last_seen_at", "last_sync_at", "sync_interval", "node_count", "ready_node_count",
            "namespace_count", "workload_count", "unhealthy_workload_count", "pod_count", "problem_pod_count",
            "busy_since", "busy_reason", "created_at", "kubeconfig", "context", "ca_data", "token", "client_cert",
            "client_key",
        )
        read_only_fields = READ_ONLY_CLUSTER_FIELDS
        # Uniqueness is checked in validate_name, with a message that names the cluster.
        extra_kwargs: dict[str, dict] = {"server": {"required": False}, "name": {"validators": []}}

    def validate_labels(self, value) -> dict:
        if not isinstance(value, dict):
            raise serializers.ValidationError("labels must be an object of string keys and values.")
        for key, label in value.items():
            if not isinstance(label, str):
                raise serializers.ValidationError(f"label '{key}' must have a string value.")
            try:
                validate_label(key, label)
            except Exception as exc:  # django ValidationError -> DRF's
                raise serializers.ValidationError(getattr(exc, "messages", [str(exc)])[0]) from None
        return value

    def validate_name(self, value) -> str:
        taken = services.cluster_name_taken(value) if self.instance is None else ""
        if taken:
            raise serializers.ValidationError(taken)
        return value

    def validate_environment(self, value) -> str:
        if value not in Environment.values:
            raise serializers.ValidationError(f"must be one of {', '.join(Environment.values)}")
        return value

    def validate(self, attrs) -> dict:
        creating = self.instance is None
        has_kubeconfig = "kubeconfig" in attrs
        has_server = "server" in attrs
        if creating and not has_kubeconfig and not has_server:
            raise serializers.ValidationError({"kubeconfig": "Give a kubeconfig (and context), or server with "
                                                             "ca_data and a token or client certificate."})
        if has_kubeconfig and has_server:
            raise serializers.ValidationError({"server": "Give either a kubeconfig or server, not both."})
        if has_kubeconfig:
            try:
                parsed = kubeconfigs.parse_kubeconfig(attrs.pop("kubeconfig"))
                context = attrs.pop("context", None) or parsed.get("current-context")
                if not context:
                    raise kubeconfigs.KubeconfigError("The kubeconfig has no current-context; name one in 'context'.")
                if context not in kubeconfigs.context_names(parsed):
                    known = ", ".join(kubeconfigs.context_names(parsed))
                    raise serializers.ValidationError(
                        {"context": f"Context '{context}' is not in the kubeconfig (it has: {known})."})
                single = kubeconfigs.extract_context(parsed, context)
                attrs["credentials"] = kubeconfigs.credentials_from_kubeconfig(single)
            except kubeconfigs.KubeconfigError as exc:
                raise serializers.ValidationError({"kubeconfig": str(exc)}) from None
        elif has_server:
            try:
                attrs["credentials"] = credentials.direct(
                    server=attrs.pop("server"), ca_data=attrs.pop("ca_data", "") or "",
                    token=attrs.pop("token", "") or "", client_cert=attrs.pop("client_cert", "") or "",
                    client_key=attrs.pop("client_key", "") or "")
            except credentials.CredentialsError as exc:
                raise serializers.ValidationError(exc.api_errors()) from None
        elif any(k in attrs for k in ("token", "client_cert", "client_key", "ca_data", "context")):
            raise serializers.ValidationError({"token": "Credentials are replaced as a whole: give server or "
                                                        "kubeconfig with them."})
        if creating and not attrs.get("name"):
            raise serializers.ValidationError({"name": "This field is required."})
        return attrs


class _InventorySerializer(serializers.ModelSerializer):
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)


class NodeSerializer(_InventorySerializer):
    class Meta:
        model = Node
        fields = ("id", "cluster", "cluster_name", "uid", "name", "labels", "created", "roles", "kubelet_version",
                  "os_image", "kernel_version", "container_runtime", "architecture", "zone", "region", "instance_type",
                  "provider_id", "cpu_capacity_millis", "memory_capacity_bytes", "pods_capacity",
                  "cpu_allocatable_millis", "memory_allocatable_bytes", "pods_allocatable", "ready", "pressure",
                  "unschedulable", "taints")


class NamespaceSerializer(_InventorySerializer):
    class Meta:
        model = Namespace
        fields = ("id", "cluster", "cluster_name", "uid", "name", "labels", "created", "phase", "pod_security_enforce",
                  "pods_total", "pods_running", "pods_pending", "pods_failed")


class WorkloadSerializer(_InventorySerializer):
    class Meta:
        model = Workload
        fields = ("id", "cluster", "cluster_name", "uid", "kind", "namespace", "name", "labels", "created",
                  "replicas_desired", "replicas_ready", "replicas_available", "replicas_updated", "generation",
                  "observed_generation", "images", "pod_template", "pods_total", "pods_ready", "pods_pending",
                  "pods_crashlooping", "restarts")


class ProblemPodSerializer(_InventorySerializer):
    class Meta:
        model = ProblemPod
        fields = ("id", "cluster", "cluster_name", "uid", "namespace", "name", "created", "workload_kind",
                  "workload_name", "node_name", "phase", "reason", "message", "ready", "restarts")


class SyncRunSerializer(serializers.ModelSerializer):
    cluster_name = serializers.CharField(source="cluster.name", read_only=True)

    class Meta:
        model = SyncRun
        fields = ("id", "cluster", "cluster_name", "started_at", "finished_at", "duration_ms", "outcome", "status",
                  "counts", "timings_ms", "bytes_read", "error", "triggered_by")


class ClusterGroupSerializer(serializers.ModelSerializer):
    """A group: static members by cluster name plus a selector; `members` is who is in it right now."""

    url = serializers.HyperlinkedIdentityField(view_name="api:group-detail", lookup_field="name")
    static_members: serializers.SlugRelatedField = (
        serializers.SlugRelatedField(many=True, slug_field="name", queryset=Cluster.objects.all(),
                                     required=False))
    members = serializers.SerializerMethodField(help_text="Names of the clusters in the group now")
    member_count = serializers.SerializerMethodField()

    class Meta:
        model = ClusterGroup
        fields = ("id", "url", "name", "description", "owner", "selector", "upgrade_target", "static_members",
                  "members", "member_count", "created_at", "updated_at")
        read_only_fields = ("id", "url", "members", "member_count", "created_at", "updated_at")
        extra_kwargs: dict[str, dict] = {"name": {"validators": []}}

    def _members(self, group) -> list[Cluster]:
        membership = self.context.get("membership")
        if membership is None or group.pk not in membership:
            membership = compute([group])
        return membership[group.pk]

    def _scope(self) -> frozenset[int] | None:
        request = self.context.get("request")
        return cluster_scope(request.user) if request is not None else None

    def _visible_members(self, group) -> list[Cluster]:
        """The members the reader may see: a team member is told nothing (names or count) of the others."""
        scope = self._scope()
        return [c for c in self._members(group) if scope is None or c.pk in scope]

    def get_members(self, group) -> list[str]:
        return [c.name for c in self._visible_members(group)]

    def get_member_count(self, group) -> int:
        return len(self._visible_members(group))

    def to_representation(self, instance) -> dict:
        data = super().to_representation(instance)
        scope = self._scope()
        if scope is not None:
            data["static_members"] = [c.name for c in instance.static_members.all() if c.pk in scope]
        return data

    def validate_name(self, value) -> str:
        if self.instance is not None and value != self.instance.name:
            raise serializers.ValidationError("A group cannot be renamed; create a new one.")
        taken = services.group_name_taken(value) if self.instance is None else ""
        if taken:
            raise serializers.ValidationError(taken)
        return value


class TeamMemberSerializer(serializers.ModelSerializer):
    user: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = TeamMember
        fields = ("user", "role", "source")
        read_only_fields = fields


class TeamSerializer(serializers.ModelSerializer):
    """A team, its members and its scope; `clusters`: the clusters of the scope the caller may see."""

    groups: serializers.SlugRelatedField = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    members = TeamMemberSerializer(many=True, read_only=True)
    clusters = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ("id", "name", "description", "groups", "selector", "members", "clusters")
        read_only_fields = fields

    def get_clusters(self, team: Team) -> list[str]:
        scopes = self.context.get("scopes", {})
        visible = self.context.get("visible")
        ids = scopes.get(team.pk, frozenset())
        return sorted(name for pk, name in (visible or {}).items() if pk in ids)


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id the requesting user may see: any other answers "does not exist", like a 404 would."""

    def get_queryset(self) -> QuerySet:
        queryset: Any = super().get_queryset()  # a ScopedQuerySet: every model here has visible_to
        return queryset.visible_to(self.context["request"].user)


class VisibleSlugField(serializers.SlugRelatedField):
    def get_queryset(self) -> QuerySet:
        queryset: Any = super().get_queryset()  # a ScopedQuerySet: every model here has visible_to
        return queryset.visible_to(self.context["request"].user)


class BusySerializer(serializers.Serializer):
    busy = serializers.BooleanField(help_text="true: mark busy (an incident); false: clear")
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500,
                                   help_text="Why (required to mark busy): whoever waits for the cluster reads it")


class ClusterEventSerializer(serializers.ModelSerializer):
    """A line of a cluster's History."""

    cluster_name = serializers.CharField(source="cluster.name", read_only=True)

    class Meta:
        model = ClusterEvent
        fields = ("id", "cluster", "cluster_name", "at", "kind", "summary", "before", "after", "actor")
        read_only_fields = fields


class NodePoolSerializer(serializers.Serializer):
    """One node pool of one cluster (read-only, computed from its nodes)."""

    cluster = serializers.IntegerField(source="cluster_id")
    cluster_name = serializers.CharField(source="cluster__name")
    environment = serializers.CharField(source="cluster__environment")
    pool = serializers.CharField()
    nodes = serializers.IntegerField()
    ready = serializers.IntegerField()
    kubelet_versions = serializers.ListField(child=serializers.CharField())
    os_images = serializers.ListField(child=serializers.CharField())
    instance_types = serializers.ListField(child=serializers.CharField())
    zones = serializers.ListField(child=serializers.CharField())
    cpu_allocatable_millis = serializers.IntegerField()
    memory_allocatable_bytes = serializers.IntegerField()


class AddonSerializer(serializers.ModelSerializer):
    """A well-known add-on found running in a cluster, with the version its image tag states."""

    cluster_name = serializers.CharField(source="cluster.name", read_only=True)

    class Meta:
        model = ClusterAddon
        fields = ("id", "cluster", "cluster_name", "addon", "version", "namespace", "workload", "kind", "image")
        read_only_fields = fields
