"""Namespaces: quota, default limits and Pod Security admission labels."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import Admission, Finding, Param, Rule, cel_list, register

_CROSS_OBJECT = ("it depends on other objects (a ResourceQuota in the namespace), which admission policies "
                 "on a single object cannot see")


def namespace_quota(ctx, params) -> Iterator[Finding]:
    for ns in ctx.namespaces:
        if ns["resource_quotas"] == 0:  # None: unknown (not listed), never reported as missing
            yield Finding("Namespace", ns["name"], ns["name"], "no ResourceQuota")


register(Rule(
    key="namespace-quota",
    title="Every namespace has a ResourceQuota",
    why="Without a quota one team's runaway Deployment can take the whole cluster's capacity.",
    severity="medium",
    scope="namespace",
    fix="Create a ResourceQuota in the namespace (requests.cpu, requests.memory, pods).",
    check=namespace_quota,
    audit_only_reason=_CROSS_OBJECT,
))


def namespace_limit_range(ctx, params) -> Iterator[Finding]:
    for ns in ctx.namespaces:
        if ns["limit_ranges"] == 0:
            yield Finding("Namespace", ns["name"], ns["name"], "no LimitRange")


register(Rule(
    key="namespace-limit-range",
    title="Every namespace has a LimitRange",
    why="A LimitRange gives containers that declare nothing sane default requests and limits.",
    severity="low",
    scope="namespace",
    fix="Create a LimitRange with default and defaultRequest for containers.",
    check=namespace_limit_range,
    audit_only_reason=_CROSS_OBJECT.replace("a ResourceQuota", "a LimitRange"),
))

PSA_LABEL = "pod-security.kubernetes.io/enforce"


def pod_security_labels(ctx, params) -> Iterator[Finding]:
    levels = params["levels"]
    for ns in ctx.namespaces:
        level = (ns.get("labels") or {}).get(PSA_LABEL, "")
        if level not in levels:
            found = f"is '{level}'" if level else "is missing"
            yield Finding("Namespace", ns["name"], ns["name"], f"label {PSA_LABEL} {found}; want {' or '.join(levels)}")


register(Rule(
    key="namespace-pod-security",
    title="Namespaces enforce a Pod Security level",
    why="The built-in Pod Security admission only protects namespaces labelled with an enforce level.",
    severity="medium",
    scope="namespace",
    fix=f"Label the namespace {PSA_LABEL}=baseline (or restricted).",
    check=pod_security_labels,
    params=(Param("levels", "list", ["baseline", "restricted"], "Accepted enforce levels", required=True,
                  pattern="privileged|baseline|restricted", merge="intersection"),),
    # Only on CREATE: refusing updates of existing unlabelled namespaces would also refuse the
    # namespace controller's own finalization and leave them stuck terminating.
    admission=lambda params: Admission(
        resources=(("", "namespaces"),),
        operations=("CREATE",),
        validations=({"expression": f"has(object.metadata.labels) && object.metadata.labels[?'{PSA_LABEL}']"
                                    f".orValue('') in {cel_list(params['levels'])}",
                      "message": f"new namespaces must be labelled {PSA_LABEL}=" + " or ".join(params["levels"])
                                 + " (Fleetweb policy namespace-pod-security)", "reason": "Invalid"},),
    ),
))
