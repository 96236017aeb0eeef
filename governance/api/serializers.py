"""API serializers of governance: the audit log (read-only)."""

from rest_framework import serializers

from governance.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ("id", "at", "actor", "actor_name", "source_ip", "action", "target_type", "target_id", "target_name",
                  "before", "after", "message")
        read_only_fields = fields
