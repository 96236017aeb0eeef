"""Drift of what Fleetweb rolled out: is each object a deployment applied still what the cluster runs?

A check reads the deployment's objects back (one LIST per kind in the application's namespace, by its label;
a GET for an object the label no longer finds) and asks the API server, for each object, what applying it again
would leave: a server-side-apply dry run under Fleetweb's field manager (`dryRun=All`, nothing persisted), so
defaulting and normalization are the server's, not a guess. Every field Fleetweb applied whose live value differs
from the dry run's is drifted, with the field managers that own it now (`managedFields`: who took it over, and
when). An object that is gone is missing. A check never changes anything: only Re-apply (an operator, audited) or
an application that opted into `correct_drift` applies the deployed objects again, exactly as they were deployed.
Fields an application leaves to others (`drift_ignore`, e.g. an autoscaler's `spec.replicas`) are shown beside the
state but are never drift, and applying again keeps their live values.

Checks run every FLEETWEB_DRIFT_INTERVAL seconds per deployment (beat claims due ones with SKIP LOCKED) and on
demand; a deployment whose application has a rollout in progress is left for the next round, so a check never
reports a rollout's own changes as drift, and Re-apply never races it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from inventory import history, kube
from inventory.choices import ClusterEventKind, ClusterStatus, Environment
from inventory.teams import deploy_refusal
from rollouts import manifests, members, rendering
from rollouts.choices import ACTIVE_ROLLOUT_STATES, DriftState, RolloutState
from rollouts.models import Deployed, Drift, Rollout

log = logging.getLogger(__name__)

# Fields the API server or controllers own by design, never Fleetweb's applied intent.
IGNORED_TOP = {"status"}
IGNORED_METADATA = {"creationTimestamp", "generation", "managedFields", "resourceVersion", "uid", "selfLink"}
MAX_FIELDS = 50  # per object: a rewritten object says "and N more"
MAX_VALUE = 200  # characters of a value shown


def record_deployed(application, cluster, revision, objects: list[dict], now, *, approved: bool = False) -> Deployed:
    """The engine's record that `revision` became ready on `cluster` with `objects` (`approved`: an approval covered
    them): the deployment drift checks compare against, first checked one interval later."""
    deployed, _ = Deployed.objects.update_or_create(application=application, cluster=cluster, defaults={
        "revision": revision, "objects_applied": objects, "approved": approved, "at": now})
    Drift.objects.update_or_create(deployed=deployed, defaults={
        "revision": revision, "state": DriftState.UNCHECKED, "objects_state": [], "error": "", "since": None,
        "next_check_at": now + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL), "correcting_since": None})
    return deployed


# ---------------------------------------------------------------------------------------------
# Comparing one object


def _leaves(value, path: tuple = ()):
    """(path, value) for every field Fleetweb set: maps are walked, lists of named items by name, other lists and
    scalars are leaves. A path step is a key, or ("name", value) for a list item matched by name."""
    if isinstance(value, dict):
        if not value and path:
            yield path, value
        for key, sub in value.items():
            if not path and (key in IGNORED_TOP or key in ("apiVersion", "kind")):
                continue
            if path == ("metadata",) and key in IGNORED_METADATA:
                continue
            yield from _leaves(sub, (*path, key))
    elif isinstance(value, list) and value and all(isinstance(i, dict) and "name" in i for i in value):
        for item in value:
            yield from _leaves(item, (*path, ("name", item["name"])))
    else:
        yield path, value


_ABSENT = object()


def _at(obj, path: tuple):
    for step in path:
        if isinstance(step, tuple):
            if not isinstance(obj, list):
                return _ABSENT
            obj = next((i for i in obj if isinstance(i, dict) and i.get("name") == step[1]), _ABSENT)
        elif isinstance(obj, dict) and step in obj:
            obj = obj[step]
        else:
            return _ABSENT
        if obj is _ABSENT:
            return _ABSENT
    return obj


def path_text(path: tuple) -> str:
    """spec.template.spec.containers[web].image"""
    out = ""
    for step in path:
        if isinstance(step, tuple):
            out += f"[{step[1]}]"
        else:
            out += ("." if out else "") + step
    return out


def _fields_key(step) -> str:
    """A path step as managedFields (fieldsV1) names it."""
    if isinstance(step, tuple):
        return "k:" + json.dumps({"name": step[1]}, separators=(",", ":"))
    return f"f:{step}"


def owners(live: dict, path: tuple) -> list[dict]:
    """The field managers whose managedFields hold `path` (or a list item on it), other than Fleetweb's."""
    found = []
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        manager = entry.get("manager", "")
        if manager == kube.FIELD_MANAGER and entry.get("operation") == "Apply":
            continue
        node = entry.get("fieldsV1") or {}
        for step in path:
            node = node.get(_fields_key(step)) if isinstance(node, dict) else None
            if node is None:
                break
        if node is not None:
            found.append({"manager": str(manager)[:128], "operation": str(entry.get("operation", ""))[:16],
                          "time": str(entry.get("time", ""))[:32]})
    return found


