"""Approval rules (one service for page and API), stage validation, and the engine's gate."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml
from django.utils import timezone

from foundation.models import AuditEvent
from rollouts import approvals, engine, services
from rollouts.choices import RolloutState, StageState
from rollouts.models import Approval, Rollout
from tests.builders import make_cluster, make_user

pytestmark = pytest.mark.django_db

MANIFESTS = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                            "data": {"a": "1"}})


@pytest.fixture
def rollout(operator):
    make_cluster("dev-1", environment="dev")
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    return services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "canary", "selector": "environment=dev"},
        {"name": "production", "selector": "environment=prod", "approvals_required": 2}])


def awaiting(rollout) -> object:
    Rollout.objects.filter(pk=rollout.pk).update(state=RolloutState.RUNNING)
    stage = rollout.stages.get(index=1)
    stage.state = StageState.AWAITING_APPROVAL
    stage.save()
    return stage


def test_prod_stages_always_need_an_approval(operator):
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "all", "selector": "name", "approvals_required": 0}])
    stage = rollout.stages.get()
    assert stage.approvals_required == 1 and "reaches prod cluster(s) prod-1" in stage.message


@pytest.mark.parametrize(("stages", "field", "expected"), [
    ([{"name": "x", "selector": "environment=qa"}], "stages[0].selector",
     "stage 1 'x' (selector 'environment=qa') matches no cluster"),
    ([{"name": "a", "selector": "name"}, {"name": "b", "selector": "environment=dev"}], "stages[1].selector",
     "cluster dev-1 is in stage 'a' and in stage 'b'"),
    ([{"name": "x", "group": "nope"}], "stages[0].group", "no group named 'nope'"),
])
def test_stage_resolution_is_refused_with_the_reason(operator, stages, field, expected):
    make_cluster("dev-1", environment="dev")
    app = services.create_application(name="web", namespace="web", manifests_text=MANIFESTS, user=operator)
    with pytest.raises(services.RolloutError) as excinfo:
        services.create_rollout(revision=app.latest_revision, user=operator, stages=stages)
    assert expected in excinfo.value.errors[field]
    assert not Rollout.objects.exists()


def test_stage_fields_are_validated_by_name():
    with pytest.raises(services.RolloutError) as excinfo:
        services.clean_stages([{"name": "a", "group": "g", "selector": "x", "approvals_required": 4,
                                "max_parallel": 0, "typo": 1}, "nope"])
    assert excinfo.value.errors == {"stages[0]": "stage 1 'a': unknown field 'typo' (known: name, group, selector, "
                                                 "approvals_required, max_parallel, health_deadline, soak_time, "
                                                 "failures_allowed, min_success_ratio)",
                                    "stages[1]": "stage 2: must be a mapping (name: …, selector: …), not str"}
    with pytest.raises(services.RolloutError) as excinfo:
        services.clean_stages([{"name": "a", "group": "g", "selector": "x", "approvals_required": 4,
                                "max_parallel": 0}])
    assert set(excinfo.value.errors) == {"stages[0].group", "stages[0].approvals_required",
                                         "stages[0].max_parallel"}


def test_stage_errors_count_from_one_suggest_the_field_and_require_a_unique_name():
    with pytest.raises(services.RolloutError) as excinfo:
        services.clean_stages([{"name": "canary", "selector": "ring=a", "max_paralel": 2},
                               {"name": "", "selector": "ring=b"},
                               {"name": "canary", "selector": "ring=c"}])
    assert excinfo.value.errors == {
        "stages[0]": "stage 1 'canary': unknown field 'max_paralel' (did you mean 'max_parallel'?)",
        "stages[1].name": "stage 2: a name is required (approvers and the timeline show it)",
        "stages[2].name": "stage 3 'canary': the name is already used by stage 1",
    }


def test_only_approvers_who_did_not_request_it_may_approve(rollout, operator, approver):
    stage = awaiting(rollout)
    requester_approver = make_user("ria", "operator", "approver")
    Rollout.objects.filter(pk=rollout.pk).update(requested_by=requester_approver)
    stage.refresh_from_db()
    for user, reason in ((operator, "approver role"), (requester_approver, "someone else must approve")):
        with pytest.raises(services.RolloutError) as excinfo:
            approvals.approve_stage(stage, user=user)
        assert reason in str(excinfo.value) and excinfo.value.status == 403
    approvals.approve_stage(stage, user=approver, comment="ok")
    with pytest.raises(services.RolloutError) as excinfo:
        approvals.approve_stage(stage, user=approver)
    assert excinfo.value.status == 409 and "already decided" in str(excinfo.value)
    assert AuditEvent.objects.filter(action="rollout.approve", actor=approver).exists()


def test_n_distinct_approvers_open_the_gate(rollout, approver, operator):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    engine.step_once(rollout.pk)
    assert rollout.stages.get(index=1).state == StageState.AWAITING_APPROVAL, "one of two approvals"
    # The stage's canary must not block this unit test: only the gate of stage 2 is under test.
    rollout.stages.filter(index=0).update(state=StageState.SUCCEEDED)
    approvals.approve_stage(stage, user=make_user("second", "approver"))
    assert len(approvals.valid_approvals(stage)) == 2
    engine.step_once(rollout.pk)
    stage.refresh_from_db()
    assert stage.state == StageState.APPLYING and stage.approved_at is not None


def test_expired_approvals_do_not_count(rollout, approver, settings):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    assert len(approvals.valid_approvals(stage)) == 1
    later = timezone.now() + timedelta(seconds=settings.FLEETWEB_APPROVAL_TTL + 1)
    assert approvals.valid_approvals(stage, now=later) == []


def test_a_new_revision_voids_pending_approvals(rollout, approver, operator):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    services.create_revision(rollout.application, manifests_text=MANIFESTS.replace("'1'", "'2'"), user=operator)
    approval = Approval.objects.get()
    assert approval.voided_at is not None and "revision 2" in approval.void_reason
    assert approvals.valid_approvals(stage) == []
    approvals.approve_stage(stage, user=approver)  # the same approver may approve again, knowingly
    assert len(approvals.valid_approvals(stage)) == 1


def test_an_approver_who_lost_the_role_no_longer_counts(rollout, approver):
    stage = awaiting(rollout)
    approvals.approve_stage(stage, user=approver)
    approver.groups.clear()
    del approver._fleetweb_roles
    assert approvals.valid_approvals(stage) == []


def test_rejection_stops_the_rollout_and_needs_a_reason(rollout, approver):
    stage = awaiting(rollout)
    with pytest.raises(services.RolloutError):
        approvals.reject_stage(stage, user=approver, comment=" ")
    approvals.reject_stage(stage, user=approver, comment="not during the sale")
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.FAILED and "not during the sale" in rollout.message
    assert rollout.stages.get(index=1).state == StageState.REJECTED
    assert not engine.step_once(rollout.pk)


def test_pause_resume_abort_are_conditional(rollout, operator):
    services.pause_rollout(rollout, user=operator)
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PAUSED
    assert not engine.step_once(rollout.pk), "a paused rollout does not move"
    with pytest.raises(services.RolloutError) as excinfo:
        services.pause_rollout(rollout, user=operator)
    assert excinfo.value.status == 409
    services.resume_rollout(rollout, user=operator)
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PENDING
    services.abort_rollout(rollout, user=operator)
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED
    assert set(rollout.stages.values_list("state", flat=True)) == {StageState.ABORTED}
    with pytest.raises(services.RolloutError) as excinfo:
        services.rollback_rollout(rollout, user=operator)
    assert "nothing to roll back" in str(excinfo.value)
    assert list(AuditEvent.objects.filter(action__in=["rollout.pause", "rollout.resume", "rollout.abort"])
                .order_by("id").values_list("action", flat=True)) == ["rollout.pause", "rollout.resume",
                                                                      "rollout.abort"]


def test_pending_approvals_list_and_badge(rollout, approver, client):
    awaiting(rollout)
    assert [s.name for s in approvals.pending_approvals_for(approver)] == ["production"]
    client.force_login(approver)
    page = client.get("/rollouts/approvals/").content.decode()
    assert 'id="approvals-badge">1<' in page and f'data-rollout="{rollout.pk}"' in page
    approvals.approve_stage(rollout.stages.get(index=1), user=approver)
    assert list(approvals.pending_approvals_for(approver)) == []


def test_the_rejection_webhook_announces_the_failed_state(rollout, approver, settings, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    """The webhook of a rejection carried the rollout's state from before the rejection ("running")."""
    from rollouts import tasks

    settings.FLEETWEB_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    sent = []
    monkeypatch.setattr(tasks.send_webhook, "delay", lambda payload: sent.append(payload))
    stage = awaiting(rollout)
    stage.rollout.refresh_from_db()
    assert stage.rollout.state == RolloutState.RUNNING
    with django_capture_on_commit_callbacks(execute=True):
        approvals.reject_stage(stage, user=approver, comment="not during the sale")
    assert [(p["event"], p["state"], p["stage"]["state"]) for p in sent] == [
        ("rollout.failed", RolloutState.FAILED, StageState.REJECTED)]
