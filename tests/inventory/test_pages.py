"""Pages: roles, HTMX partials on the same URLs, wizard errors that lose nothing, CSV, query counts."""

from __future__ import annotations

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.models import AuditEvent
from inventory.models import Cluster
from tests.builders import make_cluster, make_workload

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def login(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize("url", ["/", "/clusters/", "/clusters/attach/", "/audit/"])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_outsider_gets_403(client, outsider):
    assert login(client, outsider).get("/clusters/").status_code == 403


def test_viewer_sees_lists_but_not_operator_pages(client, viewer):
    make_cluster("c1")
    login(client, viewer)
    assert client.get("/").status_code == 200
    page = client.get("/clusters/")
    assert page.status_code == 200 and b"Attach cluster" not in page.content
    assert client.get("/clusters/attach/").status_code == 403
    assert client.post("/clusters/c1/sync/").status_code == 403
    assert client.get("/clusters/c1/detach/").status_code == 403
    assert client.get("/audit/").status_code == 403


def test_overview_full_page_and_partial(client, viewer):
    make_cluster("ok", nodes=2)
    make_cluster("down", status="unreachable", version="v1.34.4").__class__.objects.filter(name="down").update(
        status_reason="connection refused")
    login(client, viewer)
    full = client.get("/")
    assert b"<html" in full.content and b'hx-trigger="every 10s"' in full.content
    partial = client.get("/", **HX)
    assert b"<html" not in partial.content
    assert b"connection refused" in partial.content
    assert b"v1.34" in partial.content and b"v1.35" in partial.content
    assert "HX-Request" in partial["Vary"]


def test_cluster_list_filters_with_and_without_htmx(client, viewer):
    make_cluster("prod-eu", environment="prod")
    make_cluster("dev-us", environment="dev", region="us-east-1")
    login(client, viewer)
    full = client.get("/clusters/?environment=prod")
    assert b"<html" in full.content and b"prod-eu" in full.content and b"dev-us" not in full.content
    partial = client.get("/clusters/?q=us-east", **HX)
    assert b"<html" not in partial.content and b"dev-us" in partial.content and b"prod-eu" not in partial.content
    bad = client.get("/clusters/?environment=nope")
    assert bad.status_code == 200 and b"Select a valid choice" in bad.content


def test_cluster_csv_export(client, viewer):
    make_cluster("c1", labels={"team": "shop"}, nodes=2)
    login(client, viewer)
    response = client.get("/clusters/export.csv")
    assert response["Content-Type"] == "text/csv"
    content = b"".join(response.streaming_content)
    lines = content.decode().splitlines()
    assert lines[0].startswith("name,environment,region")
    assert lines[1].startswith("c1,dev,eu-west-1") and "team=shop" in lines[1]
    assert "secret-token" not in content.decode()


def test_cluster_detail_tabs_are_partials(client, viewer):
    cluster = make_cluster("c1", nodes=3)
    make_workload(cluster, "web", namespace="shop", desired=3, available=1)
    login(client, viewer)
    full = client.get("/clusters/c1/")
    assert b"<html" in full.content and b"3 / 3" in full.content
    tab = client.get("/clusters/c1/?tab=workloads", HTTP_HX_TARGET="tab-content", **HX)
    assert b"<html" not in tab.content and b"web" in tab.content and b"unavailable" in tab.content
    nodes = client.get("/clusters/c1/?tab=nodes", HTTP_HX_TARGET="tab-content", **HX)
    assert nodes.content.count(b"<tr>") == 4  # header + 3 nodes
    assert client.get("/clusters/missing/").status_code == 404


def test_sync_now_queues_and_returns_the_button(client, operator, monkeypatch):
    queued = []
    monkeypatch.setattr("inventory.services.request_sync", lambda pk, **kw: queued.append(pk))
    cluster = make_cluster("c1")
    login(client, operator)
    response = client.post("/clusters/c1/sync/", **HX)
    assert queued == [cluster.pk]
    assert b"Sync queued" in response.content and b"<html" not in response.content


def test_detach_needs_the_name_typed(client, operator):
    make_cluster("c1")
    login(client, operator)
    wrong = client.post("/clusters/c1/detach/", {"confirm_name": "c2"})
    assert wrong.status_code == 400 and Cluster.objects.filter(name="c1").exists()
    response = client.post("/clusters/c1/detach/", {"confirm_name": "c1"})
    assert response.status_code == 302 and not Cluster.objects.exists()
    assert AuditEvent.objects.filter(action="cluster.detach", actor_name="otto-operator").exists()


def test_edit_rejects_bad_labels_and_keeps_input(client, operator):
    make_cluster("c1")
    login(client, operator)
    response = client.post("/clusters/c1/edit/", {"environment": "staging", "region": "x", "labels": "ok=1\nbad key=2",
                                                  "sync_interval": 60})
    assert response.status_code == 200
    assert b"Label key &#x27;bad key&#x27; is invalid" in response.content
    assert b"bad key=2" in response.content  # what was typed is still there
    assert Cluster.objects.get(name="c1").environment == "dev"


def test_wizard_token_attach_and_errors(client, operator, django_capture_on_commit_callbacks):
    login(client, operator)
    base = {"method": "token", "meta-environment": "staging", "meta-sync_interval": 60}
    missing = client.post("/clusters/attach/", {**base, "server": "https://api.example.com:6443",
                                                "meta-name": "new-one"})
    assert missing.status_code == 400 and b"A bearer token or a client certificate is required" in missing.content
    assert b'value="new-one"' in missing.content  # nothing typed is lost
    with django_capture_on_commit_callbacks(execute=False):
        untested = client.post("/clusters/attach/", {**base, "server": "https://api.example.com:6443",
                                                     "token": "tok", "meta-name": "new-one"})
        assert untested.status_code == 400 and b"Test the connection first" in untested.content
        assert not Cluster.objects.filter(name="new-one").exists()
        ok = client.post("/clusters/attach/", {**base, "server": "https://api.example.com:6443", "token": "tok",
                                               "meta-name": "new-one", "meta-labels": "team=shop",
                                               "meta-attach_anyway": "on"})
    assert ok.status_code == 302 and ok["Location"] == "/clusters/new-one/"
    cluster = Cluster.objects.get(name="new-one")
    assert cluster.environment == "staging" and cluster.labels == {"team": "shop"}


def test_wizard_kubeconfig_contexts_and_bad_kubeconfig(client, operator, django_capture_on_commit_callbacks):
    login(client, operator)
    kubeconfig = yaml.safe_dump({
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example.com:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}, {"name": "bad", "user": {"exec": {"command": "evil"}}}],
        "contexts": [{"name": "prod-eu", "context": {"cluster": "c", "user": "u"}},
                     {"name": "staging:us", "context": {"cluster": "c", "user": "u"}},
                     {"name": "broken", "context": {"cluster": "c", "user": "bad"}}],
        "current-context": "prod-eu"})
    contexts = client.post("/clusters/attach/contexts/", {"kubeconfig": kubeconfig}, **HX)
    assert b"prod-eu" in contexts.content and b"staging-us" in contexts.content
    assert b"exec plugin &#x27;evil&#x27;" in contexts.content
    garbage = client.post("/clusters/attach/contexts/", {"kubeconfig": "{{{ not yaml"}, **HX)
    assert b"not valid YAML" in garbage.content
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig": kubeconfig,
                                                     "contexts": ["prod-eu", "staging:us"], "meta-environment": "dev",
                                                     "meta-sync_interval": 60, "meta-attach_anyway": "on"})
    assert response.status_code == 302
    assert sorted(Cluster.objects.values_list("name", flat=True)) == ["prod-eu", "staging-us"]
    again = client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig": kubeconfig,
                                              "contexts": ["prod-eu"], "meta-environment": "dev",
                                              "meta-sync_interval": 60})
    assert again.status_code == 400 and b"taken or repeated: prod-eu" in again.content
    assert b'value="prod-eu" checked' in again.content  # the choice survives the error