def _shown(value) -> object:
    if value is _ABSENT:
        return None
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= MAX_VALUE else text[:MAX_VALUE] + "…"


def compare(applied: dict, dry: dict, live: dict) -> list[dict]:
    """The drifted fields of one object: every field Fleetweb applied whose value in the dry run (what applying
    again leaves, as the server normalizes it) differs from the live one."""
    fields = []
    for path, _ in _leaves(applied):
        want, have = _at(dry, path), _at(live, path)
        if want == have:
            continue
        fields.append({"path": path_text(path), "applied": _shown(want), "live": _shown(have),
                       "managers": owners(live, path)})
    return fields


# ---------------------------------------------------------------------------------------------
# Fields an application leaves to others (`Application.drift_ignore`)

MAX_IGNORE_RULES = 50
_KIND = re.compile(r"^(\*|[A-Z][A-Za-z0-9]{0,62})(/[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?$")
_PATH = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$./\-]*(\[[A-Za-z0-9_.\-]+\][A-Za-z0-9_$./\-]*)*$")
# What Fleetweb finds and owns its objects by: a rule may not leave these to anyone else.
PROTECTED = ("apiVersion", "kind", "metadata.name", "metadata.namespace",
             f"metadata.labels.{manifests.APPLICATION_LABEL}")


@dataclasses.dataclass(frozen=True)
class IgnoreRule:
    """`[Kind[/name]] path`: the field at `path` (and all under it) of the objects of that kind (any: `*` or
    none), or of the one object of that kind and name. Paths are written as drift shows them:
    `spec.replicas`, `spec.template.spec.containers[web].resources`."""

    kind: str
    name: str
    path: str

    def covers(self, kind: str, name: str, path: str) -> bool:
        if self.kind not in ("*", kind) or self.name not in ("", name):
            return False
        return path == self.path or path.startswith(self.path + ".") or path.startswith(self.path + "[")

    def __str__(self) -> str:
        return f"{self.kind}{'/' + self.name if self.name else ''} {self.path}"


def parse_ignore(lines) -> list[IgnoreRule]:
    """Rules from text (one per line, `#` comments) or a list of lines; ValueError naming every bad line."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    if not isinstance(lines, list | tuple) or not all(isinstance(line, str) for line in lines):
        raise ValueError("Write the fields to ignore as a list of lines, e.g. 'Deployment spec.replicas'.")
    rules, errors = [], []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        kind, path = (parts[0], parts[1]) if len(parts) == 2 else ("*", parts[0]) if len(parts) == 1 else ("", "")
        if not kind or not _KIND.match(kind) or len(path) > 300 or not _PATH.match(path):
            errors.append(f"line {number}: '{line[:100]}' is not '[Kind[/name]] path' (e.g. 'Deployment "
                          "spec.replicas' or 'Deployment/web spec.template.spec.containers[web].image')")
            continue
        kind, _, name = kind.partition("/")
        rule = IgnoreRule(kind, name, path)
        if covered := [p for p in PROTECTED if IgnoreRule("*", "", rule.path).covers("", "", p)]:
            errors.append(f"line {number}: {rule.path} covers {covered[0]}, which Fleetweb finds its objects by; "
                          "it cannot be left to others")
            continue
        if rule not in rules:
            rules.append(rule)
    if len(rules) > MAX_IGNORE_RULES:
        errors.append(f"at most {MAX_IGNORE_RULES} rules ({len(rules)} given)")
    if errors:
        raise ValueError("; ".join(errors))
    return rules


def normalized_ignore(lines) -> list[str]:
    """The rules as stored: one normalized line each (ValueError as `parse_ignore`)."""
    return [str(rule) for rule in parse_ignore(lines)]


def ignore_rules(application) -> list[IgnoreRule]:
    """The application's stored rules (validated when saved; one that no longer parses is skipped)."""
    rules = []
    for line in application.drift_ignore or []:
        try:
            rules += parse_ignore([line])
        except ValueError:
            log.warning("skipping a drift ignore rule of %s that does not parse", application.name)
    return rules


