"""Reported changes: the agent names the kinds that changed and sends their whole lists from its watch cache; the hub
keeps them, and a worker's gathered write (every cluster reported within half a second) writes just those kinds
without asking the agent anything."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import relay
from foundation import leases
from inventory import collector, kinds, port, sync
from inventory.choices import ClusterStatus, SyncOutcome
from inventory.models import Cluster, Namespace, Node, SyncRun, Workload
from tests.agents.helpers import accepted_agent

pytestmark = pytest.mark.django_db(transaction=True)

DEPLOYMENTS = "/apis/apps/v1/deployments"
PODS = "/api/v1/pods"
REPLICASETS = "/apis/apps/v1/replicasets"


def _meta(name, namespace="", **extra):
    return {"name": name, "uid": f"uid-{namespace}-{name}", "resourceVersion": "7",
            "creationTimestamp": "2026-01-01T00:00:00Z", **({"namespace": namespace} if namespace else {}), **extra}


def _list(items, **meta):
    return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "7", **meta},
                       "items": items})


def _deployments(replicas=2):
    return _list([{"metadata": _meta("web", "shop", generation=3),
                   "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                       {"name": "web", "image": "nginx:1.27"}]}}},
                   "status": {"observedGeneration": 3, "replicas": replicas, "readyReplicas": replicas,
                              "availableReplicas": replicas, "updatedReplicas": replicas}}])


REPLICASET_LIST = _list([{"metadata": _meta("web-abc", "shop", ownerReferences=[
    {"kind": "Deployment", "name": "web", "uid": "uid-shop-web", "controller": True}])}])


def _pods(count=2, crashing=0):
    pods = []
    for i in range(count):
        waiting = i < crashing
        pods.append({"metadata": _meta(f"web-abc-{i}", "shop", ownerReferences=[
            {"kind": "ReplicaSet", "name": "web-abc", "uid": "uid-shop-web-abc", "controller": True}]),
            "spec": {"nodeName": "node-0", "containers": [{"name": "web", "image": "nginx:1.27"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False" if waiting else "True"}],
                       "containerStatuses": [{"name": "web", "ready": not waiting, "restartCount": 9 if waiting else 0,
                                              "state": {"waiting": {"reason": "CrashLoopBackOff"}} if waiting
                                              else {"running": {}}}]}})
    return _list(pods)


def everything() -> dict[str, str]:
    lists = {kind.path: _list([]) for kind in kinds.KINDS}
    lists["/api/v1/nodes"] = _list([{"metadata": _meta("node-0"), "spec": {},
                                     "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                                "nodeInfo": {"kubeletVersion": "v1.36.3"}}}])
    lists["/api/v1/namespaces"] = _list([{"metadata": _meta("shop"), "status": {"phase": "Active"}}])
    lists.update({DEPLOYMENTS: _deployments(), REPLICASETS: REPLICASET_LIST, PODS: _pods()})
    return lists


@pytest.fixture(autouse=True)
def _nothing_gathered():
    """No report gathered by an earlier test is written in this one."""
    from foundation.queueing import purge_queues

    purge_queues()


@pytest.fixture
def reported(admin_user, monkeypatch):
    """An accepted agent whose reports are kept, and the syncs they ask for (run by the test)."""
    from inventory import services as inventory_services

    agent, cluster = accepted_agent(admin_user)
    queued: list = []
    monkeypatch.setattr(inventory_services, "request_sync",
                        lambda cluster_id, triggered_by: queued.append((cluster_id, triggered_by)))
    return agent, cluster, queued


QUEUED = {"written": False, "queued": True, "pull": False}


def report(agent, lists: dict, kinds_named: list | None = None):
    """Post a report of changes, then run the gathered write as the worker does within half a second."""
    answer = agent.call("POST", "changes", {"kinds": kinds_named or sorted(lists), "lists": lists})
    sync.sync_reported()
    return answer


def _no_work_for(agent) -> bool:
    return agent.call("GET", "work?wait=0").json()["items"] == []


def _last_run(cluster) -> SyncRun:
    return SyncRun.objects.filter(cluster=cluster, triggered_by="change").latest("started_at")


def test_a_report_with_every_list_is_gathered_and_written_without_asking_the_agent(reported):
    agent, cluster, queued = reported
    lists = everything()
    answer = agent.call("POST", "changes", {"kinds": sorted(lists), "lists": lists})
    assert answer.status_code == 200 and answer.json() == QUEUED
    assert queued == [], "no sync of its own: gathered for the worker's write"
    assert not SyncRun.objects.filter(cluster=cluster).exists(), "not written in the agent's request"
    assert sync.sync_reported() == 1
    assert _no_work_for(agent), "the hub asked the agent for nothing"
    run = _last_run(cluster)
    assert run.outcome == SyncOutcome.SUCCEEDED and run.bytes_read > 0
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.CONNECTED and cluster.node_count == 1 and cluster.last_sync_at
    web = Workload.objects.get(cluster=cluster, name="web")
    assert (web.replicas_desired, web.pods_total, web.pods_ready) == (2, 2, 2)
    assert Namespace.objects.get(cluster=cluster, name="shop").pods_total == 2
    assert sync.sync_unless_held(cluster.pk, triggered_by="change") is None, "taken: the next finds nothing"


def test_a_report_of_pods_moves_the_counts_and_health_and_leaves_the_rest(reported):
    agent, cluster, queued = reported
    lists = everything()
    report(agent, lists)
    node = Node.objects.get(cluster=cluster)
    cluster.refresh_from_db()
    version_before, next_sync_before = cluster.kubernetes_version, cluster.next_sync_at

    answer = agent.call("POST", "changes", {"kinds": [PODS], "lists": {PODS: _pods(2, crashing=1)}})
    assert answer.json() == {"written": False, "queued": True, "pull": True}, \
        "the pods' fold needs the ReplicaSets, not sent: a worker reads them through the agent"
    assert queued == [(cluster.pk, "change")]
    answer = report(agent, {PODS: _pods(2, crashing=1), REPLICASETS: REPLICASET_LIST})
    assert answer.json() == QUEUED
    run = _last_run(cluster)
    assert _no_work_for(agent)
    assert run.outcome == SyncOutcome.SUCCEEDED and set(run.counts) == {"Pod", "ReplicaSet"}
    web = Workload.objects.get(cluster=cluster, name="web")
    assert (web.pods_total, web.pods_ready, web.pods_crashlooping) == (2, 1, 1)
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.DEGRADED and "crash-looping" in cluster.status_reason
    assert cluster.problem_pod_count == 1
    assert Node.objects.get(cluster=cluster).pk == node.pk, "nodes were not read, and not pruned"
    assert cluster.kubernetes_version == version_before and cluster.next_sync_at == next_sync_before

    # The pods recover; a full sync later finds the counts as they are (the change left no stale fingerprint).
    report(agent, {PODS: _pods(2), REPLICASETS: REPLICASET_LIST})
    web.refresh_from_db()
    assert (web.pods_ready, web.pods_crashlooping) == (2, 0)
    assert Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.CONNECTED


def test_a_report_of_deployments_writes_only_the_one_that_changed(reported):
    agent, cluster, _queued = reported
    report(agent, everything())
    fingerprint = Workload.objects.get(cluster=cluster, name="web").fingerprint
    report(agent, {DEPLOYMENTS: _deployments()})
    web = Workload.objects.get(cluster=cluster, name="web")
    assert web.fingerprint == fingerprint and web.pods_total == 2, "unchanged: not written, counts kept"
    report(agent, {DEPLOYMENTS: _deployments(replicas=5)})
    web.refresh_from_db()
    assert (web.replicas_desired, web.pods_total) == (5, 2)
    assert SyncRun.objects.filter(cluster=cluster, triggered_by="change").count() == 3



def test_a_written_report_costs_one_commit_and_gives_the_lease_back_with_it(reported):
    """The write of a report is the hot path of two thousand agents: the lease is taken with the row (one statement)
    and given back in the commit that writes what was reported, and the sync run is written once, finished."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    agent, cluster, _queued = reported
    report(agent, everything())
    agent.call("POST", "changes", {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: _deployments(3)}})
    with CaptureQueriesContext(connection) as captured:
        assert sync.sync_reported() == 1
    statements = [q["sql"] for q in captured.captured_queries]
    assert sum("lease_token" in sql and sql.startswith("UPDATE") for sql in statements) == 2, statements
    assert [sql for sql in statements if "lease_token" in sql and sql.startswith("UPDATE")][0].endswith(
        "RETURNING " + ", ".join(f'"{f.column}"' for f in Cluster._meta.concrete_fields)), "taken with the row"
    assert sum(sql.startswith(("COMMIT", "BEGIN")) for sql in statements) == 2, "one transaction"
    assert sum("inventory_syncrun" in sql for sql in statements) == 1, "the run is written once, finished"
    row = Cluster.objects.get(pk=cluster.pk)
    assert (row.lease_token, row.lease_expires_at) == ("", None)
    assert Workload.objects.get(cluster=cluster, name="web").replicas_desired == 3


