"""One beat at a time: `celery beat` with this scheduler (CELERY_BEAT_SCHEDULER) sends the schedule only while it
holds the leader lock in Redis, so two beat processes (a rolling update, a drain, a second replica) never send the
same tick twice: one leads, the others stand by and take over when it stops renewing.

- The lock is a Redis key holding the leader's random token, set with NX and an expiry of FLEETWEB_BEAT_LOCK_SECONDS;
  the leader renews it on every tick (at least every CELERY_BEAT_MAX_LOOP_INTERVAL seconds) and gives it back when it
  stops; a standby tries every STANDBY_SECONDS. Renewing and taking are one Lua script each: no two holders.
- Before each send the leader checks that it still holds the lock (a leader paused past the expiry, by a stop-the-world
  pause or a frozen VM, sends nothing once it wakes).
- When each entry was last sent is shared in Redis; a new leader starts from there, not from its own file, so a
  takeover neither repeats a tick the old leader sent nor waits a whole interval for the hourly jobs.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from datetime import UTC, datetime

import redis
from celery.beat import PersistentScheduler
from celery.utils.time import maybe_make_aware
from django.conf import settings

from foundation import health

log = logging.getLogger(__name__)

LOCK = "fleetweb:beat:leader"
LAST_SENT = "fleetweb:beat:last-sent"  # hash: entry name -> epoch seconds it was last sent
STANDBY_SECONDS = 1.0

# 1 renewed, 2 taken (it was free), 0 held by another.
_LEAD = """
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not held then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SingleBeat(PersistentScheduler):
    """A PersistentScheduler that sends only while it leads (module docstring)."""

    def __init__(self, *args, **kwargs):
        self.token = f"{os.getpid()}:{secrets.token_hex(8)}"
        self.leading = False
        self._redis = health.redis_client(timeout=5)
        self._lead_script = self._redis.register_script(_LEAD)
        self._release_script = self._redis.register_script(_RELEASE)
        super().__init__(*args, **kwargs)

    def _ttl_ms(self) -> int:
        return int(settings.FLEETWEB_BEAT_LOCK_SECONDS * 1000)

    def lead(self) -> bool:
        """Renew the lock, or take it when it is free; whether this process leads now."""
        try:
            state = int(self._lead_script(keys=[LOCK], args=[self.token, self._ttl_ms()]))
        except redis.RedisError as exc:  # Redis away: nothing could be sent anyway; stand by until it is back
            if self.leading:
                log.warning("beat: cannot renew the leader lock (%s); standing by", type(exc).__name__)
            self.leading = False
            return False
        if state == 2:
            log.info("beat: leading (token %s)", self.token)
            self._adopt_shared_times()
        elif state == 0 and self.leading:
            log.warning("beat: another beat took the leader lock; standing by")
        self.leading = state > 0
        return self.leading

    def _adopt_shared_times(self) -> None:
        """Start from when the last leader sent each entry (never earlier than this process's own record)."""
        try:
            shared = {k.decode(): float(v) for k, v in self._redis.hgetall(LAST_SENT).items()}  # type: ignore[union-attr]
        except (redis.RedisError, ValueError):
            shared = {}
        for name, entry in self.schedule.items():
            if name in shared:
                sent = datetime.fromtimestamp(shared[name], tz=UTC)
                mine = maybe_make_aware(entry.last_run_at) if entry.last_run_at else None
                if mine is None or sent > mine:
                    entry.last_run_at = sent
        self._heap = None  # rebuilt from the adopted times at the next tick

    def tick(self, *args, **kwargs) -> float:
        if not self.lead():
            return min(STANDBY_SECONDS, self.max_interval)
        return super().tick(*args, **kwargs)

    def apply_entry(self, entry, producer=None) -> None:
        if not self.lead():  # paused past the expiry since the tick began: the new leader sends it
            log.warning("beat: not sending %s: no longer the leader", entry.name)
            return
        try:
            self._redis.hset(LAST_SENT, entry.name, f"{time.time():.3f}")
        except redis.RedisError:
            pass  # the send below fails alike and says so
        super().apply_entry(entry, producer=producer)

    def close(self) -> None:
        try:
            if self.leading:
                self._release_script(keys=[LOCK], args=[self.token])
                log.info("beat: gave the leader lock back")
        except redis.RedisError:
            pass  # it expires
        finally:
            self.leading = False
            super().close()
