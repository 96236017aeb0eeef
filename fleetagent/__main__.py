"""python -m fleetagent --hub https://fleetweb.example.com [--namespace fleetweb-system]

In a pod: the API server, token and CA come from the ServiceAccount mount. Outside one (tests, a host next to the
cluster): --kube-server, --token-file and --ca-file."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from fleetagent import VERSION
from fleetagent.agent import Agent
from fleetagent.hub import check_url
from fleetagent.kube import SA_DIR, Kube


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fleetagent", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hub", required=True, help="Fleetweb's public URL (https://)")
    parser.add_argument("--hub-ca-file", help="CA bundle for the hub's certificate (default: the system's)")
    parser.add_argument("--namespace", default=os.environ.get("FLEETWEB_AGENT_NAMESPACE", "fleetweb-system"))
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    parser.add_argument("--kube-server", default=f"https://{host}:{port}" if host else "")
    parser.add_argument("--token-file", default=f"{SA_DIR}/token")
    parser.add_argument("--ca-file", default=f"{SA_DIR}/ca.crt")
    parser.add_argument("--version", action="version", version=VERSION)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not args.kube_server:
        parser.error("--kube-server is required outside a pod")
    try:
        check_url(args.hub)
    except ValueError as exc:
        print(f"fleetagent: {exc}", file=sys.stderr)
        return 2
    try:
        kube = Kube(args.kube_server, token_file=args.token_file, ca_file=args.ca_file)
    except (ValueError, OSError) as exc:
        print(f"fleetagent: --ca-file {args.ca_file}: {exc}", file=sys.stderr)
        return 2
    agent = Agent(hub_url=args.hub, kube=kube, namespace=args.namespace, hub_ca=args.hub_ca_file)

    def stop(*_: object) -> None:
        agent.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
