"""A rule that two groups assign to one cluster applies there once, with the strictest mode and parameters of the
assignments that reach it, and every door says the same numbers: the cluster page, the compliance page, the scores,
the API, /metrics and the CSV (issue: counts agree)."""

from __future__ import annotations

import csv
import io

import pytest

from governance import compliance, enforcement, evaluation, services
from governance.choices import Mode
from governance.models import PolicyAssignment, Violation
from inventory import services as inventory_services
from inventory.models import Workload
from tests.builders import make_cluster
from tests.fleetweb.test_metrics import TOKEN, scrape, value

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}


def workload(cluster, name: str, *, labels: dict) -> Workload:
    return Workload.objects.create(
        cluster=cluster, uid=f"{cluster.name}-shop-{name}", name=name, kind="Deployment", namespace="shop",
        labels=labels,
        pod_template={"containers": [{"name": "main", "image": "r.example.com/a:1", "privileged": True}]})


def csv_rows(client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.fixture
def doubly_assigned(admin_user):
    """prod-1 is in "eu" and in "production"; both assign no-privileged-containers (production enforces it) and
    required-labels (eu wants app.kubernetes.io/name, production wants team). Two privileged workloads carry the first
    label only."""
    prod = make_cluster("prod-1", environment="prod", region="eu-west-1")
    make_cluster("dev-1", environment="dev", region="us-east-1")  # in neither group
    eu = inventory_services.create_group(name="eu", selector="region=eu-west-1", user=admin_user)
    production = inventory_services.create_group(name="production", selector="environment=prod", user=admin_user)
    services.create_assignment(group=eu, rule_key="no-privileged-containers", user=admin_user)
    services.create_assignment(group=production, rule_key="no-privileged-containers", user=admin_user,
                               mode=Mode.ENFORCE)
    services.create_assignment(group=eu, rule_key="required-labels", user=admin_user,
                               params={"labels": ["app.kubernetes.io/name"]})
    services.create_assignment(group=production, rule_key="required-labels", user=admin_user,
                               params={"labels": ["team"]})
    for name in ("a", "b"):
        workload(prod, name, labels={"app.kubernetes.io/name": name})
    evaluation.evaluate_clusters([prod])
    return prod


def test_the_strictest_mode_and_parameters_stand_for_both_assignments(doubly_assigned):
    effective = {a.rule_key: a for a in evaluation.assignments_for(doubly_assigned)}
    assert sorted(effective) == ["no-privileged-containers", "required-labels"]
    privileged = effective["no-privileged-containers"]
    assert privileged.mode == Mode.ENFORCE and privileged.merged_groups == ["eu", "production"]
    assert effective["required-labels"].params == {"labels": ["app.kubernetes.io/name", "team"]}
    # One admission policy per rule, enforcing the merged parameters.
    desired = enforcement.desired_for(doubly_assigned, list(effective.values()))
    assert [a.rule_key for a in desired] == ["no-privileged-containers"]
    assert PolicyAssignment.objects.filter(rule_key="no-privileged-containers").count() == 2, "nothing was saved"
    messages = set(Violation.objects.filter(rule_key="required-labels").values_list("message", flat=True))
    assert len(messages) == 1 and "team" in messages.pop()


def test_a_rule_two_groups_assign_counts_once_through_every_door(doubly_assigned, client, viewer, api_as, settings):
    # 2 rules apply, both fail; 2 privileged workloads + 2 missing the label "team" = 4 open violations.
    assert Violation.objects.filter(resolved_at__isnull=True).count() == 4
    client.force_login(viewer)

    tab = client.get("/clusters/prod-1/?tab=compliance", HTTP_HX_TARGET="tab-content", **HX).content.decode()
    assert '<div class="num">0 / 2</div>' in tab and '<div class="num">4</div>' in tab
    assert tab.count('data-rule="no-privileged-containers"') == 1 and "eu, production" in tab

    page = client.get("/compliance/", **HX).content.decode()
    assert 'id="open-violations">4<' in page

    scores = compliance.group_scores(list(inventory_services.ClusterGroup.objects.all()))
    assert scores[None]["open_violations"] == 4 and sum(scores[None]["by_severity"].values()) == 4
    assert compliance.fleet_summary()["open_violations"] == 4
    # Each group sees its members' results: both rules fail on prod-1 for eu and for production alike.
    for group in inventory_services.ClusterGroup.objects.all():
        assert (scores[group.pk]["failing_clusters"], scores[group.pk]["open_violations"]) == (1, 4), group.name

    api = api_as(viewer)
    fleet = api.get("/api/v1/compliance/").json()
    assert fleet["fleet"]["open_violations"] == 4
    row = next(c for c in api.get("/api/v1/compliance/clusters/").json()["results"] if c["cluster"] == "prod-1")
    assert (row["passed"], row["failed"], row["open_violations"], len(row["results"])) == (0, 2, 4, 2)
    assert len(api.get("/api/v1/violations/?state=open").json()["results"]) == 4
    for group in ("eu", "production"):  # the group's link from the compliance page lists what its row counts
        assert len(api.get(f"/api/v1/violations/?state=open&group={group}").json()["results"]) == 4, group
        assert len(csv_rows(client, f"/compliance/violations/export.csv?state=open&group={group}")) == 1 + 4, group

    settings.FLEETWEB_METRICS_TOKEN = TOKEN
    samples = scrape(client)
    assert sum(value(samples, "fleetweb_violations_open", severity=s) for s in ("critical", "high", "medium", "low")) \
        == 4
    assert len(csv_rows(client, "/compliance/violations/export.csv?state=open")) == 1 + 4


def test_when_the_second_assignment_goes_the_counts_stay_and_nothing_is_marked_fixed(doubly_assigned, admin_user):
    before = set(Violation.objects.filter(resolved_at__isnull=True).values_list("rule_key", "object_name"))
    services.delete_assignment(PolicyAssignment.objects.get(group__name="eu", rule_key="no-privileged-containers"),
                               user=admin_user)
    evaluation.evaluate_clusters([doubly_assigned])
    after = set(Violation.objects.filter(resolved_at__isnull=True).values_list("rule_key", "object_name"))
    assert after == before and not Violation.objects.filter(resolved_at__isnull=False).exists()


def test_operator_cannot_tighten_an_enforced_policy_through_an_audit_assignment(admin_user, operator):
    """An operator may assign in audit mode; merging their parameters into the admins' enforced policy would let them
    make production refuse every image (allowed registries: only those every assignment allows)."""
    prod = make_cluster("prod-1", environment="prod", region="eu-west-1")
    production = inventory_services.create_group(name="production", selector="environment=prod", user=admin_user)
    eu = inventory_services.create_group(name="eu", selector="region=eu-west-1", user=admin_user)
    services.create_assignment(group=production, rule_key="allowed-registries", user=admin_user, mode=Mode.ENFORCE,
                               params={"registries": ["registry.example.com"]})
    before = enforcement.manifests(evaluation.assignments_for(prod)[0])
    services.create_assignment(group=eu, rule_key="allowed-registries", user=operator,
                               params={"registries": ["nothing.example"]})
    (effective,) = evaluation.assignments_for(prod)
    assert (effective.mode, effective.params) == (Mode.ENFORCE, {"registries": ["registry.example.com"]})
    assert enforcement.manifests(effective) == before, "the enforced admission policy did not change"
