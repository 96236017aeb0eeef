"""Evaluation: idempotent, resolves and re-opens, keeps a trend, and runs after syncs and changes."""

from __future__ import annotations

import gc
from datetime import timedelta

import pytest
from django.utils import timezone

from governance import compliance, evaluation, services
from governance.choices import Mode
from governance.models import (
    ClusterCompliance,
    ComplianceSnapshot,
    GroupComplianceSnapshot,
    PolicyResult,
    Violation,
)
from inventory import services as inventory_services
from inventory.models import Workload
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


def privileged(cluster, name, namespace="shop", privileged=True):
    return Workload.objects.create(
        cluster=cluster, uid=f"{cluster.name}-{namespace}-{name}", name=name, kind="Deployment", namespace=namespace,
        pod_template={"containers": [{"name": "main", "image": "r.example.com/a:1", "privileged": privileged}]})


@pytest.fixture
def prod(admin_user):
    cluster = make_cluster("prod-1", environment="prod")
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    services.create_assignment(group=group, rule_key="no-privileged-containers", user=admin_user)
    return cluster


def test_violations_are_created_once_and_keep_their_first_seen(prod):
    privileged(prod, "a")
    privileged(prod, "sys", namespace="kube-system")
    t0 = timezone.now()
    evaluation.evaluate_cluster(prod, now=t0)
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))
    [v] = Violation.objects.select_related("cluster__compliance").filter(cluster=prod)
    assert (v.namespace, v.object_name, v.first_seen, v.seen_until) == ("shop", "a", t0, t0 + timedelta(minutes=1))
    assert v.last_seen == t0, "an unchanged open violation is not rewritten"
    compliance = ClusterCompliance.objects.get(cluster=prod)
    assert (compliance.passed, compliance.failed, compliance.open_violations, compliance.score) == (0, 1, 1, 0.0)


def test_fixed_objects_are_resolved_and_reopened_when_they_come_back(prod):
    w = privileged(prod, "a")
    t0 = timezone.now()
    evaluation.evaluate_cluster(prod, now=t0)
    Workload.objects.filter(pk=w.pk).update(pod_template={"containers": [{"name": "main", "privileged": False}]})
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))
    v = Violation.objects.get(cluster=prod)
    assert v.resolved_at == t0 + timedelta(minutes=1)
    assert v.seen_until == t0, "last seen: the evaluation before the one that found it gone"
    assert ClusterCompliance.objects.get(cluster=prod).score == 100.0
    Workload.objects.filter(pk=w.pk).update(pod_template={"containers": [{"name": "main", "privileged": True}]})
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=2))
    v.refresh_from_db()
    assert (v.resolved_at, v.reopened_at, v.times_reopened, v.first_seen) == (None, t0 + timedelta(minutes=2), 1, t0)


def test_deleted_objects_resolve_too(prod):
    w = privileged(prod, "a")
    evaluation.evaluate_cluster(prod)
    w.delete()
    evaluation.evaluate_cluster(prod)
    assert Violation.objects.get(cluster=prod).resolved_at is not None


def test_leaving_the_group_resolves_its_violations(prod, admin_user):
    privileged(prod, "a")
    evaluation.evaluate_cluster(prod)
    inventory_services.update_cluster(prod, user=admin_user, environment="staging")
    evaluation.evaluate_cluster(prod)
    assert Violation.objects.get(cluster=prod).resolved_at is not None
    assert ClusterCompliance.objects.get(cluster=prod).score is None  # nothing applies any more


def test_trend_points_are_written_on_change_or_after_the_interval(prod, settings):
    settings.FLEETWEB_COMPLIANCE_HISTORY_INTERVAL = 900
    t0 = timezone.now()
    evaluation.evaluate_cluster(prod, now=t0)
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))  # unchanged: no point
    assert ComplianceSnapshot.objects.filter(cluster=prod).count() == 1
    privileged(prod, "a")
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=2))  # changed: a point
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=20))  # unchanged but interval passed: a point
    points = list(ComplianceSnapshot.objects.filter(cluster=prod).order_by("at").values_list("score", "failed"))
    assert points == [(100.0, 0), (0.0, 1), (0.0, 1)]


