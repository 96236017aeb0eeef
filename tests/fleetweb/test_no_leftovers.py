"""`make run` and the test session stop every process they started, proved by pid: Ctrl-C on `manage.py run`, or
TERM to its process group twice, stops web, worker, beat, the local member and the embedded PostgreSQL and Redis; a
finished test session leaves no Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from localfleet import binaries
from localfleet.pytest_plugin import require

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _started_by(run: psutil.Process, state: Path) -> dict[int, str]:
    """Every process `run` started: its descendants, and the servers that detach from it (their command line or
    working folder is in its state folder)."""
    found = {p.pid: " ".join(p.cmdline())[:300] for p in run.children(recursive=True)}
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(state) in text and proc.pid != run.pid:
            found[proc.pid] = " ".join(proc.info["cmdline"] or [])[:300]
    return found


def _clean_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "FLEETWEB_STATE_DIR")}
    return {**env, "FLEETWEB_STATE_DIR": str(state), "LOCALFLEET_STATE_DIR": str(state / "localfleet")}


def _ctrl_c(run: subprocess.Popen) -> None:
    os.kill(run.pid, signal.SIGINT)


def _term_to_the_group_twice(run: subprocess.Popen) -> None:
    """What a process manager, a script or `make` does: TERM to the process group, and again while it stops (make
    passes the signal on to its child)."""
    os.killpg(run.pid, signal.SIGTERM)
    time.sleep(1.0)
    if run.poll() is None:
        os.killpg(run.pid, signal.SIGTERM)


def _killed(run: subprocess.Popen) -> None:
    """The launcher killed outright (the OOM killer, `kill -9`): no cleanup of its own runs."""
    os.kill(run.pid, signal.SIGKILL)


@pytest.mark.e2e
@pytest.mark.parametrize(("stop", "exit_code"), [(_ctrl_c, 0), (_term_to_the_group_twice, 0), (_killed, -9)],
                         ids=["ctrl-c", "term-twice", "killed"])
def test_stopping_make_run_stops_everything_it_started(tmp_path, stop, exit_code):
    require(binaries.buildable(), "Go is not installed and no cached localfleet binaries exist")
    state = tmp_path / "state"
    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    run = subprocess.Popen([sys.executable, "manage.py", "run", "--port", str(ports[0]), "--agent-port", str(ports[1]),
                            "--clusters", "1", "--nodes", "1"],
                           cwd=ROOT, env=_clean_env(state), stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 240
        while b"Fleetweb is up" not in (tmp_path / "run.log").read_bytes():
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.5)
        started = _started_by(psutil.Process(run.pid), state)
        names = " ".join(started.values())
        for expected in ("runserver", "agent_gateway", "worker", "beat", "postgres", "redis-server", "kube-apiserver",
                         "etcd"):
            assert expected in names, f"{expected} not found among {started}"
        stop(run)
        assert run.wait(90) == exit_code, (tmp_path / "run.log").read_text()[-3000:]
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [started[pid] for pid in started if _alive(pid)] == []
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in started:  # a failed test still leaves nothing: the members run in sessions of their own
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log.close()


def test_a_test_session_leaves_no_redis_behind(tmp_path):
    probe = tmp_path / "session_probe.py"
    probe.write_text(
        "import os, redis\n"
        "def test_probe():\n"
        "    pid = redis.Redis.from_url(os.environ['REDIS_URL']).info('server')['process_id']\n"
        f"    open({str(tmp_path / 'pid')!r}, 'w').write(str(pid))\n")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = subprocess.run([sys.executable, "-m", "pytest", str(probe), "-q", "-p", "no:cacheprovider",
                           f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pid = int((tmp_path / "pid").read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), f"the session's redis-server (pid {pid}) is still running"
