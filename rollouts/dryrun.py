"""Check a revision after save, in a worker: a server-side dry run (`dryRun=All`, `fieldValidation=Strict`) of every
object against one reachable member per Kubernetes minor version in the fleet.

A typo (`replica: 2`), a wrong type or a schema error is then named at save, with the member and version that said
so, instead of failing the rollout in production's path. The dry run is done in Fleetweb's own namespace on the
member (`fleetweb-system`, which the least-privilege manifest creates and where its apply role reaches): the
application's namespace may not exist there yet, and a dry run cannot create it. The objects are validated exactly
as they would be applied; only their namespace differs, so a rule bound to the application's namespace alone (a
quota, an admission policy) is not seen here but at rollout.

Members that cannot be asked now (unreachable, credentials refused) are listed as not checked; a revision nobody
could check is "unchecked", not refused.

The revision is saved at once as "checking" (`request`) and a worker fills its verdict in (`run`): a member that
trickles its answer holds a worker for at most the budget, never a person's save. Beside the members' own answers,
Fleetweb's enforce-mode policies are asked of what every cluster the application can reach would receive
(`governance.precheck`): "refused by prod-eu: policy no-privileged-containers is enforced there". A member's admission
refusal (403 "denied request") is that member's finding too, not "could not be checked". A stage does not start from
a revision still being checked, nor onto a cluster whose enforced policy refuses it (`rollouts.gates.PolicyGate`).

A member is untrusted: only members the application can reach are asked (a team's application: its team's
clusters), every call ends by the budget (`port.deadline`, a hard deadline on the connection), and a member that
refuses what others accept is that member's finding ("refused by some"), never a veto of the revision: only a
refusal by every member asked fails it.
"""

from __future__ import annotations

import concurrent.futures
import copy
import dataclasses
import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from foundation.audit import record
from foundation.queueing import enqueue_after_commit
from governance import precheck
from inventory import port
from inventory.access import FLEETWEB_NAMESPACE
from inventory.choices import ClusterStatus
from inventory.models import Cluster
from inventory.people.access import team_scope
from rollouts import manifests, rendering, schemahints
from rollouts.models import Application, Revision

log = logging.getLogger(__name__)
PASSED, FAILED, UNCHECKED = "passed", "failed", "unchecked"
SOME_REFUSED = "refused_by_some"  # some members refused, others accepted: their findings, not the revision's fault
CHECKING = "checking"  # saved; a worker is asking the members
MAX_POLICY_FINDINGS = 100  # stored per revision (the count of all is kept)


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
    """One answering cluster per Kubernetes minor (the first by name), among `owner_scope` (the owner team's
    clusters) when given. A cluster whose kubeconfig runs an exec plugin is asked too: this runs in a worker, where
    the plugins an admin attached run (`inventory.execplugins`)."""
    chosen: dict[str, Cluster] = {}
    answering = Cluster.objects.filter(status__in=[ClusterStatus.CONNECTED, ClusterStatus.DEGRADED])
    if owner_scope is not None:
        answering = answering.filter(pk__in=owner_scope)
    for cluster in answering.order_by("name"):
        minor = minor_of(cluster.kubernetes_version)
        if minor and minor not in chosen:
            chosen[minor] = cluster
    return [chosen[m] for m in sorted(chosen, key=lambda m: tuple(int(x) for x in m.split(".")))]


def _opener(cluster: Cluster) -> port.Opener | None:
    try:
        return port.opener(cluster)
    except Exception:  # missing or undecryptable: a sync reports that; here the member is only not counted
        return None


def _dry_run_member(cluster: Cluster, opener: port.Opener | None, objects: list[dict], until: float,
                    text: str = "") -> MemberResult:
    """Runs in a thread: no database here (the member's opener read it before). `text`: the YAML the objects came
    from, for the line of a field a member refuses."""
    result = MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=True)
    if opener is None:
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note="its credentials could not be read")
    try:
        with port.deadline(until), opener() as member:
            documents: dict[str, dict] = {}
            for obj in objects:
                probe = copy.deepcopy(obj)
                probe["metadata"]["namespace"] = FLEETWEB_NAMESPACE
                name = f"{obj['kind']} {obj['metadata']['name']}"
                try:
                    member.apply(manifests.path_of(probe), probe, dry_run=True, strict=True,
                                 what=f"dry run of {name}")
                except port.KubeError as exc:
                    if not _refused(exc):
                        raise
                    result.problems.append(_problem(member, obj, exc.message, text, documents))
    except port.KubeError as exc:
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note=exc.message)
    except Exception as exc:  # a missing credential or a bug must not stop the save: the member is not counted
        log.warning("dry run on %s could not run: %s", cluster.name, type(exc).__name__)
        return MemberResult(cluster=cluster.name, version=cluster.kubernetes_version, checked=False,
                            note=f"could not be asked ({type(exc).__name__})")
    return result


