"""Upgrade readiness: the API removal table, the facts read from a cluster (deprecated-API metric lines, CRD
stored versions), each blocker with its fix, the verdict, group targets, and the Upgrade plan's page, CSV and API."""

from __future__ import annotations

import csv
import datetime
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from foundation.models import AuditEvent
from governance import upgrades
from governance.api_removals import REMOVALS
from governance.models import UpgradeReadiness
from inventory import readiness
from inventory import services as inventory_services
from inventory.models import (
    Cluster,
    ClusterAddon,
    ClusterGroup,
    CustomResourceDefinition,
    DeprecatedAPIRequest,
    Node,
)
from tests.builders import make_cluster, make_user

pytestmark = pytest.mark.django_db

TODAY = datetime.date(2026, 12, 1)


# --- the shipped tables --------------------------------------------------------------------------------


def test_removal_table_knows_the_classic_removals_and_their_replacements():
    assert REMOVALS[("policy", "v1beta1", "poddisruptionbudgets")] == ("PodDisruptionBudget", "1.21", "1.25",
                                                                       "policy/v1")
    assert REMOVALS[("extensions", "v1beta1", "ingresses")][2] == "1.22"
    assert REMOVALS[("batch", "v1beta1", "cronjobs")][2] == "1.25"
    assert REMOVALS[("autoscaling", "v2beta2", "horizontalpodautoscalers")][2] == "1.26"
    assert REMOVALS[("flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas")][2] == "1.32"
    # What 1.37 stopped serving, and what it deprecated for 1.40.
    assert REMOVALS[("resource.k8s.io", "v1alpha3", "resourceclaims")][2] == "1.37"
    assert REMOVALS[("storagemigration.k8s.io", "v1beta1", "storageversionmigrations")][1:3] == ("1.37", "1.40")
    # From k8s.io/api v0.24: PodSecurityPolicy's types were deleted after its removal.
    assert REMOVALS[("policy", "v1beta1", "podsecuritypolicies")][2] == "1.25"
    assert REMOVALS[("extensions", "v1beta1", "podsecuritypolicies")][2:] == ("1.16", "policy/v1beta1")
    removed = {tuple(int(x) for x in entry[2].split(".")) for entry in REMOVALS.values()}
    assert min(removed) == (1, 16) and (1, 37) in removed
    assert all(not kind.endswith("List") and kind not in ("Scale", "Eviction", "JobTemplate")
               for kind, *_ in REMOVALS.values())


def test_an_api_with_no_successor_says_what_replaces_it():
    cluster = _checked(make_cluster("psp", version="v1.24.17"))
    _deprecated(cluster, "policy", "v1beta1", "podsecuritypolicies", "1.25")
    [blocker] = _one(cluster).blockers
    assert blocker.message == "clients still call policy/v1beta1 podsecuritypolicies, removed in Kubernetes 1.25"
    assert blocker.fix.startswith("PodSecurityPolicy is gone for good: move to Pod Security Admission")


def test_replacement_follows_a_chain_to_a_version_still_served():
    # flowcontrol v1beta1 was replaced by v1beta3, itself removed in 1.32 for v1.
    assert upgrades.replacement("flowcontrol.apiserver.k8s.io", "v1beta1", "flowschemas") == \
        "flowcontrol.apiserver.k8s.io/v1"
    assert upgrades.replacement("policy", "v1beta1", "poddisruptionbudgets") == "policy/v1"
    assert upgrades.replacement("example.com", "v1", "widgets") == ""


def test_release_table_knows_1_37():
    from governance import kubernetes_releases

    assert kubernetes_releases.end_of_life((1, 37)) == datetime.date(2027, 10, 28)


# --- facts read from a cluster --------------------------------------------------------------------------


