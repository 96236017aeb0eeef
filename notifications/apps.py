from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Channels, alert rules, alerts and deliveries; the apps above register their event types and conditions."""

    name = "notifications"

    def ready(self) -> None:
        from foundation import crypto
        from notifications import conditions  # noqa: F401 - the clusters' conditions
        from notifications.models import Channel

        crypto.sealed(Channel, "channel URLs and signing secrets")
