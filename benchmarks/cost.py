"""CPU per request of fleet endpoints in one process, one client: `python <path of this file> N USERNAME ENDPOINTS`,
run with the source tree to measure as the working directory (`python -m benchmarks.ab OTHER --cpu` runs it in both
trees, so an older tree is measured with this script; it stops the embedded servers only if it started them).
ENDPOINTS is JSON, `[[label, url, headers], …]` as `benchmarks.fleet.endpoints` gives them. Prints one JSON line:
{label: [median wall ms, Python CPU ms, PostgreSQL backend CPU ms]} per request. Less sensitive to a shared
machine's noise than latency under load: what a request costs, not how long it waited for a core."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time


def main() -> int:
    sys.path.insert(0, os.getcwd())  # the tree measured, not this file's
    from benchmarks.common import setup_django, use_bench_state

    use_bench_state()
    from fleetweb import embedded

    running = (embedded.state_dir() / "postgres" / "postmaster.pid").exists()  # `benchmarks.ab`'s: left running
    setup_django()
    try:
        return _measure(int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]))
    finally:
        if not running:
            embedded.stop()


def _measure(count: int, username: str, endpoints: list) -> int:
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    client = Client()
    client.force_login(User.objects.get(username=username))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def backend_cpu() -> float:
        fields = open(f"/proc/{backend}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - read at once
        return (int(fields[11]) + int(fields[12])) / tick

    try:  # as the WSGI entry point does, where the tree has it
        from foundation.web import settle_web_process

        settle_web_process()
    except ImportError:
        pass
    out = {}
    for label, url, headers in endpoints:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        for _ in range(3):
            client.get(url, **extra)
        walls = []
        python, database = time.process_time(), backend_cpu()
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(url, **extra)
            walls.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"{url}: {response.status_code}")
        out[label] = [statistics.median(walls), (time.process_time() - python) * 1000 / count,
                      (backend_cpu() - database) * 1000 / count]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