def test_score_is_weighted_by_severity(prod, admin_user):
    group = prod.static_groups.first() or inventory_services.groups_of(prod)[0]
    services.create_assignment(group=group, rule_key="probes-set", user=admin_user)  # low, fails
    Workload.objects.create(cluster=prod, uid="w", name="w", kind="Deployment", namespace="shop",
                            pod_template={"containers": [{"name": "m", "privileged": False}]})
    compliance = evaluation.evaluate_cluster(prod)
    # critical (weight 8) passes, low (weight 1) fails: 8/9
    assert compliance.score == pytest.approx(88.9)


def test_group_and_fleet_scores_count_only_their_own_assignments(prod, admin_user):
    dev = make_cluster("dev-1", environment="dev")
    everyone = inventory_services.create_group(name="all", selector="name", user=admin_user)
    services.create_assignment(group=everyone, rule_key="no-latest-tag", user=admin_user)
    privileged(prod, "a")
    for cluster in (prod, dev):
        evaluation.evaluate_cluster(cluster)
    prod_group = next(g for g in inventory_services.groups_of(prod) if g.name == "prod")
    scores = compliance.group_scores([everyone, prod_group])
    assert scores[everyone.pk]["score"] == 100.0 and scores[everyone.pk]["clusters"] == 2
    assert scores[prod_group.pk]["score"] == 0.0 and scores[prod_group.pk]["failing_clusters"] == 1
    assert scores[None]["failing_clusters"] == 1 and scores[None]["open_violations"] == 1
    assert compliance.record_group_history() == 3
    assert GroupComplianceSnapshot.objects.filter(group=None).get().open_violations == 1


def test_policy_result_rows_follow_each_evaluation(prod, admin_user):
    """Group scores are aggregated from PolicyResult rows: they must say what the latest evaluation said."""

    group = next(g for g in inventory_services.groups_of(prod) if g.name == "prod")
    latest = services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)
    w = privileged(prod, "a")
    evaluation.evaluate_cluster(prod)

    def rows():
        return sorted(PolicyResult.objects.filter(cluster=prod).values_list("assignment__rule_key", "severity",
                                                                            "violations"))

    assert rows() == [("no-latest-tag", "medium", 0), ("no-privileged-containers", "critical", 1)]
    assert rows() == sorted((r["rule"], r["severity"], r["violations"])
                            for r in ClusterCompliance.objects.get(cluster=prod).results)
    before = dict(PolicyResult.objects.values_list("assignment__rule_key", "pk"))
    Workload.objects.filter(pk=w.pk).update(pod_template={"containers": [{"name": "main", "image": "r/a:latest"}]})
    evaluation.evaluate_cluster(prod)
    assert rows() == [("no-latest-tag", "medium", 1), ("no-privileged-containers", "critical", 0)]
    assert dict(PolicyResult.objects.values_list("assignment__rule_key", "pk")) == before, "updated in place"
    assert compliance.group_scores([group])[group.pk] == {"score": 80.0, "clusters": 1, "failing_clusters": 1,
                                                        "open_violations": 1}
    services.delete_assignment(latest, user=admin_user)
    assert rows() == [("no-privileged-containers", "critical", 0)], "an assignment takes its rows with it"
    inventory_services.update_cluster(prod, user=admin_user, environment="staging")
    evaluation.evaluate_cluster(prod)
    assert rows() == [], "a cluster that left the group has no result for its assignments"
    assert compliance.group_scores([group])[group.pk] == {"score": None, "clusters": 0, "failing_clusters": 0,
                                                        "open_violations": 0}


def test_group_scores_take_the_same_queries_for_any_number_of_groups(prod, admin_user,
                                                                    django_assert_num_queries):
    lab = make_cluster("lab-1", environment="dev")
    groups = [inventory_services.create_group(name="static-only", user=admin_user, static_members=[lab])]
    groups += [inventory_services.create_group(name=f"g{i}", selector=f"environment in (prod,dev),name!=x{i}",
                                               user=admin_user) for i in range(5)]
    for g in groups[:3]:
        services.create_assignment(group=g, rule_key="no-privileged-containers", user=admin_user)
    privileged(prod, "a")
    evaluation.evaluate_clusters([prod, lab])
    with django_assert_num_queries(3):  # the groups' tallies, the clusters' tallies, the groups' members
        scores = compliance.group_scores(groups)
    assert [scores[g.pk]["clusters"] for g in groups] == [1, 2, 2, 2, 2, 2]
    assert [scores[g.pk]["failing_clusters"] for g in groups] == [0, 1, 1, 0, 0, 0]
    assert [scores[g.pk]["score"] for g in groups] == [100.0, 50.0, 50.0, None, None, None]
    # One privileged workload on one cluster is one violation for the fleet, however many groups assign the rule
    # (three assignments reach lab-1, two reach prod: each rule is counted once per cluster).
    assert scores[None]["by_severity"] == {"critical": 1}
    assert (scores[None]["clusters"], scores[None]["failing_clusters"], scores[None]["open_violations"]) == (2, 1, 1)
    assert scores[None]["score"] == 50.0
    with django_assert_num_queries(1):  # what the overview polls: the same score, one sum over a row per cluster
        summary = compliance.fleet_summary()
    assert summary == {"score": scores[None]["score"], "open_violations": 1}


