"""Syncing clusters: which are due (scheduling, leases, backoff, staleness), one sync (fetch through
`inventory.collector`, then write the snapshot in batches), and the failure record. Tasks and commands call these."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed, wait
from datetime import timedelta
from typing import Any

import msgspec
from django import db
from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from foundation import bulk, leases, metrics
from foundation.queueing import enqueue, gather, take_gathered
from inventory import addons, collector, history, kinds, nodefacts, port, readiness
from inventory.choices import ClusterStatus, SyncOutcome, WorkloadKind
from inventory.models import Cluster, ClusterAddon, Namespace, Node, ProblemPod, SyncRun, Workload
from inventory.querysets import UNAVAILABLE
from inventory.signals import clusters_changed

log = logging.getLogger(__name__)

# A sync's lease is short and renewed while the sync runs (`leases.kept`): a killed worker's clusters are free for
# the next one within LEASE, not after the longest sync; a sync is renewed for at most LONGEST, longer than the sync
# task's hard time limit (300 s), which a thread pool does not enforce.
LEASE = timedelta(seconds=45)
LONGEST = timedelta(seconds=330)
BATCH = 500


# ---------------------------------------------------------------------------------------------
# Scheduling


# A scheduled sync that has not written within this many of its cluster's intervals of being queued is taken as lost
# (a worker killed with it leaves its messages in the broker until the visibility timeout; a message the broker
# dropped): the cluster may be claimed again, so a dead worker's clusters are synced again within two intervals.
# Until then a cluster is not queued twice: a backlog must not grow by second syncs of clusters waiting for a first.
QUEUED_FOR_INTERVALS = 1.5
# Healthy clusters are synced this many to a task: read at once, written in one transaction (`sync_many`), which
# costs a fraction of one write each. A cluster that failed its last sync, or never answered, is
# synced alone, so a cluster that hangs until the connect timeout never holds back the writes of others.
SYNC_CHUNK = 10


def claim_due_clusters(*, now=None, limit: int = 500) -> list[int]:
    """Move the next sync time of due clusters forward, mark them queued and return them; run by beat every few
    seconds (through `queue_due_syncs`).

    `select_for_update(skip_locked=True)` makes two schedulers never claim the same cluster."""
    return [pk for pk, _failing in _claim(now or timezone.now(), limit)]


def _claim(now, limit: int) -> list[tuple[int, bool]]:
    """`claim_due_clusters`, with whether each failed its last sync or never answered: [(id, failing)], in one
    SELECT and one UPDATE."""
    with transaction.atomic():
        due = list(
            Cluster.objects.filter(Q(next_sync_at__lte=now) | Q(next_sync_at__isnull=True))
            .filter(leases.free(now))
            .filter(Q(sync_queued_at__isnull=True) | Q(sync_queued_at__lt=now - ExpressionWrapper(
                F("sync_interval") * timedelta(seconds=QUEUED_FOR_INTERVALS), output_field=DurationField())))
            .order_by("next_sync_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", "consecutive_failures", "last_seen_at")[:limit]
        )
        if due:
            interval = ExpressionWrapper(F("sync_interval") * timedelta(seconds=1), output_field=DurationField())
            Cluster.objects.filter(pk__in=[pk for pk, *_ in due]).update(next_sync_at=now + interval,
                                                                         sync_queued_at=now)
    return [(pk, failures > 0 or seen is None) for pk, failures, seen in due]


def queue_due_syncs(*, now=None) -> int:
    """Claim the due clusters and queue their syncs: the healthy ones SYNC_CHUNK to a task (`sync_many`), each that
    failed its last sync (or never answered) alone. A task the broker refused leaves its clusters unqueued, for the
    next claim. Returns the clusters claimed."""
    claimed = _claim(now or timezone.now(), 500)
    healthy = [pk for pk, failing in claimed if not failing]
    tasks: list[tuple[str, Any, list[int]]] = [
        ("inventory.tasks.sync_clusters", healthy[start:start + SYNC_CHUNK], healthy[start:start + SYNC_CHUNK])
        for start in range(0, len(healthy), SYNC_CHUNK)]
    tasks += [("inventory.tasks.sync_cluster", pk, [pk]) for pk, failing in claimed if failing]
    for name, argument, ids in tasks:
        if not enqueue(name, argument, what=f"sync of clusters {ids}"):
            Cluster.objects.filter(pk__in=ids).update(sync_queued_at=None)
    return len(claimed)


def backoff_seconds(failures: int, interval: int) -> float:
    """Exponential backoff with jitter for transient failures, never longer than the interval."""
    base = min(interval, 5 * 2 ** max(failures - 1, 0))
    return base * random.uniform(0.8, 1.2)


def mark_stale_clusters(*, now=None) -> int:
    """Clusters that answered before but have not been seen for N intervals become stale (one locking SELECT,
    one UPDATE and their History rows in one INSERT)."""
    now = now or timezone.now()
    intervals = settings.FLEETWEB_STALE_AFTER_INTERVALS
    silence = ExpressionWrapper(F("sync_interval") * timedelta(seconds=intervals), output_field=DurationField())
    reason = f"not seen for more than {intervals} sync intervals"
    with transaction.atomic():
        stale = list(
            Cluster.objects.filter(status__in=[ClusterStatus.CONNECTED, ClusterStatus.DEGRADED])
            .filter(Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=now - silence))
            .select_for_update(skip_locked=True).values_list("pk", "status"))
        if not stale:
            return 0
        Cluster.objects.filter(pk__in=[pk for pk, _ in stale]).update(
            status=ClusterStatus.STALE, status_reason=reason, status_changed_at=now, updated_at=now)
        history.record(*(history.status_change(pk, old, ClusterStatus.STALE, reason, at=now) for pk, old in stale))
    return len(stale)


# ---------------------------------------------------------------------------------------------
# One sync


# A sync asked for because the cluster reported a change (its agent saw it): it reads just the kinds that changed (the
# agent sends their lists along), and when another sync holds the cluster it runs after that one instead of being
# skipped, since the running one may have read before the change (inventory.tasks.sync_cluster).
SYNC_AFTER_CHANGE = "change"


class Held(Exception):
    """Another sync holds the cluster."""


def sync_cluster(cluster_id: int, *, triggered_by: str = "schedule") -> SyncRun | None:
    """Sync one cluster if no other sync holds it; returns the SyncRun (None when skipped)."""
    try:
        return sync_unless_held(cluster_id, triggered_by=triggered_by)
    except Held:
        return None


def gather_reported(cluster_id: int) -> None:
    """A registered cluster's agent reported changes with every list their sync needs (`agents.relay.report_changes`
    keeps them): write them within FLEETWEB_AGENT_REPORT_GATHER_MS, by one task for every cluster reported meanwhile
    (`sync_reported`). The agent's request is then a few milliseconds, whatever the write costs, and a burst of
    reports from one cluster is one write of the newest lists."""
    gather("inventory.tasks.sync_reported", [cluster_id], within=settings.FLEETWEB_AGENT_REPORT_GATHER_MS / 1000,
           what="the write of reported changes")


def sync_reported(cluster_ids: list[int] | None = None) -> int:
    """Write what the gathered clusters' agents reported (`gather_reported`; or `cluster_ids`, when Redis was away as
    they were gathered): REPORTED_CHUNK clusters here, the others as tasks of their own for the other worker threads.
    The chunk is one write: its leases taken in one statement, each cluster's reported lists read, then every
    cluster's rows in one transaction (one statement per table, not one sync each). A cluster another sync holds gets
    a sync of its own that waits for it (the holder may have read before the change). When the one write fails, each
    cluster is written alone, so one cluster's bad data never keeps the others' changes out. Returns the clusters
    taken."""
    ids = take_gathered("inventory.tasks.sync_reported") if cluster_ids is None else list(cluster_ids)
    for start in range(REPORTED_CHUNK, len(ids), REPORTED_CHUNK):
        enqueue("inventory.tasks.sync_reported", ids[start:start + REPORTED_CHUNK],
                what="the write of reported changes")
    if ids:
        sync_many(ids[:REPORTED_CHUNK], triggered_by=SYNC_AFTER_CHANGE)
    return len(ids)


def sync_many(cluster_ids: list[int], *, triggered_by: str = "schedule") -> int:
    """Sync these clusters as one task (`queue_due_syncs` gives SYNC_CHUNK healthy ones): their leases taken in one
    statement, the clusters read at once (`_reads_in_batches`), then written in one transaction (`_write_reads`;
    each alone if that fails; a slow one alone when it ends). A cluster another sync holds is skipped (that sync
    writes it), but a change's sync waits for the holder; a failure is its cluster's own. Returns the clusters
    synced or failed (`sync_reported` writes its chunk of reported changes with it too)."""
    try:
        token, taken = leases.take_many(Cluster, list(cluster_ids), LEASE)
    except Exception:  # the database away: a queued mark lapses (QUEUED_FOR_INTERVALS), the next report writes it
        log.exception("syncing clusters %s failed", cluster_ids)
        return 0
    with leases.kept(Cluster, list(taken), token, LEASE, longest=LONGEST):
        _write_taken(list(cluster_ids), taken, token, triggered_by=triggered_by)
    return len(taken)


# Clusters attached within this many seconds of each other have their first syncs together (`sync_attached`): a
# platform team attaching two thousand clusters through the API waits for two hundred writes, not two thousand.
ATTACH_GATHER = 1.0
SYNC_AFTER_ATTACH = "attach"


def first_sync(cluster_id: int) -> None:
    """Queue the first sync of a cluster just attached, with those of any attached meanwhile (`sync_attached`)."""
    gather("inventory.tasks.sync_attached", [cluster_id], within=ATTACH_GATHER, what="the first sync of clusters")


def sync_attached(cluster_ids: list[int] | None = None) -> int:
    """The first syncs of the clusters attached together (`first_sync`; or `cluster_ids`, when Redis was away as they
    were gathered): SYNC_CHUNK here (`sync_many`), the others as tasks of their own. Returns the clusters taken."""
    ids = take_gathered("inventory.tasks.sync_attached") if cluster_ids is None else list(cluster_ids)
    for start in range(SYNC_CHUNK, len(ids), SYNC_CHUNK):
        if not enqueue("inventory.tasks.sync_clusters", ids[start:start + SYNC_CHUNK], triggered_by=SYNC_AFTER_ATTACH,
                       what="the first sync of clusters"):
            Cluster.objects.filter(pk__in=ids[start:start + SYNC_CHUNK]).update(sync_queued_at=None)  # to beat
    if ids:
        sync_many(ids[:SYNC_CHUNK], triggered_by=SYNC_AFTER_ATTACH)
    return len(ids)


def _write_taken(mine: list[int], taken: dict[int, Cluster], token: str, *, triggered_by: str) -> None:
    """`sync_many`'s work on the clusters whose leases it took (`taken`, under `token`).
    A change's sync of a cluster another sync holds runs after that one (it may have read before the change)."""
    try:
        missing = [pk for pk in mine if pk not in taken]
        held = set(Cluster.objects.filter(pk__in=missing).values_list("pk", flat=True)) if missing else set()
        for cluster_id in missing:
            if cluster_id in held:  # (the others were detached)
                metrics.LEASE_CONTENTION.inc()
                if triggered_by != SYNC_AFTER_CHANGE:
                    log.info("sync of cluster %s skipped: another sync holds it", cluster_id)
                    continue
                log.info("sync of cluster %s waits: another sync holds it", cluster_id)
                enqueue("inventory.tasks.sync_cluster", cluster_id, triggered_by=SYNC_AFTER_CHANGE,
                        what=f"sync of cluster {cluster_id}")
        try:  # every agent's state in one read
            opened = port.openers(list(taken.values()))
        except Exception:  # then each alone, so that one cluster's failure is its own
            log.exception("preparing the members of clusters %s failed", list(taken))
            opened = {}
        for reads in _reads_in_batches(list(taken.values()), opened, triggered_by=triggered_by):
            try:
                _write_reads(reads)
            except Exception:
                log.exception("the gathered write of %d clusters failed; writing each alone", len(reads))
                for read in reads:
                    try:
                        _write_reads([read])
                    except Exception:
                        log.exception("writing the sync of cluster %s failed", read.cluster.pk)
    finally:  # what a write did not give back in its commit (one statement; nothing where all went back)
        leases.release(Cluster, list(taken), token)


