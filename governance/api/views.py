"""The audit log over the API: read-only, admins only."""

from rest_framework import viewsets

from fleetweb.roles import ADMIN
from governance.api.serializers import AuditEventSerializer
from governance.filtersets import AuditEventFilterSet
from governance.models import AuditEvent


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    required_role = ADMIN
    ordering_fields = ["at", "action"]

    def get_queryset(self):
        return AuditEvent.objects.visible_to(self.request.user)
