"""One FilterSet per listable model, shared by the HTML lists and the API."""

from __future__ import annotations

import django_filters
from django.db.models import Q, QuerySet

from inventory.addons import ADDONS
from inventory.choices import ClusterStatus, Environment, Provider, WorkloadKind
from inventory.models import Cluster, ClusterAddon, ClusterGroup, Namespace, Node, ProblemPod, SyncRun, Workload
from inventory.people.access import narrowed_scope


def _label_filter(queryset, field: str, value: str):
    """`key=value` (or just `key`) against a JSON labels field."""
    key, sep, wanted = value.partition("=")
    key = key.strip()
    if not key:
        return queryset
    if sep:
        return queryset.filter(**{f"{field}__contains": {key: wanted.strip()}})
    return queryset.filter(**{f"{field}__has_key": key})


def team_scope_filter(queryset, path: str, team_name: str, user) -> QuerySet:
    """Rows whose cluster (at `path`) is in the scope of the team named, among the teams the user may see; a
    team they may not see, or none by that name, leaves nothing (as a 404 would)."""
    if user is None:
        return queryset.none()
    return queryset.filter(**{f"{path}__in": narrowed_scope(user, team_name.strip()) or frozenset()})


class TeamFilter(django_filters.CharFilter):
    """`?team=NAME`: only what lies in that team's scope (the team switcher of the lists, and the API)."""

    def __init__(self, path: str = "pk", **kwargs):
        kwargs.setdefault("label", "Team (its clusters only)")
        super().__init__(**kwargs)
        self.path = path

    def filter(self, qs, value) -> QuerySet:
        if not value:
            return qs
        return team_scope_filter(qs, self.path, value, getattr(self.parent.request, "user", None))


class ClusterFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    team = TeamFilter()
    # Columns of the cluster row: no join, so no DISTINCT (django-filter adds one by default).
    environment = django_filters.MultipleChoiceFilter(choices=Environment.choices, distinct=False)
    status = django_filters.MultipleChoiceFilter(choices=ClusterStatus.choices, distinct=False)
    provider = django_filters.MultipleChoiceFilter(choices=Provider.choices, distinct=False)
    region = django_filters.CharFilter(lookup_expr="iexact")
    owner = django_filters.CharFilter(lookup_expr="iexact")
    version = django_filters.CharFilter(method="filter_version", label="Kubernetes version (prefix, e.g. v1.35)")
    label = django_filters.CharFilter(method="filter_label", label="Label (key=value)")
    ordering = django_filters.OrderingFilter(fields=(
        ("name", "name"), ("environment", "environment"), ("region", "region"), ("provider", "provider"),
        ("status", "status"), ("kubernetes_version", "version"), ("node_count", "nodes"),
        ("last_sync_at", "last_sync"), ("last_seen_at", "last_seen"), ("workload_count", "workloads"),
        ("problem_pod_count", "problem_pods"),
    ))

    class Meta:
        model = Cluster
        fields = ["q", "team", "environment", "status", "provider", "region", "owner", "version", "label"]

    def __init__(self, data=None, *args, **kwargs):
        # A select's "any" sends `environment=`: not a choice, and an invalid filterset would drop every other
        # filter of the request (`foundation.lists.filtered` then shows all rows). Blank values filter nothing.
        if data is not None and hasattr(data, "getlist"):  # a QueryDict (pages, API)
            data = data.copy()
            for key in [k for k in data if all(v == "" for v in data.getlist(k))]:
                del data[key]
        super().__init__(data, *args, **kwargs)

    def search(self, queryset, name, value) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(region__icontains=value) | Q(owner__icontains=value)
                               | Q(cost_center__icontains=value) | Q(server__icontains=value)
                               | Q(kubernetes_version__icontains=value))

    def filter_version(self, queryset, name, value) -> QuerySet:
        value = value.strip()
        if value and not value.startswith("v"):
            value = "v" + value
        return queryset.filter(kubernetes_version__startswith=value) if value else queryset

    def filter_label(self, queryset, name, value) -> QuerySet:
        return _label_filter(queryset, "labels", value)


class _InventoryFilterSet(django_filters.FilterSet):
    """Filters every inventory list has: by cluster id or name, and a name search."""

    cluster = django_filters.NumberFilter(field_name="cluster_id")
    cluster_name = django_filters.CharFilter(field_name="cluster__name")
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name contains")
    team = TeamFilter(path="cluster_id")


