"""What registered clusters add to inventory's pages (registered in AgentsConfig.ready): the agent panel under a
cluster's header (via agent, its version and whether it is outdated, its last heartbeat, what it last reported,
Revoke for admins)."""

from __future__ import annotations

from agents import manifests, protocol
from agents.models import Agent
from inventory.people.access import can


def agent_panel(cluster, user) -> dict | None:
    if cluster.auth_method != "agent":
        return None
    agent = Agent.objects.filter(cluster=cluster).first()
    if agent is None:
        return None
    admin = can(user, "register_cluster")
    outdated = bool(agent.version) and agent.version != manifests.AGENT_VERSION
    return {"template": "agents/_agent_panel.html", "agent": agent,
            "silent": protocol.is_silent(agent.last_heartbeat_at),
            "silence": protocol.silence_reason(agent.last_heartbeat_at),
            "failed_checks": [c for c in agent.report.get("checks", []) if not c.get("ok")],
            "outdated": outdated, "current_version": manifests.AGENT_VERSION, "may_revoke": admin,
            # Rendered only where shown: the header refreshes every 10 s.
            "upgrade_manifest": manifests.agent_manifest(hub_url=manifests.hub_url()) if admin and outdated else ""}
