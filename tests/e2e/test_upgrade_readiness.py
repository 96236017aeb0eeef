"""End to end on the member that runs the newest release (kube-apiserver 1.37, serving the deprecated
resource.k8s.io/v1beta1 through --runtime-config): a client calling that API shows as a blocker with its removal
release, read from the API server's own metric; a CRD still storing a deprecated version blocks too; the node
pool whose kubelets would leave the skew is named; and Fleetweb's reader without the readiness rules syncs as
before while the verdict says what it could not read."""

from __future__ import annotations

import pytest
import yaml
from kubernetes import client as k8s

from governance import evaluation, upgrades
from inventory import access, services, sync
from inventory.choices import ClusterStatus
from inventory.models import Cluster, CustomResourceDefinition, DeprecatedAPIRequest

pytestmark = pytest.mark.e2e

NEWEST = "gke-us-central"
CRD = "widgets.readiness.example.com"


@pytest.fixture
def newest(localfleet_members):
    handle = localfleet_members[NEWEST]
    assert handle.version == "v1.37.2"
    return handle


def _crd(storage: str, *, deprecated_alpha: bool) -> dict:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": CRD},
            "spec": {"group": "readiness.example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": storage == "v1alpha1",
                                   "deprecated": deprecated_alpha, "schema": schema},
                                  {"name": "v1", "served": True, "storage": storage == "v1", "schema": schema}]}}


