"""5. Agents: simulated agents speaking the real protocol (signed requests, heartbeats, polls for work, answers,
reported changes) against one web tier (gunicorn 3 workers x 2 threads) and one Celery worker (8 threads) on this
machine. Each agent heartbeats every FLEETWEB_AGENT_HEARTBEAT (30 s), polls for work every FLEETWEB_AGENT_POLL (3 s;
every 0.1 s while work flows) and reports a change once a minute, sending the changed Deployments' whole list as the
agent does from its watch cache; the hub writes it in that request, without asking the agent. Each cluster is also
read in full through its agent every FLEETWEB_AGENT_RESYNC seconds (the safety net; first times spread over one
interval, claimed as beat does every 5 s), which is the work the agents pick up: they answer from a small canned
cluster (3 nodes, 10 Deployments, 20 pods).

Printed per fleet size: agent request latency (client side, every door), work pickup (queued -> in the agent's
hands), change -> visible (reported -> the sync that wrote it finished), database writes per idle heartbeat
(pg_stat_user_tables, in a quiet phase with no changes), requests a second, and the cores used by the hub (gunicorn
and the worker), by the simulator itself and by PostgreSQL and Redis: all share this machine's cores."""

from __future__ import annotations

import base64
import dataclasses
import heapq
import json
import os
import random
import subprocess
import sys
import threading
import time

from benchmarks.common import ROOT, STATE, say, table
from foundation.queueing import QUEUES, purge_queues
from localfleet.member import free_port

SIZES = {"quick": ([100], 30, 40), "full": ([200, 1000, 2000], 40, 90)}  # agents per step, quiet s, loaded s
THREADS = 64  # simulator threads (each agent's actions are short; a thread takes whichever is due)
# gunicorn's threads per worker: 2, as in the fleet benchmark (8 was measured too: worse tails on 2 cores, 2026-12-06)
WEB_THREADS = int(os.environ.get("FLEETWEB_BENCH_WEB_THREADS", "2"))
CHANGE_EVERY = 60.0


# ---------------------------------------------------------------------------------------------
# The canned member an agent answers for


def _meta(name: str, namespace: str = "", **extra) -> dict:
    meta = {"name": name, "uid": f"uid-{namespace}-{name}", "resourceVersion": "1",
            "creationTimestamp": "2026-01-01T00:00:00Z", **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _list(items: list) -> str:
    return json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items})


def canned_pages() -> dict[str, str]:
    nodes = [{"metadata": _meta(f"node-{i}", labels={"node.kubernetes.io/instance-type": "m6i.xlarge"}),
              "spec": {"providerID": f"aws:///eu-west-1a/i-{i:08x}"},
              "status": {"conditions": [{"type": "Ready", "status": "True"}],
                         "nodeInfo": {"kubeletVersion": "v1.36.3", "osImage": "Linux", "architecture": "amd64"},
                         "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                         "allocatable": {"cpu": "4", "memory": "15Gi", "pods": "110"}}} for i in range(3)]
    namespaces = [{"metadata": _meta(n), "status": {"phase": "Active"}} for n in ("default", "shop")]
    replicasets = [{"metadata": _meta(f"web-{i}-abc", "shop", ownerReferences=[
        {"kind": "Deployment", "name": f"web-{i}", "uid": f"uid-shop-web-{i}", "controller": True}])}
        for i in range(10)]
    pods = [{"metadata": _meta(f"web-{i}-abc-{j}", "shop", ownerReferences=[
        {"kind": "ReplicaSet", "name": f"web-{i}-abc", "uid": f"uid-shop-web-{i}-abc", "controller": True}]),
             "spec": {"nodeName": f"node-{j}", "containers": [{"name": "web", "image": "nginx:1.27"}]},
             "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                        "containerStatuses": [{"name": "web", "ready": True, "restartCount": 0,
                                               "state": {"running": {}}}]}}
            for i in range(10) for j in range(2)]
    return {"/api/v1/nodes": _list(nodes), "/api/v1/namespaces": _list(namespaces),
            "/apis/apps/v1/replicasets": _list(replicasets), "/api/v1/pods": _list(pods)}


