"""Domain code queues tasks by name (foundation.queueing.enqueue*), never importing a tasks module: every name it uses
is a registered task, and a name no task has fails at once instead of being logged as a lost message."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from celery import current_app

from foundation import queueing

ROOT = Path(__file__).resolve().parents[2]
APPS = ("fleetweb", "foundation", "inventory", "notifications", "governance", "rollouts")


def names_queued_in_the_code() -> set[str]:
    names = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", ""))
                        in ("enqueue", "enqueue_after_commit", "task", "gather", "gather_after_commit", "take_gathered")
                        and node.args
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                        and re.fullmatch(r"[a-z_]+\.tasks\.[a-z_]+", node.args[0].value)):
                    names.add(node.args[0].value)
    return names


def test_every_task_name_the_code_queues_is_registered():
    names = names_queued_in_the_code()
    assert {"rollouts.tasks.advance_rollout", "inventory.tasks.sync_cluster", "governance.tasks.evaluate_clusters",
            "rollouts.tasks.dry_run_revision", "notifications.tasks.deliver", "governance.tasks.evaluate_gathered"} \
        <= names, names
    for name in names:  # found the way every door finds it: by name, its module imported when needed
        assert queueing.task(name).name == name
    assert all(name in current_app.tasks for name in names)


def test_no_domain_module_imports_a_tasks_module():
    offenders = []
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if path.name == "tasks.py" or "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                module = node.module if isinstance(node, ast.ImportFrom) else None
                if module and (module.endswith(".tasks") or any(a.name == "tasks" for a in node.names)) \
                        and module.split(".")[0] in APPS:
                    offenders.append(f"{path.relative_to(ROOT)}: from {module} import …")
    assert offenders == []


def test_an_unknown_task_name_fails_at_once():
    with pytest.raises(KeyError):
        queueing.enqueue("rollouts.tasks.no_such_task", 1, what="nothing")


# ---------------------------------------------------------------------------------------------
# Gathered work


def _waiting(queue: str) -> list[dict]:
    """The messages waiting in a queue of the real broker (Redis): their task names and countdowns."""
    import json

    raw = queueing._redis().lrange(queue, 0, -1)
    return [json.loads(message)["headers"] for message in raw]


def test_many_gathers_within_the_window_queue_one_task_that_takes_every_id():
    queueing.purge_queues()
    for ids in ([3, 1], [2], [3], [7, 2]):
        queueing.gather("governance.tasks.evaluate_gathered", ids, within=5, what="test")
    waiting = _waiting("default")
    assert [h["task"] for h in waiting] == ["governance.tasks.evaluate_gathered"]
    assert waiting[0]["eta"]  # after the window: the others had their time to join
    assert queueing.take_gathered("governance.tasks.evaluate_gathered") == [1, 2, 3, 7]
    assert queueing.take_gathered("governance.tasks.evaluate_gathered") == []  # taken once
    queueing.purge_queues()


def test_after_the_window_the_next_gather_queues_a_task_again():
    queueing.purge_queues()
    queueing.gather("governance.tasks.evaluate_gathered", [1], within=0.05, what="test")
    import time

    time.sleep(0.1)
    queueing.gather("governance.tasks.evaluate_gathered", [2], within=0.05, what="test")
    assert [h["task"] for h in _waiting("default")] == ["governance.tasks.evaluate_gathered"] * 2
    queueing.purge_queues()
    assert _waiting("default") == [] and queueing.take_gathered("governance.tasks.evaluate_gathered") == []


def test_with_redis_away_the_task_is_queued_with_its_ids(monkeypatch, settings):
    import redis

    queueing.purge_queues()
    sent = []
    away = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    monkeypatch.setattr(queueing, "_redis", lambda: away)
    monkeypatch.setattr(queueing, "send_safely", lambda send, what, on_failure=None: sent.append(what) or True)
    queueing.gather("governance.tasks.evaluate_gathered", [4, 4, 2], within=2, what="the evaluation")
    assert sent == ["the evaluation"]


@pytest.mark.django_db
def test_the_gathered_evaluation_evaluates_every_gathered_cluster_once(admin_user):
    from governance import services
    from governance.models import ClusterCompliance
    from inventory import services as inventory_services
    from tests.builders import make_cluster

    queueing.purge_queues()
    clusters = [make_cluster(f"c{i}", environment="prod") for i in range(3)]
    group = inventory_services.create_group(name="g", selector="environment=prod", user=admin_user)
    services.create_assignment(group=group, rule_key="no-latest-tag", user=admin_user)
    ClusterCompliance.objects.all().delete()
    queueing.gather("governance.tasks.evaluate_gathered", [c.pk for c in clusters], within=2, what="test")
    assert services.evaluate_gathered() == 3
    assert sorted(ClusterCompliance.objects.values_list("cluster_id", flat=True)) == sorted(c.pk for c in clusters)
    assert services.evaluate_gathered() == 0  # nothing gathered since
    queueing.purge_queues()
