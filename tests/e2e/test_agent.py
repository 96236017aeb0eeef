"""End to end: a member the hub may not dial (its API server listens on 127.0.0.2, which the hub's outbound policy
refuses) registered through its agent, a real process holding a ServiceAccount token of that member and talking to
the hub over HTTP on loopback (the live server): register -> pending -> accept, a sync through the relay equal to
what the API server lists, the bootstrap token spent and deleted, revocation cutting the agent off at its next
request, and no connection from the hub to the member at all."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from kubernetes import client as k8s

from agents import relay
from agents import services as agent_services
from agents.models import Agent, Registration, RegistrationState
from inventory import access
from inventory.choices import ClusterStatus, SyncOutcome
from inventory.models import Cluster, Namespace, SyncRun, Workload
from rollouts import corrections, engine, services
from rollouts.choices import DriftState, RolloutState, StageState, TargetState
from rollouts.models import Deployed, Rollout
from tests.conftest import wait_for
from tests.e2e.test_collector import _apiserver_inventory, _stored_inventory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PLURALS = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
           "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings", "Role": "roles",
           "RoleBinding": "rolebindings", "Deployment": "deployments"}


def kubectl_apply(api: k8s.ApiClient, docs: list[dict]) -> None:
    """What `kubectl apply --server-side` does with the agent's manifest, document by document."""
    for doc in docs:
        group_version = doc["apiVersion"]
        base = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
        ns = doc["metadata"].get("namespace")
        path = f"{base}{f'/namespaces/{ns}' if ns else ''}/{PLURALS[doc['kind']]}/{doc['metadata']['name']}"
        method, url, headers, body, _ = api.param_serialize(
            "PATCH", path, query_params=[("fieldManager", "kubectl"), ("force", "true")], body=doc,
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = api.call_api(method, url, header_params=headers, body=body)
        response.read()
        assert 200 <= response.status < 300, (doc["kind"], response.status, response.data)


class Dialled:
    """Every TCP connection this process opens, by address: the hub's (web threads, worker threads), except those
    the test itself makes as the member's admin inside `as_kubectl()` (its own thread only)."""

    def __init__(self, monkeypatch):
        self.addresses: list[tuple] = []
        self.local = threading.local()
        real = socket.socket.connect
        lock = threading.Lock()

        def connect(sock, address):
            if not getattr(self.local, "harness", False):
                with lock:
                    self.addresses.append(address)
            return real(sock, address)

        monkeypatch.setattr(socket.socket, "connect", connect)

    @contextlib.contextmanager
    def as_kubectl(self):
        self.local.harness = True
        try:
            yield
        finally:
            self.local.harness = False


@pytest.fixture
def agent_settings(settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.1/32", "::1/128"]  # 127.0.0.2 is "behind the firewall"
    settings.FLEETWEB_AGENT_HEARTBEAT = 2
    settings.FLEETWEB_AGENT_POLL_HOLD = 0
    return settings


def start_agent(member, hub_url: str, tmp_path: Path) -> subprocess.Popen:
    """The agent as a real process with a token of its own ServiceAccount (a TokenRequest, as a pod's is)."""
    with member.admin_api() as api:
        token = k8s.CoreV1Api(api).create_namespaced_service_account_token(
            "fleetweb-agent", "fleetweb-system", {"spec": {"expirationSeconds": 3600}}).status.token
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text(member.ca_pem)
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - the process holds it
    return subprocess.Popen([sys.executable, "-m", "fleetagent", "--hub", hub_url, "--kube-server", member.server,
                             "--token-file", str(tmp_path / "token"), "--ca-file", str(tmp_path / "ca.crt")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=Path(settings.BASE_DIR))


def register(member, *, name: str, environment: str, live_server, api_as, admin, dialled: Dialled,
             tmp_path: Path) -> tuple[subprocess.Popen, Registration]:
    """What an admin and the cluster do: a token from the API, the manifest applied in the member (its agent state
    from an earlier test removed), the agent started; returns the agent and its pending registration."""
    answer = api_as(admin).post("/api/v1/registrations/", {"name": name, "environment": environment}, format="json")
    assert answer.status_code == 201, answer.content
    created = answer.json()
    assert created["command"].startswith("kubectl apply -f '") and created["bootstrap_token"] in created["command"]
    docs = [d for d in yaml.safe_load_all(created["manifest"]) if d]
    with dialled.as_kubectl(), member.admin_api() as api:
        try:
            k8s.CoreV1Api(api).delete_namespaced_secret("fleetweb-agent-state", "fleetweb-system")
        except k8s.ApiException as exc:
            if exc.status != 404:
                raise
        kubectl_apply(api, docs)
        agent = start_agent(member, live_server.url, tmp_path)
    registration = wait_for(lambda: Registration.objects.filter(name=name).first(), timeout=60,
                            what="the agent's registration")
    assert registration.state == RegistrationState.PENDING
    return agent, registration


def record_asks(monkeypatch) -> list[tuple[float, str]]:
    """What the hub asks agents for from now on (the API path of each work item), and when."""
    asked: list[tuple[float, str]] = []
    submit = relay.Relay.submit

    def recording(self, op, **kwargs):
        asked.append((time.monotonic(), op.get("path", "")))
        return submit(self, op, **kwargs)

    monkeypatch.setattr(relay.Relay, "submit", recording)
    return asked


def stop(agent: subprocess.Popen) -> None:
    if agent.poll() is None:
        agent.terminate()
        agent.wait(15)


def test_register_accept_sync_and_revoke_a_cluster_the_hub_cannot_reach(
        firewalled_member, agent_settings, live_server, celery_worker, api_as, admin_user, monkeypatch, tmp_path):
    member = firewalled_member
    assert member.server.startswith("https://127.0.0.2:")
    # The firewall is real: the hub refuses to dial the member directly.
    report = access.test_connection(member.token_credentials())
    assert not report.ok and report.error is not None and report.error.kind == "policy", report.checks
    dialled = Dialled(monkeypatch)
    asked = record_asks(monkeypatch)
    agent, registration = register(member, name="edge-1", environment="prod", live_server=live_server,
                                   api_as=api_as, admin=admin_user, dialled=dialled, tmp_path=tmp_path)
    try:
        with dialled.as_kubectl(), member.admin_api() as api:
            kube_system = k8s.CoreV1Api(api).read_namespace("kube-system").metadata.uid
            nodes = len(k8s.CoreV1Api(api).list_node().items)
            bootstrap_left = [s.metadata.name for s in
                              k8s.CoreV1Api(api).list_namespaced_secret("fleetweb-system").items]
        assert registration.kube_system_uid == kube_system
        assert registration.node_count == nodes
        assert registration.kubernetes_version == member.version
        assert "fleetweb-agent-bootstrap" not in bootstrap_left, "the spent bootstrap token stays in the cluster"
        assert not Cluster.objects.filter(name="edge-1").exists(), "a pending registration is no member"

        listed = api_as(admin_user).get("/api/v1/registrations/?state=pending").json()
        assert [r["name"] for r in listed["results"]] == ["edge-1"]
        accepted = api_as(admin_user).post(f"/api/v1/registrations/{registration.pk}/accept/")
        assert accepted.status_code == 200, accepted.content
        cluster = Cluster.objects.get(name="edge-1")
        assert cluster.auth_method == "agent" and cluster.environment == "prod"

        wait_for(lambda: SyncRun.objects.filter(cluster=cluster, outcome=SyncOutcome.SUCCEEDED).exists(),
                 timeout=90, what="a successful sync through the agent")
        with dialled.as_kubectl():
            actual = _apiserver_inventory(member)
        # The agent reports each kind as its watch's first list completes: the inventory fills within seconds.
        wait_for(lambda: _stored_inventory(cluster) == actual, timeout=30, what="the whole inventory")
        cluster.refresh_from_db()
        assert cluster.status == ClusterStatus.CONNECTED, cluster.status_reason
        heard = Agent.objects.get(cluster=cluster)
        assert heard.version == "0.1.0" and heard.last_heartbeat_at is not None
        assert all(check["ok"] for check in heard.report["checks"]), heard.report

        # A change on the member shows without waiting for the schedule: the agent's watch sends the changed list,
        # which the hub writes as it comes.
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                      "metadata": {"name": "seen-in-seconds", "namespace": "default"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "seen"}},
                               "template": {"metadata": {"labels": {"app": "seen"}},
                                            "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}
        with dialled.as_kubectl(), member.admin_api() as api:
            k8s.AppsV1Api(api).create_namespaced_deployment("default", deployment)
        changed_at = time.monotonic()
        try:
            wait_for(lambda: Workload.objects.filter(cluster=cluster, name="seen-in-seconds").exists(), timeout=30,
                     interval=0.1, what="the new Deployment in the stored inventory")
            print(f"change visible after {time.monotonic() - changed_at:.1f}s")
            cluster.refresh_from_db()  # the change's write counted the rows it wrote, in its transaction
            assert cluster.workload_count == Workload.objects.filter(cluster=cluster).count()
            assert SyncRun.objects.filter(cluster=cluster, triggered_by="change").exists()
            assert not [path for at, path in asked if at >= changed_at and "deployments" in path], \
                "the agent sent the changed list: the hub asked it for nothing"
        finally:
            with dialled.as_kubectl(), member.admin_api() as api:
                k8s.AppsV1Api(api).delete_namespaced_deployment("seen-in-seconds", "default")

        # Revoking cuts the agent off at its next request: the process ends, saying why.
        agent_services.revoke(cluster, user=admin_user)
        assert agent.wait(timeout=30) == 3
        assert "revoked" in (tmp_path / "agent.log").read_text()
    finally:
        stop(agent)
    host = member.server.removeprefix("https://").split(":")[0]
    # The recorder sees connections other threads make (the hub's web and worker threads are such threads).
    host_port = live_server.url.removeprefix("http://").split(":")
    probe = threading.Thread(target=lambda: socket.create_connection((host_port[0], int(host_port[1])), 5).close())
    probe.start()
    probe.join(10)
    assert any(isinstance(a, tuple) and a[1] == int(host_port[1]) for a in dialled.addresses)
    assert not [a for a in dialled.addresses if isinstance(a, tuple) and a[0] == host], \
        "the hub connected to the firewalled member"


@pytest.fixture
def agent_gateway(agent_settings):
    """The agents' gateway (agents.gateway, as `python -m fleetweb.agent_gateway` serves it), on uvicorn in this
    process (so it sees the test database), holding polls up to 20 s; its address is what agents are given."""
    import uvicorn

    from agents.gateway import make_app
    from fleetweb.wsgi import application
    from localfleet.member import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(application, hold=20, threads=4), host="127.0.0.1", port=port,
                                           lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=30, what="the agents' gateway started")

    class Gateway:
        url = f"http://127.0.0.1:{port}"

    agent_settings.FLEETWEB_AGENT_URL = Gateway.url
    yield Gateway
    server.should_exit = True
    thread.join(30)


def test_through_the_agents_gateway_work_is_picked_up_as_it_is_queued(
        firewalled_member, agent_settings, agent_gateway, live_server, celery_worker, api_as, admin_user,
        monkeypatch, tmp_path):
    """The agent given the gateway's address holds its poll open there: a call through it is answered as soon as
    it is queued, although an agent that polled would now ask only every 30 s."""
    member = firewalled_member
    agent_settings.FLEETWEB_AGENT_POLL = 30
    dialled = Dialled(monkeypatch)
    created = api_as(admin_user).post("/api/v1/registrations/", {"name": "edge-gw-2", "environment": "dev"},
                                      format="json").json()
    deployment = next(d for d in yaml.safe_load_all(created["manifest"]) if d and d["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--hub", agent_gateway.url]
    assert created["command"].startswith(f"kubectl apply -f '{agent_gateway.url}/agent/v1/manifest.yaml?token=")
    agent, registration = register(member, name="edge-gw", environment="dev", live_server=agent_gateway,
                                   api_as=api_as, admin=admin_user, dialled=dialled, tmp_path=tmp_path)
    try:
        agent_services.decide(registration, accept=True, user=admin_user)
        cluster = Cluster.objects.get(name="edge-gw")
        wait_for(lambda: Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.CONNECTED, timeout=90,
                 what="the cluster connected through the gateway")
        with dialled.as_kubectl():
            actual = _apiserver_inventory(member)
        wait_for(lambda: _stored_inventory(cluster) == actual, timeout=60, what="the whole inventory")
        time.sleep(3)  # the agent idle: its poll is held
        from inventory import port as member_port

        took = []
        for _ in range(5):
            started = time.monotonic()
            version = member_port.connect(Cluster.objects.get(pk=cluster.pk)).version()
            took.append(time.monotonic() - started)
            assert version["gitVersion"] == member.version
        assert max(took) < 3, f"each call waited for a poll: {took}"
        print(f"calls through the held poll took {[round(t, 3) for t in took]} s")
    finally:
        stop(agent)
    host = member.server.removeprefix("https://").split(":")[0]
    assert not [a for a in dialled.addresses if isinstance(a, tuple) and a[0] == host], \
        "the hub connected to the firewalled member"


MANIFESTS = yaml.safe_dump_all([
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{"name": "web", "image": "registry.example.com/shop/web:1.0",
                                                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"level": "info"}},
    *({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"extra-{i:02d}"}, "data": {"i": str(i)}}
      for i in range(12)),
])
NAMESPACE = "edge-shop"


def test_a_staged_rollout_with_approval_reaches_the_agent_cluster_and_drift_is_corrected(
        firewalled_member, agent_settings, live_server, celery_worker, api_as, admin_user, approver, monkeypatch,
        tmp_path):
    member = firewalled_member
    dialled = Dialled(monkeypatch)
    agent, registration = register(member, name="edge-prod", environment="prod", live_server=live_server,
                                   api_as=api_as, admin=admin_user, dialled=dialled, tmp_path=tmp_path)
    try:
        agent_services.decide(registration, accept=True, user=admin_user)
        cluster = Cluster.objects.get(name="edge-prod")
        wait_for(lambda: SyncRun.objects.filter(cluster=cluster, outcome=SyncOutcome.SUCCEEDED).exists(),
                 timeout=90, what="a first sync through the agent")

        app = services.create_application(name="edge-shop", namespace=NAMESPACE, manifests_text=MANIFESTS,
                                          user=admin_user)
        # The dry run at save reached the agent cluster (the only prod member) through the agent.
        rollout = services.create_rollout(revision=app.latest_revision, user=admin_user, stages=[
            {"name": "production", "selector": "name=edge-prod", "health_deadline": 120}])
        wait_for(lambda: rollout.stages.get(index=0).state == StageState.AWAITING_APPROVAL, timeout=60,
                 what="the prod stage to wait for an approver")
        with dialled.as_kubectl(), member.admin_api() as api:
            namespaces = [n.metadata.name for n in k8s.CoreV1Api(api).list_namespace().items]
        assert NAMESPACE not in namespaces, "nothing reached prod before the approval"
        approved = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "edge ok"},
                                         format="json")
        assert approved.status_code == 200, approved.content

        # The agent dies mid-apply (some objects applied, the rest not) and its pod starts again: the new process
        # is handed the call the old one held, and the target ends applied once.
        def some_applied():
            with dialled.as_kubectl(), member.admin_api() as api:
                try:
                    return k8s.CoreV1Api(api).list_namespaced_config_map(NAMESPACE).items
                except k8s.ApiException:
                    return []
        wait_for(some_applied, timeout=90, interval=0.05, what="the apply to begin on the member")
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        with dialled.as_kubectl():
            agent = start_agent(member, live_server.url, tmp_path)
        for _ in range(3):  # the test has no beat: run the engine as its ticks would
            wait_for(lambda: engine.advance(rollout.pk) != "busy", timeout=60, what="an engine pass")
        wait_for(lambda: (engine.advance(rollout.pk) or True)
                 and Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED,
                 timeout=150, interval=2, what="the rollout to succeed on the agent cluster")

        def live_replicas():
            with dialled.as_kubectl(), member.admin_api() as api:
                deployment = k8s.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE)
            return deployment.spec.replicas, deployment.metadata.annotations.get("fleetweb.io/revision")
        assert live_replicas() == (2, "1")
        deployed = Deployed.objects.get(application=app, cluster=cluster)
        assert sorted({o["kind"] for o in deployed.objects_applied}) == ["ConfigMap", "Deployment"]
        target = rollout.stages.get(index=0).targets.get()
        assert (target.attempts, target.state) == (1, TargetState.READY), target.message

        # Changed by hand on the member: the drift check (through the agent) finds it, Re-apply corrects it.
        with dialled.as_kubectl(), member.admin_api() as api:
            k8s.AppsV1Api(api).patch_namespaced_deployment_scale("web", NAMESPACE, {"spec": {"replicas": 5}},
                                                                 field_manager="kubectl-scale")
        drift = corrections.check(deployed.pk)
        assert drift is not None and drift.state == DriftState.DRIFTED, drift and drift.objects_state
        corrections.request_reapply(deployed, user=admin_user)
        wait_for(lambda: live_replicas()[0] == 2, timeout=60, what="the re-apply to restore 2 replicas")
        assert corrections.check(deployed.pk).state == DriftState.IN_SYNC
    finally:
        stop(agent)
        with dialled.as_kubectl(), member.admin_api() as api:
            try:
                k8s.CoreV1Api(api).delete_namespace(NAMESPACE)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise
    host = member.server.removeprefix("https://").split(":")[0]
    assert not [a for a in dialled.addresses if isinstance(a, tuple) and a[0] == host], \
        "the hub connected to the firewalled member"