def test_a_burst_of_reports_from_one_cluster_is_one_write_of_the_newest_lists(reported):
    agent, cluster, queued = reported
    report(agent, everything())
    runs = SyncRun.objects.filter(cluster=cluster).count()
    for replicas in (3, 4, 5):
        assert agent.call("POST", "changes", {"kinds": [DEPLOYMENTS],
                                              "lists": {DEPLOYMENTS: _deployments(replicas)}}).json() == QUEUED
    assert sync.sync_reported() == 1
    assert SyncRun.objects.filter(cluster=cluster).count() == runs + 1 and queued == []
    assert Workload.objects.get(cluster=cluster, name="web").replicas_desired == 5


def test_one_clusters_failed_write_does_not_stop_the_others(admin_user, monkeypatch):
    first, one = accepted_agent(admin_user, name="edge-1")
    second, two = accepted_agent(admin_user, name="edge-2")
    for agent in (first, second):
        agent.call("POST", "changes", {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: _deployments()}})
    real = collector.health

    def broken_for_one(snapshot, *args, **kwargs):  # inside the one write of both clusters' rows
        if any(row["uid"].startswith("one-") for rows in snapshot.workloads.values() for row in rows):
            raise RuntimeError("bad data in this one")
        return real(snapshot, *args, **kwargs)

    monkeypatch.setattr(collector, "health", broken_for_one)
    monkeypatch.setattr(relay, "take_changes", _renamed(relay.take_changes, one.pk))
    assert sync.sync_reported() == 2
    assert Workload.objects.filter(cluster=two, name="web").exists(), "written alone after the shared write failed"
    assert not Workload.objects.filter(cluster=one).exists()
    assert SyncRun.objects.filter(cluster=two).count() == 1 and not SyncRun.objects.filter(cluster=one).exists()
    assert not Cluster.objects.filter(pk__in=[one.pk, two.pk]).exclude(lease_token="").exists(), "leases given back"


