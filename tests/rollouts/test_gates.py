"""Gates (rollouts/gates.py): a registered entry gate holds a stage until it passes and says why; the approval
gate applies the prod rule at start time; the soak gate says when to look again. Copy these for a new gate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from foundation.models import AuditEvent
from inventory.models import Cluster
from rollouts import gates
from rollouts.choices import RolloutState, StageState
from rollouts.models import Stage
from tests.rollouts.fakes import run, start

pytestmark = pytest.mark.django_db


class ChangeFreeze:
    """An example entry gate: no stage starts while a freeze is on."""

    name = "freeze"

    def __init__(self, until):
        self.until = until

    def check(self, stage, now):
        if now < self.until:
            return gates.Verdict(False, recheck_at=self.until, message="change freeze")
        return gates.Verdict(True, evidence={"freeze": "over"})


@pytest.fixture
def freeze(monkeypatch):
    gate = ChangeFreeze(timezone.now() + timedelta(hours=1))
    monkeypatch.setattr(gates, "ENTRY", list(gates.ENTRY))
    gates.register(gate, at="entry")
    return gate


def test_a_registered_entry_gate_holds_the_stage_and_schedules_the_recheck(fleet, operator, freeze):
    fleet.ready.add("b-1")
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]))
    stage = Stage.objects.get(rollout=rollout)
    assert stage.state == StageState.PENDING and fleet.pushed == [], "nothing applied while the gate holds"
    assert rollout.next_step_at == freeze.until
    freeze.until = timezone.now() - timedelta(seconds=1)
    rollout = run(rollout, 10)
    assert rollout.state == RolloutState.SUCCEEDED
    assert fleet.applied_to(1) == ["b-1"]


def test_gates_combine_into_one_verdict_with_the_earliest_recheck():
    soon, later = timezone.now() + timedelta(minutes=1), timezone.now() + timedelta(minutes=5)

    class Waiting:
        def __init__(self, name, at):
            self.name, self.at = name, at

        def check(self, stage, now):
            return gates.Verdict(False, recheck_at=self.at, message=f"{self.name} waits")

    verdict = gates._all([Waiting("a", later), Waiting("b", soon)], stage=None, now=timezone.now())
    assert (verdict.passed, verdict.recheck_at, verdict.message) == (False, soon, "a waits; b waits")
    assert gates._all([], stage=None, now=timezone.now()).passed


def test_the_approval_gate_requires_one_approval_when_a_cluster_became_prod_after_the_rollout_was_made(
        fleet, operator):
    rollout = start(operator, [{"name": "ring-b", "selector": "ring=b"}])
    stage = Stage.objects.get(rollout=rollout)
    assert stage.approvals_required == 0
    Cluster.objects.filter(name="b-1").update(environment="prod")
    verdict = gates.ApprovalGate().check(stage, timezone.now())
    assert not verdict.passed and verdict.message == "0 of 1 approval(s)" and verdict.recheck_at is None
    stage.refresh_from_db()
    assert stage.approvals_required == 1 and "reaches prod cluster(s) b-1" in stage.message
    run(rollout)
    assert Stage.objects.get(pk=stage.pk).state == StageState.AWAITING_APPROVAL and fleet.pushed == []


def test_the_soak_gate_says_until_when_and_the_success_records_the_soak(fleet, operator):
    fleet.ready.add("b-1")
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b", "soak_time": 600}]))
    stage = Stage.objects.get(rollout=rollout)
    assert stage.state == StageState.SOAKING
    verdict = gates.SoakGate().check(stage, timezone.now())
    assert not verdict.passed and verdict.recheck_at == stage.soak_until
    Stage.objects.filter(pk=stage.pk).update(soak_until=timezone.now() - timedelta(seconds=1))
    assert run(rollout).state == RolloutState.SUCCEEDED
    event = AuditEvent.objects.get(action="rollout.stage_succeeded")
    assert event.after == {"soak_seconds": 600}