def _problem(member, obj: dict, message: str, text: str, documents: dict[str, dict]) -> str:
    """A member's refusal of `obj` in words a person can act on: the object, the field, the line of the YAML and
    the field the member's schema knows that was probably meant (`rollouts.schemahints`); else the member's own
    message, with the probe's namespace (Fleetweb's) replaced by the application's."""
    kind, name = obj["kind"], obj["metadata"]["name"]
    error = schemahints.field_error(message)
    if error is None:
        return message.replace(f"{FLEETWEB_NAMESPACE}/", f"{obj['metadata']['namespace']}/")
    hint = ""
    if error.unknown:
        api_version = str(obj.get("apiVersion", ""))
        if api_version not in documents:
            try:
                documents[api_version] = member.read(schemahints.openapi_path(api_version))
            except port.KubeError:
                documents[api_version] = {}  # no suggestion from this member; the refusal stands
        hint = schemahints.suggestion(documents[api_version], obj, error)
    line = schemahints.line_of(text, kind, name, error.path) if text else None
    words = (f"{kind} {name}: {error.dotted} is not a field of {obj.get('apiVersion')} {kind}" if error.unknown
             else f"{kind} {name}: {error.dotted}: {error.reason}")
    return words + (f" ({hint})" if hint else "") + (f", line {line}" if line else "")


def grouped(members: list[dict]) -> list[dict]:
    """Each problem once, with every member that said it: [{"problem", "clusters", "where"}], in first-seen order."""
    out: dict[str, dict] = {}
    for member in sorted(members, key=lambda m: m["cluster"]):
        for problem in member.get("problems", []):
            entry = out.setdefault(problem, {"problem": problem, "clusters": [], "where": []})
            entry["clusters"].append(member["cluster"])
            entry["where"].append(f"{member['cluster']} ({member['version']})")
    return list(out.values())


def _refused(exc: port.KubeError) -> bool:
    """The member refused the object itself (not: could not be reached, or we may not ask). Server-side apply
    answers an undeclared field with a 500 "failed to create typed patch object"; an admission policy or webhook that
    denies it answers 403 like RBAC does, told apart by its words (RBAC says "cannot <verb> resource")."""
    if exc.http_status == 403:
        return ("denied request" in exc.message or "denied the request" in exc.message) and \
            "cannot patch resource" not in exc.message
    return exc.http_status in (400, 422) or (exc.http_status == 500 and "typed patch object" in exc.message)


def check(objects: list[dict], *, owner_scope: frozenset[int] | None = None,
          policies: list[precheck.Refusal] | None = None, text: str = "") -> dict:
    """{"state": passed | refused_by_some | failed | unchecked, "members": [MemberResult…], "policies": […]} for a
    revision's parsed objects, asking the members in `owner_scope` (None: the whole fleet, for a platform
    application). `policies`: what Fleetweb's own rules find in what each cluster would receive; an enforced one
    makes the revision "refused by some", as a member's refusal does."""
    members = members_to_ask(owner_scope)
    results: list[MemberResult] = []
    if members:
        asked = [(cluster, _opener(cluster)) for cluster in members]
        until = time.monotonic() + settings.FLEETWEB_DRY_RUN_BUDGET
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(members))) as pool:
            results = list(pool.map(lambda pair: _dry_run_member(pair[0], pair[1], objects, until, text), asked))
    policies = policies or []
    refused = [r for r in results if r.problems]
    enforced = [p for p in policies if p.enforced]
    if refused and all(r.problems for r in results if r.checked):
        state = FAILED
    elif refused or enforced:
        state = SOME_REFUSED
    elif any(r.checked for r in results):
        state = PASSED
    else:
        state = UNCHECKED
    verdict = {"state": state, "members": [r.as_dict() for r in results],
               "policies": [p.as_dict() for p in policies[:MAX_POLICY_FINDINGS]], "policies_found": len(policies),
               "refused_on": sorted({r.cluster for r in refused} | {p.cluster for p in enforced})}
    if not members:
        verdict["note"] = "no connected member cluster to dry-run against"
    return verdict


