"""Rollout receipts: proof, per cluster, of what a rollout left there.

When a target becomes ready the engine reads every object it applied back from the cluster and keeps the digest of
what it finds (`read_back_digest`): each object in the shape Fleetweb applied it, with the values the cluster holds
now (fields the server or controllers added are not Fleetweb's and are left out; fields the application leaves to
others, `drift_ignore`, keep their applied values). Equal to the digest of what was sent means the cluster holds
exactly what was approved; a field changed on the cluster between the apply and the verification makes it differ,
names the field, and the target does not count as a success.

A rollout's receipt lists every cluster with that evidence: the digest sent, the digest approved, the digest read
back, the health seen, when, and the approvals that covered it. It is served as a page, JSON and CSV, and as JSON
signed with Fleetweb's receipt key (Ed25519, `FLEETWEB_RECEIPT_KEY` or derived from the secret key) so anyone can
check it later with the public key alone (`verify`, `manage.py verify_receipt`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.utils import timezone

from inventory.decode import parse_quantity
from rollouts import drift, rendering
from rollouts.choices import Decision
from rollouts.models import Rollout, Target

ABSENT = "<absent on the cluster>"
MAX_DIFFERENCES = 10
FORMAT = "fleetweb.receipt/v1"


# ---------------------------------------------------------------------------------------------
# Reading back


def project(applied, live, *, quantities: bool = False) -> Any:
    """`applied`'s shape with `live`'s values: maps by key, lists of named items by name, other lists item by item
    (a list of another length is the live list as it is); a field the cluster lacks is ABSENT. What the API server
    normalizes is not a change: an empty value it dropped, and a resource quantity it wrote in canonical form
    (`0.5` read back as `500m`, under `resources`, a quota's `hard`, a LimitRange's limits)."""
    if live is _MISSING:
        return applied if applied in (None, "", {}, []) else ABSENT
    if isinstance(applied, dict):
        if not isinstance(live, dict):
            return live
        return {key: project(value, live.get(key, _MISSING), quantities=quantities or key in QUANTITY_KEYS)
                for key, value in applied.items()}
    if isinstance(applied, list):
        if not isinstance(live, list):
            return live
        if applied and all(isinstance(i, dict) and "name" in i for i in applied):
            by_name = {i.get("name"): i for i in live if isinstance(i, dict)}
            return [project(item, by_name.get(item["name"], _MISSING), quantities=quantities) for item in applied]
        if len(live) != len(applied):
            return live
        return [project(a, b, quantities=quantities) for a, b in zip(applied, live, strict=True)]
    if quantities and live != applied and _same_quantity(applied, live):
        return applied
    return live


# Keys under which the API server keeps resource quantities in canonical form.
QUANTITY_KEYS = {"resources", "hard", "limits", "requests", "default", "defaultRequest", "max", "min", "capacity",
                 "sizeLimit"}


def _same_quantity(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, str | int | float) \
            or not isinstance(b, str | int | float):
        return False
    try:
        return parse_quantity(a) == parse_quantity(b)
    except ValueError:
        return False


_MISSING = object()


def read_back_digest(objects: list[dict], lives: list[dict | None], rules=()) -> tuple[str, list[str]]:
    """(digest of `objects` as read back, the paths whose value differs, at most MAX_DIFFERENCES) for the objects
    Fleetweb applied and what the cluster holds of each (None: gone). Equal to `rendering.objects_digest(objects)`
    exactly when every field Fleetweb applied holds its applied value."""
    projected: list[Any] = []
    differences: list[str] = []
    for obj, live in zip(objects, lives, strict=True):
        seen = project(obj, live) if live is not None else ABSENT
        if rules and isinstance(seen, dict):
            kind, name = obj.get("kind", ""), (obj.get("metadata") or {}).get("name", "")
            for path, value in drift._leaves(obj):
                if drift.ignored_by(list(rules), kind, name, drift.path_text(path)) is not None:
                    try:
                        drift._set_at(seen, path, copy.deepcopy(value))
                    except (KeyError, TypeError, StopIteration, AttributeError):
                        pass  # the cluster lacks the field's parent: left as read
        projected.append(seen)
        if seen != obj:
            what = f"{obj.get('kind')} {(obj.get('metadata') or {}).get('name')}"
            if seen == ABSENT:
                differences.append(f"{what}: missing on the cluster")
                continue
            found = drift.values_by_path(seen) if isinstance(seen, dict) else {}
            for path, value in drift.values_by_path(obj).items():
                if found.get(path) != value:
                    differences.append(f"{what}: {path} is {str(found.get(path, ABSENT))[:80]} on the cluster, "
                                       f"{str(value)[:80]} applied")
    return rendering.objects_digest(projected), differences[:MAX_DIFFERENCES]


# ---------------------------------------------------------------------------------------------
# The receipt


def _at(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def receipt(rollout: Rollout) -> dict:
    """Every target of the rollout with its evidence (see the module's docstring), in stage and cluster order."""
    stages = list(rollout.stages.order_by("index").prefetch_related("approvals__user"))
    targets: dict[int, list[Target]] = {}
    for t in Target.objects.filter(stage__rollout=rollout).select_related("cluster", "applied_revision").order_by(
            "cluster__name"):
        targets.setdefault(t.stage_id, []).append(t)
    clusters = []
    for stage in stages:
        covering = [{"by": a.user.get_username(), "at": _at(a.created_at), "expires_at": _at(a.expires_at),
                     "conditions": a.conditions or {}, "comment": a.comment}
                    for a in stage.approvals.all() if a.decision == Decision.APPROVE and a.voided_at is None
                    and (stage.started_at is None or a.created_at <= stage.started_at)]
        for t in targets.get(stage.pk, []):
            approved = (stage.approved_digests or {}).get(str(t.cluster_id), "")
            clusters.append({
                "cluster": t.cluster.name, "environment": t.cluster.environment, "stage": stage.name,
                "stage_index": stage.index, "state": t.state,
                "applied_revision": t.applied_revision.number if t.applied_revision else None,
                "sent_digest": t.rendered_digest, "approved_digest": approved or None,
                "read_back_digest": t.read_back_digest or None,
                "matches": bool(t.read_back_digest) and t.read_back_digest == (approved or t.rendered_digest),
                "differences": t.read_back_differences, "health": t.observed, "verified_at": _at(t.verified_at),
                "approvals": covering if stage.approvals_required else [],
            })
    return {"format": FORMAT, "rollout": rollout.pk, "application": rollout.application.name,
            "namespace": rollout.application.namespace, "revision": rollout.revision.number,
            "revision_digest": rollout.revision.digest, "state": rollout.state,
            "requested_by": rollout.requested_by.get_username() if rollout.requested_by else None,
            "created_at": _at(rollout.created_at), "finished_at": _at(rollout.finished_at),
            "issued_at": timezone.now().isoformat(), "clusters": clusters}


CSV_HEADER = ["cluster", "environment", "stage", "state", "applied_revision", "sent_digest", "approved_digest",
              "read_back_digest", "matches", "verified_at", "approved_by", "differences"]


def csv_rows(data: dict) -> Iterable[list]:
    for c in data["clusters"]:
        yield [c["cluster"], c["environment"], c["stage"], c["state"], c["applied_revision"] or "", c["sent_digest"],
               c["approved_digest"] or "", c["read_back_digest"] or "", "yes" if c["matches"] else "no",
               c["verified_at"] or "", " ".join(a["by"] for a in c["approvals"]), " | ".join(c["differences"])]


# ---------------------------------------------------------------------------------------------
# Signing


def _canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _private_key() -> Ed25519PrivateKey:
    """FLEETWEB_RECEIPT_KEY (base64 of a 32-byte Ed25519 seed), else one derived from the secret key (HKDF): the same
    in every process, changing only with the secret key."""
    seed = settings.FLEETWEB_RECEIPT_KEY
    if seed:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"fleetweb receipts",
                   info=b"Ed25519 seed").derive(settings.SECRET_KEY.encode())
    return Ed25519PrivateKey.from_private_bytes(derived)


def public_key() -> str:
    """The receipt key's public half, base64 (32 bytes)."""
    raw = _private_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id(public: str) -> str:
    return hashlib.sha256(base64.b64decode(public)).hexdigest()[:16]


def sign(data: dict) -> dict:
    """{"receipt": data, "signature": {"alg", "key_id", "public_key", "value"}}: Ed25519 over the receipt's canonical
    JSON (sorted keys, no spaces, UTF-8)."""
    public = public_key()
    value = base64.b64encode(_private_key().sign(_canonical(data))).decode()
    return {"receipt": data, "signature": {"alg": "Ed25519", "key_id": key_id(public), "public_key": public,
                                           "canonical": "json, sorted keys, separators (',', ':'), UTF-8",
                                           "value": value}}


def verify(signed: dict, *, public: str | None = None) -> bool:
    """Whether `signed` (as `sign` made it) is intact and signed by `public` (default: this Fleetweb's key; a key
    carried inside the document is not trusted by itself)."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public or public_key()))
        key.verify(base64.b64decode(signed["signature"]["value"]), _canonical(signed["receipt"]))
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False
    return True
