"""/healthz needs nothing but the process; /readyz names what keeps it from serving: the database, its
migrations, Redis and beat (real PostgreSQL, real Redis, a real `celery beat` process)."""

from __future__ import annotations

import math
import re
import time

import pytest
from django.db import connection
from django.test import Client

from foundation import health
from tests.conftest import wait_for


def test_healthz_answers_without_touching_the_database():
    # No django_db mark: pytest-django refuses any database access in this test, so a query would fail it.
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_readyz_is_ready_with_everything_up_and_beat_ticking(client):
    health.redis_client().set(health.BEAT_KEY, f"{time.time():.3f}")
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and set(body["checks"]) == {"database", "migrations", "redis", "beat"}
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.django_db
def test_readyz_names_a_late_or_absent_beat(client):
    redis = health.redis_client()
    planted = time.time()
    redis.set(health.BEAT_KEY, f"{planted - 60:.3f}")
    late = client.get("/readyz")
    took = time.time() - planted  # the age the answer reports grows with the time the request itself took
    assert late.status_code == 503
    beat = late.json()["checks"]["beat"]
    said = re.fullmatch(r"beat last ticked (\d+) s ago \(more than 15 s\)", beat["detail"])
    assert not beat["ok"] and said, beat
    assert 60 <= int(said.group(1)) <= 60 + math.ceil(took), (beat, took)
    assert late.json()["checks"]["database"]["ok"] and late.json()["checks"]["redis"]["ok"]
    redis.delete(health.BEAT_KEY)
    absent = client.get("/readyz").json()["checks"]["beat"]
    assert not absent["ok"] and "has not ticked" in absent["detail"]


@pytest.mark.django_db
def test_readyz_names_an_unreachable_redis_without_its_url(client, settings):
    settings.REDIS_URL = "redis://:s3cret-redis-password@127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"] == {"ok": False, "detail": "Redis did not answer (ConnectionError)"}
    assert checks["database"]["ok"]
    assert "s3cret" not in response.content.decode() and "127.0.0.1:1" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_names_a_migration_not_applied(client, monkeypatch):
    monkeypatch.setattr(health, "_migrated", False)
    health.redis_client().set(health.BEAT_KEY, f"{time.time():.3f}")
    with connection.cursor() as cursor:  # undone when the test's transaction rolls back
        cursor.execute("DELETE FROM django_migrations WHERE app = 'fleetweb' AND name = '0003_api_tokens'")
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == {
        "ok": False, "detail": "1 migration(s) not applied, the first fleetweb.0003_api_tokens: run manage.py migrate"}


@pytest.mark.django_db(transaction=True)
def test_a_running_beat_process_keeps_readyz_ready(beat_process):
    health.redis_client().delete(health.BEAT_KEY)
    ticked = wait_for(lambda: health.redis_client().get(health.BEAT_KEY), timeout=30,
                      what="the beat process to record a tick")
    assert time.time() - float(ticked) < 15
    response = Client().get("/readyz")
    assert response.status_code == 200 and response.json()["checks"]["beat"]["ok"], response.json()


def test_compose_checks_the_web_service_with_readyz():
    from pathlib import Path

    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text())
    assert "/readyz" in " ".join(compose["services"]["web"]["healthcheck"]["test"])
