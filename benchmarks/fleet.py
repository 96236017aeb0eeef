"""2. A thousand clusters: generated inventory (the rows a sync writes), pages and API under concurrent load
through gunicorn, SQL queries per request, and policy evaluation of the whole fleet."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict

from benchmarks.common import ROOT, STATE, cpu_seconds, database_mib, median, rss_mib, say, stop, table

SIZES = {"quick": (100, 200), "full": (1000, 1000), "limit": (5000, 300)}  # clusters, requests per endpoint
# Each generated cluster's shape; `python -m benchmarks --only fleet --clusters 10000 --nodes 10 --workloads 40`
# sets them (`shape`).
NODES, WORKLOADS, NAMESPACES = 50, 200, 10


def shape(nodes: int | None, workloads: int | None) -> str:
    """Set the generated clusters' nodes and workloads (None: as they are); their label, kept on every cluster so a
    fleet of another shape is generated again rather than reused."""
    global NODES, WORKLOADS
    NODES, WORKLOADS = nodes or NODES, workloads or WORKLOADS
    return f"{NODES}x{WORKLOADS}"
REGIONS = ["eu-west-1", "eu-north-1", "us-east-1", "us-west-2", "ap-southeast-1", "cn-hangzhou"]
ENVIRONMENTS = ["dev", "staging", "prod"]
CONCURRENCY = 4  # "several concurrent clients"; the load generator shares the 2 cores with the server


def _template(i: int) -> dict:
    return {"labels": {"app": f"app-{i}"}, "host_network": i % 97 == 0, "host_pid": False, "host_ipc": False,
            "host_path_volumes": ["/var/log"] if i % 53 == 0 else [], "service_account": "default",
            "containers": [{
                "name": "main", "image": f"registry.example.com/team{i % 20}/app{i}:"
                                         f"{'latest' if i % 41 == 0 else '1.4.2'}",
                "init": False, "privileged": i % 101 == 0, "allow_privilege_escalation": False if i % 3 else None,
                "run_as_non_root": i % 4 != 0, "run_as_user": None, "capabilities_add": [],
                "requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"} if i % 6 else {},
                "liveness_probe": True, "readiness_probe": i % 9 != 0}]}


def snapshot_for(index: int):
    """The Snapshot a sync of a 50-node, 200-workload cluster would produce."""
    from inventory import collector

    rng = random.Random(index)
    s = collector.Snapshot()
    minor = rng.choice([33, 34, 35, 36])
    s.version = {"gitVersion": f"v1.{minor}.{rng.randint(0, 9)}", "platform": "linux/amd64"}
    region = REGIONS[index % len(REGIONS)]
    for n in range(NODES):
        s.nodes.append({"uid": f"c{index}-n{n}", "name": f"node-{n}",
                        "labels": {"topology.kubernetes.io/region": region}, "created": "2026-01-01T00:00:00Z",
                        "roles": ["worker"], "kubelet_version": f"v1.{minor - (n % 2)}.3", "os_image": "Ubuntu 24.04",
                        "kernel_version": "6.8",
                        "container_runtime": "containerd://2.0.5", "architecture": "amd64", "zone": f"{region}a",
                        "region": region, "instance_type": "m7i.2xlarge", "provider_id": f"aws:///{region}a/i-{n}",
                        "cpu_capacity_millis": 8000, "memory_capacity_bytes": 32 << 30, "pods_capacity": 110,
                        "cpu_allocatable_millis": 7800, "memory_allocatable_bytes": 30 << 30, "pods_allocatable": 110,
                        "ready": n != 7 or index % 10 != 0, "pressure": [], "unschedulable": False, "taints": []})
        s.node_providers["aws"] += 1
    namespaces = [f"team-{k}" for k in range(NAMESPACES)]
    for k, ns in enumerate(namespaces):
        s.namespaces.append({"uid": f"c{index}-ns{k}", "name": ns, "labels": {"team": ns}, "created": None,
                             "phase": "Active", "pod_security_enforce": "baseline" if k % 2 else ""})
        s.quotas_by_namespace[ns] = k % 3 != 0
        s.limit_ranges_by_namespace[ns] = 1
    kinds = ["Deployment"] * 7 + ["StatefulSet", "DaemonSet", "CronJob"]
    for w in range(WORKLOADS):
        kind = kinds[w % len(kinds)]
        desired = 1 if kind == "CronJob" else 3
        available = desired - (1 if (w + index) % 57 == 0 else 0)
        s.workloads.setdefault(kind, []).append({
            "uid": f"c{index}-w{w}", "name": f"app-{w}",
            "labels": {"app.kubernetes.io/name": f"app-{w}"} if w % 5 else {},
            "created": None, "kind": kind, "namespace": namespaces[w % NAMESPACES], "replicas_desired": desired,
            "replicas_ready": available, "replicas_available": available, "replicas_updated": desired,
            "generation": 3, "observed_generation": 3, "images": [f"registry.example.com/app{w}:1.4.2"],
            "pod_template": _template(w + index)})
        counts = s.pods_by_workload[f"c{index}-w{w}"]
        counts.total = counts.ready = counts.running = desired
    for ns in namespaces:
        s.pods_by_namespace[ns].total = 60
    s.pod_total = WORKLOADS * 3
    from inventory import kinds

    s.complete = set(kinds.NAMES)
    return s


def generate(count: int) -> list:
    from django.db import transaction
    from django.utils import timezone

    from inventory import collector, sync
    from inventory.models import Cluster, ClusterCredential

    label = f"{NODES}x{WORKLOADS}"
    existing = Cluster.objects.filter(name__startswith="fleet-").count()
    if existing == count and Cluster.objects.filter(name__startswith="fleet-", labels__shape=label).count() == count:
        say(f"[fleet] reusing {count} generated clusters")
        return list(Cluster.objects.filter(name__startswith="fleet-").order_by("name"))
    Cluster.objects.filter(name__startswith="fleet-").delete()
    say(f"[fleet] generating {count} clusters × {NODES} nodes × {WORKLOADS} workloads (the rows a sync writes)")
    started = time.monotonic()
    clusters = []
    for i in range(count):
        s = snapshot_for(i)
        with transaction.atomic():
            c = Cluster.objects.create(
                name=f"fleet-{i:04d}", environment=ENVIRONMENTS[i % 3], region=REGIONS[i % len(REGIONS)],
                owner=f"team-{i % 12}",
                labels={"tier": ["web", "data", "edge"][i % 3], "fleet": "bench", "shape": label},
                server=f"https://10.0.{i // 250}.{i % 250}:6443", auth_method="token", sync_interval=3600,
                next_sync_at=timezone.now() + timezone.timedelta(days=365))
            ClusterCredential.objects.create(cluster=c, ciphertext=ClusterCredential.seal(
                {"method": "token", "server": c.server, "ca_data": "", "token": "unused"}))
            sync.write_snapshot(c, s)
            c.status, c.status_reason = collector.health(s)
            c.last_seen_at = c.last_sync_at = timezone.now()
            c.save()
        clusters.append(c)
        if (i + 1) % 100 == 0:
            say(f"[fleet]   {i + 1} clusters ({time.monotonic() - started:.0f}s)")
    say(f"[fleet] generated in {time.monotonic() - started:.0f}s")
    return clusters


def baseline_policies() -> None:
    from governance import rules
    from governance.models import PolicyAssignment
    from inventory.models import ClusterGroup

    group, _ = ClusterGroup.objects.get_or_create(name="bench-all",
                                                  defaults={"selector": "fleet=bench"})
    needed = {"allowed-registries": {"registries": ["registry.example.com"]},
              "addon-baseline": {"minimums": ["coredns=v1.11.1"]}}
    for r in rules.catalog():
        params = r.clean_params(needed.get(r.key, {}))
        PolicyAssignment.objects.get_or_create(group=group, rule_key=r.key, defaults={"params": params})
    for region in REGIONS:
        ClusterGroup.objects.get_or_create(name=f"bench-{region}",
                                           defaults={"selector": f"region={region},fleet=bench"})


CRDS_PER_CLUSTER = 20


def readiness_facts(clusters) -> None:
    """What readiness reads would store: 20 CRDs per cluster (every fifth cluster with one still storing a
    deprecated version), two deprecated APIs its clients call on every third, and a group target for prod."""
    from django.utils import timezone

    from governance import upgrades
    from inventory.models import Cluster, ClusterGroup, CustomResourceDefinition, DeprecatedAPIRequest

    ClusterGroup.objects.update_or_create(name="bench-prod", defaults={"selector": "environment=prod,fleet=bench",
                                                                       "upgrade_target": "1.37"})
    if CustomResourceDefinition.objects.filter(cluster__name__startswith="fleet-").exists():
        upgrades.refresh_all()
        return
    now = timezone.now()
    crds, apis = [], []
    for i, c in enumerate(clusters):
        for k in range(CRDS_PER_CLUSTER):
            stale = ["v1beta1"] if k == 0 and i % 5 == 0 else []
            crds.append(CustomResourceDefinition(
                cluster=c, name=f"things{k}.example{k}.io", group=f"example{k}.io", kind=f"Thing{k}",
                versions=[{"name": "v1beta1", "served": True, "storage": False, "deprecated": bool(stale)},
                          {"name": "v1", "served": True, "storage": True, "deprecated": False}],
                stored_versions=["v1beta1", "v1"] if stale else ["v1"], stale_versions=stale))
        if i % 3 == 0:
            apis += [DeprecatedAPIRequest(cluster=c, group="resource.k8s.io", version="v1beta1",
                                          resource="resourceclaims", removed_release="1.38", first_seen_at=now,
                                          last_seen_at=now),
                     DeprecatedAPIRequest(cluster=c, group="flowcontrol.apiserver.k8s.io", version="v1beta3",
                                          resource="flowschemas", removed_release="1.32", first_seen_at=now,
                                          last_seen_at=now)]
    CustomResourceDefinition.objects.bulk_create(crds, batch_size=5000)
    DeprecatedAPIRequest.objects.bulk_create(apis, batch_size=5000)
    Cluster.objects.filter(name__startswith="fleet-").update(readiness_checked_at=now)
    started = time.perf_counter()
    upgrades.refresh_all()  # what the evaluations after syncs store
    say(f"[fleet] upgrade readiness of {len(clusters)} clusters computed and stored in "
        f"{time.perf_counter() - started:.1f}s")


EVALUATION_WORKERS, EVALUATION_THREADS = 2, 2  # the freshness benchmark's two worker processes


def evaluate_fleet(clusters) -> dict:
    """Policy evaluation of the whole fleet from no evaluation at all (a reused fleet's results, violations and tallies
    are deleted first, then vacuumed as autovacuum would): once in this process, chunk after chunk (what one worker
    does), and once as an assignment's change queues it, one task per chunk spread over two worker processes. Then
    again with nothing changed, in this process."""
    from governance import evaluation

    runs = []
    _forget_evaluations(clusters)
    started = time.perf_counter()
    evaluation.evaluate_clusters(clusters)  # what the evaluate_clusters task runs, chunk after chunk
    first = time.perf_counter() - started
    say(f"[fleet] first evaluation of {len(clusters)} clusters in one process: {first:.1f}s")
    _forget_evaluations(clusters)
    spread = _evaluate_on_workers(clusters)
    say(f"[fleet] first evaluation of {len(clusters)} clusters queued as tasks of {evaluation.CHUNK} clusters, "
        f"{EVALUATION_WORKERS} worker processes × {EVALUATION_THREADS} threads: {spread:.1f}s")
    for attempt in range(2 if len(clusters) <= 200 else 1):
        started = time.perf_counter()
        evaluation.evaluate_clusters(clusters)
        runs.append(time.perf_counter() - started)
        say(f"[fleet] evaluation of {len(clusters)} clusters with nothing changed, run {attempt + 1}: {runs[-1]:.1f}s")
    return {"first_seconds": first, "first_on_workers_seconds": spread, "unchanged_seconds": median(runs),
            "workloads": len(clusters) * WORKLOADS}


def _forget_evaluations(clusters) -> None:
    from django.db import connection

    from governance.models import ClusterCompliance, ComplianceSnapshot, GroupTally, PolicyResult, Violation

    started = time.perf_counter()
    for model in (Violation, PolicyResult, GroupTally, ComplianceSnapshot, ClusterCompliance):
        model.objects.filter(cluster__in=clusters).delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE governance_violation, governance_policyresult, governance_grouptally, "
                       "governance_clustercompliance, governance_compliancesnapshot")
    say(f"[fleet] earlier evaluations of the fleet deleted in {time.perf_counter() - started:.0f}s")


def _evaluate_on_workers(clusters) -> float:
    """Seconds from queueing the fleet's evaluation (`queue_evaluations`, as a new assignment does) until every
    cluster has one, on real worker processes (which also bring upgrade readiness and enforcement in line, as they
    do after every change)."""
    from django.utils import timezone

    from fleetweb.celery import app
    from fleetweb.embedded import child_environment
    from governance import services
    from governance.models import ClusterCompliance

    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE)}
    logs = STATE / "evaluation-logs"
    logs.mkdir(exist_ok=True)
    procs = [subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-Q", "default", "-P", "threads",
         "-c", str(EVALUATION_THREADS), "-n", f"evaluate{i}@%h", "-l", "WARNING"], env=env, cwd=ROOT,
        stdout=open(logs / f"worker{i}.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        for i in range(EVALUATION_WORKERS)]
    try:
        deadline = time.monotonic() + 120
        while len(app.control.ping(timeout=1)) < EVALUATION_WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"evaluation workers did not start (logs in {logs})")
        ids = [c.pk for c in clusters]
        started, since = time.perf_counter(), timezone.now()
        services.queue_evaluations(ids)
        while ClusterCompliance.objects.filter(cluster_id__in=ids, evaluated_at__gte=since).count() < len(ids):
            if time.perf_counter() - started > 1800 or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"the evaluation on workers did not finish (logs in {logs})")
            time.sleep(0.25)
        return time.perf_counter() - started
    finally:
        stop(procs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TEAM_USER = "bench-member"


def scoped_member(every: int = 10) -> list:
    """A team whose scope holds every `every`-th generated cluster (100 of 1,000), and a viewer of it."""
    from django.contrib.auth.models import User

    from inventory.models import Cluster, Team
    from inventory.people import services as team_services
    from tests.builders import make_user

    ids = list(Cluster.objects.filter(name__startswith="fleet-").order_by("name").values_list("pk", flat=True))
    Cluster.objects.filter(pk__in=ids[::every]).update(owner="bench-team")
    team = Team.objects.filter(name="bench-team").first() or team_services.save_team(
        user=None, name="bench-team", selector="owner=bench-team")
    member = User.objects.filter(username=TEAM_USER).first() or make_user(TEAM_USER)
    team_services.add_member(team, member=member, role="viewer", user=None)
    return list(Cluster.objects.filter(owner="bench-team").order_by("name"))


def _auth(username: str = "bench-viewer"):
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    from inventory.people.tokens import create_token
    from tests.builders import make_user

    user = User.objects.filter(username=username).first() or make_user(username, "viewer")
    _token, key = create_token(owner=user, user=None, name="benchmark")
    session = SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "foundation.auth.PasswordBackend"
    session["_auth_user_hash"] = user.get_session_auth_hash()
    session.create()
    return session.session_key, key


def endpoints(clusters) -> list[tuple[str, str, str, dict]]:
    sample = clusters[len(clusters) // 2].name
    hx = {"HX-Request": "true"}
    return [
        ("page", "fleet overview", "/", {}),
        ("page", "cluster list, filtered and searched", "/clusters/?environment=prod&q=fleet-00", {}),
        ("page", "cluster detail", f"/clusters/{sample}/", {}),
        ("page", "workloads of a cluster", f"/clusters/{sample}/?tab=workloads", {}),
        ("page", "compliance overview", "/compliance/", {}),
        ("page", "upgrade plan (whole fleet)", "/upgrades/", {}),
        ("partial", "overview (HTMX refresh)", "/", hx),
        ("partial", "cluster table (HTMX search)", "/clusters/?q=fleet-01&environment=prod", hx),
        ("partial", "workloads tab (HTMX)", f"/clusters/{sample}/?tab=workloads", {**hx, "HX-Target": "tab-content"}),
        ("partial", "upgrade plan, blocked prod (HTMX)", "/upgrades/?environment=prod&verdict=blocked", hx),
        ("api", "clusters", "/api/v1/clusters/?page_size=100", {}),
        ("api", "nodes", "/api/v1/nodes/?page_size=100", {}),
        ("api", "workloads", "/api/v1/workloads/?page_size=100", {}),
        ("api", "violations", "/api/v1/violations/?page_size=100", {}),
        ("api", "compliance per cluster", "/api/v1/compliance/clusters/?page_size=100", {}),
        ("api", "upgrade plan", "/api/v1/upgrade-plan/?page_size=100", {}),
        ("metrics", "/metrics scrape (whole fleet)", "/metrics", {}),
    ]


def query_counts(eps, username: str = "bench-viewer") -> dict:
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    settings.FLEETWEB_METRICS_TOKEN = METRICS_TOKEN
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=username))
    counts = {}
    for kind, label, url, headers in eps:
        extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()}
        if kind == "metrics":
            extra["HTTP_AUTHORIZATION"] = f"Bearer {METRICS_TOKEN}"
        with CaptureQueriesContext(connection) as ctx:
            response = client.get(url, **extra)
        assert response.status_code == 200, (url, response.status_code)
        counts[label] = len(ctx.captured_queries)
    return counts


def load(eps, requests_per_endpoint: int, *, tree=ROOT, username: str = "bench-viewer") -> dict:
    """gunicorn (3 workers × 2 threads) on loopback; CONCURRENCY clients per endpoint; server time (from the
    Server-Timing header) and client latency per request. `tree`: the source tree gunicorn serves (another
    checkout, for an A/B against the same database; see `benchmarks.ab`)."""
    import urllib3

    from fleetweb.embedded import child_environment

    session_key, token = _auth(username)
    port = _free_port()
    env = {**child_environment(), "FLEETWEB_STATE_DIR": str(STATE), "FLEETWEB_METRICS_TOKEN": METRICS_TOKEN}
    log = open(STATE / "gunicorn.log", "ab")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "fleetweb.wsgi", "-b", f"127.0.0.1:{port}",
                               "-w", "3", "--threads", "2", "--log-level", "warning"], env=env, cwd=tree,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    http = urllib3.PoolManager(maxsize=CONCURRENCY * 2)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.request("GET", f"{base}/healthz", timeout=2, retries=False).status == 200:
                    break
            except urllib3.exceptions.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start; see " + str(STATE / "gunicorn.log"))
            time.sleep(0.3)
        results: dict = {}
        cpu, served = cpu_seconds([server.pid]), 0
        for kind, label, url, headers in eps:
            hdrs = dict(headers)
            if kind == "api":
                hdrs["Authorization"] = f"Bearer {token}"
            elif kind == "metrics":
                hdrs["Authorization"] = f"Bearer {METRICS_TOKEN}"
            else:
                hdrs["Cookie"] = f"sessionid={session_key}"
            for _ in range(10):  # warm every worker's caches and connections
                http.request("GET", base + url, headers=hdrs)
            if kind == "metrics":  # Prometheus scrapes one at a time: sequential, like it
                measured = _measure(http, base + url, hdrs, min(requests_per_endpoint, 200), concurrency=1)
            else:
                measured = _measure(http, base + url, hdrs, requests_per_endpoint)
            results[label] = {"kind": kind, "url": url, **measured}
            served += measured["requests"] + 10
        # For the sizing table: the web tier's CPU per request (the mix above) and its memory once warm.
        results["web"] = {"cpu_ms_per_request": (cpu_seconds([server.pid]) - cpu) * 1000 / max(served, 1),
                          "rss_mib": rss_mib([server.pid]), "processes": 4}
        return results
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def _measure(http, url: str, headers: dict, count: int, *, concurrency: int = 0) -> dict:
    """`count` GETs from `concurrency` (default CONCURRENCY) threads; latency percentiles in ms, throughput,
    non-200 answers."""
    latencies: list[float] = []
    server: list[float] = []
    errors: dict[int, int] = defaultdict(int)
    lock = threading.Lock()
    todo = iter(range(count))

    def client():
        while True:
            with lock:
                if next(todo, None) is None:
                    return
            t = time.perf_counter()
            r = http.request("GET", url, headers=headers, retries=False, timeout=30)
            elapsed = time.perf_counter() - t
            timing = r.headers.get("Server-Timing", "")
            with lock:
                latencies.append(elapsed)
                if timing.startswith("app;dur="):
                    server.append(float(timing.split("=", 1)[1]) / 1000)
                if r.status != 200:
                    errors[r.status] += 1

    threads = [threading.Thread(target=client) for _ in range(concurrency or CONCURRENCY)]
    started = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - started
    latencies.sort()
    server.sort()

    def pct(values: list[float], p: float) -> float:
        return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000 if values else float("nan")

    return {"p50_ms": pct(server, 50), "p95_ms": pct(server, 95), "p99_ms": pct(server, 99),
            "client_p50_ms": pct(latencies, 50), "client_p95_ms": pct(latencies, 95), "requests": len(latencies),
            "per_s": len(latencies) / wall, "errors": dict(errors)}


def scrape_breakdown(runs: int = 7) -> dict:
    """/metrics in this process: each collector (database and formatting), the whole exposition, and, as the
    baseline on the same samples, prometheus_client's own parser-and-writer path (`generate_latest` over
    metric families), which is how the fleet's gauges were first written. Medians of `runs`."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from foundation import metrics

    def timed(fn) -> float:
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            fn()
            times.append((time.perf_counter() - started) * 1000)
        return median(times)

    collectors = {fn.__name__: timed(lambda fn=fn: [g.text() for g in fn()]) for fn in metrics.COLLECTORS}
    text = metrics.fleet_text()
    families = list(text_string_to_metric_families(text))

    class Replay:
        def collect(self):
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Replay())
    return {"collectors_ms": collectors, "exposition_ms": timed(metrics.exposition),
            "fleet_text_only_ms": timed(metrics.fleet_text), "baseline_generate_latest_ms": timed(
                lambda: generate_latest(registry)), "samples": sum(len(f.samples) for f in families),
            "bytes": len(text)}


