"""One lease: a row held by one worker until `lease_expires_at`, under a random token (the fence).

Used by cluster syncs (`inventory.sync`) and rollout engine runs (`rollouts.engine`). Only the holder's token
renews or releases it, so a run that outlived its lease (killed, stalled past the expiry) cannot free or extend
the lease a newer run took over. The model needs `lease_expires_at` (nullable DateTimeField) and `lease_token`
(CharField, 32), in columns of those names.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar

from django.db import connections, models
from django.db.models import Q
from django.utils import timezone

M = TypeVar("M", bound=models.Model)
log = logging.getLogger(__name__)


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


class _Keeper:
    """One thread per process that renews the leases its runs hold (`kept`), every third of their duration.

    A lease can then be short: when the process dies (a killed worker, a drained node), its leases expire within
    one duration and another worker takes the rows, instead of the rows waiting out a lease sized for the longest
    run. A run that never ends (a hung call in a thread pool, where Celery's time limits do not reach) stops being
    renewed at its `longest`, so it cannot hold its rows for ever either."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: dict[str, tuple[type[models.Model], list[int], timedelta, float]] = {}
        self.thread: threading.Thread | None = None

    def add(self, model: type[models.Model], pks: list[int], token: str, duration: timedelta,
            longest: timedelta) -> None:
        with self.lock:
            self.held[token] = (model, list(pks), duration, time.monotonic() + longest.total_seconds())
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self.thread.start()

    def drop(self, token: str) -> None:
        with self.lock:
            self.held.pop(token, None)

    def _run(self) -> None:
        while True:
            with self.lock:
                if not self.held:
                    self.thread = None
                    return
                period = min(d.total_seconds() for _m, _p, d, _l in self.held.values()) / 3
            time.sleep(period)
            with self.lock:
                now = time.monotonic()
                due = [(t, m, p, d) for t, (m, p, d, longest) in self.held.items() if now < longest]
                for token in [t for t, (_m, _p, _d, longest) in self.held.items() if now >= longest]:
                    self.held.pop(token)  # its run outlived every limit: let the lease expire
            try:
                for token, model, pks, duration in due:
                    model._default_manager.filter(pk__in=pks, lease_token=token).update(
                        lease_expires_at=timezone.now() + duration)
            except Exception:  # the database away: the leases expire, as when the process dies
                log.exception("renewing %d leases failed", len(due))
            finally:
                connections.close_all()  # this thread's own connections; it sleeps far longer than it works


_keeper = _Keeper()


@contextmanager
def kept(model: type[models.Model], pks: int | list[int], token: str, duration: timedelta, *,
         longest: timedelta) -> Iterator[None]:
    """Renew the lease `token` holds on `pks` every third of `duration` while the block runs, for at most
    `longest`; the caller still releases it (or a commit gives it back)."""
    _keeper.add(model, pks if isinstance(pks, list) else [pks], token, duration, longest)
    try:
        yield
    finally:
        _keeper.drop(token)
