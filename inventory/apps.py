from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Clusters, credentials, the collector and the stored inventory."""

    name = "inventory"

    def ready(self) -> None:
        from fleetweb.roles import register_team_roles
        from inventory.teams import team_roles_anywhere

        register_team_roles(team_roles_anywhere)
        from inventory import metrics, notifications  # noqa: F401 - registers the cluster metrics and conditions
