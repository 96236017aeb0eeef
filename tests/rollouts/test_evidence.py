"""What the approver is shown: per cluster the change against what Fleetweb last applied there, and the evidence
of the earlier stages."""

from __future__ import annotations

import pytest

from rollouts import evidence
from rollouts.choices import RolloutState, StageState
from tests.rollouts.fakes import run, start

pytestmark = pytest.mark.django_db


def test_the_change_is_a_diff_against_what_each_cluster_runs_grouped_by_identical_change(fleet, operator,
                                                                                        client, approver):
    fleet.ready |= {"a-1", "a-2", "a-3", "b-1"}
    first = run(start(operator, [{"name": "ring-a", "selector": "ring=a", "max_parallel": 3}], tag="1.0"), 12)
    assert first.state == RolloutState.SUCCEEDED
    second = start(operator, [{"name": "ring-b", "selector": "ring=b"},
                              {"name": "ring-a", "selector": "ring=a", "max_parallel": 3, "approvals_required": 1}],
                   tag="2.0", app=first.application)
    second = run(second, 12)
    stage = second.stages.get(index=1)
    assert stage.state == StageState.AWAITING_APPROVAL
    changes = evidence.stage_changes(stage)
    assert [(c["clusters"], c["running"]) for c in changes] == [(["a-1", "a-2", "a-3"], "r1")]
    assert "-" in changes[0]["diff"] and "registry.example.com/web:1.0" in changes[0]["diff"]
    assert "+" in changes[0]["diff"] and "registry.example.com/web:2.0" in changes[0]["diff"]

    earlier = evidence.earlier_stages(second, stage)
    assert [(e["name"], e["clusters"], e["succeeded"], e["failed"]) for e in earlier] == [
        ("ring-b", ["b-1"], True, [])]
    assert earlier[0]["healthy_since"] is not None

    client.force_login(approver)
    page = client.get(f"/rollouts/{second.pk}/").content.decode()
    assert 'id="changes-1"' in page and "runs r1 now → r2" in page and "web:2.0" in page
    assert 'id="evidence-1"' in page and "ring-b" in page


def test_a_cluster_that_runs_nothing_yet_shows_every_object_as_new(fleet, operator):
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b", "approvals_required": 1}]), 4)
    stage = rollout.stages.get()
    assert stage.state == StageState.AWAITING_APPROVAL
    (change,) = evidence.stage_changes(stage)
    assert change["clusters"] == ["b-1"] and change["running"] == "nothing"
    assert "+kind: Deployment" in change["diff"]
