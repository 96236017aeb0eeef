"""API viewsets of the inventory app. Each starts from `visible_to(user)`; writes go through services."""

from __future__ import annotations

from django.db import IntegrityError, models
from django.db.models import QuerySet, Sum
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from foundation.lists import Counted
from foundation.roles import VIEWER
from foundation.web import client_ip
from inventory import pools, services
from inventory.api import serializers
from inventory.filtersets import (
    AddonFilterSet,
    ClusterFilterSet,
    ClusterGroupFilterSet,
    NamespaceFilterSet,
    NodeFilterSet,
    NodePoolFilterSet,
    ProblemPodFilterSet,
    SyncRunFilterSet,
    WorkloadFilterSet,
)
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
    Workload,
)
from inventory.people.access import scopes_of
from inventory.querysets import InventoryQuerySet
from inventory.selectors import SelectorError


def _service_call(fn, **kwargs):
    """Run a service (its AttachError is translated by foundation.api.exception_handler); a name taken by a
    concurrent attach is the unique constraint's."""
    try:
        return fn(**kwargs)
    except IntegrityError:
        raise ValidationError({"name": ["A cluster with this name already exists."]}) from None


class ClusterViewSet(viewsets.ModelViewSet):
    """Attached clusters: list, filter, attach, edit metadata, detach, and ask for a sync."""

    serializer_class = serializers.ClusterSerializer
    filterset_class = ClusterFilterSet
    ordering_fields = ["name", "environment", "region", "provider", "status", "kubernetes_version", "node_count",
                       "last_sync_at"]
    ordering = ["name"]

    def get_queryset(self) -> QuerySet:
        return Cluster.objects.visible_to(self.request.user)

    @property
    def team_roles(self) -> bool:
        """'Sync now' is open to team operators (the service checks the cluster); every other write is not."""
        return self.action in ("sync", "history", "busy")

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        credentials = data.pop("credentials")
        insecure = data.pop("insecure_skip_tls_verify", False)
        serializer.instance = _service_call(
            services.attach_cluster, credentials=credentials, user=self.request.user, insecure=insecure,
            source_ip=client_ip(self.request), **data)

    def perform_update(self, serializer) -> None:
        data = dict(serializer.validated_data)
        if "name" in data and data["name"] != serializer.instance.name:
            raise ValidationError({"name": ["A cluster cannot be renamed; detach and attach it again."]})
        data.pop("name", None)
        credentials = data.pop("credentials", None)
        insecure = data.pop("insecure_skip_tls_verify", None)
        serializer.instance = _service_call(
            services.update_cluster, cluster=serializer.instance, user=self.request.user, credentials=credentials,
            insecure=insecure, source_ip=client_ip(self.request), **data)

    def perform_destroy(self, instance) -> None:
        services.detach_cluster(instance, user=self.request.user, source_ip=client_ip(self.request))

    @extend_schema(responses=serializers.ClusterEventSerializer(many=True))
    @action(detail=True, methods=["get"], filterset_class=None, ordering_fields=[])
    def history(self, request, pk=None) -> Response:
        """The cluster's History, newest first: status transitions, Kubernetes version and node-count changes,
        credential and metadata changes, policy installs, rollouts applied."""
        cluster = self.get_object()
        rows = ClusterEvent.objects.filter(cluster=cluster).select_related("cluster").order_by("-at", "-pk")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(serializers.ClusterEventSerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: None})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None) -> Response:
        """Queue a sync of this cluster now (202); the result shows in its sync runs."""
        cluster = self.get_object()
        services.sync_now(cluster, user=request.user, via="api")
        return Response({"detail": f"Sync of {cluster.name} queued."}, status=status.HTTP_202_ACCEPTED)


    @extend_schema(request=serializers.BusySerializer, responses={200: serializers.ClusterSerializer, 403: dict})
    @action(detail=True, methods=["post"])
    def busy(self, request, pk=None) -> Response:
        """Mark the cluster busy (an incident: Fleetweb changes nothing there until it is cleared) or clear it: the
        operators over it. Audited."""
        body = serializers.BusySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        cluster = services.set_busy(self.get_object(), user=request.user, busy=body.validated_data["busy"],
                                    reason=body.validated_data.get("reason", ""), source_ip=client_ip(request))
        return Response(serializers.ClusterSerializer(cluster, context={"request": request}).data)


class _InventoryViewSet(viewsets.ReadOnlyModelViewSet):
    model: type[models.Model]
    required_role = VIEWER
    # The cluster's field that counts its rows of `model`, written by the sync in the transaction that writes them
    # (`inventory.sync._update_counters` counts the table): an unfiltered list counts by adding those up.
    counter: str | None = None

    def get_queryset(self) -> QuerySet:
        # Of the cluster only its name, not its whole row (labels, errors, counters) per item; select_related
        # rather than an annotation, so the page's COUNT(*) stays a scan of one index without the join.
        own = (f.name for f in self.model._meta.concrete_fields)
        rows: InventoryQuerySet = self.model._default_manager.all()  # type: ignore[assignment]
        return rows.visible_to(self.request.user).select_related("cluster").only(*own, "cluster__name")

    def paginate_queryset(self, queryset) -> list | None:
        """A page; with no filter, counted by the visible clusters' counters: a COUNT(*) of 400,000 workloads took
        15-28 ms and two parallel workers on every page, the sum over 10,000 cluster rows takes ~2 ms."""
        counter = self.counter
        filterset_class = getattr(self, "filterset_class", None)
        filters = filterset_class.base_filters if filterset_class else {}
        if counter and not any(self.request.query_params.get(name) for name in filters):
            user = self.request.user
            queryset = Counted(queryset, count=lambda: Cluster.objects.visible_to(user).aggregate(
                n=Sum(counter))["n"] or 0)
        return super().paginate_queryset(queryset)