REPORTED_CHUNK = 50


def sync_unless_held(cluster_id: int, *, triggered_by: str = "schedule") -> SyncRun | None:
    """Sync one cluster; Held when another sync holds it. None when there was nothing to sync: the cluster was
    detached, or a change's sync found what was reported written already (by the sync before it)."""
    taken = leases.take(Cluster, cluster_id, LEASE)
    if taken is None:
        if not Cluster.objects.filter(pk=cluster_id).exists():
            return None  # detached
        log.info("sync of cluster %s skipped: another sync holds it", cluster_id)
        metrics.LEASE_CONTENTION.inc()
        raise Held(cluster_id)
    token, cluster = taken
    try:
        with leases.kept(Cluster, cluster_id, token, LEASE, longest=LONGEST):
            read = _read(cluster, triggered_by=triggered_by)
            if not isinstance(read, _Read):
                return read  # a failure's run, or nothing to write
            return _write_reads([read]).get(cluster.pk)
    finally:
        if cluster.lease_token == token:  # not given back with the snapshot written
            leases.release(Cluster, cluster_id, token)


@dataclasses.dataclass
class _Read:
    """What one sync read from its cluster, to be written (`_write_reads`)."""

    cluster: Cluster
    run: SyncRun
    reading: float  # seconds spent reading this cluster (in a sync of many, the others' reads end at other times)
    snapshot: collector.Snapshot
    facts: readiness.Facts | None


