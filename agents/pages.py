"""What registered clusters add to inventory's pages (registered in AgentsConfig.ready): the agent panel under a
cluster's header (via agent, its version and whether it is outdated, its last heartbeat, what it last reported,
Revoke for admins)."""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from agents import manifests, services
from agents.models import Agent
from inventory.people.access import can


def agent_panel(cluster, user) -> dict | None:
    if cluster.auth_method != "agent":
        return None
    agent = Agent.objects.filter(cluster=cluster).first()
    if agent is None:
        return None
    silent = agent.last_heartbeat_at is None or (
        (timezone.now() - agent.last_heartbeat_at).total_seconds() > 2 * settings.FLEETWEB_AGENT_HEARTBEAT)
    failed = [c for c in agent.report.get("checks", []) if not c.get("ok")]
    return {"template": "agents/_agent_panel.html", "agent": agent, "silent": silent,
            "silence": services.silence_reason(agent.last_heartbeat_at), "failed_checks": failed,
            "outdated": bool(agent.version) and agent.version != manifests.AGENT_VERSION,
            "current_version": manifests.AGENT_VERSION, "may_revoke": can(user, "register_cluster"),
            "upgrade_manifest": manifests.agent_manifest(hub_url=manifests.hub_url()) if can(
                user, "register_cluster") else ""}
