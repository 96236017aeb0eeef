"""The Celery app: workers run `celery -A fleetweb worker`, the scheduler `celery -A fleetweb beat`."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings")

app = Celery("fleetweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@__import__("celery").signals.worker_init.connect
def _worker_runs_exec_plugins(**_kwargs) -> None:
    """Kubeconfig exec plugins run in workers only (inventory/execplugins.py), never in the web process."""
    from inventory import execplugins

    execplugins.allow_in_this_process()
