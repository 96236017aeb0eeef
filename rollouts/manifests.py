"""Application manifests: parse and validate multi-document YAML, digest it, render it for one cluster, diff it.

Every error names the document (1-based, with its kind and name when known) and the field at fault.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import json
import re

import yaml
from django.conf import settings

from foundation import untrusted
from inventory.access import FLEETWEB_NAMESPACE
from inventory.validators import dns_label_problem, validate_label

# kind -> (accepted apiVersions, API path prefix, plural); all namespaced.
KINDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "ServiceAccount": (("v1",), "/api/v1", "serviceaccounts"),
    "ConfigMap": (("v1",), "/api/v1", "configmaps"),
    "PersistentVolumeClaim": (("v1",), "/api/v1", "persistentvolumeclaims"),
    "Service": (("v1",), "/api/v1", "services"),
    "Deployment": (("apps/v1",), "/apis/apps/v1", "deployments"),
    "StatefulSet": (("apps/v1",), "/apis/apps/v1", "statefulsets"),
    "DaemonSet": (("apps/v1",), "/apis/apps/v1", "daemonsets"),
    "Job": (("batch/v1",), "/apis/batch/v1", "jobs"),
    "CronJob": (("batch/v1",), "/apis/batch/v1", "cronjobs"),
    "Ingress": (("networking.k8s.io/v1",), "/apis/networking.k8s.io/v1", "ingresses"),
    "NetworkPolicy": (("networking.k8s.io/v1",), "/apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": (("policy/v1",), "/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": (("autoscaling/v2",), "/apis/autoscaling/v2", "horizontalpodautoscalers"),
}
APPLY_ORDER = list(KINDS)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "Node",
                  "PersistentVolume", "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy", "IngressClass", "APIService"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_BYTES = 1_000_000  # pasted YAML, parsed in a web request


def max_bytes(*, sourced: bool) -> int:
    """What a revision's manifests may weigh: pasted, MAX_BYTES; read from a source and rendered in a worker, as much
    as a render may give (FLEETWEB_SOURCE_MAX_RENDERED_BYTES), so that what the renderer passed is never refused
    after it for its size."""
    return max(MAX_BYTES, settings.FLEETWEB_SOURCE_MAX_RENDERED_BYTES) if sourced else MAX_BYTES
MAX_DEPTH = 100  # deep enough for any CRD's schema; deeper input would reach recursive code


class ManifestError(ValueError):
    """Manifests Fleetweb refuses: every problem, each naming its document and field."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclasses.dataclass(frozen=True)
class Parsed:
    objects: list[dict]  # in apply order, namespace filled in
    digest: str

    @property
    def summary(self) -> list[dict]:
        return [{"kind": o["kind"], "name": o["metadata"]["name"]} for o in self.objects]


def _where(index: int, doc) -> str:
    if isinstance(doc, dict):
        kind = doc.get("kind") or "?"
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        return f"document {index} ({kind} {name or '?'})"
    return f"document {index}"




def namespace_problem(namespace: str, *, admin: bool) -> tuple[str, int]:
    """('', 0) when an application may live in `namespace`, else (why not, 400 or 403). Only our own objects:
    never the system namespaces or Fleetweb's own, `default` only by an admin's decision."""
    problem = dns_label_problem(namespace, "namespace name")
    if problem:
        return problem, 400
    if namespace.startswith("kube-"):
        return f"'{namespace}' is a Kubernetes system namespace; applications may not deploy there.", 400
    if namespace == FLEETWEB_NAMESPACE:
        return f"'{namespace}' is Fleetweb's own namespace in the member clusters.", 400
    if namespace == "default" and not admin:
        return "Only admins may deploy an application into the 'default' namespace.", 403
    return "", 0


