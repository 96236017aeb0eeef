from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """Registered clusters: bootstrap tokens, registrations, the agents' credentials and the relay that carries the
    member port's calls to an agent (`inventory.port.ADAPTERS["agent"]`)."""

    name = "agents"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from agents import pages, relay, services
        from agents.models import Agent
        from inventory import extensions, port

        port.ADAPTERS["agent"] = relay.openers
        extensions.register(panel=pages.agent_panel)
        # Detaching a cluster deletes its agent: the polls' cached identity goes with it.
        post_delete.connect(lambda sender, instance, **_: services.forget(instance.credential_digest,
                                                                           instance.previous_digest),
                            sender=Agent, weak=False, dispatch_uid="agents.forget_deleted")
