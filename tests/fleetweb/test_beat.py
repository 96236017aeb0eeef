"""Beat is never doubled: two real `celery beat` processes against one database and Redis send each periodic task
once per tick (one leads, the other stands by), and when the leader is killed the standby takes over within the
lock's lifetime, from where the leader left off."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from django.conf import settings

from fleetweb.beat import LAST_SENT, LOCK
from foundation.queueing import QUEUES, purge_queues
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LOCK_SECONDS = 4
TASK = "rollouts.tasks.advance_due_rollouts"  # every 3 s
EVERY = 3.0


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


@pytest.fixture
def beats(tmp_path):
    from fleetweb.embedded import child_environment

    purge_queues()
    _redis().delete(LOCK, LAST_SENT)
    env = {**child_environment(), "FLEETWEB_BEAT_LOCK_SECONDS": str(LOCK_SECONDS)}
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(name: str) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleetweb", "beat", "-l", "info",
                                 "--schedule", str(tmp_path / f"{name}-schedule")], env=env,
                                stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=Path(settings.BASE_DIR))
        started.append((proc, log))
        return proc, log

    yield start
    for proc, _log in started:
        if proc.poll() is None:
            proc.terminate()
    for proc, _log in started:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    purge_queues()
    _redis().delete(LOCK, LAST_SENT)


def _sent(task: str) -> int:
    """Messages for `task` waiting in Fleetweb's queues (no worker runs in these tests)."""
    client = _redis()
    return sum(1 for queue in QUEUES for raw in client.lrange(queue, 0, -1)
               if json.loads(raw).get("headers", {}).get("task") == task)


def _leading(log: Path) -> bool:
    return "beat: leading" in log.read_text(errors="replace")


def test_two_beats_send_each_tick_once_and_the_standby_takes_over_from_a_killed_leader(beats):
    first, first_log = beats("beat-a")
    wait_for(lambda: _leading(first_log), timeout=30, what="the first beat to lead")
    second, second_log = beats("beat-b")
    wait_for(lambda: "beat: Starting" in second_log.read_text(errors="replace"), timeout=30,
             what="the second beat to start")
    begun, at_start = time.monotonic(), _sent(TASK)
    time.sleep(15)
    both = _sent(TASK) - at_start
    window = time.monotonic() - begun
    assert window / EVERY - 1 <= both <= window / EVERY + 1, \
        f"{both} sends of a {EVERY:.0f} s task in {window:.0f} s with two beats: each tick once"
    assert not _leading(second_log), "the second stands by"

    first.send_signal(signal.SIGKILL)  # no goodbye: the lock must lapse
    killed = time.monotonic()
    before = _sent(TASK)
    wait_for(lambda: _leading(second_log), timeout=LOCK_SECONDS + 10, what="the standby to take over")
    took = time.monotonic() - killed
    assert took <= LOCK_SECONDS + 3, f"took over {took:.1f} s after the leader died"
    time.sleep(9)
    after = _sent(TASK) - before
    assert after >= 2, "the new leader sends the schedule"
    assert after <= (time.monotonic() - killed) / EVERY + 1, "and repeats nothing the old leader sent"


def test_a_beat_stopped_cleanly_hands_over_at_once(beats):
    first, first_log = beats("beat-a")
    wait_for(lambda: _leading(first_log), timeout=30, what="the first beat to lead")
    second, second_log = beats("beat-b")
    wait_for(lambda: "beat: Starting" in second_log.read_text(errors="replace"), timeout=30,
             what="the second beat to start")
    time.sleep(2)
    first.terminate()
    first.wait(15)
    stopped = time.monotonic()
    assert "gave the leader lock back" in first_log.read_text(errors="replace")
    wait_for(lambda: _leading(second_log), timeout=10, what="the standby to take over")
    assert time.monotonic() - stopped < LOCK_SECONDS, "not waiting for the lock to lapse"
