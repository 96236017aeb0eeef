"""What Fleetweb may do in a member cluster: the connection test (reach the API server, check every permission the
collector needs) and the least-privilege RBAC manifest it asks platform teams to apply."""

from __future__ import annotations

import dataclasses

import yaml

from inventory import kinds, port


@dataclasses.dataclass
class Check:
    """One line of the connection test."""

    name: str
    ok: bool
    detail: str = ""
    optional: bool = False  # a failed optional check warns but does not stop the attach


@dataclasses.dataclass
class ConnectionReport:
    """Result of `test_connection`: version, checks and the overall verdict."""

    ok: bool
    checks: list[Check]
    version: str = ""
    error: port.KubeError | None = None
    kube_system_uid: str = ""  # what tells one cluster from another whatever URL reaches it ("" when unread)


def test_connection(credentials: dict, *, insecure: bool = False) -> ConnectionReport:
    """Reach /version and check every list permission the collector needs; never raises."""
    checks: list[Check] = []
    try:
        member = port.connect_with(credentials, insecure=insecure)
    except port.KubeError as exc:
        return ConnectionReport(False, [Check("credentials", False, exc.message)], error=exc)
    with member:
        try:
            version = member.version()
        except port.KubeError as exc:
            checks.append(Check("reach API server (/version)", False, exc.message))
            return ConnectionReport(False, checks, error=exc)
        git_version = version.get("gitVersion", "")
        checks.append(Check("reach API server (/version)", True, f"Kubernetes {git_version}"))
        ok = True
        first_error: port.KubeError | None = None
        for kind in kinds.KINDS:
            label = f"list {kind.rbac_label}"
            try:
                allowed, reason = port.can_i(member, verb="list", group=kind.group, resource=kind.resource)
            except port.KubeError as exc:
                checks.append(Check(label, False, exc.message))
                first_error = first_error or exc
                ok = False
                if exc.fatal:
                    break
                continue
            if not allowed:
                ok = False
                where = f" in API group '{kind.group}'" if kind.group else ""
                detail = f"403: not allowed to list {kind.resource}{where}"
                first_error = first_error or port.KubeError("forbidden", detail, http_status=403)
                checks.append(Check(label, False, detail + (f" ({reason})" if reason else "")))
            else:
                checks.append(Check(label, True, "allowed"))
        if ok:
            checks.append(_enforcement_check(member))
            checks.append(_deploy_check(member))
            checks += _readiness_checks(member)
        return ConnectionReport(ok, checks, version=git_version, error=first_error,
                                kube_system_uid=_kube_system_uid(member) if ok else "")


def _kube_system_uid(member: port.Member) -> str:
    """The `kube-system` namespace's uid (the reader may get namespaces); "" when it cannot be read."""
    try:
        uid = (member.read("/api/v1/namespaces/kube-system").get("metadata") or {}).get("uid")
    except (port.KubeError, AttributeError):
        return ""
    return uid[:64] if isinstance(uid, str) else ""


def _enforcement_check(member: port.Member) -> Check:
    """Optional: may Fleetweb install its admission policies here (policies in enforce mode)?"""
    label = "manage validatingadmissionpolicies (enforce mode, optional)"
    try:
        allowed, _ = port.can_i(member, verb="create", group="admissionregistration.k8s.io",
                                resource="validatingadmissionpolicies")
    except port.KubeError as exc:
        return Check(label, False, exc.message, optional=True)
    if allowed:
        return Check(label, True, "allowed", optional=True)
    return Check(label, False, "not allowed: audit mode works, enforce-mode policies will fail on this cluster "
                               "(apply the fleetweb-reader-enforcer role to allow it)", optional=True)


def _deploy_check(member: port.Member) -> Check:
    """Optional: may Fleetweb apply applications' objects here (rollouts, Re-apply, drift correction)?"""
    label = "apply application objects (rollouts, Re-apply and drift correction, optional)"
    missing = []
    try:
        for group, resource, verb in (("", "namespaces", "create"), ("apps", "deployments", "patch"),
                                      ("", "configmaps", "patch"), ("", "services", "patch")):
            allowed, _ = port.can_i(member, verb=verb, group=group, resource=resource)
            if not allowed:
                missing.append(f"{verb} {resource}{'.' + group if group else ''}")
    except port.KubeError as exc:
        return Check(label, False, exc.message, optional=True)
    if not missing:
        return Check(label, True, "allowed", optional=True)
    return Check(label, False, f"not allowed ({', '.join(missing)}): inventory and policies work, rollouts to this "
                               "cluster fail (apply the fleetweb-reader-deployer role to allow them)", optional=True)


