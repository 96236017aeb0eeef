"""A fake fleet for engine and gate tests: member clusters behind the member port's fake adapter
(tests/fakemember.py), so the engine's whole path to a cluster runs; the database and the locks stay real."""

from __future__ import annotations

import yaml

from inventory import port
from rollouts import engine, services
from rollouts.models import Rollout, Target
from tests.fakemember import FakeMembers, ready_status


def web(tag: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": f"registry.example.com/web:{tag}"}]}}}})


class FakeFleet(FakeMembers):
    """Member clusters as the engine sees them: what was applied where, which clusters' workloads are ready, which
    refuse the apply."""

    def __init__(self):
        super().__init__()
        self.ready: set[str] = set()
        self.failing: dict[str, str] = {}

    @property
    def pushed(self) -> list[tuple[str, str]]:
        """(cluster, revision) of every push, in order."""
        return [(cluster, objects[0]["metadata"]["annotations"]["fleetweb.io/revision"])
                for cluster, objects in self.pushes]

    def on_apply_hook(self, cluster: str, path: str, body: dict) -> None:
        if cluster in self.failing:
            raise port.KubeError("http", self.failing[cluster], http_status=500)

    def install(self, monkeypatch) -> FakeFleet:
        super().install(monkeypatch)
        self.on_apply = self.on_apply_hook
        return self

    def observe(self, cluster: str, path: str, obj: dict) -> dict:
        obj = super().observe(cluster, path, obj)
        if "status" in obj and cluster not in self.ready:
            obj["status"] = {**ready_status(obj), "updatedReplicas": 0, "availableReplicas": 0, "readyReplicas": 0}
        return obj

    def applied_to(self, revision: int) -> list[str]:
        return sorted(c for c, r in self.pushed if r == str(revision))


def start(operator, stages, *, tag="1.0", app=None):
    if app is None:
        app = services.create_application(name="web", namespace="web", manifests_text=web(tag), user=operator)
        revision = app.latest_revision
    else:
        revision = services.create_revision(app, manifests_text=web(tag), user=operator)
    return services.create_rollout(revision=revision, user=operator, stages=stages)


def run(rollout, steps: int = 8) -> Rollout:
    for _ in range(steps):
        engine.step_once(rollout.pk)
    return Rollout.objects.get(pk=rollout.pk)


def states(rollout) -> dict[str, str]:
    return dict(Target.objects.filter(stage__rollout=rollout).values_list("cluster__name", "state"))
