"""The embedded PostgreSQL stops when its last user exits, even after a user died without its exit handler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def _postmaster(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return None
    pid = int(pid_file.read_text().split()[0])
    return pid if psutil.pid_exists(pid) else None


def _env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "FLEETWEB_STATE_DIR": str(state)}


def test_a_dead_handle_does_not_keep_the_embedded_postgres_running(tmp_path):
    """A command that starts the server and exits normally stops it; a pid left by a process that was killed (or
    left through os._exit, as mypy does) no longer keeps it running for ever."""
    state = tmp_path / "state"
    try:
        _run_users(state)
    finally:  # a failure leaves no server behind either
        pid = _postmaster(state / "postgres")
        if pid:
            os.kill(pid, 2)  # SIGINT: PostgreSQL's fast shutdown


def _run_users(state: Path) -> None:
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'fleetweb.settings'; "
            "from fleetweb import embedded; embedded.start(); django.setup()")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(state), check=True, timeout=120)
    pgdata = state / "postgres"
    deadline = time.monotonic() + 20
    while _postmaster(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postmaster(pgdata) is None, "a normal exit stops the server it started"

    # A user that dies without its exit handler leaves its pid counted...
    subprocess.run([sys.executable, "-c", code + "; os._exit(0)"], cwd=ROOT, env=_env(state), check=True,
                   timeout=120)
    assert _postmaster(pgdata) is not None
    dead = json.loads((pgdata / ".handle_pids.json").read_text())
    assert dead and not any(psutil.pid_exists(pid) for pid in dead)
    # ...and the next user to start and exit normally no longer counts it: the server stops.
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(state), check=True, timeout=120)
    deadline = time.monotonic() + 20
    while _postmaster(pgdata) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _postmaster(pgdata) is None, "the dead handle kept the embedded PostgreSQL running"
