"""The notifications API's serializers: channels (URL and secret written, never read back), alert rules (each
declared condition parameter a field of its own, from notifications.events), deliveries."""

from __future__ import annotations

from rest_framework import serializers

from inventory.api.serializers import VisibleRelatedField, VisibleSlugField
from inventory.models import Team
from notifications import events
from notifications.models import AlertRule, Channel, Delivery


def param_field(param: events.Param) -> serializers.Field:
    """The API field of a declared parameter (its bounds are the service's to check, in its words)."""
    if param.kind == "float":
        return serializers.FloatField(required=False, help_text=param.help)
    if param.kind == "int":
        return serializers.IntegerField(required=False, help_text=param.help)
    if param.kind == "bool":
        return serializers.BooleanField(required=False, help_text=param.help)
    if param.kind == "list":
        return serializers.ListField(child=serializers.CharField(max_length=253), required=False, help_text=param.help)
    return serializers.CharField(required=False, help_text=param.help)


class ChannelSerializer(serializers.ModelSerializer):
    """A notification channel. `url` and `secret` are written, never read back: `destination` shows the URL's host
    (or the email addresses)."""

    team = VisibleSlugField(slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)
    url = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=2048)
    secret = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=256)
    recipients = serializers.ListField(child=serializers.CharField(max_length=254), required=False)

    class Meta:
        model = Channel
        fields = ("id", "name", "team", "kind", "destination", "url", "secret", "recipients", "enabled", "created_at",
                  "updated_at")
        read_only_fields = ("id", "destination", "created_at", "updated_at")
        validators: list = []  # the service checks the name per team (and says so in the field's words)


class AlertRuleSerializer(serializers.ModelSerializer):
    team = VisibleSlugField(slug_field="name", queryset=Team.objects.all(), required=False, allow_null=True)
    channel = VisibleRelatedField(queryset=Channel.objects.all())
    events = serializers.ListField(child=serializers.CharField(max_length=40), allow_empty=False)
    environments = serializers.ListField(child=serializers.CharField(max_length=16), required=False)

    class Meta:
        model = AlertRule
        fields = ("id", "name", "team", "channel", "events", "environments", "min_severity", "hold_down", "enabled",
                  "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")

    def get_fields(self) -> dict:
        """Beside the rule's own fields, one per declared condition parameter (`score_below`, `expiry_days`…)."""
        fields = super().get_fields()
        for param in events.params():
            fields[param.name] = param_field(param)
        return fields

    def to_representation(self, instance: AlertRule) -> dict:
        data = super().to_representation(instance)
        for param in events.params():
            data[param.name] = events.param(instance, param.name)
        return data


class DeliverySerializer(serializers.ModelSerializer):
    channel_name = serializers.CharField(source="channel.name", read_only=True)

    class Meta:
        model = Delivery
        fields = ("id", "channel", "channel_name", "rule", "event", "title", "payload", "state", "attempts", "answer",
                  "is_test", "created_at", "last_attempt_at", "sent_at")
        read_only_fields = fields
