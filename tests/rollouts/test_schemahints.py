"""A member's schema refusal in words a person can act on (issue 30, item 7): the object, the field, the line of
the YAML, the known field that was probably meant, and each problem once with every member that said it. The real
members' OpenAPI documents are read in tests/e2e/test_deploy.py; here, their shape."""

from __future__ import annotations

from rollouts import dryrun, schemahints

YAML = """apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replica: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: side
        image: busybox:1.36
      - name: web
        image: nginx:1.27
        imagePullPolicyy: Always
"""
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}}
OPENAPI = {"components": {"schemas": {
    "io.k8s.api.apps.v1.Deployment": {
        "x-kubernetes-group-version-kind": [{"group": "apps", "version": "v1", "kind": "Deployment"}],
        "properties": {"apiVersion": {}, "kind": {}, "metadata": {}, "status": {},
                       "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]}}},
    "io.k8s.api.apps.v1.DeploymentSpec": {"properties": {
        "replicas": {}, "selector": {}, "strategy": {}, "minReadySeconds": {}, "revisionHistoryLimit": {},
        "template": {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}}},
    "io.k8s.api.core.v1.PodTemplateSpec": {"properties": {"metadata": {}, "spec": {
        "$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}}},
    "io.k8s.api.core.v1.PodSpec": {"properties": {"containers": {"items": {
        "$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}}, "volumes": {}}},
    "io.k8s.api.core.v1.Container": {"properties": {"name": {}, "image": {}, "imagePullPolicy": {}, "ports": {}}},
}}}


def test_the_field_of_a_server_side_apply_refusal_and_of_a_strict_decoder():
    error = schemahints.field_error("failed to create typed patch object (fleetweb-system/web; apps/v1, "
                                    "Kind=Deployment): .spec.replica: field not declared in schema")
    assert error is not None and error.path == ("spec", "replica") and error.unknown
    keyed = schemahints.field_error('failed to create typed patch object (x; apps/v1, Kind=Deployment): '
                                    '.spec.template.spec.containers[name="web"].imagePullPolicyy: field not '
                                    'declared in schema')
    assert keyed is not None and keyed.path[4] == ("name", "web")
    assert keyed.dotted == "spec.template.spec.containers[name=web].imagePullPolicyy"
    strict = schemahints.field_error('strict decoding error: unknown field "spec.template.spec.containers[0].x"')
    assert strict is not None and strict.path == ("spec", "template", "spec", "containers", 0, "x")
    value = schemahints.field_error("failed to create typed patch object (x; apps/v1, Kind=Deployment): "
                                    ".spec.replicas: expected numeric (int or float), got string")
    assert value is not None and not value.unknown and value.reason.startswith("expected numeric")
    assert schemahints.field_error("etcdserver: request timed out") is None
    assert schemahints.field_error("unknown field \"" + ".a" * 100 + "\"") is None, "at most 32 segments"


def test_the_known_field_meant_and_the_line_of_the_yaml():
    replica = schemahints.field_error("typed patch object (a; apps/v1, Kind=Deployment): .spec.replica: field not "
                                      "declared in schema")
    assert schemahints.suggestion(OPENAPI, DEPLOYMENT, replica) == "did you mean 'replicas'?"
    assert schemahints.line_of(YAML, "Deployment", "web", replica.path) == 11
    policy = schemahints.field_error('typed patch object (a; apps/v1, Kind=Deployment): '
                                     '.spec.template.spec.containers[name="web"].imagePullPolicyy: field not '
                                     'declared in schema')
    assert schemahints.suggestion(OPENAPI, DEPLOYMENT, policy) == "did you mean 'imagePullPolicy'?"
    assert schemahints.line_of(YAML, "Deployment", "web", policy.path) == 21
    far = schemahints.field_error("typed patch object (a; apps/v1, Kind=Deployment): .spec.zzzz: field not "
                                  "declared in schema")
    assert schemahints.suggestion(OPENAPI, DEPLOYMENT, far) == "", "nothing close: no guess"
    assert schemahints.line_of(YAML, "Deployment", "web", far.path) == 10, "the deepest key that exists"
    assert schemahints.line_of(YAML, "Deployment", "other", far.path) is None
    for hostile in ({}, {"components": []}, {"components": {"schemas": {"x": "y"}}},
                    {"components": {"schemas": {"a": {"x-kubernetes-group-version-kind": "no",
                                                      "$ref": "#/components/schemas/a"}}}}):
        assert schemahints.suggestion(hostile, DEPLOYMENT, replica) == ""
    looping = {"components": {"schemas": {"d": {"x-kubernetes-group-version-kind": [
        {"group": "apps", "version": "v1", "kind": "Deployment"}], "properties": {"spec": {
            "$ref": "#/components/schemas/s"}}}, "s": {"$ref": "#/components/schemas/s"}}}}
    assert schemahints.suggestion(looping, DEPLOYMENT, replica) == "", "a $ref cycle ends"
    assert schemahints.openapi_path("v1") == "/openapi/v3/api/v1"
    assert schemahints.openapi_path("apps/v1") == "/openapi/v3/apis/apps/v1"


def test_a_problem_every_member_said_is_said_once_with_the_members():
    problem = "Deployment web: spec.replica is not a field of apps/v1 Deployment (did you mean 'replicas'?), line 11"
    members = [{"cluster": "b", "version": "v1.36.3", "checked": True, "problems": [problem]},
               {"cluster": "a", "version": "v1.35.4", "checked": True, "problems": [problem, "other"]},
               {"cluster": "c", "version": "v1.37.2", "checked": False, "problems": [], "note": "unreachable"}]
    assert dryrun.summary({"members": members}) == (
        f"{problem} (said by a (v1.35.4), b (v1.36.3))\nother (said by a (v1.35.4))")
    assert dryrun.grouped(members)[0]["clusters"] == ["a", "b"]
