"""/metrics: off without a token, bearer-protected, the Prometheus text format with the fleet computed from the
database at scrape time (a constant number of queries), Fleetweb's own request and task metrics, and
prometheus_client's multiprocess mode across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from foundation import metrics
from governance.models import ClusterCompliance
from inventory.choices import ClusterStatus
from tests.builders import make_cluster
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-for-tests"
ROOT = Path(__file__).resolve().parents[2]


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: dict = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict, name: str, **labels) -> float:
    found = [v for lbl, v in samples.get(name, []) if all(lbl.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_metrics_are_off_without_a_token_and_need_it(client, settings):
    settings.FLEETWEB_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.FLEETWEB_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")


def test_fleet_gauges_per_cluster(client, settings):
    settings.FLEETWEB_METRICS_TOKEN = TOKEN
    up = make_cluster("pay-prod", environment="prod", region="eu-west-1", nodes=3, owner="payments")
    make_cluster("down", status=ClusterStatus.UNREACHABLE)
    ClusterCompliance.objects.create(cluster=up, evaluated_at=timezone.now(), score=87.5)
    samples = scrape(client)
    assert value(samples, "fleetweb_cluster_up", cluster="pay-prod", environment="prod", region="eu-west-1",
                 owner_team="payments") == 1
    assert value(samples, "fleetweb_cluster_up", cluster="down") == 0
    assert value(samples, "fleetweb_cluster_status", cluster="down", status="unreachable") == 1
    assert value(samples, "fleetweb_cluster_status", cluster="down", status="connected") == 0
    assert value(samples, "fleetweb_cluster_nodes", cluster="pay-prod") == 3
    assert value(samples, "fleetweb_cluster_compliance_score", cluster="pay-prod") == 87.5
    assert 0 <= value(samples, "fleetweb_cluster_last_sync_age_seconds", cluster="pay-prod") < 60
    assert value(samples, "fleetweb_violations_open", severity="critical") == 0
    assert value(samples, "fleetweb_rollouts", state="running") == 0
    assert value(samples, "fleetweb_stages_awaiting_approval") == 0
    assert value(samples, "fleetweb_queue_depth", queue="sync") >= 0
    assert "fleetweb_beat_last_tick_timestamp_seconds" in samples
    for collector in ("clusters", "compliance", "rollouts", "platform"):
        assert value(samples, "fleetweb_metrics_collector_seconds", collector=collector) >= 0


def test_request_latency_is_labelled_by_view_and_status_class(client, settings, viewer):
    settings.FLEETWEB_METRICS_TOKEN = TOKEN
    client.force_login(viewer)
    client.get("/clusters/")
    client.get("/no-such-page/")
    samples = scrape(client)
    assert value(samples, "fleetweb_http_request_duration_seconds_count", view="inventory:cluster_list",
                 method="GET", status="2xx") >= 1
    assert value(samples, "fleetweb_http_request_duration_seconds_count", view="unmatched", method="GET",
                 status="4xx") >= 1
    views = {labels["view"] for labels, _ in samples["fleetweb_http_request_duration_seconds_count"]}
    assert not any("/" in v for v in views - {"unmatched"}), "view names, never paths"


def test_fleet_collectors_cost_the_same_queries_for_2_or_40_clusters():
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            for fn in metrics.COLLECTORS:
                list(fn())
        return len(captured)

    for i in range(2):
        make_cluster(f"a{i}")
    few = queries()
    for i in range(38):
        make_cluster(f"b{i}")
    assert queries() == few <= 7


def test_task_runtime_is_recorded_by_outcome(settings, celery_worker):
    from inventory.tasks import mark_stale_clusters

    before = metrics.TASK_RUNTIME.labels(task="inventory.tasks.mark_stale_clusters", outcome="success")._sum.get()
    mark_stale_clusters.delay()  # through the broker to the real worker
    wait_for(lambda: metrics.TASK_RUNTIME.labels(task="inventory.tasks.mark_stale_clusters",
                                                 outcome="success")._sum.get() > before, timeout=20,
             what="the task's runtime observed")


def test_multiprocess_mode_adds_up_every_process(tmp_path):
    """Two processes count lease contention into PROMETHEUS_MULTIPROC_DIR; a third one's exposition sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "fleetweb.settings"}
    count = "from foundation import metrics; [metrics.LEASE_CONTENTION.inc() for _ in range({n})]"
    for n in (3, 4):
        subprocess.run([sys.executable, "-c", count.format(n=n)], env=env, cwd=ROOT, check=True, timeout=60)
    show = ("import django; django.setup(); from foundation import metrics; metrics.COLLECTORS.clear(); "
            "print(metrics.exposition().decode())")
    out = subprocess.run([sys.executable, "-c", show], env=env, cwd=ROOT, check=True, timeout=60,
                         capture_output=True, text=True).stdout
    assert "fleetweb_sync_lease_contention_total 7.0" in out


def _worker_scrape(port: int, token: str | None) -> tuple[int, str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_a_worker_in_a_pod_of_its_own_serves_its_pools_metrics_behind_the_token(tmp_path):
    """As the Helm chart runs it (FLEETWEB_WORKER_METRICS_PORT, its own PROMETHEUS_MULTIPROC_DIR): a real worker
    process runs a task sent through the broker, and its port shows that task's runtime to the bearer token only,
    and nothing of the fleet (web's series, read from the database)."""
    import signal
    import socket

    from foundation.queueing import purge_queues
    from inventory.tasks import mark_stale_clusters
    from tests.conftest import child_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_cluster("counted")
    env = {**child_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "FLEETWEB_METRICS_TOKEN": TOKEN,
           "FLEETWEB_WORKER_METRICS_PORT": str(port)}
    purge_queues()
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-Q", "default,sync",
                               "-P", "threads", "-c", "2", "-n", "metrics@%h", "-l", "WARNING"],
                              env=env, cwd=ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "wb"))  # noqa: SIM115
    try:
        def up() -> bool:
            try:
                return _worker_scrape(port, None)[0] == 401
            except OSError:
                return False
        wait_for(up, timeout=60, interval=0.5, what="the worker's metrics port")
        assert _worker_scrape(port, "wrong-token")[0] == 401
        mark_stale_clusters.delay()

        def seen() -> str:
            status, text = _worker_scrape(port, TOKEN)
            assert status == 200
            return text if 'task="inventory.tasks.mark_stale_clusters"' in text else ""
        text = wait_for(seen, timeout=30, what="the task's runtime on the worker's port")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        runs = [s for s in families["fleetweb_task_duration_seconds"].samples
                if s.name.endswith("_count") and s.labels["task"] == "inventory.tasks.mark_stale_clusters"]
        assert [(s.labels["outcome"], s.value) for s in runs] == [("success", 1.0)]
        assert "fleetweb_cluster_up" not in text and "counted" not in text, "the fleet's series are web's alone"
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        purge_queues()
