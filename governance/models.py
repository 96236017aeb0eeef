"""Governance models. The audit log comes first: every change and decision, append-only."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from governance.querysets import AuditEventQuerySet


class AuditEvent(models.Model):
    """One change or decision: who, when, from where, what, before/after (never secrets).

    Append-only: the application never updates or deletes a row, and a database trigger
    (migration 0002) refuses UPDATE and DELETE on the table.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING,
                              db_constraint=False, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True, help_text="Username at the time, kept if the user goes")
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target_type = models.CharField(max_length=64, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_name = models.CharField(max_length=255, blank=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target_name}"
