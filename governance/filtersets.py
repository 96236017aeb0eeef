"""FilterSets of governance, shared by pages and API."""

import django_filters
from django.db.models import Q

from governance.models import AuditEvent


class AuditEventFilterSet(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", label="Search")
    action = django_filters.CharFilter(lookup_expr="startswith")
    actor = django_filters.CharFilter(field_name="actor_name", lookup_expr="iexact")
    target = django_filters.CharFilter(field_name="target_name", lookup_expr="icontains")
    since = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="at", lookup_expr="lt")

    class Meta:
        model = AuditEvent
        fields = ["q", "action", "actor", "target", "since", "until"]

    def search(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(Q(action__icontains=value) | Q(actor_name__icontains=value)
                               | Q(target_name__icontains=value) | Q(message__icontains=value))
