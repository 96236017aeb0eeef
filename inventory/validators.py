"""Validators of the inventory app (domain rules: pages, API and services share them)."""

import re

from django.core.exceptions import ValidationError

from foundation.outbound import OutboundRefused, check_url
from inventory.selectors import SelectorError, parse

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def dns_label_problem(value: str, what: str = "name") -> str:
    """'' when `value` is a Kubernetes name (RFC 1123 label), else the rule, in the words kubectl users know."""
    if DNS_LABEL.match(value or ""):
        return ""
    return (f"'{value}' is not a Kubernetes {what}: at most 63 characters, lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, e.g. 'shop-web' (RFC 1123 label).")


def validate_dns_label(value: str) -> None:
    """Django/DRF validator of a name that becomes a Kubernetes name or label value."""
    problem = dns_label_problem(value)
    if problem:
        raise ValidationError(problem)


def validate_server_url(value: str) -> None:
    """An API server URL as the outbound address policy reads it: https (http only where the service allows it),
    a host (single-label names like `k8s-master` are fine), a port, a path prefix, no query or fragment."""
    try:
        check_url(value, schemes=("https", "http"), what="API server URL")
    except OutboundRefused as exc:
        raise ValidationError(str(exc)) from None


def normalize_server_url(value: str) -> str:
    return check_url(value, schemes=("https", "http"), what="API server URL").url


def validate_selector(value: str) -> None:
    """A cluster selector that parses; the message names the position of the fault."""
    try:
        parse(value)
    except SelectorError as exc:
        raise ValidationError(str(exc), code="selector") from None


MINOR_VERSION = re.compile(r"^1\.(\d{1,3})$")


def validate_minor_version(value: str) -> None:
    """A Kubernetes minor release as a group's upgrade target: '1.37' (no patch, no 'v')."""
    if value and not MINOR_VERSION.match(value):
        raise ValidationError(f"'{value}' is not a Kubernetes minor release: write it as 1.37 (no 'v', no patch).")


_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` pairs separated by commas or new lines, with Kubernetes label syntax checked."""
    labels: dict[str, str] = {}
    for raw in re.split(r"[,\n]", text or ""):
        item = raw.strip()
        if not item:
            continue
        if "=" not in item:
            raise ValidationError(f"'{item}' is not key=value.")
        key, value = (part.strip() for part in item.split("=", 1))
        validate_label(key, value)
        labels[key] = value
    return labels


def validate_label(key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        raise ValidationError(f"Label key '{key}' has an invalid prefix (a DNS subdomain).")
    if not _LABEL_NAME.match(name):
        raise ValidationError(f"Label key '{key}' is invalid: up to 63 letters, digits, '-', '_' or '.', "
                                    "starting and ending with a letter or digit.")
    if value and not _LABEL_NAME.match(value):
        raise ValidationError(f"Label value '{value}' of '{key}' is invalid: up to 63 letters, digits, "
                                    "'-', '_' or '.', starting and ending with a letter or digit.")


def format_labels(labels: dict[str, str]) -> str:
    return "\n".join(f"{k}={v}" for k, v in sorted(labels.items()))