def checking() -> dict:
    """The `validation` a revision is saved with: being checked, since now."""
    return {"state": CHECKING, "requested_at": timezone.now().isoformat()}


def request(revision: Revision) -> None:
    """Queue the check of a revision saved with `checking()`, once the save commits."""
    enqueue_after_commit("rollouts.tasks.dry_run_revision", revision.pk, what=f"dry run of revision {revision.pk}")


def run(revision_id: int) -> str:
    """In a worker: ask the members and Fleetweb's policies about a revision being checked; store the verdict once,
    with its audit event. Never raises for a member's failure; a revision no longer being checked is left alone."""
    revision = Revision.objects.select_related("application").filter(pk=revision_id).first()
    if revision is None or (revision.validation or {}).get("state") != CHECKING:
        return "gone"
    app = revision.application
    scope = team_scope(app.owner_team_id) if app.owner_team_id is not None else None
    parsed = manifests.parse(revision.manifests, namespace=app.namespace, sourced=bool(revision.source))
    verdict = check(_with_variants(parsed.objects, revision, namespace=app.namespace), owner_scope=scope,
                    policies=policy_findings(app, revision, scope), text=revision.manifests)
    verdict["checked_at"] = timezone.now().isoformat()
    with transaction.atomic():
        if not Revision.objects.filter(pk=revision.pk, validation__state=CHECKING).update(validation=verdict):
            return "gone"
        record(user=None, action="application.dry_run", target=app,
               after={"revision": revision.number, "digest": revision.digest, "state": verdict["state"],
                      "refused_on": verdict["refused_on"]})
    return verdict["state"]


def _with_variants(objects: list[dict], revision: Revision, *, namespace: str) -> list[dict]:
    """The revision's objects, then each object a group's own rendering has that differs from them: every object
    some cluster would receive is asked about once."""
    seen = {json.dumps(o, sort_keys=True) for o in objects}
    out = list(objects)
    for key in sorted(revision.variants or {}):
        for obj in manifests.parse(revision.variants[key]["manifests"], namespace=namespace, sourced=True).objects:
            text = json.dumps(obj, sort_keys=True)
            if text not in seen:
                seen.add(text)
                out.append(obj)
    return out


def policy_findings(app: Application, revision: Revision, scope: frozenset[int] | None) -> list[precheck.Refusal]:
    """What Fleetweb's rules find in what each cluster the application can reach would receive now."""
    clusters = list(Cluster.objects.filter(pk__in=scope) if scope is not None else Cluster.objects.all())
    found = precheck.check(rendering.render_all(app, revision, clusters), clusters)
    return sorted((r for refusals in found.values() for r in refusals),
                  key=lambda r: (not r.enforced, r.cluster, r.rule, r.object))


def for_user(validation: dict, user) -> dict:
    """The verdict as `user` may read it: members and findings on clusters they cannot see are counted, not named
    (an approver team may see an application whose clusters lie outside its own scope)."""
    validation = dict(validation or {})
    validation["grouped"] = grouped(validation.get("members", []))
    named = {m["cluster"] for m in validation.get("members", [])} | \
        {p["cluster"] for p in validation.get("policies", [])} | set(validation.get("refused_on", []))
    if not named:
        return validation
    visible = set(Cluster.objects.visible_to(user).filter(name__in=named).values_list("name", flat=True))
    if visible == named:
        return validation
    members = [m for m in validation.get("members", []) if m["cluster"] in visible]
    policies = [p for p in validation.get("policies", []) if p["cluster"] in visible]
    refused_on = [c for c in validation.get("refused_on", []) if c in visible]
    hidden = len(named - visible)
    return {**validation, "members": members, "policies": policies, "refused_on": refused_on,
            "policies_found": len(policies), "hidden_clusters": hidden, "grouped": grouped(members)}


def stale(older_than_seconds: float) -> list[int]:
    """Revisions still being checked long after their check was asked for (its message was lost)."""
    cutoff = (timezone.now() - timedelta(seconds=older_than_seconds)).isoformat()
    return list(Revision.objects.filter(validation__state=CHECKING, validation__requested_at__lt=cutoff)
                .values_list("pk", flat=True)[:100])


def summary(validation: dict) -> str:
    """One paragraph for a form or an error: each problem once, with the members and versions that reported it,
    then what an enforced policy refuses."""
    lines = [f"{entry['problem']} (said by {', '.join(entry['where'])})"
             for entry in grouped(validation.get("members", []))]
    lines += [p["words"] for p in validation.get("policies", []) if p.get("enforced")]
    return "\n".join(lines)
