"""Celery tasks of rollouts: thin wrappers around the engine and services, safe to run twice."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

from celery import shared_task
from django.conf import settings

from fleetweb import outbound
from fleetweb.queueing import send_safely
from rollouts import engine
from rollouts.models import Rollout

log = logging.getLogger(__name__)


@shared_task(soft_time_limit=240, time_limit=270, acks_late=True, ignore_result=True)
def advance_rollout(rollout_id: int) -> str:
    """Advance one rollout as far as it goes now (a no-op when another run holds its lease)."""
    return engine.advance(rollout_id)


@shared_task(ignore_result=True)
def advance_due_rollouts() -> int:
    """Run by beat every few seconds: queue every active rollout whose next step is due and that is not queued
    already; one the broker refuses is left unmarked, for the next tick."""
    due = engine.due_rollouts()
    def sender(pk: int):
        return lambda: advance_rollout.delay(pk)

    def unmark(pk: int):
        return lambda: Rollout.objects.filter(pk=pk).update(queued_at=None)

    for pk in due:
        send_safely(sender(pk), what=f"rollout #{pk}", on_failure=unmark(pk))
    return len(due)


class WebhookRefused(Exception):
    """The receiver answered with a non-2xx status (retried with backoff)."""


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(settings.FLEETWEB_WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


@shared_task(bind=True, autoretry_for=(WebhookRefused, OSError), retry_backoff=2, retry_backoff_max=600,
             retry_jitter=True, max_retries=8, ignore_result=True)
def send_webhook(self, payload: dict) -> int:
    """POST the event as JSON, signed with HMAC-SHA256 of the body (X-Fleetweb-Signature), retried with backoff."""
    import urllib3

    body = json.dumps(payload, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Fleetweb", "X-Fleetweb-Event": payload["event"],
               "X-Fleetweb-Delivery": payload.get("delivery", "")}
    if settings.FLEETWEB_WEBHOOK_SECRET:
        headers["X-Fleetweb-Signature"] = sign(body)
    try:
        url, pool = outbound.pool_manager(settings.FLEETWEB_WEBHOOK_URL, schemes=("https", "http"),
                                          what="webhook URL (FLEETWEB_WEBHOOK_URL)")
        with pool:
            response = pool.request("POST", url, body=body, headers=headers,
                                    timeout=urllib3.Timeout(connect=5, read=10), retries=False, redirect=False)
    except outbound.OutboundRefused as exc:
        if exc.kind == "dns":
            raise OSError(str(exc)) from None  # may resolve later: retried
        log.error("webhook %s not sent: %s", payload["event"], exc)  # refused by policy: retrying cannot help
        return 0
    except urllib3.exceptions.HTTPError as exc:
        raise OSError(type(exc).__name__) from exc
    if not 200 <= response.status < 300:
        raise WebhookRefused(f"webhook answered {response.status}")
    return response.status
