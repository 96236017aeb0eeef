"""One engine per rollout, provably: two engines on the real database apply each target once; a run whose lease was
taken over or whose rollout was aborted writes nothing; beat does not queue twice; a broker outage is no 500."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import yaml
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from rollouts import engine, services, tasks
from rollouts.choices import RolloutState, StageState, TargetState
from rollouts.models import Approval, Rollout, Target
from tests.builders import make_cluster
from tests.fakemember import FakeMembers

CONFIG = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                         "data": {"a": "1"}})


def _rollout(operator, clusters=3, **stage):
    for i in range(clusters):
        make_cluster(f"dev-{i}", environment="dev")
    app = services.create_application(name="web", namespace="web", manifests_text=CONFIG, user=operator)
    return services.create_rollout(revision=app.latest_revision, user=operator, stages=[
        {"name": "all", "selector": "environment=dev", "max_parallel": clusters, **stage}])


@pytest.mark.django_db(transaction=True)
def test_two_engines_on_one_rollout_apply_each_target_once(operator, monkeypatch):
    rollout = _rollout(operator)
    applied: list[str] = []
    lock = threading.Lock()

    def slow_apply(cluster, path, body):
        if body["kind"] == "Namespace":
            return
        with lock:
            applied.append(cluster)
        time.sleep(0.3)  # long enough for the other engine to try every step meanwhile

    FakeMembers().install(monkeypatch).on_apply = slow_apply
    outcomes: list[str] = []

    def run():
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                outcomes.append(engine.advance(rollout.pk))
                if Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED:
                    return
                time.sleep(0.01)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.SUCCEEDED
    assert sorted(applied) == ["dev-0", "dev-1", "dev-2"], "every target applied exactly once"
    assert "busy" in outcomes, "the engines really overlapped: one found the other holding the lease"
    assert list(Target.objects.values_list("attempts", flat=True)) == [1, 1, 1]


@pytest.mark.django_db
def test_a_run_whose_lease_was_taken_over_writes_nothing(operator):
    rollout = _rollout(operator, clusters=1)
    first = engine.acquire(rollout.pk)
    assert engine.acquire(rollout.pk) is None, "held: nobody else gets it"
    Rollout.objects.filter(pk=rollout.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = engine.acquire(rollout.pk)
    assert second is not None and second.token != first.token
    first.expected = RolloutState.PENDING
    with pytest.raises(engine.LeaseLost):
        engine.step(Rollout.objects.get(pk=rollout.pk), first)
    with pytest.raises(engine.LeaseLost):
        first.renew()
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.PENDING, "the stale run changed nothing"
    second.expected = RolloutState.PENDING
    assert engine.step(Rollout.objects.get(pk=rollout.pk), second)
    assert Rollout.objects.get(pk=rollout.pk).state == RolloutState.RUNNING


@pytest.mark.django_db
def test_an_abort_during_an_apply_is_never_overwritten(operator, monkeypatch):
    rollout = _rollout(operator, clusters=2, max_parallel=1)
    engine.step_once(rollout.pk)  # running
    engine.step_once(rollout.pk)  # stage applying

    def abort_at_apply(cluster, path, body):
        if body["kind"] != "Namespace":
            services.abort_rollout(Rollout.objects.get(pk=rollout.pk), user=operator)  # someone clicks Abort now

    FakeMembers().install(monkeypatch).on_apply = abort_at_apply
    assert engine.advance(rollout.pk) == RolloutState.ABORTED
    rollout.refresh_from_db()
    assert rollout.state == RolloutState.ABORTED and rollout.stages.get().state == StageState.ABORTED
    states = sorted(Target.objects.values_list("state", flat=True))
    assert states == [TargetState.APPLYING, TargetState.PENDING], "nothing was marked applied after the abort"
    assert not rollout.lease_token, "the lease was released"


@pytest.mark.django_db
def test_beat_does_not_queue_a_rollout_already_queued(operator, monkeypatch):
    rollout = _rollout(operator, clusters=1)  # created: kicked (queued) at once
    Rollout.objects.filter(pk=rollout.pk).update(queued_at=None)  # as if the kick's message was lost
    assert engine.due_rollouts() == [rollout.pk]
    assert engine.due_rollouts() == [], "queued and not picked up: not queued again"
    FakeMembers().install(monkeypatch)
    engine.advance(rollout.pk)
    assert Rollout.objects.get(pk=rollout.pk).queued_at is None, "picking it up clears the mark"
    Rollout.objects.filter(pk=rollout.pk).update(queued_at=timezone.now() - engine.QUEUE_GRACE - timedelta(1),
                                                 state=RolloutState.RUNNING, next_step_at=timezone.now())
    assert engine.due_rollouts() == [rollout.pk], "a message lost for longer than the grace is queued again"


@pytest.mark.django_db
def test_broker_down_after_an_approval_is_no_500_and_beat_recovers(operator, approver, api_as, monkeypatch,
                                                                   django_capture_on_commit_callbacks):
    make_cluster("prod-1", environment="prod")
    app = services.create_application(name="web", namespace="web", manifests_text=CONFIG, user=operator)
    rollout = services.create_rollout(revision=app.latest_revision, user=operator,
                                      stages=[{"name": "production", "selector": "environment=prod"}])
    engine.step_once(rollout.pk)
    engine.step_once(rollout.pk)

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis://:s3cret@10.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.advance_rollout, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "ok"}, format="json")
    assert response.status_code == 200, response.content
    assert Approval.objects.filter(stage__rollout=rollout, user=approver).count() == 1
    assert Rollout.objects.get(pk=rollout.pk).queued_at is None, "the lost message left no queued mark"
    assert rollout.pk in engine.due_rollouts(), "beat queues it on its next tick"
    retry = api_as(approver).post(f"/api/v1/rollouts/{rollout.pk}/approve/", {"comment": "ok"}, format="json")
    assert retry.status_code == 409, "a retry is told the approval is there, not asked to approve again"
