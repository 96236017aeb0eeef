"""A/B of request latency: the same endpoints served by two source trees against the same fleet.

    git worktree add /tmp/base HEAD~3
    python -m benchmarks.ab /tmp/base --endpoints "workloads|compliance overview" --requests 400 --rounds 3
    python -m benchmarks.ab /tmp/base --endpoints "upgrade plan, blocked prod (HTMX)" --as-member

Each round serves every endpoint from one tree's gunicorn, then from the other's, so machine noise hits
both alike; prints each round's p95/p50 and the median p95 per tree. Needs the fleet of
`python -m benchmarks --only fleet` (any size) in `.fleetweb/bench`; the other tree must run against the
same database schema (an older tree ignores newer tables).

    python -m benchmarks.ab /tmp/base --cpu --endpoints "overview (HTMX refresh)|upgrade plan"

`--cpu` measures what a request costs instead of how long it waited: each tree in one process with one client
(`benchmarks/cost.py`), the Python CPU and the PostgreSQL backend's CPU per request, and the median wall time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.common import ROOT, median, say, setup_django, table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab")
    parser.add_argument("other", type=Path, help="the other source tree (e.g. a git worktree of the base commit)")
    parser.add_argument("--endpoints", required=True, help="endpoint labels of benchmarks.fleet, separated by |")
    parser.add_argument("--requests", type=int, help="requests per endpoint per round (default 400; with --cpu 30)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--as-member", action="store_true",
                        help="ask as the team member whose scope holds every 10th cluster, not the global viewer")
    parser.add_argument("--cpu", action="store_true",
                        help="CPU per request (Python and the PostgreSQL backend) in one process with one client, "
                             "instead of latency under load")
    args = parser.parse_args()
    if not (args.other / "manage.py").is_file():
        parser.error(f"{args.other} is not a Fleetweb source tree (no manage.py)")
    setup_django()
    from fleetweb import embedded

    try:
        return _run(args)
    finally:  # also on failure and Ctrl-C, as `python -m benchmarks` does
        embedded.stop()


def _run(args) -> int:
    from benchmarks import fleet
    from inventory.models import Cluster

    clusters = list(Cluster.objects.filter(name__startswith="fleet-").order_by("name"))
    if not clusters:
        raise SystemExit("no generated fleet: run `python -m benchmarks --only fleet` first")
    labels = [label.strip() for label in args.endpoints.split("|")]
    eps = [e for e in fleet.endpoints(clusters) if e[1] in labels]
    unknown = set(labels) - {e[1] for e in eps}
    if unknown:
        raise SystemExit(f"unknown endpoints: {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(e[1] for e in fleet.endpoints(clusters))}")
    username = fleet.TEAM_USER if args.as_member else "bench-viewer"
    if args.as_member:
        fleet.scoped_member()
    trees = {"other": args.other.resolve(), "this": ROOT}
    if args.cpu:
        return _cpu(args, eps, username, trees)
    p95: dict[str, dict[str, list[float]]] = {name: {label: [] for label in labels} for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            result = fleet.load(eps, args.requests or 400, tree=tree, username=username)
            for label in labels:
                p95[name][label].append(result[label]["p95_ms"])
            say(f"round {r + 1} {name} as {username}: " + ", ".join(
                f"{label} p95 {result[label]['p95_ms']:.0f} / p50 {result[label]['p50_ms']:.0f} ms"
                for label in labels))
    say(table([[label, f"{median(p95['other'][label]):.0f}", f"{median(p95['this'][label]):.0f}"]
               for label in labels], ["endpoint", f"p95 ms {args.other}", "p95 ms this tree"]))
    return 0


def _cpu(args, eps, username: str, trees: dict[str, Path]) -> int:
    """Each round runs `benchmarks/cost.py` in one tree, then the other, each in its own process, against the
    embedded servers this process keeps running."""
    import json
    import subprocess
    import sys

    count = args.requests or 30
    wanted = json.dumps([[label, url, headers] for kind, label, url, headers in eps if kind != "metrics"])
    found: dict[str, dict[str, list[list[float]]]] = {name: {} for name in trees}
    for r in range(args.rounds):
        for name, tree in trees.items():
            done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cost.py"), str(count), username, wanted],
                                  cwd=tree, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{tree}: {done.stderr[-2000:]}")
            for label, figures in json.loads(done.stdout.strip().splitlines()[-1]).items():
                found[name].setdefault(label, []).append(figures)
            say(f"round {r + 1} {name} as {username}: " + ", ".join(
                f"{label} {f[0]:.1f} ms ({f[1]:.1f} + {f[2]:.1f} CPU)"
                for label, f in ((label, found[name][label][-1]) for label in found[name])))

    def cell(name: str, label: str) -> str:
        rows = found[name][label]
        return (f"{median([r[0] for r in rows]):.1f} ({median([r[1] for r in rows]):.1f} + "
                f"{median([r[2] for r in rows]):.1f})")

    say(table([[label, cell("other", label), cell("this", label)] for label in found["this"]],
              ["endpoint", f"ms (Python + PostgreSQL CPU ms) {args.other}", "this tree"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