def test_a_broken_rule_does_not_hide_the_others(prod, admin_user, monkeypatch):
    from governance import rules

    privileged(prod, "a")
    group = inventory_services.groups_of(prod)[0]
    services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)
    original = rules.REGISTRY["no-latest-tag"]

    def boom(ctx, params):
        raise RuntimeError("bug")

    import dataclasses

    monkeypatch.setitem(rules.REGISTRY, "no-latest-tag", dataclasses.replace(original, check=boom))
    compliance = evaluation.evaluate_cluster(prod)
    assert {r["rule"]: r["violations"] for r in compliance.results} == {"no-privileged-containers": 1,
                                                                         "no-latest-tag": 0}


def test_an_assignment_removed_or_a_cluster_detached_while_rules_run_is_left_out(prod, admin_user, monkeypatch):
    """Deleting either locks its row first; an evaluation that read it before must not write rows for it
    (they would break the deletion's foreign keys) and must not fail the other clusters of its chunk."""
    import dataclasses

    from governance import rules
    from governance.models import PolicyAssignment, PolicyResult
    from inventory.models import Cluster

    other = make_cluster("prod-2", environment="prod")
    group = next(g for g in inventory_services.groups_of(prod) if g.name == "prod")
    latest = services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)
    for cluster in (prod, other):
        Workload.objects.create(cluster=cluster, uid=f"{cluster.name}-w", name="w", kind="Deployment",
                                namespace="shop", pod_template={"containers": [
                                    {"name": "m", "image": "r/a:latest", "privileged": True}]})
    original = rules.REGISTRY["no-latest-tag"]

    def check_then_unassign_and_detach(ctx, params):
        found = list(original.check(ctx, params))
        if PolicyAssignment.objects.filter(pk=latest.pk).exists():
            # Fresh instances, as another process would have (delete() clears the instance's pk).
            services.delete_assignment(PolicyAssignment.objects.get(pk=latest.pk), user=admin_user)
            inventory_services.detach_cluster(Cluster.objects.get(pk=other.pk), user=admin_user)
        return found

    monkeypatch.setitem(rules.REGISTRY, "no-latest-tag", dataclasses.replace(original,
                                                                            check=check_then_unassign_and_detach))
    compliances = evaluation.evaluate_clusters([prod, other])
    assert set(compliances) == {prod.pk}
    assert [r["rule"] for r in compliances[prod.pk].results] == ["no-privileged-containers"]
    assert list(Violation.objects.values_list("cluster__name", "rule_key")) == [("prod-1", "no-privileged-containers")]
    assert list(PolicyResult.objects.values_list("cluster__name", "assignment__rule_key", "violations")) == [
        ("prod-1", "no-privileged-containers", 1)]


def test_syncs_and_group_changes_queue_evaluation_after_commit(admin_user, django_capture_on_commit_callbacks,
                                                               monkeypatch):
    from django.db import transaction

    from foundation.queueing import purge_queues, take_gathered
    from inventory.models import Cluster
    from inventory.signals import clusters_changed

    purge_queues()
    queued = []
    monkeypatch.setattr(services, "queue_evaluations", lambda ids: queued.append(ids))
    cluster = make_cluster("c1", environment="prod")
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():  # what inventory.services._sync sends at the end of its transaction
            clusters_changed.send(sender=Cluster, cluster_ids=[cluster.pk], reason="sync")
            assert take_gathered("governance.tasks.evaluate_gathered") == []
    # after a sync the cluster is gathered with the others synced within a few seconds, for one task to evaluate
    assert take_gathered("governance.tasks.evaluate_gathered") == [cluster.pk]
    assert queued == []
    with django_capture_on_commit_callbacks(execute=True):
        group = inventory_services.create_group(name="g", selector="environment=prod", user=admin_user)
    assert queued[-1] == [cluster.pk]
    with django_capture_on_commit_callbacks(execute=True):
        group = inventory_services.update_group(group, selector="environment=dev", user=admin_user)
    assert queued[-1] == [cluster.pk]  # the cluster that left is re-evaluated too
    count = len(queued)
    with django_capture_on_commit_callbacks(execute=True):
        services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)
    assert len(queued) == count  # no member now: nothing to queue


