"""Shared fixtures: role users, API clients, a real Celery worker and beat for end-to-end tests."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from foundation.queueing import QUEUES, purge_queues
from inventory.people.tokens import create_token
from tests.builders import make_user
from tests.receivers import _http_receiver_server, _smtp_server, http_receiver, smtp_server  # noqa: F401 - fixtures


@pytest.fixture
def viewer(db):
    return make_user("vera-viewer", "viewer")


@pytest.fixture
def operator(db):
    return make_user("otto-operator", "operator")


@pytest.fixture
def approver(db):
    return make_user("anna-approver", "approver")


@pytest.fixture
def admin_user(db):
    return make_user("ada-admin", "admin")


@pytest.fixture
def outsider(db):
    """Logged in, but holding no role."""
    return make_user("olga-outsider")


def api_client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        _token, key = create_token(owner=user, user=None, name="tests")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def api_as():
    return api_client_for


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (thread pool) consuming the real Redis broker, for the length of a test."""
    from celery.contrib.testing.worker import start_worker

    from fleetweb.celery import app

    purge_queues()
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, queues=list(QUEUES),
                      shutdown_timeout=30, loglevel="WARNING") as worker:
        yield worker
    purge_queues()


@pytest.fixture
def celery_beat(celery_worker, beat_process):
    """A real worker (in-process threads) and a real `celery beat` process sending the schedule."""
    return beat_process


@pytest.fixture
def beat_env() -> dict:
    """Extra environment of the beat process; a test module overrides it (e.g. a shorter alert interval)."""
    return {}


@pytest.fixture
def beat_process(transactional_db, tmp_path, beat_env):
    """Only `celery beat` (due-sync claims every 5 s, due rollouts every 3 s): for tests that run their own
    worker processes, so that no in-process worker takes their tasks."""
    import redis

    from fleetweb.beat import LAST_SENT, LOCK
    from fleetweb.embedded import child_environment

    purge_queues()
    redis.Redis.from_url(settings.REDIS_URL).delete(LOCK, LAST_SENT)  # a killed earlier beat's lock: not a standby

    env = {**child_environment(), **beat_env}
    log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleetweb", "beat", "-l", "info",
                             "--schedule", str(tmp_path / "beat-schedule")], env=env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=Path(settings.BASE_DIR))
    yield proc
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    purge_queues()


# The members of the rollout tests (e2e and browser) and the environment each is attached as.
ENVIRONMENTS = {"gke-us-central": "dev", "ack-hangzhou": "staging", "aws-eu-west": "prod"}


@pytest.fixture
def fleet(localfleet_members, admin_user):
    """The three members attached as dev (canary), staging and prod, with groups for the later stages.
    Afterwards the test namespaces are deleted from every member."""
    from kubernetes import client as k8s

    from inventory import services as inventory_services

    members = {name: handle for name, handle in localfleet_members.items() if name in ENVIRONMENTS}
    assert len(members) == 3, f"the rollout tests need the three first localfleet members, got {list(members)}"
    clusters = {name: inventory_services.attach_cluster(name=name, credentials=h.token_credentials(), user=None,
                                                        environment=ENVIRONMENTS[name])
                for name, h in members.items()}
    inventory_services.create_group(name="staging", selector="environment=staging", user=admin_user)
    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    yield {"members": members, "clusters": clusters}
    # Leave the members as the next tests expect them: the namespaces gone, not merely terminating
    # (workloads in a terminating namespace read as unavailable, and the member as degraded).
    selector = "app.kubernetes.io/managed-by=fleetweb"
    for handle in members.values():
        with handle.admin_api() as api:
            for ns in k8s.CoreV1Api(api).list_namespace(label_selector=selector).items:
                k8s.CoreV1Api(api).delete_namespace(ns.metadata.name)
    for name, handle in members.items():
        def gone(handle=handle):
            with handle.admin_api() as api:
                return not k8s.CoreV1Api(api).list_namespace(label_selector=selector).items
        wait_for(gone, timeout=120, interval=1, what=f"test namespaces deleted on {name}")


def child_env() -> dict:
    """The environment of a process a test starts (a worker, a web process): the same servers and keys, and pytest's
    test database on the same PostgreSQL server."""
    from urllib.parse import urlparse, urlunparse

    from django.db import connection

    from fleetweb.embedded import child_environment

    env = child_environment()
    url = urlparse(settings.DATABASE_URL)
    env["DATABASE_URL"] = urlunparse(url._replace(path="/" + connection.settings_dict["NAME"]))
    return env


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.25, what: str = "condition"):
    """Poll until predicate() is truthy; return its value or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last value: {last!r})")
