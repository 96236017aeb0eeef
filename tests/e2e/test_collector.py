"""End to end on real member clusters: attach, sync through a real worker, compare with the apiserver,
and the failure rules (unreachable, revoked token, partial lists, 410 restarts, slow clusters)."""

from __future__ import annotations

import re
import threading
import time

import pytest
import yaml
from django.conf import settings
from django.utils import timezone
from kubernetes import client as k8s

from inventory import access, collector, kube, services, sync
from inventory.choices import ClusterStatus, SyncOutcome
from inventory.models import Cluster, Namespace, Node, SyncRun, Workload
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _apiserver_inventory(member) -> dict:
    """What the member's apiserver itself lists, as admin."""
    with member.admin_api() as api:
        core, apps, batch = k8s.CoreV1Api(api), k8s.AppsV1Api(api), k8s.BatchV1Api(api)
        workloads = set()
        for kind, items in (("Deployment", apps.list_deployment_for_all_namespaces().items),
                            ("StatefulSet", apps.list_stateful_set_for_all_namespaces().items),
                            ("DaemonSet", apps.list_daemon_set_for_all_namespaces().items),
                            ("Job", batch.list_job_for_all_namespaces().items),
                            ("CronJob", batch.list_cron_job_for_all_namespaces().items)):
            workloads |= {(kind, o.metadata.namespace, o.metadata.name) for o in items}
        return {
            "nodes": {n.metadata.name for n in core.list_node().items},
            "namespaces": {n.metadata.name for n in core.list_namespace().items},
            "workloads": workloads,
            "pods": len(core.list_pod_for_all_namespaces().items),
            "version": k8s.VersionApi(api).get_code().git_version,
        }


def _stored_inventory(cluster: Cluster) -> dict:
    cluster.refresh_from_db()
    return {
        "nodes": set(Node.objects.filter(cluster=cluster).values_list("name", flat=True)),
        "namespaces": set(Namespace.objects.filter(cluster=cluster).values_list("name", flat=True)),
        "workloads": set(Workload.objects.filter(cluster=cluster).values_list("kind", "namespace", "name")),
        "pods": cluster.pod_count,
        "version": cluster.kubernetes_version,
    }