# Upgrade readiness (inventory/readiness.py): the API server's own metrics, for the deprecated APIs its clients
# call (get on that one URL, nothing more), and the CRDs, for the versions they still store objects at.
READINESS_RULES = [
    {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["get", "list"]},
]


def _readiness_checks(member: port.Member) -> list[Check]:
    """Optional: may Fleetweb read what upgrade readiness needs? Without it the Upgrade plan says "unknown"."""
    checks = []
    for label, attributes in (
            ("get /metrics (upgrade readiness, optional)", {"nonResourceAttributes": {"verb": "get",
                                                                                      "path": "/metrics"}}),
            ("list customresourcedefinitions.apiextensions.k8s.io (upgrade readiness, optional)",
             {"resourceAttributes": {"verb": "list", "group": "apiextensions.k8s.io",
                                     "resource": "customresourcedefinitions"}})):
        try:
            allowed, _ = member.review(attributes)
        except port.KubeError as exc:
            checks.append(Check(label, False, exc.message, optional=True))
            continue
        checks.append(Check(label, allowed, "allowed" if allowed else
                            "not allowed: the Upgrade plan shows this cluster as unknown (apply the current manifest)",
                            optional=True))
    return checks


# What rollouts may apply, by API group (rollouts.manifests.KINDS, plus namespaces they create).
DEPLOYABLE = {
    "": ["namespaces", "serviceaccounts", "configmaps", "persistentvolumeclaims", "services"],
    "apps": ["deployments", "statefulsets", "daemonsets"],
    "batch": ["jobs", "cronjobs"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
    "policy": ["poddisruptionbudgets"],
    "autoscaling": ["horizontalpodautoscalers"],
}


# Fleetweb's own namespace in member clusters (its ServiceAccount and token): never an application's.
FLEETWEB_NAMESPACE = "fleetweb-system"


def least_privilege_manifest(namespace: str = FLEETWEB_NAMESPACE, name: str = "fleetweb-reader", *,
                             enforce: bool = True, deploy: bool = True) -> str:
    """ServiceAccount, ClusterRole (get/list/watch on exactly the collected kinds, and what upgrade readiness reads:
    get on /metrics, get/list on CRDs), binding, token Secret; with `enforce` a separate role to manage Fleetweb's
    ValidatingAdmissionPolicies (enforce mode), with `deploy` one to apply rollouts' objects. The attach page
    offers it read-only, each opt-in explained."""
    return yaml.safe_dump_all(least_privilege_documents(namespace, name, enforce=enforce, deploy=deploy),
                              sort_keys=False)


def least_privilege_documents(namespace: str = FLEETWEB_NAMESPACE, name: str = "fleetweb-reader", *,
                              token_secret: bool = True, enforce: bool = True, deploy: bool = True) -> list[dict]:
    """The documents of `least_privilege_manifest`; without `token_secret` for an agent, which runs as the
    ServiceAccount and needs no token handed out; without `enforce` or `deploy`, without that role."""
    rules = kinds.rbac_rules()
    docs: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [group], "resources": sorted(resources), "verbs": ["get", "list", "watch"]}
                      for group, resources in rules.items()] + READINESS_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        # Enforcement: install and remove Fleetweb's own admission policies. Leave these two
        # documents out to attach read-only; enforce-mode policies then show "failed: 403".
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{name}-enforcer"},
            "rules": [{"apiGroups": ["admissionregistration.k8s.io"],
                       "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
                       "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{name}-enforcer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{name}-enforcer"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        # Rollouts: server-side apply of application objects (never Secrets: Fleetweb neither reads nor ships them).
        # Leave these two out for a cluster that only receives policies, never rollouts.
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{name}-deployer"},
            "rules": [{"apiGroups": [group], "resources": resources,
                       "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}
                      for group, resources in DEPLOYABLE.items()],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{name}-deployer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{name}-deployer"},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
    roles = {f"{name}-enforcer": enforce, f"{name}-deployer": deploy}
    docs = [d for d in docs if roles.get(d["metadata"]["name"], True)]
    if token_secret:
        docs.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {"name": f"{name}-token", "namespace": namespace,
                         "annotations": {"kubernetes.io/service-account.name": name}},
        })
    return docs


def least_privilege_commands(namespace: str = FLEETWEB_NAMESPACE, name: str = "fleetweb-reader") -> str:
    """The kubectl commands that apply the manifest and read back what Fleetweb needs."""
    return "\n".join([
        "kubectl apply -f fleetweb-reader.yaml",
        f"kubectl -n {namespace} get secret {name}-token -o jsonpath='{{.data.token}}' | base64 -d",
        f"kubectl -n {namespace} get secret {name}-token -o jsonpath='{{.data.ca\\.crt}}' | base64 -d",
        "kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}'",
    ])
