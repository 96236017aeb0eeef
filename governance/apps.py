from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Policy catalog, assignments, compliance, enforcement; the audit pages."""

    name = "governance"

    def ready(self) -> None:
        from governance import alerts, metrics, signals  # noqa: F401 - audit receivers, alert conditions, metrics
        from governance.services import EnforcementGuard
        from inventory.signals import membership_guards

        if not any(isinstance(g, EnforcementGuard) for g in membership_guards):
            membership_guards.append(EnforcementGuard())
        from governance import pages

        pages.register()  # the compliance tab, group scores and member compliance on inventory's pages