def test_attach_via_api_syncs_and_matches_the_apiserver(localfleet_members, celery_worker, api_as, operator):
    """POST /api/v1/clusters/ with server + CA + the least-privilege token; the worker syncs it."""
    member = next(iter(localfleet_members.values()))
    response = api_as(operator).post("/api/v1/clusters/", {
        "name": "api-attached", "environment": "staging", "region": "eu-west-1", "owner": "platform",
        "labels": {"tier": "web"}, "server": member.server, "ca_data": member.ca_pem, "token": member.reader_token,
    }, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert "token" not in body and "ca_data" not in body
    cluster = Cluster.objects.get(name="api-attached")
    wait_for(lambda: SyncRun.objects.filter(cluster=cluster, outcome=SyncOutcome.SUCCEEDED).exists(),
             what="first successful sync")
    stored, actual = _stored_inventory(cluster), _apiserver_inventory(member)
    assert stored == actual
    assert cluster.status == ClusterStatus.CONNECTED
    assert cluster.provider == "aws"
    assert cluster.node_count == cluster.ready_node_count == len(actual["nodes"])
    # The counter the workloads API counts an unfiltered list by, written with the rows.
    assert cluster.workload_count == len(actual["workloads"]) > 0
    assert api_as(operator).get("/api/v1/workloads/").json()["count"] == len(actual["workloads"])
    detail = api_as(operator).get(f"/api/v1/clusters/{cluster.pk}/").json()
    assert detail["kubernetes_version"] == member.version
    assert detail["status"] == "connected"
    assert detail["node_count"] == len(actual["nodes"])


def test_attach_via_kubeconfig_with_client_certificate(localfleet_members, celery_worker, api_as, operator):
    """A kubeconfig (admin client certificate) for each member; both Kubernetes versions are read right."""
    for member in localfleet_members.values():
        kubeconfig = yaml.safe_dump(member.admin_kubeconfig)
        response = api_as(operator).post("/api/v1/clusters/", {"name": f"kc-{member.name}", "kubeconfig": kubeconfig},
                                         format="json")
        assert response.status_code == 201, response.json()
    for member in localfleet_members.values():
        cluster = Cluster.objects.get(name=f"kc-{member.name}")
        wait_for(lambda c=cluster: SyncRun.objects.filter(cluster=c, outcome=SyncOutcome.SUCCEEDED).exists(),
                 what=f"sync of {cluster.name} (runs: "
                      f"{list(SyncRun.objects.filter(cluster=cluster).values_list('outcome', 'error'))})")
        assert _stored_inventory(cluster) == _apiserver_inventory(member)
    versions = set(Cluster.objects.filter(name__startswith="kc-").values_list("kubernetes_version", flat=True))
    assert len({v.rsplit(".", 1)[0] for v in versions}) >= 2, versions


def test_connection_test_reports_success_and_missing_permissions(member):
    report = access.test_connection(member.token_credentials())
    assert report.ok, report.checks
    assert report.version == member.version
    assert [c.name for c in report.checks][1:] == [
        "list nodes", "list namespaces", "list deployments.apps", "list statefulsets.apps", "list daemonsets.apps",
        "list replicasets.apps", "list cronjobs.batch", "list jobs.batch", "list pods", "list resourcequotas",
        "list limitranges", "manage validatingadmissionpolicies (enforce mode, optional)",
        "apply application objects (rollouts, Re-apply and drift correction, optional)",
        "get /metrics (upgrade readiness, optional)",
        "list customresourcedefinitions.apiextensions.k8s.io (upgrade readiness, optional)"]
    assert all(c.ok for c in report.checks[-4:]), "the seeded reader holds the enforcer, deployer, readiness rules"
    with member.admin_api() as api:
        assert report.kube_system_uid == k8s.CoreV1Api(api).read_namespace("kube-system").metadata.uid
    # The read-only manifest (the attach page's default): attachable, and the test says what it leaves out.
    with member.admin_api() as api:
        core, rbac = k8s.CoreV1Api(api), k8s.RbacAuthorizationV1Api(api)
        try:
            core.create_namespaced_service_account("default", {"metadata": {"name": "read-only"}})
            rbac.create_cluster_role_binding({
                "metadata": {"name": "read-only-test"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fleetweb-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "read-only", "namespace": "default"}]})
        except k8s.ApiException as exc:
            assert exc.status == 409
        read_only = core.create_namespaced_service_account_token(
            "read-only", "default", {"spec": {"expirationSeconds": 3600}}).status.token
    report = access.test_connection({**member.token_credentials(), "token": read_only})
    assert report.ok, report.checks
    details = {c.name.split(" (")[0]: c.detail for c in report.checks if not c.ok}
    assert set(details) == {"manage validatingadmissionpolicies", "apply application objects"}, details
    assert "rollouts to this cluster fail" in details["apply application objects"]
    assert "enforce-mode policies will fail" in details["manage validatingadmissionpolicies"]
    # A token of a ServiceAccount without the ClusterRole: every list check fails with the resource named.
    with member.admin_api() as api:
        core = k8s.CoreV1Api(api)
        try:
            core.create_namespaced_service_account("default", {"metadata": {"name": "nobody"}})
        except k8s.ApiException as exc:
            assert exc.status == 409
        token = core.create_namespaced_service_account_token(
            "nobody", "default", {"spec": {"expirationSeconds": 3600}}).status.token
    report = access.test_connection({**member.token_credentials(), "token": token})
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert len(failed) == 11
    assert "403: not allowed to list nodes" in failed[0].detail
    assert any("deployments in API group 'apps'" in c.detail for c in failed)