def test_an_enforced_policy_is_installed_through_the_agent_and_refuses_a_violating_pod(
        firewalled_member, agent_settings, live_server, celery_worker, api_as, admin_user, monkeypatch, tmp_path):
    from governance import enforcement
    from governance.choices import EnforcementState
    from governance.models import Enforcement, PolicyAssignment
    from tests.e2e.test_governance import _create_pod, _name, _pod

    member = firewalled_member
    dialled = Dialled(monkeypatch)
    agent, registration = register(member, name="edge-enforced", environment="prod", live_server=live_server,
                                   api_as=api_as, admin=admin_user, dialled=dialled, tmp_path=tmp_path)
    try:
        agent_services.decide(registration, accept=True, user=admin_user)
        cluster = Cluster.objects.get(name="edge-enforced")
        wait_for(lambda: SyncRun.objects.filter(cluster=cluster, outcome=SyncOutcome.SUCCEEDED).exists(),
                 timeout=90, what="a first sync through the agent")
        client = api_as(admin_user)
        assert client.post("/api/v1/groups/", {"name": "edge", "selector": "name=edge-enforced"},
                           format="json").status_code == 201
        response = client.post("/api/v1/policy-assignments/", {
            "group": "edge", "rule": "no-privileged-containers", "mode": "enforce"}, format="json")
        assert response.status_code == 201, response.content
        assignment = PolicyAssignment.objects.get(pk=response.json()["id"])
        wait_for(lambda: Enforcement.objects.filter(assignment=assignment, cluster=cluster,
                                                    state=EnforcementState.INSTALLED).exists(),
                 what="the admission policy installed through the agent", timeout=90)
        with dialled.as_kubectl():
            refused = wait_for(lambda: _create_pod(member, "default", _pod(_name("priv"), privileged=True)),
                               what="the privileged pod refused by the member", timeout=30)
            assert refused.status in (403, 422) and "privileged containers are not allowed" in refused.body
            assert _create_pod(member, "default", _pod(_name("plain"))) is None
        assert client.delete(f"/api/v1/policy-assignments/{assignment.pk}/").status_code == 204
        wait_for(lambda: not Enforcement.objects.filter(cluster=cluster).exists(), what="enforcement removed",
                 timeout=90)
        with dialled.as_kubectl(), member.admin_api() as api:
            left = k8s.AdmissionregistrationV1Api(api).list_validating_admission_policy(
                label_selector=enforcement.SELECTOR).items
        assert left == []
    finally:
        stop(agent)
    host = member.server.removeprefix("https://").split(":")[0]
    assert not [a for a in dialled.addresses if isinstance(a, tuple) and a[0] == host], \
        "the hub connected to the firewalled member"


