"""Notification channels, alert rules, their open alerts and the delivery log.

The tables kept the names they had in the inventory app, where these models were first (migration 0001 took them
over without touching the database).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from foundation import crypto
from inventory.choices import Severity
from inventory.models import Cluster, Team
from inventory.querysets import ScopedQuerySet, Visibility
from notifications.choices import ChannelKind, DeliveryState


class Channel(models.Model):
    """Where alerts go: a signed JSON webhook, a Slack-compatible incoming webhook, or email. A team's
    channel (team set) is managed by the team's operators and gets only what its team may see; a channel
    of no team is the platform's (admins)."""

    name = models.SlugField(max_length=63)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="channels")
    kind = models.CharField(max_length=8, choices=ChannelKind.choices)
    # URL and signing secret are encrypted: a Slack incoming-webhook URL is itself the credential.
    ciphertext = models.TextField(blank=True)
    target_host = models.CharField(max_length=255, blank=True, help_text="What pages show of the URL: its host")
    recipients = models.JSONField(default=list, blank=True, help_text="Email addresses")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="team_id")

    class Meta:
        db_table = "inventory_channel"  # kept when the model moved from inventory
        ordering = ["team__name", "name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="one_channel_name_per_team",
                                               nulls_distinct=False)]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("notifications:channel_detail", args=[self.pk])

    @property
    def destination(self) -> str:
        """What pages show: the URL's host or the addresses, never the URL (it may carry a secret)."""
        return ", ".join(self.recipients) if self.kind == ChannelKind.EMAIL else self.target_host

    def open(self) -> dict:
        """{"url", "secret"}: only the sender reads these."""
        return crypto.decrypt_json(self.ciphertext) if self.ciphertext else {}

    @classmethod
    def seal(cls, secret: dict) -> str:
        return crypto.encrypt_json(secret)


class AlertRule(models.Model):
    """Which events go to which channel: a team's rule sees only its team's clusters, groups and applications."""

    name = models.CharField(max_length=100)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.CASCADE, related_name="alert_rules")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="rules")
    events = models.JSONField(default=list, help_text="Registered event keys (notifications.events)")
    environments = models.JSONField(default=list, blank=True, help_text="Only clusters of these; empty: all")
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.HIGH)
    hold_down = models.PositiveIntegerField(default=120, help_text="Seconds a cluster must stay in a state "
                                                                    "before it alerts or recovers")
    params = models.JSONField(default=dict, blank=True,
                              help_text="The conditions' declared parameters (notifications.events), by name")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="team_id")

    class Meta:
        db_table = "inventory_alertrule"  # kept when the model moved from inventory
        ordering = ["team__name", "name"]

    def __str__(self) -> str:
        return self.name


class Alert(models.Model):
    """A condition a rule found (a cluster unreachable, credentials expiring, a group's score low, an
    enforcement failing): opened once, closed once by its recovery. At most one open per rule and subject."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    key = models.CharField(max_length=128, help_text="The subject, e.g. cluster:12")
    event = models.CharField(max_length=40)
    state = models.CharField(max_length=64, help_text="e.g. the cluster status that fired it")
    subject = models.CharField(max_length=255)
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="rule__team_id")

    class Meta:
        db_table = "inventory_alert"  # kept when the model moved from inventory
        ordering = ["-opened_at"]
        constraints = [models.UniqueConstraint(fields=["rule", "key"], condition=Q(closed_at__isnull=True),
                                               name="one_open_alert_per_subject")]

    def __str__(self) -> str:
        return f"{self.event} {self.key} ({'open' if self.closed_at is None else 'closed'})"


class Delivery(models.Model):
    """One message to one channel and what became of it: the payload as sent and the answer (status code or
    what went wrong, in Fleetweb's words; never the receiver's body)."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    event = models.CharField(max_length=40)
    title = models.CharField(max_length=255)
    payload = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    answer = models.CharField(max_length=255, blank=True)
    is_test = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedQuerySet.as_manager()
    visibility = Visibility(team="channel__team_id")

    class Meta:
        db_table = "inventory_delivery"  # kept when the model moved from inventory
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["channel", "-created_at"]), models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"{self.event} to {self.channel_id}: {self.state}"
