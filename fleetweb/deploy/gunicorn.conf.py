"""gunicorn settings for compose and production: `gunicorn -c fleetweb/deploy/gunicorn.conf.py fleetweb.wsgi`.

With PROMETHEUS_MULTIPROC_DIR set, each worker writes its metrics there and /metrics adds them up; a worker that
exits is marked dead so its live gauges go (its counters stay in the totals).
"""

import os

bind = os.environ.get("FLEETWEB_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("FLEETWEB_WEB_WORKERS", "4"))
accesslog = "-"


def on_starting(server) -> None:
    """Metrics of an earlier run of this host's processes would otherwise be added to this one's."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder and os.path.isdir(folder):
        for name in os.listdir(folder):
            if name.startswith(("histogram_", "counter_", "gauge_", "summary_")) and name.endswith(".db"):
                os.unlink(os.path.join(folder, name))


def child_exit(server, worker) -> None:
    from foundation import metrics

    metrics.mark_process_dead(worker.pid)
