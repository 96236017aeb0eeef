"""Pod security: privileged containers, privilege escalation, root users, host paths and namespaces."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import Finding, Param, Rule, cel_list, containers, pod_admission, register, where


def _names(items: list[dict]) -> str:
    return ", ".join(c["name"] for c in items)


def no_privileged(ctx, params) -> Iterator[Finding]:
    for w in ctx.workloads:
        bad = [c for c in containers(w) if c.get("privileged")]
        if bad:
            yield Finding(*where(w), f"privileged container(s): {_names(bad)}")


register(Rule(
    key="no-privileged-containers",
    title="No privileged containers",
    why="A privileged container has every capability and the host's devices: one compromised pod owns the node.",
    severity="critical",
    scope="workload",
    fix="Remove securityContext.privileged: true; grant only the capabilities the container needs.",
    check=no_privileged,
    admission=lambda params: pod_admission({
        "expression": "variables.containers.all(c, !c.?securityContext.?privileged.orValue(false))",
        "message": "privileged containers are not allowed (Fleetweb policy no-privileged-containers)",
        "reason": "Forbidden",
    }),
))


def no_privilege_escalation(ctx, params) -> Iterator[Finding]:
    for w in ctx.workloads:
        bad = [c for c in containers(w) if c.get("allow_privilege_escalation") is not False]
        if bad:
            yield Finding(*where(w), f"allowPrivilegeEscalation is not false in: {_names(bad)}")


register(Rule(
    key="no-privilege-escalation",
    title="No privilege escalation",
    why="Without allowPrivilegeEscalation: false a process can gain more privileges than its parent "
        "(setuid binaries), the usual second step of a container breakout.",
    severity="high",
    scope="workload",
    fix="Set securityContext.allowPrivilegeEscalation: false on every container.",
    check=no_privilege_escalation,
    admission=lambda params: pod_admission({
        "expression": "variables.containers.all(c, c.?securityContext.?allowPrivilegeEscalation.orValue(true) "
                      "== false)",
        "message": "every container must set securityContext.allowPrivilegeEscalation: false "
                   "(Fleetweb policy no-privilege-escalation)",
        "reason": "Forbidden",
    }),
))


def _runs_as_root(c: dict) -> bool:
    if c.get("run_as_non_root") is True:
        return False
    return c.get("run_as_user") in (None, 0)


def no_root(ctx, params) -> Iterator[Finding]:
    for w in ctx.workloads:
        bad = [c for c in containers(w) if _runs_as_root(c)]
        if bad:
            yield Finding(*where(w), f"may run as root (no runAsNonRoot, no non-zero runAsUser): {_names(bad)}")


register(Rule(
    key="run-as-non-root",
    title="Containers run as non-root",
    why="A process running as UID 0 inside a container is root on the host as soon as it escapes.",
    severity="medium",
    scope="workload",
    fix="Set runAsNonRoot: true (pod or container securityContext) and build images with a non-root USER.",
    check=no_root,
    admission=lambda params: pod_admission({
        "expression": "variables.containers.all(c, "
                      "c.?securityContext.?runAsNonRoot.orValue("
                      "variables.podSpec.?securityContext.?runAsNonRoot.orValue(false)) || "
                      "c.?securityContext.?runAsUser.orValue("
                      "variables.podSpec.?securityContext.?runAsUser.orValue(0)) != 0)",
        "message": "containers must run as non-root: set runAsNonRoot: true or a non-zero runAsUser "
                   "(Fleetweb policy run-as-non-root)",
        "reason": "Forbidden",
    }),
))


def no_host_path(ctx, params) -> Iterator[Finding]:
    allowed = params.get("allowed_paths") or []
    for w in ctx.workloads:
        bad = [p for p in w["pod_template"].get("host_path_volumes", [])
               if not any(p == a or p.startswith(a.rstrip("/") + "/") for a in allowed)]
        if bad:
            yield Finding(*where(w), f"hostPath volume(s): {', '.join(bad)}")


def _host_path_admission(params):
    allowed = params.get("allowed_paths") or []

    ok = "!has(v.hostPath)"
    if allowed:
        ok += (f" || {cel_list(allowed)}.exists(a, v.hostPath.path == a || "
               "v.hostPath.path.startsWith(a.endsWith('/') ? a : a + '/'))")
    return pod_admission({
        "expression": f"variables.podSpec.?volumes.orValue([]).all(v, {ok})",
        "message": "hostPath volumes are not allowed (Fleetweb policy no-host-path)",
        "reason": "Forbidden",
    })


register(Rule(
    key="no-host-path",
    title="No hostPath volumes",
    why="hostPath mounts expose the node's filesystem: credentials, the container runtime socket, other pods' data.",
    severity="high",
    scope="workload",
    fix="Use a PersistentVolumeClaim, a ConfigMap/Secret or an emptyDir instead of hostPath.",
    check=no_host_path,
    params=(Param(
        "allowed_paths", "list", [], "Host paths (and everything below them) that stay allowed, e.g. /var/log",
        pattern=r"/[^\s]*", merge="intersection"),),
    admission=_host_path_admission,
))


def no_host_namespaces(ctx, params) -> Iterator[Finding]:
    for w in ctx.workloads:
        t = w["pod_template"]
        shared = [n for n, key in (("network", "host_network"), ("PID", "host_pid"), ("IPC", "host_ipc")) if t.get(key)]
        if shared:
            yield Finding(*where(w), f"shares the host's {', '.join(shared)} namespace")


register(Rule(
    key="no-host-namespaces",
    title="No host network, PID or IPC",
    why="Sharing the node's network, process or IPC namespace lets a pod sniff traffic, see and signal "
        "every process, and bypass network policies.",
    severity="high",
    scope="workload",
    fix="Remove hostNetwork, hostPID and hostIPC from the pod spec.",
    check=no_host_namespaces,
    admission=lambda params: pod_admission({
        "expression": "!variables.podSpec.?hostNetwork.orValue(false) && !variables.podSpec.?hostPID.orValue(false) "
                      "&& !variables.podSpec.?hostIPC.orValue(false)",
        "message": "hostNetwork, hostPID and hostIPC are not allowed (Fleetweb policy no-host-namespaces)",
        "reason": "Forbidden",
    }),
))