def _renamed(take, cluster_id):
    """`relay.take_changes`, with the uids of cluster `cluster_id`'s reported objects prefixed "one-"."""
    def taken(pk):
        lists = take(pk)
        if pk != cluster_id:
            return lists
        return {path: text.replace('"uid": "', '"uid": "one-') if text else text for path, text in lists.items()}
    return taken


def test_the_reports_of_many_clusters_are_one_write(admin_user):
    """The statements of a gathered write do not grow with its clusters."""
    agents = [accepted_agent(admin_user, name=f"edge-{i}") for i in range(8)]
    lists = everything()

    def statements(few):
        for agent, _cluster in few:
            agent.call("POST", "changes", {"kinds": sorted(lists), "lists": lists})
        with CaptureQueriesContext(connection) as captured:
            assert sync.sync_reported([cluster.pk for _agent, cluster in few]) == len(few)
        return len(captured)

    two, eight = statements(agents[:2]), statements(agents)
    assert eight == two, f"{two} statements for 2 clusters, {eight} for 8"
    for index, (_agent, cluster) in enumerate(agents):
        assert Workload.objects.filter(cluster=cluster, name="web").exists()
        assert Node.objects.filter(cluster=cluster).count() == 1
        assert SyncRun.objects.filter(cluster=cluster, triggered_by="change").count() == (2 if index < 2 else 1)
