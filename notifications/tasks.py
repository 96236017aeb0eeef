"""Celery tasks of the notifications app: the alert evaluation beat runs and each delivery (its id only)."""

from celery import shared_task

from notifications import alerting


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def evaluate_alerts() -> int:
    """Run by beat every FLEETWEB_ALERT_INTERVAL seconds: open and close alerts, queue their messages."""
    return alerting.evaluate()


@shared_task(bind=True, acks_late=True, ignore_result=True, soft_time_limit=30, time_limit=45, max_retries=None)
def deliver(self, delivery_id: int) -> str:
    """Send one notification (its id only: the channel's URL and secrets never travel in a task message);
    retried with backoff until FLEETWEB_DELIVERY_ATTEMPTS attempts were made."""
    state, retry_in = alerting.attempt(delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)
    return state


# The names these tasks had in the inventory app: a message queued before an upgrade is handed on, not lost.
@shared_task(name="inventory.tasks.deliver", ignore_result=True)
def deliver_queued_before_the_move(delivery_id: int) -> str:
    deliver.delay(delivery_id)
    return "handed on"


@shared_task(name="inventory.tasks.evaluate_alerts", ignore_result=True)
def evaluate_alerts_queued_before_the_move() -> str:
    evaluate_alerts.delay()
    return "handed on"
