"""4. What lifecycle checks cost one cluster: a drift check of an application of 10 objects (calls, time) against
reading the same 10 objects one GET each, and an upgrade-readiness read (the API server's /metrics, streamed,
and its CRDs), on a real member."""

from __future__ import annotations

import time

import yaml

from benchmarks.common import STATE, median, say, table

SIZES = {"quick": 7, "full": 15}  # runs of each measure, interleaved
OBJECTS = 10


def _manifests() -> str:
    docs = [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "web", "image": "registry.example.com/web:1.0",
                                                            "env": [{"name": "LEVEL", "value": "info"}]}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
             "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}]
    docs += [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"settings-{i}"},
              "data": {"index": str(i), "level": "info"}} for i in range(OBJECTS - 2)]
    return yaml.safe_dump_all(docs)


def run(size: str) -> dict:
    from localfleet.fleet import Fleet

    fleet = Fleet(STATE / "localfleet-drift")
    say(f"[drift] one member (localfleet, state {fleet.state_dir})")
    try:
        return _measure(fleet, SIZES[size])
    finally:
        fleet.down()


def _measure(fleet, runs: int) -> dict:
    from django.utils import timezone

    from inventory import port, readiness
    from inventory import services as inventory_services
    from inventory.models import Cluster
    from rollouts import corrections, drift, manifests, members, rendering, services
    from rollouts.models import Application, Deployed

    member = fleet.up(1, nodes=4)[0]
    def forget() -> None:  # a deployment protects its revision: it goes first
        Deployed.objects.filter(application__name="bench-drift").delete()
        Application.objects.filter(name="bench-drift").delete()

    forget()
    Cluster.objects.filter(name="bench-drift").delete()
    credentials = {"method": "token", "server": member.server, "ca_data": member.ca_pem,
                   "token": member.file("reader.token").read_text()}
    cluster = inventory_services.attach_cluster(name="bench-drift", credentials=credentials, user=None,
                                                sync_interval=3600)
    app = services.create_application(name="bench-drift", namespace="bench-drift", manifests_text=_manifests(),
                                      user=None)
    objects = rendering.render_for(app, app.latest_revision, cluster)
    members.push(cluster, app.namespace, objects, renew=lambda: None)
    deployed = drift.record_deployed(app, cluster, app.latest_revision, objects, timezone.now())

    def floor() -> tuple[float, int]:
        started = time.perf_counter()
        with port.connect_with(credentials) as connected:
            for obj in objects:
                connected.read(manifests.path_of(obj))
        return time.perf_counter() - started, len(objects)

    checks, floors, reads = [], [], []
    for _ in range(runs):  # interleaved, so machine noise hits both alike
        started = time.perf_counter()
        result = corrections.check(deployed.pk)
        checks.append((time.perf_counter() - started, result.requests, result.state))
        floors.append(floor())
        with port.connect_with(credentials) as connected:
            started = time.perf_counter()
            facts = readiness.fetch(connected)
            reads.append((time.perf_counter() - started, connected.bytes_read, facts.counts))
    check_s, floor_s = median([c[0] for c in checks]), median([f[0] for f in floors])
    read_s = median([r[0] for r in reads])
    out = {"objects": len(objects), "check_ms": check_s * 1000, "check_requests": checks[-1][1],
           "check_state": checks[-1][2], "floor_ms": floor_s * 1000, "floor_requests": floors[-1][1],
           "ratio": check_s / floor_s, "readiness_ms": read_s * 1000, "readiness_bytes": reads[-1][1],
           "readiness_counts": reads[-1][2], "runs": runs}
    say(table([
        [f"drift check, {len(objects)} objects (median of {runs})", f"{out['check_ms']:.0f} ms",
         f"{out['check_requests']} calls (a LIST per kind + a dry run per object)", out["check_state"]],
        [f"floor: GET each object (median of {runs})", f"{out['floor_ms']:.0f} ms", f"{out['floor_requests']} calls",
         f"ratio {out['ratio']:.2f}"],
        [f"upgrade-readiness read (median of {runs})", f"{out['readiness_ms']:.0f} ms",
         f"{out['readiness_bytes'] / 2**20:.1f} MiB read", f"{out['readiness_counts']}"],
    ], ["measure", "time", "calls / bytes", "result"]))
    forget()
    return out