def test_deprecated_api_metric_lines_are_parsed_and_bounded():
    lines = [
        b'apiserver_requested_deprecated_apis{group="resource.k8s.io",removed_release="1.38",resource="resourceclaims"'
        b',subresource="",version="v1beta1"} 1',
        b'apiserver_requested_deprecated_apis{group="",removed_release="",resource="componentstatuses",'
        b'subresource="",version="v1"} 1',
        b'apiserver_requested_deprecated_apis{group="x",removed_release="<script>",resource="' + b"r" * 400
        + b'",subresource="",version="v9"} 1',
        b'apiserver_requested_deprecated_apis{group="gone",removed_release="1.30",resource="old",version="v1"} 0',
        b'apiserver_requested_deprecated_apis{group="broken"} 1',
    ]
    rows = readiness.parse_deprecated_apis(lines)
    assert rows[0] == {"group": "", "version": "v1", "resource": "componentstatuses", "subresource": "",
                       "removed_release": ""}
    assert rows[1]["removed_release"] == "1.38" and rows[1]["resource"] == "resourceclaims"
    assert rows[2]["removed_release"] == "" and len(rows[2]["resource"]) == 253  # not a release; cut to the column
    assert len(rows) == 3  # the 0 gauge and the line without a version are not requests


def test_stale_crd_versions_are_deprecated_unserved_or_unlisted():
    versions = [{"name": "v1alpha1", "served": True, "storage": False, "deprecated": True},
                {"name": "v1beta1", "served": False, "storage": False, "deprecated": False},
                {"name": "v1", "served": True, "storage": True, "deprecated": False}]
    assert readiness.stale_versions(versions, ["v1alpha1", "v1beta1", "v0", "v1"]) == ["v1alpha1", "v1beta1", "v0"]
    assert readiness.stale_versions(versions, ["v1"]) == []


# --- the verdict ------------------------------------------------------------------------------------------


def _checked(cluster, error: str = ""):
    cluster.readiness_checked_at = timezone.now()
    cluster.readiness_error = error
    cluster.save(update_fields=["readiness_checked_at", "readiness_error"])
    return cluster


def _deprecated(cluster, group, version, resource, removed):
    now = timezone.now()
    DeprecatedAPIRequest.objects.create(cluster=cluster, group=group, version=version, resource=resource,
                                        removed_release=removed, first_seen_at=now, last_seen_at=now)


def _pool(cluster, pool, kubelet, count=2):
    for i in range(count):
        Node.objects.create(cluster=cluster, uid=f"{cluster.name}-{pool}-{i}", name=f"{cluster.name}-{pool}-{i}",
                            pool=pool, kubelet_version=kubelet, ready=True)


def _one(cluster) -> upgrades.Readiness:
    [r] = upgrades.plan([cluster], today=TODAY)
    return r


def test_a_cluster_with_nothing_in_the_way_is_ready():
    cluster = _checked(make_cluster("calm", version="v1.35.4"))
    _pool(cluster, "general", "v1.35.4")
    _deprecated(cluster, "resource.k8s.io", "v1beta1", "resourceclaims", "1.38")
    r = _one(cluster)
    assert (r.verdict, r.current, r.target, r.target_from, r.steps) == ("ready", "1.35", "1.36", "next minor",
                                                                       ["1.36"])
    assert r.end_of_support == datetime.date(2027, 2, 28) and r.days_left == 89
    assert r.blockers == [] and r.missing == []
    [warning] = r.warnings  # still called, but only removed after the target
    assert warning.message == "clients still call the deprecated resource.k8s.io/v1beta1 resourceclaims, removed " \
                              "in 1.38"


