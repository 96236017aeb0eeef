"""Celery tasks of registered clusters: thin wrappers around agents.services."""

from celery import shared_task

from agents import services


@shared_task(ignore_result=True)
def mark_silent_agents() -> int:
    """Run by beat: clusters whose agent missed two heartbeats become unreachable ("agent not connected since …")."""
    return services.silent_agents()
