"""3. Freshness: many clusters (local members registered under many names, a few unreachable or hanging on
purpose) at a fixed interval, served by 2 worker processes and beat; how stale does data get? First the fill (every
cluster's first sync, queued by its attach), then, once every reachable cluster has answered, the age of data over
the duration."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

from benchmarks.common import ROOT, STATE, cpu_seconds, rss_mib, say, stop, table
from foundation.queueing import QUEUES, purge_queues

SIZES = {"quick": (60, 30, 150), "full": (200, 60, 420)}  # clusters, interval (s), duration (s)
WORKERS, THREADS = 2, 8


def _hanging_server() -> tuple[socket.socket, threading.Event]:
    """Accepts connections and never answers: a cluster whose API server hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.5)
    stop = threading.Event()
    held = []

    def loop():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue
        for conn in held:
            conn.close()

    threading.Thread(target=loop, daemon=True).start()
    return server, stop


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connections are refused


def _processes(env: dict) -> list[subprocess.Popen]:
    logs = STATE / "freshness-logs"
    logs.mkdir(exist_ok=True)
    procs = []
    for i in range(WORKERS):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-Q", ",".join(QUEUES), "-P", "threads",
             "-c", str(THREADS), "-n", f"bench{i}@%h", "-l", "WARNING"], env=env, cwd=ROOT,
            stdout=open(logs / f"worker{i}.log", "ab"), stderr=subprocess.STDOUT))  # noqa: SIM115
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fleetweb", "beat", "-l", "WARNING", "--schedule",
         str(STATE / "beat-schedule")], env=env, cwd=ROOT, stdout=open(logs / "beat.log", "ab"),  # noqa: SIM115
        stderr=subprocess.STDOUT))
    return procs


def _mark_bad(kinds: dict[str, str], marked: dict[str, float], attached_at) -> None:
    """When each refusing or hanging cluster was first shown as failing, in seconds after the clusters were attached."""
    from django.utils import timezone

    from inventory.choices import ClusterStatus
    from inventory.models import Cluster

    now = timezone.now()
    bad = [name for name, kind in kinds.items() if kind != "reachable" and name not in marked]
    for name in Cluster.objects.filter(name__in=bad, status__in=(
            ClusterStatus.UNREACHABLE, ClusterStatus.ERROR, ClusterStatus.TLS_ERROR)).values_list("name", flat=True):
        marked[name] = (now - attached_at).total_seconds()


def run(size: str, *, count: int | None = None) -> dict:
    """`size` gives the clusters, interval and duration; `count` (`--clusters`) the number of clusters."""
    from localfleet.fleet import Fleet

    sized, interval, duration = SIZES[size]
    count = count or sized
    fleet = Fleet(STATE / "localfleet-fresh")
    try:
        return _measure(fleet, count, interval, duration)
    finally:
        fleet.down()