def _read(cluster: Cluster, *, triggered_by: str, opener: port.Opener | None = None) -> _Read | SyncRun | None:
    """Read the cluster (or what its agent reported), opened by `opener` when it was prepared with others'; a
    failure is recorded and its run returned; None when a change's sync finds nothing left to read."""
    return _settle(_fetch(cluster, triggered_by=triggered_by, opener=opener))


@dataclasses.dataclass
class _Failed:
    """A read that failed, to be recorded (`_settle`)."""

    cluster: Cluster
    run: SyncRun
    error: port.KubeError
    clock: float
    bytes_read: int


def _settle(fetched: _Read | _Failed | None) -> _Read | SyncRun | None:
    """A failed read recorded (its run returned); anything else as it is."""
    if isinstance(fetched, _Failed):
        return _record_failure(fetched.cluster, fetched.run, fetched.error, fetched.clock,
                               bytes_read=fetched.bytes_read)
    return fetched


def _fetch(cluster: Cluster, *, triggered_by: str, opener: port.Opener | None = None) -> _Read | _Failed | None:
    """`_read` without the failure's record. With an `opener` it touches no database (a sync of many reads its direct
    clusters in threads of its own); without, the credentials are read first."""
    run = SyncRun(cluster=cluster, started_at=timezone.now(), triggered_by=triggered_by)
    clock = time.monotonic()
    member = None
    try:
        member = (opener or port.opener(cluster))()
        # What the cluster reported changed (its agent's watches): a change's sync reads just those kinds (and what
        # their folds need), from the lists the agent sent; any other sync drops them and reads everything.
        changed = member.take_changes(read_lists=triggered_by == SYNC_AFTER_CHANGE)
        only = kinds.closure(kinds.by_path(changed)) if triggered_by == SYNC_AFTER_CHANGE and changed is not None \
            else None
        if only is not None and not only:
            return None  # the sync before this one read what was reported
        due = only is None and readiness.due(cluster, triggered_by=triggered_by)
        if due:
            readiness.warm(member)  # asked for with the sync's own reads: one round trip through an agent
        snapshot = collector.fetch(member, only=only)
        facts = readiness.fetch(member) if due else None
        if facts is not None:  # kept beside the kinds' in the sync run
            snapshot.timings_ms.update(facts.timings_ms)
            snapshot.counts.update(facts.counts)
            snapshot.bytes_read = member.bytes_read
    except port.KubeError as exc:
        return _Failed(cluster, run, exc, clock, member.bytes_read if member else 0)
    except Exception as exc:  # a bug or bad data must not stop the next sync, only this one
        log.exception("sync of %s failed", cluster.name)
        error = port.KubeError("protocol", f"internal error during sync: {type(exc).__name__}: {exc}")
        return _Failed(cluster, run, error, clock, member.bytes_read if member else 0)
    finally:
        if member is not None:
            member.close()
    return _Read(cluster, run, time.monotonic() - clock, snapshot, facts)


