"""What a member applies to run the agent: the least-privilege roles Fleetweb generates for every member (reader,
enforcer, deployer: `inventory.access`), bound to the agent's own ServiceAccount; a Role that lets it read and write
only its two Secrets (the bootstrap token, spent and deleted at registration, and its state: key pair and current
short-lived credential); and the Deployment, non-root and read-only, that connects only out to the hub."""

from __future__ import annotations

import yaml
from django.conf import settings
from django.http import HttpRequest

from inventory.access import FLEETWEB_NAMESPACE, least_privilege_documents

AGENT_NAME = "fleetweb-agent"
BOOTSTRAP_SECRET = "fleetweb-agent-bootstrap"
STATE_SECRET = "fleetweb-agent-state"
AGENT_VERSION = "0.1.0"  # the version the hub's manifest runs; an agent reporting an older one is outdated


def hub_url(request: HttpRequest | None = None) -> str:
    """Where agents reach the hub: FLEETWEB_AGENT_URL (the agents' gateway), else FLEETWEB_BASE_URL, else the address
    this request came to."""
    if settings.FLEETWEB_AGENT_URL:
        return settings.FLEETWEB_AGENT_URL
    if settings.FLEETWEB_BASE_URL:
        return settings.FLEETWEB_BASE_URL
    return request.build_absolute_uri("/").rstrip("/") if request is not None else ""


def agent_documents(*, hub_url: str, bootstrap_token: str = "", namespace: str = FLEETWEB_NAMESPACE) -> list[dict]:
    docs = least_privilege_documents(namespace, AGENT_NAME, token_secret=False)
    docs += [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": AGENT_NAME, "namespace": namespace},
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": [BOOTSTRAP_SECRET, STATE_SECRET],
                    "verbs": ["get", "update", "patch", "delete"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": AGENT_NAME, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": AGENT_NAME},
         "subjects": [{"kind": "ServiceAccount", "name": AGENT_NAME, "namespace": namespace}]},
        # Its state starts empty: the agent may update it by name, never create or list Secrets.
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": STATE_SECRET, "namespace": namespace,
                      "annotations": {"fleetweb.io/managed": "the agent's key pair and credential"}}},
    ]
    if bootstrap_token:
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": BOOTSTRAP_SECRET, "namespace": namespace},
                     "stringData": {"token": bootstrap_token}})
    docs.append(_deployment(hub_url, namespace))
    return docs


def _deployment(hub_url: str, namespace: str) -> dict:
    labels = {"app.kubernetes.io/name": AGENT_NAME, "app.kubernetes.io/version": AGENT_VERSION}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": AGENT_NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one agent per cluster at a time: its key is one identity
            "selector": {"matchLabels": {"app.kubernetes.io/name": AGENT_NAME}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": AGENT_NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile":
                                        {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "agent",
                        "image": settings.FLEETWEB_AGENT_IMAGE,
                        "args": ["--hub", hub_url, "--namespace", namespace],
                        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"},
                                      "limits": {"memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }


def agent_manifest(*, hub_url: str, bootstrap_token: str = "") -> str:
    return yaml.safe_dump_all(agent_documents(hub_url=hub_url, bootstrap_token=bootstrap_token), sort_keys=False)


def apply_command(*, hub_url: str, bootstrap_token: str) -> str:
    """The one line an admin runs against the member (the token is single-use and expires)."""
    return f"kubectl apply -f '{hub_url}/agent/v1/manifest.yaml?token={bootstrap_token}'"
