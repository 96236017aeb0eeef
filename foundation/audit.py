"""Writing the audit log: one function, called inside the transaction of the change it records."""

from __future__ import annotations

from django.db import models

from foundation.models import AuditEvent

SECRET_KEYS = {"token", "password", "client_key", "client-key-data", "kubeconfig", "ca_data"}


def _scrub(value):
    """Drop anything that looks like a secret, however deep, before it reaches the log."""
    if isinstance(value, dict):
        return {k: ("<redacted>" if k in SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def record(*, user, action: str, target: models.Model | None = None, target_name: str = "", source_ip: str = "",
           before: dict | None = None, after: dict | None = None, message: str = "") -> AuditEvent:
    """Append one audit event; `user` may be None (system) or anonymous (failed login)."""
    actor = user if getattr(user, "pk", None) else None
    return AuditEvent.objects.create(
        actor=actor,
        actor_name=(getattr(user, "get_username", lambda: "")() or "") if user is not None else "",
        source_ip=source_ip or None,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_name=target_name or (str(target) if target is not None else ""),
        before=_scrub(before) if before is not None else None,
        after=_scrub(after) if after is not None else None,
        message=message,
    )
