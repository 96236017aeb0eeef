from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Clusters, credentials, the collector and the stored inventory."""

    name = "inventory"

    def ready(self) -> None:
        from foundation.roles import register_team_roles
        from inventory import querysets
        from inventory.people.access import access_of, team_roles_anywhere

        register_team_roles(team_roles_anywhere)
        querysets.use_access(access_of)
        from foundation import crypto
        from inventory import metrics  # noqa: F401 - registers the cluster metrics
        from inventory.models import AttachDraft, ClusterCredential

        crypto.sealed(ClusterCredential, "cluster credentials", also=("rotated_at",))
        crypto.sealed(AttachDraft, "attach drafts")