def _measure(fleet, count: int, interval: int, duration: int) -> dict:
    from django.utils import timezone

    from fleetweb.embedded import child_environment
    from inventory import services
    from inventory.models import Cluster

    members = fleet.up(3, nodes=5)
    hanging, stop_hanging = _hanging_server()
    Cluster.objects.filter(name__startswith="fresh-").delete()
    purge_queues()  # an earlier run's backlog (Redis keeps it in the state directory) is not this run's work
    unreachable_n, slow_n = max(2, count // 20), max(2, count // 40)
    kinds = {}
    for i in range(count):
        name = f"fresh-{i:03d}"
        if i < unreachable_n:
            creds = {"method": "token", "server": f"https://127.0.0.1:{_closed_port()}", "ca_data": members[0].ca_pem,
                     "token": "x"}
            kinds[name] = "unreachable"
        elif i < unreachable_n + slow_n:
            creds = {"method": "token", "server": f"https://127.0.0.1:{hanging.getsockname()[1]}",
                     "ca_data": members[0].ca_pem, "token": "x"}
            kinds[name] = "hanging"
        else:
            m = members[i % len(members)]
            creds = {"method": "token", "server": m.server, "ca_data": m.ca_pem,
                     "token": m.file("reader.token").read_text()}
            kinds[name] = "reachable"
        services.attach_cluster(name=name, credentials=creds, user=None, sync_interval=interval)
    attached_at = timezone.now()
    say(f"[freshness] {count} clusters ({unreachable_n} refusing, {slow_n} hanging) every {interval}s, "
        f"{WORKERS} workers × {THREADS} threads, for {duration}s")
    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE)}
    procs = _processes(env)
    ages: list[float] = []
    by_minute: dict[int, list[float]] = {}  # the ages sampled in each minute of the measurement
    marked: dict[str, float] = {}
    never: set[str] = set()
    workers = [p.pid for p in procs[:WORKERS]]
    member_pids = [pid for m in members for pid, _start in m.pids.values()]
    reachable = {name for name, kind in kinds.items() if kind == "reachable"}
    filled_after = None
    try:
        # The first fill (every cluster's first sync, gathered from the attaches) is its own figure: staleness is
        # measured from the moment every reachable cluster has answered once, over `duration` seconds.
        fill_end = time.monotonic() + duration
        while filled_after is None and time.monotonic() < fill_end:
            time.sleep(5)
            _mark_bad(kinds, marked, attached_at)
            if not Cluster.objects.filter(name__in=reachable, last_sync_at__isnull=True).exists():
                filled_after = (timezone.now() - attached_at).total_seconds()
        say(f"[freshness] first inventory of all {len(reachable)} reachable clusters: "
            + (f"within {filled_after:.0f} s" if filled_after is not None else f"not within {duration} s"))
        cpu, members_cpu, started, rss = cpu_seconds(workers), cpu_seconds(member_pids), timezone.now(), 0.0
        begun = time.monotonic()
        end = begun + duration
        while time.monotonic() < end:
            time.sleep(5)
            now = timezone.now()
            minute = by_minute.setdefault(int((time.monotonic() - begun) // 60), [])
            _mark_bad(kinds, marked, attached_at)
            for name, last_sync in Cluster.objects.filter(name__in=reachable).values_list("name", "last_sync_at"):
                ages.append((now - (last_sync or attached_at)).total_seconds())
                minute.append(ages[-1])
                if last_sync is None:
                    never.add(name)
            rss = max(rss, rss_mib(workers))
        cpu, members_cpu = cpu_seconds(workers) - cpu, cpu_seconds(member_pids) - members_cpu
    finally:
        stop(procs)
        stop_hanging.set()
        hanging.close()
    ages.sort()

    def pct(p: float, values: list[float] = ages) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")

    minutes = [round(pct(95, sorted(values))) for _minute, values in sorted(by_minute.items())]
    say(f"[freshness] age of data p95 in each minute of the measurement: {', '.join(f'{m} s' for m in minutes)}")

    from inventory.models import SyncRun

    syncs = SyncRun.objects.filter(cluster__name__startswith="fresh-", started_at__gte=started).count()
    say(f"[freshness] for sizing: {WORKERS} workers used {cpu:.0f} CPU s for {syncs} syncs ({cpu / max(syncs, 1):.3f} "
        f"CPU s per sync of a 5-node member, "
        f"{cpu / duration:.2f} cores on average); resident at most {rss:.0f} MiB for the {WORKERS} workers; the "
        f"{len(members)} members' API servers and etcd, which stand in for {count} clusters on this machine, used "
        f"{members_cpu / duration:.2f} cores ({members_cpu / max(syncs, 1):.3f} CPU s per sync)")
    bad = [n for n, k in kinds.items() if k != "reachable"]
    result = {"clusters": count, "interval": interval, "duration": duration, "samples": len(ages),
              "first_fill_s": filled_after, "members_cpu_seconds": members_cpu, "age_p95_by_minute": minutes,
              "age_p50": pct(50), "age_p95": pct(95), "age_max": ages[-1] if ages else None,
              "never_synced": sorted(never), "unmarked": sorted(set(bad) - set(marked)),
              "marked_after_max": max(marked.values()) if marked else None,
              "workers": {"cpu_seconds": cpu, "syncs": syncs, "rss_mib": rss, "processes": WORKERS, "threads": THREADS}}
    say(table([
        ["first inventory of every reachable cluster", f"{filled_after:.0f} s" if filled_after is not None else "—",
         "(attached at once; first syncs gathered)"],
        ["reachable: age of data, p50", f"{result['age_p50']:.0f} s", ""],
        ["reachable: age of data, p95", f"{result['age_p95']:.0f} s", f"goal ≤ {1.5 * interval:.0f} s (1.5 intervals)"],
        ["reachable: age of data, max", f"{result['age_max']:.0f} s" if ages else "—", ""],
        ["unreachable/hanging marked within", f"{result['marked_after_max']:.0f} s" if marked else "—",
         f"goal ≤ {2 * interval} s (2 intervals); unmarked: {len(result['unmarked'])}"],
    ], ["measure", "value", "goal"]))
    Cluster.objects.filter(name__startswith="fresh-").delete()
    return result