def test_each_blocker_is_named_with_its_fix():
    cluster = _checked(make_cluster("stuck", version="v1.35.2-eks-1234"))
    _deprecated(cluster, "flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas", "")  # release from the table
    _deprecated(cluster, "example.io", "v1beta1", "widgets", "1.36")
    _pool(cluster, "general", "v1.35.4")
    _pool(cluster, "legacy", "v1.32.9")
    CustomResourceDefinition.objects.create(
        cluster=cluster, name="certificates.cert-manager.io", group="cert-manager.io", kind="Certificate",
        versions=[{"name": "v1alpha2", "served": False, "storage": False, "deprecated": True},
                  {"name": "v1", "served": True, "storage": True, "deprecated": False}],
        stored_versions=["v1alpha2", "v1"], stale_versions=["v1alpha2"])
    CustomResourceDefinition.objects.create(cluster=cluster, name="fine.example.io", group="example.io", kind="Fine",
                                            versions=[{"name": "v1", "served": True, "storage": True}],
                                            stored_versions=["v1"], stale_versions=[])
    ClusterAddon.objects.create(cluster=cluster, addon="kube-proxy", version="v1.32.1", namespace="kube-system",
                                workload="kube-proxy", kind="DaemonSet", image="kube-proxy:v1.32.1")
    r = _one(cluster)
    assert r.verdict == "blocked"
    found = {(b.code, b.subject): (b.message, b.fix) for b in r.blockers}
    assert found[("api", "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas")] == (
        "clients still call flowcontrol.apiserver.k8s.io/v1beta3 flowschemas, removed in Kubernetes 1.32",
        "Move its clients (manifests, charts, controllers) to flowcontrol.apiserver.k8s.io/v1.")
    assert found[("api", "example.io/v1beta1 widgets")][0].endswith("removed in Kubernetes 1.36")
    assert found[("pool", "legacy")] == ("node pool legacy runs kubelet v1.32.9: 4 minors behind 1.36 (at most 3 "
                                         "allowed)", "Upgrade node pool legacy to at least 1.33 first.")
    message, fix = found[("crd", "certificates.cert-manager.io")]
    assert "v1alpha2 in status.storedVersions" in message and "Certificate objects at v1" in fix
    assert found[("addon", "kube-proxy")][1] == ("Upgrade kube-proxy to at least 1.33 (with its node pools) before "
                                                 "the control plane.")
    assert len(r.blockers) == 5  # the general pool and the fine CRD are not in the way


def test_without_the_facts_the_verdict_is_unknown_never_ready():
    never = make_cluster("never-read", version="v1.36.3")
    r = _one(never)
    assert r.verdict == "unknown" and r.missing[0].message == "deprecated APIs and CRDs not read yet"
    forbidden = _checked(make_cluster("no-metrics", version="v1.36.3"), error=(
        f"{readiness.METRICS}: 403 Forbidden: Fleetweb's ClusterRole lacks get on the /metrics non-resource URL; "
        "apply the current access manifest"))
    r = _one(forbidden)
    assert r.verdict == "unknown"
    assert r.missing[0].message.startswith("deprecated APIs could not be read: 403 Forbidden")
    assert "access manifest" in r.missing[0].fix
    unsynced = make_cluster("unsynced", version="")
    r = _one(unsynced)
    assert r.verdict == "unknown" and r.missing[0].code == "version"
    # A blocker wins over what could not be checked: blocked is certain.
    _pool(forbidden, "old", "v1.30.1")
    assert _one(forbidden).verdict == "blocked"


def test_a_groups_target_decides_and_is_planned_in_steps(admin_user):
    cluster = _checked(make_cluster("eu-prod", environment="prod", version="v1.35.4"))
    _pool(cluster, "general", "v1.34.4")
    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user,
                                    upgrade_target="1.37")
    inventory_services.create_group(name="all-late", selector="name=eu-prod", user=admin_user,
                                    upgrade_target="1.38")
    r = _one(cluster)
    assert (r.target, r.target_from, r.steps, r.verdict) == ("1.37", "group prod", ["1.36", "1.37"], "ready")
    assert r.warnings[0].code == "steps" and "1.35 → 1.36 → 1.37" in r.warnings[0].message
    ClusterGroup.objects.filter(name="prod").update(upgrade_target="1.35")
    assert _one(cluster).verdict == "current"
    ClusterGroup.objects.filter(name="prod").update(upgrade_target="")
    r = _one(cluster)
    assert (r.target, r.target_released) == ("1.38", False)
    assert r.verdict == "blocked" and r.blockers[0].subject == "general"  # 1.34 kubelets, 4 behind 1.38


