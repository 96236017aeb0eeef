"""Prometheus metrics at /metrics.

Two sources, one exposition:

- **Fleetweb's own processes** (request latency by view, Celery task runtime and outcome, sync lease contention,
  notification delivery failures): prometheus_client counters and histograms. Under gunicorn and Celery prefork
  each process writes them to files in PROMETHEUS_MULTIPROC_DIR and the scrape adds them up (prometheus_client's
  multiprocess mode); with the variable unset (one process: tests, `runserver`) they live in this process.
- **The fleet** (clusters, compliance, rollouts, queues, beat): computed from the database and Redis at scrape
  time by the collectors the apps register (`register`), each in one or two aggregate queries, so every web
  process answers the same and nothing is kept in memory between scrapes.

Label values are bounded: cluster, environment, region, provider and owner team come from attached clusters;
view names from the URL configuration; task names from the code. Never a user name, an id or a URL.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.http import HttpResponse, HttpResponseBase, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from foundation import health
from foundation.queueing import QUEUES

log = logging.getLogger(__name__)

if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # a process (beat, a one-off command) without the shared volume
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

REQUEST_LATENCY = Histogram(
    "fleetweb_http_request_duration_seconds", "Time to answer a request, by view name, method and status class",
    ["view", "method", "status"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
TASK_RUNTIME = Histogram(
    "fleetweb_task_duration_seconds", "Celery task runtime by task and outcome (success, failure, retry)",
    ["task", "outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
LEASE_CONTENTION = Counter(
    "fleetweb_sync_lease_contention_total", "Syncs skipped because another sync held the cluster's lease")
DELIVERY_FAILURES = Counter(
    "fleetweb_notification_delivery_failures_total",
    "Notifications and webhooks given up on after their last attempt, by channel kind", ["kind"])

# fn() -> Gauge families, called at each scrape (inventory, governance and rollouts register theirs).
COLLECTORS: list[Callable[[], Iterable[Gauge]]] = []


def register(fn: Callable[[], Iterable[Gauge]]) -> Callable[[], Iterable[Gauge]]:
    if fn not in COLLECTORS:
        COLLECTORS.append(fn)
    return fn


def labels(**values: str) -> str:
    """Label pairs as exposition text (`cluster="a",region="b"`), escaped once: a cluster's labels are written
    on a dozen series each scrape, so they are formatted once per cluster, not once per sample."""
    return ",".join(f'{key}="{_escape(str(value))}"' for key, value in values.items())


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Gauge:
    """One gauge family written straight as exposition text (the fleet has tens of thousands of samples per
    scrape; prometheus_client's per-sample objects would cost more than the database does)."""

    def __init__(self, name: str, documentation: str):
        self.name = name
        self.lines = [f"# HELP {name} {documentation}", f"# TYPE {name} gauge"]

    def add(self, label_text: str, value: float) -> None:
        self.lines.append(f"{self.name}{{{label_text}}} {float(value)!r}" if label_text
                          else f"{self.name} {float(value)!r}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def gauge(name: str, documentation: str) -> Gauge:
    return Gauge(name, documentation)


def fleet_text() -> str:
    """Every registered collector's gauges; one failing (a database hiccup) costs its gauges, not the scrape."""
    parts, took, failed = [], gauge("fleetweb_metrics_collector_seconds", "Time each collector took this scrape"), []
    for fn in COLLECTORS:
        started = time.monotonic()
        try:
            parts += [family.text() for family in fn()]
        except Exception:
            log.exception("metrics collector %s failed", getattr(fn, "__name__", fn))
            failed.append(fn.__name__)
            continue
        took.add(labels(collector=fn.__name__), time.monotonic() - started)
    up = gauge("fleetweb_metrics_collector_up", "0 when a collector failed in this scrape")
    for fn in COLLECTORS:
        up.add(labels(collector=fn.__name__), 0 if fn.__name__ in failed else 1)
    return "".join([*parts, took.text(), up.text()])


class _ThisProcess(Collector):
    """The default registry's metrics (this process only), for when multiprocess mode is off."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def multiprocess_dir() -> str:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def process_exposition() -> bytes:
    """Fleetweb's processes only: this one, or every process writing to PROMETHEUS_MULTIPROC_DIR."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    return generate_latest(registry)


def exposition() -> bytes:
    """Fleetweb's processes (through prometheus_client, multiprocess when configured), then the fleet."""
    return process_exposition() + fleet_text().encode()


def authorized(header: str) -> bool:
    """An Authorization header carrying FLEETWEB_METRICS_TOKEN as its bearer token (compared in constant time)."""
    token = settings.FLEETWEB_METRICS_TOKEN
    return bool(token) and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(),
                                                                               token.encode())


def serve_processes(port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 (a pod's own port)
    """A Celery worker's own /metrics (task runtimes and outcomes, lease contention, delivery failures of its pool),
    on a port of its own in a daemon thread, behind the same bearer token as web's /metrics. Where workers run in
    pods of their own (Kubernetes) web cannot read their PROMETHEUS_MULTIPROC_DIR, so Prometheus scrapes each pod.
    The fleet's series are web's alone: this serves nothing from the database."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?", 1)[0] != "/metrics":
                return self._send(404, b"Not found\n", "text/plain")
            if not authorized(self.headers.get("Authorization", "")):
                return self._send(401, b"A bearer token (FLEETWEB_METRICS_TOKEN) is required.\n", "text/plain",
                                  {"WWW-Authenticate": 'Bearer realm="fleetweb-metrics"'})
            try:
                body = process_exposition()
            except Exception:
                log.exception("worker metrics exposition failed")
                return self._send(500, b"Metrics failed; see the worker's log.\n", "text/plain")
            return self._send(200, body, CONTENT_TYPE_LATEST)

        def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Type": kind, "Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # a scrape a minute is not worth a log line
            return

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server


def mark_process_dead(pid: int) -> None:
    """Called when a gunicorn worker or Celery pool process exits: its live gauges go, its counters stay."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def view(request) -> HttpResponseBase:
    """GET /metrics: 404 while FLEETWEB_METRICS_TOKEN is unset; otherwise `Authorization: Bearer <token>`."""
    if not settings.FLEETWEB_METRICS_TOKEN:
        return JsonResponse({"detail": "Metrics are disabled: set FLEETWEB_METRICS_TOKEN to enable /metrics."},
                            status=404)
    if not authorized(request.headers.get("Authorization", "")):
        response = JsonResponse({"detail": "A bearer token (FLEETWEB_METRICS_TOKEN) is required."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="fleetweb-metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Times every request by the view that answered it ("unmatched" for a URL no view has)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        name = match.view_name if match is not None else "unmatched"  # the URL name, else the view's dotted path
        REQUEST_LATENCY.labels(view=name, method=request.method if request.method in _METHODS else "other",
                               status=f"{response.status_code // 100}xx").observe(time.perf_counter() - started)
        return response


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


# ---------------------------------------------------------------------------------------------
# Fleetweb itself: queue depth and beat, from Redis.


@register
def platform() -> Iterable[Gauge]:

    client = health.redis_client()
    depth = gauge("fleetweb_queue_depth", "Tasks waiting in each Celery queue")
    pipe = client.pipeline()
    for queue in QUEUES:
        pipe.llen(queue)
    for queue, length in zip(QUEUES, pipe.execute(), strict=True):
        depth.add(labels(queue=queue), length)
    yield depth
    tick = health.last_beat_tick(client)
    beat = gauge("fleetweb_beat_last_tick_timestamp_seconds", "When beat last sent a task (Unix time; 0: never)")
    beat.add("", tick or 0)
    yield beat
