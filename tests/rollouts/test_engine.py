"""The rollout engine's rules, step by step, with a fake fleet in place of the member clusters (push and read-back
are the engine's only calls to a cluster; everything else, database and locks included, is real): parallelism,
failure budget, health deadline, soak, rollback, pause and abort in the middle of a stage. The same flows run
against real members in tests/e2e/test_rollouts.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from rollouts import services
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Rollout, Stage, Target
from tests.rollouts.fakes import run, start, states

pytestmark = pytest.mark.django_db


def test_no_more_clusters_in_flight_than_max_parallel(fleet, operator):
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 2}])
    run(rollout)
    assert fleet.applied_to(1) == ["a-1", "a-2"], "two at a time"
    assert states(rollout)["a-3"] == TargetState.PENDING
    fleet.ready |= {"a-1", "a-2"}
    run(rollout)
    assert fleet.applied_to(1) == ["a-1", "a-2", "a-3"]
    fleet.ready.add("a-3")
    assert run(rollout).state == RolloutState.SUCCEEDED


def test_failures_within_the_budget_let_the_stage_go_on(fleet, operator):
    fleet.failing["a-2"] = "the API server said no"
    fleet.ready |= {"a-1", "a-3", "b-1"}
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 3, "failures_allowed": 1},
                               {"name": "ring-b", "selector": "ring=b"}])
    rollout = run(rollout, 12)
    assert rollout.state == RolloutState.SUCCEEDED
    assert states(rollout)["a-2"] == TargetState.FAILED
    assert "apply failed: the API server said no" in Target.objects.get(cluster__name="a-2").message
    assert fleet.applied_to(1) == ["a-1", "a-3", "b-1"]


def test_failures_beyond_the_budget_fail_the_stage_and_stop_the_rollout(fleet, operator):
    fleet.failing.update({"a-1": "refused", "a-2": "refused"})
    fleet.ready.add("a-3")
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 3, "failures_allowed": 1},
                               {"name": "ring-b", "selector": "ring=b"}])
    rollout = run(rollout, 12)
    assert rollout.state == RolloutState.FAILED
    stage = rollout.stages.get(index=0)
    assert stage.state == StageState.FAILED and "failed on a-1, a-2" in stage.message
    assert rollout.stages.get(index=1).state == StageState.PENDING
    assert "b-1" not in fleet.applied_to(1), "the next stage never ran"


def test_a_target_not_ready_by_its_health_deadline_fails(fleet, operator):
    rollout = start(operator, [{"name": "ring-b", "selector": "ring=b", "health_deadline": 60}])
    run(rollout)
    target = Target.objects.get(stage__rollout=rollout)
    assert target.state == TargetState.VERIFYING and "0/2 available" in target.message
    Target.objects.filter(pk=target.pk).update(deadline=timezone.now() - timedelta(seconds=1))  # a minute later
    rollout = run(rollout)
    target.refresh_from_db()
    assert target.state == TargetState.FAILED and "not ready within the health deadline" in target.message
    assert rollout.state == RolloutState.FAILED


def test_a_stage_soaks_before_the_next_one_starts(fleet, operator):
    fleet.ready |= {"a-1", "a-2", "a-3", "b-1"}
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 3, "soak_time": 600},
                               {"name": "ring-b", "selector": "ring=b"}])
    run(rollout, 12)
    stage = Stage.objects.get(rollout=rollout, index=0)
    assert stage.state == StageState.SOAKING and stage.soak_until > timezone.now() + timedelta(seconds=500)
    assert "b-1" not in fleet.applied_to(1)
    Stage.objects.filter(pk=stage.pk).update(soak_until=timezone.now() - timedelta(seconds=1))  # ten minutes later
    assert run(rollout, 12).state == RolloutState.SUCCEEDED
    assert fleet.applied_to(1) == ["a-1", "a-2", "a-3", "b-1"]


def test_rollback_reapplies_the_previous_revision_where_the_new_one_went(fleet, operator):
    fleet.ready |= {"b-1"}
    first = start(operator, [{"name": "ring-b", "selector": "ring=b"}])
    assert run(first).state == RolloutState.SUCCEEDED
    fleet.ready.clear()
    second = start(operator, [{"name": "ring-b", "selector": "ring=b", "health_deadline": 60}], tag="2.0",
                   app=first.application)
    run(second)
    Target.objects.filter(stage__rollout=second).update(deadline=timezone.now() - timedelta(seconds=1))
    assert run(second).state == RolloutState.FAILED
    services.rollback_rollout(Rollout.objects.get(pk=second.pk), user=operator)
    fleet.ready.add("b-1")
    second = run(second)
    assert second.state == RolloutState.ROLLED_BACK
    assert fleet.pushed == [("b-1", "1"), ("b-1", "2"), ("b-1", "1")]
    assert states(second)["b-1"] == TargetState.ROLLED_BACK


def test_pause_holds_a_stage_in_the_middle_and_resume_goes_on(fleet, operator):
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 1}])
    run(rollout)
    assert fleet.applied_to(1) == ["a-1"]
    services.pause_rollout(Rollout.objects.get(pk=rollout.pk), user=operator)
    fleet.ready |= {"a-1", "a-2", "a-3"}
    run(rollout)
    assert fleet.applied_to(1) == ["a-1"], "nothing applied while paused"
    services.resume_rollout(Rollout.objects.get(pk=rollout.pk), user=operator)
    assert run(rollout, 12).state == RolloutState.SUCCEEDED
    assert fleet.applied_to(1) == ["a-1", "a-2", "a-3"]


def test_abort_in_the_middle_of_a_stage_touches_no_further_cluster(fleet, operator):
    rollout = start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 1}])
    run(rollout)
    services.abort_rollout(Rollout.objects.get(pk=rollout.pk), user=operator)
    fleet.ready |= {"a-1", "a-2", "a-3"}
    rollout = run(rollout)
    assert rollout.state == RolloutState.ABORTED
    assert fleet.applied_to(1) == ["a-1"]
