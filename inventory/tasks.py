"""Celery tasks of the inventory app: thin wrappers around services, safe to run twice."""

from celery import shared_task

from inventory import onboarding, sync


@shared_task(soft_time_limit=270, time_limit=300, acks_late=True)
def sync_cluster(cluster_id: int, triggered_by: str = "schedule") -> str:
    """Sync one cluster (skipped when another sync holds it)."""
    run = sync.sync_cluster(cluster_id, triggered_by=triggered_by)
    return run.outcome if run else "skipped"


@shared_task(ignore_result=True)
def schedule_due_syncs() -> int:
    """Run by beat every few seconds: queue a sync for every cluster whose time has come."""
    due = sync.claim_due_clusters()
    for cluster_id in due:
        sync_cluster.delay(cluster_id)
    return len(due)


@shared_task(ignore_result=True)
def mark_stale_clusters() -> int:
    return sync.mark_stale_clusters()


@shared_task(soft_time_limit=60, time_limit=90, acks_late=True, ignore_result=True)
def test_attach_connection(draft_id: str) -> str:
    """Test the connection of what an attach draft holds (its id only: the credentials stay encrypted in it)."""
    return onboarding.run_test(draft_id)
