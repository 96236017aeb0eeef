"""Celery tasks of rollouts: thin wrappers around the engine and services, safe to run twice."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from foundation import metrics
from foundation.queueing import send_safely
from notifications import channels
from rollouts import corrections, dryrun, engine, sourcing
from rollouts.models import Rollout, Source
from rollouts.services import queue_source_check

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
    """The receiver could not take the event now (retried with backoff)."""


def sign(body: bytes) -> str:
    return channels.sign(settings.FLEETWEB_WEBHOOK_SECRET, body)


@shared_task(bind=True, autoretry_for=(WebhookRefused,), retry_backoff=2, retry_backoff_max=600,
             retry_jitter=True, max_retries=8, ignore_result=True)
def send_webhook(self, payload: dict) -> str:
    """POST the event to FLEETWEB_WEBHOOK_URL as JSON, signed with HMAC-SHA256 of the body (X-Fleetweb-Signature),
    retried with backoff; the same sender as the notification channels' webhooks."""
    try:
        return channels.post_json(settings.FLEETWEB_WEBHOOK_URL, payload, secret=settings.FLEETWEB_WEBHOOK_SECRET,
                                  what="webhook URL (FLEETWEB_WEBHOOK_URL)",
                                  headers={"X-Fleetweb-Event": payload["event"],
                                           "X-Fleetweb-Delivery": payload.get("delivery", "")})
    except channels.DeliveryError as exc:
        if exc.retry and self.request.retries < self.max_retries:
            raise WebhookRefused(str(exc)) from None
        log.error("webhook %s not sent: %s", payload["event"], exc)  # retrying cannot help, or no more tries
        metrics.DELIVERY_FAILURES.labels(kind="webhook").inc()
        return ""


@shared_task(ignore_result=True)
def schedule_drift_checks() -> int:
    """Run by beat: queue a drift check for every deployment due one, and re-queue re-applies a lost message left
    waiting (applying the same objects twice is harmless)."""
    def send(task, pk: int):
        return lambda: task.delay(pk)

    due = corrections.claim_due()
    for pk in due:
        send_safely(send(check_drift, pk), what=f"drift check of deployment {pk}")
    for pk in corrections.stuck_reapplies():
        send_safely(send(reapply, pk), what=f"re-apply of deployment {pk}")
    return len(due)


@shared_task(soft_time_limit=120, time_limit=150, acks_late=True, ignore_result=True)
def check_drift(deployed_id: int) -> str:
    """Check one deployment for drift (read-only: one LIST per kind and one dry run per object)."""
    result = corrections.check(deployed_id)
    return result.state if result is not None else "skipped"


@shared_task(soft_time_limit=120, time_limit=150, acks_late=True, ignore_result=True)
def reapply(deployed_id: int) -> str:
    """Apply a deployment's objects again, as deployed, then check it (queued by corrections.request_reapply)."""
    result = corrections.reapply(deployed_id)
    return result.state if result is not None else "skipped"


@shared_task(soft_time_limit=120, time_limit=150, acks_late=True, ignore_result=True)
def dry_run_revision(revision_id: int) -> str:
    """Check a revision just saved: the members' dry run and Fleetweb's policies (queued by `dryrun.request`)."""
    return dryrun.run(revision_id)


@shared_task(ignore_result=True)
def requeue_dry_runs() -> int:
    """Run by beat: queue again the check of a revision whose message was lost (still "checking" well past the
    budget); checking twice is harmless, the first verdict stored wins."""
    def send(pk: int):
        return lambda: dry_run_revision.delay(pk)

    stale = dryrun.stale(settings.FLEETWEB_DRY_RUN_BUDGET * 3 + 30)
    for pk in stale:
        send_safely(send(pk), what=f"dry run of revision {pk}")
    return len(stale)


@shared_task(ignore_result=True)
def check_due_sources() -> int:
    """Run by beat: queue a check of every application source whose interval passed (ids only: a source's
    credential stays encrypted in the database until the check reads it)."""
    due = sourcing.claim_due()
    for pk in due:
        queue_source_check(pk)
    sourcing.forget_old_tests()
    return len(due)


@shared_task(soft_time_limit=240, time_limit=270, acks_late=True, ignore_result=True)
def check_source(source_id: int) -> int | None:
    """Check one source for a new commit or chart version (the revision's number when one was made)."""
    source = Source.objects.select_related("application", "credential").filter(pk=source_id).first()
    if source is None:
        return None  # the application went
    revision = sourcing.check(source)
    return revision.number if revision is not None else None


@shared_task(soft_time_limit=240, time_limit=270, acks_late=True, ignore_result=True)
def test_source(test_id: str) -> str:
    """Fetch and render a source as a person's "Test source" gave it, saving nothing but what was found."""
    return sourcing.run_test(test_id)
