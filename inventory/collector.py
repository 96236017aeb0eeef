"""Fetch phase of a sync: read every collected kind of one cluster into a Snapshot.

Network first, database after: the Snapshot holds rows for nodes, namespaces, workloads and
problem pods (pods themselves are only counted as their pages stream past), so memory grows
with the cluster's workloads and nodes, never with its pods. `inventory.services` writes it.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict

from django.conf import settings
from django.template.defaultfilters import pluralize

from inventory import decode, kinds, nodefacts, port
from inventory.choices import ClusterStatus, WorkloadKind, workload_unavailable

MAX_LIST_RESTARTS = 3


@dataclasses.dataclass
class PodCounts:
    total: int = 0
    ready: int = 0
    pending: int = 0
    running: int = 0
    failed: int = 0
    crashlooping: int = 0
    restarts: int = 0


@dataclasses.dataclass
class Snapshot:
    """What one sync read from a cluster."""

    version: dict = dataclasses.field(default_factory=dict)
    nodes: list[dict] = dataclasses.field(default_factory=list)
    namespaces: list[dict] = dataclasses.field(default_factory=list)
    workloads: dict[str, list[dict]] = dataclasses.field(default_factory=dict)
    problem_pods: list[dict] = dataclasses.field(default_factory=list)
    pods_by_workload: dict[str, PodCounts] = dataclasses.field(default_factory=lambda: defaultdict(PodCounts))
    pods_by_namespace: dict[str, PodCounts] = dataclasses.field(default_factory=lambda: defaultdict(PodCounts))
    node_providers: Counter = dataclasses.field(default_factory=Counter)
    quotas_by_namespace: Counter = dataclasses.field(default_factory=Counter)
    limit_ranges_by_namespace: Counter = dataclasses.field(default_factory=Counter)
    rows: dict[str, list[dict]] = dataclasses.field(default_factory=dict)  # kinds with a model of their own
    complete: set[str] = dataclasses.field(default_factory=set)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    timings_ms: dict[str, int] = dataclasses.field(default_factory=dict)
    bytes_read: int = 0
    pod_total: int = 0
    only: frozenset[str] | None = None  # a sync of what changed: just these kinds were read

    @property
    def is_complete(self) -> bool:
        return not self.errors and kinds.NAMES <= self.complete

    @property
    def read_all_it_meant(self) -> bool:
        """Every kind this snapshot set out to read was read whole (all kinds, or those a change named)."""
        return not self.errors and (kinds.NAMES if self.only is None else self.only) <= self.complete


class _Reader:
    """Turns decoded items of each kind into rows; `reset(kind)` forgets a kind after a 410 restart."""

    def __init__(self, snapshot: Snapshot):
        self.s = snapshot
        self.rs_owner: dict[str, str] = {}  # ReplicaSet uid -> Deployment uid

    def reset(self, kind: str) -> None:
        """Forget what was read of `kind` (before its first page, and again after a 410 restart)."""
        self.s.counts[kind] = 0
        getattr(self, f"reset_{kinds.BY_NAME[kind].fold}")(kind)

    def add(self, kind: str, items: list) -> None:
        self.s.counts[kind] = self.s.counts.get(kind, 0) + len(items)
        getattr(self, f"fold_{kinds.BY_NAME[kind].fold}")(kind, items)

    def reset_node(self, _kind: str) -> None:
        self.s.nodes.clear()
        self.s.node_providers.clear()

    def reset_namespace(self, _kind: str) -> None:
        self.s.namespaces.clear()

    def reset_owners(self, _kind: str) -> None:
        self.rs_owner.clear()

    def reset_quota(self, _kind: str) -> None:
        self.s.quotas_by_namespace.clear()

    def reset_limit_range(self, _kind: str) -> None:
        self.s.limit_ranges_by_namespace.clear()

    def reset_pod(self, _kind: str) -> None:
        s = self.s
        s.problem_pods.clear()
        s.pods_by_workload.clear()
        s.pods_by_namespace.clear()
        s.pod_total = 0

    def reset_rows(self, kind: str) -> None:
        self.s.rows[kind] = []

    def fold_rows(self, kind: str, items: list) -> None:
        """A kind with a model of its own: its entry's `row` makes each stored row."""
        row = kinds.BY_NAME[kind].row
        assert row is not None  # kinds.register checks it
        self.s.rows.setdefault(kind, []).extend(row(item) for item in items)

    def reset_workload(self, kind: str) -> None:
        self.s.workloads[kind] = []

    reset_cronjob = reset_workload

    @staticmethod
    def _meta(m: decode.Meta) -> dict:
        return {"uid": m.uid, "name": m.name, "labels": dict(m.labels), "created": m.creation_timestamp}

    def fold_node(self, _kind: str, items: list[decode.Node]) -> None:
        for n in items:
            labels = n.metadata.labels
            provider = nodefacts.detect_provider(n.spec.provider_id, labels)
            self.s.node_providers[provider] += 1
            cond = {c.type: c.status for c in n.status.conditions}
            info = n.status.node_info
            self.s.nodes.append({
                **self._meta(n.metadata),
                "roles": nodefacts.node_roles(labels),
                "kubelet_version": info.kubelet_version,
                "os_image": info.os_image,
                "kernel_version": info.kernel_version,
                "container_runtime": info.container_runtime_version,
                "architecture": info.architecture,
                "zone": labels.get("topology.kubernetes.io/zone", ""),
                "region": labels.get("topology.kubernetes.io/region", ""),
                "instance_type": labels.get("node.kubernetes.io/instance-type", ""),
                "pool": nodefacts.node_pool(labels, settings.FLEETWEB_NODE_POOL_LABEL),
                "provider_id": n.spec.provider_id,
                "cpu_capacity_millis": decode.cpu_millis(n.status.capacity.get("cpu")),
                "memory_capacity_bytes": decode.to_int(n.status.capacity.get("memory")),
                "pods_capacity": decode.to_int(n.status.capacity.get("pods")),
                "cpu_allocatable_millis": decode.cpu_millis(n.status.allocatable.get("cpu")),
                "memory_allocatable_bytes": decode.to_int(n.status.allocatable.get("memory")),
                "pods_allocatable": decode.to_int(n.status.allocatable.get("pods")),
                "ready": cond.get("Ready") == "True",
                "pressure": sorted(t for t, v in cond.items() if t.endswith("Pressure") and v == "True")
                + (["NetworkUnavailable"] if cond.get("NetworkUnavailable") == "True" else []),
                "unschedulable": n.spec.unschedulable,
                "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in n.spec.taints],
            })

    def fold_namespace(self, _kind: str, items: list[decode.Namespace]) -> None:
        for ns in items:
            self.s.namespaces.append({
                **self._meta(ns.metadata),
                "phase": ns.status.phase,
                "pod_security_enforce": ns.metadata.labels.get("pod-security.kubernetes.io/enforce", ""),
            })

    def fold_quota(self, _kind: str, items: list[decode.NamespacedObject]) -> None:
        self.s.quotas_by_namespace.update(o.metadata.namespace for o in items)

    def fold_limit_range(self, _kind: str, items: list[decode.NamespacedObject]) -> None:
        self.s.limit_ranges_by_namespace.update(o.metadata.namespace for o in items)

    def fold_owners(self, _kind: str, items: list[decode.ReplicaSet]) -> None:
        for rs in items:
            for ref in rs.metadata.owner_references:
                if ref.controller and ref.kind == "Deployment":
                    self.rs_owner[rs.metadata.uid] = ref.uid

    def fold_cronjob(self, kind: str, items: list[decode.CronJob]) -> None:
        rows = self.s.workloads.setdefault(kind, [])
        for cj in items:
            template = cj.spec.job_template.spec.template
            rows.append({
                **self._meta(cj.metadata),
                "kind": kind,
                "namespace": cj.metadata.namespace,
                "replicas_desired": 0 if cj.spec.suspend else 1,
                "replicas_ready": len(cj.status.active),
                "replicas_available": len(cj.status.active),
                "replicas_updated": 0,
                "generation": cj.metadata.generation,
                "observed_generation": cj.metadata.generation,
                "images": decode.images_of(template),
                "pod_template": decode.normalize_template(template),
            })

    def fold_workload(self, kind: str, items: list[decode.Workload]) -> None:
        rows = self.s.workloads.setdefault(kind, [])
        for w in items:
            st = w.status
            if kind == WorkloadKind.DAEMONSET:
                desired, ready = st.desired_number_scheduled, st.number_ready
                available, updated = st.number_available, st.updated_number_scheduled
            elif kind == WorkloadKind.JOB:
                desired = w.spec.completions if w.spec.completions is not None else (w.spec.parallelism or 1)
                active = st.active if isinstance(st.active, int) else 0
                ready = st.ready if st.ready is not None else active
                available, updated = st.succeeded, st.succeeded
            else:
                desired = w.spec.replicas if w.spec.replicas is not None else 1
                ready, available, updated = st.ready_replicas, st.available_replicas, st.updated_replicas
            rows.append({
                **self._meta(w.metadata),
                "kind": kind,
                "namespace": w.metadata.namespace,
                "replicas_desired": desired,
                "replicas_ready": ready,
                "replicas_available": available,
                "replicas_updated": updated,
                "generation": w.metadata.generation,
                "observed_generation": st.observed_generation,
                "images": decode.images_of(w.spec.template),
                "pod_template": decode.normalize_template(w.spec.template),
            })

    def _owner_of(self, pod: decode.Pod) -> tuple[str, str, str]:
        """(workload uid, kind, name) owning a pod, through its ReplicaSet for Deployments."""
        for ref in pod.metadata.owner_references:
            if not ref.controller:
                continue
            if ref.kind == "ReplicaSet":
                return self.rs_owner.get(ref.uid, ""), "Deployment", ref.name.rsplit("-", 1)[0]
            return ref.uid, ref.kind, ref.name
        return "", "", ""

    def fold_pod(self, _kind: str, items: list[decode.Pod]) -> None:
        s = self.s
        for pod in items:
            s.pod_total += 1
            owner_uid, owner_kind, owner_name = self._owner_of(pod)
            problem = decode.pod_problem(pod)
            phase = pod.status.phase
            ready = problem is None or problem[3]
            for counts in (s.pods_by_workload[owner_uid] if owner_uid else None,
                           s.pods_by_namespace[pod.metadata.namespace]):
                if counts is None:
                    continue
                counts.total += 1
                counts.ready += 1 if (ready and phase == "Running") else 0
                counts.pending += 1 if phase == "Pending" else 0
                counts.running += 1 if phase == "Running" else 0
                counts.failed += 1 if phase == "Failed" else 0
                if problem:
                    counts.restarts += problem[2]
                    counts.crashlooping += 1 if problem[4] else 0
            if problem:
                reason, message, restarts, ready_flag, _ = problem
                s.problem_pods.append({
                    **self._meta(pod.metadata),
                    "namespace": pod.metadata.namespace,
                    "workload_kind": owner_kind,
                    "workload_name": owner_name,
                    "node_name": pod.spec.node_name,
                    "phase": phase,
                    "reason": reason[:128],
                    "message": message[:2000],
                    "ready": ready_flag,
                    "restarts": restarts,
                })