def test_a_sent_list_that_is_not_whole_is_that_kinds_error_only(reported):
    agent, cluster, _queued = reported
    lists = everything()
    report(agent, lists)
    partial = _list([], **{"continue": "more"})
    report(agent, {DEPLOYMENTS: partial, "/api/v1/namespaces": lists["/api/v1/namespaces"]})
    run = _last_run(cluster)
    assert run.outcome == SyncOutcome.PARTIAL
    assert "a sent list is whole" in run.error and "Deployment" in run.error
    assert Workload.objects.filter(cluster=cluster, name="web").exists(), "kept: its list was refused"
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.DEGRADED and "could not list Deployment" in cluster.status_reason

    # A report of other kinds leaves that error standing; a whole list of Deployments ends it.
    report(agent, {PODS: _pods(), REPLICASETS: REPLICASET_LIST})
    cluster.refresh_from_db()
    assert "Deployment: " in cluster.last_error and cluster.status == ClusterStatus.DEGRADED
    report(agent, {DEPLOYMENTS: _deployments()})
    cluster.refresh_from_db()
    assert cluster.last_error == "" and cluster.status == ClusterStatus.CONNECTED


def test_bad_reports_are_refused_and_keep_nothing(reported):
    agent, cluster, queued = reported
    for bad in ({"kinds": []}, {"kinds": ["/api/v1/secrets"]}, {"kinds": [DEPLOYMENTS] * 50}, {"kinds": [7]},
                {"kinds": [DEPLOYMENTS], "lists": {PODS: _pods()}},  # a list of a kind it did not name
                {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: {"items": []}}},  # not text
                {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: ""}},
                {"kinds": [DEPLOYMENTS], "lists": [DEPLOYMENTS]}):
        refused = agent.call("POST", "changes", bad)
        assert refused.status_code == 400, bad
    assert queued == [] and relay.take_changes(cluster.pk) == {}


def test_a_report_while_a_sync_holds_the_cluster_is_written_after_it(reported, monkeypatch):
    from foundation import queueing

    agent, cluster, queued = reported
    report(agent, everything())
    token = leases.acquire(Cluster, cluster.pk, sync.LEASE)  # a full sync reading the cluster
    answer = agent.call("POST", "changes", {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: _deployments(7)}})
    assert answer.json() == QUEUED
    sent = []
    monkeypatch.setattr(sync, "enqueue", lambda name, *args, what, **kwargs: sent.append((name, args, kwargs)))
    assert sync.sync_reported() == 1
    assert sent == [("inventory.tasks.sync_cluster", (cluster.pk,), {"triggered_by": "change"})], \
        "held: a sync of its own, which waits for the holder"
    assert queueing.take_gathered("inventory.tasks.sync_reported") == []
    assert Workload.objects.get(cluster=cluster, name="web").replicas_desired == 2, "not yet"
    with pytest.raises(sync.Held):
        sync.sync_unless_held(cluster.pk, triggered_by="change")  # the queued one waits (the task tries again)
    leases.release(Cluster, cluster.pk, token)
    sync.sync_unless_held(cluster.pk, triggered_by="change")
    assert Workload.objects.get(cluster=cluster, name="web").replicas_desired == 7


