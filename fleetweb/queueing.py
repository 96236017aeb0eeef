"""Queueing Celery work after a commit without letting a broker outage fail the request that committed.

Everything Fleetweb queues is also found again by beat from the database (due clusters, due rollouts,
clusters awaiting evaluation), so a message that could not be sent is logged and left to beat: the
change itself is already stored, and answering 500 would make the user retry something that worked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

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