def fetch(member: port.Member, *, only: frozenset[str] | None = None) -> Snapshot:
    """Read /version and every collected kind (or `only` those kinds, without the version: a sync of what changed);
    fatal errors raise KubeError, others are recorded."""
    snapshot = Snapshot(only=only)
    chosen = [k for k in kinds.KINDS if only is None or k.name in only]
    member.warm([kind.path for kind in chosen], version=only is None)  # through an agent: all asked for at once
    if only is None:
        snapshot.version = member.version()
    reader = _Reader(snapshot)
    for kind, path in ((k.name, k.path) for k in chosen):
        started = time.monotonic()
        for attempt in range(MAX_LIST_RESTARTS + 1):
            reader.reset(kind)
            try:
                for page in port.prefetch(member.pages(path), more=_continues):
                    reader.add(kind, kinds.decode_page(kind, page).items)
            except port.ListRestarted:
                if attempt == MAX_LIST_RESTARTS:
                    snapshot.errors[kind] = f"list of {kind} kept expiring (410 Gone) after {attempt} restarts"
                continue
            except port.KubeError as exc:
                if exc.fatal:  # the cluster did not answer or refused who we are: the sync ends
                    snapshot.bytes_read = member.bytes_read
                    raise
                snapshot.errors[kind] = exc.message
            except decode.DecodeError as exc:
                snapshot.errors[kind] = str(exc)
            else:
                snapshot.complete.add(kind)
            break
        snapshot.timings_ms[kind] = int((time.monotonic() - started) * 1000)
    snapshot.bytes_read = member.bytes_read
    return snapshot


