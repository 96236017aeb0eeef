"""Starting and stopping the helper servers the tests run (the identity provider, Prometheus)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path


def start_time(pid: int) -> str | None:
    """Start time of a pid (field 22 of /proc/pid/stat): tells our process from a recycled pid; None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


# Called with the pid of every server process localfleet starts (members' components, the identity provider,
# Prometheus): `make run` announces them to its reaper (`localfleet.reaper`) so they die with it.
ON_START: list[Callable[[int], None]] = []


def started(proc: subprocess.Popen) -> subprocess.Popen:
    """Tell the `ON_START` callbacks about a process just started; returns it."""
    for callback in ON_START:
        callback(proc.pid)
    return proc


def wait_ready(proc: subprocess.Popen, url: str, *, name: str, log: Path, timeout: float = 60) -> None:
    """Until `url` answers 200; RuntimeError naming the log when the process exits or the time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"{name} did not become ready in {timeout:.0f}s; see {log}")


def wait_port(proc: subprocess.Popen, host: str, port: int, *, name: str, log: Path, timeout: float = 60) -> None:
    """Until `host:port` accepts a connection (a server whose every path asks for credentials)."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}); see {log}")
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError(f"{name} did not listen on {host}:{port} in {timeout:.0f}s; see {log}")


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM to the process group (started with start_new_session), SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
