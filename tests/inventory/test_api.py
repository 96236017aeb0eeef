"""REST API: roles on every endpoint, validation errors that name the field, write-only credentials,
and a fixed number of queries per list whatever its length."""

from __future__ import annotations

import pytest
import yaml
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.models import AuditEvent
from inventory.models import Cluster, ClusterCredential, SyncRun
from tests.builders import make_cluster, make_workload

pytestmark = pytest.mark.django_db

LIST_ENDPOINTS = ["/api/v1/clusters/", "/api/v1/nodes/", "/api/v1/namespaces/", "/api/v1/workloads/",
                  "/api/v1/problem-pods/", "/api/v1/sync-runs/"]


@pytest.mark.parametrize("url", LIST_ENDPOINTS + ["/api/v1/audit-events/"])
def test_anonymous_gets_401(client, url):
    assert client.get(url).status_code == 401


@pytest.mark.parametrize("url", LIST_ENDPOINTS)
def test_outsider_gets_403_and_viewer_200(api_as, outsider, viewer, url):
    assert api_as(outsider).get(url).status_code == 403
    assert api_as(viewer).get(url).status_code == 200


def test_audit_events_are_for_admins_only(api_as, viewer, operator, admin_user):
    assert api_as(viewer).get("/api/v1/audit-events/").status_code == 403
    assert api_as(operator).get("/api/v1/audit-events/").status_code == 403
    assert api_as(admin_user).get("/api/v1/audit-events/").status_code == 200
    assert api_as(admin_user).post("/api/v1/audit-events/", {}).status_code == 405


def test_viewer_cannot_write(api_as, viewer):
    cluster = make_cluster("c1")
    client = api_as(viewer)
    assert client.post("/api/v1/clusters/", {"name": "x"}, format="json").status_code == 403
    assert client.patch(f"/api/v1/clusters/{cluster.pk}/", {"region": "x"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/clusters/{cluster.pk}/").status_code == 403
    assert client.post(f"/api/v1/clusters/{cluster.pk}/sync/").status_code == 403


def test_credentials_are_never_returned(api_as, viewer):
    make_cluster("c1")
    body = api_as(viewer).get("/api/v1/clusters/").content.decode()
    assert "secret-token-of-c1" not in body
    for field in ("token", "ca_data", "client_key", "client_cert", "kubeconfig"):
        assert f'"{field}":' not in body


def test_cluster_fields(api_as, viewer):
    make_cluster("c1", nodes=2, labels={"team": "shop"})
    item = api_as(viewer).get("/api/v1/clusters/").json()["results"][0]
    for field in ("id", "name", "environment", "region", "owner", "cost_center", "labels", "server", "provider",
                  "kubernetes_version", "status", "last_seen_at", "last_sync_at", "last_error", "node_count",
                  "ready_node_count"):
        assert field in item
    assert item["labels"] == {"team": "shop"} and item["node_count"] == 2


@pytest.mark.parametrize(("payload", "field", "message"), [
    ({"name": "x"}, "kubeconfig", "Give a kubeconfig"),
    ({"name": "x", "kubeconfig": "clusters: [oops"}, "kubeconfig", "not valid YAML"),
    ({"name": "x", "server": "https://a:6443", "ca_data": "nope", "token": "t"}, "ca_data", "PEM"),
    ({"name": "x", "server": "https://a:6443"}, "token", "A bearer token or a client certificate is required"),
    ({"name": "x", "server": "not a url", "token": "t"}, "server", "must start with https://"),
    ({"name": "x", "server": "https://k8s-master:99999", "token": "t"}, "server", "invalid port"),
    ({"name": "Bad Name", "server": "https://a:6443", "token": "t"}, "name", "slug"),
    ({"name": "x", "server": "https://a:6443", "token": "t", "environment": "qa"}, "environment", "valid choice"),
    ({"name": "x", "server": "https://a:6443", "token": "t", "labels": {"bad key!": "v"}}, "labels", "invalid"),
    ({"server": "https://a:6443", "token": "t"}, "name", "required"),
])
def test_invalid_create_names_the_field(api_as, operator, payload, field, message):
    response = api_as(operator).post("/api/v1/clusters/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"], body
    assert message.lower() in str(body["errors"][field]).lower(), body
    assert "detail" in body
    assert not Cluster.objects.exists()


def test_unknown_context_is_named(api_as, operator):
    kubeconfig = yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": "https://a:6443"}}],
                                 "users": [{"name": "u", "user": {"token": "t"}}],
                                 "contexts": [{"name": "one", "context": {"cluster": "c", "user": "u"}}]})
    response = api_as(operator).post("/api/v1/clusters/", {"name": "x", "kubeconfig": kubeconfig, "context": "two"},
                                     format="json")
    assert response.status_code == 400
    assert "Context 'two' is not in the kubeconfig (it has: one)" in str(response.json()["errors"]["context"])


