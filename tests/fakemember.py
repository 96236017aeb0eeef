"""The member port's fake adapter for unit tests: an in-memory API server per cluster.

`FakeMembers().install(monkeypatch)` puts it in `inventory.port.ADAPTERS` (and behind `port.connect_with`), so every
caller (sync, connection test, enforcement, dry run, rollouts, drift) reaches it exactly as it reaches a real member
through the port, and the code above the port runs unchanged. The end-to-end tests use real members instead.

What it keeps per cluster: objects by path (server-side apply stores them with a uid, a generation and Fleetweb's
field manager), Fleetweb's admission policies, every call made. What a test may set: a cluster's version, an error
every call (or only applies) to a cluster raises, what permission reviews answer, a hook run on each apply, and how a
workload's status reads back (`observe`).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterator

from inventory import port

_uids = itertools.count(1)
WORKLOAD_RESOURCES = {"deployments", "statefulsets", "daemonsets"}


def not_found(path: str) -> port.KubeError:
    return port.KubeError("http", f"GET {path}: 404 Not Found", http_status=404)


def ready_status(obj: dict) -> dict:
    """A workload that rolled out: every replica updated and available."""
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    generation = (obj.get("metadata") or {}).get("generation", 1)
    return {"observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
            "availableReplicas": replicas, "readyReplicas": replicas}


class FakeMembers:
    """The fake fleet: every cluster's in-memory API server, by cluster name."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = defaultdict(dict)  # cluster -> path -> object
        self.calls: list[tuple[str, str, str]] = []  # (cluster, verb, path)
        self.versions: dict[str, dict] = {}
        self.down: dict[str, port.KubeError] = {}  # cluster -> raised by every call
        self.refuse_apply: dict[str, port.KubeError] = {}  # cluster -> raised by every (real or dry-run) apply
        self.allowed: bool = True  # what every permission review answers
        self.on_apply: Callable[[str, str, dict], None] | None = None  # (cluster, path, body), before it is stored
        self.pushes: list[tuple[str, list[dict]]] = []  # (cluster, objects applied for real) per opened connection

    def install(self, monkeypatch) -> FakeMembers:
        monkeypatch.setitem(port.ADAPTERS, "direct", self.adapter)
        monkeypatch.setattr(port, "connect_with",
                            lambda credentials, *, insecure=False: FakeMember(self, port.server_of(credentials)))
        return self

    def adapter(self, clusters: list) -> dict[int, port.Opener]:
        return {cluster.pk: lambda name=cluster.name: FakeMember(self, name) for cluster in clusters}

    def observe(self, cluster: str, path: str, obj: dict) -> dict:
        """How an object reads back; workloads have rolled out (override for other worlds)."""
        if _resource(path) in WORKLOAD_RESOURCES:
            obj["status"] = ready_status(obj)
        return obj

    def version(self, cluster: str) -> dict:
        return self.versions.get(cluster, {"major": "1", "minor": "36", "gitVersion": "v1.36.0"})


def _parse(path: str) -> tuple[str, str, str, str] | None:
    """(api prefix, namespace, resource, name) of an API path; name '' for a collection; None for other paths."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        prefix, rest = "/api/v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        prefix, rest = "/" + "/".join(parts[:3]), parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        return (prefix, rest[1], rest[2], rest[3] if len(rest) > 3 else "") if len(rest) <= 4 else None
    if 1 <= len(rest) <= 2:
        return prefix, "", rest[0], rest[1] if len(rest) > 1 else ""
    return None


def _resource(path: str) -> str:
    parsed = _parse(path)
    return parsed[2] if parsed else ""


def _collection(path: str) -> tuple[str, str]:
    """(namespaced collection path, cluster-wide collection path) of an object's path."""
    prefix, namespace, resource, _name = _parse(path) or ("", "", "", "")
    if namespace:
        return f"{prefix}/namespaces/{namespace}/{resource}", f"{prefix}/{resource}"
    return f"{prefix}/{resource}", f"{prefix}/{resource}"


