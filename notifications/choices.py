"""Choices of the notifications app (event types are registered: notifications.events)."""

from __future__ import annotations

from django.db import models


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "webhook (signed JSON)"
    SLACK = "slack", "Slack-compatible incoming webhook"
    EMAIL = "email", "email"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "pending"
    RETRYING = "retrying", "retrying"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"
