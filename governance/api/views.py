"""Governance over the API: catalog, assignments, violations, compliance (viewers read; writes need roles)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from foundation.api import NewestFirstCursorPagination, Pagination
from foundation.lists import KeysFirst, page_rows
from foundation.models import AuditEvent
from foundation.roles import ADMIN, VIEWER
from foundation.web import client_ip
from governance import compliance, rules, services, upgrades
from governance.api.serializers import (
    AuditEventSerializer,
    ClusterComplianceSerializer,
    PolicyAssignmentSerializer,
    RuleSerializer,
    UpgradeReadinessSerializer,
    ViolationSerializer,
)
from governance.filtersets import (
    AuditEventFilterSet,
    PolicyAssignmentFilterSet,
    UpgradePlanFilterSet,
    ViolationFilterSet,
)
from governance.models import ClusterCompliance, PolicyAssignment, Violation
from inventory.models import Cluster, ClusterGroup
from inventory.people.access import scope_query


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    required_role = ADMIN
    ordering_fields = ["at", "action"]

    def get_queryset(self) -> QuerySet:
        return AuditEvent.objects.visible_to(self.request.user)


class PolicyViewSet(viewsets.ViewSet):
    """The built-in rule catalog, most severe first."""

    required_role = VIEWER
    lookup_field = "key"
    lookup_value_regex = "[-a-z0-9]+"
    serializer_class = RuleSerializer

    @extend_schema(responses=RuleSerializer(many=True))
    def list(self, request) -> Response:
        return Response(RuleSerializer(rules.catalog(), many=True).data)

    @extend_schema(responses=RuleSerializer)
    def retrieve(self, request, key=None) -> Response:
        if key not in rules.REGISTRY:
            raise NotFound(f"No rule '{key}' in the catalog.")
        return Response(RuleSerializer(rules.get(key)).data)


def _policy_call(fn, **kwargs):
    """Run a service; its PolicyError is translated by foundation.api.exception_handler."""
    return fn(**kwargs)


class PolicyAssignmentViewSet(viewsets.ModelViewSet):
    """Rules assigned to groups. Operators assign in audit mode; enforce mode is for admins."""

    serializer_class = PolicyAssignmentSerializer
    filterset_class = PolicyAssignmentFilterSet
    ordering_fields = ["group__name", "rule_key", "mode", "created_at"]
    ordering = ["group__name", "rule_key"]

    def get_queryset(self) -> QuerySet:
        return (PolicyAssignment.objects.visible_to(self.request.user).select_related("group")
                .prefetch_related("enforcements__cluster"))

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        serializer.instance = _policy_call(
            services.create_assignment, group=data["group"], rule_key=data["rule_key"], mode=data["mode"],
            params=data.get("params"), excluded_namespaces=data.get("excluded_namespaces"), user=self.request.user,
            source_ip=client_ip(self.request))

    def perform_update(self, serializer) -> None:
        data = serializer.validated_data
        instance = serializer.instance
        if data.get("group", instance.group) != instance.group or data.get("rule_key", instance.rule_key) \
                != instance.rule_key:
            raise ValidationError({"non_field_errors": ["Group and rule of an assignment cannot change; "
                                                        "delete it and assign again."]})
        serializer.instance = _policy_call(
            services.update_assignment, assignment=instance, mode=data.get("mode"), params=data.get("params"),
            excluded_namespaces=data.get("excluded_namespaces"), user=self.request.user,
            source_ip=client_ip(self.request))

    def perform_destroy(self, instance) -> None:
        _policy_call(services.delete_assignment, assignment=instance, user=self.request.user,
                     source_ip=client_ip(self.request))


class ViolationViewSet(viewsets.ReadOnlyModelViewSet):
    """Violations, open first; filter by cluster, group, rule, severity, namespace, kind, state."""

    serializer_class = ViolationSerializer
    filterset_class = ViolationFilterSet
    required_role = VIEWER
    pagination_class = NewestFirstCursorPagination
    filter_backends = [DjangoFilterBackend]  # the cursor fixes the order: newest first

    def get_queryset(self) -> QuerySet:
        return (Violation.objects.visible_to(self.request.user)
                .select_related("cluster__compliance", "assignment__group")
                .defer("cluster__compliance__results", "cluster__labels", "cluster__last_error"))


def _days(request) -> int:
    try:
        days = int(request.query_params.get("days", 30))
    except ValueError:
        raise ValidationError({"days": ["must be a whole number of days"]}) from None
    if not 1 <= days <= 365:
        raise ValidationError({"days": ["must be between 1 and 365"]})
    return days


class ComplianceView(APIView):
    """The fleet and every group: score (severity-weighted % of passed checks), clusters failing, history."""

    required_role = VIEWER

    @extend_schema(parameters=[OpenApiParameter("days", int, description="History window (default 30)")],
                   responses={200: dict})
    def get(self, request) -> Response:
        days = _days(request)
        groups = list(ClusterGroup.objects.visible_to(request.user))
        scores = compliance.group_scores(groups, user=request.user)
        # Trends are kept per group over all its members: none for a team member (see SECURITY.md).
        histories = compliance.group_history(days=days) if scope_query(request.user) is None else {}

        def entry(group_id, s):
            return {"score": s["score"], "clusters": s["clusters"], "failing_clusters": s["failing_clusters"],
                    "open_violations": s["open_violations"], "history": histories.get(group_id, [])}

        return Response({
            "fleet": entry(None, scores[None]),
            "groups": sorted(({"name": g.name, **entry(g.pk, scores[g.pk])} for g in groups),
                             key=lambda e: (e["score"] is None, e["score"] or 0, e["name"])),
        })


class ClusterComplianceViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Per cluster: score and per-assignment results, worst first; `/{cluster}/` adds the history."""

    serializer_class = ClusterComplianceSerializer
    required_role = VIEWER
    ordering_fields = ["score", "open_violations", "cluster__name"]
    ordering = ["score", "cluster__name"]
    lookup_field = "cluster__name"
    lookup_url_kwarg = "cluster"
    lookup_value_regex = "[-a-z0-9]+"

    def get_queryset(self) -> QuerySet:
        # Only what the answer holds: the sort runs over narrow rows (the results list stays out of line until read).
        return (ClusterCompliance.objects.visible_to(self.request.user).select_related("cluster")
                .only("cluster__name", "score", "passed", "failed", "open_violations", "evaluated_at", "results"))

    @extend_schema(parameters=[OpenApiParameter("days", int, description="History window (default 30)")])
    def retrieve(self, request, cluster=None) -> Response:
        compliance = get_object_or_404(self.get_queryset(), cluster__name=cluster)
        return Response(ClusterComplianceSerializer(compliance, context={"with_history": True,
                                                                         "days": _days(request)}).data)