def test_wizard_upload_of_5mb_garbage_is_refused_clearly(client, operator):
    from django.core.files.uploadedfile import SimpleUploadedFile

    login(client, operator)
    upload = SimpleUploadedFile("config", b"\x00garbage" * 600_000)
    response = client.post("/clusters/attach/", {"method": "kubeconfig", "kubeconfig_file": upload,
                                                 "meta-environment": "dev", "meta-sync_interval": 60})
    assert response.status_code == 400
    assert b"the limit is 1024 KiB" in response.content


def test_wizard_test_connection_partial(client, operator, django_capture_on_commit_callbacks):
    from inventory import onboarding
    from inventory.models import AttachDraft

    login(client, operator)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/clusters/attach/test/", {"method": "token", "server": "https://127.0.0.1:1",
                                                          "token": "t"}, **HX)
    assert response.status_code == 200
    assert b"testing in a worker" in response.content
    draft = AttachDraft.objects.get()
    onboarding.run_test(str(draft.pk))  # what the worker does with the queued task
    response = client.get(f"/clusters/attach/test/{draft.pk}/", **HX)
    assert b"connection refused" in response.content and b"not ready" in response.content


def test_insecure_option_hidden_from_operators(client, operator, admin_user):
    assert b"insecure_skip_tls_verify" not in login(client, operator).get("/clusters/attach/").content
    client.logout()
    assert b"insecure_skip_tls_verify" in login(client, admin_user).get("/clusters/attach/").content


def _queries(client, url, **extra) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, **extra).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize(("url", "extra"), [("/", {}), ("/", HX), ("/clusters/", {}), ("/clusters/", HX),
                                            ("/clusters/c0/?tab=nodes", {}), ("/clusters/c0/?tab=workloads", {})])
def test_page_query_count_does_not_grow_with_the_fleet(client, viewer, url, extra):
    login(client, viewer)
    c0 = make_cluster("c0", nodes=2)
    make_workload(c0, "w0")
    few = _queries(client, url, **extra)
    for i in range(1, 10):
        c = make_cluster(f"c{i}", nodes=2, status="degraded" if i % 2 else "connected")
        make_workload(c, "w")
        make_workload(c0, f"w{i}")
    assert _queries(client, url, **extra) == few


def test_admin_lists_inventory_without_credentials(client, django_user_model):
    cluster = make_cluster("c1", nodes=1)
    client.force_login(django_user_model.objects.create_superuser("root", "", "pw-for-tests-1"))
    for url in ("/admin/inventory/cluster/", f"/admin/inventory/cluster/{cluster.pk}/change/", "/admin/inventory/node/",
                "/admin/inventory/workload/", "/admin/inventory/syncrun/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"secret-token-of-c1" not in response.content


def test_operator_edit_keeps_an_admins_tls_choice(client, operator):
    make_cluster("lab", insecure_skip_tls_verify=True)
    login(client, operator)
    response = client.post("/clusters/lab/edit/", {"environment": "dev", "region": "r", "sync_interval": 60})
    assert response.status_code == 302
    assert Cluster.objects.get(name="lab").insecure_skip_tls_verify is True
