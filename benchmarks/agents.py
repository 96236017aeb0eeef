"""5. Agents: simulated agents speaking the real protocol (signed requests, heartbeats, polls for work, answers,
reported changes) against the hub on this machine, answered by the agents' gateway (agents/gateway.py, 2 processes:
polls held up to FLEETWEB_AGENT_GATEWAY_HOLD until work comes) and, as the baseline in the same run, by the web tier
itself (gunicorn 3 workers x 2 threads, polls every FLEETWEB_AGENT_POLL seconds, every 0.1 s while work flows); Celery
workers (2 processes of 4 threads) either way. Each agent heartbeats every FLEETWEB_AGENT_HEARTBEAT (30 s) and reports
a change once a minute, sending the changed Deployments' whole list as the agent does from its watch cache; the
worker writes it (every cluster reported within FLEETWEB_AGENT_REPORT_GATHER_MS, by one task), without asking the
agent. Before anything is measured, each new agent reports its whole cluster once, as it does when accepted. Each
cluster is also read in full through its agent every FLEETWEB_AGENT_RESYNC seconds (the safety net; first times
spread over one interval, claimed as beat does every 5 s), which is the work the agents pick up: they answer from a
small canned cluster (3 nodes, 10 Deployments, 20 pods).

The simulator is one asyncio loop (each agent a few coroutines and two kept-alive connections, one for its poll),
so two thousand agents cost it little of the cores it shares with the hub.

Printed per fleet size: agent request latency (client side, every door; a poll the hub held until its end is waiting,
not serving, and is counted apart), work pickup (queued -> in the agent's hands), change -> visible (reported -> the
sync that wrote it finished), database writes per idle heartbeat (pg_stat_user_tables, in a quiet phase with no
changes), requests a second, and the cores used by the hub (the server answering agents and the worker), by the
simulator itself and by PostgreSQL and Redis: all share this machine's cores."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time

from benchmarks.common import ROOT, STATE, cpu_seconds, say, stop, table
from foundation.queueing import QUEUES, purge_queues
from inventory import kinds
from localfleet.member import free_port

SIZES = {"quick": ([100], 30, 40), "full": ([200, 1000, 2000], 40, 90)}  # agents per step, quiet s, loaded s
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
    hold: float = 0.0  # seconds the hub holds a poll while idle (its heartbeat answer says)


class Connection:
    """One kept-alive HTTP/1.1 connection of one simulated agent (asyncio streams: two thousand agents in one
    thread, as cheap for the simulator as the requests allow)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()  # one request at a time on it (an agent's heartbeat and report may coincide)
        self.server_ms: dict[str, float] = {}  # the last answer's Server-Timing: the gateway's pool wait, door's work

    async def request(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        async with self.lock:
            return await self._request(method, path, headers, body)

    async def _request(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                assert self.reader is not None
                head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}"
                                  f"\r\n{head}\r\n".encode() + body)
                status_line = await self.reader.readline()
                if not status_line:
                    raise ConnectionError("closed")
                status = int(status_line.split()[1])
                length, close = 0, False
                self.server_ms = {}
                while (line := await self.reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "server-timing":
                        self.server_ms = {part.split(";")[0].strip(): float(part.split("dur=")[1])
                                          for part in value.split(",") if "dur=" in part}
                    elif name.lower() == "connection" and value.strip().lower() == "close":
                        close = True
                data = await self.reader.readexactly(length) if length else b""
                if close:
                    self.close()
                return status, data
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Fleet:
    """The simulated agents (one event loop, each agent a few coroutines and two connections: one for its poll,
    which the gateway holds, one for everything else) and what they measured."""

    def __init__(self, base: str, agents: list[Sim], pages: dict[str, str]):
        from django.conf import settings

        self.base, self.agents, self.pages = base, agents, pages
        self.poll = float(settings.FLEETWEB_AGENT_POLL)
        host, port = base.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.latency: dict[str, list[float]] = {}
        self.server: dict[str, list[float]] = {}  # ms the gateway spent on each counted request, by part
        self.lag: list[float] = []  # ms this simulator's event loop was late by (it measures every latency)
        self.held: list[float] = []  # seconds of polls answered empty after a hold (not counted as latency)
        self.statuses: dict[str, dict[int, int]] = {}
        self.pickups: list[float] = []
        self.changes: list[tuple[int, float]] = []
        self.changing = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.tasks: list[asyncio.Task] = []

    async def call(self, sim: Sim, conn: Connection, method: str, path: str, body: dict | None, label: str,
                   *, held: bool = False) -> dict:
        from fleetagent.hub import signed_text

        full = f"/agent/v1/{path}"
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        date = str(int(time.time()))
        headers = {"X-Fleetweb-Date": date, "Content-Type": "application/json",
                   "Authorization": f"Bearer {sim.credential}",
                   "X-Fleetweb-Signature": base64.b64encode(sim.key.sign(  # type: ignore[attr-defined]
                       signed_text(method, full, date, data))).decode()}
        started = time.perf_counter()
        status, payload = await conn.request(method, full, headers, data)
        elapsed = time.perf_counter() - started
        answer = json.loads(payload or b"{}") if status == 200 else {}
        if held and status == 200:
            self.held.append(elapsed)  # held until work came or the hold ended: waiting (pickup measures it)
        else:
            self.latency.setdefault(label, []).append(elapsed)
            for part, ms in conn.server_ms.items():  # the gateway said (Server-Timing)
                self.server.setdefault(part, []).append(ms)
            if conn.server_ms:
                self.server.setdefault("total", []).append(sum(conn.server_ms.values()))
        counts = self.statuses.setdefault(label, {})
        counts[status] = counts.get(status, 0) + 1
        return answer

    async def report(self, sim: Sim, conn: Connection, lists: dict[str, str]) -> dict:
        """Post a report of changes; the hub's answer ({} when it refused or failed)."""
        return await self.call(sim, conn, "POST", "changes", {"kinds": sorted(lists), "lists": lists}, "changes")

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

    async def _heartbeats(self, sim: Sim, conn: Connection) -> None:
        await asyncio.sleep(random.uniform(0, 30))
        while True:
            try:
                answer = await self.call(sim, conn, "POST", "heartbeat", {"agent_version": "0.1.0"}, "heartbeat")
                sim.hold = float(answer.get("idle_hold_seconds", sim.hold))
                if answer.get("report_all"):  # as the agent does: every kind, from its watch cache
                    lists = {**{path: EMPTY for path in answer.get("watch", [])}, **self.pages,
                             DEPLOYMENTS: deployments_page(sim.generation)}
                    await self.report(sim, conn, lists)
            except Exception:
                self._failed("heartbeat")
            await asyncio.sleep(30)

    async def _changes(self, sim: Sim, conn: Connection) -> None:
        while True:
            await asyncio.sleep(random.uniform(0, CHANGE_EVERY) if not self.changing else CHANGE_EVERY)
            if not self.changing:
                continue  # the quiet phase is heartbeats and polls alone
            sim.generation += 1
            self.changes.append((sim.cluster_id, time.time()))
            try:
                await self.report(sim, conn, {DEPLOYMENTS: deployments_page(sim.generation)})
            except Exception:
                self._failed("changes")

    async def _polls(self, sim: Sim, polls: Connection, other: Connection) -> None:
        await asyncio.sleep(random.uniform(0, self.poll))
        busy_until = 0.0
        while True:
            busy = time.monotonic() < busy_until
            hold = sim.hold
            try:
                answer = await self.call(sim, polls, "GET", f"work?wait={hold:g}&boot=b", None, "work",
                                         held=hold > 0)
            except Exception:
                self._failed("work")
                await asyncio.sleep(2)
                continue
            items = answer.get("items", [])
            for item in items:
                self.pickups.append(time.time() - (item["deadline"] - item["timeout"]))
            if items:  # as the agent does: answers ready together go in one post
                busy_until = time.monotonic() + 5
                try:
                    await self.call(sim, other, "POST", "answers",
                                    {"results": [self.answer(sim, item) for item in items]}, "answers")
                except Exception:
                    self._failed("answers")
                busy = True
            if hold <= 0:
                await asyncio.sleep(0.1 if busy else self.poll)

    async def _lag(self) -> None:
        """How late this loop wakes from a 50 ms sleep: every latency it measures includes it."""
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(0.05)
            self.lag.append((time.perf_counter() - asked - 0.05) * 1000)

    def seed(self, sims: list[Sim]) -> float:
        """What each new agent does once, when it is accepted (its first heartbeat is answered "report everything"):
        report every kind from its cache, so the cluster's inventory is stored before anything is measured (a
        cluster's first report writes all its rows; every later one, the object that changed). Seconds taken."""

        async def main() -> None:
            gate = asyncio.Semaphore(8)
            watch = [kind.path for kind in kinds.KINDS]

            async def one(sim: Sim) -> None:
                async with gate:
                    conn = Connection(self.host, self.port)
                    lists = {**{path: EMPTY for path in watch}, **self.pages,
                             DEPLOYMENTS: deployments_page(sim.generation)}
                    for attempt in range(5):  # as the agent does: a refused or failed report is sent again
                        try:
                            if await self.report(sim, conn, lists):
                                break
                        except (OSError, ConnectionError, asyncio.IncompleteReadError):
                            pass
                        await asyncio.sleep(1 + attempt)
                    conn.close()

            await asyncio.gather(*(one(sim) for sim in sims))

        from inventory.models import SyncRun

        started = time.monotonic()
        asyncio.run(main())
        ids = [sim.cluster_id for sim in sims]
        deadline = time.monotonic() + 600
        while (SyncRun.objects.filter(cluster_id__in=ids, triggered_by="change").values("cluster_id").distinct()
               .count() < len(ids)) and time.monotonic() < deadline:
            time.sleep(1)  # until the worker wrote every one
        self.latency, self.statuses = {}, {}
        return time.monotonic() - started

    def _failed(self, label: str) -> None:
        counts = self.statuses.setdefault(label, {})
        counts[-1] = counts.get(-1, 0) + 1

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            for sim in self.agents:
                polls, other = Connection(self.host, self.port), Connection(self.host, self.port)
                self.tasks += [self.loop.create_task(self._heartbeats(sim, other)),
                               self.loop.create_task(self._polls(sim, polls, other)),
                               self.loop.create_task(self._changes(sim, other))]
            self.tasks.append(self.loop.create_task(self._lag()))
            ready.set()
            try:
                self.loop.run_forever()
            finally:
                self.loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait()

    def stop(self) -> None:
        if self.loop is None:
            return

        async def cancel() -> None:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.thread is not None:
                self.thread.join(timeout=10)

    def reset(self) -> None:
        def clear() -> None:
            self.latency, self.statuses, self.pickups, self.changes, self.held = {}, {}, [], [], []
            self.server, self.lag = {}, []

        if self.loop is not None:
            self.loop.call_soon_threadsafe(clear)
            time.sleep(0.05)
        else:
            clear()


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


def _machine() -> tuple[float, float, float]:
    """(busy, steal, all) jiffies of the whole machine so far (/proc/stat): the other tenants' share shows as steal,
    and every process here, the simulator's included, as busy."""
    fields = [float(v) for v in open("/proc/stat").readline().split()[1:]]
    idle = fields[3] + fields[4]
    steal = fields[7] if len(fields) > 7 else 0.0
    total = sum(fields[:8])
    return total - idle - steal, steal, total


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


# Who answers the agents: the agents' gateway (agents/gateway.py: polls held until work comes), or the web tier itself
# (gunicorn, polls every FLEETWEB_AGENT_POLL seconds), the baseline measured in the same run.
DOORS = tuple(os.environ.get("FLEETWEB_BENCH_AGENT_DOORS", "gateway,web").split(","))
GATEWAY_WORKERS = os.environ.get("FLEETWEB_BENCH_GATEWAY_WORKERS", "2")
WORKER_PROCESSES = int(os.environ.get("FLEETWEB_BENCH_WORKER_PROCESSES", "2"))


NICE = ["nice", "-n", os.environ["FLEETWEB_BENCH_WORKER_NICE"]] if os.environ.get("FLEETWEB_BENCH_WORKER_NICE") else []
# Four threads per worker process (FLEETWEB_BENCH_WORKER_THREADS to try others): eight were measured too (stop 39),
# with no steady gain: a quick run at 2,000 agents gave 202 ms p95 against 352 with four, the full run 1,053 against
# 257 (BENCHMARKS.md part 5).
WORKER_THREADS = os.environ.get("FLEETWEB_BENCH_WORKER_THREADS", "4")


def _start_hub(door: str, port: int, env: dict, logs) -> list[subprocess.Popen]:
    if door == "gateway":
        server = subprocess.Popen([sys.executable, "-m", "fleetweb.agent_gateway"], cwd=ROOT,
                                  env={**env, "FLEETWEB_AGENT_GATEWAY_BIND": f"127.0.0.1:{port}",
                                       "FLEETWEB_AGENT_GATEWAY_WORKERS": GATEWAY_WORKERS},
                                  stdout=open(logs / "gateway.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    else:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "fleetweb.wsgi", "-b", f"127.0.0.1:{port}",
                                   "-w", "3", "--threads", str(WEB_THREADS), "--log-level", "warning"], env=env,
                                  cwd=ROOT, stdout=open(logs / "gunicorn.log", "ab"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT)
    # Two worker processes (one process is bound to one core by its GIL), of WORKER_THREADS threads, split by queue as
    # the README's "Scaling out" does: one for the work that waits on clusters (full syncs through the agents), one for
    # the reported changes and the evaluations, which never wait on a cluster. `nice` for them with
    # FLEETWEB_BENCH_WORKER_NICE (an experiment: the agents' requests before the background writes).
    layout = [("sync", "rollouts", "notify"), ("reports", "default")]
    assert sorted(q for group in layout for q in group) == sorted(QUEUES), "every queue served"
    if WORKER_PROCESSES != 2:  # another count: each process serves every queue
        layout = [QUEUES] * WORKER_PROCESSES
    workers = [subprocess.Popen([*NICE, sys.executable, "-m", "celery", "-A", "fleetweb", "worker",
                                 "-Q", ",".join(queues), "-P", "threads", "-c", WORKER_THREADS,
                                 "-n", f"agents{i}@%h", "-l", "WARNING"], env=env,
                                cwd=ROOT, stdout=open(logs / "worker.log", "ab"),  # noqa: SIM115
                                stderr=subprocess.STDOUT) for i, queues in enumerate(layout)]
    return [server, *workers]


def _wait_until_served(base: str, door: str, logs) -> None:
    """Until the server answers: an unsigned heartbeat is refused (401) by either door once it is up."""
    import urllib3

    deadline = time.monotonic() + 60
    while True:
        try:
            if urllib3.request("POST", f"{base}/agent/v1/heartbeat", body=b"{}", timeout=2,
                               retries=False).status == 401:
                return
        except urllib3.exceptions.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {door} did not start; see {logs}")
        time.sleep(0.3)


def run(size: str) -> dict:
    from django.conf import settings

    results: dict = {"doors": {}}
    for door in DOORS:
        say(f"[agents] answered by the {'agents gateway' if door == 'gateway' else 'web tier (gunicorn)'}")
        results["doors"][door] = _run_door(size, door)
    results["poll_seconds"] = settings.FLEETWEB_AGENT_POLL
    results["gateway_hold_seconds"] = settings.FLEETWEB_AGENT_GATEWAY_HOLD
    return results


def _run_door(size: str, door: str) -> dict:
    from django.conf import settings

    from fleetweb.embedded import child_environment
    from inventory.models import Cluster

    steps, quiet, loaded = SIZES[size]
    if os.environ.get("FLEETWEB_BENCH_AGENTS"):  # other fleet sizes, e.g. "2000" alone (the phases stay the size's)
        steps = [int(n) for n in os.environ["FLEETWEB_BENCH_AGENTS"].split(",")]
    data_pids = _data_pids()
    Cluster.objects.filter(name__startswith="agent-", auth_method="agent").delete()  # an earlier run's
    purge_queues()
    port = free_port()
    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE)}
    logs = STATE / "agents-logs"
    logs.mkdir(exist_ok=True)
    procs = _start_hub(door, port, env, logs)
    results: dict = {"steps": []}
    sims: list[Sim] = []
    beat_stop = threading.Event()
    fleet = None
    hold = settings.FLEETWEB_AGENT_GATEWAY_HOLD if door == "gateway" else 0
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_served(base, door, logs)
        from inventory.tasks import schedule_due_syncs

        def beat() -> None:  # as celery beat does: the clusters due for a full read every few seconds
            while not beat_stop.wait(5):
                if fleet is not None and fleet.changing:  # the quiet phase is heartbeats and polls alone
                    schedule_due_syncs.delay()

        threading.Thread(target=beat, daemon=True).start()
        rows = []
        hub = [proc.pid for proc in procs]
        for count in steps:
            if fleet is not None:
                fleet.stop()
            new = _make_agents(count - len(sims), len(sims))
            sims += new
            for sim in sims:
                sim.hold = hold  # as the first heartbeat answer would say
            fleet = Fleet(base, sims, canned_pages())
            say(f"[agents] {len(new)} new agents report their clusters ({fleet.seed(new):.0f}s)")
            fleet.start()
            say(f"[agents] {count} agents: quiet for {quiet}s (heartbeats and polls only)")
            time.sleep(min(quiet, 10))  # ramp: heartbeats and polls spread out
            fleet.reset()
            writes, cpu, t0 = _db_writes(), cpu_seconds(hub), time.monotonic()
            time.sleep(quiet)
            quiet_writes = _db_writes() - writes
            beats = len(fleet.latency.get("heartbeat", []))
            quiet_elapsed = time.monotonic() - t0
            quiet_cpu = (cpu_seconds(hub) - cpu) / quiet_elapsed
            quiet_requests = sum(len(v) for v in fleet.latency.values()) + len(fleet.held)
            quiet_p95 = _pct([v for values in fleet.latency.values() for v in values], 95) * 1000
            say(f"[agents] {count} agents: loaded for {loaded}s (a change a minute each)")
            fleet.reset()
            fleet.changing = True
            cpu, t0 = cpu_seconds(hub), time.monotonic()
            data_cpu, sim_cpu, machine = cpu_seconds(data_pids), time.process_time(), _machine()
            time.sleep(loaded)
            busy, steal, ticks = (b - a for a, b in zip(machine, _machine(), strict=True))
            elapsed = time.monotonic() - t0
            load_cpu = (cpu_seconds(hub) - cpu) / elapsed
            data_cpu = (cpu_seconds(data_pids) - data_cpu) / elapsed
            sim_cpu = (time.process_time() - sim_cpu) / elapsed
            fleet.changing = False
            time.sleep(15)  # the last changes' syncs finish
            all_requests = [v for values in fleet.latency.values() for v in values]
            visible, waited = _visible([c for c in fleet.changes if c[1] < time.time() - 15])
            polls_owed = count / hold if hold else count / fleet.poll
            step = {
                "agents": count,
                "request_p50_ms": _pct(all_requests, 50) * 1000, "request_p95_ms": _pct(all_requests, 95) * 1000,
                "by_door_p95_ms": {k: round(_pct(v, 95) * 1000, 1) for k, v in fleet.latency.items()},
                "held_polls": len(fleet.held),
                "statuses": fleet.statuses, "requests_per_s": (len(all_requests) + len(fleet.held)) / (elapsed + 15),
                "pickup_p50_s": _pct(fleet.pickups, 50), "pickup_p95_s": _pct(fleet.pickups, 95),
                "pickups": len(fleet.pickups),
                "changes": len(fleet.changes), "visible": len(visible),
                "visible_p50_s": _pct(visible, 50), "visible_p95_s": _pct(visible, 95),
                "sync_wait_p50_s": _pct(waited, 50), "sync_wait_p95_s": _pct(waited, 95),
                "writes_per_idle_heartbeat": quiet_writes / beats if beats else float("nan"),
                "hub_cpu_quiet": quiet_cpu, "hub_cpu_loaded": load_cpu,
                "simulator_cpu_loaded": sim_cpu, "database_redis_cpu_loaded": data_cpu,
                "machine_busy_loaded": busy / ticks, "machine_steal_loaded": steal / ticks,
                "server_p95_ms": {part: _pct(values, 95) for part, values in fleet.server.items()},
                "simulator_lag_p95_ms": _pct(fleet.lag, 95), "simulator_lag_max_ms": max(fleet.lag, default=0.0),
                "quiet_requests_per_s": quiet_requests / quiet_elapsed, "quiet_request_p95_ms": quiet_p95,
                "owed_requests_per_s": polls_owed + count * (1 / 30 + 1 / CHANGE_EVERY),
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
            say(f"[agents] p95 by door (ms): {step['by_door_p95_ms']}; held polls: {len(fleet.held)}; "
                f"answers: {step['statuses']}")
            say(f"[agents] change -> visible p50 {step['visible_p50_s']:.2f} s, of which queued before the sync "
                f"started p50 {step['sync_wait_p50_s']:.2f} s, p95 {step['sync_wait_p95_s']:.2f} s; "
                f"pickup p50 {step['pickup_p50_s']:.3f} s")
            server50 = {part: _pct(values, 50) for part, values in fleet.server.items()}
            server95 = {part: _pct(values, 95) for part, values in fleet.server.items()}
            parts = ", ".join(f"{part} {server50[part]:.1f} / {server95[part]:.1f}" for part in sorted(server95))
            say(f"[agents] of the loaded requests, the gateway's own time p50 / p95 (ms): {parts or 'not said'}; "
                f"the simulator's loop late by "
                f"p95 {step['simulator_lag_p95_ms']:.1f} ms, at most {step['simulator_lag_max_ms']:.0f} ms; the "
                f"machine's cores busy {busy / ticks:.0%}, stolen by other tenants {steal / ticks:.1%}")
        return results
    finally:
        beat_stop.set()
        if fleet is not None:
            fleet.stop()
        stop(procs, timeout=20)  # first: a sync still writing would deadlock with the delete below
        Cluster.objects.filter(name__startswith="agent-", auth_method="agent").delete()
        purge_queues()