def test_out_of_support_is_said_and_the_plan_orders_by_end_of_support():
    old = _checked(make_cluster("old", version="v1.31.9"))
    new = _checked(make_cluster("new", version="v1.37.2"))
    mid = _checked(make_cluster("mid", version="v1.35.4"))
    weird = _checked(make_cluster("weird", version="unknown"))
    never = make_cluster("not-evaluated", version="v1.30.1")
    r = _one(old)
    assert r.warnings[0].code == "support" and "out of upstream support since 2025-10-28" in r.warnings[0].message
    assert upgrades.refresh(Cluster.objects.exclude(pk=never.pk)) == 4
    everyone = Cluster.objects.all()
    assert [c.name for c in upgrades.fleet(everyone)] == ["old", "mid", "new", "not-evaluated", "weird"]
    # 1.37 is the newest release: nothing to upgrade "new" to yet, so neither ready nor blocked.
    tally = upgrades.tally(everyone)
    assert (tally.counts, tally.total, tally.keys) == (
        {"ready": 2, "blocked": 0, "unknown": 2, "current": 0, "newest": 1}, 5, [])
    # The page's keys come with the counts, in the plan's order (none last, then by name), for every verdict.
    for verdict in ["", "nonsense", *upgrades.VERDICTS]:
        order = list(upgrades.fleet(everyone, verdict=verdict).values_list("pk", flat=True))
        for rows in (slice(0, 2), slice(2, 4), slice(4, 6), slice(0, 50)):
            tally = upgrades.tally(everyone, verdict=verdict, keys=rows)
            assert tally.keys == order[rows] and tally.count(verdict) == len(order), (verdict, rows)
    assert upgrades.tally(everyone, verdict="unknown", keys=slice(0, 5)).keys == [never.pk, weird.pk]
    assert upgrades.tally(Cluster.objects.none(), keys=slice(0, 5)) == ({v: 0 for v in upgrades.VERDICTS}, 0, [])
    assert {c.name for c in upgrades.fleet(everyone, verdict="unknown")} == {weird.name, never.name}
    assert [c.name for c in upgrades.fleet(everyone, verdict="ready")] == ["old", "mid"]
    assert [c.name for c in upgrades.fleet(everyone, verdict="newest")] == ["new"]
    shown = upgrades.stored(Cluster.objects.select_related("upgrade_readiness").get(pk=mid.pk), today=TODAY)
    assert (shown.verdict, shown.target, shown.days_left) == ("ready", "1.36", 89) and new
    assert upgrades.stored(never).missing[0].message == "not evaluated yet"


def test_the_plan_costs_the_same_queries_for_2_or_30_clusters(admin_user):
    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user,
                                    upgrade_target="1.37")

    def fleet(prefix, count):
        for i in range(count):
            c = _checked(make_cluster(f"{prefix}-{i}", environment="prod" if i % 2 else "dev"))
            _pool(c, "general", "v1.33.1", 1)
            _deprecated(c, "batch", "v1beta1", "cronjobs", "1.25")

    fleet("few", 2)
    with CaptureQueriesContext(connection) as few:
        upgrades.refresh(Cluster.objects.all())
    fleet("many", 28)
    with CaptureQueriesContext(connection) as many:
        assert upgrades.refresh(Cluster.objects.all()) == 30
    assert upgrades.tally(Cluster.objects.all()).counts["blocked"] == 30
    assert len(many.captured_queries) == len(few.captured_queries) <= 9