# A sync of many reads its direct clusters at once; the reads done within READ_TOGETHER seconds are written together,
# each slower one alone as it ends (a cluster that hangs until its timeouts holds back no other's write).
READ_TOGETHER = 5.0


def _reads_in_batches(clusters: list[Cluster], opened: dict[int, port.Opener], *,
                      triggered_by: str) -> Iterator[list[_Read]]:
    """The reads of `clusters`, in the batches to write: the direct clusters that have an opener are read in threads
    (which touch no database), the others here, one after the other; failures are recorded here as they come."""
    threaded = [c for c in clusters if c.pk in opened and port.reached_by(c) == "direct"] if len(clusters) > 1 else []
    here = [c for c in clusters if c not in threaded]
    reads = []
    for cluster in here:
        reads += _settled([functools.partial(_fetch, cluster, triggered_by=triggered_by,
                                             opener=opened.get(cluster.pk))])
    if not threaded:
        yield reads
        return
    with ThreadPoolExecutor(max_workers=len(threaded), thread_name_prefix="sync-read") as pool:
        futures = [pool.submit(_fetch_in_thread, c, triggered_by=triggered_by, opener=opened[c.pk]) for c in threaded]
        done, pending = wait(futures, timeout=READ_TOGETHER)
        yield reads + _settled([future.result for future in done])
        for future in as_completed(pending):
            yield _settled([future.result])


def _fetch_in_thread(cluster: Cluster, *, triggered_by: str, opener: port.Opener) -> _Read | _Failed | None:
    """`_fetch` in a reader thread: a database connection opened there after all (by a change to what reading
    touches) is closed with it, not left to the server."""
    try:
        return _fetch(cluster, triggered_by=triggered_by, opener=opener)
    finally:
        db.connections.close_all()


