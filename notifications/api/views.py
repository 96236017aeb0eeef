"""The notifications API: channels, alert rules and the delivery log; every write through notifications.services."""

from __future__ import annotations

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from foundation.roles import VIEWER
from foundation.web import client_ip
from notifications import events
from notifications import services as notification_services
from notifications.api import serializers
from notifications.models import AlertRule, Channel, Delivery


class ChannelViewSet(viewsets.ModelViewSet):
    """Notification channels of your scope (a team's for its members, all for global roles); written by admins
    (the platform's) and each team's operators (the team's), through the notification services. The URL and
    signing secret are write-only."""

    serializer_class = serializers.ChannelSerializer
    team_roles = True
    ordering = ["name"]
    ordering_fields = ["name", "kind", "created_at"]

    def get_queryset(self) -> QuerySet:
        return Channel.objects.visible_to(self.request.user).select_related("team")

    def _save(self, serializer, channel=None) -> None:
        data = dict(serializer.validated_data)
        team = data.pop("team", channel.team if channel is not None else None)
        serializer.instance = notification_services.save_channel(
            user=self.request.user, channel=channel, team=team, source_ip=client_ip(self.request),
            name=data.get("name", channel.name if channel else ""), kind=data.get("kind", channel.kind if channel
                                                                                   else ""),
            url=data.get("url", ""), secret=data.get("secret", ""),
            recipients=data.get("recipients", list(channel.recipients) if channel else None),
            enabled=data.get("enabled", channel.enabled if channel else True))

    def perform_create(self, serializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer) -> None:
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance) -> None:
        notification_services.delete_channel(instance, user=self.request.user, source_ip=client_ip(self.request))

    @extend_schema(request=None, responses=serializers.DeliverySerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None) -> Response:
        """Send a test message now; the delivery (state and answer) comes back."""
        delivery = notification_services.send_test(self.get_object(), user=request.user,
                                                   source_ip=client_ip(request))
        return Response(serializers.DeliverySerializer(delivery).data)


class AlertRuleViewSet(viewsets.ModelViewSet):
    """Alert rules: which events go to which channel (a team's rule to its team's channels only)."""

    serializer_class = serializers.AlertRuleSerializer
    team_roles = True
    ordering = ["name"]
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> QuerySet:
        return AlertRule.objects.visible_to(self.request.user).select_related("team", "channel")

    def _save(self, serializer, rule=None) -> None:
        data = dict(serializer.validated_data)
        current = {f: getattr(rule, f) for f in notification_services.RULE_FIELDS} if rule is not None else {}
        team = data.pop("team", rule.team if rule is not None else None)
        values = {**current, **{f: data[f] for f in notification_services.RULE_FIELDS if f in data}}
        values["params"] = {p.name: data[p.name] for p in events.params() if p.name in data}  # the rest kept
        channel = data.get("channel") or (rule.channel if rule is not None else None)
        if channel is None:
            raise ValidationError({"channel": ["This field is required."]})
        serializer.instance = notification_services.save_rule(
            user=self.request.user, rule=rule, team=team, source_ip=client_ip(self.request),
            name=data.get("name", rule.name if rule else ""), channel=channel, **values)

    def perform_create(self, serializer) -> None:
        self._save(serializer)

    def perform_update(self, serializer) -> None:
        self._save(serializer, serializer.instance)

    def perform_destroy(self, instance) -> None:
        notification_services.delete_rule(instance, user=self.request.user, source_ip=client_ip(self.request))


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """The delivery log: each message with its payload, attempts and the answer."""

    serializer_class = serializers.DeliverySerializer
    required_role = VIEWER
    ordering = ["-created_at"]
    ordering_fields = ["created_at"]
    filterset_fields = ["channel", "state", "event"]

    def get_queryset(self) -> QuerySet:
        return Delivery.objects.visible_to(self.request.user).select_related("channel")
