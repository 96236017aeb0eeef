"""Probes: `/healthz` says the process answers (no dependency: a database outage must not get every web process
restarted), `/readyz` says it can serve: the database answers and is migrated, Redis answers, and beat ticked
lately. Failures are named in the JSON body, with the kind of error only (never a URL, which may hold a
password, nor what the other side said).

Beat records its ticks itself: each time the beat process sends a scheduled task (every few seconds; the
shortest schedule entry is 3 s), it writes the time under `BEAT_KEY` in Redis (`fleetweb.celery`).
"""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings
from django.db import connection

log = logging.getLogger(__name__)

BEAT_KEY = "fleetweb:beat:last_tick"
BEAT_INTERVAL = 5  # seconds between beat's due-sync claims; beat is late after 3 of them
_migrated = False  # once seen migrated, a process stays so (its code does not change under it)
_last_tick_written = 0.0


def redis_client(*, timeout: float = 2.0) -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout)


def record_beat_tick(now: float | None = None) -> None:
    """Called in the beat process as it sends each task; at most one write a second, never an exception."""
    global _last_tick_written
    now = time.time() if now is None else now
    if now - _last_tick_written < 1:
        return
    try:
        redis_client().set(BEAT_KEY, f"{now:.3f}", ex=3600)
        _last_tick_written = now
    except Exception as exc:  # beat must keep sending whatever happens to this note
        log.warning("beat heartbeat not written: %s", type(exc).__name__)


def last_beat_tick(client: redis.Redis | None = None) -> float | None:
    """When beat last ticked (Unix time), or None."""
    raw = (client or redis_client()).get(BEAT_KEY)
    return float(raw) if raw is not None else None


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return {"ok": False, "detail": f"the database did not answer ({type(exc).__name__})"}
    return {"ok": True}


def _migrations() -> dict:
    global _migrated
    if _migrated:
        return {"ok": True}
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except Exception as exc:
        return {"ok": False, "detail": f"the migration state could not be read ({type(exc).__name__})"}
    if plan:
        first = plan[0][0]
        return {"ok": False, "detail": f"{len(plan)} migration(s) not applied, the first {first.app_label}."
                                       f"{first.name}: run manage.py migrate"}
    _migrated = True
    return {"ok": True}


def _redis_and_beat() -> tuple[dict, dict]:
    try:
        client = redis_client()
        client.ping()
        tick = last_beat_tick(client)
    except Exception as exc:
        failed = {"ok": False, "detail": f"Redis did not answer ({type(exc).__name__})"}
        return failed, {"ok": False, "detail": "unknown: Redis did not answer"}
    if tick is None:
        return {"ok": True}, {"ok": False, "detail": "beat has not ticked (is `celery -A fleetweb beat` running?)"}
    age = time.time() - tick
    late = 3 * BEAT_INTERVAL
    if age > late:
        return {"ok": True}, {"ok": False, "detail": f"beat last ticked {age:.0f} s ago (more than {late} s)"}
    return {"ok": True}, {"ok": True, "seconds_since_tick": round(age, 1)}


def readiness() -> tuple[bool, dict]:
    """(ready, {check: {ok, detail}}) for `/readyz`."""
    checks = {"database": _database()}
    checks["migrations"] = _migrations() if checks["database"]["ok"] else {
        "ok": False, "detail": "unknown: the database did not answer"}
    checks["redis"], checks["beat"] = _redis_and_beat()
    return all(c["ok"] for c in checks.values()), checks
