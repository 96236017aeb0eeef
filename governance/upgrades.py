"""Upgrade readiness: for each cluster, what stands between it and its next Kubernetes minor (or the target its
groups set), named with how to fix it, and a verdict.

Built from what syncs stored (versions, node pools, add-ons, and the deprecated-API and CRD facts
`inventory.readiness` reads): live on a cluster's Upgrade tab and API detail; for the fleet's plan, stored in
`UpgradeReadiness` by every evaluation (which follows each sync and change) and hourly, so the plan of a
thousand clusters is one ordered query. Blockers:

- built-in API versions the cluster's clients still call that the target no longer serves (the API server's own
  `apiserver_requested_deprecated_apis` metric; its `removed_release`, else `governance.api_removals`);
- CRDs still storing objects at a version they deprecate or no longer serve;
- node pools whose kubelets would fall outside the skew policy once the control plane is at the target;
- add-ons below what the target needs, where `ADDON_REQUIREMENTS` knows it.

Without the facts (never read, or Fleetweb may not read /metrics) the verdict is "unknown", never "ready".
Computing it is one query per kind of fact, whatever the number of clusters.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from governance import kubernetes_releases as releases
from governance.api_removals import REMOVALS
from governance.models import UpgradeReadiness
from inventory import selectors
from inventory.addons import version_key, version_of
from inventory.models import (
    Cluster,
    ClusterAddon,
    ClusterGroup,
    CustomResourceDefinition,
    DeprecatedAPIRequest,
    Node,
)
from inventory.services import membership

READY, BLOCKED, UNKNOWN, CURRENT, NEWEST = "ready", "blocked", "unknown", "current", "newest"
# NEWEST: no newer minor is released yet (and no group sets a target); what the next one will need is shown as
# warnings, never as "blocked".
VERDICTS = {READY: "Ready", BLOCKED: "Blocked", UNKNOWN: "Unknown", CURRENT: "At target", NEWEST: "Newest release"}


@dataclasses.dataclass(frozen=True)
class Item:
    """One blocker or warning: what, about which object, and how to fix it."""

    code: str
    subject: str
    message: str
    fix: str

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class Support(NamedTuple):
    """Named, not indexed, in templates: `support.0` is looked up as a key, then an attribute, then through dir()."""

    text: str
    css: str


@dataclasses.dataclass
class Readiness:
    cluster: Cluster
    current: str = ""  # "1.35"
    target: str = ""  # "1.36"
    target_from: str = ""  # "next minor" or "group <name>"
    target_released: bool = True
    steps: list[str] = dataclasses.field(default_factory=list)
    end_of_support: datetime.date | None = None
    days_left: int | None = None
    verdict: str = UNKNOWN
    blockers: list[Item] = dataclasses.field(default_factory=list)
    warnings: list[Item] = dataclasses.field(default_factory=list)
    missing: list[Item] = dataclasses.field(default_factory=list)  # what could not be checked
    checked_at: datetime.datetime | None = None

    @property
    def verdict_label(self) -> str:
        return VERDICTS[self.verdict]

    @property
    def support(self) -> Support:
        """The days to end of support, for the plan's rows."""
        if self.days_left is None:
            return Support("", "")
        if self.days_left < 0:
            return Support(f"{-self.days_left} days ago", "bad")
        return Support(f"in {self.days_left} days", "warn" if self.days_left < 90 else "muted")

    @property
    def first_steps(self) -> list[str]:
        """What to do first, for the plan's rows: the first two blockers with their fixes, else why unknown."""
        if self.blockers:
            return [f"{b.message} — {b.fix}" for b in self.blockers[:2]]
        return [f"{m.message} — {m.fix}" for m in self.missing[:1]]

    def as_dict(self) -> dict:
        return {"cluster": self.cluster.name, "cluster_id": self.cluster.pk, "environment": self.cluster.environment,
                "kubernetes_version": self.cluster.kubernetes_version, "current": self.current,
                "target": self.target, "target_from": self.target_from, "target_released": self.target_released,
                "steps": self.steps, "end_of_support": self.end_of_support, "days_left": self.days_left,
                "verdict": self.verdict, "blockers": [b.as_dict() for b in self.blockers],
                "warnings": [w.as_dict() for w in self.warnings], "missing": [m.as_dict() for m in self.missing],
                "checked_at": self.checked_at}