def test_enforce_needs_an_admin_and_an_enforceable_rule(operator, admin_user):
    group = inventory_services.create_group(name="g", selector="name", user=admin_user)
    with pytest.raises(services.PolicyError) as excinfo:
        services.create_assignment(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE, user=operator)
    assert "Only admins" in excinfo.value.errors["mode"]
    with pytest.raises(services.PolicyError) as excinfo:
        services.create_assignment(group=group, rule_key="namespace-quota", mode=Mode.ENFORCE, user=admin_user)
    assert "cannot be enforced" in excinfo.value.errors["mode"]
    a = services.create_assignment(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE,
                                   user=admin_user)
    # An operator may tune an enforced assignment's namespaces, not switch it off or remove it.
    services.update_assignment(a, excluded_namespaces=["kube-system", "monitoring"], user=operator)
    with pytest.raises(services.PolicyError):
        services.update_assignment(a, mode=Mode.AUDIT, user=operator)
    with pytest.raises(services.PolicyError):
        services.delete_assignment(a, user=operator)


@pytest.fixture
def counted(monkeypatch):
    """Every rule's check wrapped to count the clusters it ran on (the rules themselves unchanged)."""
    import dataclasses

    from governance import rules

    runs: list[str] = []
    for key, rule in list(rules.REGISTRY.items()):
        def check(ctx, params, _original=rule.check):
            runs.append(ctx.cluster_name)
            return _original(ctx, params)
        monkeypatch.setitem(rules.REGISTRY, key, dataclasses.replace(rule, check=check))
    return runs


def test_an_unchanged_cluster_is_not_run_again_and_its_evaluation_stands_as_of_now(prod, counted, settings):
    """Issue 31: an unchanged fleet costs close to nothing. Nothing the rules read changed, so no rule runs and no
    violation is written; the stored evaluation is confirmed as of now (open violations are seen until then) and
    the trend gets its periodic point all the same."""
    settings.FLEETWEB_COMPLIANCE_HISTORY_INTERVAL = 900
    privileged(prod, "a")
    t0 = timezone.now()
    first = evaluation.evaluate_cluster(prod, now=t0)
    assert counted == ["prod-1"] and first.open_violations == 1
    counted.clear()
    again = evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))
    assert counted == [], "no rule ran"
    assert (again.score, again.open_violations, again.evaluated_at) == (0.0, 1, t0 + timedelta(minutes=1))
    stored = ClusterCompliance.objects.get(cluster=prod)
    assert (stored.evaluated_at, stored.results) == (t0 + timedelta(minutes=1), first.results)
    v = Violation.objects.select_related("cluster__compliance").get(cluster=prod)
    assert (v.last_seen, v.seen_until) == (t0, t0 + timedelta(minutes=1))
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=20))
    assert counted == []
    assert list(ComplianceSnapshot.objects.filter(cluster=prod).order_by("at").values_list("at", "failed")) == [
        (t0, 1), (t0 + timedelta(minutes=20), 1)]


def _change_workload(cluster, admin_user):
    Workload.objects.filter(cluster=cluster, name="a").update(
        pod_template={"containers": [{"name": "main", "privileged": False}]})


def _new_workload(cluster, admin_user):
    privileged(cluster, "b")


def _delete_workload(cluster, admin_user):
    Workload.objects.filter(cluster=cluster, name="a").delete()


def _namespace_labels(cluster, admin_user):
    from inventory.models import Namespace

    Namespace.objects.filter(cluster=cluster, name="shop").update(labels={"team": "other"})


def _kubelet(cluster, admin_user):
    from inventory.models import Node

    Node.objects.create(cluster=cluster, uid="n2", name="n2", kubelet_version="v1.20.0")


def _addon(cluster, admin_user):
    from inventory.models import ClusterAddon

    ClusterAddon.objects.create(cluster=cluster, addon="coredns", version="v1.8.0", namespace="kube-system",
                                workload="coredns", kind="Deployment", image="r/coredns:1.8.0")


