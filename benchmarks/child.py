"""One measurement in a fresh process, so its peak RSS is its own: `python -m benchmarks.child WHAT CLUSTER_ID`.

- floor: the same paged LISTs a sync makes, bytes read and thrown away.
- sync: one full sync (collector + database), counting the rows it writes.
- decode: pods/s of Fleetweb's msgspec decoder vs the `kubernetes` package's models, same pages.
floor and sync run twice: `seconds` is the second run (a warm worker), `cold_seconds` the first.
Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks.common import peak_rss_mib, setup_django


def floor(cluster_id: int) -> dict:
    from inventory import kinds, port
    from inventory.models import Cluster

    cluster = Cluster.objects.get(pk=cluster_id)
    started = time.perf_counter()
    with port.connect(cluster) as member:
        member.version()
        for kind in kinds.KINDS:
            for _page in member.pages(kind.path):
                pass
        read = member.bytes_read
    return {"seconds": time.perf_counter() - started, "bytes": read, "peak_rss_mib": peak_rss_mib()}


def sync(cluster_id: int) -> dict:
    from django.db import connection

    from inventory import sync
    from inventory.models import SyncRun

    writes = {"statements": 0, "rows": 0}

    def count(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        verb = sql.lstrip().split(None, 1)[0].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            writes["statements"] += 1
            writes["rows"] += max(context["cursor"].rowcount, 0)
        return result

    started = time.perf_counter()
    with connection.execute_wrapper(count):
        run = sync.sync_cluster(cluster_id, triggered_by="benchmark")
    seconds = time.perf_counter() - started
    assert run is not None and run.outcome == "succeeded", (run and run.outcome, run and run.error)
    run = SyncRun.objects.get(pk=run.pk)
    return {"seconds": seconds, "bytes": run.bytes_read, "counts": run.counts, "peak_rss_mib": peak_rss_mib(),
            "write_statements": writes["statements"], "rows_written": writes["rows"]}


def decode(cluster_id: int) -> dict:
    import json as std_json

    from kubernetes.client import V1PodList

    from inventory import kinds as fw_kinds
    from inventory import port
    from inventory.models import Cluster

    cluster = Cluster.objects.get(pk=cluster_id)
    with port.connect(cluster) as member:
        pages = list(member.pages("/api/v1/pods"))
    pods = sum(len(fw_kinds.decode_page("Pod", p).items) for p in pages)

    def rate(fn, rounds: int) -> float:
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for p in pages:
                fn(p)
            best = min(best, time.perf_counter() - t)
        return pods / best

    sample = pages[: max(1, len(pages) // 10)]  # the model path is slow: a tenth of the pages is enough
    sample_pods = sum(len(fw_kinds.decode_page("Pod", p).items) for p in sample)

    def models_rate(rounds: int = 3) -> float:
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for p in sample:
                V1PodList.from_dict(std_json.loads(p))
            best = min(best, time.perf_counter() - t)
        return sample_pods / best

    fleetweb_rate = rate(lambda p: fw_kinds.decode_page("Pod", p), 5)
    models = models_rate()
    return {"pods": pods, "pages": len(pages), "fleetweb_pods_per_s": fleetweb_rate,
            "kubernetes_models_pods_per_s": models, "ratio": fleetweb_rate / models}


if __name__ == "__main__":
    setup_django()
    what, cluster = sys.argv[1], int(sys.argv[2])
    fn = {"floor": floor, "sync": sync, "decode": decode}[what]
    if what in ("floor", "sync"):
        # Twice, timing both: the first pays this process's one-time costs (imports, the Celery app's
        # finalization, the first database and TLS connections), which a running worker paid long ago;
        # the second is what a worker spends per sync. Peak RSS covers both.
        cold = fn(cluster)
        result = {**fn(cluster), "cold_seconds": cold["seconds"]}
    else:
        result = fn(cluster)
    print(json.dumps(result))
