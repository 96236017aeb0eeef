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


_in_beat = False


@__import__("celery").signals.beat_init.connect
def _beat_started(**_kwargs) -> None:
    """This process is `celery beat`: from now on each task it sends is a tick `/readyz` can see."""
    global _in_beat
    _in_beat = True
    from fleetweb import health

    health.record_beat_tick()


@__import__("celery").signals.before_task_publish.connect
def _beat_ticked(**_kwargs) -> None:
    if _in_beat:
        from fleetweb import health

        health.record_beat_tick()
