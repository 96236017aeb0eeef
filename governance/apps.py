from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Policy catalog, assignments, compliance and the audit log."""

    name = "governance"

    def ready(self) -> None:
        from governance import signals  # noqa: F401 - connects the login/logout audit receivers
