"""Processes that die with their parent, however the parent dies.

`make run` stops everything it started on Ctrl-C and TERM. Killed outright (SIGKILL, the OOM killer, a crash), it
runs no cleanup, and its members (etcd, kube-apiserver, controllers, kwok, each in a session of its own) and the
embedded servers would run on. `PR_SET_PDEATHSIG` does not help: it fires when the *thread* that started a child ends,
and localfleet starts members from a thread pool.

So the launcher starts one small watcher first (`start()`), in a session of its own, holding the read end of a pipe
whose write end only the launcher holds (children never inherit it). Each process the launcher or localfleet starts
is announced on the pipe (`Reaper.watch`). When the pipe closes because the launcher died, the watcher
signals each announced process that is still the same process (pid and start time), waits up to 10 s, kills what is
left, and exits; after the launcher's own clean stop it is told "done" and signals nothing.

Run as `python -m localfleet.reaper`; stdin carries lines "<pid> <start time> <signal>", and "done" when the launcher
finished its own cleanup (then nothing is signalled).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO

from localfleet.procs import start_time


class Reaper:
    """The launcher's end of the pipe."""

    def __init__(self, proc: subprocess.Popen, pipe: IO[str]):
        self.proc = proc
        self.pipe = pipe

    def watch(self, pid: int, sig: int = signal.SIGTERM) -> None:
        """Announce a process (and its process group, if it leads one) to stop should the launcher die."""
        started = start_time(pid)
        if started is None or self.pipe.closed:
            return
        try:
            self.pipe.write(f"{pid} {started} {int(sig)}\n")
            self.pipe.flush()
        except (BrokenPipeError, ValueError):
            pass  # the watcher is gone: the launcher's own cleanup still runs

    def close(self, timeout: float = 20) -> None:
        """After the launcher's own clean stop: the watcher leaves alone what the launcher chose to leave running
        (PostgreSQL another process still uses) and exits."""
        try:
            self.pipe.write("done\n")
            self.pipe.flush()
            self.pipe.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start() -> Reaper:
    """Start the watcher; announce processes with `watch`."""
    proc = subprocess.Popen([sys.executable, "-m", "localfleet.reaper"], stdin=subprocess.PIPE, text=True,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    return Reaper(proc, proc.stdin)


def _signal(pid: int, sig: int) -> None:
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)  # a member's session: the process and whatever it started
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(watched: list[tuple[int, str, int]], *, grace: float = 10) -> None:
    """Signal each watched process still alive as itself; SIGKILL what is left after `grace` seconds."""
    alive = [(pid, started, sig) for pid, started, sig in watched if start_time(pid) == started]
    for pid, _started, sig in alive:
        _signal(pid, sig)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        alive = [(pid, started, sig) for pid, started, sig in alive if start_time(pid) == started]
        if not alive:
            return
        time.sleep(0.2)
    for pid, _started, _sig in alive:
        _signal(pid, signal.SIGKILL)


def main() -> None:
    for ignored in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)  # only the pipe's end stops this process
    watched = []
    for line in sys.stdin:
        if line.strip() == "done":
            return  # the launcher stopped what it meant to stop
        try:
            pid, started, sig = line.split()
            watched.append((int(pid), started, int(sig)))
        except ValueError:
            continue
    reap(watched)


if __name__ == "__main__":
    main()
