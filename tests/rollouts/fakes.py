"""A fake fleet for engine and gate tests: member clusters as the engine sees them (`members.push` and
`members.read_back` are its only calls to a cluster); the database and the locks stay real."""

from __future__ import annotations

import yaml

from inventory import kube
from rollouts import engine, manifests, services
from rollouts.models import Rollout, Target


def web(tag: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": f"registry.example.com/web:{tag}"}]}}}})


class FakeFleet:
    """Member clusters as the engine sees them: what was pushed where, which clusters' workloads are ready, which
    refuse the apply."""

    def __init__(self):
        self.pushed: list[tuple[str, str]] = []  # (cluster, revision)
        self.ready: set[str] = set()
        self.failing: dict[str, str] = {}

    def push(self, cluster, namespace, objects, *, renew, application=None):
        renew()
        if cluster.name in self.failing:
            raise kube.KubeError("http", self.failing[cluster.name], http_status=500)
        self.pushed.append((cluster.name, objects[0]["metadata"]["annotations"]["fleetweb.io/revision"]))

    def read_back(self, cluster, objects, *, renew):
        renew()
        live = []
        for obj in objects:
            if obj["kind"] not in manifests.WORKLOADS:
                continue
            n = obj["spec"].get("replicas", 1) if cluster.name in self.ready else 0
            live.append((obj, {"metadata": {"generation": 1, "annotations": obj["metadata"]["annotations"]},
                               "spec": obj["spec"],
                               "status": {"observedGeneration": 1, "replicas": obj["spec"].get("replicas", 1),
                                          "updatedReplicas": n, "availableReplicas": n}}))
        return live

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
