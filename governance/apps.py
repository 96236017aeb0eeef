from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Policy catalog, assignments, compliance and the audit log (see the governance issue)."""

    name = "governance"
