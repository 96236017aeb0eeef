"""Check a revision at save: a server-side dry run (`dryRun=All`, `fieldValidation=Strict`) of every object
against one reachable member per Kubernetes minor version in the fleet.

A typo (`replica: 2`), a wrong type or a schema error is then named at save, with the member and version that said
so, instead of failing the rollout in production's path. The dry run is done in Fleetweb's own namespace on the
member (`fleetweb-system`, which the least-privilege manifest creates and where its apply role reaches): the
application's namespace may not exist there yet, and a dry run cannot create it. The objects are validated exactly
as they would be applied; only their namespace differs, so a rule bound to the application's namespace alone (a
quota, an admission policy) is not seen here but at rollout.

Members that cannot be asked now (unreachable, credentials refused, exec plugins, which only workers run) are
listed as not checked; a revision nobody could check is saved as "unchecked", not refused.

A member is untrusted: only members the application can reach are asked (a team's application: its team's
clusters), every call ends by the budget (`kube.deadline`, a hard deadline on the connection), and a member that
refuses what others accept is that member's finding ("refused by some"), never a veto of the revision: only a
refusal by every member asked fails it.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import logging
import time

from django.conf import settings

from inventory import kube
from inventory.access import FLEETWEB_NAMESPACE
from inventory.choices import AuthMethod, ClusterStatus
from inventory.models import Cluster
from inventory.services import credentials_of
from rollouts import manifests

log = logging.getLogger(__name__)
PASSED, FAILED, UNCHECKED = "passed", "failed", "unchecked"
SOME_REFUSED = "refused_by_some"  # some members refused, others accepted: their findings, not the revision's fault


@dataclasses.dataclass
class MemberResult:
    cluster: str
    version: str
    checked: bool
    problems: list[str] = dataclasses.field(default_factory=list)
    note: str = ""  # why it could not be checked

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def minor_of(version: str) -> str:
    """'v1.31.4+k3s1' -> '1.31' ('' when unknown)."""
    parts = version.lstrip("v").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and parts[0].isdigit() and parts[1][:2].isdigit() else ""


def members_to_ask(owner_scope: frozenset[int] | None = None) -> list[Cluster]:
    """One answering cluster per Kubernetes minor (the first by name), exec-plugin clusters left out; among
    `owner_scope` (the owner team's clusters) when given."""
    chosen: dict[str, Cluster] = {}
    answering = Cluster.objects.filter(status__in=[ClusterStatus.CONNECTED, ClusterStatus.DEGRADED])
    if owner_scope is not None:
        answering = answering.filter(pk__in=owner_scope)
    for cluster in answering.order_by("name"):
        minor = minor_of(cluster.kubernetes_version)
        if minor and minor not in chosen and not _uses_exec(cluster):
            chosen[minor] = cluster
    return [chosen[m] for m in sorted(chosen, key=lambda m: tuple(int(x) for x in m.split(".")))]


def _credentials(cluster: Cluster) -> dict | None:
    try:
        return credentials_of(cluster)
    except Exception:  # missing or undecryptable: a sync reports that; here the member is only not counted
        return None


def _uses_exec(cluster: Cluster) -> bool:
    if cluster.auth_method != AuthMethod.KUBECONFIG:
        return False
    try:
        config = credentials_of(cluster).get("kubeconfig") or {}
    except Exception:  # unreadable credentials: a sync reports that; here the member is just not asked
        return True
    return any("exec" in (u.get("user") or {}) for u in config.get("users") or [])


def _dry_run_member(cluster: Cluster, credentials: dict | None, objects: list[dict], until: float) -> MemberResult:
    """Runs in a thread: no database here (the credentials were read before)."""
    result = MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=True)
    if credentials is None:
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note="its credentials could not be read")
    try:
        with kube.deadline(until), kube.connect(credentials, insecure=cluster.insecure_skip_tls_verify) as session:
            for obj in objects:
                probe = copy.deepcopy(obj)
                probe["metadata"]["namespace"] = FLEETWEB_NAMESPACE
                name = f"{obj['kind']} {obj['metadata']['name']}"
                try:
                    kube.request(session, "PATCH", manifests.path_of(probe), body=probe,
                                 content_type="application/apply-patch+yaml", what=f"dry run of {name}",
                                 query=[("fieldManager", kube.FIELD_MANAGER), ("force", "true"), ("dryRun", "All"),
                                        ("fieldValidation", "Strict")])
                except kube.KubeError as exc:
                    if _refused(exc):
                        # Said of the probe in Fleetweb's namespace: name the application's namespace instead.
                        result.problems.append(exc.message.replace(f"{FLEETWEB_NAMESPACE}/",
                                                                   f"{obj['metadata']['namespace']}/"))
                    else:
                        raise
    except kube.KubeError as exc:
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note=exc.message)
    except Exception as exc:  # a missing credential or a bug must not stop the save: the member is not counted
        log.warning("dry run on %s could not run: %s", cluster.name, type(exc).__name__)
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note=f"could not be asked ({type(exc).__name__})")
    return result


def _refused(exc: kube.KubeError) -> bool:
    """The member refused the object itself (not: could not be reached, or we may not ask). Server-side apply
    answers an undeclared field with a 500 "failed to create typed patch object"."""
    return exc.http_status in (400, 422) or (exc.http_status == 500 and "typed patch object" in exc.message)


def check(objects: list[dict], *, owner_scope: frozenset[int] | None = None) -> dict:
    """{"state": passed | refused_by_some | failed | unchecked, "members": [MemberResult…]} for a revision's parsed
    objects, asking the members in `owner_scope` (None: the whole fleet, for a platform application)."""
    members = members_to_ask(owner_scope)
    if not members:
        return {"state": UNCHECKED, "members": [], "note": "no connected member cluster to dry-run against"}
    asked = [(cluster, _credentials(cluster)) for cluster in members]
    until = time.monotonic() + settings.FLEETWEB_DRY_RUN_BUDGET
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(members))) as pool:
        results = list(pool.map(lambda pair: _dry_run_member(pair[0], pair[1], objects, until), asked))
    refused = [r for r in results if r.problems]
    if refused and all(r.problems for r in results if r.checked):
        state = FAILED
    elif refused:
        state = SOME_REFUSED
    elif any(r.checked for r in results):
        state = PASSED
    else:
        state = UNCHECKED
    return {"state": state, "members": [r.as_dict() for r in results]}


def summary(validation: dict) -> str:
    """One paragraph for a form or an error: each problem with the member and version that reported it."""
    lines = []
    for member in validation.get("members", []):
        where = f"{member['cluster']} ({member['version']})"
        lines += [f"{where}: {problem}" for problem in member["problems"]]
    return "\n".join(lines)
