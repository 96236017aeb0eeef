"""Starting and stopping the helper servers the tests run (the identity provider, Prometheus)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path


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


def stop(proc: subprocess.Popen | None) -> None:
    """SIGTERM to the process group (started with start_new_session), SIGKILL after 10 s."""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
