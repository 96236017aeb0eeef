from django.apps import AppConfig


class SiteConfig(AppConfig):
    """The roof: settings, URLs, the Celery app and the `run` launcher, over every app (no models)."""

    name = "fleetweb"
    label = "fleetweb_site"
