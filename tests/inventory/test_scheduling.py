"""Scheduling: due clusters are claimed once, a cluster is never synced twice at once, backoff, staleness."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from inventory import services, sync
from inventory.choices import ClusterStatus
from inventory.models import Cluster, SyncRun
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


def test_due_clusters_are_claimed_once_and_pushed_an_interval_ahead():
    now = timezone.now()
    due = make_cluster("due", next_sync_at=now - timedelta(seconds=1))
    make_cluster("later", next_sync_at=now + timedelta(seconds=30))
    held = make_cluster("held", next_sync_at=now - timedelta(seconds=1), lease_expires_at=now + timedelta(seconds=60))
    assert sync.claim_due_clusters(now=now) == [due.pk]
    assert sync.claim_due_clusters(now=now) == []
    due.refresh_from_db()
    assert due.next_sync_at == now + timedelta(seconds=due.sync_interval)
    held.refresh_from_db()
    assert held.next_sync_at < now


def test_a_queued_cluster_is_not_queued_again_until_its_sync_has_written():
    """A backlog longer than the interval must not fill with second syncs of clusters still waiting for their
    first: the claim marks the cluster queued, its sync's write (here a failure's) clears the mark."""
    now = timezone.now()
    cluster = make_cluster("queued", server="https://127.0.0.1:1", next_sync_at=now - timedelta(seconds=1))
    assert sync.claim_due_clusters(now=now) == [cluster.pk]
    later = now + timedelta(seconds=cluster.sync_interval + 1)
    assert sync.claim_due_clusters(now=later) == [], "due again, but its queued sync has not run"
    cluster.refresh_from_db()
    assert cluster.sync_queued_at == now and cluster.next_sync_at == now + timedelta(seconds=cluster.sync_interval)
    run = sync.sync_cluster(cluster.pk)  # the queued sync runs (and fails: nothing listens there)
    assert run is not None and run.outcome == "failed"
    cluster.refresh_from_db()
    assert cluster.sync_queued_at is None
    assert sync.claim_due_clusters(now=cluster.next_sync_at + timedelta(seconds=1)) == [cluster.pk]


def test_a_sync_queued_and_never_run_is_taken_as_lost_after_a_while():
    now = timezone.now()
    cluster = make_cluster("lost", next_sync_at=now - timedelta(seconds=1))
    assert sync.claim_due_clusters(now=now) == [cluster.pk]
    lost_after = timedelta(seconds=cluster.sync_interval * sync.QUEUED_FOR_INTERVALS)
    assert sync.claim_due_clusters(now=now + lost_after - timedelta(seconds=1)) == []
    assert sync.claim_due_clusters(now=now + lost_after + timedelta(seconds=1)) == [cluster.pk]


def test_healthy_due_clusters_are_queued_ten_to_a_task_and_failing_or_new_ones_alone(monkeypatch):
    now = timezone.now()
    ago = now - timedelta(seconds=1)
    healthy = [make_cluster(f"ok-{i:02d}", next_sync_at=ago) for i in range(sync.SYNC_CHUNK + 3)]
    failing = make_cluster("failing", next_sync_at=ago, consecutive_failures=2, status=ClusterStatus.UNREACHABLE)
    new = make_cluster("new", next_sync_at=ago)
    Cluster.objects.filter(pk=new.pk).update(last_seen_at=None)  # attached, never answered yet
    sent = []
    monkeypatch.setattr(sync, "enqueue", lambda name, *args, what, **kwargs: sent.append((name, args)) or True)
    assert sync.queue_due_syncs(now=now) == len(healthy) + 2
    chunks = [args[0] for name, args in sent if name == "inventory.tasks.sync_clusters"]
    assert [len(chunk) for chunk in chunks] == [sync.SYNC_CHUNK, 3]
    assert sorted(pk for chunk in chunks for pk in chunk) == sorted(c.pk for c in healthy)
    assert sorted(args for name, args in sent if name == "inventory.tasks.sync_cluster") == sorted(
        [(failing.pk,), (new.pk,)])
    assert sync.queue_due_syncs(now=now) == 0, "queued once"


def test_a_task_the_broker_refused_leaves_its_clusters_to_the_next_claim(monkeypatch):
    now = timezone.now()
    cluster = make_cluster("refused", next_sync_at=now - timedelta(seconds=1))
    monkeypatch.setattr(sync, "enqueue", lambda name, *args, what, **kwargs: False)
    assert sync.queue_due_syncs(now=now) == 1
    cluster.refresh_from_db()
    assert cluster.sync_queued_at is None
    later = now + timedelta(seconds=cluster.sync_interval + 1)
    assert sync.claim_due_clusters(now=later) == [cluster.pk], "claimed again when due, not after QUEUED_FOR"


def test_a_held_lease_skips_the_sync():
    cluster = make_cluster("busy", lease_expires_at=timezone.now() + timedelta(seconds=60))
    assert sync.sync_cluster(cluster.pk) is None
    assert not SyncRun.objects.filter(cluster=cluster).exists()


def test_an_expired_lease_is_taken_over_and_released():
    cluster = make_cluster("crashed-worker", server="https://127.0.0.1:1",
                           lease_expires_at=timezone.now() - timedelta(seconds=1))
    run = sync.sync_cluster(cluster.pk)
    assert run is not None and run.outcome == "failed"
    cluster.refresh_from_db()
    assert cluster.lease_expires_at is None
    assert cluster.status == ClusterStatus.UNREACHABLE


def test_backoff_grows_with_jitter_and_never_exceeds_the_interval():
    for failures, low, high in ((1, 4, 6), (2, 8, 12), (3, 16, 24)):
        assert low <= sync.backoff_seconds(failures, 60) <= high
    assert sync.backoff_seconds(10, 60) <= 72  # capped at the interval (+20% jitter)


def test_transient_failures_retry_sooner_than_the_interval():
    cluster = make_cluster("flaky", server="https://127.0.0.1:1", sync_interval=300)
    run = sync.sync_cluster(cluster.pk)
    cluster.refresh_from_db()
    assert cluster.consecutive_failures == 1
    assert (cluster.next_sync_at - run.finished_at).total_seconds() < 10


def test_clusters_not_seen_for_n_intervals_become_stale():
    old = make_cluster("old")
    Cluster.objects.filter(pk=old.pk).update(last_seen_at=timezone.now() - timedelta(minutes=10))
    fresh = make_cluster("fresh")
    assert sync.mark_stale_clusters() == 1
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.status == ClusterStatus.STALE and "3 sync intervals" in old.status_reason
    assert fresh.status == ClusterStatus.CONNECTED


@pytest.mark.parametrize("outcome", ["read", "failed"])
def test_a_cluster_detached_during_its_sync_is_dropped_quietly(monkeypatch, admin_user, outcome):
    """A sync of a big cluster reads for a minute; a detach meanwhile must not make it fail writing rows
    (or its run) for a cluster that is gone."""
    from inventory import collector, port
    from tests.fakemember import FakeMembers

    cluster = make_cluster("leaving")

    def fetch_while_detached(member, *, only=None):
        services.detach_cluster(Cluster.objects.get(pk=cluster.pk), user=admin_user)
        if outcome == "failed":
            raise port.KubeError("refused", "connection refused")
        snapshot = collector.Snapshot()
        snapshot.nodes.append({"uid": "n1", "name": "n1"})
        return snapshot

    FakeMembers().install(monkeypatch)
    monkeypatch.setattr(sync.collector, "fetch", fetch_while_detached)
    assert sync.sync_cluster(cluster.pk) is None
    assert not Cluster.objects.filter(pk=cluster.pk).exists()
    assert not SyncRun.objects.exists()



def test_an_attached_cluster_is_queued_once_for_its_first_sync(monkeypatch, django_capture_on_commit_callbacks):
    gathered = []
    monkeypatch.setattr(sync, "gather", lambda name, ids, *, within, what: gathered.append((name, ids)))
    with django_capture_on_commit_callbacks(execute=True):
        cluster = services.attach_cluster(name="first", user=None, credentials={
            "method": "token", "server": "https://127.0.0.1:1", "ca_data": "", "token": "x"})
    assert gathered == [("inventory.tasks.sync_attached", [cluster.pk])]
    assert sync.claim_due_clusters(now=timezone.now() + timedelta(seconds=1)) == [], "beat leaves it to that sync"
    assert sync.sync_attached([cluster.pk]) == 1
    run = SyncRun.objects.get(cluster=cluster)
    assert run.triggered_by == "attach" and run.outcome == "failed"
    cluster.refresh_from_db()
    assert cluster.sync_queued_at is None


def test_clusters_attached_together_have_their_first_syncs_ten_to_a_task(monkeypatch):
    clusters = [make_cluster(f"bulk-{i:02d}", server="https://127.0.0.1:1") for i in range(sync.SYNC_CHUNK * 2 + 1)]
    ids = [c.pk for c in clusters]
    Cluster.objects.filter(pk__in=ids).update(sync_queued_at=timezone.now())
    sent = []
    monkeypatch.setattr(sync, "enqueue", lambda name, *args, what, **kwargs: sent.append((name, args, kwargs)) or True)
    assert sync.sync_attached(ids) == len(ids)
    assert sent == [("inventory.tasks.sync_clusters", (ids[10:20],), {"triggered_by": "attach"}),
                    ("inventory.tasks.sync_clusters", (ids[20:],), {"triggered_by": "attach"})]
    assert set(SyncRun.objects.values_list("cluster_id", flat=True)) == set(ids[:10]), "the first ten here"


def test_first_syncs_the_broker_refused_are_left_to_beat(monkeypatch):
    clusters = [make_cluster(f"refused-{i:02d}", server="https://127.0.0.1:1") for i in range(sync.SYNC_CHUNK + 1)]
    ids = [c.pk for c in clusters]
    now = timezone.now()
    Cluster.objects.filter(pk__in=ids).update(sync_queued_at=now, next_sync_at=now)
    monkeypatch.setattr(sync, "enqueue", lambda name, *args, what, **kwargs: False)
    sync.sync_attached(ids)
    assert sync.claim_due_clusters(now=now + timedelta(seconds=1)) == [ids[-1]]