def _settled(results: list[Callable[[], _Read | _Failed | None]]) -> list[_Read]:
    """The reads among `results` (each called here), the failures recorded (the database away while one was
    recorded: logged, the others go on)."""
    reads = []
    for result in results:
        try:
            settled = _settle(result())
        except Exception:
            log.exception("reading a cluster failed")
            continue
        if isinstance(settled, _Read):
            reads.append(settled)
    return reads


# The cluster row's columns every write sets; a full sync sets the next sync time and the version too.
WRITTEN_FIELDS = ("status", "status_reason", "status_changed_at", "last_error", "last_seen_at", "last_sync_at",
                  "consecutive_failures", "provider", "node_count", "ready_node_count", "namespace_count",
                  "workload_count", "unhealthy_workload_count", "pod_count", "problem_pod_count", "updated_at")


def _write_reads(reads: list[_Read]) -> dict[int, SyncRun]:
    """Write what the syncs read, in one transaction whatever their number: the rows of every cluster (one statement
    per table), the cluster rows, their runs (written once, with their outcome: nothing reads a run that has not
    finished) and history. Returns the runs written, by cluster id (a cluster detached meanwhile has none)."""
    if not reads:
        return {}
    writing = time.monotonic()
    with transaction.atomic():
        # Detached while it was being read: nothing to write to. The lock also makes a detach wait for this write.
        # In the order of their ids, as every gathered write takes them: two writes never wait for each other.
        locked = {pk: rest for pk, *rest in Cluster.objects.select_for_update().order_by("pk")
                  .filter(pk__in=[read.cluster.pk for read in reads])
                  .values_list("pk", *history.HISTORY_FIELDS, "last_error", "lease_token")}
        kept, before, holders = [], {}, {}
        for read in reads:
            cluster, snapshot = read.cluster, read.snapshot
            if cluster.pk not in locked:
                log.info("%s was detached during its sync; the snapshot is dropped", cluster.name)
                continue
            *stored, last_error, holders[cluster.pk] = locked[cluster.pk]
            before[cluster.pk] = dict(zip(history.HISTORY_FIELDS, stored, strict=True))  # as stored now
            if snapshot.only is not None:  # the errors of kinds this sync did not read stand until a sync reads them
                snapshot.errors = {**_kind_errors(last_error, keep_out=snapshot.only), **snapshot.errors}
            kept.append(read)
        write_snapshots([(read.cluster, read.snapshot) for read in kept])
        unread_pods = [read.cluster.pk for read in kept if "Pod" not in read.snapshot.complete]
        crashloops = dict(ProblemPod.objects.filter(cluster_id__in=unread_pods, reason="CrashLoopBackOff")
                          .values_list("cluster_id").annotate(n=Count("pk")).order_by()) if unread_pods else {}
        now = timezone.now()
        saves: dict[tuple[str, ...], list[Cluster]] = {}
        runs, events = [], []
        for read in kept:
            cluster, snapshot, run, facts = read.cluster, read.snapshot, read.run, read.facts
            status, reason = collector.health(
                snapshot, cluster.unhealthy_workload_count, nodes=(cluster.node_count, cluster.ready_node_count),
                crashloops=crashloops.get(cluster.pk, 0) if "Pod" not in snapshot.complete else None)
            if status != before[cluster.pk]["status"]:
                cluster.status_changed_at = now
            cluster.status = status
            cluster.status_reason = reason[:255]
            cluster.last_error = "\n".join(f"{k}: {v}" for k, v in sorted(snapshot.errors.items()))
            cluster.last_seen_at = now
            if snapshot.is_complete:
                cluster.last_sync_at = now
            cluster.consecutive_failures = 0
            also: list[str] = []
            holder = holders[cluster.pk]
            if holder and holder == cluster.lease_token:  # the lease goes back in the same commit
                cluster.lease_expires_at, cluster.lease_token = None, ""
                also += ["lease_expires_at", "lease_token"]
            if facts is not None:
                readiness.write(cluster, facts, now=now)
                also += ["readiness_checked_at", "readiness_error"]
            if snapshot.only is None:  # a change's sync leaves the next full sync where it was, and the version
                cluster.next_sync_at = now + timedelta(seconds=cluster.sync_interval)
                cluster.sync_queued_at = None
                also += ["next_sync_at", "sync_queued_at", "kubernetes_version", "platform"]
            saves.setdefault((*also, *WRITTEN_FIELDS), []).append(cluster)
            run.finished_at = now
            run.duration_ms = int((read.reading + time.monotonic() - writing) * 1000)
            run.outcome = SyncOutcome.SUCCEEDED if snapshot.read_all_it_meant else SyncOutcome.PARTIAL
            run.status = status
            run.counts = dict(snapshot.counts)
            run.timings_ms = dict(snapshot.timings_ms)
            run.bytes_read = snapshot.bytes_read
            run.error = cluster.last_error
            runs.append(run)
            events += history.sync_changes(cluster, before[cluster.pk], at=now)
        for fields, clusters in saves.items():
            bulk.update_rows(clusters, fields)
        SyncRun.objects.bulk_create(runs)
        history.record(*events)
        if kept:
            clusters_changed.send(sender=Cluster, cluster_ids=[read.cluster.pk for read in kept], reason="sync")
    return {run.cluster_id: run for run in runs}