@pytest.fixture
def crd_with_old_objects(newest):
    """A CRD whose objects were written at v1alpha1 before v1 became its storage version and v1alpha1 deprecated:
    status.storedVersions is then [v1alpha1, v1], as after any such CRD upgrade."""
    import time

    with newest.admin_api() as api:
        ext = k8s.ApiextensionsV1Api(api)
        ext.create_custom_resource_definition(_crd("v1alpha1", deprecated_alpha=False))
        custom = k8s.CustomObjectsApi(api)
        for _ in range(50):
            try:
                custom.create_namespaced_custom_object("readiness.example.com", "v1alpha1", "default", "widgets", {
                    "apiVersion": "readiness.example.com/v1alpha1", "kind": "Widget", "metadata": {"name": "w1"}})
                break
            except k8s.ApiException as exc:  # the new resource is served a moment after the CRD is Established
                if exc.status != 404:
                    raise
                time.sleep(0.2)
        current = ext.read_custom_resource_definition(CRD)
        update = _crd("v1", deprecated_alpha=True)
        update["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(CRD, update)
        assert ext.read_custom_resource_definition(CRD).status.stored_versions == ["v1alpha1", "v1"]
    yield
    with newest.admin_api() as api:
        k8s.ApiextensionsV1Api(api).delete_custom_resource_definition(CRD)


def _call_the_deprecated_api(handle) -> str:
    """What a client still on resource.k8s.io/v1beta1 does; returns the API server's deprecation warning."""
    with handle.admin_api() as api:
        response = api.call_api("GET", handle.server + "/apis/resource.k8s.io/v1beta1/resourceclaims",
                                header_params={"Accept": "application/json"}, _request_timeout=10)
        assert response.status == 200
        return response.getheader("Warning") or ""


def test_a_deprecated_api_in_use_a_stale_crd_and_a_lagging_pool_block_the_next_minor(
        newest, crd_with_old_objects, db, client, viewer, api_as):
    warning = _call_the_deprecated_api(newest)
    assert "unavailable in v1.38+" in warning
    cluster = services.attach_cluster(name="newest", credentials=newest.token_credentials(), user=None)
    run = sync.sync_cluster(cluster.pk, triggered_by="api:test")  # a manual sync reads readiness too
    assert run.status == ClusterStatus.CONNECTED
    assert run.counts["deprecated APIs"] >= 1 and run.counts["CRDs"] >= 1 and "CRDs" in run.timings_ms
    cluster.refresh_from_db()
    assert cluster.kubernetes_version == "v1.37.2" and cluster.readiness_error == ""
    row = DeprecatedAPIRequest.objects.get(cluster=cluster, group="resource.k8s.io", resource="resourceclaims")
    assert (row.version, row.removed_release) == ("v1beta1", "1.38")
    assert CustomResourceDefinition.objects.get(cluster=cluster, name=CRD).stale_versions == ["v1alpha1"]

    # 1.38 is not released: nothing blocks an upgrade that cannot be made yet, and what 1.38 will need is said, to
    # prepare (the plan used to call the newest release "blocked").
    [r] = upgrades.plan([Cluster.objects.get(pk=cluster.pk)])
    assert (r.current, r.target, r.target_released, r.verdict) == ("1.37", "1.38", False, "newest")
    assert r.blockers == []
    found = {(w.code, w.subject): w for w in r.warnings}
    api = found[("api", "resource.k8s.io/v1beta1 resourceclaims")]
    assert api.message == ("when 1.38 is released: clients still call resource.k8s.io/v1beta1 resourceclaims, "
                           "removed in Kubernetes 1.38")
    assert "v1alpha1 in status.storedVersions" in found[("crd", CRD)].message
    # The profile's default-pool runs kubelet v1.34: four minors behind 1.38.
    assert found[("pool", "default-pool")].message == ("when 1.38 is released: node pool default-pool runs kubelet "
                                                        "v1.34.4: 4 minors behind 1.38 (at most 3 allowed)")
    assert ("pool", "highmem-pool") not in found

    evaluation.evaluate_and_enforce_many([Cluster.objects.get(pk=cluster.pk)])  # what a worker runs after a sync
    client.force_login(viewer)
    html = client.get("/upgrades/").content.decode()
    row_html = html.split('data-cluster="newest"')[1].split("</tr>")[0]
    assert "Newest release" in row_html and "Blocked" not in row_html and "blocker" not in row_html
    body = api_as(viewer).get("/api/v1/upgrade-plan/newest/").json()
    assert body["verdict"] == "newest" and body["blockers"] == []
    assert {"api", "crd", "pool"} <= {w["code"] for w in body["warnings"]}
    tab = client.get("/clusters/newest/?tab=upgrade", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    assert "resource.k8s.io/v1beta1" in tab.content.decode() and CRD in tab.content.decode()


def test_a_reader_without_the_readiness_rules_syncs_and_says_what_it_cannot_read(newest, db):
    """The access manifest of earlier releases had neither /metrics nor CRDs: such a cluster stays connected and
    its verdict is unknown, naming the permission, never "ready"."""
    docs = list(yaml.safe_load_all(access.least_privilege_manifest("fleetweb-old", "fleetweb-old-reader")))
    for doc in docs:
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "fleetweb-old-reader":
            doc["rules"] = [r for r in doc["rules"] if r not in access.READINESS_RULES]
    with newest.admin_api() as api:
        from localfleet import seed

        seed.apply_docs(api, [d for d in docs if d["kind"] in ("Namespace", "ServiceAccount", "ClusterRole",
                                                               "ClusterRoleBinding")
                              and "enforcer" not in d["metadata"]["name"]
                              and "deployer" not in d["metadata"]["name"]])
        core = k8s.CoreV1Api(api)
        token = core.create_namespaced_service_account_token(
            "fleetweb-old-reader", "fleetweb-old", {"spec": {"expirationSeconds": 3600}}).status.token
    try:
        report = access.test_connection({**newest.token_credentials(), "token": token})
        assert report.ok  # optional checks warn, they do not stop an attach
        readiness_checks = [c for c in report.checks if "upgrade readiness" in c.name]
        assert len(readiness_checks) == 2 and not any(c.ok for c in readiness_checks)
        cluster = services.attach_cluster(name="old-reader", credentials={**newest.token_credentials(),
                                                                          "token": token}, user=None)
        run = sync.sync_cluster(cluster.pk, triggered_by="api:test")
        assert run.status == ClusterStatus.CONNECTED, run.error
        [r] = upgrades.plan([Cluster.objects.get(pk=cluster.pk)])
        messages = {m.subject: m.message for m in r.missing}
        assert messages["deprecated APIs"].startswith("deprecated APIs could not be read: 403 Forbidden: Fleetweb's "
                                                      "ClusterRole lacks get on the /metrics non-resource URL")
        assert "customresourcedefinitions" in messages["CRDs"]
        # On the newest release (nothing to upgrade to yet) the verdict is "newest", never "ready", and what could
        # not be read is still said.
        assert r.verdict in ("unknown", "blocked", "newest") and r.verdict != "ready" and r.missing
    finally:
        with newest.admin_api() as api:
            k8s.CoreV1Api(api).delete_namespace("fleetweb-old")
            rbac = k8s.RbacAuthorizationV1Api(api)
            rbac.delete_cluster_role_binding("fleetweb-old-reader")
            rbac.delete_cluster_role("fleetweb-old-reader")
