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


@__import__("celery").signals.worker_ready.connect
def _worker_serves_its_metrics(**_kwargs) -> None:
    """With FLEETWEB_WORKER_METRICS_PORT set (the Helm chart sets it), the worker serves its pool's metrics there."""
    import logging

    from django.conf import settings

    port = settings.FLEETWEB_WORKER_METRICS_PORT
    if not port:
        return
    if not settings.FLEETWEB_METRICS_TOKEN:
        logging.getLogger(__name__).warning(
            "FLEETWEB_WORKER_METRICS_PORT is set but FLEETWEB_METRICS_TOKEN is not: the worker serves no metrics")
        return
    from foundation import metrics

    try:
        metrics.serve_processes(port)
    except OSError as exc:  # the port taken or not allowed: the worker still works, without its metrics port
        logging.getLogger(__name__).error("FLEETWEB_WORKER_METRICS_PORT %s: cannot listen (%s); no worker metrics",
                                          port, exc.strerror or exc)


_in_beat = False


@__import__("celery").signals.beat_init.connect
def _beat_started(**_kwargs) -> None:
    """This process is `celery beat`: from now on each task it sends is a tick `/readyz` can see."""
    global _in_beat
    _in_beat = True
    from foundation import health

    health.record_beat_tick()


@__import__("celery").signals.before_task_publish.connect
def _beat_ticked(**_kwargs) -> None:
    if _in_beat:
        from foundation import health

        health.record_beat_tick()


_task_started: dict[str, float] = {}


@__import__("celery").signals.task_prerun.connect
def _task_started_at(task_id=None, **_kwargs) -> None:
    import time

    if task_id:
        _task_started[task_id] = time.monotonic()


@__import__("celery").signals.task_postrun.connect
def _task_finished(task_id=None, task=None, state=None, **_kwargs) -> None:
    """Runtime and outcome of each task, for /metrics (fleetweb_task_duration_seconds)."""
    import time

    started = _task_started.pop(task_id, None) if task_id else None
    if started is None or task is None:
        return
    from foundation import metrics

    outcome = {"SUCCESS": "success", "RETRY": "retry"}.get(state or "", "failure")
    metrics.TASK_RUNTIME.labels(task=task.name, outcome=outcome).observe(time.monotonic() - started)


@__import__("celery").signals.worker_process_shutdown.connect
def _pool_process_exited(pid=None, **_kwargs) -> None:
    from foundation import metrics

    metrics.mark_process_dead(pid or os.getpid())
