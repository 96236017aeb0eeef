"""Celery tasks of governance: thin wrappers around services, safe to run twice."""

from celery import shared_task

from governance import compliance, evaluation, services, upgrades
from inventory.models import Cluster


@shared_task(soft_time_limit=600, time_limit=660, acks_late=True, ignore_result=True)
def evaluate_clusters(cluster_ids: list[int]) -> int:
    """Evaluate (and enforce on) a chunk of clusters after a group, assignment or cluster change."""
    clusters = list(Cluster.objects.filter(pk__in=cluster_ids))
    evaluation.evaluate_and_enforce_many(clusters)
    return len(clusters)


@shared_task(soft_time_limit=600, time_limit=660, acks_late=True, ignore_result=True)
def evaluate_gathered(cluster_ids: list[int] | None = None) -> int:
    """Evaluate the clusters synced in the last few seconds (`services.reevaluate_after_sync`)."""
    return services.evaluate_gathered(cluster_ids)


@shared_task(ignore_result=True, soft_time_limit=300, time_limit=330)
def refresh_upgrade_plan() -> int:
    """Run by beat hourly: every cluster's stored upgrade readiness again (support ends with the date)."""
    return upgrades.refresh_all()


@shared_task(ignore_result=True)
def record_group_history() -> int:
    """Run by beat: one compliance trend point per group and for the fleet."""
    return compliance.record_group_history()
