"""An enforced policy stays enforced unless an admin lifts it, whatever the door: every way an operator could remove or
weaken one is refused, naming the rule and the clusters, and leaves the assignment exactly as it was."""

from __future__ import annotations

import pytest

from foundation.models import AuditEvent
from governance import services
from governance.choices import Mode
from governance.models import PolicyAssignment
from inventory.models import Cluster, ClusterGroup
from inventory.services import AttachError, create_group, delete_group, update_cluster, update_group
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


@pytest.fixture
def enforced(admin_user):
    """no-host-path enforced on group `prod` (environment=prod) covering prod-1 and prod-2; prod-3 is static."""
    make_cluster("prod-1", environment="prod", labels={"tier": "web"})
    make_cluster("prod-2", environment="prod")
    make_cluster("dev-1", environment="dev")
    group = create_group(name="prod", selector="environment=prod", user=admin_user)
    assignment = services.create_assignment(group=group, rule_key="no-host-path", mode=Mode.ENFORCE,
                                            params={"allowed_paths": ["/var/log"]}, user=admin_user)
    return assignment


def _unchanged(assignment) -> None:
    fresh = PolicyAssignment.objects.get(pk=assignment.pk)
    assert fresh.mode == Mode.ENFORCE
    assert fresh.params == assignment.params and fresh.excluded_namespaces == assignment.excluded_namespaces
    assert set(fresh.group.members().values_list("name", flat=True)) == {"prod-1", "prod-2"}


def test_operator_cannot_delete_the_group_of_an_enforced_policy(enforced, operator, client, api_as):
    group = enforced.group
    with pytest.raises(AttachError) as excinfo:
        delete_group(group, user=operator)
    assert excinfo.value.status == 403
    assert "no-host-path (group prod) on prod-1, prod-2" in excinfo.value.message
    assert api_as(operator).delete("/api/v1/groups/prod/").status_code == 403
    client.force_login(operator)
    response = client.post("/groups/prod/delete/", {"confirm_name": "prod"})
    assert response.status_code == 403 and b"Only admins may remove or weaken an enforced policy" in response.content
    _unchanged(enforced)
    assert not AuditEvent.objects.filter(action="group.delete").exists()


def test_operator_cannot_narrow_the_selector_of_an_enforced_group(enforced, operator, api_as):
    with pytest.raises(AttachError) as excinfo:
        update_group(enforced.group, user=operator, selector="environment=prod,tier=web")
    assert "on prod-2" in excinfo.value.message and "prod-1" not in excinfo.value.message
    response = api_as(operator).patch("/api/v1/groups/prod/", {"selector": "name=nothing"}, format="json")
    assert response.status_code == 403 and "no-host-path" in response.json()["detail"]
    _unchanged(enforced)
    assert ClusterGroup.objects.get(name="prod").selector == "environment=prod"


def test_operator_cannot_drop_static_members_of_an_enforced_group(admin_user, operator):
    a, b = make_cluster("edge-1"), make_cluster("edge-2")
    group = create_group(name="edge", user=admin_user, static_members=[a, b])
    services.create_assignment(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE, user=admin_user)
    with pytest.raises(AttachError) as excinfo:
        update_group(group, user=operator, static_members=[a])
    assert "no-privileged-containers (group edge) on edge-2" in excinfo.value.message
    assert set(group.static_members.values_list("name", flat=True)) == {"edge-1", "edge-2"}


def test_operator_cannot_relabel_a_cluster_out_of_an_enforced_group(admin_user, operator, client):
    make_cluster("web-1", labels={"tier": "web"})
    group = create_group(name="web", selector="tier=web", user=admin_user)
    assignment = services.create_assignment(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE,
                                            user=admin_user)
    with pytest.raises(AttachError) as excinfo:
        update_cluster(Cluster.objects.get(name="web-1"), user=operator, labels={"tier": "batch"})
    assert "no-privileged-containers (group web) on web-1" in excinfo.value.message
    client.force_login(operator)
    response = client.post("/clusters/web-1/edit/", {"environment": "dev", "region": "eu-west-1", "owner": "",
                                                     "cost_center": "", "labels": "tier=batch", "sync_interval": 60})
    assert response.status_code == 403 and b"Only admins may remove or weaken" in response.content
    assert Cluster.objects.get(name="web-1").labels == {"tier": "web"}
    assert list(assignment.group.members().values_list("name", flat=True)) == ["web-1"]


def test_operator_may_relabel_when_another_group_enforces_the_same_rule(admin_user, operator):
    make_cluster("web-1", labels={"tier": "web"})
    for name, selector in (("web", "tier=web"), ("all", "name")):
        services.create_assignment(group=create_group(name=name, selector=selector, user=admin_user),
                                   rule_key="no-privileged-containers", mode=Mode.ENFORCE, user=admin_user)
    update_cluster(Cluster.objects.get(name="web-1"), user=operator, labels={"tier": "batch"})
    assert Cluster.objects.get(name="web-1").labels == {"tier": "batch"}


def test_operator_cannot_widen_parameters_of_an_enforced_policy(enforced, operator, api_as):
    with pytest.raises(services.PolicyError) as excinfo:
        services.update_assignment(enforced, user=operator, params={"allowed_paths": ["/"]})
    assert "no-host-path (group prod) on prod-1, prod-2" in excinfo.value.errors["params"]
    response = api_as(operator).patch(f"/api/v1/policy-assignments/{enforced.pk}/",
                                      {"excluded_namespaces": ["kube-system", "payments"]}, format="json")
    assert response.status_code == 400 and "Only admins may remove or weaken" in str(response.json())
    _unchanged(enforced)
    assert not AuditEvent.objects.filter(action="policy.update").exists()


def test_operator_may_tighten_an_enforced_policy_and_admin_may_do_anything(enforced, operator, admin_user):
    services.update_assignment(enforced, user=operator, excluded_namespaces=["kube-system"])  # fewer exclusions
    assert PolicyAssignment.objects.get(pk=enforced.pk).excluded_namespaces == ["kube-system"]
    services.update_assignment(enforced, user=admin_user, params={"allowed_paths": ["/"]})
    delete_group(ClusterGroup.objects.get(name="prod"), user=admin_user)
    assert not PolicyAssignment.objects.exists()
    assert AuditEvent.objects.filter(action="group.delete", actor=admin_user).exists()
