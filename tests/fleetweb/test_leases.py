"""The one lease (foundation/leases.py), as syncs and rollout runs use it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from foundation import leases
from inventory import sync
from inventory.models import Cluster
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db
MINUTE = timedelta(minutes=1)


def test_a_held_lease_cannot_be_taken_and_an_expired_one_can():
    cluster = make_cluster("c1")
    first = leases.acquire(Cluster, cluster.pk, MINUTE)
    assert first and leases.acquire(Cluster, cluster.pk, MINUTE) is None
    Cluster.objects.filter(pk=cluster.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = leases.acquire(Cluster, cluster.pk, MINUTE)
    assert second and second != first


def test_a_run_that_outlived_its_lease_can_neither_renew_nor_release_the_new_holders():
    cluster = make_cluster("c1")
    stale = leases.acquire(Cluster, cluster.pk, MINUTE)
    Cluster.objects.filter(pk=cluster.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    current = leases.acquire(Cluster, cluster.pk, MINUTE)
    held_until = Cluster.objects.get(pk=cluster.pk).lease_expires_at
    assert not leases.renew(Cluster, cluster.pk, stale, timedelta(hours=1))
    leases.release(Cluster, cluster.pk, stale)
    row = Cluster.objects.get(pk=cluster.pk)
    assert (row.lease_token, row.lease_expires_at) == (current, held_until), "the new holder keeps its lease"
    assert sync.sync_cluster(cluster.pk) is None, "and a sync still sees the cluster as held"
    leases.release(Cluster, cluster.pk, current)
    row.refresh_from_db()
    assert (row.lease_token, row.lease_expires_at) == ("", None)


def test_take_returns_the_row_as_taken_in_one_statement(django_assert_num_queries):
    cluster = make_cluster("c1", labels={"team": "shop"})
    with django_assert_num_queries(1):
        token, row = leases.take(Cluster, cluster.pk, MINUTE)
    assert isinstance(row, Cluster) and row.pk == cluster.pk and row.labels == {"team": "shop"}
    assert row.lease_token == token and row.lease_expires_at > timezone.now()
    assert leases.take(Cluster, cluster.pk, MINUTE) is None  # held
    assert leases.take(Cluster, cluster.pk + 1000, MINUTE) is None  # no such row



@pytest.mark.django_db(transaction=True)
def test_a_kept_lease_outlives_its_duration_while_its_run_goes_on_and_expires_once_the_run_stops():
    """A sync's lease is short and renewed while it runs: a killed worker's clusters are free again within one
    lease, not after the longest sync."""
    import time

    cluster = make_cluster("kept")
    short = timedelta(seconds=1.5)
    token = leases.acquire(Cluster, cluster.pk, short)
    with leases.kept(Cluster, cluster.pk, token, short, longest=timedelta(minutes=1)):
        time.sleep(3.2)  # two durations: renewed at each third of one
        assert leases.acquire(Cluster, cluster.pk, short) is None, "still held while the run goes on"
        renewed = Cluster.objects.get(pk=cluster.pk).lease_expires_at
    time.sleep(2)  # the run stopped renewing (as a killed process would): the lease runs out
    assert Cluster.objects.get(pk=cluster.pk).lease_expires_at == renewed
    assert leases.acquire(Cluster, cluster.pk, short), "free for the next run within one duration"


@pytest.mark.django_db(transaction=True)
def test_a_run_that_never_ends_is_renewed_only_until_its_longest():
    import time

    cluster = make_cluster("hung")
    short = timedelta(seconds=1.2)
    token = leases.acquire(Cluster, cluster.pk, short)
    with leases.kept(Cluster, cluster.pk, token, short, longest=timedelta(seconds=1.5)):
        time.sleep(3.5)  # a hung call: past its longest, no longer renewed
        assert leases.acquire(Cluster, cluster.pk, short), "another run takes the hung run's rows"
    assert not leases.renew(Cluster, cluster.pk, token, short), "and the hung run's token holds nothing"
