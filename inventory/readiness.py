"""Upgrade-readiness facts of a member cluster, read by a sync every FLEETWEB_READINESS_INTERVAL seconds (and by
each "Sync now"): which deprecated API versions its clients still call, from the API server's own
`apiserver_requested_deprecated_apis` metric (get on the `/metrics` non-resource URL), and which versions its
CRDs still store objects at. The verdict built on them, with versions, node pools and add-ons, is
`governance.upgrades`.

Both reads are optional: a cluster attached with an older access manifest (no `/metrics`, no CRDs) syncs as
before, and its readiness says what is missing instead of "ready". Everything read is the other side's words:
label values are bounded, and a release that is not `1.N` is not kept.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import timedelta

import msgspec
from django.conf import settings
from django.utils import timezone

from inventory import decode, port
from inventory.models import Cluster, CustomResourceDefinition, DeprecatedAPIRequest
from inventory.validators import MINOR_VERSION

METRICS_PATH = "/metrics"
METRIC = b"apiserver_requested_deprecated_apis{"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CRD_PAGE = 50  # CRDs carry their schemas: small pages keep a page's memory bounded
MAX_METRICS_BYTES = 256 * 2**20
MAX_ROWS = 2000  # deprecated APIs or CRDs kept per cluster; more is someone else's data, not a cluster's

# The two parts, by the name their errors are kept under (Cluster.readiness_error: "part: message" lines).
METRICS, CRDS = "deprecated APIs", "CRDs"

_LABEL = re.compile(rb'(\w+)="((?:[^"\\]|\\.)*)"')
_CRD_PAGE = msgspec.json.Decoder(decode.ObjectList[decode.CustomResourceDefinition])


@dataclasses.dataclass
class Facts:
    """What one readiness read got; a part that failed is None, with its error."""

    deprecated_apis: list[dict] | None = None
    crds: list[dict] | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    timings_ms: dict[str, int] = dataclasses.field(default_factory=dict)  # by part, as a sync run keeps kinds'

    @property
    def counts(self) -> dict[str, int]:
        return {METRICS: len(self.deprecated_apis or ()), CRDS: len(self.crds or ())}


# Syncs someone asked for ("Sync now" on a page or the API: `page:<user>`, `api:<user>`) read readiness too.
ASKED = ("page:", "api:")


def due(cluster: Cluster, *, triggered_by: str, now=None) -> bool:
    """Read readiness in this sync? The first one does, every "Sync now", and others every
    FLEETWEB_READINESS_INTERVAL (not the sync a rollout asks for after each target: a rollout to a hundred
    clusters would read a hundred /metrics)."""
    if triggered_by.startswith(ASKED) or cluster.readiness_checked_at is None:
        return True
    now = now or timezone.now()
    return cluster.readiness_checked_at <= now - timedelta(seconds=settings.FLEETWEB_READINESS_INTERVAL)


def parse_deprecated_apis(lines: list[bytes]) -> list[dict]:
    """Rows of `apiserver_requested_deprecated_apis{...} 1` lines (a gauge the API server sets to 1)."""
    rows: dict[tuple, dict] = {}
    for line in lines:
        labels_part, _, value = line.rpartition(b"}")
        if value.strip().split(b" ")[0] not in (b"1", b"1.0", b"1e+00"):
            continue
        labels = {k.decode(): v.decode("utf-8", "replace").replace('\\"', '"').replace("\\\\", "\\")
                  for k, v in _LABEL.findall(labels_part)}
        release = labels.get("removed_release", "")
        row = {"group": labels.get("group", "")[:253], "version": labels.get("version", "")[:64],
               "resource": labels.get("resource", "")[:253], "subresource": labels.get("subresource", "")[:64],
               "removed_release": release if MINOR_VERSION.match(release) else ""}
        if row["version"] and row["resource"]:
            rows[(row["group"], row["version"], row["resource"], row["subresource"])] = row
    return [rows[k] for k in sorted(rows)][:MAX_ROWS]


def crd_row(crd: decode.CustomResourceDefinition) -> dict:
    versions = [{"name": v.name[:64], "served": v.served, "storage": v.storage, "deprecated": v.deprecated}
                for v in crd.spec.versions[:50]]
    stored = [v[:64] for v in crd.status.stored_versions[:50]]
    return {"name": crd.metadata.name[:253], "group": crd.spec.group[:253], "kind": crd.spec.names.kind[:128],
            "versions": versions, "stored_versions": stored, "stale_versions": stale_versions(versions, stored)}


def stale_versions(versions: list[dict], stored: list[str]) -> list[str]:
    """Stored versions objects may still be kept at that the CRD deprecates, stops serving or no longer lists:
    before such a version can go, its objects must be rewritten at the storage version and it must be removed
    from `status.storedVersions`."""
    by_name = {v["name"]: v for v in versions}
    return [name for name in stored
            if name not in by_name or by_name[name]["deprecated"] or not by_name[name]["served"]]


def warm(member: port.Member) -> None:
    """Tell `member` that `fetch` follows (`port.Member.warm`): through an agent, its calls go with the sync's."""
    member.warm([CRD_PATH], limits={CRD_PATH: CRD_PAGE}, lines=[(METRICS_PATH, METRIC, MAX_METRICS_BYTES)])


