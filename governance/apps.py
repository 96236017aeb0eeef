from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Policy catalog, assignments, compliance, enforcement; the audit pages."""

    name = "governance"

    def ready(self) -> None:
        # audit receivers, alert conditions, metrics, the built-in policy sets (installed after each migrate)
        from governance import alerts, metrics, policysets, signals  # noqa: F401
        from governance.services import EnforcementGuard
        from inventory.signals import membership_guards

        if not any(isinstance(g, EnforcementGuard) for g in membership_guards):
            membership_guards.append(EnforcementGuard())
        from governance import pages

        pages.register()  # the compliance tab, group scores and member compliance on inventory's pages