class UpgradePlanViewSet(viewsets.GenericViewSet):
    """Each cluster's readiness for its next Kubernetes minor (or its groups' upgrade target): verdict, blockers
    with how to fix them, warnings, what could not be checked. Earliest end of support first; filters as on the
    Upgrade plan page (`q`, `team`, `group`, `environment`, `provider`, `version`, `verdict`)."""

    serializer_class = UpgradeReadinessSerializer
    filterset_class = UpgradePlanFilterSet
    filter_backends = [DjangoFilterBackend]
    pagination_class = Pagination
    required_role = VIEWER
    lookup_field = "name"
    lookup_url_kwarg = "cluster"
    lookup_value_regex = "[-a-z0-9]+"

    def get_queryset(self) -> QuerySet:
        return Cluster.objects.visible_to(self.request.user)

    def list(self, request) -> Response:
        """As stored by the last evaluation of each cluster (the detail computes it now)."""
        clusters, verdict = self.filter_queryset(self.get_queryset()), request.query_params.get("verdict", "")
        # Counted, and the page's keys read, in one statement (as on the page); `fleet` reads that page's rows.
        pagination: Pagination = self.paginator  # type: ignore[assignment]  # pagination_class
        rows = page_rows(request.query_params.get(pagination.page_query_param),
                         pagination.get_page_size(request) or 0)
        tally = upgrades.tally(clusters, verdict=verdict, keys=rows)
        page: list[Cluster] = self.paginate_queryset(KeysFirst(  # type: ignore[arg-type]
            upgrades.fleet(clusters, verdict=verdict), count=tally.count(verdict), keys=(rows, tally.keys))) or []
        return self.get_paginated_response(UpgradeReadinessSerializer(
            [upgrades.stored(c).as_dict() for c in page], many=True).data)

    def retrieve(self, request, cluster=None) -> Response:
        found = get_object_or_404(self.get_queryset().only(*upgrades.CLUSTER_FIELDS), name=cluster)
        [readiness] = upgrades.plan([found])
        return Response(UpgradeReadinessSerializer(readiness.as_dict()).data)