def deployments_page(generation: int) -> str:
    """The Deployments of the canned member; `generation` is the first one's (each change scales it: one object
    changed, one row written; the other nine stay as they were)."""
    items = []
    for i in range(10):
        own = generation if i == 0 else 1
        replicas = 2 + (generation % 3 if i == 0 else 0)
        items.append({"metadata": _meta(f"web-{i}", "shop", generation=own),
                      "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": f"web-{i}"}},
                               "template": {"metadata": {"labels": {"app": f"web-{i}"}},
                                            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
                      "status": {"observedGeneration": own, "replicas": replicas, "readyReplicas": replicas,
                                 "availableReplicas": replicas, "updatedReplicas": replicas}})
    return _list(items)


EMPTY = _list([])
DEPLOYMENTS = "/apis/apps/v1/deployments"
VERSION = json.dumps({"major": "1", "minor": "36", "gitVersion": "v1.36.3", "platform": "linux/amd64"})
ALLOWED = json.dumps({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                      "status": {"allowed": True}})


# ---------------------------------------------------------------------------------------------
# Simulated agents


@dataclasses.dataclass
class Sim:
    cluster_id: int
    key: object
    credential: str
    generation: int = 0
    busy_until: float = 0.0
    poll_gen: int = 0


class Fleet:
    """The simulated agents and what they measured."""

    def __init__(self, base: str, agents: list[Sim], pages: dict[str, str]):
        from django.conf import settings

        self.base, self.agents, self.pages = base, agents, pages
        self.poll = float(settings.FLEETWEB_AGENT_POLL)
        self.local = threading.local()
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.heap: list[tuple[float, int, int, str, int]] = []
        self.lock = threading.Condition()
        self.seq = 0
        self.latency: dict[str, list[float]] = {}
        self.statuses: dict[str, dict[int, int]] = {}
        self.pickups: list[float] = []
        self.changes: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.changing = False

    def at(self, when: float, index: int, action: str, gen: int = 0) -> None:
        with self.lock:
            self.seq += 1
            heapq.heappush(self.heap, (when, self.seq, index, action, gen))
            self.lock.notify()

    def call(self, sim: Sim, method: str, path: str, body: dict | None, label: str) -> dict:
        from fleetagent.hub import signed_text

        full = f"/agent/v1/{path}"
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        date = str(int(time.time()))
        headers = {"X-Fleetweb-Date": date, "Content-Type": "application/json",
                   "Authorization": f"Bearer {sim.credential}",
                   "X-Fleetweb-Signature": base64.b64encode(sim.key.sign(  # type: ignore[attr-defined]
                       signed_text(method, full, date, data))).decode()}
        started = time.perf_counter()
        status, payload = self._send(method, full, data, headers)
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latency.setdefault(label, []).append(elapsed)
            counts = self.statuses.setdefault(label, {})
            counts[status] = counts.get(status, 0) + 1
        return json.loads(payload or b"{}") if status == 200 else {}

    def _send(self, method: str, path: str, data: bytes, headers: dict) -> tuple[int, bytes]:
        """One request on this thread's kept-alive connection (http.client: the simulator's own CPU is a share of
        the same cores the hub runs on, and urllib3's pool cost twice as much a request)."""
        import http.client

        for attempt in (1, 2):
            connection = getattr(self.local, "connection", None)
            if connection is None:
                connection = self.local.connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                connection.request(method, path, body=data or None, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self.local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def report(self, index: int, lists: dict[str, str]) -> None:
        """Report changed kinds with their whole lists; when the hub will ask for more, poll quickly meanwhile."""
        sim = self.agents[index]
        answer = self.call(sim, "POST", "changes", {"kinds": sorted(lists), "lists": lists}, "changes")
        if answer.get("pull"):
            sim.busy_until = time.monotonic() + 5
            sim.poll_gen += 1  # the poll chain restarts now, quickly
            self.at(time.monotonic(), index, "poll", sim.poll_gen)

    def answer(self, sim: Sim, item: dict) -> dict:
        path, method = item.get("path", ""), item.get("method", "GET")
        if item.get("op") == "lines":
            return {"id": item["id"], "status": 200, "lines": []}
        if method == "POST":
            return {"id": item["id"], "status": 201, "body": ALLOWED}
        if path == "/version":
            return {"id": item["id"], "status": 200, "body": VERSION}
        if path == DEPLOYMENTS:
            return {"id": item["id"], "status": 200, "body": deployments_page(sim.generation)}
        return {"id": item["id"], "status": 200, "body": self.pages.get(path, EMPTY)}

    def act(self, index: int, action: str, gen: int) -> None:
        sim = self.agents[index]
        now = time.monotonic()
        if action == "heartbeat":
            answer = self.call(sim, "POST", "heartbeat", {"agent_version": "0.1.0"}, "heartbeat")
            if answer.get("report_all"):  # as the agent does: every kind, from its watch cache
                lists = {**{path: EMPTY for path in answer.get("watch", [])}, **self.pages,
                         DEPLOYMENTS: deployments_page(sim.generation)}
                self.report(index, lists)
            self.at(now + 30, index, "heartbeat")
        elif action == "change":
            sim.generation += 1
            with self.lock:
                self.changes.append((sim.cluster_id, time.time()))
            self.report(index, {DEPLOYMENTS: deployments_page(sim.generation)})
            self.at(now + CHANGE_EVERY, index, "change")
        elif action == "poll" and gen == sim.poll_gen:
            items = self.call(sim, "GET", "work?wait=0", None, "work").get("items", [])
            for item in items:
                picked = time.time() - (item["deadline"] - item["timeout"])
                with self.lock:
                    self.pickups.append(picked)
            if items:  # as the agent does: answers ready together go in one post
                self.call(sim, "POST", "answers", {"results": [self.answer(sim, item) for item in items]}, "answers")
            if items:
                sim.busy_until = time.monotonic() + 5
            busy = time.monotonic() < sim.busy_until
            self.at(time.monotonic() + (0.1 if busy else self.poll), index, "poll", gen)

    def worker(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                while not self.stop.is_set() and (not self.heap or self.heap[0][0] > time.monotonic()):
                    self.lock.wait(timeout=max(0.0, min(0.05, self.heap[0][0] - time.monotonic()))
                                   if self.heap else 0.05)
                if self.stop.is_set():
                    return
                _, _, index, action, gen = heapq.heappop(self.heap)
                if action == "change" and not self.changing:  # later, still spread over a minute (no burst at the
                    self.seq += 1                              # start of the loaded phase)
                    heapq.heappush(self.heap, (time.monotonic() + random.uniform(0, CHANGE_EVERY), self.seq, index,
                                               action, gen))
                    continue
            try:
                self.act(index, action, gen)
            except Exception as exc:  # a refused or broken request is counted, the agent goes on
                with self.lock:
                    counts = self.statuses.setdefault(action, {})
                    counts[-1] = counts.get(-1, 0) + 1
                if action != "change":
                    self.at(time.monotonic() + 2, index, action, gen)
                del exc

    def start(self) -> list[threading.Thread]:
        now = time.monotonic()
        for index in range(len(self.agents)):
            self.at(now + random.uniform(0, 30), index, "heartbeat")
            self.at(now + random.uniform(0, self.poll), index, "poll", 0)
            self.at(now + random.uniform(0, CHANGE_EVERY), index, "change")
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        return threads

    def reset(self) -> None:
        with self.lock:
            self.latency, self.statuses, self.pickups, self.changes = {}, {}, [], []


# ---------------------------------------------------------------------------------------------
# The run


def _make_agents(count: int, offset: int) -> list[Sim]:
    import datetime

    from django.conf import settings
    from django.utils import timezone

    from agents import protocol
    from agents.models import Agent
    from fleetagent.hub import new_key, public_text
    from inventory.choices import AuthMethod
    from inventory.models import Cluster

    far = timezone.now() + datetime.timedelta(days=1)
    resync = settings.FLEETWEB_AGENT_RESYNC  # the full reads through the agents, spread over one interval
    clusters = Cluster.objects.bulk_create([
        Cluster(name=f"agent-{offset + i}", server="https://10.0.0.1:6443", auth_method=AuthMethod.AGENT,
                kubernetes_version="v1.36.3", sync_interval=resync,
                next_sync_at=timezone.now() + datetime.timedelta(seconds=random.uniform(0, resync)))
        for i in range(count)])
    sims, rows = [], []
    for cluster in clusters:
        key = new_key()
        credential = protocol.new_secret(protocol.CREDENTIAL_PREFIX)
        sims.append(Sim(cluster.pk, key, credential))
        rows.append(Agent(cluster=cluster, public_key=public_text(key), credential_digest=protocol.digest(credential),
                          credential_expires_at=far, last_heartbeat_at=timezone.now(), version="0.1.0"))
    Agent.objects.bulk_create(rows)
    return sims


def _db_writes() -> int:
    """Rows written to Fleetweb's own tables so far (not the catalogs: autovacuum's statistics are no heartbeat's)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables")
        return int(cursor.fetchone()[0])


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children (gunicorn workers)."""
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    seen = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = open(f"/proc/{pid}/task/{pid}/children").read().split()
            todo += [int(c) for c in children]
        except OSError:
            continue
    return total


def _data_pids() -> list[int]:
    """PostgreSQL's postmaster (its backends are its children; it may have been started by an earlier run) and
    Redis."""
    from fleetweb.embedded import server_pids, state_dir

    pids = {pid for pid, _signal in server_pids()}
    postmaster = state_dir() / "postgres" / "postmaster.pid"
    if postmaster.exists():
        pids.add(int(postmaster.read_text().split()[0]))
    return sorted(pids)


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))] if values else float("nan")


