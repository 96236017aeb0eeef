"""One lease: a row held by one worker until `lease_expires_at`, under a random token (the fence).

Used by cluster syncs (`inventory.sync`) and rollout engine runs (`rollouts.engine`). Only the holder's token
renews or releases it, so a run that outlived its lease (killed, stalled past the expiry) cannot free or extend
the lease a newer run took over. The model needs `lease_expires_at` (nullable DateTimeField) and `lease_token`
(CharField, 32), in columns of those names.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import connections, models
from django.db.models import Q
from django.utils import timezone

M = TypeVar("M", bound=models.Model)


def free(now: datetime | None = None) -> Q:
    """Rows nobody holds (never leased, released, or expired)."""
    now = now or timezone.now()
    return Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)


def acquire(model: type[models.Model], pk: int, duration: timedelta) -> str | None:
    """Take the lease of row `pk` when it is free; the token, or None when another run holds it."""
    now = timezone.now()
    token = uuid.uuid4().hex
    taken = model._default_manager.filter(free(now), pk=pk).update(lease_expires_at=now + duration, lease_token=token)
    return token if taken == 1 else None


def take(model: type[M], pk: int, duration: timedelta) -> tuple[str, M] | None:
    """`acquire`, and the row as it is once taken, in one statement (UPDATE ... RETURNING): (token, row), or None
    when another run holds it or there is no such row."""
    token, rows = take_many(model, [pk], duration)
    return (token, rows[pk]) if pk in rows else None


def take_many(model: type[M], pks: list[int], duration: timedelta) -> tuple[str, dict[int, M]]:
    """The leases of the free rows among `pks`, under one token, with the rows as they are once taken, in one
    statement (UPDATE ... RETURNING): (token, {pk: row}). A row another run holds, or that is gone, is not in it."""
    now = timezone.now()
    token = uuid.uuid4().hex
    if not pks:
        return token, {}
    meta = model._meta
    quote = connections[model._default_manager.db].ops.quote_name
    columns = ", ".join(quote(str(field.column)) for field in meta.concrete_fields)
    rows = model._default_manager.raw(
        f"UPDATE {quote(meta.db_table)} SET lease_expires_at = %s, lease_token = %s "  # noqa: S608 (the model's names)
        f"WHERE {quote(str(meta.pk.column))} = ANY(%s) AND (lease_expires_at IS NULL OR lease_expires_at < %s) "
        f"RETURNING {columns}", [now + duration, token, list(pks), now])
    return token, {row.pk: row for row in rows}


def renew(model: type[models.Model], pk: int, token: str, duration: timedelta) -> bool:
    """Extend the lease while `token` still holds it; False when it was taken over."""
    return model._default_manager.filter(pk=pk, lease_token=token).update(
        lease_expires_at=timezone.now() + duration) == 1


def release(model: type[models.Model], pk: int | list[int], token: str) -> None:
    """Give the lease of row `pk` (or of each row of a list) back, only where `token` still holds it."""
    pks = pk if isinstance(pk, list) else [pk]
    if pks:
        model._default_manager.filter(pk__in=pks, lease_token=token).update(lease_expires_at=None, lease_token="")