class NodeViewSet(_InventoryViewSet):
    model = Node
    serializer_class = serializers.NodeSerializer
    filterset_class = NodeFilterSet
    ordering_fields = ["name", "cluster__name", "kubelet_version", "zone"]


class NamespaceViewSet(_InventoryViewSet):
    model = Namespace
    serializer_class = serializers.NamespaceSerializer
    filterset_class = NamespaceFilterSet
    ordering_fields = ["name", "cluster__name", "pods_total"]


class WorkloadViewSet(_InventoryViewSet):
    model = Workload
    counter = "workload_count"
    serializer_class = serializers.WorkloadSerializer
    filterset_class = WorkloadFilterSet
    ordering_fields = ["name", "namespace", "kind", "cluster__name", "restarts"]


class ProblemPodViewSet(_InventoryViewSet):
    model = ProblemPod
    serializer_class = serializers.ProblemPodSerializer
    filterset_class = ProblemPodFilterSet
    ordering_fields = ["name", "namespace", "restarts", "cluster__name"]


class AddonViewSet(_InventoryViewSet):
    """Well-known add-ons (CoreDNS, kube-proxy, CNIs, ingress controllers, cert-manager, …) per cluster, with
    the workload running each and the version its image states."""

    model = ClusterAddon
    serializer_class = serializers.AddonSerializer
    filterset_class = AddonFilterSet
    ordering_fields = ["addon", "version", "cluster__name"]


class NodePoolViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Node pools: each cluster's nodes grouped by the pool their provider's labels name, with counts, kubelet
    versions, OS images, instance types, zones and allocatable CPU and memory."""

    serializer_class = serializers.NodePoolSerializer
    filterset_class = NodePoolFilterSet
    filter_backends = [DjangoFilterBackend]
    required_role = VIEWER

    def get_queryset(self) -> QuerySet:
        nodes: InventoryQuerySet = Node.objects.all()  # type: ignore[assignment]
        return nodes.visible_to(self.request.user)

    def list(self, request, *args, **kwargs) -> Response:
        nodes = self.filter_queryset(self.get_queryset())
        rows = pools.pools(nodes, kubelet_version=request.query_params.get("kubelet_version", "").strip())
        page = self.paginate_queryset(rows) or []
        return self.get_paginated_response(self.get_serializer([pools.tidy(r) for r in page], many=True).data)


class SyncRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = serializers.SyncRunSerializer
    filterset_class = SyncRunFilterSet
    required_role = VIEWER
    ordering_fields = ["started_at", "duration_ms"]

    def get_queryset(self) -> QuerySet:
        visible = Cluster.objects.visible_to(self.request.user)
        return SyncRun.objects.filter(cluster__in=visible).select_related("cluster")


class ClusterGroupViewSet(viewsets.ModelViewSet):
    """Cluster groups by name; writes go through the group services (audited, policies re-evaluated)."""

    serializer_class = serializers.ClusterGroupSerializer
    lookup_field = "name"
    lookup_value_regex = "[-a-zA-Z0-9_]+"
    ordering_fields = ["name", "owner", "created_at"]
    ordering = ["name"]
    filterset_class = ClusterGroupFilterSet

    def get_queryset(self) -> QuerySet:
        return ClusterGroup.objects.visible_to(self.request.user).prefetch_related("static_members")

    def get_serializer_context(self) -> dict:
        context = dict(super().get_serializer_context())
        if getattr(self, "_page", None) is not None:
            context["membership"] = services.membership(self._page)
        return context

    def list(self, request, *args, **kwargs) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        self._page = self.paginate_queryset(queryset)
        serializer = self.get_serializer(self._page, many=True)
        return self.get_paginated_response(serializer.data)

    def _call(self, fn, **kwargs):
        try:
            return fn(source_ip=client_ip(self.request), user=self.request.user, **kwargs)
        except SelectorError as exc:
            raise ValidationError({"selector": [str(exc)]}) from None

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        serializer.instance = self._call(services.create_group, **data)

    def perform_update(self, serializer) -> None:
        data = dict(serializer.validated_data)
        data.pop("name", None)
        serializer.instance = self._call(services.update_group, group=serializer.instance, **data)

    def perform_destroy(self, instance) -> None:
        self._call(services.delete_group, group=instance)


class TeamViewSet(viewsets.ReadOnlyModelViewSet):
    """Teams: admins see all, anyone else their own; members, roles and the clusters of the scope (changed on the
    Teams pages by platform admins)."""

    serializer_class = serializers.TeamSerializer
    required_role = VIEWER
    lookup_value_regex = "[0-9]+"

    def get_queryset(self) -> QuerySet:
        return Team.objects.visible_to(self.request.user).prefetch_related("groups", "members__user")

    def get_serializer_context(self) -> dict:
        context = dict(super().get_serializer_context())
        teams = Team.objects.visible_to(self.request.user)
        context["scopes"] = scopes_of(teams)
        context["visible"] = dict(Cluster.objects.visible_to(self.request.user).values_list("pk", "name"))
        return context