class NodeFilterSet(_InventoryFilterSet):
    ready = django_filters.BooleanFilter()
    zone = django_filters.CharFilter()
    kubelet_version = django_filters.CharFilter(lookup_expr="startswith")
    label = django_filters.CharFilter(method="filter_label")

    class Meta:
        model = Node
        fields = ["cluster", "cluster_name", "q", "ready", "zone", "region", "instance_type", "kubelet_version",
                  "pool"]

    def filter_label(self, queryset, name, value) -> QuerySet:
        return _label_filter(queryset, "labels", value)


class NodePoolFilterSet(_InventoryFilterSet):
    """Which nodes the pools are made of: by cluster, team, environment, provider, pool name (`q` searches it).
    `kubelet_version` keeps pools with a node of that version (applied to the groups, see inventory.pools)."""

    q = django_filters.CharFilter(field_name="pool", lookup_expr="icontains", label="Pool name contains")
    environment = django_filters.ChoiceFilter(field_name="cluster__environment", choices=Environment.choices)
    provider = django_filters.ChoiceFilter(field_name="cluster__provider", choices=Provider.choices)
    pool = django_filters.CharFilter()
    kubelet_version = django_filters.CharFilter(method="filter_nothing",
                                                help_text="Pools with a node running this kubelet version")

    class Meta:
        model = Node
        fields = ["cluster", "cluster_name", "q", "team", "environment", "provider", "pool", "kubelet_version"]

    def filter_nothing(self, queryset, name, value) -> QuerySet:
        return queryset  # applied after grouping: inventory.pools.pools(kubelet_version=...)


class NamespaceFilterSet(_InventoryFilterSet):
    class Meta:
        model = Namespace
        fields = ["cluster", "cluster_name", "q", "phase", "pod_security_enforce"]


class WorkloadFilterSet(_InventoryFilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=WorkloadKind.choices)
    namespace = django_filters.CharFilter()
    image = django_filters.CharFilter(method="filter_image", label="Image contains")
    unavailable = django_filters.BooleanFilter(method="filter_unavailable")
    label = django_filters.CharFilter(method="filter_label", label="Label (key=value)")

    class Meta:
        model = Workload
        fields = ["cluster", "cluster_name", "q", "kind", "namespace"]

    def filter_label(self, queryset, name, value) -> QuerySet:
        return _label_filter(queryset, "labels", value)

    def filter_image(self, queryset, name, value) -> QuerySet:
        from django.db.models import TextField
        from django.db.models.functions import Cast

        # images is a JSON list of strings: a substring of its text form is a substring of an image.
        if not value:
            return queryset
        return queryset.annotate(images_text=Cast("images", TextField())).filter(images_text__icontains=value)

    def filter_unavailable(self, queryset, name, value) -> QuerySet:
        """Workloads unavailable by the one rule (`inventory.choices.workload_unavailable`)."""
        if value is None:
            return queryset
        return queryset.unavailable() if value else queryset.available()


class ProblemPodFilterSet(_InventoryFilterSet):
    namespace = django_filters.CharFilter()
    reason = django_filters.CharFilter()

    class Meta:
        model = ProblemPod
        fields = ["cluster", "cluster_name", "q", "namespace", "reason", "phase"]


class SyncRunFilterSet(django_filters.FilterSet):
    cluster = django_filters.NumberFilter(field_name="cluster_id")
    cluster_name = django_filters.CharFilter(field_name="cluster__name")
    outcome = django_filters.MultipleChoiceFilter(choices=SyncRun._meta.get_field("outcome").choices)

    class Meta:
        model = SyncRun
        fields = ["cluster", "cluster_name", "outcome"]


class ClusterGroupFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    owner = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = ClusterGroup
        fields = ["q", "owner"]

    def search(self, queryset, name, value) -> QuerySet:
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(description__icontains=value)
                               | Q(owner__icontains=value) | Q(selector__icontains=value))


class AddonFilterSet(_InventoryFilterSet):
    q = django_filters.CharFilter(field_name="workload", lookup_expr="icontains", label="Workload contains")
    addon = django_filters.ChoiceFilter(choices=[(a.key, a.name) for a in ADDONS])
    version = django_filters.CharFilter(lookup_expr="startswith")
    environment = django_filters.ChoiceFilter(field_name="cluster__environment", choices=Environment.choices)

    class Meta:
        model = ClusterAddon
        fields = ["cluster", "cluster_name", "q", "team", "addon", "version", "namespace", "environment"]
