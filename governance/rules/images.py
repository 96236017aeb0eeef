"""Images: only from allowed registries; never `:latest` or untagged."""

from __future__ import annotations

from collections.abc import Iterator

from governance.rules import Finding, Param, Rule, cel_list, containers, pod_admission, register, where


def image_allowed(image: str, registries: list[str]) -> bool:
    """An image matches an entry when it is that entry or lies below it, as written in the manifest.

    `registry.example.com` allows `registry.example.com/team/app:1`; `ghcr.io/acme` allows only
    acme's images. Docker Hub short names (`nginx`) match an entry `nginx` or `docker.io`-less
    prefixes only: Fleetweb, like the admission policy it installs, never rewrites names.
    """
    return any(image == r or image.startswith(r.rstrip("/") + "/") for r in registries)


def allowed_registries(ctx, params) -> Iterator[Finding]:
    registries = params["registries"]
    for w in ctx.workloads:
        bad = sorted({c["image"] for c in containers(w) if not image_allowed(c["image"], registries)})
        if bad:
            yield Finding(*where(w), f"image(s) from registries not allowed: {', '.join(bad)}")


register(Rule(
    key="allowed-registries",
    title="Images only from allowed registries",
    why="Images from unknown registries bypass your scanning and signing, and can change under the same tag.",
    severity="high",
    scope="workload",
    fix="Mirror the image into an allowed registry and reference it there.",
    check=allowed_registries,
    params=(Param("registries", "list", [], "Allowed registries or repository prefixes, e.g. "
                  "registry.example.com, ghcr.io/acme", required=True, pattern=r"[a-z0-9][a-z0-9.\-:/_]*",
                  merge="intersection"),),
    admission=lambda params: pod_admission({
        "expression": f"variables.containers.all(c, {cel_list(params['registries'])}.exists(r, c.image == r || "
                      "c.image.startsWith(r.endsWith('/') ? r : r + '/')))",
        "message": "images must come from: " + ", ".join(params["registries"])
                   + " (Fleetweb policy allowed-registries)",
        "reason": "Forbidden",
    }),
))


def is_unpinned(image: str) -> bool:
    """True for `repo`, `repo:latest`; digests (`@sha256:…`) and other tags are pinned."""
    if "@" in image:
        return False
    name = image.rsplit("/", 1)[-1]
    return ":" not in name or name.endswith(":latest")


def no_latest(ctx, params) -> Iterator[Finding]:
    for w in ctx.workloads:
        bad = sorted({c["image"] for c in containers(w) if is_unpinned(c["image"])})
        if bad:
            yield Finding(*where(w), f"unpinned image(s) (:latest or no tag): {', '.join(bad)}")


register(Rule(
    key="no-latest-tag",
    title="No :latest or untagged images",
    why="A moving tag makes two pods of one Deployment run different code, and makes rollback meaningless.",
    severity="medium",
    scope="workload",
    fix="Pin every image to a version tag or, better, a digest.",
    check=no_latest,
    admission=lambda params: pod_admission({
        "expression": "variables.containers.all(c, c.image.contains('@') || "
                      "(c.image.lastIndexOf(':') > c.image.lastIndexOf('/') && !c.image.endsWith(':latest')))",
        "message": "images must be pinned to a tag other than latest, or a digest (Fleetweb policy no-latest-tag)",
        "reason": "Invalid",
    }),
))