def _visible(changes: list[tuple[int, float]]) -> tuple[list[float], list[float]]:
    """Per reported change: seconds until a sync of that cluster that started after it finished, and of those
    seconds, how long the sync waited to start (queued behind others)."""
    import datetime

    from inventory.models import SyncRun

    if not changes:
        return [], []
    first = datetime.datetime.fromtimestamp(min(t for _, t in changes), tz=datetime.UTC)
    runs: dict[int, list[tuple[float, float]]] = {}
    for cluster_id, began, ended in SyncRun.objects.filter(
            started_at__gte=first, finished_at__isnull=False, triggered_by="change").values_list(
            "cluster_id", "started_at", "finished_at"):
        runs.setdefault(cluster_id, []).append((began.timestamp(), ended.timestamp() if ended else began.timestamp()))
    out, waited = [], []
    for cluster_id, at in changes:
        done = [(f, s) for s, f in runs.get(cluster_id, []) if s >= at - 0.05]
        if done:
            finish, start = min(done)
            out.append(finish - at)
            waited.append(start - at)
    return out, waited


def run(size: str) -> dict:
    from django.conf import settings

    from fleetweb.embedded import child_environment
    from inventory.models import Cluster

    steps, quiet, loaded = SIZES[size]
    data_pids = _data_pids()
    Cluster.objects.filter(name__startswith="agent-", auth_method="agent").delete()  # an earlier run's
    purge_queues()
    port = free_port()
    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE)}
    logs = STATE / "agents-logs"
    logs.mkdir(exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "fleetweb.wsgi", "-b", f"127.0.0.1:{port}",
                               "-w", "3", "--threads", str(WEB_THREADS), "--log-level", "warning"], env=env, cwd=ROOT,
                              stdout=open(logs / "gunicorn.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-Q", ",".join(QUEUES),
                               "-P", "threads", "-c", "8", "-n", "agents@%h", "-l", "WARNING"], env=env, cwd=ROOT,
                              stdout=open(logs / "worker.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    results: dict = {"steps": []}
    sims: list[Sim] = []
    beat_stop = threading.Event()
    fleet = None
    try:
        import urllib3

        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if urllib3.request("GET", f"{base}/healthz", timeout=2, retries=False).status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start; see " + str(logs / "gunicorn.log"))
            time.sleep(0.3)
        from inventory.tasks import schedule_due_syncs

        def beat() -> None:  # as celery beat does: the clusters due for a full read every few seconds
            while not beat_stop.wait(5):
                if fleet is not None and fleet.changing:  # the quiet phase is heartbeats and polls alone
                    schedule_due_syncs.delay()

        threading.Thread(target=beat, daemon=True).start()
        rows = []
        for count in steps:
            if fleet is not None:
                fleet.stop.set()
            sims += _make_agents(count - len(sims), len(sims))
            fleet = Fleet(base, sims, canned_pages())
            fleet.start()
            say(f"[agents] {count} agents: quiet for {quiet}s (heartbeats and polls only)")
            time.sleep(min(quiet, 10))  # ramp: heartbeats and polls spread out
            fleet.reset()
            writes, cpu, t0 = _db_writes(), _cpu_seconds([server.pid, worker.pid]), time.monotonic()
            time.sleep(quiet)
            quiet_writes = _db_writes() - writes
            beats = len(fleet.latency.get("heartbeat", []))
            quiet_elapsed = time.monotonic() - t0
            quiet_cpu = (_cpu_seconds([server.pid, worker.pid]) - cpu) / quiet_elapsed
            quiet_requests = sum(len(v) for v in fleet.latency.values())
            quiet_p95 = _pct([v for values in fleet.latency.values() for v in values], 95) * 1000
            say(f"[agents] {count} agents: loaded for {loaded}s (a change a minute each)")
            fleet.reset()
            fleet.changing = True
            cpu, t0 = _cpu_seconds([server.pid, worker.pid]), time.monotonic()
            data_cpu, sim_cpu = _cpu_seconds(data_pids), time.process_time()
            time.sleep(loaded)
            elapsed = time.monotonic() - t0
            load_cpu = (_cpu_seconds([server.pid, worker.pid]) - cpu) / elapsed
            data_cpu = (_cpu_seconds(data_pids) - data_cpu) / elapsed
            sim_cpu = (time.process_time() - sim_cpu) / elapsed
            fleet.changing = False
            time.sleep(15)  # the last changes' syncs finish
            all_requests = [v for values in fleet.latency.values() for v in values]
            visible, waited = _visible([c for c in fleet.changes if c[1] < time.time() - 15])
            step = {
                "agents": count,
                "request_p50_ms": _pct(all_requests, 50) * 1000, "request_p95_ms": _pct(all_requests, 95) * 1000,
                "by_door_p95_ms": {k: round(_pct(v, 95) * 1000, 1) for k, v in fleet.latency.items()},
                "statuses": fleet.statuses, "requests_per_s": len(all_requests) / (elapsed + 15),
                "pickup_p95_s": _pct(fleet.pickups, 95), "pickups": len(fleet.pickups),
                "changes": len(fleet.changes), "visible": len(visible),
                "visible_p50_s": _pct(visible, 50), "visible_p95_s": _pct(visible, 95),
                "sync_wait_p50_s": _pct(waited, 50), "sync_wait_p95_s": _pct(waited, 95),
                "writes_per_idle_heartbeat": quiet_writes / beats if beats else float("nan"),
                "hub_cpu_quiet": quiet_cpu, "hub_cpu_loaded": load_cpu,
                "simulator_cpu_loaded": sim_cpu, "database_redis_cpu_loaded": data_cpu,
                "quiet_requests_per_s": quiet_requests / quiet_elapsed, "quiet_request_p95_ms": quiet_p95,
                "owed_requests_per_s": count * (1 / fleet.poll + 1 / 30 + 1 / CHANGE_EVERY),
                "hub_cpu_ms_per_quiet_request": quiet_cpu * 1000 * quiet_elapsed / max(quiet_requests, 1),
            }
            results["steps"].append(step)
            rows.append([count, f"{quiet_p95:.0f}", f"{step['hub_cpu_ms_per_quiet_request']:.2f}",
                         f"{step['request_p95_ms']:.0f}", f"{step['pickup_p95_s']:.2f}",
                         f"{step['visible_p95_s']:.1f}", f"{step['visible']}/{step['changes']}",
                         f"{step['writes_per_idle_heartbeat']:.2f}",
                         f"{step['requests_per_s']:.0f}/{step['owed_requests_per_s']:.0f}",
                         f"{quiet_cpu:.2f}/{load_cpu:.2f}", f"{sim_cpu:.2f}", f"{data_cpu:.2f}"])
            say(table(rows, ["agents", "quiet p95 ms", "hub ms/quiet req", "loaded p95 ms", "pickup p95 s",
                             "visible p95 s", "seen", "writes/beat",
                             "req/s sent/owed", "hub cores quiet/loaded", "sim cores", "db+redis cores"]))
            say(f"[agents] p95 by door (ms): {step['by_door_p95_ms']}; answers: {step['statuses']}")
            say(f"[agents] change -> visible p50 {step['visible_p50_s']:.2f} s, of which queued before the sync "
                f"started p50 {step['sync_wait_p50_s']:.2f} s, p95 {step['sync_wait_p95_s']:.2f} s")
        results["poll_seconds"] = settings.FLEETWEB_AGENT_POLL
        return results
    finally:
        beat_stop.set()
        if fleet is not None:
            fleet.stop.set()
        for proc in (server, worker):  # first: a sync still writing would deadlock with the delete below
            proc.terminate()
        for proc in (server, worker):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        Cluster.objects.filter(name__startswith="agent-", auth_method="agent").delete()
        purge_queues()