def ignored_by(rules: list[IgnoreRule], kind: str, name: str, path: str) -> IgnoreRule | None:
    return next((r for r in rules if r.covers(kind, name, path)), None)


def keep_ignored(obj: dict, live: dict | None, rules: list[IgnoreRule]) -> dict:
    """`obj` with every field a rule covers set to its live value (where the live object has one): Re-apply
    restores what the application did not leave to others, and leaves the rest as it is."""
    if live is None or not rules:
        return obj
    kind, name = obj.get("kind", ""), (obj.get("metadata") or {}).get("name", "")
    out = copy.deepcopy(obj)
    for path, _ in list(_leaves(obj)):
        if ignored_by(rules, kind, name, path_text(path)) is None:
            continue
        value = _at(live, path)
        if value is not _ABSENT:
            _set_at(out, path, copy.deepcopy(value))
    return out


def _set_at(obj, path: tuple, value) -> None:
    """Set a leaf of `_leaves` (its last step is always a key: named list items are walked into)."""
    for step in path[:-1]:
        obj = next(i for i in obj if i.get("name") == step[1]) if isinstance(step, tuple) else obj[step]
    obj[path[-1]] = value


# ---------------------------------------------------------------------------------------------
# Checking one deployment


class Session:
    """A member connection that counts its calls."""

    def __init__(self, cluster):
        self.session = members.connect(cluster)
        self.calls = 0

    def get(self, path: str, query=None) -> dict:
        self.calls += 1
        return kube.get_json(self.session, path, query=query)

    def dry_run(self, obj: dict) -> dict:
        self.calls += 1
        return kube.apply(self.session, manifests.path_of(obj), obj, dry_run=True)

    def close(self) -> None:
        self.session.close()


def _list_path(obj: dict) -> str:
    return manifests.path_of(obj).rsplit("/", 1)[0]


def examine(session: Session, objects: list[dict], application: str,
            rules: list[IgnoreRule] | None = None) -> list[dict]:
    """Per object: {kind, name, state, fields, ignored, error}; `ignored`: the differences in fields the
    application's rules leave to others (shown, never drift)."""
    live: dict[tuple[str, str], dict] = {}
    for list_path in sorted({_list_path(o) for o in objects}):
        body = session.get(list_path, query=[("labelSelector", f"{manifests.APPLICATION_LABEL}={application}")])
        kind = next(o["kind"] for o in objects if _list_path(o) == list_path)
        for item in body.get("items") or []:
            live[(kind, (item.get("metadata") or {}).get("name", ""))] = item
    results = []
    for obj in objects:
        name = obj["metadata"]["name"]
        row: dict = {"kind": obj["kind"], "name": name, "state": DriftState.IN_SYNC, "fields": [], "ignored": [],
                     "error": ""}
        current = live.get((obj["kind"], name))
        try:
            if current is None:  # gone, or its label was changed: ask for it by name
                try:
                    current = session.get(manifests.path_of(obj))
                except kube.KubeError as exc:
                    if exc.http_status != 404:
                        raise
                    row["state"] = DriftState.MISSING
                    results.append(row)
                    continue
            fields = compare(obj, session.dry_run(obj), current)
            if rules:
                kept: list[dict] = []
                for f in fields:
                    (row["ignored"] if ignored_by(rules, obj["kind"], name, f["path"]) else kept).append(f)
                fields, row["ignored"] = kept, row["ignored"][:MAX_FIELDS]
        except kube.KubeError as exc:
            if exc.fatal:
                raise
            row.update(state=DriftState.UNKNOWN, error=exc.message[:500])
            results.append(row)
            continue
        if fields:
            extra = len(fields) - MAX_FIELDS
            row.update(state=DriftState.DRIFTED, fields=fields[:MAX_FIELDS], more=max(extra, 0))
        results.append(row)
    return results


def overall(rows: list[dict]) -> str:
    states = {r["state"] for r in rows}
    for state in (DriftState.MISSING, DriftState.DRIFTED, DriftState.UNKNOWN):
        if state in states:
            return state
    return DriftState.IN_SYNC


def rollout_in_progress(deployed: Deployed) -> Rollout | None:
    """An active or paused rollout of the application that reaches this cluster."""
    return (Rollout.objects.filter(application_id=deployed.application_id,
                                   stages__targets__cluster_id=deployed.cluster_id)
            .filter(Q(state__in=ACTIVE_ROLLOUT_STATES) | Q(state=RolloutState.PAUSED)).order_by("pk").first())


