"""`python -m localfleet up|status|down|kubeconfig|scale|build`: local member clusters on loopback."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

import yaml

from localfleet import binaries
from localfleet.fleet import Fleet
from localfleet.member import MemberError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localfleet", description=__doc__)
    parser.add_argument("--state-dir", help="where members keep their data (default .fleetweb/localfleet)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start member clusters and wait until they are Ready")
    up.add_argument("--clusters", type=int, default=3)
    up.add_argument("--nodes", type=int, default=5, help="KWOK nodes per member")
    up.add_argument("--foreground", action="store_true", help="stay up until Ctrl-C, then stop everything")
    status = sub.add_parser("status", help="state of each member")
    status.add_argument("--json", action="store_true")
    sub.add_parser("down", help="stop every member (data is kept)")
    kubeconfig = sub.add_parser("kubeconfig", help="print a member's admin kubeconfig")
    kubeconfig.add_argument("name")
    scale = sub.add_parser("scale", help="grow a member for benchmarks")
    scale.add_argument("name")
    scale.add_argument("--nodes", type=int, required=True)
    scale.add_argument("--pods", type=int, default=0)
    build = sub.add_parser("build", help="build (or find cached) control-plane binaries")
    build.add_argument("--for-tests", action="store_true",
                       help="without Go and without cached binaries: warn and exit 0 (CI=true: fail)")
    args = parser.parse_args(argv)
    fleet = Fleet(args.state_dir)

    try:
        if args.command == "build":
            if args.for_tests and not binaries.buildable():
                from localfleet.pytest_plugin import in_ci

                print("localfleet: Go is not installed and no binaries are cached: end-to-end and browser tests "
                      "will be skipped" + (" (CI=true: that is a failure)" if in_ci() else ""), file=sys.stderr)
                return 1 if in_ci() else 0
            for key, path in binaries.ensure_all().items():
                print(f"localfleet: {key}: {path}", file=sys.stderr)
        elif args.command == "up":
            # Ctrl-C, SIGTERM and SIGHUP stop everything `up` started (SIGINT set explicitly: a background
            # job of a non-interactive shell inherits it as ignored).
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _interrupt)
            fleet.up(args.clusters, args.nodes)
            _print_status(fleet.status())
            if args.foreground:
                print("localfleet: up; Ctrl-C stops every member", file=sys.stderr)
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    fleet.down()
        elif args.command == "status":
            rows = fleet.status()
            print(json.dumps(rows, indent=2)) if args.json else _print_status(rows)
        elif args.command == "down":
            fleet.down()
        elif args.command == "kubeconfig":
            print(yaml.safe_dump(fleet.member(args.name).kubeconfig("admin"), sort_keys=False), end="")
        elif args.command == "scale":
            print(json.dumps(fleet.scale(args.name, nodes=args.nodes, pods=args.pods), indent=2))
    except KeyboardInterrupt:
        print("localfleet: interrupted", file=sys.stderr)
        return 130
    except (MemberError, binaries.BuildError, KeyError, TimeoutError) as exc:
        print(f"localfleet: {exc}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _print_status(rows: list[dict]) -> None:
    if not rows:
        print("no member clusters (python -m localfleet up)")
        return
    print(f"{'NAME':<18} {'STATE':<10} {'VERSION':<9} {'NODES':>5} {'RSS MiB':>8}  SERVER")
    for r in rows:
        print(f"{r['name']:<18} {r['state']:<10} {r['version']:<9} {r['nodes']:>5} {r['rss_mib']:>8}  {r['server']}")


if __name__ == "__main__":
    sys.exit(main())
