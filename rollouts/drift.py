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
reports a rollout's own changes as drift, and Re-apply never races it. This module says what drift is and compares;
storing checks, scheduling them and Re-apply are `rollouts.corrections`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from datetime import timedelta

from django.conf import settings

from inventory import port
from rollouts import manifests
from rollouts.choices import DriftState
from rollouts.models import Deployed, Drift

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


def values_by_path(obj: dict) -> dict[str, object]:
    """Every field of `obj` Fleetweb would set, by its `path_text` (as drift rows name them), shown as they are."""
    return {path_text(path): _shown(value) for path, value in _leaves(obj)}


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
        if manager == port.FIELD_MANAGER and entry.get("operation") == "Apply":
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

    def __init__(self, member: port.Member):
        self.member = member
        self.calls = 0

    def get(self, path: str, query=None) -> dict:
        self.calls += 1
        return self.member.read(path, query=query)

    def dry_run(self, obj: dict) -> dict:
        self.calls += 1
        return self.member.apply(manifests.path_of(obj), obj, dry_run=True)

    def close(self) -> None:
        self.member.close()


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
                except port.KubeError as exc:
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
        except port.KubeError as exc:
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
