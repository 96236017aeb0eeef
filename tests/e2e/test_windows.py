"""End to end on real members: a rollout whose prod stage meets a freeze waits, says when it opens, and goes when the
freeze ends (a short freeze); a cluster marked busy holds it even after an admin's override; automatic drift
correction waits for the window too. Real worker, real beat."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from kubernetes import client as k8s

from foundation.models import AuditEvent
from rollouts import calendar, services
from rollouts.choices import DriftState, RolloutState, StageState
from rollouts.models import Drift, Rollout
from tests.conftest import wait_for
from tests.e2e.test_drift import INTERVAL, NAMESPACE, correcting_deployment
from tests.e2e.test_drift import newest as newest  # noqa: F401 (the fixture, shared)
from tests.e2e.test_rollouts import app_yaml, live_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FREEZE_SECONDS = 25


@pytest.fixture
def beat_env() -> dict:
    return {"FLEETWEB_DRIFT_INTERVAL": str(INTERVAL)}


def test_a_prod_stage_waits_for_a_freeze_says_when_it_opens_and_goes_when_it_ends(
        fleet, celery_worker, celery_beat, api_as, operator, approver, admin_user):
    members = fleet["members"]
    ends = (timezone.now() + timedelta(seconds=FREEZE_SECONDS)).replace(microsecond=0)
    made = api_as(admin_user).post("/api/v1/change-windows/", {
        "name": "prod-freeze", "kind": "deny", "reason": "quarter close", "zone": "Asia/Shanghai",
        "starts_at": (timezone.now() - timedelta(hours=1)).isoformat(), "ends_at": ends.isoformat(),
        "environments": ["prod"]}, format="json")
    assert made.status_code == 201, made.content
    app = services.create_application(name="frozen-web", namespace="frozen-web", manifests_text=app_yaml("1.0"),
                                      user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "staging", "group": "staging", "health_deadline": 90},
        {"name": "production", "group": "prod", "health_deadline": 90}])
    wait_for(lambda: rollout.stages.get(index=1).state == StageState.AWAITING_APPROVAL, timeout=120,
             what="the prod stage to await approval")
    assert api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {}, format="json").status_code == 200

    def held():
        answer = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/")
        assert answer.status_code == 200, answer.content
        stages = answer.json()["stage_list"]
        return stages[1]["window_hold"]
    hold = wait_for(lambda: held().get("windows"), timeout=30, what="the stage to say the freeze holds it") and held()
    assert hold == {"clusters": ["aws-eu-west"], "busy": [], "windows": ["prod-freeze"], "opens_at": ends.isoformat()}
    page = api_as(operator).get(f"/api/v1/rollouts/{rollout.pk}/")
    assert page.json()["stage_list"][1]["state"] == StageState.AWAITING_APPROVAL
    assert live_deployment(members["aws-eu-west"], "frozen-web") is None, "nothing reaches prod while frozen"
    assert live_deployment(members["ack-hangzhou"], "frozen-web") is not None, "staging was not frozen"

    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED,
             timeout=FREEZE_SECONDS + 120, what="the rollout to go once the freeze ended")
    prod = rollout.stages.get(index=1)
    assert prod.started_at >= ends, "the stage started when the freeze ended, not before"
    assert prod.window_hold == {}
    assert live_deployment(members["aws-eu-west"], "frozen-web") is not None


def test_automatic_drift_correction_waits_for_the_window(newest, celery_beat, admin_user, settings):  # noqa: F811
    settings.FLEETWEB_DRIFT_INTERVAL = INTERVAL
    deployed = correcting_deployment(newest, "drift-frozen", admin_user)
    ends = timezone.now() + timedelta(seconds=FREEZE_SECONDS)
    calendar.save_window(user=admin_user, name="drift-freeze", kind="deny", reason="incident review", zone="UTC",
                         selector="name=drift-frozen", starts_at=(timezone.now() - timedelta(minutes=1)).isoformat(),
                         ends_at=ends.isoformat())
    with newest.admin_api() as api:
        k8s.CoreV1Api(api).patch_namespaced_config_map("settings", NAMESPACE, {"data": {"level": "debug"}},
                                                       field_manager="kubectl-edit")

    def level():
        with newest.admin_api() as api:
            return k8s.CoreV1Api(api).read_namespaced_config_map("settings", NAMESPACE).data["level"]
    wait_for(lambda: Drift.objects.get(deployed=deployed).state == DriftState.DRIFTED, timeout=4 * INTERVAL,
             what="the drift to be found")
    # Drift checks keep running every INTERVAL while frozen; none of them corrects.
    checked = Drift.objects.get(deployed=deployed).checked_at
    while timezone.now() < ends - timedelta(seconds=2):
        assert level() == "debug", "corrected during the freeze"
        assert not AuditEvent.objects.filter(action="application.reapply").exists()
        time.sleep(1)
    assert Drift.objects.get(deployed=deployed).checked_at > checked, "drift was checked again while frozen"
    wait_for(lambda: level() == "info" and Drift.objects.get(deployed=deployed).state == DriftState.IN_SYNC,
             timeout=6 * INTERVAL + 30, what="the correction once the freeze ended")
    event = AuditEvent.objects.get(action="application.reapply", message="auto-correct")
    assert event.at >= ends


def test_an_approval_that_expires_while_a_freeze_holds_the_stage_is_asked_for_again(
        fleet, celery_worker, celery_beat, api_as, operator, approver, admin_user):
    """The application's approvals last a minute; the prod stage is approved at once but a freeze holds it longer:
    the approval is voided as expired, the stage asks again, and only a new approval lets it reach the member."""
    members = fleet["members"]
    app = services.create_application(name="stale-web", namespace="stale-web", manifests_text=app_yaml("1.0"),
                                      user=operator)
    services.update_application(app, user=operator, approval_ttl=60)
    ends = timezone.now() + timedelta(seconds=80)
    calendar.save_window(user=admin_user, name="prod-hold", kind="deny", reason="release train", zone="UTC",
                         environments=["prod"], starts_at=(timezone.now() - timedelta(minutes=1)).isoformat(),
                         ends_at=ends.isoformat())
    rollout = services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "production", "group": "prod", "health_deadline": 90}])
    wait_for(lambda: rollout.stages.get(index=0).state == StageState.AWAITING_APPROVAL, timeout=60,
             what="the prod stage to await approval")
    answer = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {}, format="json")
    assert answer.status_code == 200, answer.content
    first = rollout.stages.get(index=0).approvals.get()
    assert 55 <= (first.expires_at - first.created_at).total_seconds() <= 60
    wait_for(lambda: rollout.stages.get(index=0).approvals.get(pk=first.pk).voided_at is not None, timeout=90,
             what="the approval to be voided as expired")
    first.refresh_from_db()
    assert first.void_reason.startswith("expired at") and "application stale-web" in first.void_reason
    stage = rollout.stages.get(index=0)
    assert "void: expired" in stage.message and stage.state == StageState.AWAITING_APPROVAL
    wait_for(lambda: timezone.now() > ends + timedelta(seconds=8), timeout=120, interval=1,
             what="the freeze to be over")
    assert rollout.stages.get(index=0).state == StageState.AWAITING_APPROVAL, "no approval counts: it asks again"
    assert live_deployment(members["aws-eu-west"], "stale-web") is None
    assert api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {}, format="json").status_code == 200
    wait_for(lambda: Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED, timeout=120,
             what="the rollout to go with the new approval")
    assert live_deployment(members["aws-eu-west"], "stale-web") is not None
