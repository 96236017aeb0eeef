"""Add-ons at or above a baseline version (inventory/addons.py finds them and their versions)."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import Finding, Param, Rule, register
from inventory import addons


def _minimum(item: str) -> str:
    key, _, version = item.partition("=")
    if key not in addons.BY_KEY:
        return f"'{key}' is not an add-on Fleetweb knows ({', '.join(sorted(addons.BY_KEY))})"
    if addons.version_key(addons.version_of(version)) is None:
        return f"'{version}' is not a version (v1.11.1)"
    return ""


def addon_baseline(ctx, params) -> Iterator[Finding]:
    minimums: dict[str, str] = {}
    for key, _, version in (item.partition("=") for item in params["minimums"]):
        version = addons.version_of(version)
        # Listed twice (two groups' baselines merged): the higher minimum holds.
        if key not in minimums or (addons.version_key(version) or ()) > (addons.version_key(minimums[key]) or ()):
            minimums[key] = version
    for row in ctx.addons:
        wanted = minimums.get(row["addon"])
        if wanted is None:
            continue
        name = addons.BY_KEY[row["addon"]].name
        have, need = addons.version_key(row["version"]), addons.version_key(wanted)
        if have is None:
            yield Finding("Addon", row["namespace"], row["workload"],
                          f"{name}'s version cannot be read from its image (pinned by digest?); the baseline is "
                          f"{wanted}")
        elif need is not None and have < need:
            yield Finding("Addon", row["namespace"], row["workload"],
                          f"{name} {row['version']} is below the baseline {wanted}")


register(Rule(
    key="addon-baseline",
    title="Add-ons at or above their baseline versions",
    why="Old CoreDNS, CNI, ingress or cert-manager releases carry known CVEs and block the next Kubernetes upgrade.",
    severity="medium",
    scope="addon",
    fix="Upgrade the add-on (its Helm chart or the provider's managed add-on) to at least the baseline version.",
    check=addon_baseline,
    params=(Param("minimums", "list", [], "add-on=minimum version, one per line (e.g. coredns=v1.11.1)",
                  required=True, pattern=r"[a-z0-9-]+=v?\d+\.\d+(\.\d+)?", check_item=_minimum,
                  merge="union"),),
    audit_only_reason="the version is read from what runs; an admission policy cannot compare image tags safely",
))