def test_a_full_sync_drops_what_was_reported_and_reads_everything(reported):
    agent, cluster, _queued = reported
    agent.call("POST", "changes", {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: _deployments()}})  # not yet written
    member = port.connect(Cluster.objects.get(pk=cluster.pk))
    assert member.take_changes(read_lists=False) == [DEPLOYMENTS]
    assert relay.take_changes(cluster.pk) == {}, "taken"
    assert member.take_changes(read_lists=True) == []


def test_the_first_heartbeat_and_the_first_after_an_outage_ask_for_every_kind(admin_user):
    agent, cluster = accepted_agent(admin_user)  # its first heartbeat was answered already
    assert "report_all" not in agent.call("POST", "heartbeat", {}).json()
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.UNREACHABLE)
    answer = agent.call("POST", "heartbeat", {}).json()
    assert answer["report_all"] is True
    assert answer["send_with"] == {PODS: [REPLICASETS]}


def test_an_agent_cannot_report_for_another_cluster(admin_user, monkeypatch):
    from inventory import services as inventory_services

    queued: list = []
    monkeypatch.setattr(inventory_services, "request_sync",
                        lambda cluster_id, triggered_by: queued.append((cluster_id, triggered_by)))
    mallory, _theirs = accepted_agent(admin_user, name="edge-m")
    _agent, victim = accepted_agent(admin_user, name="edge-v")
    mallory.call("POST", "changes", {"kinds": [DEPLOYMENTS], "lists": {DEPLOYMENTS: _deployments()}})
    assert sync.sync_reported() == 1
    assert Workload.objects.filter(cluster=_theirs, name="web").exists()
    assert not Workload.objects.filter(cluster=victim).exists(), "a report lands on the reporter's own cluster only"
    assert relay.take_changes(victim.pk) == {} and queued == []


def test_a_full_sync_through_an_agent_asks_for_everything_before_it_waits_for_any_answer(admin_user):
    """Each wait for the agent is a round trip (its poll, its post): a full sync that asked for /version, the
    readiness reads and each LIST after the last answer would hold a worker thread for four of them."""
    from inventory import readiness

    _agent, cluster = accepted_agent(admin_user)
    events: list[tuple[str, str]] = []
    asked: dict[str, dict] = {}

    def submit(op, *, what, until):
        item_id = f"{len(asked):032x}"
        asked[item_id] = op
        events.append(("submit", what))
        return item_id

    def result(item_id, *, what, until):
        events.append(("result", what))
        op = asked[item_id]
        if op["op"] == "lines":
            return {"status": 200, "lines": []}
        if op["path"] == "/version":
            return {"status": 200, "body": json.dumps({"gitVersion": "v1.36.3", "major": "1", "minor": "36"})}
        return {"status": 200, "body": json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})}

    def send(op, *, what, until):
        events.append(("send", what))
        raise AssertionError(f"{what} was asked for alone, after the other answers")

    member = port.RelayedMember(send, submit=submit, result=result, changes=lambda: {})
    cluster = Cluster.objects.get(pk=cluster.pk)
    assert readiness.due(cluster, triggered_by="schedule")
    read = sync._read(cluster, triggered_by="schedule", opener=lambda: member)
    assert isinstance(read, sync._Read), read
    submitted = [what for kind, what in events if kind == "submit"]
    assert {"GET /version", "GET /metrics", f"list {readiness.CRD_PATH}"} <= set(submitted)
    assert {f"list {kind.path}" for kind in kinds.KINDS} <= set(submitted)
    first_wait = next(i for i, (kind, _) in enumerate(events) if kind == "result")
    assert all(kind == "submit" for kind, _ in events[:first_wait]) and len(events[:first_wait]) == len(asked)
    assert [kind for kind, _ in events[first_wait:]] == ["result"] * len(asked), "each read once, none late"
    assert read.facts is not None and read.snapshot.version["gitVersion"] == "v1.36.3"
