"""Talking to a member cluster on a rollout's behalf: apply, read back, remove; never taking over what is not ours.

`renew()` (the engine's lease renewal) runs before every call, so a run that lost its lease stops before its next
call to the cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from inventory import port
from rollouts import manifests, ownership


def not_ours(obj: dict, live: dict) -> str:
    """'' when the live object is Fleetweb's to change or delete for `obj`'s application (its label names that
    application, or only Fleetweb's field manager ever wrote it), else why not."""
    meta = live.get("metadata") or {}
    mine = obj["metadata"]["labels"][manifests.APPLICATION_LABEL]
    owner = (meta.get("labels") or {}).get(manifests.APPLICATION_LABEL)
    if owner == mine:
        return ""
    if owner:
        return f"belongs to the Fleetweb application '{owner}'"
    managers = {entry.get("manager") for entry in meta.get("managedFields") or []}
    if managers == {port.FIELD_MANAGER}:
        return ""
    return "was not created by Fleetweb"


def _live(member: port.Member, obj: dict) -> dict | None:
    try:
        return member.read(manifests.path_of(obj))
    except port.KubeError as exc:
        if exc.http_status == 404:
            return None
        raise


def _name(obj: dict) -> str:
    return f"{obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']}"


def _ownership_refusal(obj: dict, live: dict, cluster, application) -> str:
    """Why the live object is not `application`'s: by Fleetweb's record of its uid, and where there is none (objects
    applied before records were kept), by Fleetweb's mark on it."""
    recorded = ownership.owner_of(cluster, str((live.get("metadata") or {}).get("uid") or ""))
    if recorded is not None:
        return "" if recorded == application.name else f"belongs to the Fleetweb application '{recorded}'"
    return not_ours(obj, live)


def push(cluster, namespace: str, objects: list[dict], *, renew,
         adjust: Callable[[dict, dict | None], dict] | None = None, application=None) -> None:
    """Server-side apply the namespace (when missing) and every object; `renew()` runs before each call. An object
    that exists and is not Fleetweb's is never taken over: the target fails naming it (forced apply would
    silently take the fields of whoever made it). `adjust(object, live or None)`: what to apply instead of the
    object (drift's Re-apply keeps the live value of fields the application leaves to others)."""
    with port.connect(cluster) as member:
        renew()
        try:
            member.read(f"/api/v1/namespaces/{namespace}")
            exists = True
        except port.KubeError as exc:
            if exc.http_status != 404:
                raise
            exists = False
        if application is not None:
            # The namespace is someone's: the application's own team's (or the platform's), or not to be touched.
            refusal = (ownership.namespace_refusal(application, cluster, exists=exists)
                       or ownership.claim_namespace(application, cluster))
            if refusal:
                raise port.KubeError("conflict", f"{refusal}: nothing applied", http_status=409)
        if not exists:
            renew()
            member.apply(f"/api/v1/namespaces/{namespace}", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "fleetweb"}}})
        conflicts, applying = [], []
        for obj in objects:  # every object checked before any is applied: a conflict leaves the cluster as it was
            renew()
            live = _live(member, obj)
            reason = ""
            if live is not None:
                reason = (_ownership_refusal(obj, live, cluster, application) if application is not None
                          else not_ours(obj, live))
            if reason:
                conflicts.append(f"{_name(obj)} already exists and {reason}")
            applying.append(adjust(obj, live) if adjust is not None else obj)
        if conflicts:
            raise port.KubeError("conflict", "; ".join(conflicts) + ": Fleetweb does not take over objects it did "
                                 "not create (rename them in the manifests, or delete them first)", http_status=409)
        for obj in applying:
            renew()
            answer = member.apply(manifests.path_of(obj), obj)
            if application is not None:
                ownership.record_applied(application, cluster, answer)


def read_back(cluster, objects: list[dict], *, renew) -> list[tuple[dict, dict]]:
    """(object, live object) for every workload among `objects`."""
    live = []
    with port.connect(cluster) as member:
        for obj in objects:
            if obj["kind"] in manifests.WORKLOADS:
                renew()
                live.append((obj, member.read(manifests.path_of(obj))))
    return live


def read_all(cluster, objects: list[dict], *, renew) -> list[dict | None]:
    """What the cluster holds of each of `objects` (None: gone), for the receipt's read-back digest."""
    with port.connect(cluster) as member:
        out = []
        for obj in objects:
            renew()
            out.append(_live(member, obj))
        return out


def remove(cluster, objects: list[dict], *, renew, application=None) -> list[str]:
    """Delete the objects that are the application's; return the names of those left alone because they are not."""
    left = []
    with port.connect(cluster) as member:
        for obj in reversed(objects):
            renew()
            live = _live(member, obj)
            if live is None:
                continue
            reason = (_ownership_refusal(obj, live, cluster, application) if application is not None
                      else not_ours(obj, live))
            if reason:
                left.append(f"{_name(obj)} ({reason})")
                continue
            renew()
            member.delete(manifests.path_of(obj))
            ownership.forget(cluster, str((live.get("metadata") or {}).get("uid") or ""))
    return left
