from django.apps import AppConfig


class FoundationConfig(AppConfig):
    """The audit log and API tokens' tables, under the label they were created with."""

    name = "foundation"
    label = "fleetweb"
    verbose_name = "Fleetweb"