def _kind_errors(last_error: str, *, keep_out: frozenset[str]) -> dict[str, str]:
    """The per-kind lines of a stored `last_error` ("Kind: message"), but those of `keep_out` (read again now);
    anything else in it (a failed sync's message) is over, since this sync reached the cluster."""
    out = {}
    for line in last_error.splitlines():
        name, sep, message = line.partition(": ")
        if sep and name in kinds.NAMES and name not in keep_out:
            out[name] = message
    return out


def _record_failure(cluster: Cluster, run: SyncRun, exc: port.KubeError, clock: float, *,
                    bytes_read: int) -> SyncRun | None:
    """Keep every inventory row; say why the cluster could not be synced; schedule a retry."""
    now = timezone.now()
    failures = cluster.consecutive_failures + 1
    delay = backoff_seconds(failures, cluster.sync_interval) if exc.transient else cluster.sync_interval
    fields = {"finished_at": now, "duration_ms": int((time.monotonic() - clock) * 1000),
              "outcome": SyncOutcome.FAILED, "status": exc.status, "error": exc.message, "bytes_read": bytes_read}
    for name, value in fields.items():
        setattr(run, name, value)
    with transaction.atomic():
        stored = list(Cluster.objects.select_for_update().filter(pk=cluster.pk).values_list("status", flat=True))
        if not stored:
            return None  # detached meanwhile: the run went with the cluster
        changed = {"status_changed_at": now} if stored[0] != exc.status else {}
        Cluster.objects.filter(pk=cluster.pk).update(
            status=exc.status, status_reason=exc.message[:255], last_error=exc.message,
            consecutive_failures=failures, next_sync_at=now + timedelta(seconds=delay), sync_queued_at=None,
            updated_at=now, **changed)
        run.save()
        if changed:
            history.record(history.status_change(cluster.pk, stored[0], exc.status, exc.message, at=now))
    log.warning("sync of %s failed (%s): %s", cluster.name, exc.kind, exc.message)
    return run


def _ts(value: str | None):
    return parse_datetime(value) if value else None


def _fingerprint(row: dict) -> str:
    return hashlib.blake2b(msgspec.json.encode(row), digest_size=16).hexdigest()


def _fields(model, exclude: tuple[str, ...] = ()) -> list[str]:
    skip = {"id", "cluster", "uid", "fingerprint", *exclude}
    return [f.name for f in model._meta.concrete_fields if f.name not in skip]


def write_snapshot(cluster: Cluster, snapshot: collector.Snapshot) -> None:
    """One cluster's `write_snapshots`."""
    write_snapshots([(cluster, snapshot)])


def write_snapshots(pairs: list[tuple[Cluster, collector.Snapshot]]) -> None:
    """Upsert every kind whose list completed; delete missing rows only when every list the sync set out to read
    completed (all of them, or those a change named). Pod counts reach the stored rows of workloads and namespaces
    whose own lists were not read this time. However many clusters, each table is read once and written once
    (`_Writes`), and the cluster rows' counters are updated in memory (saved by the caller)."""
    writes = _Writes()
    for cluster, snapshot in pairs:
        prune = snapshot.read_all_it_meant
        if "Node" in snapshot.complete:
            writes.add(Node, cluster, snapshot.nodes, prune=prune)
        if "Namespace" in snapshot.complete:
            rows, keep = _namespace_rows(snapshot)
            writes.add(Namespace, cluster, rows, prune=prune, keep=keep)
        pods_complete = "Pod" in snapshot.complete
        for kind in WorkloadKind.values:  # each workload kind whose list completed, with its pods' counts
            if kind in snapshot.complete:
                # Without the pods, the counts as stored: an unchanged row keeps its fingerprint.
                writes.add(Workload, cluster, _workload_rows(snapshot, kind), prune=prune, where={"kind": kind},
                           fill=() if pods_complete else WORKLOAD_POD_FIELDS)
        if pods_complete:
            writes.add(ProblemPod, cluster, snapshot.problem_pods, prune=prune)
        for stored_kind in kinds.stored():  # the kinds with a model of their own: the table says which
            if stored_kind.name in snapshot.complete:
                writes.add(apps.get_model("inventory", stored_kind.stored_as), cluster,
                           snapshot.rows.get(stored_kind.name, []), prune=prune)
    writes.run()
    _write_addons([(cluster, snapshot) for cluster, snapshot in pairs
                   if all(kind in snapshot.complete for kind in WorkloadKind.values)])
    _write_pod_counts([(cluster, snapshot) for cluster, snapshot in pairs if "Pod" in snapshot.complete])
    _update_counters(pairs)


