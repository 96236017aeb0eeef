"""`manage.py run` (what `make run` calls): everything Fleetweb needs, in one terminal.

Embedded PostgreSQL and Redis (unless DATABASE_URL/REDIS_URL are set), migrations, an admin
account, web, one Celery worker and beat; then the contexts of a kubeconfig, or local member
clusters from localfleet, attached. Ctrl-C stops everything it started; the data stays for the
next run. Killed outright, it leaves nothing running either (`localfleet.reaper`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from fleetweb import embedded
from foundation.queueing import QUEUES


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _stopping(signum, frame) -> None:
    sys.stdout.write(f"\n(already stopping: {signal.Signals(signum).name} waits for the cleanup to finish)\n")
    sys.stdout.flush()


class Command(BaseCommand):
    help = "Start Fleetweb with everything it needs (web, worker, beat, and member clusters)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--kubeconfig", help="attach the contexts of this kubeconfig instead of local members")
        parser.add_argument("--port", type=int, default=int(os.environ.get("FLEETWEB_PORT", "8000")))
        parser.add_argument("--agent-port", type=int, default=int(os.environ.get("FLEETWEB_AGENT_PORT", "8001")),
                            help="the agents' gateway (registered clusters' agents connect here)")
        parser.add_argument("--clusters", type=int, default=int(os.environ.get("LOCALFLEET_CLUSTERS", "3")))
        parser.add_argument("--nodes", type=int, default=int(os.environ.get("LOCALFLEET_NODES", "5")))
        parser.add_argument("--no-clusters", action="store_true", help="attach nothing")

    def handle(self, *args, **options) -> None:
        from localfleet import procs, reaper

        self.children: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}
        self.fleet: Any = None  # a localfleet.fleet.Fleet once started (imported late: it is the composition root)
        # Everything started from here on dies with this process, even when it is killed outright (no cleanup runs
        # then): the reaper stops what was announced to it once this process's end of its pipe closes.
        self.reaper = reaper.start()
        for pid, sig in embedded.server_pids():
            self.reaper.watch(pid, sig)
        procs.ON_START.append(self.reaper.watch)
        # Ctrl-C, a closed terminal and `kill` all stop everything; SIGINT is set explicitly because a
        # process started in the background by a non-interactive shell inherits it as ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        try:
            self._run(options)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            # Once stopping, further signals wait: `make` passes a TERM sent to the process group on to this process
            # while it stops, and a second Ctrl-C is common; either used to end the cleanup halfway and leave the
            # members and the embedded servers running. The cleanup is bounded (15 s, then SIGKILL).
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, _stopping)
            self._stop()

    def say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()

    def _run(self, options) -> None:
        state = embedded.state_dir()
        self.say(f"Fleetweb state folder: {state}")
        runtime_url = None
        if settings.EMBEDDED:
            # Migrations as the owner role; web, worker and beat as the runtime role, which cannot erase the record.
            owner_url, runtime_url = embedded.role_urls()
            os.environ["FLEETWEB_MIGRATE_DATABASE_URL"] = owner_url
            os.environ["FLEETWEB_RUNTIME_DATABASE_URL"] = runtime_url
        if "FLEETWEB_ALLOWED_NETWORKS" not in os.environ:
            # Local members (and a kind/k3d kubeconfig) listen on loopback, which the outbound policy refuses.
            os.environ["FLEETWEB_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"
            settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
            self.say("Outbound policy: loopback allowed for local clusters (set FLEETWEB_ALLOWED_NETWORKS to change)")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._ensure_admin()
        env = embedded.child_environment()
        if runtime_url:
            env["DATABASE_URL"] = runtime_url
            env.pop("FLEETWEB_MIGRATE_DATABASE_URL", None)
            env.pop("FLEETWEB_RUNTIME_DATABASE_URL", None)
        logs = state / "logs"
        logs.mkdir(exist_ok=True)
        # web and worker write their metrics here, emptied at each start (prometheus_client's multiprocess mode).
        metrics_dir = state / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        python = sys.executable
        port = options["port"]
        # Agents of registered clusters are given the gateway's address (their polls are held there until work
        # comes), unless FLEETWEB_AGENT_URL says another.
        agent_port = options["agent_port"]
        env["FLEETWEB_AGENT_GATEWAY_BIND"] = f"127.0.0.1:{agent_port}"
        env.setdefault("FLEETWEB_AGENT_URL", f"http://127.0.0.1:{agent_port}")
        self._spawn("web", [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"],
                    env, logs)
        self._spawn("agent-gateway", [python, "-m", "fleetweb.agent_gateway"], env, logs)
        self._spawn("worker", [python, "-m", "celery", "-A", "fleetweb", "worker", "-Q", ",".join(QUEUES),
                               "--concurrency", os.environ.get("FLEETWEB_WORKER_CONCURRENCY", "4"), "-l", "info",
                               "--hostname", "fleetweb-worker@%h"], env, logs)
        self._spawn("beat", [python, "-m", "celery", "-A", "fleetweb", "beat", "-l", "info",
                             "--schedule", str(state / "celerybeat-schedule")], env, logs)
        if options["kubeconfig"]:
            self._attach_kubeconfig(Path(options["kubeconfig"]).expanduser())
        elif not options["no_clusters"]:
            self._attach_local_members(options["clusters"], options["nodes"])
        self.say(f"\nFleetweb is up: http://127.0.0.1:{port}/  (agents: http://127.0.0.1:{agent_port}/agent/v1/; "
                 f"logs in {logs}; Ctrl-C stops everything)")
        while True:
            for name, proc in self._named_children():
                if proc.poll() is not None:
                    raise CommandError(f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}")
            time.sleep(1)

    def _named_children(self):
        return [(self.names.get(p.pid, "?"), p) for p in self.children]

    def _spawn(self, name: str, cmd: list[str], env: dict, logs: Path) -> None:
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=settings.BASE_DIR, start_new_session=True)
        log.close()
        self.reaper.watch(proc.pid)
        self.names[proc.pid] = name
        self.children.append(proc)
        self.say(f"started {name} (pid {proc.pid}, log {logs / (name + '.log')})")

    def _stop(self) -> None:
        for proc in self.children:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.fleet is not None:
            self.fleet.down()
        embedded.stop()
        from localfleet import procs

        procs.ON_START.remove(self.reaper.watch)
        self.reaper.close()  # the cleanup above was done: the reaper signals nothing
        self.say("Stopped. Data is kept in the state folder; `make run` again to continue.")

    def _ensure_admin(self) -> None:
        from django.contrib.auth.models import Group

        User = get_user_model()
        if User.objects.filter(username="admin").exists():
            self.say("Admin account: admin (password as set before; `manage.py changepassword admin` to reset)")
            return
        password = os.environ.get("FLEETWEB_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "", password)
        user.groups.add(Group.objects.get(name="admin"))
        if os.environ.get("FLEETWEB_ADMIN_PASSWORD"):
            self.say("Admin account: admin (password from FLEETWEB_ADMIN_PASSWORD)")
        else:
            self.say(f"Admin account created: admin / {password}   (shown once; write it down)")

    def _attach_kubeconfig(self, path: Path) -> None:
        from inventory import kubeconfigs, services

        try:
            results = services.attach_kubeconfig_file(path)
        except kubeconfigs.KubeconfigError as exc:
            raise CommandError(f"{path}: {exc}") from None
        for context, outcome in results:
            self.say(f"context '{context}': {outcome}")

    def _attach_local_members(self, clusters: int, nodes: int) -> None:
        from inventory import services
        from inventory.models import Cluster
        from localfleet.fleet import Fleet

        fleet = self.fleet = Fleet(out=self.stdout)
        self.say(f"Starting {clusters} local member clusters (the first run builds them from Go modules; "
                 "see README)…")
        members = fleet.up(clusters, nodes)
        for member in members:
            credentials = {"method": "token", "server": member.server, "ca_data": member.ca_pem,
                           "token": member.file("reader.token").read_text()}
            existing = Cluster.objects.filter(name=member.name).first()
            if existing:
                services.update_cluster(existing, user=None, credentials=credentials)
                self.say(f"{member.name}: credentials refreshed")
                continue
            profile = fleet.profile_for(member.profile["index"])
            services.attach_cluster(
                name=member.name, credentials=credentials, user=None, environment=profile["environment"],
                region=profile["region"], owner="platform",
                labels={"provider": profile["provider"], "source": "localfleet"})
            self.say(f"{member.name}: attached ({member.server})")
        self._demo_baseline()

    def _demo_baseline(self) -> None:
        """On the first run with local members: two groups, each with a built-in policy set applied in audit mode,
        so the policy and compliance pages show something real. Never touches a database that already has
        groups."""
        from governance import policysets
        from governance.models import PolicySet
        from inventory import services
        from inventory.models import ClusterGroup

        if ClusterGroup.objects.exists():
            return
        baseline = {"production": ("environment=prod", "production-baseline"),
                    "localfleet": ("source=localfleet", "pod-security-restricted")}
        for name, (selector, set_name) in baseline.items():
            group = services.create_group(name=name, selector=selector, user=None, owner="platform",
                                          description="Demo baseline created by `make run`; edit or delete freely.")
            policysets.apply_set(policy_set=PolicySet.objects.get(name=set_name), group=group, mode="audit",
                                 user=None)
        self.say("Demo baseline: groups 'production' (Production baseline) and 'localfleet' (Pod Security: "
                 "restricted), in audit mode (see /policies/sets/)")