def test_a_readiness_that_did_not_change_is_not_written_again():
    same = _checked(make_cluster("same", version="v1.35.4"))
    moved = _checked(make_cluster("moved", version="v1.35.4"))
    first, later = timezone.now() - datetime.timedelta(hours=1), timezone.now()
    assert upgrades.refresh(Cluster.objects.all(), now=first) == 2
    Cluster.objects.filter(pk=moved.pk).update(kubernetes_version="v1.36.3")
    with CaptureQueriesContext(connection) as ctx:
        assert upgrades.refresh(Cluster.objects.all(), now=later) == 2
    assert len([q for q in ctx.captured_queries if q["sql"].startswith("INSERT")]) == 1
    stored = {r.cluster.name: r for r in UpgradeReadiness.objects.select_related("cluster")}
    assert stored["same"].computed_at == first, "not written again: its upsert would have set the time"
    assert (stored["same"].current, stored["same"].pk) == ("1.35", same.pk)
    assert stored["moved"].computed_at == later and stored["moved"].current == "1.36"
    with CaptureQueriesContext(connection) as ctx:
        upgrades.refresh(Cluster.objects.all(), now=later)
    assert not [q for q in ctx.captured_queries if q["sql"].startswith(("INSERT", "UPDATE"))]


def test_the_plan_pages_count_from_the_verdict_tally_without_a_count_query_of_their_own(client, viewer):
    for i in range(53):
        _checked(make_cluster(f"old-{i:02}", environment="prod", version="v1.31.9"))
        _deprecated(Cluster.objects.get(name=f"old-{i:02}"), "batch", "v1beta1", "cronjobs", "1.25")
    for i in range(3):
        _checked(make_cluster(f"mid-{i}", environment="prod", version="v1.35.4"))
    _checked(make_cluster("dev-1", environment="dev", version="v1.31.9"))
    upgrades.refresh(Cluster.objects.all())
    client.force_login(viewer)
    for query, shown in [("verdict=blocked&environment=prod", "53 clusters, page 1 of 2"),
                         ("verdict=ready&environment=prod", "3 clusters<"), ("environment=prod", "56 clusters, page"),
                         ("verdict=nonsense", "57 clusters, page"),
                         ("verdict=blocked&page=2", "53 clusters, page 2 of 2")]:
        with CaptureQueriesContext(connection) as ctx:
            html = client.get(f"/upgrades/?{query}", HTTP_HX_REQUEST="true").content.decode()
        assert shown in html, (query, html[-600:])
        assert not [q for q in ctx.captured_queries if q["sql"].startswith("SELECT COUNT(*)")], query
        # The counts and the page's keys are one statement: no query of the keys alone, one of the page's rows.
        sql = [q["sql"] for q in ctx.captured_queries]
        assert len([q for q in sql if q.startswith("WITH plan")]) == 1, query
        assert not [q for q in sql if q.startswith('SELECT "inventory_cluster"."id" AS "pk"')], query
    page_two = client.get("/upgrades/?verdict=blocked&environment=prod&page=2", HTTP_HX_REQUEST="true")
    assert page_two.content.decode().count("data-cluster=") == 3
    # A page past the end, or not a number, shows the last page, or the first, with its own rows.
    for page, first in [("9", "old-50"), ("x", "old-00"), ("0", "old-50"), ("9" * 30, "old-50")]:
        html = client.get(f"/upgrades/?verdict=blocked&page={page}", HTTP_HX_REQUEST="true").content.decode()
        assert html.count("data-cluster=") == (3 if first == "old-50" else 50), page
        assert html.index(f'data-cluster="{first}"') == html.index("data-cluster="), page


# --- group targets are validated and audited ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["v1.37.1", "1.x", "latest", "2"])
def test_a_bad_upgrade_target_is_refused_by_name(admin_user, api_as, value):
    response = api_as(admin_user).post("/api/v1/groups/", {"name": "prod", "upgrade_target": value}, format="json")
    assert response.status_code == 400, response.json()
    assert "is not a Kubernetes minor release: write it as 1.37" in str(response.json()["errors"]["upgrade_target"])
    assert not ClusterGroup.objects.filter(name="prod").exists()