CORRECTING_FOR = timedelta(minutes=10)  # a re-apply lost with the broker no longer holds auto-correct back


def correcting(drift: Drift, now) -> bool:
    return drift.correcting_since is not None and drift.correcting_since > now - CORRECTING_FOR


def check(deployed_id: int, *, now=None) -> Drift | None:
    """Check one deployment now and store the result (None: it is gone, or a rollout of it is in progress)."""
    try:
        deployed = Deployed.objects.select_related("application", "cluster", "revision").get(pk=deployed_id)
    except Deployed.DoesNotExist:
        return None
    if rollout_in_progress(deployed) is not None:
        return None
    started = time.monotonic()
    # Deployed before Fleetweb kept the applied objects: compare with the revision as rendered now.
    objects = deployed.objects_applied or rendering.render_for(deployed.application, deployed.revision,
                                                               deployed.cluster)
    rows: list[dict] = []
    error = ""
    session = None
    try:
        session = Session(deployed.cluster)
        rows = examine(session, objects, deployed.application.name, ignore_rules(deployed.application))
    except kube.KubeError as exc:
        error = exc.message
    except Exception as exc:  # bad data from a cluster must not stop the checks of the others
        log.exception("drift check of %s failed", deployed)
        error = f"internal error during the drift check: {type(exc).__name__}"
    finally:
        calls = session.calls if session is not None else 0
        if session is not None:
            session.close()
    return _store(deployed, rows, error, calls=calls, ms=int((time.monotonic() - started) * 1000),
                  now=now or timezone.now())


def _summary(rows: list[dict]) -> str:
    parts = []
    for r in rows:
        if r["state"] == DriftState.DRIFTED:
            who = sorted({m["manager"] for f in r["fields"] for m in f["managers"]})
            parts.append(f"{r['kind']} {r['name']}: " + ", ".join(f["path"] for f in r["fields"][:3])
                         + (f" (by {', '.join(who)})" if who else ""))
        elif r["state"] == DriftState.MISSING:
            parts.append(f"{r['kind']} {r['name']} missing")
    return "; ".join(parts)


def _store(deployed: Deployed, rows: list[dict], error: str, *, calls: int, ms: int, now) -> Drift | None:
    """Keep the result; a check that could not be made keeps the last known state (an unreachable cluster is not
    "back in sync") and says why."""
    with transaction.atomic():
        drift = Drift.objects.select_for_update().filter(deployed_id=deployed.pk).first()
        if drift is None:
            if not Deployed.objects.filter(pk=deployed.pk).exists():
                return None  # rolled back to nothing meanwhile
            drift = Drift.objects.create(deployed=deployed)
        if drift.revision_id not in (None, deployed.revision_id):
            return drift  # a rollout deployed another revision while this check ran: its result is void
        before = drift.state
        state = overall(rows) if not error else before if before != DriftState.UNCHECKED else DriftState.UNKNOWN
        drifted = state in (DriftState.DRIFTED, DriftState.MISSING)
        drift.revision = deployed.revision
        drift.state = state
        if not error or not drift.objects_state:
            drift.objects_state = rows
        drift.error = error[:2000]
        drift.checked_at = now
        drift.since = (drift.since or now) if drifted else None
        drift.next_check_at = now + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL)
        drift.requests, drift.duration_ms = calls, ms
        drift.save()
        if state != before and (drifted or before in (DriftState.DRIFTED, DriftState.MISSING)):
            app = deployed.application
            what = f"{app.name} revision {deployed.revision.number}"
            summary = (f"{what} drifted: {_summary(rows)}" if state == DriftState.DRIFTED else
                       f"{what}: {_summary(rows)}" if state == DriftState.MISSING else
                       f"{what} back in sync" if state == DriftState.IN_SYNC else f"{what}: drift unknown, {error}")
            history.record(history.event(deployed.cluster_id, ClusterEventKind.ROLLOUT, summary[:500], at=now,
                                         before={"drift": before}, after={"drift": state,
                                                                          "application": app.name}))
    if state in (DriftState.DRIFTED, DriftState.MISSING) and deployed.application.correct_drift \
            and not correcting(drift, now):
        from rollouts import services

        try:
            services.request_reapply(deployed, user=None, via="auto-correct")
        except services.RolloutError as exc:  # a rollout started meanwhile, or one is already queued
            log.info("drift of %s not corrected now: %s", deployed, exc)
    return drift


