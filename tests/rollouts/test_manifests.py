"""Manifest validation names the document and field; rendering adds labels and per-group overrides."""

from __future__ import annotations

import pytest
import yaml

from rollouts import manifests

DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "web", "image": "r.example.com/web:1.0"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}


def dump(*docs) -> str:
    return yaml.safe_dump_all(list(docs))


def errors_of(text: str, namespace: str = "shop") -> list[str]:
    with pytest.raises(manifests.ManifestError) as excinfo:
        manifests.parse(text, namespace=namespace)
    return excinfo.value.errors


def test_valid_manifests_are_ordered_and_namespaced():
    parsed = manifests.parse(dump(DEPLOYMENT, SERVICE), namespace="shop")
    assert parsed.summary == [{"kind": "Service", "name": "web"}, {"kind": "Deployment", "name": "web"}]
    assert all(o["metadata"]["namespace"] == "shop" for o in parsed.objects)
    assert parsed.digest == manifests.parse(dump(SERVICE, DEPLOYMENT), namespace="shop").digest
    assert parsed.digest != manifests.parse(dump(DEPLOYMENT), namespace="shop").digest


@pytest.mark.parametrize(("docs", "expected"), [
    ([{"kind": "Service", "metadata": {"name": "a"}}], "document 1 (Service a): apiVersion is missing"),
    ([{"apiVersion": "v1", "metadata": {"name": "a"}}], "document 1 (? a): kind is missing"),
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}], "document 1 (ConfigMap ?): metadata is missing"),
    ([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {}}}], "metadata.name is missing"),
    ([SERVICE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}],
     "document 2 (Namespace x): kind Namespace is cluster-scoped"),
    ([{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}}],
     "kind ClusterRole is cluster-scoped"),
    ([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}],
     "document 1 (Secret s): Secrets are not shipped by Fleetweb"),
    ([{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}], "kind Widget is not supported"),
    ([{**DEPLOYMENT, "apiVersion": "extensions/v1beta1"}], "apiVersion 'extensions/v1beta1' is not served"),
    ([{**SERVICE, "metadata": {"name": "web", "namespace": "other"}}],
     "metadata.namespace 'other' differs from the application's namespace 'shop'"),
    ([{**DEPLOYMENT, "spec": {"template": {"spec": {"containers": []}}}}],
     "document 1 (Deployment web): spec.template.spec.containers is missing or empty"),
    ([{**DEPLOYMENT, "spec": {**DEPLOYMENT["spec"], "replicas": -1}}], "spec.replicas must be a whole number"),
    ([SERVICE, SERVICE], "document 2 (Service web): a second Service named 'web'"),
    ([{**SERVICE, "metadata": {"name": "Web_1"}}], "metadata.name 'Web_1' is not a valid name"),
    (["just a string"], "document 1: is not an object"),
])
def test_each_problem_names_its_document_and_field(docs, expected):
    assert any(expected in e for e in errors_of(dump(*docs))), errors_of(dump(*docs))


def test_every_problem_is_reported_at_once():
    errors = errors_of(dump({"kind": "Service", "metadata": {"name": "a"}},
                            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}))
    assert len(errors) == 2


def test_yaml_errors_give_the_line():
    assert errors_of("a: [1, 2\nb: c")[0].startswith("YAML does not parse at line")
    assert errors_of("   ") == ["the manifests are empty: give at least one object"]


def test_render_adds_fleetweb_labels_and_applies_the_override():
    class GoldOverride:
        replicas = 5
        image_tags = {"web": "1.1"}
        labels = {"tier": "gold"}

    parsed = manifests.parse(dump(DEPLOYMENT, SERVICE), namespace="shop")
    deployment = manifests.render(parsed.objects, application="shop-web", revision=3, digest="abc",
                                  override=GoldOverride)[1]
    assert deployment["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "fleetweb",
                                                "fleetweb.io/application": "shop-web", "tier": "gold"}
    assert deployment["metadata"]["annotations"] == {"fleetweb.io/revision": "3", "fleetweb.io/digest": "abc"}
    assert deployment["spec"]["replicas"] == 5
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "r.example.com/web:1.1"
    assert parsed.objects[1]["spec"]["replicas"] == 2, "rendering never changes the parsed revision"
    assert manifests.path_of(deployment) == "/apis/apps/v1/namespaces/shop/deployments/web"


@pytest.mark.parametrize(("image", "expected"), [
    ("r.example.com:5000/web:1.0", "r.example.com:5000/web:2"), ("web", "web:2"),
    ("r.example.com/web@sha256:abc", "r.example.com/web:2")])
def test_retag(image, expected):
    assert manifests._retag(image, "2") == expected


def test_override_validation():
    assert manifests.validate_override(replicas=-1, image_tags={"web": "bad tag"}, labels={"-x": "y"}) == [
        "replicas: must be a whole number from 0 to 1000", "image_tags.web: 'bad tag' is not a valid image tag",
        "labels.-x: Label key '-x' is invalid: up to 63 letters, digits, '-', '_' or '.', starting and ending with "
        "a letter or digit."]


@pytest.mark.parametrize(("kind", "live", "ready"), [
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}},
     True),
    ("Deployment", {"metadata": {"generation": 3}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}},
     False),
    ("Deployment", {"metadata": {"generation": 2}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}},
     False),
    ("DaemonSet", {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 4,
                                                             "updatedNumberScheduled": 4, "numberAvailable": 3}},
     False),
    ("StatefulSet", {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                     "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                                "currentRevision": "a", "updateRevision": "b"}}, False),
    ("Job", {"spec": {"completions": 2}, "status": {"succeeded": 2}}, True),
])
def test_readiness(kind, live, ready):
    assert manifests.readiness(kind, live)["ready"] is ready


def test_a_rendered_revision_may_weigh_what_a_render_may_give_and_pasted_yaml_keeps_its_cap(settings):
    """What the renderer passed (FLEETWEB_SOURCE_MAX_RENDERED_BYTES) is not refused after it for its size; YAML
    pasted into a web request keeps the smaller cap."""
    settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES = 4 * 2**20
    big = dict(DEPLOYMENT, metadata={"name": "web", "annotations": {"note": "x" * 1_500_000}})
    text = dump(big)
    assert manifests.MAX_BYTES < len(text.encode()) < settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES
    assert errors_of(text) == [f"the manifests are larger than {manifests.MAX_BYTES // 1000} kB"]
    assert manifests.parse(text, namespace="shop", sourced=True).summary == [{"kind": "Deployment", "name": "web"}]
    settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES = 500_000  # a smaller render cap never lowers the pasted one
    assert manifests.max_bytes(sourced=True) == manifests.MAX_BYTES
