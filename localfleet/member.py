"""One local member cluster: etcd, kube-apiserver, controller-manager, scheduler and kwok on loopback.

Each member has a state folder (`<state>/<name>/`) with its PKI, kubeconfigs, etcd data, logs and
`member.json` (ports, versions, the pids it started with their start times). Processes are found
again only through those recorded pids, never by name, so a crashed run is cleaned up without
touching anyone else's etcd or apiserver.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from localfleet import binaries, pki, procs

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_CIDR = "10.96.0.0/16"


class MemberError(RuntimeError):
    """A member could not start; the message carries the tail of the failing component's log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int, start_time: str | None) -> bool:
    current = procs.start_time(pid)
    if current is None or (start_time is not None and current != start_time):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclasses.dataclass
class Member:
    """A member cluster described by its state folder."""

    name: str
    state_dir: Path
    apiserver_version: str = binaries.KUBE_VERSION
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    pids: dict[str, list] = dataclasses.field(default_factory=dict)  # component -> [pid, start_time]
    profile: dict = dataclasses.field(default_factory=dict)

    # -- files -----------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name

    def file(self, name: str) -> Path:
        return self.dir / name

    @property
    def address(self) -> str:
        """Where the API server listens: 127.0.0.1, or another loopback address for a member the hub's outbound
        policy may not dial (a cluster "behind a firewall", reached only by its agent)."""
        return self.profile.get("address", "127.0.0.1")

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['apiserver']}"

    @property
    def ca_pem(self) -> str:
        return self.file("pki/ca.crt").read_text()

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        data = {"name": self.name, "apiserver_version": self.apiserver_version, "ports": self.ports,
                "pids": self.pids, "profile": self.profile}
        tmp = self.file("member.json.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.file("member.json"))

    @classmethod
    def load(cls, state_dir: Path, name: str) -> Member:
        data = json.loads((state_dir / name / "member.json").read_text())
        return cls(name=data["name"], state_dir=state_dir, apiserver_version=data["apiserver_version"],
                   ports=data["ports"], pids=data.get("pids", {}), profile=data.get("profile", {}))

    # -- set-up ------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Create PKI, keys and kubeconfigs once; keep them on later starts (tokens stay valid)."""
        pki_dir = self.dir / "pki"
        pki_dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "logs").mkdir(exist_ok=True)
        if not self.ports:
            self.ports = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
        if not (pki_dir / "ca.crt").exists():
            ca_cert, ca_key = pki.make_ca(f"localfleet-{self.name}-ca")
            pki.write_private(pki_dir / "ca.key", ca_key)
            (pki_dir / "ca.crt").write_bytes(ca_cert)
            cert, key = pki.issue(ca_cert, ca_key, cn="kube-apiserver", server=True,
                                  hosts=("127.0.0.1", "127.0.0.2", "localhost", "10.96.0.1", "kubernetes",
                                         "kubernetes.default", "kubernetes.default.svc",
                                         "kubernetes.default.svc.cluster.local"))
            (pki_dir / "apiserver.crt").write_bytes(cert)
            pki.write_private(pki_dir / "apiserver.key", key)
            # The control-plane components and the admin run as system:masters: this is a local test
            # cluster; Fleetweb itself gets a least-privilege ServiceAccount token (see seed.py).
            for user, cn in (("admin", "localfleet-admin"), ("controller-manager", "system:kube-controller-manager"),
                             ("scheduler", "system:kube-scheduler"), ("kwok", "kwok-controller")):
                cert, key = pki.issue(ca_cert, ca_key, cn=cn, orgs=("system:masters",))
                (pki_dir / f"{user}.crt").write_bytes(cert)
                pki.write_private(pki_dir / f"{user}.key", key)
            sa_key, sa_pub = pki.service_account_keys()
            pki.write_private(pki_dir / "sa.key", sa_key)
            (pki_dir / "sa.pub").write_bytes(sa_pub)
        # KWOK plays node/pod stages 4 at a time by default: ~70 pods/s made Running on a 30,000-pod member.
        self.file("kwok.yaml").write_text(yaml.safe_dump({
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
            "options": {"podPlayStageParallelism": 16, "nodePlayStageParallelism": 16, "nodeLeaseParallelism": 16},
        }))
        for user in ("admin", "controller-manager", "scheduler", "kwok"):
            self.file(f"{user}.kubeconfig").write_text(yaml.safe_dump(self.kubeconfig(user)))
            self.file(f"{user}.kubeconfig").chmod(0o600)
        self.save()

    def kubeconfig(self, user: str = "admin") -> dict:
        """A kubeconfig with inline certificates for one of the member's users."""
        pki_dir = self.dir / "pki"

        def b64(name: str) -> str:
            return base64.b64encode((pki_dir / name).read_bytes()).decode()

        context = f"localfleet-{self.name}"
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.server,
                                                       "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": f"{context}-{user}", "user": {"client-certificate-data": b64(f"{user}.crt"),
                                                             "client-key-data": b64(f"{user}.key")}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-{user}"}}],
            "current-context": context,
        }

    # -- processes ---------------------------------------------------------------------------

    @property
    def component_version(self) -> str:
        """The release of this member's controller-manager and scheduler (within the skew policy of its apiserver)."""
        return binaries.component_version(self.apiserver_version)

    def _command(self, component: str) -> list[str]:
        d, pk, p = self.dir, self.dir / "pki", self.ports
        if component == "etcd":
            return [str(binaries.path_of("etcd")), "--name", self.name, "--data-dir", str(d / "etcd"),
                    "--listen-client-urls", f"http://127.0.0.1:{p['etcd']}",
                    "--advertise-client-urls", f"http://127.0.0.1:{p['etcd']}",
                    "--listen-peer-urls", f"http://127.0.0.1:{p['etcd_peer']}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{p['etcd_peer']}",
                    "--initial-cluster", f"{self.name}=http://127.0.0.1:{p['etcd_peer']}",
                    "--listen-metrics-urls", "", "--quota-backend-bytes", str(8 * 2**30),
                    "--unsafe-no-fsync", "--snapshot-count", "10000", "--log-level", "warn"]
        if component == "kube-apiserver":
            return [str(binaries.path_of("kube-apiserver", self.apiserver_version)),
                    "--etcd-servers", f"http://127.0.0.1:{p['etcd']}",
                    "--bind-address", self.address, "--advertise-address", self.address,
                    "--secure-port", str(p["apiserver"]),
                    "--tls-cert-file", str(pk / "apiserver.crt"), "--tls-private-key-file", str(pk / "apiserver.key"),
                    "--client-ca-file", str(pk / "ca.crt"),
                    "--service-account-key-file", str(pk / "sa.pub"),
                    "--service-account-signing-key-file", str(pk / "sa.key"),
                    "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
                    "--authorization-mode", "Node,RBAC", "--allow-privileged=true",
                    "--service-cluster-ip-range", SERVICE_CIDR, "--endpoint-reconciler-type", "none",
                    "--profiling=false", "--v=1",
                    *(["--runtime-config", self.profile["runtime_config"]] if self.profile.get("runtime_config")
                      else [])]
        if component == "kube-controller-manager":
            return [str(binaries.path_of("kube-controller-manager", self.component_version)),
                    "--kubeconfig", str(d / "controller-manager.kubeconfig"),
                    "--authentication-kubeconfig", str(d / "controller-manager.kubeconfig"),
                    "--authorization-kubeconfig", str(d / "controller-manager.kubeconfig"),
                    "--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false",
                    "--service-account-private-key-file", str(pk / "sa.key"), "--root-ca-file", str(pk / "ca.crt"),
                    "--cluster-signing-cert-file", str(pk / "ca.crt"), "--cluster-signing-key-file", str(pk / "ca.key"),
                    "--use-service-account-credentials=false", "--kube-api-qps", "200", "--kube-api-burst", "400",
                    "--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10",
                    # KWOK renews node leases every lease/4; big members use long leases (see scale.py).
                    "--node-monitor-grace-period", "120s",
                    "--profiling=false", "--v=1"]
        if component == "kube-scheduler":
            return [str(binaries.path_of("kube-scheduler", self.component_version)),
                    "--kubeconfig", str(d / "scheduler.kubeconfig"),
                    "--authentication-kubeconfig", str(d / "scheduler.kubeconfig"),
                    "--authorization-kubeconfig", str(d / "scheduler.kubeconfig"),
                    "--bind-address", "127.0.0.1", "--secure-port", "0", "--leader-elect=false",
                    "--profiling=false", "--v=1"]
        if component == "kwok":
            lease = str(self.profile.get("node_lease_seconds", 40))
            return [str(binaries.path_of("kwok")), "--kubeconfig", str(d / "kwok.kubeconfig"),
                    "--config", str(d / "kwok.yaml"), "--v", "WARN",
                    "--manage-all-nodes=true", "--node-lease-duration-seconds", lease,
                    "--server-address", "", "--cidr", "10.0.0.1/16", "--node-ip", "10.0.0.1"]
        raise ValueError(component)

    def start_component(self, component: str) -> None:
        """Start one component (no readiness wait) and record its pid."""
        log = open(self.dir / "logs" / f"{component}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = procs.started(subprocess.Popen(self._command(component), stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir))
        log.close()
        self.pids[component] = [proc.pid, procs.start_time(proc.pid)]
        self.save()

    def is_running(self, component: str) -> bool:
        entry = self.pids.get(component)
        return entry is not None and bool(entry) and _alive(entry[0], entry[1])

    def _tail(self, component: str, lines: int = 25) -> str:
        try:
            text = (self.dir / "logs" / f"{component}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _wait(self, component: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running(component):
                raise MemberError(f"{self.name}: {component} exited during start. Log "
                                  f"{self.dir / 'logs' / (component + '.log')}:\n{self._tail(component)}")
            if check():
                return
            time.sleep(0.2)
        raise MemberError(f"{self.name}: {component} not ready after {timeout:.0f}s. Log tail:\n"
                          f"{self._tail(component)}")

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.dir / "pki" / "ca.crt"))
        ctx.load_cert_chain(str(self.dir / "pki" / "admin.crt"), str(self.dir / "pki" / "admin.key"))
        return ctx

    def get(self, path: str, *, timeout: float = 5) -> tuple[int, bytes]:
        """A GET as admin, for readiness checks and tests; (status, body), status 0 when unreachable."""
        try:
            with urllib.request.urlopen(self.server + path, context=self._ssl_context(), timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def _etcd_healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2) as resp:
                return b'"true"' in resp.read()
        except (urllib.error.URLError, OSError):
            return False

    def apiserver_ready(self) -> bool:
        return self.get("/readyz", timeout=3)[0] == 200

    def start(self) -> None:
        """Start whatever component is not running, in dependency order, and wait until ready."""
        self.prepare()
        if not self.is_running("etcd"):
            self.start_component("etcd")
        self._wait("etcd", self._etcd_healthy, 60)
        self.start_apiserver()
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            if not self.is_running(component):
                self.start_component(component)
        time.sleep(0.5)
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            if not self.is_running(component):
                raise MemberError(f"{self.name}: {component} exited during start:\n{self._tail(component)}")

    def start_apiserver(self, timeout: float = 120) -> None:
        if not self.is_running("kube-apiserver"):
            self.start_component("kube-apiserver")
        self._wait("kube-apiserver", self.apiserver_ready, timeout)

    def stop_component(self, component: str, timeout: float = 15) -> None:
        """SIGTERM (then SIGKILL) a recorded process and its session; only if it is still ours."""
        entry = self.pids.get(component)
        if not entry:
            return
        pid, start_time = entry
        if _alive(pid, start_time):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid, start_time):
                time.sleep(0.1)
            if _alive(pid, start_time):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                while _alive(pid, start_time):
                    time.sleep(0.05)
        self.pids.pop(component, None)
        self.save()

    def stop_apiserver(self) -> None:
        """Stop only the apiserver: the cluster becomes unreachable, its data stays."""
        self.stop_component("kube-apiserver")

    def stop(self) -> None:
        for component in reversed(COMPONENTS):
            self.stop_component(component)

    def state(self) -> str:
        running = [c for c in COMPONENTS if self.is_running(c)]
        if not running:
            return "stopped"
        if len(running) < len(COMPONENTS):
            return "partial (" + ", ".join(c for c in COMPONENTS if c not in running) + " down)"
        return "running" if self.apiserver_ready() else "starting"

    def rss_bytes(self) -> int:
        """Resident memory of all the member's processes."""
        total = 0
        for component in COMPONENTS:
            entry = self.pids.get(component)
            if entry and _alive(entry[0], entry[1]):
                try:
                    for line in Path(f"/proc/{entry[0]}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                except OSError:
                    pass
        return total
