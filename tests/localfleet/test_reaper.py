"""localfleet.reaper: what a launcher announced dies with it, however it dies; after its own clean stop nothing is
touched; a recycled pid is never signalled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from localfleet import reaper
from localfleet.procs import start_time


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)


def launcher(*pids: int, clean: bool) -> subprocess.Popen:
    """A launcher process that starts the reaper, announces `pids`, says it is ready, then waits to be killed (or,
    `clean`, closes the reaper as after its own cleanup and exits)."""
    code = textwrap.dedent(f"""
        import sys, time
        from localfleet import reaper
        r = reaper.start()
        for pid in {list(pids)!r}:
            r.watch(pid)
        print("ready", flush=True)
        if {clean!r}:
            r.close()
        else:
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(reaper.__file__)))
    assert proc.stdout.readline().strip() == "ready"
    return proc


def gone_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_what_a_killed_launcher_started_is_stopped():
    child = sleeper()
    try:
        parent = launcher(child.pid, clean=False)
        time.sleep(0.3)
        assert child.poll() is None, "alive while its launcher is"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert gone_within(child, 15) and child.returncode == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()


def test_after_the_launchers_own_clean_stop_nothing_is_signalled():
    child = sleeper()
    try:
        parent = launcher(child.pid, clean=True)
        assert parent.wait(30) == 0
        time.sleep(1)
        assert child.poll() is None, "what the launcher chose to leave running keeps running"
    finally:
        child.kill()
        child.wait()


def test_a_recycled_pid_is_never_signalled():
    child = sleeper()
    try:
        reaper.reap([(child.pid, "not-its-start-time", int(signal.SIGTERM))], grace=0.5)
        time.sleep(0.3)
        assert child.poll() is None
        reaper.reap([(child.pid, start_time(child.pid), int(signal.SIGTERM))], grace=5)
        assert gone_within(child, 5)
    finally:
        if child.poll() is None:
            child.kill()