# ---------------------------------------------------------------------------------------------
# Scheduling and Re-apply


ANSWERING = (ClusterStatus.CONNECTED, ClusterStatus.DEGRADED)


def claim_due(*, now=None, limit: int = 200) -> list[int]:
    """Deployments due for a check, on clusters that answer; their next check moves one interval on."""
    now = now or timezone.now()
    missing = Deployed.objects.filter(drift__isnull=True).values_list("pk", "revision_id")[:1000]
    Drift.objects.bulk_create([Drift(deployed_id=pk, revision_id=revision, next_check_at=now)
                               for pk, revision in missing], ignore_conflicts=True)
    with transaction.atomic():
        due = list(Drift.objects.filter(Q(next_check_at__lte=now) | Q(next_check_at__isnull=True),
                                        deployed__cluster__status__in=ANSWERING)
                   .order_by("next_check_at").select_for_update(skip_locked=True, of=("self",))
                   .values_list("deployed_id", flat=True)[:limit])
        Drift.objects.filter(deployed_id__in=due).update(
            next_check_at=now + timedelta(seconds=settings.FLEETWEB_DRIFT_INTERVAL))
    return due


def stuck_reapplies(*, now=None) -> list[int]:
    """Re-applies requested more than two minutes ago whose task never ran (lost with the broker)."""
    now = now or timezone.now()
    return list(Drift.objects.filter(correcting_since__lt=now - timedelta(minutes=2),
                                     correcting_since__gt=now - CORRECTING_FOR).values_list("deployed_id", flat=True))


def reapply_refusal(deployed: Deployed) -> str:
    """Why the deployed objects may not be applied to the cluster as it is now ('' when they may): it left the owner
    team's scope, or it is prod now and no approval covered those objects."""
    refusal = deploy_refusal(None, deployed.application, [deployed.cluster])
    if refusal:
        return f"not re-applied: {refusal}"
    if deployed.cluster.environment == Environment.PROD and not deployed.approved:
        return (f"not re-applied: {deployed.cluster.name} is prod now and no approval covered what was deployed "
                "there; roll the application out again (a prod stage needs an approval)")
    return ""


def reapply(deployed_id: int) -> Drift | None:
    """Apply the deployment's objects again, exactly as deployed (never taking over what is not the
    application's), then check it; run by a worker after `services.request_reapply`."""
    try:
        deployed = Deployed.objects.select_related("application", "cluster", "revision").get(pk=deployed_id)
    except Deployed.DoesNotExist:
        return None
    active = rollout_in_progress(deployed)
    problem = f"not re-applied: rollout #{active.pk} of {deployed.application.name} is in progress" if active else ""
    # Whoever asked (a person, or the application's own correction), the cluster as it is now decides.
    problem = problem or reapply_refusal(deployed)
    if not problem:
        try:
            rules = ignore_rules(deployed.application)
            members.push(deployed.cluster, deployed.application.namespace, deployed.objects_applied,
                         renew=lambda: None, application=deployed.application,
                         adjust=(lambda obj, live: keep_ignored(obj, live, rules)) if rules else None)
        except kube.KubeError as exc:
            problem = f"re-apply failed: {exc.message}"
    now = timezone.now()
    Drift.objects.filter(deployed_id=deployed.pk).update(correcting_since=None)
    what = f"{deployed.application.name} revision {deployed.revision.number}"
    history.record(history.event(deployed.cluster_id, ClusterEventKind.ROLLOUT,
                                 (problem or f"re-applied {what} to correct drift")[:500], at=now,
                                 after={"application": deployed.application.name,
                                        "revision": deployed.revision.number, "reapplied": not problem}))
    if problem:
        Drift.objects.filter(deployed_id=deployed.pk).update(error=problem[:2000])
        return Drift.objects.filter(deployed_id=deployed.pk).first()
    return check(deployed.pk, now=now)


def rows_for(deployments) -> list[Drift]:
    """Each deployment's drift (unchecked when none was made yet), for pages and the API."""
    out = []
    for deployed in deployments:
        try:
            out.append(deployed.drift)
        except Drift.DoesNotExist:
            out.append(Drift(deployed=deployed, state=DriftState.UNCHECKED))
    return out


def of_application(app) -> list[Drift]:
    deployments = (Deployed.objects.filter(application=app).select_related("cluster", "revision", "drift")
                   .order_by("cluster__name"))
    return rows_for(deployments)
