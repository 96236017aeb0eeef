"""The catalog of built-in baseline rules.

A rule is a plain function over the stored inventory of one cluster (`Context`) that yields a
`Finding` per violating object; adding a rule is one small module that calls `register(...)`
plus its tests. A rule that can be expressed as a ValidatingAdmissionPolicy also gives an
`admission` function returning its CEL, so `enforce` mode installs it in member clusters.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable

from foundation.params import Param, ParamError, clean_all
from governance.choices import Severity

__all__ = ["Param", "ParamError"]  # a rule's parameters are declared as every parameter is (foundation/params.py)

# The one severity list is governance.choices.Severity; rules, scores, filters and models read it.
SEVERITIES = tuple(Severity.values)
SEVERITY_WEIGHT: dict[str, int] = {Severity.CRITICAL: 8, Severity.HIGH: 4, Severity.MEDIUM: 2, Severity.LOW: 1}


def weighted_score(checks) -> float | None:
    """The one compliance score: the severity-weighted share of passed checks, 0-100, over `(severity, checks,
    passed)` triples (a cluster's results, or a group's or the fleet's aggregated); None when nothing was checked."""
    total = passed = 0
    for severity, count, ok in checks:
        total += SEVERITY_WEIGHT[severity] * count
        passed += SEVERITY_WEIGHT[severity] * ok
    return round(100 * passed / total, 1) if total else None
DEFAULT_EXCLUDED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One violating object: kind (Pod template owner, Namespace, Cluster, KubeletVersion), namespace, name."""

    kind: str
    namespace: str
    name: str
    message: str


@dataclasses.dataclass
class Context:
    """The stored inventory of one cluster that rules read, with excluded namespaces already removed."""

    cluster_name: str
    kubernetes_version: str
    today: datetime.date
    workloads: list[dict] = dataclasses.field(default_factory=list)  # namespace, kind, name, labels, pod_template
    namespaces: list[dict] = dataclasses.field(default_factory=list)  # name, labels, resource_quotas, limit_ranges
    kubelet_versions: dict[str, int] = dataclasses.field(default_factory=dict)  # version -> node count
    addons: list[dict] = dataclasses.field(default_factory=list)  # addon, version, namespace, workload, kind


@dataclasses.dataclass(frozen=True)
class Admission:
    """A rule as a ValidatingAdmissionPolicy: which resources it checks and its CEL validations."""

    resources: tuple[tuple[str, str], ...]  # (apiGroup, resource)
    validations: tuple[dict, ...]  # {"expression": ..., "message": ...}
    operations: tuple[str, ...] = ("CREATE", "UPDATE")
    variables: tuple[dict, ...] = ()


@dataclasses.dataclass(frozen=True)
class Rule:
    key: str
    title: str
    why: str
    severity: str
    scope: str  # workload, namespace, cluster, addon
    fix: str
    check: Callable[[Context, dict], Iterable[Finding]]
    params: tuple[Param, ...] = ()
    admission: Callable[[dict], Admission] | None = None
    audit_only_reason: str = ""

    @property
    def enforceable(self) -> bool:
        return self.admission is not None

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    @property
    def needs_input(self) -> bool:
        """True when the defaults are not enough (a list that must be filled in)."""
        return any(p.required and not p.default for p in self.params)

    def strictest_params(self, each: list[dict]) -> dict:
        """One set of parameters from several assignments' (defaults filled in): each the strictest (`Param.merge`)."""
        return {p.name: p.strictest([params[p.name] for params in each]) for p in self.params}

    def clean_params(self, raw: dict | None) -> dict:
        """Validated parameters with defaults filled in; unknown names and bad values raise ParamError."""
        return clean_all(self.params, dict(raw or {}))


REGISTRY: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    assert rule.key not in REGISTRY, f"rule {rule.key} registered twice"
    assert rule.severity in SEVERITIES, rule.severity
    assert rule.admission is not None or rule.audit_only_reason, f"{rule.key}: say why it cannot be enforced"
    for p in rule.params:
        assert p.merge in ("union", "intersection", "any", "max", "min"), f"{rule.key}.{p.name}: say how to merge"
    REGISTRY[rule.key] = rule
    return rule


def get(key: str) -> Rule:
    return REGISTRY[key]


def catalog() -> list[Rule]:
    """Every rule, most severe first."""
    return sorted(REGISTRY.values(), key=lambda r: (SEVERITIES.index(r.severity), r.key))


# -- shared CEL for pod-template rules ---------------------------------------------------------

POD_RESOURCES = (("", "pods"), ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
                 ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"))
WORKLOAD_RESOURCES = POD_RESOURCES[1:]
# The pod spec of a Pod, of a workload's template, or of a CronJob's job template.
POD_SPEC_VARIABLES = (
    {"name": "podSpec", "expression": "object.kind == 'Pod' ? object.spec : "
                                      "(object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : "
                                      "object.spec.template.spec)"},
    {"name": "containers", "expression": "variables.podSpec.containers + "
                                         "variables.podSpec.?initContainers.orValue([])"},
)


def pod_admission(*validations: dict, kinds=POD_RESOURCES) -> Admission:
    return Admission(resources=kinds, validations=tuple(validations), variables=POD_SPEC_VARIABLES)


def cel_list(values: Iterable[str]) -> str:
    """A CEL list literal of strings, safely quoted."""
    import json

    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def containers(workload: dict) -> list[dict]:
    return workload["pod_template"].get("containers", [])


def where(workload: dict) -> tuple[str, str, str]:
    return workload["kind"], workload["namespace"], workload["name"]


def _register_rule_modules() -> None:
    """Import every module of this package: a module's rules register themselves, so a new policy module is found
    by being here, with no list to keep."""
    import importlib
    import pkgutil

    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


_register_rule_modules()
