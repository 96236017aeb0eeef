"""Validators of the inventory app."""

from django.core.exceptions import ValidationError


def validate_server_url(value: str) -> None:
    """An API server URL as the outbound address policy reads it: https (http only where the service allows it),
    a host (single-label names like `k8s-master` are fine), a port, a path prefix, no query or fragment."""
    from fleetweb.outbound import OutboundRefused, check_url

    try:
        check_url(value, schemes=("https", "http"), what="API server URL")
    except OutboundRefused as exc:
        raise ValidationError(str(exc)) from None


def normalize_server_url(value: str) -> str:
    from fleetweb.outbound import check_url

    return check_url(value, schemes=("https", "http"), what="API server URL").url


def validate_selector(value: str) -> None:
    """A cluster selector that parses; the message names the position of the fault."""
    from inventory.selectors import SelectorError, parse

    try:
        parse(value)
    except SelectorError as exc:
        raise ValidationError(str(exc), code="selector") from None
