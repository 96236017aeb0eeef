"""Every way a call to a cluster fails maps to a precise KubeError (local fake servers, real sockets)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inventory import access, kube
from inventory.choices import ClusterStatus
from localfleet import pki


def token_creds(server: str, ca: str = "") -> dict:
    return {"method": "token", "server": server, "ca_data": ca, "token": "t"}


def call(creds: dict, path: str = "/version") -> kube.KubeError:
    with kube.connect(creds) as session, pytest.raises(kube.KubeError) as err:
        kube.request(session, "GET", path)
    return err.value


@pytest.fixture
def http_server():
    """A server answering each path with the status and body the test sets."""
    replies: dict[str, tuple[int, dict]] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            status, body = replies.get(self.path.split("?")[0], (404, {"message": "not found"}))
            data = json.dumps({"kind": "Status", **body}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", replies
    server.shutdown()
    server.server_close()


def test_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    error = call(token_creds(f"https://127.0.0.1:{port}"))
    assert error.kind == "refused"
    assert error.status == ClusterStatus.UNREACHABLE
    assert error.transient
    assert f"connection refused by 127.0.0.1:{port}" in error.message


def test_dns_failure():
    error = call(token_creds("https://cluster.does-not-exist.invalid:6443"))
    assert error.kind == "dns"
    assert "DNS lookup failed for 'cluster.does-not-exist.invalid'" in error.message


def silent_call(scheme: str) -> kube.KubeError:
    """The error of a call to a server that accepts the connection (in its backlog) and never says a word."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    try:
        return call(token_creds(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}"))
    finally:
        silent.close()


def test_read_timeout(settings):
    settings.FLEETWEB_KUBE_READ_TIMEOUT = 1
    error = silent_call("http")
    assert error.kind == "timeout"
    assert "no answer within 1s" in error.message


def test_a_tls_handshake_that_never_ends_is_a_connect_timeout(settings):
    """A server that accepts the connection and never answers the handshake ends at the connect timeout, which is
    what the message says (urllib3 calls it a read timeout)."""
    settings.FLEETWEB_KUBE_CONNECT_TIMEOUT, settings.FLEETWEB_KUBE_READ_TIMEOUT = 1, 30
    error = silent_call("https")
    assert error.kind == "timeout" and error.transient
    assert error.message == "GET /version: no TLS handshake within 1s (connect timeout)"


def test_tls_verification_failure_names_the_reason(tmp_path):
    ca_cert, ca_key = pki.make_ca("server-ca")
    cert, key = pki.issue(ca_cert, ca_key, cn="api", server=True, hosts=("127.0.0.1",))
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve():
        try:
            conn, _ = listener.accept()
            with context.wrap_socket(conn, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    threading.Thread(target=serve, daemon=True).start()
    other_ca, _ = pki.make_ca("some-other-ca")
    try:
        error = call(token_creds(f"https://127.0.0.1:{listener.getsockname()[1]}", other_ca.decode()))
    finally:
        listener.close()
    assert error.kind == "tls"
    assert error.status == ClusterStatus.TLS_ERROR
    assert not error.transient
    assert "TLS verification failed" in error.message
    assert "unable to get local issuer certificate" in error.message


@pytest.mark.parametrize(("status", "kind", "cluster_status", "transient"), [
    (401, "unauthorized", ClusterStatus.UNAUTHORIZED, False),
    (403, "forbidden", ClusterStatus.UNAUTHORIZED, False),
    (410, "gone", ClusterStatus.ERROR, True),
    (500, "http", ClusterStatus.ERROR, True),
    (429, "http", ClusterStatus.ERROR, True),
    (404, "http", ClusterStatus.ERROR, False),
])
def test_http_statuses(http_server, status, kind, cluster_status, transient):
    url, replies = http_server
    replies["/api/v1/nodes"] = (status, {"message": f"the server said {status}"})
    error = call(token_creds(url), "/api/v1/nodes")
    assert (error.kind, error.status, error.transient, error.http_status) == (kind, cluster_status, transient, status)
    if status != 401:
        assert f"the server said {status}" in error.message


def test_connection_test_never_raises_and_says_what_failed(http_server):
    url, replies = http_server
    replies["/version"] = (401, {"message": "Unauthorized"})
    report = access.test_connection(token_creds(url))
    assert not report.ok
    assert report.checks[0].name == "reach API server (/version)"
    assert "401 Unauthorized" in report.checks[0].detail


def test_credentials_that_cannot_be_loaded_are_a_config_error():
    creds = {"method": "client_cert", "server": "https://127.0.0.1:1", "ca_data": "", "client_cert": "not a cert",
             "client_key": "not a key"}
    report = access.test_connection(creds)
    assert not report.ok
    assert report.checks[0].name in ("credentials", "reach API server (/version)")


def test_insecure_drops_the_ca_and_skips_verification_only_when_asked():
    creds = {**token_creds("https://api:6443", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")}
    strict = kube._as_kubeconfig(creds, insecure=False)["clusters"][0]["cluster"]
    assert "certificate-authority-data" in strict and "insecure-skip-tls-verify" not in strict
    loose = kube._as_kubeconfig(creds, insecure=True)["clusters"][0]["cluster"]
    assert loose.get("insecure-skip-tls-verify") is True and "certificate-authority-data" not in loose
