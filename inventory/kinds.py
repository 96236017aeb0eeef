"""The one table of what a sync collects from each member cluster.

One `Kind` entry says where the LIST lives (path, API group, resource: the least-privilege ClusterRole, the
attach permission check and the collector all read it), which `msgspec` struct its pages decode into, how the
collector folds its items into the snapshot (`fold`, a `collector._Reader.fold_<fold>` method), and which stored
rows it becomes (`stored_as`: the model whose tab, API, filters and serializer show it). A new workload-like kind
is one entry here plus a `WorkloadKind` choice.

A kind with a model of its own is one entry with `row` (one stored row per item: uid, name and the model's fields),
`stored_as` (its model in the inventory app, an `InventoryModel`) and `tab` (the cluster page's tab that lists it,
`inventory/partials/_tab_<tab>.html` when it has a template of its own, else a plain table of its columns): the
collector folds it (`fold="rows"`), the sync writes it (only the rows that changed; gone ones pruned after a complete
sync) and the cluster page shows it, all by looping over this table (`register` adds one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import msgspec

from inventory import decode


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    path: str
    group: str
    resource: str
    item: type
    fold: str
    stored_as: str = ""  # model label in `inventory`, empty when only counted or folded into another kind's rows
    row: Callable[[Any], dict] | None = None  # a kind with its own model: one row per decoded item (fold "rows")
    tab: str = ""  # the cluster page's tab listing its rows
    ordering: tuple[str, ...] = ("namespace", "name")  # of its tab
    needs: tuple[str, ...] = ()  # kinds its fold reads too (a sync of what changed reads them with it)

    @property
    def rbac_label(self) -> str:
        return self.resource + (f".{self.group}" if self.group else "")


KINDS: tuple[Kind, ...] = (
    Kind("Node", "/api/v1/nodes", "", "nodes", decode.Node, "node", "Node"),
    Kind("Namespace", "/api/v1/namespaces", "", "namespaces", decode.Namespace, "namespace", "Namespace"),
    Kind("Deployment", "/apis/apps/v1/deployments", "apps", "deployments", decode.Workload, "workload", "Workload"),
    Kind("StatefulSet", "/apis/apps/v1/statefulsets", "apps", "statefulsets", decode.Workload, "workload", "Workload"),
    Kind("DaemonSet", "/apis/apps/v1/daemonsets", "apps", "daemonsets", decode.Workload, "workload", "Workload"),
    # Before Pods: a Pod's owner is its ReplicaSet, whose owner is the Deployment the pod counts for.
    Kind("ReplicaSet", "/apis/apps/v1/replicasets", "apps", "replicasets", decode.ReplicaSet, "owners"),
    Kind("CronJob", "/apis/batch/v1/cronjobs", "batch", "cronjobs", decode.CronJob, "cronjob", "Workload"),
    Kind("Job", "/apis/batch/v1/jobs", "batch", "jobs", decode.Workload, "workload", "Workload"),
    Kind("Pod", "/api/v1/pods", "", "pods", decode.Pod, "pod", "ProblemPod", needs=("ReplicaSet",)),
    Kind("ResourceQuota", "/api/v1/resourcequotas", "", "resourcequotas", decode.NamespacedObject, "quota"),
    Kind("LimitRange", "/api/v1/limitranges", "", "limitranges", decode.NamespacedObject, "limit_range"),
)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
NAMES: frozenset[str] = frozenset(BY_NAME)


def closure(names) -> frozenset[str]:
    """These kinds and those their folds need (a sync of what changed reads them together)."""
    out = set(names)
    todo = list(out)
    while todo:
        for need in BY_NAME[todo.pop()].needs:
            if need not in out:
                out.add(need)
                todo.append(need)
    return frozenset(out)


def by_path(paths) -> frozenset[str]:
    """The names of the collected kinds at these LIST paths (others are ignored)."""
    wanted = set(paths)
    return frozenset(kind.name for kind in KINDS if kind.path in wanted)


def _decoder(kind: Kind) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(decode.ObjectList[kind.item])  # type: ignore[name-defined]


_DECODERS: dict[str, msgspec.json.Decoder] = {k.name: _decoder(k) for k in KINDS}


def register(kind: Kind) -> Kind:
    """Collect one more kind (its LIST, decoder, fold, rows and tab come with its entry)."""
    global KINDS, NAMES
    if kind.name in BY_NAME:
        raise ValueError(f"kind {kind.name} is registered already")
    if kind.row is not None and (kind.fold != "rows" or not kind.stored_as):
        raise ValueError(f"kind {kind.name}: a row function needs fold='rows' and the model it is stored as")
    KINDS = (*KINDS, kind)
    BY_NAME[kind.name] = kind
    NAMES = frozenset(BY_NAME)
    _DECODERS[kind.name] = _decoder(kind)
    return kind


def stored() -> list[Kind]:
    """The kinds stored as rows of a model of their own (fold "rows")."""
    return [k for k in KINDS if k.row is not None]


def decode_page(kind: str, page: bytes) -> decode.ObjectList:
    """Decode one LIST page of `kind` into its entry's struct."""
    try:
        return _DECODERS[kind].decode(page)
    except msgspec.DecodeError as exc:
        raise decode.DecodeError(f"{kind} list is not valid: {exc}") from None
    except RecursionError:
        raise decode.DecodeError(f"{kind} list nests too deeply") from None


def rbac_rules() -> dict[str, list[str]]:
    """API group -> resources to get/list/watch, for the least-privilege ClusterRole."""
    rules: dict[str, list[str]] = {}
    for kind in KINDS:
        rules.setdefault(kind.group, []).append(kind.resource)
    return rules
