from django.apps import AppConfig


class InventoryConfig(AppConfig):
    """Clusters, credentials, the collector and the stored inventory."""

    name = "inventory"
