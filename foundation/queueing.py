"""Queueing Celery work after a commit without letting a broker outage fail the request that committed.

Domain code queues a task by its name (`enqueue`, `enqueue_after_commit`): it never imports a `tasks` module, which
imports the domain back (the circle services -> tasks -> services).

Everything Fleetweb queues is also found again by beat from the database (due clusters, due rollouts,
clusters awaiting evaluation), so a message that could not be sent is logged and left to beat: the
change itself is already stored, and answering 500 would make the user retry something that worked.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from celery import Task, current_app
from django.db import transaction

log = logging.getLogger(__name__)

# Every queue a worker must consume (CELERY_TASK_ROUTES sends tasks to these; `make run`, compose and the
# tests start workers on all of them).
QUEUES = ("sync", "default", "rollouts", "notify")


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


def purge_queues() -> None:
    """Drop every message waiting in Fleetweb's queues (tests and benchmarks between runs: a task left queued by the
    previous one must not run in the next)."""
    with current_app.connection_for_write() as conn:
        for name in QUEUES:
            try:
                conn.default_channel.queue_purge(name)
            except Exception:  # a queue that never existed has nothing to purge
                pass
