"""Approvals that expire per environment (and per application, shorter only) and approvals with conditions checked
when the stage starts: an expired approval or a failed condition voids it with the reason, and the stage asks its
approvers again (rollouts/approvals.py, gates.ApprovalGate)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from foundation.errors import ServiceError
from foundation.models import AuditEvent
from governance.models import PolicyAssignment, Violation
from inventory import services as inventory_services
from inventory.models import Cluster
from rollouts import approvals, calendar, gates, services
from rollouts.choices import RolloutState, StageState
from rollouts.models import Approval, Rollout
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db

MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


@pytest.fixture
def rollout(operator, settings):
    settings.FLEETWEB_APPROVAL_TTL_BY_ENVIRONMENT = {"prod": 4 * 3600}
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    return services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "canary", "selector": "environment=dev"},
        {"name": "production", "selector": "environment=prod", "approvals_required": 1}])


def awaiting(rollout, *, canary_done_ago: timedelta | None = timedelta(hours=1)):
    Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.RUNNING)
    if canary_done_ago is not None:
        rollout.stages.filter(index=0).update(state=StageState.SUCCEEDED, finished_at=timezone.now() - canary_done_ago)
        rollout.stages.get(index=0).targets.update(state="succeeded")
    stage = rollout.stages.get(index=1)
    stage.state = StageState.AWAITING_APPROVAL
    stage.save()
    return stage


def test_an_approval_lasts_what_its_clusters_environment_says_and_an_application_may_only_shorten_it(
        rollout, approver, operator):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    first = Approval.objects.get()
    assert timedelta(hours=3, minutes=59) < first.expires_at - first.created_at <= timedelta(hours=4)
    event = AuditEvent.objects.get(action="rollout.approve")
    assert (event.after["lasts_seconds"], event.after["lasts_because"]) == (14400, "prod clusters")
    canary = rollout.stages.get(index=0)
    assert approvals.approval_ttl(canary) == (timedelta(days=1), "default"), "dev has none of its own"
    services.update_application(rollout.application, user=operator, approval_ttl=31 * 86400)
    assert approvals.approval_ttl(stage)[0] == timedelta(hours=4), "an application cannot lengthen it"
    services.update_application(rollout.application, user=operator, approval_ttl=600)
    stage.rollout.application.refresh_from_db()
    assert approvals.approval_ttl(stage) == (timedelta(minutes=10), "application web")
    with pytest.raises(ServiceError):
        services.update_application(rollout.application, user=operator, approval_ttl=5)


def test_an_expired_approval_is_voided_with_the_reason_and_the_stage_asks_again(rollout, approver):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    later = timezone.now() + timedelta(hours=4, seconds=1)
    verdict = gates.ApprovalGate().check(stage, later)
    assert not verdict.passed and verdict.message == "0 of 1 approval(s)"
    approval = Approval.objects.get()
    assert approval.voided_at == later
    assert "before the stage started (approvals of this stage last 4 h: prod clusters)" in approval.void_reason
    stage.refresh_from_db()
    assert stage.state == StageState.AWAITING_APPROVAL
    assert "the approval by anna-approver is void: expired" in stage.message
    approvals.approve_stage(stage, user=approver)  # asked again, the same approver may approve again
    assert len(approvals.valid_approvals(stage)) == 1


def test_no_critical_violation_fails_and_voids_the_approval(rollout, approver, admin_user):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver, conditions={"no_critical": True})
    prod = Cluster.objects.get(name="prod-1")
    group = inventory_services.create_group(name="prod", selector="environment=prod", user=admin_user)
    assignment = PolicyAssignment.objects.create(group=group, rule_key="no-privileged-containers")
    now = timezone.now()
    Violation.objects.create(assignment=assignment, cluster=prod, rule_key="no-privileged-containers",
                             severity="critical", object_kind="Deployment", namespace="shop", object_name="db",
                             message="privileged", first_seen=now, last_seen=now)
    verdict = gates.ApprovalGate().check(stage, timezone.now())
    assert not verdict.passed
    approval = Approval.objects.get()
    assert approval.void_reason == "its condition failed: a critical violation is open on prod-1"
    Violation.objects.update(resolved_at=timezone.now())
    approvals.approve_stage(stage, user=approver, conditions={"no_critical": True})
    assert gates.ApprovalGate().check(stage, timezone.now()).passed


def test_earlier_stages_must_have_been_healthy_long_enough_before_the_stage_starts(rollout, approver):
    stage = awaiting(rollout, canary_done_ago=timedelta(minutes=10))
    approvals.approve_stage(stage, user=approver, conditions={"healthy_minutes": 30})
    now = timezone.now()
    verdict = gates.ApprovalGate().check(stage, now)
    canary = rollout.stages.get(index=0)
    assert not verdict.passed and verdict.recheck_at == canary.finished_at + timedelta(minutes=30)
    assert "only once earlier stages were healthy for 30 min" in verdict.message
    assert Approval.objects.get().voided_at is None, "waiting is not failing"
    assert gates.ApprovalGate().check(stage, canary.finished_at + timedelta(minutes=30, seconds=1)).passed
    Cluster.objects.filter(name="dev-1").update(status="unreachable")
    verdict = gates.ApprovalGate().check(stage, canary.finished_at + timedelta(minutes=31))
    assert not verdict.passed
    assert Approval.objects.get().void_reason == "its condition failed: stage canary did not stay healthy: dev-1"


def test_inside_an_allow_window_fails_without_one_and_waits_for_one_that_is_closed(rollout, approver, admin_user):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver, conditions={"in_window": True})
    assert not gates.ApprovalGate().check(stage, timezone.now()).passed
    assert Approval.objects.get().void_reason == "its condition failed: no allow window holds prod-1"
    opens = timezone.now() + timedelta(hours=2)
    calendar.save_window(user=admin_user, name="prod-maintenance", kind="allow", reason="maintenance", zone="UTC",
                         environments=["prod"], starts_at=opens.isoformat(),
                         ends_at=(opens + timedelta(hours=1)).isoformat())
    approvals.approve_stage(stage, user=approver, conditions={"in_window": True})
    verdict = gates.ApprovalGate().check(stage, timezone.now())
    assert not verdict.passed and verdict.recheck_at == opens
    assert gates.ApprovalGate().check(stage, opens + timedelta(minutes=1)).passed


@pytest.mark.parametrize("conditions", [{"in_window": "yes"}, {"healthy_minutes": -1}, {"healthy_minutes": 10081},
                                        {"sunny": True}, ["no_critical"]])
def test_approver_cannot_give_conditions_that_cannot_be_checked(rollout, approver, conditions):
    stage = awaiting(rollout)
    with pytest.raises(ServiceError) as refused:
        approvals.approve_stage(stage, user=approver, conditions=conditions)
    assert "conditions" in refused.value.errors
    assert not Approval.objects.exists() and not AuditEvent.objects.filter(action="rollout.approve").exists()


def test_conditions_over_the_api_are_recorded_and_shown(rollout, approver, api_as):
    awaiting(rollout)
    answer = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/",
                                   {"conditions": {"no_critical": True, "healthy_minutes": 15}}, format="json")
    assert answer.status_code == 200, answer.content
    assert Approval.objects.get().conditions == {"no_critical": True, "healthy_minutes": 15}
    shown = api_as(approver).get(f"/api/v1/rollouts/{rollout.pk}/").json()["stage_list"][1]["approvals"]
    assert shown[0]["conditions"] == {"no_critical": True, "healthy_minutes": 15}
    bad = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/",
                                {"conditions": {"sunny": True}}, format="json")
    assert bad.status_code in (400, 409) and Approval.objects.count() == 1
