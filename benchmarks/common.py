"""Shared helpers: a private state folder, Django set-up, medians, peak RSS, child processes, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".fleetweb" / "bench"


def use_bench_state() -> None:
    """Point Fleetweb at the benchmarks' own embedded servers before Django reads its settings."""
    STATE.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLEETWEB_STATE_DIR", str(STATE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fleetweb.settings")
    # The members are localfleet's, on loopback, which the outbound address policy refuses unless allowed.
    os.environ.setdefault("FLEETWEB_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")


def setup_django(*, migrate: bool = False) -> None:
    use_bench_state()
    import django

    from fleetweb import embedded

    embedded.start()

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)


def median(values) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tree(pids: list[int]) -> list[int]:
    """These processes and all their descendants (gunicorn's workers, PostgreSQL's backends)."""
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        try:
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            continue
        seen.append(pid)
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their descendants (gunicorn workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in _tree(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes and their descendants now (the sum of VmRSS), MiB."""
    total = 0
    for pid in _tree(pids):
        try:
            lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), 0)
    return total / 1024


def database_mib() -> float:
    """The size of Fleetweb's database on disk (tables, indexes, TOAST), MiB."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0] / 2**20


def child(*args: str, timeout: float = 1800) -> dict:
    """Run `python -m benchmarks.child ARGS` in a fresh process (its own peak RSS) and return its JSON."""
    from fleetweb.embedded import child_environment

    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.child", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.child {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine() -> dict:
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) // 1024
    return {"cores": os.cpu_count(), "memory_mib": mem, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def say(message: str) -> None:
    print(message, flush=True)


def table(rows: list[list], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)) for r in rows]
    return "\n".join(out)


def stop(procs: list, *, timeout: float = 30) -> None:
    """Terminate the processes a benchmark started, all at once, then wait for each (killed after `timeout`)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