def _text(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


def _parse(text: str) -> tuple[int, int] | None:
    return releases.minor_of(text) if text else None


def allowed_kubelet_skew(target: tuple[int, int]) -> int:
    """Minors a kubelet may be behind the API server: three since 1.28, two before (upstream skew policy)."""
    return 3 if target >= (1, 28) else 2


# Add-ons whose needs the target decides: add-on key -> fn(target minor, version found) -> (blocker?, Item) or None.
def _kube_proxy(target: tuple[int, int], version: str) -> tuple[bool, Item] | None:
    found = version_key(version)
    if found is None or len(found) < 2:
        return None
    skew = allowed_kubelet_skew(target)
    if target[1] - found[1] > skew:
        floor = f"{target[0]}.{target[1] - skew}"
        return True, Item("addon", "kube-proxy", f"kube-proxy {version} would be {target[1] - found[1]} minors "
                                                 f"behind {_text(target)} (at most {skew} allowed)",
                          f"Upgrade kube-proxy to at least {floor} (with its node pools) before the control plane.")
    return None


def _cluster_autoscaler(target: tuple[int, int], version: str) -> tuple[bool, Item] | None:
    found = version_key(version)
    if found is None or len(found) < 2 or tuple(found[:2]) == target:
        return None
    return False, Item("addon", "cluster-autoscaler", f"cluster-autoscaler {version} is built for "
                                                       f"{found[0]}.{found[1]}, not {_text(target)}",
                       f"Upgrade cluster-autoscaler to its {_text(target)} release together with the control plane "
                       "(its minor follows Kubernetes').")


ADDON_REQUIREMENTS: dict[str, Callable[[tuple[int, int], str], tuple[bool, Item] | None]] = {
    "kube-proxy": _kube_proxy,
    "cluster-autoscaler": _cluster_autoscaler,
}


def replacement(group: str, version: str, resource: str) -> str:
    """The API version to move to: the table's replacement, followed while that one is removed too."""
    seen = set()
    entry = REMOVALS.get((group, version, resource))
    answer = ""
    while entry and entry[3] and entry[3] not in seen:
        answer = entry[3]
        seen.add(answer)
        group_version = answer.rsplit("/", 1)
        entry = REMOVALS.get((group_version[0] if len(group_version) == 2 else "", group_version[-1], resource))
    return answer


# Removed APIs no other version of replaces: what takes their place instead.
NO_SUCCESSOR = {
    ("policy", "v1beta1", "podsecuritypolicies"): "PodSecurityPolicy is gone for good: move to Pod Security Admission "
                                                  "(the pod-security.kubernetes.io/* namespace labels) or a policy "
                                                  "engine, and remove the PodSecurityPolicy objects and their clients.",
}


def removed_in(row: DeprecatedAPIRequest) -> str:
    if row.removed_release:
        return row.removed_release
    entry = REMOVALS.get((row.group, row.version, row.resource))
    return entry[2] if entry else ""


# ---------------------------------------------------------------------------------------------
# The fleet's plan


CLUSTER_FIELDS = ("pk", "name", "labels", *selectors.FIELDS, "kubernetes_version", "status", "readiness_checked_at",
                  "readiness_error")


# What a stored readiness says (all but when it was written): a row is written only when one of these changed.
STORED = ("current", "target", "target_from", "target_released", "steps", "end_of_support", "verdict", "blockers",
          "warnings", "missing", "checked_at")


def refresh(clusters: Iterable[Cluster], *, now=None) -> int:
    """Compute the readiness of these clusters (after each evaluation, and hourly for the whole fleet: end of support
    moves with the date) and store those that changed; returns how many were computed. Most evaluations change no
    readiness (its facts are read hourly): rewriting every row each time left the plan's table mostly dead rows,
    which every page of the plan read through."""
    now = now or timezone.now()
    rows = [UpgradeReadiness(
        cluster_id=r.cluster.pk, current=r.current, target=r.target, target_from=r.target_from[:80],
        target_released=r.target_released, steps=r.steps, end_of_support=r.end_of_support, verdict=r.verdict,
        blockers=[b.as_dict() for b in r.blockers], warnings=[w.as_dict() for w in r.warnings],
        missing=[m.as_dict() for m in r.missing], checked_at=r.checked_at, computed_at=now)
        for r in plan(clusters, today=timezone.localdate(now))]
    # What is stored of each cluster still there (one not evaluated yet: all None; one detached meanwhile: absent).
    stored = {pk: tuple(values) for pk, *values in Cluster.objects.filter(
        pk__in=[r.cluster_id for r in rows]).values_list("pk", *(f"upgrade_readiness__{f}" for f in STORED))}
    UpgradeReadiness.objects.bulk_create(
        [r for r in rows if r.cluster_id in stored and stored[r.cluster_id] != tuple(getattr(r, f) for f in STORED)],
        batch_size=500, update_conflicts=True,
        unique_fields=["cluster"], update_fields=[f.name for f in UpgradeReadiness._meta.concrete_fields
                                                  if f.name != "cluster"])
    return len(rows)


def refresh_all(*, chunk: int = 500) -> int:
    done = 0
    ids = list(Cluster.objects.order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(ids), chunk):
        done += refresh(Cluster.objects.filter(pk__in=ids[start:start + chunk]).only(*CLUSTER_FIELDS))
    return done


# What the plan shows of a cluster and its stored readiness (a thousand full cluster rows cost their datetimes).
SHOWN = ("pk", "name", "environment", "kubernetes_version", "readiness_checked_at",
         *(f"upgrade_readiness__{f.name}" for f in UpgradeReadiness._meta.concrete_fields if f.name != "cluster"))


def fleet(clusters: QuerySet[Cluster], *, verdict: str = "") -> QuerySet[Cluster]:
    """The clusters with their stored readiness, earliest end of support first (unknown versions, and clusters
    not evaluated yet, last); `verdict` keeps those with it (not evaluated yet counts as unknown). `tally` reads the
    page's keys in SQL in this order and with this filter: change both."""
    rows = (clusters.select_related("upgrade_readiness").only(*SHOWN)
            .order_by(F("upgrade_readiness__end_of_support").asc(nulls_last=True), "name"))
    if verdict == UNKNOWN:
        rows = rows.filter(Q(upgrade_readiness__verdict=UNKNOWN) | Q(upgrade_readiness__isnull=True))
    elif verdict in VERDICTS:
        rows = rows.filter(upgrade_readiness__verdict=verdict)
    return rows


class Tally(NamedTuple):
    """What the plan's pages show above and below their rows: the clusters of each verdict and of all of them,
    and the primary keys of the page asked for (`tally(keys=…)`), in the plan's order."""

    counts: dict[str, int]
    total: int
    keys: list[int]

    def count(self, verdict: str) -> int:
        """How many rows a list of `verdict` has (every cluster for none, or one not known)."""
        return self.counts[verdict] if verdict in VERDICTS else self.total


def tally(clusters: QuerySet[Cluster], *, verdict: str = "", keys: slice = slice(0, 0)) -> Tally:
    """How many of `clusters` have each verdict (not evaluated yet counts as unknown), how many there are, and the
    primary keys of the rows `keys` of `fleet(clusters, verdict=verdict)` (the page about to be shown).

    One statement: the filtered clusters and their stored readiness are read once, into a CTE that both the counts
    and the page's keys read (PostgreSQL computes a CTE that is read twice once). As two statements (the aggregate,
    then the keys) each read and joined both tables: the prod clusters of a 10,000-cluster fleet took 13-21 ms
    against 7-11 ms, and those of a team member's 1,000, 6-9 ms against 2-4 ms (BENCHMARKS.md, stop 48). The order
    is `fleet`'s: earliest end of support first, none last, then by name."""
    rows = clusters.order_by().values_list("pk", "name", "upgrade_readiness__verdict",
                                           "upgrade_readiness__end_of_support")
    try:
        sql, params = rows.query.sql_with_params()
    except EmptyResultSet:  # a scope of nothing (`none()`)
        return Tally(dict.fromkeys(VERDICTS, 0), 0, [])
    counted = ", ".join(f"COUNT(*) FILTER (WHERE {_VERDICT_IS})" for _ in VERDICTS)
    kept = _VERDICT_IS if verdict in VERDICTS else "%s"
    start, stop = keys.start or 0, max(keys.stop or 0, keys.start or 0)
    with connections[clusters.db].cursor() as cursor:
        cursor.execute(
            f"WITH plan (id, name, verdict, end_of_support) AS ({sql}) "  # read twice: computed once
            f"SELECT COUNT(*), {counted}, ARRAY(SELECT id FROM plan WHERE {kept} "
            "ORDER BY end_of_support ASC NULLS LAST, name ASC LIMIT %s OFFSET %s) FROM plan",
            [*params, *(p for v in VERDICTS for p in _verdict_params(v)),
             *(_verdict_params(verdict) if verdict in VERDICTS else [True]), stop - start, start])
        total, *counts, page = cursor.fetchone()
    return Tally(dict(zip(VERDICTS, counts, strict=True)), total, list(page))


# Whether a row of `tally`'s CTE has a verdict; not evaluated yet (no stored row) is unknown, as in `fleet`.
_VERDICT_IS = "(verdict = %s OR (%s AND verdict IS NULL))"


def _verdict_params(verdict: str) -> list:
    return [verdict, verdict == UNKNOWN]


def stored(cluster: Cluster, *, today=None) -> Readiness:
    """The Readiness a cluster's stored row says (loaded by `fleet`); not evaluated yet: unknown."""
    today = today or timezone.localdate()
    try:
        row = cluster.upgrade_readiness
    except UpgradeReadiness.DoesNotExist:
        return Readiness(cluster=cluster, missing=[Item("facts", cluster.name, "not evaluated yet",
                                                        "It is evaluated after its next sync.")])
    return Readiness(
        cluster=cluster, current=row.current, target=row.target, target_from=row.target_from,
        target_released=row.target_released, steps=row.steps, end_of_support=row.end_of_support,
        days_left=(row.end_of_support - today).days if row.end_of_support else None, verdict=row.verdict,
        blockers=[Item(**b) for b in row.blockers], warnings=[Item(**w) for w in row.warnings],
        missing=[Item(**m) for m in row.missing], checked_at=row.checked_at)


def csv_rows(rows: Iterable[Readiness]) -> Iterable[list]:
    for r in rows:
        c = r.cluster
        yield [c.name, c.environment, c.kubernetes_version, r.end_of_support or "", "" if r.days_left is None
               else r.days_left, r.target, r.target_from, r.verdict, len(r.blockers),
               " | ".join(f"{b.message}: {b.fix}" for b in r.blockers),
               " | ".join(w.message for w in r.warnings), " | ".join(m.message for m in r.missing),
               c.readiness_checked_at.isoformat() if c.readiness_checked_at else ""]


CSV_HEADER = ["cluster", "environment", "kubernetes_version", "end_of_support", "days_left", "target",
              "target_from", "verdict", "blockers", "blocker_details", "warnings", "not_checked", "checked_at"]


def targets(clusters: list[Cluster]) -> dict[int, tuple[tuple[int, int], str]]:
    """{cluster id: (target minor, group name)} from the groups that set one; with several, the lowest."""
    groups = list(ClusterGroup.objects.exclude(upgrade_target=""))
    found: dict[int, tuple[tuple[int, int], str]] = {}
    if not groups:
        return found
    members = membership(groups, clusters)
    for group in groups:
        minor = _parse(group.upgrade_target)
        if minor is None:
            continue
        for member in members[group.pk]:
            if member.pk not in found or minor < found[member.pk][0]:
                found[member.pk] = (minor, group.name)
    return found


def plan(clusters: Iterable[Cluster], *, today: datetime.date | None = None) -> list[Readiness]:
    """The readiness of each cluster given, in the order given."""
    clusters = list(clusters)
    ids = [c.pk for c in clusters]
    today = today or timezone.localdate()
    pools: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for cluster_id, pool, kubelet in (Node.objects.filter(cluster_id__in=ids).order_by()
                                      .values_list("cluster_id", "pool", "kubelet_version").distinct()):
        pools[cluster_id][pool].add(kubelet)
    addons: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for cluster_id, addon, version in (ClusterAddon.objects.filter(cluster_id__in=ids, addon__in=ADDON_REQUIREMENTS)
                                       .values_list("cluster_id", "addon", "version")):
        addons[cluster_id].append((addon, version))
    apis: dict[int, list[DeprecatedAPIRequest]] = defaultdict(list)
    for row in DeprecatedAPIRequest.objects.filter(cluster_id__in=ids).order_by("group", "version", "resource"):
        apis[row.cluster_id].append(row)
    crds: dict[int, list[CustomResourceDefinition]] = defaultdict(list)
    for crd in (CustomResourceDefinition.objects.filter(cluster_id__in=ids).filter(~Q(stale_versions=[]))
                .order_by("name").only("cluster_id", "name", "kind", "versions", "stale_versions")):
        crds[crd.cluster_id].append(crd)
    group_targets = targets(clusters)
    return [_readiness(c, today=today, target=group_targets.get(c.pk), pools=pools.get(c.pk, {}),
                       addons=addons.get(c.pk, []), apis=apis.get(c.pk, []), crds=crds.get(c.pk, []))
            for c in clusters]


def _readiness(cluster: Cluster, *, today, target, pools, addons, apis, crds) -> Readiness:
    r = Readiness(cluster=cluster, checked_at=cluster.readiness_checked_at)
    current = _parse(cluster.kubernetes_version)
    if current is None:
        r.missing.append(Item("version", cluster.name, "Kubernetes version not known yet: the cluster has not "
                                                       "answered a sync",
                              "Wait for its first sync, or see why it fails on the cluster's page."))
        return r
    r.current = _text(current)
    eol = releases.end_of_life(current)
    if eol is not None and eol != datetime.date.min:
        r.end_of_support, r.days_left = eol, (eol - today).days
    if eol is not None and eol < today:
        since = "" if eol == datetime.date.min else f" since {eol:%Y-%m-%d}"
        r.warnings.append(Item("support", r.current, f"Kubernetes {r.current} is out of upstream support{since}",
                               "Upgrade now: out-of-support minors get no security fixes."))
    if target is not None:
        goal, group = target
        r.target_from = f"group {group}"
    else:
        goal = (current[0], current[1] + 1)
        r.target_from = "next minor"
    r.target = _text(goal)
    r.target_released = goal in releases.END_OF_LIFE
    if goal <= current:
        r.verdict = CURRENT
        return r
    r.steps = [f"{goal[0]}.{m}" for m in range(current[1] + 1, goal[1] + 1)]
    if len(r.steps) > 1:
        r.warnings.append(Item("steps", r.target, f"{len(r.steps)} upgrades: the control plane moves one minor at a "
                                                  f"time ({' → '.join([r.current, *r.steps])})",
                               "Plan each step; the checks below are for the last one."))
    _apis(r, goal, apis)
    _crds(r, crds)
    _pools(r, goal, pools)
    for addon, version in addons:
        found = ADDON_REQUIREMENTS[addon](goal, version)
        if found:
            (r.blockers if found[0] else r.warnings).append(found[1])
    r.missing = _missing_facts(cluster)
    if target is None and not r.target_released:
        # Nothing to upgrade to yet: what the next minor will need is worth preparing, not a blocker of today. (A
        # group's target is the platform's choice and is judged as set.)
        r.warnings = [Item(b.code, b.subject, f"when {r.target} is released: {b.message}", b.fix)
                      for b in r.blockers] + r.warnings
        r.blockers = []
        r.verdict = NEWEST
        return r
    r.verdict = BLOCKED if r.blockers else UNKNOWN if r.missing else READY
    return r


def _apis(r: Readiness, goal: tuple[int, int], apis: list[DeprecatedAPIRequest]) -> None:
    for row in apis:
        removed = removed_in(row)
        name = f"{row.api_version} {row.resource}{'/' + row.subresource if row.subresource else ''}"
        move_to = replacement(row.group, row.version, row.resource)
        fix = (f"Move its clients (manifests, charts, controllers) to {move_to}." if move_to else
               NO_SUCCESSOR.get((row.group, row.version, row.resource))
               or "Move its clients (manifests, charts, controllers) to a version the target still serves.")
        removed_minor = _parse(removed)
        if removed_minor is not None and removed_minor <= goal:
            r.blockers.append(Item("api", name, f"clients still call {name}, removed in Kubernetes {removed}", fix))
        else:
            later = f", removed in {removed}" if removed else ", with no removal planned yet"
            r.warnings.append(Item("api", name, f"clients still call the deprecated {name}{later}", fix))


def _crds(r: Readiness, crds: list[CustomResourceDefinition]) -> None:
    for crd in crds:
        storage = next((v["name"] for v in crd.versions if v.get("storage")), "")
        stale = ", ".join(crd.stale_versions)
        r.blockers.append(Item(
            "crd", crd.name, f"{crd.name} still lists {stale} in status.storedVersions, a version it deprecates or "
                             "no longer serves",
            f"Rewrite its {crd.kind} objects at {storage or 'the storage version'} (a storage version migration, "
            f"or read and replace each), then remove {stale} from the CRD's status.storedVersions."))


def _pools(r: Readiness, goal: tuple[int, int], pools: dict[str, set[str]]) -> None:
    skew = allowed_kubelet_skew(goal)
    for pool, kubelets in sorted(pools.items()):
        minors = [m for m in (_parse(v) for v in kubelets) if m is not None]
        if not minors:
            continue
        oldest = min(minors)
        behind = goal[1] - oldest[1]
        version = min((v for v in kubelets if _parse(v) == oldest), key=lambda v: version_key(version_of(v)) or ())
        if behind > skew:
            r.blockers.append(Item("pool", pool, f"node pool {pool} runs kubelet {version}: {behind} minors behind "
                                                 f"{r.target} (at most {skew} allowed)",
                                   f"Upgrade node pool {pool} to at least {goal[0]}.{goal[1] - skew} first."))


def _missing_facts(cluster: Cluster) -> list[Item]:
    """What the verdict cannot be sure of: readiness facts never read, or a part Fleetweb may not read."""
    if cluster.readiness_checked_at is None:
        return [Item("facts", cluster.name, "deprecated APIs and CRDs not read yet",
                     "They are read by the next sync (Sync now reads them at once).")]
    items = []
    for line in cluster.readiness_error.splitlines():
        part, _, message = line.partition(": ")
        items.append(Item("facts", part, f"{part} could not be read: {message}",
                          "Apply the current access manifest (Attach → RBAC manifest), then Sync now."
                          if "403" in message else "Sync now once the cause is fixed."))
    return items