def _version(cluster, admin_user):
    from inventory.models import Cluster

    Cluster.objects.filter(pk=cluster.pk).update(kubernetes_version="v1.20.3")


def _excluded(cluster, admin_user):
    from governance.models import PolicyAssignment

    services.update_assignment(PolicyAssignment.objects.get(rule_key="no-privileged-containers"), user=admin_user,
                               excluded_namespaces=["shop"])


def _other_rule(cluster, admin_user):
    group = next(g for g in inventory_services.groups_of(cluster) if g.name == "prod")
    services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)


@pytest.mark.parametrize("change", [_change_workload, _new_workload, _delete_workload, _namespace_labels, _kubelet,
                                    _addon, _version, _excluded, _other_rule])
def test_whatever_the_rules_read_changes_runs_them_again(prod, admin_user, counted, change):
    """Each thing a rule reads, changed by any writer (a sync, a service, a plain UPDATE), within the same
    transaction too: the rules run again and their result is stored."""
    from inventory.models import Namespace

    Namespace.objects.create(cluster=prod, uid="ns-shop", name="shop", labels={"team": "shop"})
    privileged(prod, "a")
    t0 = timezone.now()
    before = evaluation.evaluate_cluster(prod, now=t0)
    counted.clear()
    change(prod, admin_user)
    prod.refresh_from_db()  # as the evaluation task reads it
    after = evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))
    assert "prod-1" in counted, f"{change.__name__}: the rules did not run"
    assert ClusterCompliance.objects.get(cluster=prod).inputs == evaluation.inputs_of(
        [prod], evaluation.assignments_by_cluster([prod]), timezone.localdate(t0)).get(prod.pk)
    assert after.evaluated_at == t0 + timedelta(minutes=1) and before is not None


def test_a_new_day_runs_the_rules_again(prod, counted):
    """Rules read the date (a Kubernetes minor's end of support): the next day is a new input."""
    t0 = timezone.now()
    evaluation.evaluate_cluster(prod, now=t0)
    counted.clear()
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(days=1))
    assert counted == ["prod-1"]


def test_tallies_add_up_the_results_and_the_migration_fills_them_in_alike(prod, admin_user):
    """The fleet's score and counts are sums of each cluster's tallies by severity; the migration that added them
    computes the stored evaluations' tallies from their results exactly as the evaluation does."""
    import importlib

    from django.db import connection, migrations

    group = next(g for g in inventory_services.groups_of(prod) if g.name == "prod")
    services.create_assignment(group=group, rule_key="probes-set", user=admin_user)  # low
    privileged(prod, "a")
    privileged(prod, "b")
    evaluated = evaluation.evaluate_cluster(prod)
    expected = compliance.tallies(evaluated.results)
    assert (expected["critical_checks"], expected["critical_passed"], expected["critical_open"]) == (1, 0, 2)
    assert (expected["low_checks"], expected["low_passed"], expected["low_open"]) == (1, 0, 2)
    assert ClusterCompliance.objects.values(*compliance.TALLIES).get(cluster=prod) == expected
    ClusterCompliance.objects.update(**dict.fromkeys(compliance.TALLIES, 0))
    migration = importlib.import_module("governance.migrations.0012_compliance_tallies").Migration
    [fill] = [op for op in migration.operations if isinstance(op, migrations.RunSQL) and "UPDATE" in op.sql]
    with connection.cursor() as cursor:
        cursor.execute(fill.sql)
    assert ClusterCompliance.objects.values(*compliance.TALLIES).get(cluster=prod) == expected
    assert compliance_scores_agree(prod)


def compliance_scores_agree(cluster) -> bool:
    """The fleet's score from the tallies is the cluster's own score (one cluster: the same weighted share)."""
    return compliance.fleet_summary()["score"] == ClusterCompliance.objects.get(cluster=cluster).score