def test_setting_a_target_is_audited_and_v_is_tolerated(admin_user):
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    inventory_services.update_group(group, user=admin_user, upgrade_target="v1.37")
    group.refresh_from_db()
    assert group.upgrade_target == "1.37"
    event = AuditEvent.objects.filter(action="group.update").latest("at")
    assert event.before["upgrade_target"] == "" and event.after["upgrade_target"] == "1.37"


def test_operator_cannot_move_a_groups_upgrade_target_without_the_global_role(admin_user, api_as):
    from inventory.people import services as team_services

    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user,
                                            upgrade_target="1.36")
    make_cluster("pay-prod", environment="prod", owner="payments")
    team = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    member = make_user("pay-operator")
    team_services.add_member(team, member=member, role="operator", user=admin_user)
    api = api_as(member)  # its token's creation is audited
    events = AuditEvent.objects.count()
    response = api.patch("/api/v1/groups/prod/", {"upgrade_target": "1.40"}, format="json")
    assert response.status_code == 403
    group.refresh_from_db()
    assert group.upgrade_target == "1.36" and AuditEvent.objects.count() == events


# --- page, CSV, API ----------------------------------------------------------------------------------------------


@pytest.fixture
def plan_fleet(admin_user):
    blocked = _checked(make_cluster("pay-prod", environment="prod", version="v1.34.4", owner="payments"))
    _deprecated(blocked, "policy", "v1beta1", "poddisruptionbudgets", "1.25")
    _checked(make_cluster("shop-dev", environment="dev", version="v1.36.3", owner="shop"))
    make_cluster("new-one", environment="dev", version="v1.36.3")
    inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    upgrades.refresh(Cluster.objects.all())  # what the evaluation after each sync stores
    return blocked


def test_the_page_lists_verdicts_with_counts_and_filters(client, viewer, plan_fleet):
    client.force_login(viewer)
    page = client.get("/upgrades/")
    html = page.content.decode()
    assert page.status_code == 200 and 'id="upgrades-link"' in html
    assert html.index('data-cluster="pay-prod"') < html.index('data-cluster="shop-dev"')  # earliest support first
    row = html.split('data-cluster="pay-prod"')[1].split("</tr>")[0]
    assert "Blocked" in row and "policy/v1beta1 poddisruptionbudgets, removed in Kubernetes 1.25" in row
    assert "Move its clients (manifests, charts, controllers) to policy/v1." in row
    assert 'data-verdict="blocked">Blocked: 1' in html and 'data-verdict="unknown">Unknown: 1' in html
    partial = client.get("/upgrades/?group=prod", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="upgrade-table")
    body = partial.content.decode()
    assert "<html" not in body and 'data-cluster="pay-prod"' in body and 'data-cluster="shop-dev"' not in body
    only_ready = client.get("/upgrades/?verdict=ready").content.decode()
    assert 'data-cluster="shop-dev"' in only_ready and 'data-cluster="pay-prod"' not in only_ready


def test_the_cluster_tab_shows_the_verdict_and_the_facts(client, viewer, plan_fleet):
    client.force_login(viewer)
    tab = client.get("/clusters/pay-prod/?tab=upgrade", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="tab-content")
    html = tab.content.decode()
    assert tab.status_code == 200 and "Blocked" in html
    assert 'data-code="api" data-subject="policy/v1beta1 poddisruptionbudgets"' in html
    assert '<td class="mono">policy/v1beta1</td><td class="mono">poddisruptionbudgets</td><td>1.25</td>' in html


def test_the_csv_has_one_row_per_cluster_with_its_fixes(client, viewer, plan_fleet):
    client.force_login(viewer)
    response = client.get("/upgrades/export.csv?environment=prod")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == upgrades.CSV_HEADER
    assert [r[0] for r in rows[1:]] == ["pay-prod"]
    assert rows[1][7] == "blocked" and rows[1][8] == "1" and "to policy/v1." in rows[1][9]


