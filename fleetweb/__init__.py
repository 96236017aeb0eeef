"""Fleetweb: a self-hosted console for platform teams that run many Kubernetes clusters."""

from .celery import app as celery_app

__all__ = ["celery_app"]
