"""FilterSets of governance, shared by pages and API."""

import django_filters
from django.db.models import Exists, OuterRef, Q, QuerySet

from foundation.filters import IsoDateTimeFilter
from foundation.models import AuditEvent
from governance import upgrades
from governance.choices import Mode, Severity
from governance.models import PolicyAssignment, PolicyResult, Violation
from inventory.filtersets import ClusterFilterSet, TeamFilter
from inventory.models import ClusterGroup


class AuditEventFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    action = django_filters.CharFilter(lookup_expr="startswith")
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact")
    target = django_filters.CharFilter(field_name="target_name", lookup_expr="icontains")
    since = IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["q", "action", "actor", "target", "since", "until"]

    def search(self, queryset, name, value) -> QuerySet:
        if not value:
            return queryset
        return queryset.filter(Q(action__icontains=value) | Q(actor_name__icontains=value)
                               | Q(target_name__icontains=value) | Q(message__icontains=value))


class ViolationFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    cluster = django_filters.CharFilter(field_name="cluster__name", lookup_expr="exact")
    team = TeamFilter(path="cluster_id")
    group = django_filters.CharFilter(method="filter_group", label="Group")
    rule = django_filters.CharFilter(field_name="rule_key", lookup_expr="exact")
    severity = django_filters.MultipleChoiceFilter(choices=Severity.choices)
    namespace = django_filters.CharFilter(lookup_expr="exact")
    kind = django_filters.CharFilter(field_name="object_kind", lookup_expr="iexact")
    state = django_filters.ChoiceFilter(choices=(("open", "open"), ("resolved", "resolved")), method="filter_state",
                                        empty_label="open and resolved")
    since = IsoDateTimeFilter(field_name="first_seen", lookup_expr="gte")

    class Meta:
        model = Violation
        fields = ["q", "cluster", "team", "group", "rule", "severity", "namespace", "kind", "state", "since"]

    def search(self, queryset, name, value) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(object_name__icontains=value) | Q(namespace__icontains=value)
                               | Q(message__icontains=value) | Q(cluster__name__icontains=value))

    def filter_group(self, queryset, name, value) -> QuerySet:
        """Violations of a rule the group assigns, on clusters where its assignment applies: its own, and those of
        another group's assignment of the same rule that stands for both there (a rule applies once)."""
        if not value:
            return queryset
        return queryset.filter(Exists(PolicyResult.objects.filter(
            cluster_id=OuterRef("cluster_id"), assignment__rule_key=OuterRef("rule_key"),
            assignment__group__name=value)))

    def filter_state(self, queryset, name, value) -> QuerySet:
        if value == "open":
            return queryset.filter(resolved_at__isnull=True)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class PolicyAssignmentFilterSet(django_filters.FilterSet):
    group = django_filters.CharFilter(field_name="group__name")
    rule = django_filters.CharFilter(field_name="rule_key")
    mode = django_filters.ChoiceFilter(choices=Mode.choices)

    class Meta:
        model = PolicyAssignment
        fields = ["group", "rule", "mode"]


class UpgradePlanFilterSet(ClusterFilterSet):
    """The Upgrade plan's clusters: the cluster list's filters plus `group` (its members now) and `verdict`
    (applied to the computed readiness, see `governance.upgrades`)."""

    group = django_filters.CharFilter(method="filter_group", label="Group")
    verdict = django_filters.ChoiceFilter(choices=tuple(upgrades.VERDICTS.items()), method="keep",
                                          empty_label="any verdict")

    class Meta(ClusterFilterSet.Meta):
        fields = ["q", "team", "group", "environment", "provider", "version", "verdict"]

    def filter_group(self, queryset, name, value) -> QuerySet:
        group = ClusterGroup.objects.visible_to(getattr(self.request, "user", None)).filter(name=value.strip()).first()
        if group is None:
            return queryset.none()
        return queryset.filter(pk__in=group.members().values("pk"))

    def keep(self, queryset, name, value) -> QuerySet:
        return queryset  # `upgrades.fleet(verdict=…)` filters the plan: the verdict counts are of all verdicts
