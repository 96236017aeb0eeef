"""The outbound address policy: what Fleetweb dials, and what it says about what answered."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foundation import outbound
from inventory import access, kube, port, services
from inventory.models import Cluster
from tests.builders import make_cluster


@pytest.fixture
def strict(settings):
    """The production default: nothing extra allowed, so loopback is refused."""
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    settings.FLEETWEB_DENIED_NETWORKS = []
    return settings


@pytest.fixture
def server():
    """A local HTTP server that counts the requests reaching it and answers with a chosen body."""
    hits = []
    reply = {"status": 403, "type": "text/html", "body": b"<h1>SECRET-BODY from the inside</h1>"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            self.send_response(reply["status"])
            self.send_header("Content-Type", reply["type"])
            self.send_header("Content-Length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

        do_POST = do_GET  # noqa: N815

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "port": httpd.server_address[1], "hits": hits,
           "reply": reply}
    httpd.shutdown()
    httpd.server_close()


def token(server: str) -> dict:
    return {"method": "token", "server": server, "ca_data": "", "token": "t"}


@pytest.mark.parametrize(("url", "message"), [
    ("https://api.example.com:6443/#", "may not have a fragment"),
    ("http://127.0.0.1:6379/x#", "may not have a fragment"),
    ("https://api.example.com/?watch=1", "may not have a query string"),
    ("https://user:pw@api.example.com", "may not carry a user name or password"),
    ("https://api.example.com/a/../../admin", "may not contain '.', '..' or percent-escapes"),
    ("https://api.example.com/%2e%2e/", "percent-escapes"),
    ("ftp://api.example.com", "must start with https://"),
    ("https://", "has no host"),
    ("https://api.example.com:99999", "has an invalid port"),
    ("https://api.example.com\r\nHost: x", "control characters"),
])
def test_urls_are_checked_as_text(url, message):
    with pytest.raises(outbound.OutboundRefused, match=message):
        outbound.check_url(url, schemes=("https", "http") if url.startswith("http://") else ("https",), what="URL")


def test_a_proxied_server_path_prefix_is_kept_and_normalized():
    target = outbound.check_url("https://Rancher.Example.com//k8s/clusters/c-1/", schemes=("https",))
    assert target.url == "https://rancher.example.com/k8s/clusters/c-1"
    assert (target.host, target.port) == ("rancher.example.com", 443)


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("100.100.100.200", "denied network"),
    ("0.0.0.0", "not a unicast address"),
])
def test_host_and_metadata_addresses_are_refused(strict, address, reason):
    assert reason in outbound.address_refusal(address)


@pytest.mark.parametrize(("address", "reason"), [
    ("168.63.129.16", "denied network 168.63.129.16/32"),  # Azure's host (WireServer)
    ("192.0.0.192", "denied network 192.0.0.192/32"),  # Oracle Cloud metadata
    ("fd20:ce::254", "denied network fd20:ce::254/128"),  # GCP metadata over IPv6
    ("fd00:ec2::254", "denied network"),  # AWS metadata over IPv6
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("64:ff9b::6464:64c8", "denied network 100.100.100.200/32"),  # NAT64 of Alibaba's metadata
    ("64:ff9b:1::a83f:8110", "denied network 168.63.129.16/32"),  # local-use NAT64 of Azure's host
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:5601:5601", "link-local"),  # Teredo whose client is 169.254.169.254
    ("::ffff:168.63.129.16", "denied network 168.63.129.16/32"),
])
def test_every_clouds_metadata_and_host_addresses_are_refused_in_every_form(strict, address, reason):
    assert reason in outbound.address_refusal(address)
    assert reason in outbound.address_refusal(address, purpose="channel")


def test_private_ranges_are_chosen_per_purpose(strict):
    """Clusters and the identity provider may sit on private networks (all allowed by default); alert channels, which
    team operators point anywhere, reach public addresses only unless an admin allows a range."""
    for private in ("10.0.0.5", "172.20.1.1", "192.168.1.10", "100.64.0.1", "fd12:3456::1", "64:ff9b::a00:5"):
        assert outbound.address_refusal(private, purpose="cluster") == ""
        assert outbound.address_refusal(private, purpose="idp") == ""
        assert "not allowed for channel URLs (FLEETWEB_CHANNEL_PRIVATE_NETWORKS)" in outbound.address_refusal(
            private, purpose="channel")
    assert outbound.address_refusal("192.0.2.10", purpose="channel") == ""
    strict.FLEETWEB_CHANNEL_PRIVATE_NETWORKS = ["10.1.0.0/16"]
    assert outbound.address_refusal("10.1.2.3", purpose="channel") == ""
    assert "private network 10.0.0.0/8" in outbound.address_refusal("10.2.0.1", purpose="channel")
    strict.FLEETWEB_CLUSTER_PRIVATE_NETWORKS = ["192.168.0.0/16"]
    assert "FLEETWEB_CLUSTER_PRIVATE_NETWORKS" in outbound.address_refusal("10.0.0.5", purpose="cluster")
    strict.FLEETWEB_IDP_PRIVATE_NETWORKS = []
    assert "FLEETWEB_IDP_PRIVATE_NETWORKS" in outbound.address_refusal("10.0.0.5", purpose="idp")


def test_team_operator_cannot_point_a_channel_at_a_private_address(strict, db):
    from foundation.errors import ServiceError
    from notifications.models import Channel
    from notifications.services import check_channel_url

    with pytest.raises(ServiceError, match="private network 10.0.0.0/8, which is not allowed for channel URLs"):
        check_channel_url("https://10.0.0.5/hook")
    assert not Channel.objects.exists()


def test_denied_and_allowed_networks(strict):
    strict.FLEETWEB_DENIED_NETWORKS = ["10.0.0.0/8"]
    assert "10.0.0.0/8" in outbound.address_refusal("10.1.2.3")
    assert outbound.address_refusal("192.0.2.10") == ""
    strict.FLEETWEB_ALLOWED_NETWORKS = ["10.1.0.0/16", "127.0.0.1/32"]
    assert outbound.address_refusal("10.1.2.3") == ""
    assert outbound.address_refusal("127.0.0.1") == ""


def test_a_name_resolving_to_loopback_is_refused_after_resolution(strict):
    with pytest.raises(outbound.OutboundRefused, match="'localhost' resolves to .*loopback address"):
        outbound.check_and_resolve("https://localhost:6443")


def test_the_dialled_address_is_the_checked_one_at_connection_time(strict, server, monkeypatch):
    """DNS rebinding: the name passes a first lookup, then resolves to 127.0.0.1; the connection is refused
    because each connection resolves, checks and dials the same answer."""
    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.10", server["port"]))]])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            try:
                return next(answers)
            except StopIteration:
                return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    outbound.check_and_resolve(f"http://rebind.example:{server['port']}", schemes=("http",))  # first answer: public
    with kube.connect(token(f"http://rebind.example:{server['port']}")) as session, \
            pytest.raises(kube.KubeError) as err:
        kube.request(session, "GET", "/version")
    assert err.value.kind == "policy"
    assert "loopback" in err.value.message
    assert server["hits"] == []


def test_connection_test_to_loopback_reaches_nothing(strict, server):
    report = access.test_connection(token(server["url"]))
    assert not report.ok
    assert "loopback address" in report.checks[0].detail
    assert server["hits"] == []


def test_metadata_address_is_refused_without_dialling(strict):
    report = access.test_connection(token("http://169.254.169.254"))
    assert not report.ok
    assert "link-local" in report.checks[0].detail


def test_a_body_that_is_not_a_kubernetes_status_is_never_echoed(server):
    report = access.test_connection(token(server["url"]))
    assert not report.ok
    text = " ".join(c.detail for c in report.checks)
    assert "SECRET-BODY" not in text
    assert "403 Forbidden: Forbidden" in text


def test_a_status_lookalike_from_a_non_kubernetes_server_is_not_echoed(server):
    server["reply"].update(type="application/json", body=b'{"message": "SECRET-MESSAGE", "kind": "Other"}')
    report = access.test_connection(token(server["url"]))
    assert "SECRET-MESSAGE" not in " ".join(c.detail for c in report.checks)


def test_a_raw_banner_is_never_echoed():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def banner():
        for _ in range(4):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.6 SECRET-BANNER\r\n")
            conn.close()

    threading.Thread(target=banner, daemon=True).start()
    try:
        report = access.test_connection(token(f"http://127.0.0.1:{listener.getsockname()[1]}"))
    finally:
        listener.close()
    detail = report.checks[0].detail
    assert not report.ok
    assert "SECRET-BANNER" not in detail and "OpenSSH" not in detail
    assert "does not speak HTTP" in detail


def test_operator_cannot_attach_a_server_the_policy_refuses(strict, operator):
    with pytest.raises(services.AttachError, match="169.254.169.254' is a link-local address"):
        services.attach_cluster(name="meta", credentials=token("https://169.254.169.254"), user=operator)
    assert not Cluster.objects.exists()


def test_operator_cannot_attach_a_fragment_url_through_the_api(operator, api_as):
    response = api_as(operator).post("/api/v1/clusters/", {"name": "redis", "server": "https://127.0.0.1:6379/x#",
                                                           "token": "t"}, format="json")
    assert response.status_code == 400
    assert "fragment" in str(response.json())
    assert not Cluster.objects.exists()


def test_plain_http_is_never_stored_as_prod_and_is_admin_only_elsewhere(operator, admin_user, api_as):
    body = {"name": "clear", "server": "http://api.example.com:8080", "token": "t", "environment": "prod"}
    response = api_as(admin_user).post("/api/v1/clusters/", body, format="json")
    assert response.status_code == 400
    assert "never allowed for prod" in str(response.json())
    response = api_as(operator).post("/api/v1/clusters/", {**body, "environment": "dev"}, format="json")
    assert response.status_code == 403
    assert "Only admins may attach a plain http://" in response.json()["detail"]
    assert not Cluster.objects.exists()


def test_operator_cannot_move_a_plain_http_cluster_into_prod(admin_user):
    cluster = make_cluster("clear", server="http://api.example.com:8080")
    with pytest.raises(services.AttachError, match="never allowed for prod"):
        services.update_cluster(cluster, user=admin_user, environment="prod")
    cluster.refresh_from_db()
    assert cluster.environment != "prod"


def test_the_page_refuses_a_fragment_in_the_server_url(operator, client):
    client.force_login(operator)
    response = client.post("/clusters/attach/", {"method": "token", "server": "https://127.0.0.1:6379/#",
                                                 "token": "t", "meta-name": "x", "meta-environment": "dev",
                                                 "meta-sync_interval": "60"})
    assert response.status_code == 400
    assert b"may not have a fragment" in response.content
    assert not Cluster.objects.exists()


def test_webhooks_to_refused_addresses_are_not_sent(strict, server, settings, caplog):
    from rollouts.tasks import send_webhook

    settings.FLEETWEB_WEBHOOK_URL = server["url"] + "/hook"
    assert send_webhook.run({"event": "rollout.succeeded"}) == ""
    assert server["hits"] == []
    assert "loopback" in caplog.text


def test_a_proxied_server_url_with_a_path_prefix_attaches(operator, api_as, django_capture_on_commit_callbacks):
    """Rancher-style proxied API servers live under a path; the prefix is kept, normalized, and used for calls."""
    with django_capture_on_commit_callbacks(execute=False):
        response = api_as(operator).post("/api/v1/clusters/", {
            "name": "proxied", "server": "https://rancher.example.com//k8s/clusters/c-m-1/", "token": "t"},
            format="json")
    assert response.status_code == 201, response.content
    cluster = Cluster.objects.get(name="proxied")
    assert cluster.server == "https://rancher.example.com/k8s/clusters/c-m-1"
    with port.connect(cluster) as member:
        assert member.session.api.configuration.host == "https://rancher.example.com/k8s/clusters/c-m-1"


def test_calls_keep_the_path_prefix(server):
    server["reply"].update(status=200, type="application/json", body=b'{"gitVersion": "v1.36.0"}')
    with kube.connect(token(server["url"] + "/k8s/clusters/c-1")) as session:
        assert kube.server_version(session)["gitVersion"] == "v1.36.0"
    assert server["hits"] == ["/k8s/clusters/c-1/version"]
