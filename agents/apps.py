from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """Registered clusters: bootstrap tokens, registrations, the agents' credentials and the relay that carries the
    member port's calls to an agent (`inventory.port.ADAPTERS["agent"]`)."""

    name = "agents"

    def ready(self) -> None:
        from agents import pages, relay
        from inventory import extensions, port

        port.ADAPTERS["agent"] = relay.opener
        extensions.register(panel=pages.agent_panel)