def parse(text: str, *, namespace: str, sourced: bool = False) -> Parsed:
    """Validate manifests for an application in `namespace`; raises ManifestError listing every problem.
    `sourced`: read from a source and rendered (`max_bytes`)."""
    if not text or not text.strip():
        raise ManifestError(["the manifests are empty: give at least one object"])
    cap = max_bytes(sourced=sourced)
    if len(text.encode()) > cap:
        raise ManifestError([f"the manifests are larger than {cap // 1000} kB"])
    try:
        docs = [d for d in yaml.load_all(text, Loader=untrusted.NoAliasLoader) if d is not None]  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([f"YAML does not parse{where}: {problem}"]) from None
    except RecursionError:
        raise ManifestError([f"the manifests nest deeper than {MAX_DEPTH} levels"]) from None
    if untrusted.too_deep(docs, MAX_DEPTH + 1):
        raise ManifestError([f"the manifests nest deeper than {MAX_DEPTH} levels"])
    errors: list[str] = []
    objects: list[dict] = []
    seen: set[tuple[str, str]] = set()
    for index, doc in enumerate(docs, start=1):
        where = _where(index, doc)
        if not isinstance(doc, dict):
            errors.append(f"{where}: is not an object (a mapping with apiVersion, kind, metadata)")
            continue
        problems = _check(doc, namespace)
        errors += [f"{where}: {p}" for p in problems]
        if problems:
            continue
        key = (doc["kind"], doc["metadata"]["name"])
        if key in seen:
            errors.append(f"{where}: a second {key[0]} named '{key[1]}'")
            continue
        seen.add(key)
        obj = copy.deepcopy(doc)
        obj["metadata"]["namespace"] = namespace
        objects.append(obj)
    if not objects and not errors:
        errors.append("the manifests hold no object")
    if errors:
        raise ManifestError(errors)
    objects.sort(key=lambda o: APPLY_ORDER.index(o["kind"]))
    digest = hashlib.sha256(json.dumps(objects, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Parsed(objects, digest)


def _check(doc: dict, namespace: str) -> list[str]:
    problems = []
    for field in ("apiVersion", "kind", "metadata"):
        if not doc.get(field):
            problems.append(f"{field} is missing")
    if problems:
        return problems
    kind, api_version, meta = doc["kind"], doc["apiVersion"], doc["metadata"]
    if not isinstance(meta, dict) or not meta.get("name"):
        return ["metadata.name is missing"]
    if not isinstance(meta["name"], str) or not _NAME.match(meta["name"]):
        problems.append(f"metadata.name '{meta['name']}' is not a valid name (lowercase letters, digits, '-', '.')")
    if kind == "Secret":
        return problems + ["Secrets are not shipped by Fleetweb: keep them in a secret store (External Secrets, "
                           "Sealed Secrets, your cloud's) and reference them from the workload"]
    if kind in CLUSTER_SCOPED:
        return problems + [f"kind {kind} is cluster-scoped: rollouts only apply namespaced objects "
                           "(the namespace itself is created from the application)"]
    if kind not in KINDS:
        return problems + [f"kind {kind} is not supported (supported: {', '.join(sorted(KINDS))})"]
    accepted = KINDS[kind][0]
    if api_version not in accepted:
        problems.append(f"apiVersion '{api_version}' is not served for {kind} (use {' or '.join(accepted)})")
    ns = meta.get("namespace")
    if ns and ns != namespace:
        problems.append(f"metadata.namespace '{ns}' differs from the application's namespace '{namespace}'")
    problems += reserved_key_problems(meta, "metadata")
    pod_meta = ((doc.get("spec") or {}).get("template") or {}) if isinstance(doc.get("spec"), dict) else {}
    pod_meta = pod_meta.get("metadata") if isinstance(pod_meta, dict) else None
    if isinstance(pod_meta, dict):
        problems += reserved_key_problems(pod_meta, "spec.template.metadata")
    if kind in WORKLOADS:
        spec = doc.get("spec")
        template = (spec or {}).get("template") if isinstance(spec, dict) else None
        containers = ((template or {}).get("spec") or {}).get("containers") if isinstance(template, dict) else None
        if not isinstance(containers, list) or not containers:
            problems.append("spec.template.spec.containers is missing or empty")
        else:
            for i, c in enumerate(containers):
                if not isinstance(c, dict) or not c.get("name") or not c.get("image"):
                    problems.append(f"spec.template.spec.containers[{i}] needs a name and an image")
        replicas = (spec or {}).get("replicas") if isinstance(spec, dict) else None
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            problems.append("spec.replicas must be a whole number ≥ 0")
    return problems


# -- overrides ---------------------------------------------------------------------------------


# Label and annotation keys that are Fleetweb's: ownership and revision marks. A manifest or override that set them
# could make another application's object look like its own, so they are refused at save, naming the key.
RESERVED_PREFIX = "fleetweb.io/"
RESERVED_KEYS = frozenset({"app.kubernetes.io/managed-by"})


def reserved_key(key) -> bool:
    return isinstance(key, str) and (key.startswith(RESERVED_PREFIX) or key in RESERVED_KEYS)


def reserved_key_problems(meta: dict, where: str) -> list[str]:
    """Each label or annotation of `meta` whose key is Fleetweb's, named."""
    problems = []
    for part in ("labels", "annotations"):
        values = meta.get(part)
        if values is not None and not isinstance(values, dict):
            problems.append(f"{where}.{part} must map keys to values")
            continue
        problems += [f"{where}.{part}.{key}: keys under '{RESERVED_PREFIX}' and '{', '.join(sorted(RESERVED_KEYS))}' "
                     "are Fleetweb's own and may not be set" for key in values or {} if reserved_key(key)]
    return problems


MAX_VALUES_BYTES = 256 * 1024


def values_digest(text: str) -> str:
    """What pins and audit events show of Helm values: their digest (they may be long, and hold secrets)."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def values_problem(text: str) -> str:
    """Why `text` cannot be a Helm values file ("" when it can): at most MAX_VALUES_BYTES of YAML holding one mapping,
    without aliases and nested at most untrusted.MAX_BODY_DEPTH deep. Helm reads it again in its box; this says what
    is wrong at save, in Fleetweb's words, instead of at the next render."""
    if not text.strip():
        return ""
    if len(text.encode()) > MAX_VALUES_BYTES:
        return f"Values are at most {MAX_VALUES_BYTES // 1024} KiB."
    try:
        loaded = yaml.load(text, Loader=untrusted.NoAliasLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        return f"Values are not valid YAML{where}: {getattr(exc, 'problem', None) or 'unreadable'}."
    if loaded is not None and not isinstance(loaded, dict):
        return "Values are a YAML mapping (key: value), as in a chart's values.yaml."
    if untrusted.too_deep(loaded, untrusted.MAX_BODY_DEPTH):
        return f"Values nest deeper than {untrusted.MAX_BODY_DEPTH} levels."
    return ""


def validate_override(*, replicas, image_tags, labels, values: str = "") -> list[str]:
    from django.core.exceptions import ValidationError as DjangoValidationError

    errors = []
    if not isinstance(values, str):
        errors.append("values: must be YAML text")
    elif problem := values_problem(values):
        errors.append(f"values: {problem}")
    if replicas is not None and (not isinstance(replicas, int) or isinstance(replicas, bool)
                                 or not 0 <= replicas <= 1000):
        errors.append("replicas: must be a whole number from 0 to 1000")
    if not isinstance(image_tags, dict):
        errors.append("image_tags: must map container names to tags")
    else:
        for container, tag in image_tags.items():
            if not isinstance(tag, str) or not _TAG.match(tag):
                errors.append(f"image_tags.{container}: '{str(tag)[:64]}' is not a valid image tag")
    if not isinstance(labels, dict):
        errors.append("labels: must map label keys to values")
    else:
        for key, value in labels.items():
            if reserved_key(key):
                errors.append(f"labels.{key}: keys under '{RESERVED_PREFIX}' and "
                              f"'{', '.join(sorted(RESERVED_KEYS))}' are Fleetweb's own and may not be set")
                continue
            if not isinstance(value, str):
                errors.append(f"labels.{key}: must be a string")
                continue
            try:
                validate_label(key, value)
            except DjangoValidationError as exc:
                errors.append(f"labels.{key}: {exc.messages[0]}")
    return errors


def _retag(image: str, tag: str) -> str:
    base = image.split("@", 1)[0]
    name_start = base.rfind("/") + 1
    colon = base.rfind(":")
    if colon > name_start:
        base = base[:colon]
    return f"{base}:{tag}"


# The label that says which application an object is; the engine takes over or deletes only objects carrying theirs.
APPLICATION_LABEL = "fleetweb.io/application"


def render(parsed_objects: list[dict], *, application: str, revision: int, digest: str,
           override=None) -> list[dict]:
    """The objects to apply on one cluster: Fleetweb's labels and annotations, plus the group's override."""
    out = []
    for original in parsed_objects:
        obj = copy.deepcopy(original)
        meta = obj["metadata"]
        # Fleetweb's own keys come last: nothing an override (even one stored before they were refused) holds
        # replaces them.
        own = {"app.kubernetes.io/managed-by": "fleetweb", APPLICATION_LABEL: application}
        extra = {k: str(v) for k, v in ((override.labels or {}) if override is not None else {}).items()}
        meta["labels"] = {**(meta.get("labels") or {}), **extra, **own}
        meta["annotations"] = {**(meta.get("annotations") or {}), "fleetweb.io/revision": str(revision),
                               "fleetweb.io/digest": digest}
        if override is not None:
            if obj["kind"] in ("Deployment", "StatefulSet") and override.replicas is not None:
                obj["spec"]["replicas"] = override.replicas
            if obj["kind"] in WORKLOADS and override.image_tags:
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    if c["name"] in override.image_tags:
                        c["image"] = _retag(c["image"], override.image_tags[c["name"]])
        out.append(obj)
    return out


def path_of(obj: dict) -> str:
    """The object's own API path (for server-side apply, GET and DELETE)."""
    _, prefix, plural = KINDS[obj["kind"]]
    return f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}/{obj['metadata']['name']}"


def diff(old: str, new: str, *, old_label: str, new_label: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=old_label, tofile=new_label))


# -- readiness ---------------------------------------------------------------------------------


def readiness(kind: str, live: dict) -> dict:
    """{desired, updated, available, ready} of a live workload as its controller reports it."""
    spec, status = live.get("spec") or {}, live.get("status") or {}
    generation = live.get("metadata", {}).get("generation", 0)
    observed = status.get("observedGeneration", 0) >= generation
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        updated, available = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
        ready = observed and updated == desired and available == desired
    elif kind == "Job":
        desired = spec.get("completions") or 1
        updated = available = status.get("succeeded", 0)
        ready = available >= desired
    else:
        desired = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        available = status.get("availableReplicas", 0) if kind == "Deployment" else status.get("readyReplicas", 0)
        total = status.get("replicas", 0)
        ready = observed and updated == desired and available == desired and total == desired
        if kind == "StatefulSet" and status.get("updateRevision"):
            ready = ready and status.get("currentRevision") == status.get("updateRevision")
    return {"desired": desired, "updated": updated, "available": available, "ready": bool(ready),
            "observed_generation": observed}