def fetch(member: port.Member) -> Facts:
    """Read both parts; a fatal error (the cluster stopped answering) raises, others are kept by part."""
    facts = Facts()
    started = time.monotonic()
    try:
        lines = member.metric_lines(METRICS_PATH, METRIC, max_bytes=MAX_METRICS_BYTES)
        facts.deprecated_apis = parse_deprecated_apis(lines)
    except port.KubeError as exc:
        if exc.fatal:
            raise
        facts.errors[METRICS] = _explain(exc, "get on the /metrics non-resource URL")
    facts.timings_ms[METRICS] = int((time.monotonic() - started) * 1000)
    started = time.monotonic()
    try:
        crds: list[dict] = []
        for page in member.pages(CRD_PATH, limit=CRD_PAGE):
            crds += [crd_row(c) for c in _CRD_PAGE.decode(page).items]
        facts.crds = sorted(crds, key=lambda r: r["name"])[:MAX_ROWS]
    except port.KubeError as exc:
        if exc.fatal:
            raise
        facts.errors[CRDS] = _explain(exc, "list on customresourcedefinitions.apiextensions.k8s.io")
    except (port.ListRestarted, msgspec.DecodeError, RecursionError, ValueError):
        facts.errors[CRDS] = "the CRD list is not a valid list, or kept expiring while it was read"
    facts.timings_ms[CRDS] = int((time.monotonic() - started) * 1000)
    return facts


def _explain(exc: port.KubeError, permission: str) -> str:
    if exc.http_status == 403:
        return f"403 Forbidden: Fleetweb's ClusterRole lacks {permission}; apply the current access manifest"
    return exc.message


def write(cluster: Cluster, facts: Facts, *, now) -> None:
    """Store what was read (inside the sync's transaction); a part that failed keeps its last rows."""
    if facts.deprecated_apis is not None:
        stored = {(r.group, r.version, r.resource, r.subresource): r
                  for r in DeprecatedAPIRequest.objects.filter(cluster=cluster)}
        seen = set()
        fresh = []
        for row in facts.deprecated_apis:
            key = (row["group"], row["version"], row["resource"], row["subresource"])
            seen.add(key)
            old = stored.get(key)
            fresh.append(DeprecatedAPIRequest(cluster=cluster, **row, last_seen_at=now,
                                              first_seen_at=old.first_seen_at if old else now))
        gone = [r.pk for key, r in stored.items() if key not in seen]
        if gone:
            DeprecatedAPIRequest.objects.filter(pk__in=gone).delete()
        DeprecatedAPIRequest.objects.bulk_create(
            fresh, update_conflicts=True, unique_fields=["cluster", "group", "version", "resource", "subresource"],
            update_fields=["removed_release", "last_seen_at"])
    if facts.crds is not None:
        stored_crds = list(CustomResourceDefinition.objects.filter(cluster=cluster).order_by("name")
                           .values("name", "group", "kind", "versions", "stored_versions", "stale_versions"))
        if stored_crds != facts.crds:
            CustomResourceDefinition.objects.filter(cluster=cluster).delete()
            CustomResourceDefinition.objects.bulk_create(CustomResourceDefinition(cluster=cluster, **row)
                                                         for row in facts.crds)
    cluster.readiness_checked_at = now
    cluster.readiness_error = "\n".join(f"{part}: {message}" for part, message in sorted(facts.errors.items()))
