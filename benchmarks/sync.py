"""1. One big cluster: full sync vs the floor (the same LISTs, bytes thrown away), peak RSS, decode rate,
and what a second sync with nothing changed writes."""

from __future__ import annotations

import time

from benchmarks.common import STATE, child, median, say, table

# limit: the upstream scalability limits (5,000 nodes, 150,000 pods); building that member takes 45 minutes and 15 GiB.
SIZES = {"quick": (200, 4000), "full": (1000, 30000), "limit": (5000, 150000)}
RUNS = 3


def run(size: str) -> dict:
    from inventory import services
    from inventory.models import Cluster
    from localfleet.fleet import Fleet

    nodes, pods = SIZES[size]
    fleet = Fleet(STATE / f"localfleet-{size}")  # one member per size: a member only grows
    say(f"[sync] one member with {nodes} nodes and {pods} pods (localfleet, state {fleet.state_dir})")
    try:
        return _measure(fleet, nodes, pods, services, Cluster)
    finally:
        fleet.down()  # its data stays on disk: the next run restarts it without rebuilding the pods


def _measure(fleet, nodes: int, pods: int, services, Cluster) -> dict:
    member = fleet.up(1, nodes=5)[0]
    started = time.monotonic()
    fleet.scale(member.name, nodes=nodes, pods=pods)
    say(f"[sync] scaled in {time.monotonic() - started:.0f}s")
    name = f"bench-big-{nodes}"
    Cluster.objects.filter(name=name).delete()
    credentials = {"method": "token", "server": member.server, "ca_data": member.ca_pem,
                   "token": member.file("reader.token").read_text()}
    cluster = services.attach_cluster(name=name, credentials=credentials, user=None, sync_interval=3600)
    child("sync", str(cluster.pk))  # first sync: creates every row (not timed: the steady state is)
    floors, syncs = [], []
    for _ in range(RUNS):  # interleaved, so machine noise hits both alike
        floors.append(child("floor", str(cluster.pk)))
        syncs.append(child("sync", str(cluster.pk)))
    decode = child("decode", str(cluster.pk))
    floor_s, sync_s = median([f["seconds"] for f in floors]), median([s["seconds"] for s in syncs])
    cold_floor_s, cold_sync_s = median([f["cold_seconds"] for f in floors]), median([s["cold_seconds"] for s in syncs])
    result = {
        "nodes": nodes, "pods": pods, "objects": syncs[-1]["counts"],
        "floor_seconds": floor_s, "sync_seconds": sync_s, "ratio": sync_s / floor_s,
        "cold_floor_seconds": cold_floor_s, "cold_sync_seconds": cold_sync_s,
        "cold_ratio": cold_sync_s / cold_floor_s,
        "floor_runs": [f["seconds"] for f in floors], "sync_runs": [s["seconds"] for s in syncs],
        "bytes_read": syncs[-1]["bytes"],
        "floor_peak_rss_mib": median([f["peak_rss_mib"] for f in floors]),
        "sync_peak_rss_mib": max(s["peak_rss_mib"] for s in syncs),
        "unchanged_sync_write_statements": median([s["write_statements"] for s in syncs]),
        "unchanged_sync_rows_written": median([s["rows_written"] for s in syncs]),
        "decode": decode,
    }
    counts = syncs[-1]["counts"]
    say(f"[sync] the member holds {counts.get('Node', 0)} nodes and {counts.get('Pod', 0)} pods")
    say(table([
        ["full sync (median of 3)", f"{sync_s:.2f} s", f"floor {floor_s:.2f} s",
         f"ratio {result['ratio']:.2f} (goal ≤ 1.5)"],
        ["first in a new process", f"{cold_sync_s:.2f} s", f"floor {cold_floor_s:.2f} s",
         f"ratio {result['cold_ratio']:.2f} (one-time imports, Celery app, connections)"],
        ["bytes read per sync", f"{result['bytes_read'] / 2**20:.1f} MiB", "", ""],
        ["worker peak RSS", f"{result['sync_peak_rss_mib']:.0f} MiB", f"floor {result['floor_peak_rss_mib']:.0f} MiB",
         "goal ≤ 256 MiB"],
        ["unchanged sync writes", f"{result['unchanged_sync_write_statements']:.0f} statements",
         f"{result['unchanged_sync_rows_written']:.0f} rows", "aim: almost nothing"],
        ["decode (pods/s)", f"msgspec {decode['fleetweb_pods_per_s']:,.0f}",
         f"kubernetes models {decode['kubernetes_models_pods_per_s']:,.0f}",
         f"ratio {decode['ratio']:.0f}× (goal ≥ 40×)"],
    ], ["measure", "value", "baseline", "goal"]))
    return result
