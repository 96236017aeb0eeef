"""Kubernetes versions: in upstream support, not close to its end, kubelets within the supported skew."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from governance import kubernetes_releases as releases
from governance.rules import Finding, Param, Rule, register

_CLUSTER_FACT = "it is a fact about the cluster's version, not an object an admission policy can refuse"


def _cluster_finding(ctx, message: str) -> Finding:
    return Finding("Cluster", "", ctx.cluster_name, message)


def version_supported(ctx, params) -> Iterator[Finding]:
    minor = releases.minor_of(ctx.kubernetes_version)
    if minor is None:
        return
    eol = releases.end_of_life(minor)
    if eol is not None and eol < ctx.today:
        since = "" if eol == datetime.date.min else f" since {eol:%Y-%m-%d}"
        yield _cluster_finding(ctx, f"Kubernetes {minor[0]}.{minor[1]} is out of upstream support{since}")


register(Rule(
    key="kubernetes-version-supported",
    title="Kubernetes version in upstream support",
    why="Out-of-support minors get no security patches; upgrades skipping several minors at once are risky.",
    severity="critical",
    scope="cluster",
    fix="Upgrade the control plane one minor at a time, then the nodes.",
    check=version_supported,
    audit_only_reason=_CLUSTER_FACT,
))


def support_ending(ctx, params) -> Iterator[Finding]:
    minor = releases.minor_of(ctx.kubernetes_version)
    if minor is None:
        return
    eol = releases.end_of_life(minor)
    if eol is None or eol < ctx.today:
        return  # newer than the table, or already reported by kubernetes-version-supported
    days = (eol - ctx.today).days
    if days <= params["days"]:
        yield _cluster_finding(ctx, f"upstream support of Kubernetes {minor[0]}.{minor[1]} ends on "
                                    f"{eol:%Y-%m-%d}, in {days} days")


register(Rule(
    key="kubernetes-support-ending",
    title="Kubernetes support does not end soon",
    why="An upgrade takes weeks to plan and roll out; start before the minor goes out of support.",
    severity="medium",
    scope="cluster",
    fix="Plan the upgrade to the next minor now.",
    check=support_ending,
    params=(Param("days", "int", 90, "Warn this many days before end of life", min_value=1, max_value=730,
                  merge="max"),),
    audit_only_reason=_CLUSTER_FACT,
))


def kubelet_skew(ctx, params) -> Iterator[Finding]:
    server = releases.minor_of(ctx.kubernetes_version)
    if server is None:
        return
    limit = params["max_minor_skew"]
    for version, count in sorted(ctx.kubelet_versions.items()):
        minor = releases.minor_of(version)
        if minor is None or minor[0] != server[0]:
            continue
        behind = server[1] - minor[1]
        nodes = f"{count} node{'s' if count != 1 else ''} run kubelet {version}"
        if behind < 0:
            yield Finding("KubeletVersion", "", version,
                          f"{nodes}, newer than the API server {ctx.kubernetes_version} (never supported)")
        elif behind > limit:
            yield Finding("KubeletVersion", "", version,
                          f"{nodes}, {behind} minors behind the API server {ctx.kubernetes_version} "
                          f"(at most {limit} allowed)")


register(Rule(
    key="kubelet-version-skew",
    title="Kubelets within the supported version skew",
    why="Kubelets more than three minors older than the API server (or newer than it) are outside the "
        "upstream skew policy: features and fixes silently stop working.",
    severity="high",
    scope="cluster",
    fix="Upgrade (or replace) the nodes listed; node pools follow the control plane within the skew.",
    check=kubelet_skew,
    params=(Param("max_minor_skew", "int", 3, "Minors a kubelet may be behind the API server", min_value=0,
                  max_value=3, merge="min"),),
    audit_only_reason=_CLUSTER_FACT,
))
