"""Resources and probes: every container declares requests/limits; long-running ones have probes."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import (
    WORKLOAD_RESOURCES,
    Admission,
    Finding,
    Param,
    Rule,
    containers,
    pod_admission,
    register,
    where,
)

_WANTED = (("cpu_requests", "requests", "cpu"), ("memory_requests", "requests", "memory"),
           ("cpu_limits", "limits", "cpu"), ("memory_limits", "limits", "memory"))


def _required(params: dict) -> list[tuple[str, str]]:
    return [(section, resource) for name, section, resource in _WANTED if params.get(name)]


def resources_set(ctx, params) -> Iterator[Finding]:
    wanted = _required(params)
    for w in ctx.workloads:
        missing = []
        for c in containers(w):
            gaps = [f"{section}.{resource}" for section, resource in wanted if resource not in (c.get(section) or {})]
            if gaps:
                missing.append(f"{c['name']} ({', '.join(gaps)})")
        if missing:
            yield Finding(*where(w), f"missing resources: {'; '.join(missing)}")


def _resources_admission(params):
    checks = [f"(has(c.resources) && has(c.resources.{section}) && '{resource}' in c.resources.{section})"
              for section, resource in _required(params)] or ["true"]
    return pod_admission({
        "expression": f"variables.containers.all(c, {' && '.join(checks)})",
        "message": "every container must declare " + ", ".join(f"{s}.{r}" for s, r in _required(params))
                   + " (Fleetweb policy resources-set)",
        "reason": "Invalid",
    })


register(Rule(
    key="resources-set",
    title="Requests and limits are set",
    why="Without requests the scheduler packs pods blindly; without a memory limit one leak evicts its neighbours.",
    severity="medium",
    scope="workload",
    fix="Set resources.requests (cpu, memory) and resources.limits.memory on every container.",
    check=resources_set,
    params=(
        Param("cpu_requests", "bool", True, "Require resources.requests.cpu", merge="any"),
        Param("memory_requests", "bool", True, "Require resources.requests.memory", merge="any"),
        Param("cpu_limits", "bool", False, "Require resources.limits.cpu", merge="any"),
        Param("memory_limits", "bool", True, "Require resources.limits.memory", merge="any"),
    ),
    admission=_resources_admission,
))

_LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}


def probes_set(ctx, params) -> Iterator[Finding]:
    wanted = [p for p in ("liveness", "readiness") if params.get(p)]
    for w in ctx.workloads:
        if w["kind"] not in _LONG_RUNNING:
            continue
        missing = [f"{c['name']} ({', '.join(p for p in wanted if not c.get(f'{p}_probe'))})"
                   for c in containers(w) if not c.get("init") and any(not c.get(f"{p}_probe") for p in wanted)]
        if missing:
            yield Finding(*where(w), f"missing probes: {'; '.join(missing)}")


def _probes_admission(params):
    wanted = [p for p in ("liveness", "readiness") if params.get(p)]
    checks = " && ".join(f"has(c.{p}Probe)" for p in wanted) or "true"
    return Admission(
        resources=tuple(r for r in WORKLOAD_RESOURCES if r[1] in ("deployments", "statefulsets", "daemonsets")),
        validations=({"expression": f"object.spec.template.spec.containers.all(c, {checks})",
                      "message": "every container needs " + " and ".join(f"a {p} probe" for p in wanted)
                                 + " (Fleetweb policy probes-set)", "reason": "Invalid"},),
    )


register(Rule(
    key="probes-set",
    title="Long-running containers have probes",
    why="Without a readiness probe traffic reaches pods that are not ready; without liveness a hung process "
        "is never restarted. Rollouts rely on readiness to know a new version works.",
    severity="low",
    scope="workload",
    fix="Add readinessProbe and livenessProbe to the containers of Deployments, StatefulSets and DaemonSets.",
    check=probes_set,
    params=(
        Param("liveness", "bool", True, "Require a livenessProbe", merge="any"),
        Param("readiness", "bool", True, "Require a readinessProbe", merge="any"),
    ),
    admission=_probes_admission,
))