GOALS = {"page": 150, "partial": 80, "api": 150, "metrics": 500}
METRICS_TOKEN = "bench-metrics-token"


def run(size: str, *, count: int | None = None, nodes: int | None = None, workloads: int | None = None,
        requests: int | None = None) -> dict:
    """`size` gives the clusters and requests per endpoint; `count` (of clusters), `nodes`, `workloads` and
    `requests` (the command line's) override them."""
    from governance import upgrades as upgrades_module
    from inventory.models import Cluster

    count, per_endpoint = count or SIZES[size][0], requests or SIZES[size][1]
    say(f"[fleet] {count:,} clusters of {shape(nodes, workloads).replace('x', ' nodes and ')} workloads each, "
        f"{per_endpoint} requests per endpoint")
    clusters = generate(count)
    baseline_policies()
    readiness_facts(clusters)
    evaluation = evaluate_fleet(clusters)
    eps = endpoints(clusters)
    _auth()
    counts = query_counts(eps)
    say(f"[fleet] load: {per_endpoint} requests per endpoint, {CONCURRENCY} concurrent clients, gunicorn 3×2; "
        "server time from the Server-Timing header; /metrics scraped 200 times one after another, as Prometheus does")
    latency = load(eps, per_endpoint)
    rows = []
    for kind, label, _url, _h in eps:
        r = latency[label]
        ok = "ok" if r["p95_ms"] <= GOALS[kind] and not r["errors"] else "MISSED"
        rows.append([kind, label, f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}",
                     f"{r['client_p95_ms']:.0f}", f"{r['per_s']:.0f}", counts[label], f"≤ {GOALS[kind]} {ok}"])
    say(table(rows, ["kind", "endpoint", "server p50", "p95", "p99 ms", "client p95", "req/s", "queries",
                     "p95 goal"]))
    breakdown = scrape_breakdown()
    say(f"[fleet] /metrics in one process, median of 7: exposition {breakdown['exposition_ms']:.1f} ms for "
        f"{breakdown['samples']:,} samples ({breakdown['bytes'] / 1024:.0f} KiB); per collector "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in breakdown["collectors_ms"].items())
        + f"; Fleetweb's writer {breakdown['fleet_text_only_ms']:.1f} ms (queries included) against "
        f"prometheus_client's generate_latest on the same samples {breakdown['baseline_generate_latest_ms']:.1f} ms "
        "(formatting alone)")
    scoped = scoped_member()
    scoped_eps = [e for e in endpoints(scoped) if e[0] != "metrics"]  # one token, the whole fleet: not scoped
    scoped_counts = query_counts(scoped_eps, TEAM_USER)
    say(f"[fleet] the same load as a team member whose scope holds {len(scoped)} of {count} clusters")
    scoped_latency = load(scoped_eps, per_endpoint, username=TEAM_USER)
    rows = []
    for kind, label, _url, _h in scoped_eps:
        r = scoped_latency[label]
        ok = "ok" if r["p95_ms"] <= GOALS[kind] and not r["errors"] else "MISSED"
        rows.append([kind, label, f"{r['p50_ms']:.0f}", f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}",
                     f"{r['client_p95_ms']:.0f}", f"{r['per_s']:.0f}", scoped_counts[label],
                     f"{counts[label]} global", f"≤ {GOALS[kind]} {ok}"])
    say(table(rows, ["kind", "endpoint", "server p50", "p95", "p99 ms", "client p95", "req/s", "queries",
                     "queries as viewer", "p95 goal"]))
    refresh = []
    for _ in range(5):
        started = time.perf_counter()
        upgrades_module.refresh_all()
        refresh.append(time.perf_counter() - started)
    say(f"[fleet] upgrade readiness of the whole fleet computed and stored (after each evaluation, and hourly): "
        f"median of 5 {median(refresh) * 1000:.0f} ms for {count} clusters")
    say(f"[fleet] policy evaluation of {evaluation['workloads']:,} workloads ({count} clusters, 16 rules): "
        f"first {evaluation['first_seconds']:.1f}s in one process, {evaluation['first_on_workers_seconds']:.1f}s "
        f"queued over {EVALUATION_WORKERS} workers; unchanged {evaluation['unchanged_seconds']:.1f}s "
        "(goal at 400,000 workloads: first ≤ 30 s, unchanged ≤ 3 s)")
    web, db_mib = latency.pop("web"), database_mib()
    scoped_latency.pop("web")
    say(f"[fleet] for sizing: gunicorn (master and 3 workers × 2 threads) {web['rss_mib']:.0f} MiB resident once "
        f"warm, {web['cpu_ms_per_request']:.1f} ms CPU per request of the mix above; database {db_mib:,.0f} MiB "
        f"({db_mib / count:.2f} MiB per cluster)")
    return {"clusters": count, "web": web, "database_mib": db_mib,
            "nodes": Cluster.objects.filter(name__startswith="fleet-").count() * NODES,
            "workloads": count * WORKLOADS, "evaluation": evaluation, "latency": latency, "queries": counts,
            "scoped": {"clusters": len(scoped), "latency": scoped_latency, "queries": scoped_counts},
            "metrics_breakdown": breakdown, "upgrade_refresh_ms": median(refresh) * 1000,
            "pid": os.getpid()}