def test_group_tallies_follow_every_evaluation_and_a_removed_assignment_at_once(prod, admin_user):
    """A group's score is a sum of its tallies (one row per member cluster): written with each evaluation's
    results, rebuilt from the results when one of its assignments goes (before the re-evaluation it queues), and the
    same as the scores the results themselves give."""
    from governance.models import GroupTally, PolicyAssignment, PolicyResult

    group = next(g for g in inventory_services.groups_of(prod) if g.name == "prod")
    latest = services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)  # medium
    privileged(prod, "a")
    evaluation.evaluate_cluster(prod)
    tally = GroupTally.objects.get(cluster=prod, group=group)
    assert (tally.failing, tally.critical_checks, tally.critical_open, tally.medium_checks, tally.medium_passed) == (
        True, 1, 1, 1, 1)
    assert compliance.group_scores([group])[group.pk]["score"] == pytest.approx(100 * 2 / 10, abs=0.1)
    services.delete_assignment(PolicyAssignment.objects.get(pk=latest.pk), user=admin_user)
    tally = GroupTally.objects.get(cluster=prod, group=group)
    assert (tally.critical_checks, tally.medium_checks) == (1, 0), "rebuilt from the results left"
    assert list(PolicyResult.objects.values_list("assignment__rule_key", flat=True)) == ["no-privileged-containers"]
    assert compliance.group_scores([group])[group.pk] == {"score": 0.0, "clusters": 1, "failing_clusters": 1,
                                                           "open_violations": 1}
    inventory_services.update_cluster(prod, user=admin_user, environment="staging")  # leaves the group
    evaluation.evaluate_cluster(prod)
    assert not GroupTally.objects.filter(cluster=prod).exists()


def test_the_group_tallies_migration_fills_them_in_as_a_rebuild_does():
    import importlib

    from django.db import migrations

    migration = importlib.import_module("governance.migrations.0013_group_tallies").Migration
    [fill] = [op for op in migration.operations if isinstance(op, migrations.RunSQL)]
    assert fill.sql == compliance.REBUILD_GROUP_TALLIES.format(where="")


def test_a_first_evaluation_writes_every_row_as_the_orm_reads_it(prod, admin_user):
    """New violations, results, compliance and trend points are written by COPY (`bulk.copy_rows`); what the ORM
    reads back is what the evaluation found, JSON and times included."""
    privileged(prod, "a")
    privileged(prod, "b", namespace="web")
    t0 = timezone.now()
    evaluation.evaluate_cluster(prod, now=t0)
    violations = list(Violation.objects.filter(cluster=prod).order_by("object_name").values_list(
        "object_name", "namespace", "rule_key", "severity", "first_seen", "last_seen", "resolved_at", "times_reopened"))
    assert violations == [("a", "shop", "no-privileged-containers", "critical", t0, t0, None, 0),
                          ("b", "web", "no-privileged-containers", "critical", t0, t0, None, 0)]
    stored = ClusterCompliance.objects.get(cluster=prod)
    assert (stored.evaluated_at, stored.open_violations, stored.critical_checks, stored.critical_open) == (t0, 2, 1, 2)
    assert [(r["rule"], r["violations"]) for r in stored.results] == [("no-privileged-containers", 2)]
    point = ComplianceSnapshot.objects.get(cluster=prod)
    assert (point.at, point.by_rule, point.failed_by_severity) == (
        t0, {"no-privileged-containers": {"severity": "critical", "passed": False, "violations": 2}}, {"critical": 1})
    # Evaluated again with one more: the stored rows are updated in place, the new violation added.
    privileged(prod, "c")
    evaluation.evaluate_cluster(prod, now=t0 + timedelta(minutes=1))
    assert Violation.objects.filter(cluster=prod, resolved_at=None).count() == 3
    assert ClusterCompliance.objects.get(cluster=prod).open_violations == 3
    assert PolicyResult.objects.get(cluster=prod).violations == 3


def test_the_garbage_collector_is_off_only_while_a_chunk_is_evaluated(prod, monkeypatch):
    seen = []
    write = evaluation._write_violations

    def recording(*args, **kwargs):
        seen.append(gc.isenabled())
        return write(*args, **kwargs)

    monkeypatch.setattr(evaluation, "_write_violations", recording)
    privileged(prod, "a")
    assert gc.isenabled()
    evaluation.evaluate_cluster(prod)
    assert (seen, gc.isenabled()) == ([False], True)

    def failing(*args, **kwargs):
        raise RuntimeError("a bug in the middle of a chunk")

    monkeypatch.setattr(evaluation, "_write_violations", failing)
    privileged(prod, "b")
    with pytest.raises(RuntimeError):
        evaluation.evaluate_cluster(prod)
    assert gc.isenabled(), "a chunk that fails turns it on again"
    gc.disable()
    try:
        monkeypatch.setattr(evaluation, "_write_violations", write)
        privileged(prod, "c")
        evaluation.evaluate_cluster(prod)
        assert not gc.isenabled(), "a process that had it off keeps it off"
    finally:
        gc.enable()