def test_the_api_lists_and_shows_readiness(viewer, api_as, plan_fleet):
    api = api_as(viewer)
    listed = api.get("/api/v1/upgrade-plan/?verdict=blocked").json()
    assert listed["count"] == 1
    # Pages are the plan's order, counted by the tally; one past the end is a 404, as on every list.
    names = [r["cluster"] for r in api.get("/api/v1/upgrade-plan/?page_size=500").json()["results"]]
    assert names == [c.name for c in upgrades.fleet(Cluster.objects.all())] and len(names) > 2
    paged = [api.get(f"/api/v1/upgrade-plan/?page_size=2&page={n}").json() for n in (1, 2)]
    assert [r["cluster"] for p in paged for r in p["results"]] == names[:4]
    assert paged[0]["count"] == len(names) and paged[1]["previous"] and paged[0]["next"]
    last = api.get("/api/v1/upgrade-plan/?page_size=2&page=last").json()
    assert [r["cluster"] for r in last["results"]] == names[(len(names) - 1) // 2 * 2:]
    for page in ("99", "9" * 30):
        assert api.get(f"/api/v1/upgrade-plan/?page_size=2&page={page}").status_code == 404, page
    [row] = listed["results"]
    assert (row["cluster"], row["current"], row["target"], row["verdict"]) == ("pay-prod", "1.34", "1.35", "blocked")
    assert row["end_of_support"] == "2026-10-27" and row["blockers"][0]["code"] == "api"
    one = api.get("/api/v1/upgrade-plan/new-one/").json()
    assert one["verdict"] == "unknown" and one["missing"][0]["message"] == "deprecated APIs and CRDs not read yet"
    assert api.get("/api/v1/upgrade-plan/nope/").status_code == 404


def test_every_evaluation_stores_the_clusters_readiness_for_the_plan(admin_user):
    from governance import evaluation

    cluster = _checked(make_cluster("synced", version="v1.35.4"))
    _deprecated(cluster, "example.io", "v1beta1", "widgets", "1.36")
    evaluation.evaluate_and_enforce_many([cluster])  # what follows every sync and change
    row = Cluster.objects.select_related("upgrade_readiness").get(pk=cluster.pk).upgrade_readiness
    assert (row.verdict, row.target, row.blockers[0]["code"]) == ("blocked", "1.36", "api")
    DeprecatedAPIRequest.objects.filter(cluster=cluster).delete()
    evaluation.evaluate_and_enforce_many([cluster])
    assert Cluster.objects.get(pk=cluster.pk).upgrade_readiness.verdict == "ready"


def test_readiness_is_read_on_the_first_sync_on_sync_now_and_every_interval(settings):
    cluster = make_cluster("due", version="v1.36.3")
    assert readiness.due(cluster, triggered_by="schedule"), "never read yet"
    _checked(cluster)
    assert not readiness.due(cluster, triggered_by="schedule")
    assert not readiness.due(cluster, triggered_by="rollout #7"), "a rollout's sync after each target: not again"
    assert readiness.due(cluster, triggered_by="page:ada-admin") and readiness.due(cluster, triggered_by="api:ci")
    later = timezone.now() + datetime.timedelta(seconds=settings.FLEETWEB_READINESS_INTERVAL + 1)
    assert readiness.due(cluster, triggered_by="schedule", now=later)


def test_a_blank_select_filters_nothing_and_keeps_the_other_filters(client, viewer, plan_fleet):
    """The page's selects send `environment=` for "any": that is no filter, and the search still applies."""
    client.force_login(viewer)
    html = client.get("/upgrades/?q=shop&environment=&group=&verdict=").content.decode()
    assert "alert error" not in html
    assert 'data-cluster="shop-dev"' in html and 'data-cluster="pay-prod"' not in html
