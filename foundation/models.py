"""Fleetweb's own models: the audit log, which every app writes through `foundation.audit.record`."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import QuerySet

from foundation.roles import ADMIN, has_role


class AuditEventQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet:
        """Admins read all of the audit log; nobody else does."""
        return self if has_role(user, ADMIN) else self.none()


class AuditEvent(models.Model):
    """One change or decision: who, when, from where, what, before/after (never secrets).

    Append-only: the application never updates or deletes a row (only a failed-login row's `count` grows), a
    database trigger refuses any other UPDATE, every DELETE and TRUNCATE (governance migration 0006), and the role the
    application runs as may only INSERT and SELECT it (foundation/dbroles.py).
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
    count = models.PositiveIntegerField(default=1, help_text="Failed logins of one username and address within a "
                                                             "minute share a row; the only column that may grow")

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-id"]
        # The table keeps the name it was created with (governance migrations 0001-0006 hold its append-only
        # triggers): every app writes the record, so the model lives in the bottom layer.
        db_table = "governance_auditevent"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target_name}"


class ApiTokenQuerySet(models.QuerySet):
    def visible_to(self, user) -> QuerySet:
        """Admins see every token; anyone else their own (service accounts' tokens: admins)."""
        if has_role(user, ADMIN):
            return self
        return self.filter(user=user) if user.is_authenticated else self.none()


class ApiToken(models.Model):
    """A personal (or service account's) API token. Only a SHA-256 digest of the key is stored: the key is shown
    once, when created. Acts with its owner's roles as they are at each request; `read_only` writes nothing."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, help_text="The key's first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True)
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def __repr__(self) -> str:
        return f"<ApiToken {self.pk} {self.prefix}… of {self.user_id}>"

    @property
    def state(self) -> str:
        from django.utils import timezone

        if self.revoked_at:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "active"


class ServiceAccount(models.Model):
    """A user for CI and integrations: no password (it cannot log in to pages), only API tokens; created by
    admins, with roles like anyone's."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    def __str__(self) -> str:
        return f"service account {self.user_id}"
