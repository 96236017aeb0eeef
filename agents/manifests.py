"""What a member applies to run the agent: the least-privilege roles Fleetweb generates for every member (reader,
enforcer, deployer: `inventory.access`), bound to the agent's own ServiceAccount; a Role that lets it read and write
only its two Secrets (the bootstrap token, spent and deleted at registration, and its state: key pair and current
short-lived credential); and the Deployment, non-root and read-only, that connects only out to the hub."""

from __future__ import annotations

import json

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


# ---------------------------------------------------------------------------------------------
# The agent's Helm chart (charts/fleetweb-agent): written from the documents above, so that what `helm install`
# applies and what the hub's manifest applies are the same objects (`manage.py agent_chart` writes it; a test checks
# that the committed chart is what it writes).

CHART_DIR = "charts/fleetweb-agent"
_HUB, _IMAGE = "__FLEETWEB_HUB_URL__", "__FLEETWEB_AGENT_IMAGE__"
_TOKEN = "__FLEETWEB_BOOTSTRAP_TOKEN__"


def chart_files() -> dict[str, str]:
    """{path in the chart: text} of the agent's chart at AGENT_VERSION."""
    docs = [d for d in agent_documents(hub_url=_HUB, bootstrap_token=_TOKEN) if d["kind"] != "Namespace"]
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = _IMAGE
    blocks = []
    for doc in docs:
        text = yaml.safe_dump(doc, sort_keys=False)
        if doc["kind"] == "Secret" and doc["metadata"]["name"] == BOOTSTRAP_SECRET:
            text = "{{- if .Values.bootstrapToken }}\n" + text + "{{- end }}\n"
        blocks.append(text)
    template = "\n---\n".join(blocks)
    template = (template.replace(_HUB, "{{ required \"hubUrl: the hub's agents address (FLEETWEB_AGENT_URL)\" "
                                       ".Values.hubUrl | quote }}")
                .replace(_IMAGE, "{{ .Values.image | quote }}")
                .replace(_TOKEN, "{{ .Values.bootstrapToken | quote }}"))
    header = ("{{- if ne .Release.Namespace \"" + FLEETWEB_NAMESPACE + "\" }}{{ fail \"install into the namespace "
              + FLEETWEB_NAMESPACE + " (--namespace " + FLEETWEB_NAMESPACE + " --create-namespace): the hub and its "
              "policies know Fleetweb's namespace in a member by that name\" }}{{ end }}\n"
              "# Written by `manage.py agent_chart` from agents/manifests.py: the hub's agent manifest's objects.\n")
    return {
        "Chart.yaml": yaml.safe_dump({
            "apiVersion": "v2", "name": AGENT_NAME, "type": "application", "version": AGENT_VERSION,
            "appVersion": AGENT_VERSION, "kubeVersion": ">=1.29.0-0",
            "description": "Fleetweb's agent for a cluster Fleetweb cannot reach: it connects out to the hub. The same "
                           "objects as the hub's manifest (Register a cluster)."}, sort_keys=False),
        "values.yaml": ("# The hub's agents address (FLEETWEB_AGENT_URL), as the Register a cluster page shows it.\n"
                        "hubUrl: \"\"\n"
                        "# The single-use bootstrap token from that page; or leave it empty and create the Secret\n"
                        f"# {BOOTSTRAP_SECRET} (key: token) yourself, which keeps it out of Helm's release record.\n"
                        "bootstrapToken: \"\"\n"
                        f"image: {settings.FLEETWEB_AGENT_IMAGE}\n"),
        "values.schema.json": json.dumps({
            "$schema": "https://json-schema.org/draft-07/schema#", "type": "object", "additionalProperties": False,
            "required": ["hubUrl"],
            "properties": {"hubUrl": {"type": "string", "pattern": "^(https://.+|)$",
                                      "description": "https:// only: the agent never speaks plain http"},
                           "bootstrapToken": {"type": "string"}, "image": {"type": "string", "minLength": 1}}},
            indent=2) + "\n",
        "templates/agent.yaml": header + template,
    }