def _continues(page: bytes) -> bool:
    """Whether a LIST page says more pages follow (a page that is no list: no; the paging itself refuses it)."""
    try:
        return bool(decode.decode_list_meta(page))
    except decode.DecodeError:
        return False


def health(snapshot: Snapshot, unavailable: int | None = None, *, nodes: tuple[int, int] | None = None,
           crashloops: int | None = None) -> tuple[str, str]:
    """(status, reason) of a cluster that answered: connected unless something is visibly wrong.

    `unavailable` is the stored count after the write (it keeps the last known pod counts when only the pod list
    failed); without it the snapshot's own rows are counted by the same rule. `nodes` (total, ready) and
    `crashloops` are the stored figures, for a snapshot that did not read nodes or pods (a sync of what changed)."""
    problems = []
    total, ready = nodes if nodes is not None else (len(snapshot.nodes), sum(1 for n in snapshot.nodes if n["ready"]))
    if total - ready:
        problems.append(f"{total - ready} of {total} nodes NotReady")
    if unavailable is None:
        unavailable = unavailable_workloads(snapshot)
    if unavailable:
        problems.append(f"{unavailable} workload{pluralize(unavailable)} unavailable")
    if crashloops is None:
        crashloops = sum(1 for p in snapshot.problem_pods if p["reason"] == "CrashLoopBackOff")
    if crashloops:
        problems.append(f"{crashloops} pod{pluralize(crashloops)} crash-looping")
    if snapshot.errors:
        problems.append("could not list " + ", ".join(sorted(snapshot.errors)))
    if problems:
        return ClusterStatus.DEGRADED, "; ".join(problems)
    return ClusterStatus.CONNECTED, ""


def unavailable_workloads(snapshot: Snapshot) -> int:
    """Workloads of the snapshot unavailable by the one rule (`inventory.choices.workload_unavailable`)."""
    count = 0
    for kind, rows in snapshot.workloads.items():
        for row in rows:
            pods = snapshot.pods_by_workload.get(row["uid"])
            if workload_unavailable(kind, desired=row["replicas_desired"], available=row["replicas_available"],
                                    crashlooping=pods.crashlooping if pods else 0):
                count += 1
    return count
