"""A member cluster is untrusted input: a real HTTP server on loopback answers as each attack needs (a trickle, a
flood, deeply nested JSON), and every call to it ends within its total deadline and byte cap with a classified
KubeError, leaving the hub free for the other members."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inventory import access, kube, sync
from inventory.choices import ClusterStatus
from inventory.models import SyncRun
from tests.builders import make_cluster

VERSION = json.dumps({"major": "1", "minor": "35", "gitVersion": "v1.35.4"}).encode()
DEEP = b'{"major":"1","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
SHALLOW_BUT_OVER = b'{"major":"1","x":' + b"[" * 150 + b"]" * 150 + b"}"


class Hostile(ThreadingHTTPServer):
    daemon_threads = True
    mode = "ok"
    stop = threading.Event()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        server: Hostile = self.server  # type: ignore[assignment]
        mode = server.mode
        if self.command == "PATCH" or self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if mode == "trickle-body":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(10**6))
            self.end_headers()
            while not server.stop.wait(0.2):
                self.wfile.write(b" ")
                self.wfile.flush()
            return
        if mode == "trickle-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            while not server.stop.wait(0.2):
                self.wfile.write(b"X-Slow: a\r\n")
                self.wfile.flush()
            return
        if mode == "flood":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b" " * 65536
            try:
                for _ in range(100):  # 6.4 MiB, far past the test's 1 MiB cap
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            return
        if mode in ("accept", "refuse") and self.command == "PATCH":
            status, answer = (200, b"{}") if mode == "accept" else (422, json.dumps({
                "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 422,
                "message": "refused by this member's admission: policy no-privileged-containers"}).encode())
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        body = {"deep": DEEP, "over-depth": SHALLOW_BUT_OVER}.get(mode, VERSION)
        if self.path.startswith("/version") or mode in ("deep", "over-depth"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PATCH = do_POST = _answer  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile(settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    settings.FLEETWEB_KUBE_CALL_DEADLINE = 2
    settings.FLEETWEB_KUBE_READ_TIMEOUT = 1
    settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES = 2**20
    server = Hostile(("127.0.0.1", 0), _Handler)
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.stop.set()
    server.shutdown()
    server.server_close()


def credentials(server: Hostile) -> dict:
    return {"method": "token", "server": f"http://127.0.0.1:{server.server_address[1]}", "ca_data": "", "token": "t"}


@pytest.mark.parametrize("mode", ["trickle-body", "trickle-headers"])
def test_a_member_trickling_its_answer_is_cut_off_at_the_total_deadline(hostile, mode):
    """Each byte arrives well within the 1 s read timeout, so only a total deadline ends the call."""
    hostile.mode = mode
    started = time.monotonic()
    with kube.connect(credentials(hostile)) as session, pytest.raises(kube.KubeError) as err:
        kube.server_version(session)
    took = time.monotonic() - started
    assert err.value.kind == "timeout"
    assert "no complete answer within 2s (FLEETWEB_KUBE_CALL_DEADLINE)" in str(err.value)
    assert took < 4, f"the call took {took:.1f}s past its 2 s deadline"


def test_a_member_flooding_its_answer_is_cut_off_at_the_byte_cap(hostile):
    hostile.mode = "flood"
    with kube.connect(credentials(hostile)) as session, pytest.raises(kube.KubeError) as err:
        kube.request(session, "GET", "/api/v1/nodes", what="list nodes")
    assert err.value.kind == "protocol"
    assert "larger than 1 MiB (FLEETWEB_KUBE_MAX_RESPONSE_BYTES)" in str(err.value)
    assert session.bytes_read == 0


@pytest.mark.parametrize("mode", ["deep", "over-depth"])
def test_deeply_nested_json_from_a_member_is_refused(hostile, mode):
    hostile.mode = mode
    with kube.connect(credentials(hostile)) as session:
        with pytest.raises(kube.KubeError, match="nests deeper than 100 levels") as err:
            kube.server_version(session)
        assert err.value.kind == "protocol"
        with pytest.raises(kube.KubeError, match="nests deeper than 100 levels"):
            kube.apply(session, "/api/v1/namespaces/x/configmaps/y", {"kind": "ConfigMap", "metadata": {"name": "y"}})
        with pytest.raises(kube.KubeError, match="nests deeper"):
            kube.get_json(session, "/api/v1/namespaces/x")


def test_a_hostile_member_leaves_the_connection_test_a_clear_report(hostile):
    hostile.mode = "trickle-body"
    report = access.test_connection(credentials(hostile))
    assert not report.ok
    assert any("FLEETWEB_KUBE_CALL_DEADLINE" in check.detail for check in report.checks)


def test_a_hostile_member_sync_fails_alone_with_a_clear_status(hostile, db):
    """The sync of the hostile member ends within its deadline, records why, and keeps its earlier inventory."""
    hostile.mode = "trickle-body"
    cluster = make_cluster("hostile", server=credentials(hostile)["server"])
    started = time.monotonic()
    sync.sync_cluster(cluster.pk)
    assert time.monotonic() - started < 10
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.UNREACHABLE
    assert "FLEETWEB_KUBE_CALL_DEADLINE" in cluster.last_error
    run = SyncRun.objects.get(cluster=cluster)
    assert run.outcome != "ok" and "FLEETWEB_KUBE_CALL_DEADLINE" in run.error


def test_what_a_member_reports_about_itself_moves_it_into_no_scope_or_stage(admin_user):
    """The provider detected from a member's nodes is the member's word: a team scope or stage selecting
    `provider=aws` holds only clusters the platform labelled so."""
    from inventory.people import services as team_services
    from inventory.people.access import team_scope
    from inventory.selectors import parse

    claims = make_cluster("claims-aws", provider="aws")  # its nodes say EKS
    labelled = make_cluster("labelled-aws", provider="unknown", labels={"provider": "aws"})
    team = team_services.save_team(user=admin_user, name="aws-team", selector="provider=aws")
    assert team_scope(team.pk) == frozenset({labelled.pk})
    from inventory.models import Cluster

    assert list(Cluster.objects.filter(parse("provider=aws").q())) == [labelled]
    assert claims.pk not in team_scope(team.pk)


@pytest.fixture
def serve(settings, request):
    """Start another hostile member answering in `mode`."""
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]

    def start(mode: str) -> Hostile:
        server = Hostile(("127.0.0.1", 0), _Handler)
        server.stop = threading.Event()
        server.mode = mode
        threading.Thread(target=server.serve_forever, daemon=True).start()

        def stop():
            server.stop.set()
            server.shutdown()
            server.server_close()

        request.addfinalizer(stop)
        return server

    return start


CONFIGMAP = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}]


def test_one_members_refusal_is_its_finding_not_a_veto(serve, db):
    """A member on an unusual minor refusing what the others accept is that member's finding ("refused by some");
    only a refusal by every member asked fails the revision."""
    from rollouts import dryrun

    make_cluster("odd-1", version="v1.99.0", server=credentials(serve("refuse"))["server"])
    make_cluster("fine-1", version="v1.35.4", server=credentials(serve("accept"))["server"])
    result = dryrun.check(CONFIGMAP)
    assert result["state"] == dryrun.SOME_REFUSED
    by_member = {m["cluster"]: m["problems"] for m in result["members"]}
    assert by_member["fine-1"] == []
    assert by_member["odd-1"] == ["dry run of ConfigMap x: HTTP 422: refused by this member's admission: policy "
                                  "no-privileged-containers"]
    from inventory.models import Cluster

    Cluster.objects.filter(name="fine-1").update(status="unreachable")
    assert dryrun.check(CONFIGMAP)["state"] == dryrun.FAILED, "refused by every member asked"


def test_a_teams_revision_asks_only_the_members_its_team_reaches(serve, db, admin_user):
    from inventory.people import services as team_services
    from inventory.people.access import team_scope
    from rollouts import dryrun

    make_cluster("other-team", version="v1.99.0", owner="other", server=credentials(serve("refuse"))["server"])
    make_cluster("mine", version="v1.35.4", owner="mine", server=credentials(serve("accept"))["server"])
    team = team_services.save_team(user=admin_user, name="mine", selector="owner=mine")
    assert [c.name for c in dryrun.members_to_ask(team_scope(team.pk))] == ["mine"]
    assert dryrun.check(CONFIGMAP, owner_scope=team_scope(team.pk))["state"] == dryrun.PASSED


@pytest.mark.parametrize("mode", ["deep", "trickle-body"])
def test_a_hostile_member_fails_its_rollout_target_and_wedges_nothing(serve, db, settings, mode):
    """Deeply nested JSON used to escape as a RecursionError and leave the target in "applying" with no alert; a
    trickled answer held the engine. Now the target fails, naming why, within the call deadline, and the other
    member of the stage is applied."""
    import yaml

    from rollouts import engine, services
    from rollouts.choices import TargetState
    from rollouts.models import Target

    settings.FLEETWEB_KUBE_CALL_DEADLINE, settings.FLEETWEB_KUBE_READ_TIMEOUT = 2, 1
    make_cluster("hostile-1", server=credentials(serve(mode))["server"])
    make_cluster("fine-1", server=credentials(serve("accept"))["server"])
    web = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                          "data": {"a": "1"}})
    app = services.create_application(name="web", namespace="web", manifests_text=web, user=None)
    rollout = services.create_rollout(revision=app.latest_revision, user=None,
                                      stages=[{"name": "dev", "selector": "environment=dev", "max_parallel": 2,
                                               "failures_allowed": 1}])
    started = time.monotonic()
    for _ in range(4):
        engine.step_once(rollout.pk)
    assert time.monotonic() - started < 20
    hostile = Target.objects.get(cluster__name="hostile-1")
    assert hostile.state == TargetState.FAILED
    assert ("nests deeper than 100 levels" if mode == "deep" else "FLEETWEB_KUBE_CALL_DEADLINE") in hostile.message
    assert Target.objects.get(cluster__name="fine-1").state != TargetState.APPLYING
