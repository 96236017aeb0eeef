"""Queueing Celery work after a commit without letting a broker outage fail the request that committed.

Domain code queues a task by its name (`enqueue`, `enqueue_after_commit`): it never imports a `tasks` module, which
imports the domain back (the circle services -> tasks -> services).

Everything Fleetweb queues is also found again later (beat claims due clusters and due rollouts from the database;
a cluster's evaluation is queued again after its next sync), so a message that could not be sent is logged and left
to that: the change itself is already stored, and answering 500 would make the user retry something that worked.

Small requests for the same work can be gathered (`gather`): their ids wait in Redis a few seconds and one task
takes them all.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable

import redis
from celery import Task, current_app
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

# Every queue a worker must consume (CELERY_TASK_ROUTES sends tasks to these; `make run`, compose and the
# tests start workers on all of them).
QUEUES = ("sync", "reports", "default", "rollouts", "notify")


def send_safely(send: Callable[[], object], *, what: str, on_failure: Callable[[], object] | None = None) -> bool:
    """Run `send` (a `.delay(...)` call); on failure log which message was lost and run `on_failure`.

    The exception's text is not logged: a broker error can carry its URL, password included.
    """
    try:
        send()
    except Exception as exc:  # kombu/redis raise many types; any of them means "not queued"
        log.warning("could not queue %s (%s); beat will pick it up", what, type(exc).__name__)
        if on_failure is not None:
            try:
                on_failure()
            except Exception:
                log.exception("recovering from the lost message for %s failed", what)
        return False
    return True


def after_commit(send: Callable[[], object], *, what: str, on_failure: Callable[[], object] | None = None) -> None:
    """`send_safely` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send_safely(send, what=what, on_failure=on_failure))


def task(name: str) -> Task:
    """The registered task called `name` ("rollouts.tasks.advance_rollout"), its module imported when no one has yet
    (Celery imports tasks modules in workers only); a name no task has raises at once (a bug, not a lost message)."""
    if name not in current_app.tasks:
        importlib.import_module(name.rsplit(".", 1)[0])
    return current_app.tasks[name]


def enqueue(name: str, *args, what: str, on_failure: Callable[[], object] | None = None, **kwargs) -> bool:
    """Queue task `name` now (`send_safely`); False when the broker refused it."""
    found = task(name)
    return send_safely(lambda: found.delay(*args, **kwargs), what=what, on_failure=on_failure)


def enqueue_after_commit(name: str, *args, what: str, on_failure: Callable[[], object] | None = None,
                         **kwargs) -> None:
    """Queue task `name` once the current transaction commits (`after_commit`)."""
    found = task(name)
    after_commit(lambda: found.delay(*args, **kwargs), what=what, on_failure=on_failure)


# ---------------------------------------------------------------------------------------------
# Gathered work: many small requests for one task, taken together a few seconds later

GATHER_PREFIX = "fleetweb:gather:"
_clients: dict[int, redis.Redis] = {}


def _redis() -> redis.Redis:
    """This process's client (a forked worker makes its own: a connection is not shared across a fork)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients[pid] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    return _clients[pid]


def _gathered(name: str) -> tuple[str, str]:
    return f"{GATHER_PREFIX}{name}:ids", f"{GATHER_PREFIX}{name}:queued"


def gather(name: str, ids: Iterable[int], *, within: float, what: str) -> None:
    """Have task `name` (called without arguments) take `ids`, with whatever else was gathered meanwhile, within
    `within` seconds: the ids join a set in Redis, and the task is queued with that countdown only when none is queued
    already. A stream of small changes (two thousand agents reporting once a minute each) is then one task every few
    seconds over many ids, not one task each. The task takes them with `take_gathered`. Redis away: the task is not
    gathered but queued with these ids (`name` accepts them as its one argument)."""
    ids = sorted(set(ids))
    if not ids:
        return
    members, queued = _gathered(name)
    try:
        with _redis().pipeline(transaction=False) as pipe:
            pipe.sadd(members, *ids)
            pipe.set(queued, "1", nx=True, px=max(1, int(within * 1000)))
            _added, first = pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not gather %s (%s); queueing it with its ids", what, type(exc).__name__)
        enqueue(name, ids, what=what)
        return
    if first:  # no task is waiting to take them: this one will, after the others had their time to join
        found = task(name)
        send_safely(lambda: found.apply_async(countdown=within), what=what,
                    on_failure=lambda: _redis().delete(queued))  # the next gather queues it again


def gather_after_commit(name: str, ids: Iterable[int], *, within: float, what: str) -> None:
    """`gather` once the current transaction commits (at once outside a transaction)."""
    ids = list(ids)
    transaction.on_commit(lambda: gather(name, ids, within=within, what=what))


def take_gathered(name: str, *, limit: int = 100_000) -> list[int]:
    """Up to `limit` of the ids gathered for task `name` (taken: a later task gets only what came after)."""
    members, _queued = _gathered(name)
    return sorted(int(raw) for raw in _redis().spop(members, limit) or [])


ONCE_PREFIX = "fleetweb:once:"


def once(key: str, *, seconds: float) -> bool:
    """True the first time `key` is asked for within `seconds` (Redis SET NX), False after: a burst of triggers
    (pushes announced by a webhook) becomes one task. Redis away: True (a task too many, never one too few)."""
    try:
        return bool(_redis().set(f"{ONCE_PREFIX}{key}", "1", nx=True, px=max(1, int(seconds * 1000))))
    except redis.RedisError:
        return True


def purge_queues() -> None:
    """Drop every message waiting in Fleetweb's queues and everything gathered for a task (tests and benchmarks
    between runs: a task left queued by the previous one must not run in the next)."""
    client = _redis()
    for prefix in (GATHER_PREFIX, ONCE_PREFIX):
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    with current_app.connection_for_write() as conn:
        for name in QUEUES:
            try:
                conn.default_channel.queue_purge(name)
            except Exception:  # a queue that never existed has nothing to purge
                pass