class Cuttable:
    """A TCP relay from the agent to the hub that can be cut (every connection closed, new ones refused) and
    restored: the hub gone for a while, as in a restart or a network outage."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.cut = threading.Event()
        self.stopped = threading.Event()
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            if self.cut.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, 5)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.open += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def sever(self) -> None:
        self.cut.set()
        with self.lock:
            for conn in self.open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.open = []

    def restore(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.stopped.set()
        self.sever()
        self.server.close()


def test_an_agent_that_loses_the_hub_shows_unreachable_then_catches_up(
        firewalled_member, agent_settings, live_server, celery_worker, api_as, admin_user, monkeypatch, tmp_path,
        client):
    member = firewalled_member
    dialled = Dialled(monkeypatch)
    host, port = live_server.url.removeprefix("http://").split(":")
    link = Cuttable(host, int(port))

    class ThroughLink:  # the agent reaches the hub through the cuttable link
        url = link.url

    agent, registration = register(member, name="edge-far", environment="dev", live_server=ThroughLink,
                                   api_as=api_as, admin=admin_user, dialled=dialled, tmp_path=tmp_path)
    try:
        agent_services.decide(registration, accept=True, user=admin_user)
        cluster = Cluster.objects.get(name="edge-far")
        wait_for(lambda: Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.CONNECTED, timeout=90,
                 what="the cluster connected through its agent")

        link.sever()
        # Beat's task, run here: two missed heartbeats (2 s each) make it unreachable, saying since when.
        wait_for(lambda: agent_services.silent_agents() or
                 Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.UNREACHABLE, timeout=30, interval=0.5,
                 what="the silent agent's cluster marked unreachable")
        cluster.refresh_from_db()
        assert cluster.status == ClusterStatus.UNREACHABLE
        assert cluster.status_reason.startswith("agent not connected since")
        client.force_login(admin_user)
        assert "agent not connected since" in client.get(f"/clusters/{cluster.name}/").content.decode()

        with dialled.as_kubectl(), member.admin_api() as api:  # a change while the hub is away
            k8s.CoreV1Api(api).create_namespace({"metadata": {"name": "made-while-away"}})
        time.sleep(3)
        asked = record_asks(monkeypatch)
        restored_at = time.monotonic()
        link.restore()
        wait_for(lambda: Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.CONNECTED, timeout=60,
                 what="the cluster connected again")
        wait_for(lambda: Namespace.objects.filter(cluster=cluster, name="made-while-away").exists(), timeout=30,
                 what="the change made while the hub was away")
        # Its watches resumed where they were: the agent sent what it kept, and the hub read nothing through it.
        assert not [path for at, path in asked if at >= restored_at], asked
        assert agent.poll() is None, "the agent kept running through the outage"
    finally:
        stop(agent)
        link.close()
        with dialled.as_kubectl(), member.admin_api() as api:
            try:
                k8s.CoreV1Api(api).delete_namespace("made-while-away")
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise
    host_name = member.server.removeprefix("https://").split(":")[0]
    assert not [a for a in dialled.addresses if isinstance(a, tuple) and a[0] == host_name], \
        "the hub connected to the firewalled member"