def test_create_stores_encrypted_credentials_and_audits_without_secrets(api_as, operator,
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_as(operator).post("/api/v1/clusters/", {
            "name": "new", "server": "https://api.example.com:6443", "token": "very-secret", "environment": "staging",
            "labels": {"tier": "web"}}, format="json")
    assert response.status_code == 201, response.json()
    assert len(callbacks) == 1  # the first sync is queued after commit
    credential = ClusterCredential.objects.get(cluster__name="new")
    assert "very-secret" not in credential.ciphertext
    assert credential.open()["token"] == "very-secret"
    event = AuditEvent.objects.get(action="cluster.attach")
    assert event.actor_name == "otto-operator"
    assert "very-secret" not in str(event.after)
    assert event.after["labels"] == {"tier": "web"}


def test_duplicate_name_is_a_400(api_as, operator):
    make_cluster("taken")
    response = api_as(operator).post("/api/v1/clusters/", {"name": "taken", "server": "https://a:6443", "token": "t"},
                                     format="json")
    assert response.status_code == 400
    assert "taken" in str(response.json()["errors"]["name"])


def test_insecure_tls_is_admin_only_and_never_prod(api_as, operator, admin_user):
    payload = {"name": "lab", "server": "https://a:6443", "token": "t", "insecure_skip_tls_verify": True}
    response = api_as(operator).post("/api/v1/clusters/", payload, format="json")
    assert response.status_code == 400
    assert "Only admins" in str(response.json()["errors"])
    response = api_as(admin_user).post("/api/v1/clusters/", {**payload, "environment": "prod"}, format="json")
    assert response.status_code == 400
    assert "never allowed for prod" in str(response.json()["errors"])
    assert api_as(admin_user).post("/api/v1/clusters/", payload, format="json").status_code == 201


def test_update_metadata_is_audited_and_rename_refused(api_as, operator):
    cluster = make_cluster("c1")
    client = api_as(operator)
    response = client.patch(f"/api/v1/clusters/{cluster.pk}/", {"region": "eu-north-1", "labels": {"a": "b"}},
                            format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["region"] == "eu-north-1"
    event = AuditEvent.objects.get(action="cluster.update")
    assert event.before["region"] == "eu-west-1" and event.after["region"] == "eu-north-1"
    assert client.patch(f"/api/v1/clusters/{cluster.pk}/", {"name": "c2"}, format="json").status_code == 400
    response = client.patch(f"/api/v1/clusters/{cluster.pk}/", {"token": "new"}, format="json")
    assert response.status_code == 400
    assert "replaced as a whole" in str(response.json())


def test_detach_removes_everything_and_is_audited(api_as, operator):
    cluster = make_cluster("c1", nodes=3)
    make_workload(cluster, "web")
    response = api_as(operator).delete(f"/api/v1/clusters/{cluster.pk}/")
    assert response.status_code == 204
    assert not Cluster.objects.exists() and not ClusterCredential.objects.exists()
    assert AuditEvent.objects.filter(action="cluster.detach", target_name="c1").exists()


def test_sync_action_returns_202(api_as, operator, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("inventory.services.request_sync", lambda pk, **kw: queued.append((pk, kw)))
    cluster = make_cluster("c1")
    response = api_as(operator).post(f"/api/v1/clusters/{cluster.pk}/sync/")
    assert response.status_code == 202
    assert queued == [(cluster.pk, {"triggered_by": "api:otto-operator"})]


def test_filters(api_as, viewer):
    make_cluster("prod-eu", environment="prod", region="eu-west-1", labels={"team": "shop"}, version="v1.36.3")
    make_cluster("dev-us", environment="dev", region="us-east-1", labels={"team": "ml"}, version="v1.35.4")
    client = api_as(viewer)

    def names(query):
        return [c["name"] for c in client.get(f"/api/v1/clusters/?{query}").json()["results"]]

    assert names("environment=prod") == ["prod-eu"]
    assert names("label=team=ml") == ["dev-us"]
    assert names("version=1.36") == ["prod-eu"]
    assert names("q=us-east") == ["dev-us"]
    assert names("ordering=-name") == ["prod-eu", "dev-us"]
    bad = client.get("/api/v1/clusters/?environment=qa")
    assert bad.status_code == 400
    assert "environment" in bad.json()["errors"]


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", LIST_ENDPOINTS)
def test_list_query_count_does_not_grow_with_rows(api_as, viewer, url):
    client = api_as(viewer)
    make_cluster("a", nodes=1)
    make_workload(Cluster.objects.get(name="a"), "w1")
    SyncRun.objects.create(cluster=Cluster.objects.get(name="a"), started_at="2026-01-01T00:00:00Z")
    client.get(url)  # the token's first use writes its last-used time (at most once a minute): not a row count
    few = _queries(client, url)
    for i in range(8):
        c = make_cluster(f"more-{i}", nodes=3)
        make_workload(c, "w")
        SyncRun.objects.create(cluster=c, started_at="2026-01-01T00:00:00Z")
    assert _queries(client, url) == few


def test_openapi_schema_is_published_to_logged_in_users(client, viewer):
    client.force_login(viewer)
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/v1/clusters/" in response.content


def test_api_docs_are_served_without_a_cdn(client, viewer):
    client.force_login(viewer)
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page


def test_an_unfiltered_workload_list_counts_by_the_clusters_counters_and_pages_through_every_row(api_as, viewer):
    """No COUNT(*) of the workloads table for the unfiltered list (the clusters' counters, kept with the rows, add
    up to it); every row is on some page, once. A filtered list counts its own rows."""
    for name, n in (("w-a", 3), ("w-b", 2)):
        cluster = make_cluster(name)
        for i in range(n):
            make_workload(cluster, f"app-{i}", namespace="shop" if i == 0 else "default")
    api = api_as(viewer)
    with CaptureQueriesContext(connection) as ctx:
        first = api.get("/api/v1/workloads/?page_size=2").json()
    assert first["count"] == 5
    assert not [q for q in ctx.captured_queries if 'COUNT(*)' in q["sql"] and '"inventory_workload"' in q["sql"]]
    seen, url = [], "/api/v1/workloads/?page_size=2"
    while url:
        body = api.get(url).json()
        seen += [w["id"] for w in body["results"]]
        url = body["next"]
    assert len(seen) == len(set(seen)) == 5
    filtered = api.get("/api/v1/workloads/?namespace=shop").json()
    assert filtered["count"] == 2 and {w["namespace"] for w in filtered["results"]} == {"shop"}
