"""Validators of the inventory app."""

from urllib.parse import urlparse

from django.core.exceptions import ValidationError


def validate_server_url(value: str) -> None:
    """An API server URL: http(s), a host (single-label names like `k8s-master` are fine), a valid port.

    Django's URLValidator refuses single-label hosts, which real kubeconfigs use.
    """
    parsed = urlparse(value or "")
    if parsed.scheme not in ("https", "http"):
        raise ValidationError(f"'{value}' is not an API server URL: it must start with https://")
    if not parsed.hostname:
        raise ValidationError(f"'{value}' names no host.")
    try:
        parsed.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValidationError(f"'{value}' has an invalid port.") from None
    if any(c.isspace() for c in value):
        raise ValidationError(f"'{value}' contains spaces.")


def validate_selector(value: str) -> None:
    """A cluster selector that parses; the message names the position of the fault."""
    from inventory.selectors import SelectorError, parse

    try:
        parse(value)
    except SelectorError as exc:
        raise ValidationError(str(exc), code="selector") from None
