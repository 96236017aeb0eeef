"""Celery tasks of the inventory app: thin wrappers around services, safe to run twice."""

from celery import shared_task

from inventory import onboarding, sync

AFTER_CHANGE_RETRY = 2  # seconds before a sync asked for by a change tries again while another sync holds the cluster


@shared_task(soft_time_limit=270, time_limit=300, acks_late=True)
def sync_cluster(cluster_id: int, triggered_by: str = "schedule", attempt: int = 0) -> str:
    """Sync one cluster (skipped when another sync holds it; one asked for by a change runs after that one, since the
    running one may have read before the change)."""
    try:
        run = sync.sync_unless_held(cluster_id, triggered_by=triggered_by)
    except sync.Held:
        if triggered_by == sync.SYNC_AFTER_CHANGE and attempt < 150:
            sync_cluster.apply_async((cluster_id,), {"triggered_by": triggered_by, "attempt": attempt + 1},
                                     countdown=AFTER_CHANGE_RETRY)
        return "skipped"
    return run.outcome if run else "nothing"


@shared_task(soft_time_limit=270, time_limit=300, acks_late=True, ignore_result=True)
def sync_reported(cluster_ids: list[int] | None = None) -> int:
    """Write the changes registered clusters' agents reported in the last moment (`sync.gather_reported`)."""
    return sync.sync_reported(cluster_ids)


@shared_task(soft_time_limit=270, time_limit=300, acks_late=True, ignore_result=True)
def sync_clusters(cluster_ids: list[int], triggered_by: str = "schedule") -> int:
    """Sync a few clusters due (or attached) together, in one write (`sync.sync_many`)."""
    return sync.sync_many(cluster_ids, triggered_by=triggered_by)


@shared_task(soft_time_limit=270, time_limit=300, acks_late=True, ignore_result=True)
def sync_attached(cluster_ids: list[int] | None = None) -> int:
    """The first syncs of clusters attached together (`sync.sync_attached`)."""
    return sync.sync_attached(cluster_ids)


@shared_task(ignore_result=True)
def schedule_due_syncs() -> int:
    """Run by beat every few seconds: queue the syncs of every cluster whose time has come (`sync.queue_due_syncs`)."""
    return sync.queue_due_syncs()


@shared_task(ignore_result=True)
def mark_stale_clusters() -> int:
    return sync.mark_stale_clusters()


@shared_task(soft_time_limit=60, time_limit=90, acks_late=True, ignore_result=True)
def test_attach_connection(draft_id: str) -> str:
    """Test the connection of what an attach draft holds (its id only: the credentials stay encrypted in it)."""
    return onboarding.run_test(draft_id)