class _Writes:
    """The rows of many clusters for each table, written together: per table (and the columns a cluster's rows keep
    or fill alike), one SELECT of what is stored, upserts of the rows that changed in batches of BATCH, one DELETE of
    the rows the clusters no longer have."""

    def __init__(self):
        self.groups: dict[tuple, list[tuple[Cluster, list[dict], bool]]] = {}

    def add(self, model, cluster: Cluster, rows: list[dict], *, prune: bool, where: dict | None = None,
            keep: tuple[str, ...] = (), fill: tuple[str, ...] = ()) -> None:
        """`rows` of `cluster` for `model` (those matching `where`), leaving the `keep` columns as stored. The `fill`
        columns, which the rows lack, are copied from the stored rows (0 for a new one) before the rows are compared.
        `prune`: delete the stored rows (matching `where`) that are not among `rows`."""
        key = (model, tuple(sorted((where or {}).items())), keep, fill)
        self.groups.setdefault(key, []).append((cluster, rows, prune))

    def run(self) -> None:
        for (model, where, keep, fill), members in self.groups.items():
            stored: dict[int, dict[str, tuple]] = {}
            for cluster_id, pk, uid, fingerprint, *values in model.objects.filter(
                    cluster_id__in=[cluster.pk for cluster, _rows, _prune in members], **dict(where)).values_list(
                    "cluster_id", "pk", "uid", "fingerprint", *fill):
                stored.setdefault(cluster_id, {})[uid] = (pk, fingerprint, values)
            changed, gone = [], []
            for cluster, rows, prune in members:
                mine = stored.get(cluster.pk, {})
                for row in rows:
                    if fill:
                        found = mine.get(row["uid"])
                        row.update(zip(fill, found[2], strict=True) if found else dict.fromkeys(fill, 0))
                    fingerprint = _fingerprint(row)
                    found = mine.get(row["uid"])
                    if found is None or found[1] != fingerprint:  # an unchanged row is not written
                        changed.append(model(cluster=cluster, fingerprint=fingerprint,
                                             **{**row, "created": _ts(row.get("created"))}))
                if prune:  # the rows the cluster no longer has
                    seen = {row["uid"] for row in rows}
                    gone += [pk for uid, (pk, _fingerprint, _values) in mine.items() if uid not in seen]
            update_fields = [*_fields(model, keep), "fingerprint"]
            for start in range(0, len(changed), BATCH):
                model.objects.bulk_create(changed[start:start + BATCH], update_conflicts=True,
                                          unique_fields=["cluster", "uid"], update_fields=update_fields)
            if gone:
                model.objects.filter(pk__in=gone).delete()


def _write_pod_counts(pairs: list[tuple[Cluster, collector.Snapshot]]) -> None:
    """The pod counts of stored workloads and namespaces whose lists these syncs (each of which read the pods) did
    not read (a change's sync of pods alone, or a list that failed): only the rows whose counts moved are updated."""
    if not pairs:
        return
    by_id = {cluster.pk: snapshot for cluster, snapshot in pairs}
    todo: list[tuple[Any, str, str, dict[str, str]]] = [(
        Workload.objects.filter(cluster_id__in=list(by_id)), "pods_by_workload", "uid", {
            "pods_total": "total", "pods_ready": "ready", "pods_pending": "pending",
            "pods_crashlooping": "crashlooping", "restarts": "restarts"})]
    unread_namespaces = [pk for pk, snapshot in by_id.items() if "Namespace" not in snapshot.complete]
    if unread_namespaces:
        todo.append((Namespace.objects.filter(cluster_id__in=unread_namespaces), "pods_by_namespace", "name",
                     {"pods_total": "total", "pods_running": "running", "pods_pending": "pending",
                      "pods_failed": "failed"}))
    for queryset, counted, key, fields in todo:
        moved = []
        for row in queryset.only("pk", "cluster_id", key, *fields, *(("kind",) if queryset.model is Workload else ())):
            snapshot = by_id[row.cluster_id]
            if queryset.model is Workload and row.kind in snapshot.complete:
                continue  # written with its own list
            found = getattr(snapshot, counted).get(getattr(row, key)) or collector.PodCounts()
            values = {field: getattr(found, attr) for field, attr in fields.items()}
            if any(getattr(row, field) != value for field, value in values.items()):
                for field, value in values.items():
                    setattr(row, field, value)
                row.fingerprint = ""  # no longer of what is stored: the next sync of its kind writes it
                moved.append(row)
        bulk.update_rows(moved, [*fields, "fingerprint"])


