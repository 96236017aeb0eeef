"""Which members a revision's dry run asks, and how their answers become a verdict (the real dry run against a
member is in tests/e2e/test_deploy.py)."""

from __future__ import annotations

import pytest

from inventory import kube
from rollouts import dryrun
from tests.builders import make_cluster


@pytest.mark.parametrize(("version", "minor"), [("v1.31.4", "1.31"), ("v1.36.3+k3s1", "1.36"), ("", ""),
                                                 ("garbage", "")])
def test_minor_of(version, minor):
    assert dryrun.minor_of(version) == minor


@pytest.mark.django_db
def test_one_answering_member_per_minor_is_asked():
    make_cluster("b-131", version="v1.31.2")
    make_cluster("a-131", version="v1.31.9")
    make_cluster("c-136", version="v1.36.1")
    make_cluster("down-129", version="v1.29.0", status="unreachable")
    make_cluster("new", version="", status="pending")
    assert [c.name for c in dryrun.members_to_ask()] == ["a-131", "c-136"]


@pytest.mark.parametrize(("status", "message", "refused"), [
    (422, "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1", True),
    (400, "strict decoding error: unknown field \"spec.replica\"", True),
    (500, "failed to create typed patch object (fleetweb-system/web; apps/v1, Kind=Deployment): .spec.replica: "
          "field not declared in schema", True),
    (500, "etcdserver: request timed out", False),
    (403, "forbidden", False),
    (403, "dry run of Deployment web: 403 Forbidden: deployments.apps \"web\" is forbidden: User "
          "\"system:serviceaccount:fleetweb-system:fleetweb\" cannot patch resource \"deployments\"", False),
    (403, "dry run of Deployment web: 403 Forbidden: deployments.apps \"web\" is forbidden: "
          "ValidatingAdmissionPolicy 'fleetweb-no-privileged-containers-3' with binding "
          "'fleetweb-no-privileged-containers-3' denied request: privileged containers are not allowed", True),
    (403, "admission webhook \"validate.kyverno.svc\" denied the request: image not signed", True),
])
def test_only_a_refusal_of_the_object_by_schema_or_admission_is_a_finding(status, message, refused):
    assert dryrun._refused(kube.KubeError("http", message, http_status=status)) is refused


@pytest.mark.django_db
def test_no_answering_member_means_unchecked_not_refused():
    make_cluster("down", status="unreachable")
    assert dryrun.check([{"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "shop"}}])["state"] == "unchecked"
