"""Scaled out on one machine, as the chart runs it: two web processes behind one address (gunicorn with
SO_REUSEPORT, the kernel spreading connections as a Service does), two worker processes and beat, sharing the
embedded PostgreSQL and Redis, serve the console and keep 200 clusters fresh (real members attached under many
names). Killing one web process and one worker (SIGKILL, mid-sync) loses nothing: every request after the kill is
answered by the survivor, and every cluster, those the killed worker was syncing included, is synced again within
one interval and one sync lease, never left to go stale."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from foundation.queueing import QUEUES, purge_queues
from inventory import services, sync
from inventory.choices import ClusterStatus
from inventory.models import Cluster
from tests.conftest import child_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLUSTERS = 200
INTERVAL = 60  # the default sync interval


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Children in their own process groups, so a kill takes a gunicorn master with its workers."""

    def __init__(self, logs: Path, env: dict):
        self.logs, self.env, self.started = logs, env, []

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen:
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=Path(settings.BASE_DIR), start_new_session=True)
        self.started.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def processes(tmp_path, beat_process):
    procs = Processes(tmp_path, {**child_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    yield procs
    procs.stop()
    purge_queues()


def _get(port: int, path: str, cookie: str) -> tuple[int, bytes]:
    """One request on a new connection (a new connection is what the kernel spreads over the two processes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie}",
                                           "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_two_web_processes_and_two_workers_serve_and_keep_200_clusters_fresh_and_lose_nothing_when_one_of_each_dies(
        localfleet_members, processes, admin_user):
    members = [m for _name, m in sorted(localfleet_members.items())]
    for i in range(CLUSTERS):
        services.attach_cluster(name=f"scale-{i:03d}", credentials=members[i % len(members)].token_credentials(),
                                user=None, sync_interval=INTERVAL)
    client = Client()
    client.force_login(admin_user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value

    port = _free_port()
    python = sys.executable
    webs = [processes.start(f"web{i}", [python, "-m", "gunicorn", "fleetweb.wsgi", "-b", f"127.0.0.1:{port}",
                                        "--reuse-port", "-w", "2", "--threads", "2", "--log-level", "warning"])
            for i in range(2)]
    workers = [processes.start(f"worker{i}", [python, "-m", "celery", "-A", "fleetweb", "worker", "-Q",
                                              ",".join(QUEUES), "-P", "threads", "-c", "8", "-n", f"scale{i}@%h",
                                              "-l", "WARNING"]) for i in range(2)]

    def answered() -> bool:
        try:
            return _get(port, "/healthz", cookie)[0] == 200
        except OSError:
            return False
    wait_for(answered, timeout=60, interval=0.5, what="the web processes to answer")

    # The console under a steady client for the whole test: each request on a connection of its own.
    results: list[tuple[float, float, int | str]] = []  # (started, finished, status or error)
    stop = threading.Event()

    def browse() -> None:
        paths = ["/", "/clusters/?q=scale-1", "/compliance/"]
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, _body = _get(port, paths[n % len(paths)], cookie)
                results.append((started, time.monotonic(), status))
            except OSError as exc:
                results.append((started, time.monotonic(), type(exc).__name__))
            n += 1
            time.sleep(0.2)
    browser = threading.Thread(target=browse, daemon=True)
    browser.start()
    try:
        scale = Cluster.objects.filter(name__startswith="scale-")

        def all_synced() -> int | bool:
            left = scale.filter(last_sync_at__isnull=True).count()
            return left == 0 or False
        wait_for(all_synced, timeout=3 * INTERVAL, interval=2, what=f"a first sync of all {CLUSTERS} clusters")
        reachable = [ClusterStatus.CONNECTED, ClusterStatus.DEGRADED]  # (degraded: a member's own workloads)
        assert scale.filter(status__in=reachable).count() == CLUSTERS, \
            set(scale.values_list("status", "status_reason"))
        status, body = _get(port, "/clusters/?q=scale-199", cookie)
        assert status == 200 and b"scale-199" in body

        # Kill one worker while it holds clusters mid-sync: stop it, see which leases it keeps, then kill it.
        victim = workers[0]
        held: set[int] = set()
        for _ in range(60):
            os.killpg(victim.pid, signal.SIGSTOP)
            time.sleep(3)  # the other worker's syncs (a second or two each) finish and give their leases back
            held = set(scale.filter(lease_expires_at__gt=timezone.now()).values_list("pk", flat=True))
            if held:
                break
            os.killpg(victim.pid, signal.SIGCONT)
            time.sleep(0.5)
        assert held, "the worker never held a cluster's lease while it was stopped"
        processes.kill(victim)
        web_killed_clock = time.monotonic()
        processes.kill(webs[0])
        killed_at = timezone.now()
        killed_clock = time.monotonic()

        # Every cluster is synced again after the kill, the killed worker's included: within two intervals (a
        # cluster is stale after three), since a sync's lease is renewed only while its worker lives; not after
        # the longest sync's 330 s.
        within = 2 * INTERVAL + 15

        def fresh_again() -> int | bool:
            left = scale.exclude(last_sync_at__gt=killed_at).count()
            return left == 0 or False
        wait_for(fresh_again, timeout=within, interval=2,
                 what=f"every cluster synced after the kill (the killed worker held {sorted(held)})")
        assert scale.filter(status__in=reachable).count() == CLUSTERS, \
            f"none went stale or unreachable: {set(scale.values_list('status', 'status_reason'))}"
        assert not scale.filter(pk__in=held, lease_expires_at__gt=timezone.now() + sync.LEASE).exists()
        # The console keeps being used after the kill for at least 50 requests, however soon the syncs caught up.
        wait_for(lambda: sum(1 for started, _f, _r in results if started > killed_clock + 1) > 50, timeout=90,
                 interval=1, what="50 requests after the kill")
    finally:
        stop.set()
        browser.join(40)

    # A request the killed web process was answering at that moment is cut off (SIGKILL; a load balancer retries
    # it); the client sends one at a time, so that is at most one. Every other one is answered.
    before = [r for _started, finished, r in results if finished < web_killed_clock]
    cut = [r for started, finished, r in results
           if started <= killed_clock + 1 and finished >= web_killed_clock and r != 200]
    after = [r for started, _finished, r in results if started > killed_clock + 1]
    assert len(cut) <= 1, f"only the request in flight at the kill is lost: {cut}"
    assert before and all(r == 200 for r in before), f"the console before the kill: {before}"
    assert len(after) > 50 and all(r == 200 for r in after), \
        f"every request after the kill answered by the surviving web process: {[r for r in after if r != 200]}"
    assert webs[1].poll() is None and workers[1].poll() is None, "the survivors still run"
