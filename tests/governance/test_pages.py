"""Pages of groups, policies and compliance: roles, HTMX partials, the matrix toggle, CSV, query counts."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.models import AuditEvent
from governance import compliance, evaluation, services
from governance.models import PolicyAssignment
from inventory import services as inventory_services
from inventory.models import ClusterGroup, Workload
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def fleet(admin_user):
    prod = make_cluster("prod-1", environment="prod", labels={"tier": "web"})
    make_cluster("dev-1", environment="dev")
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user,
                                            description="Production clusters")
    assignment = services.create_assignment(group=group, rule_key="no-privileged-containers", user=admin_user)
    Workload.objects.create(cluster=prod, uid="w", name="old-admin", kind="Deployment", namespace="legacy",
                            pod_template={"containers": [{"name": "a", "image": "x:1", "privileged": True}]})
    evaluation.evaluate_cluster(prod)
    compliance.record_group_history()
    return {"prod": prod, "group": group, "assignment": assignment}


PAGES = [("/groups/", "Production clusters"), ("/groups/prod/", 'data-cluster="prod-1"'),
         ("/policies/", 'data-group="prod"'), ("/policies/catalog/", 'id="rule-kubelet-version-skew"'),
         ("/compliance/", 'data-cluster="prod-1"'), ("/compliance/violations/", "old-admin"),
         ("/clusters/prod-1/?tab=compliance", "old-admin"), ("/policies/assignments/{a}/", "1 open violation")]


@pytest.mark.parametrize(("url", "expected"), PAGES)
def test_viewers_read_every_page_outsiders_do_not(client, fleet, viewer, outsider, url, expected):
    url = url.format(a=fleet["assignment"].pk)
    client.force_login(viewer)
    page = client.get(url)
    assert page.status_code == 200
    assert expected in page.content.decode()
    client.force_login(outsider)
    assert client.get(url).status_code == 403


def test_viewer_sees_no_edit_controls(client, fleet, viewer):
    client.force_login(viewer)
    matrix = client.get("/policies/").content.decode()
    assert "<select" not in matrix and 'badge mode-audit' in matrix and 'data-group="prod"' in matrix
    assert "New group" not in client.get("/groups/").content.decode()
    assert client.get("/groups/new/").status_code == 403
    assert client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "audit"}).status_code \
        == 403
    assert client.post(f"/policies/assignments/{fleet['assignment'].pk}/", {"mode": "audit"}).status_code == 403


def test_compliance_page_shows_scores_worst_first_and_partial(client, fleet, viewer):
    client.force_login(viewer)
    page = client.get("/compliance/").content.decode()
    assert 'id="fleet-score"' in page and "data-score=\"0.0\"" in page
    assert page.index('data-cluster="prod-1"') > 0
    partial = client.get("/compliance/", **HX).content.decode()
    assert "<html" not in partial and 'id="open-violations">1<' in partial


def test_cluster_compliance_tab(client, fleet, viewer):
    client.force_login(viewer)
    tab = client.get("/clusters/prod-1/?tab=compliance", HTTP_HX_TARGET="tab-content", **HX).content.decode()
    assert "<html" not in tab
    assert 'data-rule="no-privileged-containers"' in tab and "legacy/</span>" not in tab
    assert "old-admin" in tab and "privileged container(s): a" in tab


def test_violations_filter_and_export(client, fleet, viewer):
    client.force_login(viewer)
    assert b"old-admin" in client.get("/compliance/violations/?state=open&cluster=prod-1").content
    assert b"No violations match" in client.get("/compliance/violations/?state=resolved").content
    csv = b"".join(client.get("/compliance/violations/export.csv?severity=critical").streaming_content).decode()
    lines = csv.strip().splitlines()
    assert lines[0].startswith("cluster,group,rule,severity") and len(lines) == 2
    assert "prod-1,prod,no-privileged-containers,critical,Deployment,legacy,old-admin" in lines[1]


def test_matrix_toggle_creates_changes_and_removes_assignments(client, fleet, operator, admin_user):
    client.force_login(operator)
    cell = client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "audit"}, **HX)
    assert cell.status_code == 200 and b"on-audit" in cell.content
    assignment = PolicyAssignment.objects.get(group__name="prod", rule_key="no-latest-tag")
    refused = client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "enforce"}, **HX)
    assert b"Only admins" in refused.content and b"on-audit" in refused.content
    client.force_login(admin_user)
    # Enforce with eyes open: the first change only says what violates it already, the second enforces.
    asked = client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "enforce"}, **HX)
    assert b"confirm-enforce" in asked.content and b"on-audit" in asked.content
    assert PolicyAssignment.objects.get(pk=assignment.pk).mode == "audit", "nothing changes before the confirmation"
    assert b"on-enforce" in client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag",
                                                              "mode": "enforce", "confirmed": "1"}, **HX).content
    assert b"cannot be enforced" in client.post("/policies/toggle/", {"group": "prod", "rule": "namespace-quota",
                                                                      "mode": "enforce"}, **HX).content
    off = client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "off"}, **HX)
    assert b"on-" not in off.content and not PolicyAssignment.objects.filter(pk=assignment.pk).exists()
    # By type too: an enforcement or cluster event can carry the same id.
    actions = list(AuditEvent.objects.filter(target_type="governance.policyassignment", target_id=str(assignment.pk))
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["policy.assign", "policy.update", "policy.unassign"]


def test_matrix_sends_rules_that_need_input_to_the_editor(client, fleet, operator):
    client.force_login(operator)
    response = client.post("/policies/toggle/", {"group": "prod", "rule": "allowed-registries", "mode": "audit"}, **HX)
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/policies/assign/?group=prod&rule=allowed-registries"
    form = client.get(response["HX-Redirect"])
    assert form.status_code == 200 and b"registries" in form.content
    bad = client.post("/policies/assign/", {"rule": "allowed-registries", "group": "prod", "mode": "audit",
                                            "param_registries": "", "excluded_namespaces": "kube-system"})
    assert bad.status_code == 400 and b"give at least one value" in bad.content
    ok = client.post("/policies/assign/", {"rule": "allowed-registries", "group": "prod", "mode": "audit",
                                           "param_registries": "registry.example.com\nghcr.io/acme",
                                           "excluded_namespaces": "kube-system\nmonitoring"})
    assert ok.status_code == 302
    assignment = PolicyAssignment.objects.get(rule_key="allowed-registries")
    assert assignment.params == {"registries": ["registry.example.com", "ghcr.io/acme"]}
    assert assignment.excluded_namespaces == ["kube-system", "monitoring"]


def test_group_editor_previews_and_keeps_bad_input(client, fleet, operator):
    client.force_login(operator)
    preview = client.post("/groups/preview/", {"selector": "environment=prod", "static_members": "dev-1"}, **HX)
    assert b"<strong>2</strong> clusters match" in preview.content
    error = client.post("/groups/preview/", {"selector": "environment in prod"}, **HX).content.decode()
    assert "expected &#x27;(&#x27; after &#x27;in&#x27;" in error and "<mark>p</mark>" in error
    bad = client.post("/groups/new/", {"name": "web", "selector": "tier in web", "static_members": "nope\ndev-1",
                                       "description": "keep me"})
    assert bad.status_code == 400
    page = bad.content.decode()
    assert "at position 9" in page and "No cluster named: nope." in page and "keep me" in page
    assert not ClusterGroup.objects.filter(name="web").exists()
    ok = client.post("/groups/new/", {"name": "web", "selector": "tier=web", "static_members": "dev-1"})
    assert ok.status_code == 302 and ok["Location"] == "/groups/web/"
    detail = client.get("/groups/web/").content.decode()
    assert 'data-cluster="prod-1"' in detail and 'data-cluster="dev-1"' in detail
    edit = client.post("/groups/web/edit/", {"selector": "tier=db", "static_members": "", "name": "web"})
    assert edit.status_code == 302
    assert list(ClusterGroup.objects.get(name="web").members()) == []
    assert client.post("/groups/web/delete/", {"confirm_name": "wrong"}).status_code == 400
    assert client.post("/groups/web/delete/", {"confirm_name": "web"}).status_code == 302
    assert not ClusterGroup.objects.filter(name="web").exists()


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("url", ["/groups/", "/policies/", "/compliance/", "/compliance/violations/"])
def test_page_query_count_does_not_grow_with_rows(client, fleet, viewer, admin_user, url):
    client.force_login(viewer)
    few = _queries(client, url)
    for i in range(6):
        c = make_cluster(f"more-{i}", environment="prod")
        Workload.objects.create(cluster=c, uid="w", name="w", kind="Deployment", namespace="legacy",
                                pod_template={"containers": [{"name": "a", "image": "x", "privileged": True}]})
        g = inventory_services.create_group(name=f"g{i}", selector=f"name=more-{i}", user=admin_user)
        services.create_assignment(group=g, rule_key="no-latest-tag", user=admin_user)
        evaluation.evaluate_cluster(c)
    assert _queries(client, url) == few


def test_switching_to_enforce_first_says_how_many_existing_objects_violate_it(client, fleet, admin_user):
    client.force_login(admin_user)
    asked = client.post("/policies/toggle/", {"group": "prod", "rule": "no-privileged-containers",
                                              "mode": "enforce"}, **HX).content.decode()
    assert "1 existing object on 1 cluster" in asked and "prod-1: Deployment legacy/old-admin" in asked
    assert PolicyAssignment.objects.get(pk=fleet["assignment"].pk).mode == "audit"
    assert not AuditEvent.objects.filter(action="policy.update").exists()
    # Cancel leaves it as it was.
    cancelled = client.post("/policies/toggle/", {"group": "prod", "rule": "no-privileged-containers",
                                                  "mode": "audit"}, **HX).content.decode()
    assert "on-audit" in cancelled and "confirm-enforce" not in cancelled
    # A rule not assigned yet is counted over the stored inventory too, before anything is written.
    fresh = client.post("/policies/toggle/", {"group": "prod", "rule": "no-latest-tag", "mode": "enforce"},
                        **HX).content.decode()
    assert "confirm-enforce" in fresh and not PolicyAssignment.objects.filter(rule_key="no-latest-tag").exists()


def test_the_assignment_form_asks_before_enforcing_and_says_what_violates_it(client, fleet, admin_user, operator):
    url = f"/policies/assignments/{fleet['assignment'].pk}/"
    data = {"rule": "no-privileged-containers", "group": "prod", "mode": "enforce",
            "excluded_namespaces": "kube-system"}
    client.force_login(operator)
    refused = client.post(url, data)
    assert refused.status_code == 400 and b"confirm-enforce" not in refused.content, "the role check comes first"
    client.force_login(admin_user)
    asked = client.post(url, data).content.decode()
    assert "1 existing object on 1 cluster" in asked and "prod-1: Deployment legacy/old-admin" in asked
    assert PolicyAssignment.objects.get(pk=fleet["assignment"].pk).mode == "audit"
    assert client.post(url, {**data, "confirmed": "1"}).status_code == 302
    assert PolicyAssignment.objects.get(pk=fleet["assignment"].pk).mode == "enforce"
    # Creating an enforced assignment asks the same question.
    new = client.post("/policies/assign/", {"rule": "no-latest-tag", "group": "prod", "mode": "enforce",
                                            "excluded_namespaces": "kube-system"}).content.decode()
    assert 'id="confirm-enforce"' in new and not PolicyAssignment.objects.filter(rule_key="no-latest-tag").exists()


def test_the_compliance_pages_count_from_the_fleets_sums_for_a_viewer_and_a_team_member(client, admin_user, viewer):
    from inventory.people import services as team_services
    from tests.builders import make_user

    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    services.create_assignment(group=group, rule_key="no-privileged-containers", user=admin_user)
    clusters = [make_cluster(f"pay-{i:02}", environment="prod", owner="payments") for i in range(52)]
    clusters += [make_cluster(f"shop-{i}", environment="prod", owner="shop") for i in range(3)]
    evaluation.evaluate_clusters(clusters)
    team = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    member = make_user("pay-viewer")
    team_services.add_member(team, member=member, role="viewer", user=admin_user)
    for who, on_the_second_page in ((viewer, 5), (member, 2)):  # 55 clusters, and the member's 52
        client.force_login(who)
        with CaptureQueriesContext(connection) as ctx:
            first = client.get("/compliance/", **HX).content.decode()
        assert "page 1 of 2" in first and first.count("data-cluster=") == 50, who
        assert not [q for q in ctx.captured_queries if q["sql"].startswith("SELECT COUNT(*)")]
        second = client.get("/compliance/?page=2", **HX).content.decode()
        assert "page 2 of 2" in second and second.count("data-cluster=") == on_the_second_page, who
        if who == member:
            assert "shop-" not in first + second
