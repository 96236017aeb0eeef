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
                        in ("enqueue", "enqueue_after_commit", "task") and node.args
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
                        and re.fullmatch(r"[a-z_]+\.tasks\.[a-z_]+", node.args[0].value)):
                    names.add(node.args[0].value)
    return names


def test_every_task_name_the_code_queues_is_registered():
    names = names_queued_in_the_code()
    assert {"rollouts.tasks.advance_rollout", "inventory.tasks.sync_cluster", "governance.tasks.evaluate_clusters",
            "rollouts.tasks.dry_run_revision", "notifications.tasks.deliver"} <= names, names
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