def _selected(obj: dict, query: list | None) -> bool:
    for key, value in query or []:
        if key == "labelSelector" and value:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            for term in value.split(","):
                name, _, wanted = term.partition("=")
                if labels.get(name) != wanted:
                    return False
    return True


class FakeMember:
    """One opened connection to a fake member: the port's whole protocol."""

    def __init__(self, world: FakeMembers, cluster: str) -> None:
        self.world, self.cluster = world, cluster
        self.bytes_read = 0
        self.applied: list[dict] = []

    def _call(self, verb: str, path: str) -> None:
        self.world.calls.append((self.cluster, verb, path))
        if self.cluster in self.world.down:
            raise self.world.down[self.cluster]

    @property
    def _store(self) -> dict[str, dict]:
        return self.world.objects[self.cluster]

    def version(self) -> dict:
        self._call("get", "/version")
        return dict(self.world.version(self.cluster))

    def _items(self, path: str, query: list | None = None) -> list[dict]:
        return [self.world.observe(self.cluster, p, copy.deepcopy(o)) for p, o in sorted(self._store.items())
                if path in _collection(p) and _selected(o, query)]

    def pages(self, path: str, *, limit: int | None = None) -> Iterator[bytes]:
        self._call("list", path)
        page = json.dumps({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                           "items": self._items(path)}).encode()
        self.bytes_read += len(page)
        yield page

    def warm(self, paths: list[str], *, limits: dict[str, int] | None = None, version: bool = False,
             lines: list[tuple[str, bytes, int]] | None = None) -> None:
        pass  # every read of the fake answers at once

    def take_changes(self, *, read_lists: bool) -> list[str] | None:
        return None  # the fake reports no changes: every sync reads everything

    def read(self, path: str, *, query: list | None = None) -> dict:
        self._call("get", path)
        if path in self._store:
            return self.world.observe(self.cluster, path, copy.deepcopy(self._store[path]))
        if path == port.ADMISSION_API:
            return {"resources": [{"name": "validatingadmissionpolicies"},
                                  {"name": "validatingadmissionpolicybindings"}]}
        parsed = _parse(path)
        if parsed and not parsed[3]:  # a collection
            return {"kind": "List", "items": self._items(path, query)}
        raise not_found(path)

    def metric_lines(self, path: str, prefix: bytes, *, max_bytes: int) -> list[bytes]:
        self._call("get", path)
        return []

    def apply(self, path: str, body: dict, *, dry_run: bool = False, strict: bool = False, what: str = "") -> dict:
        self._call("dry-run" if dry_run else "apply", path)
        if self.cluster in self.world.refuse_apply:
            raise self.world.refuse_apply[self.cluster]
        if self.world.on_apply is not None and not dry_run:
            self.world.on_apply(self.cluster, path, body)
        current = self._store.get(path)
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        old = (current or {}).get("metadata") or {}
        meta["uid"] = old.get("uid") or f"uid-{next(_uids)}"
        meta["generation"] = old.get("generation", 0) + (0 if current and current.get("spec") == obj.get("spec")
                                                         else 1)
        meta["managedFields"] = [{"manager": port.FIELD_MANAGER, "operation": "Apply"}]
        if not dry_run:
            self._store[path] = obj
            if body.get("kind") != "Namespace":
                self.applied.append(copy.deepcopy(body))
        return copy.deepcopy(obj)

    def delete(self, path: str) -> bool:
        self._call("delete", path)
        return self._store.pop(path, None) is not None

    def review(self, attributes: dict) -> tuple[bool, str]:
        self._call("review", json.dumps(attributes, sort_keys=True))
        return self.world.allowed, "" if self.world.allowed else "the fake member says no"

    def close(self) -> None:
        if self.applied:
            self.world.pushes.append((self.cluster, self.applied))
            self.applied = []

    def __enter__(self) -> FakeMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def put(world: FakeMembers, cluster: str, path: str, obj: dict) -> None:
    """An object someone else made in the member (not through Fleetweb)."""
    obj = copy.deepcopy(obj)
    obj.setdefault("metadata", {}).setdefault("uid", f"uid-{next(_uids)}")
    world.objects[cluster][path] = obj