NAMESPACE_POD_FIELDS = ("pods_total", "pods_running", "pods_pending", "pods_failed")
WORKLOAD_POD_FIELDS = ("pods_total", "pods_ready", "pods_pending", "pods_crashlooping", "restarts")


def _namespace_rows(snapshot: collector.Snapshot) -> tuple[list[dict], tuple[str, ...]]:
    """Namespaces with their pod counts, quotas and limit ranges, and the columns kept as stored (a count whose list
    failed keeps its stored value)."""
    rows = snapshot.namespaces
    keep: tuple[str, ...] = ()
    if "Pod" in snapshot.complete:
        for row in rows:
            counts = snapshot.pods_by_namespace.get(row["name"]) or collector.PodCounts()
            row.update(pods_total=counts.total, pods_running=counts.running, pods_pending=counts.pending,
                       pods_failed=counts.failed)
    else:
        keep += NAMESPACE_POD_FIELDS
    for kind, field, counter in (("ResourceQuota", "resource_quotas", snapshot.quotas_by_namespace),
                                 ("LimitRange", "limit_ranges", snapshot.limit_ranges_by_namespace)):
        if kind in snapshot.complete:
            for row in rows:
                row[field] = counter.get(row["name"], 0)
        else:
            keep += (field,)
    return rows, keep


def _workload_rows(snapshot: collector.Snapshot, kind: str) -> list[dict]:
    """One workload kind's rows, with its pods' counts when the pod list completed too."""
    rows = snapshot.workloads.get(kind, [])
    if "Pod" in snapshot.complete:
        for row in rows:
            counts = snapshot.pods_by_workload.get(row["uid"]) or collector.PodCounts()
            row.update(pods_total=counts.total, pods_ready=counts.ready, pods_pending=counts.pending,
                       pods_crashlooping=counts.crashlooping, restarts=counts.restarts)
    return rows


ADDON_FIELDS = ("addon", "version", "namespace", "workload", "kind", "image")


def _write_addons(pairs: list[tuple[Cluster, collector.Snapshot]]) -> None:
    """The add-ons the workloads run (inventory/addons.py), rewritten for the clusters where they changed."""
    if not pairs:
        return
    stored: dict[int, list[dict]] = {}
    for row in ClusterAddon.objects.filter(cluster_id__in=[cluster.pk for cluster, _ in pairs]).order_by(
            "cluster_id", "addon", "namespace", "workload").values("cluster_id", *ADDON_FIELDS):
        stored.setdefault(row.pop("cluster_id"), []).append(row)
    rewritten, fresh = [], []
    for cluster, snapshot in pairs:
        found = addons.detect(row for rows in snapshot.workloads.values() for row in rows)
        if stored.get(cluster.pk, []) != found:
            rewritten.append(cluster.pk)
            fresh += [ClusterAddon(cluster=cluster, **row) for row in found]
    if rewritten:
        ClusterAddon.objects.filter(cluster_id__in=rewritten).delete()
        ClusterAddon.objects.bulk_create(fresh)


def _update_counters(pairs: list[tuple[Cluster, collector.Snapshot]]) -> None:
    """The cluster rows' version, provider and counters (saved by the caller): the workload counters of every
    cluster in one aggregate (the sync's hot path), by the one "unavailable" rule. `workload_count` is counted from
    the table in the transaction that wrote its rows: the workloads API counts an unfiltered list by it."""
    counted = {row["cluster_id"]: row for row in Workload.objects.filter(cluster_id__in=[c.pk for c, _ in pairs])
               .values("cluster_id").annotate(total=Count("pk"), unavailable=Count("pk", filter=UNAVAILABLE))
               .order_by()}
    for cluster, snapshot in pairs:
        complete = snapshot.complete
        version = snapshot.version
        if version:  # a change's sync does not read it
            cluster.kubernetes_version = version.get("gitVersion", "")[:64]
            cluster.platform = version.get("platform", "")[:64]
        if snapshot.node_providers:
            cluster.provider = nodefacts.cluster_provider(dict(snapshot.node_providers))
        if "Node" in complete:
            cluster.node_count = len(snapshot.nodes)
            cluster.ready_node_count = sum(1 for n in snapshot.nodes if n["ready"])
        if "Namespace" in complete:
            cluster.namespace_count = len(snapshot.namespaces)
        counts = counted.get(cluster.pk, {"total": 0, "unavailable": 0})
        cluster.workload_count, cluster.unhealthy_workload_count = counts["total"], counts["unavailable"]
        if "Pod" in complete:
            cluster.pod_count = snapshot.pod_total
            cluster.problem_pod_count = len(snapshot.problem_pods)