def test_clusters_due_together_are_read_in_turn_and_written_in_one_transaction(localfleet_members, db):
    """`sync_many` (healthy clusters due together, SYNC_CHUNK to a task): every member's inventory as its API server
    lists it, one INSERT of their runs; a cluster that fails among them is its own failure and the others are
    written; every queued mark is cleared."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    members = list(localfleet_members.values())
    clusters = [services.attach_cluster(name=f"together-{m.name}", credentials=m.token_credentials(), user=None)
                for m in members]
    down = services.attach_cluster(name="together-down", user=None, credentials={
        "method": "token", "server": "https://127.0.0.1:1", "ca_data": members[0].ca_pem, "token": "x"})
    ids = [c.pk for c in clusters] + [down.pk]
    Cluster.objects.filter(pk__in=ids).update(sync_queued_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        assert sync.sync_many(ids) == len(ids)
    run_inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "inventory_syncrun"')]
    assert len(run_inserts) == 2, "the healthy clusters' runs in one statement, the failure's alone"
    for cluster, member in zip(clusters, members, strict=True):
        run = SyncRun.objects.get(cluster=cluster)
        assert run.outcome == SyncOutcome.SUCCEEDED and run.triggered_by == "schedule"
        assert _stored_inventory(cluster) == _apiserver_inventory(member)
        assert cluster.status in (ClusterStatus.CONNECTED, ClusterStatus.DEGRADED)  # (answered: members vary)
        assert cluster.last_sync_at is not None and cluster.sync_queued_at is None
    down.refresh_from_db()
    assert SyncRun.objects.get(cluster=down).outcome == SyncOutcome.FAILED
    assert down.status == ClusterStatus.UNREACHABLE and down.sync_queued_at is None


def test_a_cluster_that_hangs_holds_back_no_other_write_in_a_sync_of_many(localfleet_members, db, monkeypatch):
    """The reads of a sync of many run at once; those done within READ_TOGETHER are written together, a cluster that
    hangs until its connect timeout is written alone when it ends."""
    import socket

    monkeypatch.setattr(sync, "READ_TOGETHER", 1.0)
    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(8)  # accepts (in the backlog) and never answers the TLS handshake
    members = list(localfleet_members.values())
    try:
        slow = services.attach_cluster(name="many-hangs", user=None, credentials={
            "method": "token", "server": f"https://127.0.0.1:{hanging.getsockname()[1]}",
            "ca_data": members[0].ca_pem, "token": "x"})
        healthy = [services.attach_cluster(name=f"many-{m.name}", credentials=m.token_credentials(), user=None)
                   for m in members]
        started = time.monotonic()
        assert sync.sync_many([slow.pk] + [c.pk for c in healthy]) == len(healthy) + 1
        elapsed = time.monotonic() - started
    finally:
        hanging.close()
    failed = SyncRun.objects.get(cluster=slow)
    assert failed.outcome == SyncOutcome.FAILED
    connect = settings.FLEETWEB_KUBE_CONNECT_TIMEOUT
    assert failed.error == f"GET /version: no TLS handshake within {connect}s (connect timeout)"
    for cluster in healthy:
        run = SyncRun.objects.get(cluster=cluster)
        assert run.outcome == SyncOutcome.SUCCEEDED
        assert (failed.finished_at - run.finished_at).total_seconds() > 2, "written before the hanging one ended"
    assert elapsed < settings.FLEETWEB_KUBE_CONNECT_TIMEOUT + 5, "the reads ran at once"


def test_a_cluster_another_sync_holds_is_skipped_by_a_sync_of_many(member, db):
    from foundation import leases

    held = services.attach_cluster(name="held-by-another", credentials=member.token_credentials(), user=None)
    free = services.attach_cluster(name="free-of-others", credentials=member.token_credentials(), user=None)
    token = leases.acquire(Cluster, held.pk, sync.LEASE)
    try:
        assert sync.sync_many([held.pk, free.pk]) == 1
    finally:
        leases.release(Cluster, held.pk, token)
    assert not SyncRun.objects.filter(cluster=held).exists(), "the holder writes it"
    assert SyncRun.objects.get(cluster=free).outcome == SyncOutcome.SUCCEEDED


def test_stopped_apiserver_keeps_inventory_and_shows_unreachable(member, db):
    cluster = services.attach_cluster(name="will-stop", credentials=member.token_credentials(), user=None)
    first = sync.sync_cluster(cluster.pk)
    assert first.outcome == SyncOutcome.SUCCEEDED
    nodes_before = Node.objects.filter(cluster=cluster).count()
    workloads_before = Workload.objects.filter(cluster=cluster).count()
    member.stop_apiserver()
    try:
        run = sync.sync_cluster(cluster.pk)
    finally:
        member.start_apiserver()
    cluster.refresh_from_db()
    assert run.outcome == SyncOutcome.FAILED
    assert cluster.status == ClusterStatus.UNREACHABLE
    assert "connection refused" in cluster.last_error
    assert Node.objects.filter(cluster=cluster).count() == nodes_before > 0
    assert Workload.objects.filter(cluster=cluster).count() == workloads_before > 0
    assert not cluster.is_healthy
    # Back up: the next sync reconnects.
    assert sync.sync_cluster(cluster.pk).outcome == SyncOutcome.SUCCEEDED
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.CONNECTED


def test_revoked_token_shows_unauthorized_and_is_not_retried_quickly(member, db):
    cluster = services.attach_cluster(name="revoked", credentials=member.token_credentials(), user=None)
    assert sync.sync_cluster(cluster.pk).outcome == SyncOutcome.SUCCEEDED
    member.revoke_token()
    try:
        run = wait_for(lambda: (r := sync.sync_cluster(cluster.pk)) and r.status == ClusterStatus.UNAUTHORIZED
                       and r, timeout=30, what="401 after revoking the token")
    finally:
        token = member.restore_token()
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.UNAUTHORIZED
    assert "401" in run.error
    assert Node.objects.filter(cluster=cluster).exists()
    # 401 is not transient: the next attempt waits a full interval, not a short backoff.
    assert (cluster.next_sync_at - run.finished_at).total_seconds() >= cluster.sync_interval - 1
    services.update_cluster(cluster, user=None, credentials={**member.token_credentials(), "token": token})
    assert sync.sync_cluster(cluster.pk).outcome == SyncOutcome.SUCCEEDED


def test_list_failing_half_way_deletes_nothing(member, db, monkeypatch):
    cluster = services.attach_cluster(name="half-way", credentials=member.token_credentials(), user=None)
    assert sync.sync_cluster(cluster.pk).outcome == SyncOutcome.SUCCEEDED
    counts = {m: m.objects.filter(cluster=cluster).count() for m in (Node, Namespace, Workload)}
    real_paged_list = kube.paged_list

    def failing_pods(session, path, **kwargs):
        # Pods: the first page arrives, then the connection dies, as a real outage would.
        pages = real_paged_list(session, path, limit=2)
        if path != "/api/v1/pods":
            yield from real_paged_list(session, path, **kwargs)
            return
        yield next(pages)
        raise kube.KubeError("network", "connection broken: reset by peer")

    monkeypatch.setattr(kube, "paged_list", failing_pods)
    run = sync.sync_cluster(cluster.pk)
    assert run.outcome == SyncOutcome.FAILED
    assert {m: m.objects.filter(cluster=cluster).count() for m in counts} == counts


def test_410_on_continue_restarts_that_list(member, db, monkeypatch):
    """The apiserver answers 410 Gone to an expired continue token; the list starts over and completes."""
    cluster = services.attach_cluster(name="gone", credentials=member.token_credentials(), user=None)
    expired = member.expired_continue_token()
    real_request = kube.request
    calls = {"gone": 0}

    def request_with_expired_token(session, method, path, *, query=None, **kwargs):
        if path == "/api/v1/pods" and query and any(k == "continue" for k, _ in query) and calls["gone"] == 0:
            calls["gone"] += 1
            # Swap in a token whose revision etcd has compacted away: the real apiserver answers 410.
            query = [(k, expired if k == "continue" else v) for k, v in query]
        return real_request(session, method, path, query=query, **kwargs)

    monkeypatch.setattr(kube, "request", request_with_expired_token)
    monkeypatch.setattr("django.conf.settings.FLEETWEB_KUBE_PAGE_SIZE", 3)
    run = sync.sync_cluster(cluster.pk)
    assert calls["gone"] == 1
    assert run.outcome == SyncOutcome.SUCCEEDED, run.error
    cluster.refresh_from_db()
    assert cluster.pod_count == _apiserver_inventory(member)["pods"]


def test_expired_continue_token_is_a_real_410(member):
    """Guards the test above: the real apiserver answers the expired token with 410 Gone."""
    with kube.connect(member.token_credentials()) as session:
        with pytest.raises(kube.KubeError) as err:
            kube.request(session, "GET", "/api/v1/pods",
                         query=[("limit", 2), ("continue", member.expired_continue_token())])
    assert err.value.http_status == 410
    assert err.value.kind == "gone"


def test_slow_cluster_does_not_delay_the_others(localfleet_members, celery_beat, db):
    """One cluster hangs on every call (a listener that never answers); the others keep their interval."""
    import socket

    hanging = socket.socket()
    hanging.bind(("127.0.0.1", 0))
    hanging.listen(64)
    accepted = []
    stop = threading.Event()

    def accept_and_hang():
        hanging.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(hanging.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_hang, daemon=True)
    thread.start()
    members = list(localfleet_members.values())
    try:
        slow = services.attach_cluster(name="slow", user=None, sync_interval=15, credentials={
            "method": "token", "server": f"https://127.0.0.1:{hanging.getsockname()[1]}", "ca_data": members[0].ca_pem,
            "token": "x"})
        healthy = [services.attach_cluster(name=f"ok-{m.name}", credentials=m.token_credentials(), user=None,
                                           sync_interval=15) for m in members]
        started = time.monotonic()
        # Over ~40 s (more than two intervals), each healthy cluster syncs every interval.
        wait_for(lambda: all(SyncRun.objects.filter(cluster=c, outcome=SyncOutcome.SUCCEEDED).count() >= 3
                             for c in healthy), timeout=75, interval=1, what="three syncs of each healthy cluster")
        elapsed = time.monotonic() - started
        for c in healthy:
            runs = list(SyncRun.objects.filter(cluster=c).order_by("started_at").values_list("started_at", flat=True))
            gaps = [(b - a).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
            assert max(gaps) < 15 + 10, (c.name, gaps)  # interval + beat tick + queueing, never a timeout's worth
        slow.refresh_from_db()
        assert slow.status == ClusterStatus.UNREACHABLE
        assert "timeout" in slow.last_error or "no answer" in slow.last_error
        assert elapsed < 75
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        hanging.close()


def test_problem_pods_and_degraded_status(localfleet_members, db):
    """A Deployment that cannot schedule makes the cluster degraded and its pods show as problems."""
    member = next(iter(localfleet_members.values()))
    with member.admin_api() as api:
        apps = k8s.AppsV1Api(api)
        try:
            apps.create_namespaced_deployment("default", {
                "metadata": {"name": "unschedulable"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "unschedulable"}},
                         "template": {"metadata": {"labels": {"app": "unschedulable"}},
                                      "spec": {"nodeSelector": {"pool": "does-not-exist"},
                                               "containers": [{"name": "c", "image": "busybox:1.36"}]}}}})
        except k8s.ApiException as exc:
            assert exc.status == 409
    try:
        cluster = services.attach_cluster(name="degraded", credentials=member.token_credentials(), user=None)

        def synced_with_pending():
            sync.sync_cluster(cluster.pk)
            cluster.refresh_from_db()
            return cluster.problem_pod_count >= 2

        wait_for(synced_with_pending, timeout=30, what="pending pods stored as problem pods")
        assert cluster.status == ClusterStatus.DEGRADED
        assert re.search(r"\b[1-9][0-9]* workloads? unavailable", cluster.status_reason)
        workload = Workload.objects.get(cluster=cluster, name="unschedulable")
        assert workload.pods_pending == 2 and workload.replicas_available == 0
    finally:
        with member.admin_api() as api:
            k8s.AppsV1Api(api).delete_namespaced_deployment("unschedulable", "default")


def test_health_of_snapshot_is_never_connected_with_not_ready_nodes():
    snapshot = collector.Snapshot(nodes=[{"ready": True}, {"ready": False}])
    status, reason = collector.health(snapshot)
    assert status == ClusterStatus.DEGRADED
    assert reason == "1 of 2 nodes NotReady"


def test_a_sync_run_keeps_the_time_spent_on_each_kind_and_shows_it(member, db, client, viewer):
    """Per-kind timings were measured and dropped; each run now keeps them, the API returns them and the sync
    history shows them."""
    cluster = services.attach_cluster(name="timed", credentials=member.token_credentials(), user=None)
    run = sync.sync_cluster(cluster.pk)
    assert run.outcome == SyncOutcome.SUCCEEDED
    run.refresh_from_db()
    assert set(run.timings_ms) == set(run.counts) and {"Node", "Pod", "Deployment"} <= set(run.timings_ms)
    assert all(isinstance(ms, int) and ms >= 0 for ms in run.timings_ms.values())
    client.force_login(viewer)
    page = client.get(f"/clusters/{cluster.name}/?tab=syncs").content.decode()
    assert f"Node {run.counts['Node']} ({run.timings_ms['Node']} ms)" in page
    api = client.get(f"/api/v1/sync-runs/?cluster={cluster.pk}").json()
    assert api["results"][0]["timings_ms"] == run.timings_ms
