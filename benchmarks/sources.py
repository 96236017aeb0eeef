"""6. Application sources: what a render costs on the hub (a Helm chart of 30 objects with `helm template`, a
Kustomize overlay of 30 objects over a base with `kustomize build`, and the same 30 objects as plain files: medians of
several runs, interleaved), and what polling costs when nothing changed (N applications whose Git sources are all
due, checked one after another by one worker thread against the real Git server: each check is one request for the
refs; the figure is the time for all of them, against the interval they share)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import STATE, median, say, table

SIZES = {"quick": (5, 50), "full": (11, 500)}  # (runs of each render, applications polled)
OBJECTS = 30


def _objects(prefix: str = "") -> list[dict]:
    docs: list[dict] = []
    for i in range(OBJECTS // 3):
        name = f"{prefix}svc-{i}"
        docs += [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
             "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                      "template": {"metadata": {"labels": {"app": name}},
                                   "spec": {"containers": [{"name": "app", "image": "registry.example.com/a:1.0"}]}}}},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
             "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-settings"},
             "data": {"level": "info", "index": str(i)}},
        ]
    return docs


def _chart(root: Path) -> Path:
    chart = root / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: bench\nversion: 1.0.0\n")
    (chart / "values.yaml").write_text("replicas: 2\nimage: registry.example.com/a:1.0\n")
    template = yaml.safe_dump_all(_objects()).replace("replicas: 2", "replicas: {{ .Values.replicas }}")
    (chart / "templates" / "all.yaml").write_text(template)
    return chart


def _overlay(root: Path) -> Path:
    base, overlay = root / "base", root / "overlays" / "prod"
    base.mkdir(parents=True)
    overlay.mkdir(parents=True)
    (base / "all.yaml").write_text(yaml.safe_dump_all(_objects()))
    (base / "kustomization.yaml").write_text("resources: [all.yaml]\n")
    (overlay / "kustomization.yaml").write_text("resources: [../../base]\nnamePrefix: prod-\n"
                                                "labels: [{pairs: {tier: prod}}]\n")
    return overlay


def _plain(root: Path) -> Path:
    folder = root / "plain"
    folder.mkdir()
    (folder / "all.yaml").write_text(yaml.safe_dump_all(_objects()))
    return folder


def run(size: str) -> dict:
    from django.conf import settings

    from localfleet import binaries

    settings.FLEETWEB_HELM = str(binaries.path_of("helm"))
    settings.FLEETWEB_KUSTOMIZE = str(binaries.path_of("kustomize"))
    runs, apps = SIZES[size]
    results = {"renders": _renders(runs), "polling": _polling(apps)}
    return results


def _renders(runs: int) -> dict:
    from rollouts import manifests
    from rollouts.sources import render

    with tempfile.TemporaryDirectory(prefix="bench-sources-") as folder:
        root = Path(folder)
        cases = {"helm template (chart)": (_chart(root), root), "kustomize build (overlay)": (_overlay(root), root),
                 "plain files": (_plain(root), root)}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for path, checkout in cases.values():  # warm: the tool's first start reads its binary from disk
            render.render(path, release="bench", namespace="bench", checkout=checkout)
        for _ in range(runs):
            for name, (path, checkout) in cases.items():
                started = time.perf_counter()
                done = render.render(path, release="bench", namespace="bench", checkout=checkout)
                manifests.parse(done.text, namespace="bench")
                times[name].append(time.perf_counter() - started)
    rows = [[name, f"{median(values) * 1000:.0f}", f"{min(values) * 1000:.0f}", f"{max(values) * 1000:.0f}"]
            for name, values in times.items()]
    say(f"[sources] render and parse of {OBJECTS} objects, {runs} runs each, interleaved (ms):")
    say(table(rows, ["render", "median", "min", "max"]))
    return {name: {"median_ms": median(values) * 1000, "runs": len(values)} for name, values in times.items()}


def _polling(apps: int) -> dict:
    from django.conf import settings

    from foundation.queueing import purge_queues
    from localfleet.gitserver import GitServer
    from rollouts import services, sourcing
    from rollouts.models import Application, SourceCredential

    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.1/32"]
    Application.objects.filter(name__startswith="bench-src-").delete()
    server = GitServer(STATE / "sources", token="bench-token").start()
    try:
        SourceCredential.objects.filter(name="bench-git").delete()
        credential = sourcing.create_credential(user=None, name="bench-git", secret="bench-token")
        repo = f"bench/deploy-{int(time.time())}"
        url = server.create(repo)
        server.commit(repo, {"all.yaml": yaml.safe_dump_all(_objects())}, message="bench")
        sources = []
        for index in range(apps):
            app = services.create_application(name=f"bench-src-{index}", namespace=f"bench-src-{index}", user=None,
                                              manifests_text=yaml.safe_dump_all(_objects()[:1]))
            sources.append(sourcing.set_source(app, user=None, kind="git", url=url, credential=credential))
        first = time.perf_counter()
        for source in sources[:5]:  # the first check of each fetches and renders: a few, for the figure
            sourcing.check(source)
        fetched = (time.perf_counter() - first) / 5
        for source in sources[5:]:
            sourcing.check(source)
        started = time.perf_counter()
        made = sum(1 for source in sources if sourcing.check(source) is not None)
        elapsed = time.perf_counter() - started
    finally:
        server.stop()
        Application.objects.filter(name__startswith="bench-src-").delete()
        SourceCredential.objects.filter(name="bench-git").delete()
        purge_queues()  # the revisions' dry runs, which no worker here takes
    say(f"[sources] {apps} Git sources with nothing new, checked one after another by one thread: {elapsed:.1f} s "
        f"({elapsed / apps * 1000:.1f} ms each; {made} revisions made); a first check (fetch, render, revision): "
        f"{fetched * 1000:.0f} ms")
    return {"apps": apps, "unchanged_total_s": elapsed, "unchanged_each_ms": elapsed / apps * 1000,
            "first_check_ms": fetched * 1000, "revisions_made_when_unchanged": made}
