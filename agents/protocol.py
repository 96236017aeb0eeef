"""The wire rules between the hub and its agents: secrets, request signatures and bodies.

Every request an agent sends is signed with the Ed25519 key it made itself (the private key never leaves the
cluster): the signature covers the method, the path with its query, a timestamp and the body's SHA-256, so a
credential copied off the wire or out of a log is useless without the key, and a body cannot be swapped. A request
older or newer than MAX_SKEW seconds is refused.

Bodies are untrusted: at most FLEETWEB_AGENT_MAX_BODY_BYTES, JSON nested at most MAX_DEPTH deep, and each endpoint
checks the fields it reads (`field`)."""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.utils import timezone

from foundation import untrusted
from foundation.errors import ServiceError

MAX_SKEW = 300
MAX_DEPTH = 24
BOOTSTRAP_PREFIX = "fwb_"
CREDENTIAL_PREFIX = "fwa_"


class AgentError(ServiceError):
    """A request of an agent (or about one) Fleetweb refuses; the message is what the agent's log shows."""

    def __init__(self, message: str, *, field: str = "__all__", status: int = 400):
        super().__init__(message, field=field, status=status)


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def signed_text(method: str, path: str, date: str, body: bytes) -> bytes:
    """What a signature covers (the agent builds the same bytes: fleetagent.hub.signed_text)."""
    return f"{method.upper()}\n{path}\n{date}\n{hashlib.sha256(body).hexdigest()}".encode()


def public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise AgentError("public_key is not a base64 Ed25519 public key (32 bytes).", field="public_key") from None


def verify(key_text: str, *, method: str, path: str, date: str, signature: str, body: bytes,
           now: float | None = None) -> None:
    """Refuse (401) a request whose signature is not `key_text`'s over this method, path, date and body, or whose
    date is more than MAX_SKEW seconds away."""
    now = time.time() if now is None else now
    try:
        sent = int(date)
    except (TypeError, ValueError):
        raise AgentError("X-Fleetweb-Date is missing or not a Unix time.", status=401) from None
    if abs(now - sent) > MAX_SKEW:
        raise AgentError(f"X-Fleetweb-Date is more than {MAX_SKEW}s from the hub's clock: check the cluster's time.",
                         status=401)
    try:
        raw = base64.b64decode(signature or "", validate=True)
        public_key(key_text).verify(raw, signed_text(method, path, date, body))
    except (InvalidSignature, ValueError, binascii.Error, AgentError):
        raise AgentError("The request's signature does not match the agent's key.", status=401) from None


def parse_body(body: bytes, *, limit: int) -> dict:
    """A JSON object of at most `limit` bytes nested at most MAX_DEPTH deep, else AgentError (413 or 400)."""
    if len(body) > limit:
        raise AgentError(f"The request body is larger than {limit} bytes (FLEETWEB_AGENT_MAX_BODY_BYTES).",
                         status=413)
    try:
        value = json.loads(body or b"{}")
    except RecursionError:
        raise AgentError(f"The request body nests deeper than {MAX_DEPTH} levels.") from None
    except ValueError:
        raise AgentError("The request body is not JSON.") from None
    if not isinstance(value, dict):
        raise AgentError("The request body is not a JSON object.")
    if untrusted.too_deep(value, MAX_DEPTH):
        raise AgentError(f"The request body nests deeper than {MAX_DEPTH} levels.")
    return value


def field(body: dict, name: str, kind: type | tuple[type, ...], *, max_length: int = 512, required: bool = True,
          default: Any = None) -> Any:
    """`body[name]` when it is of `kind` (and a string at most `max_length` long), else AgentError naming it."""
    if name not in body or body[name] is None:
        if required:
            raise AgentError(f"'{name}' is required.", field=name)
        return default
    value = body[name]
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise AgentError(f"'{name}' has the wrong type.", field=name)
    if not isinstance(value, kind):
        raise AgentError(f"'{name}' has the wrong type.", field=name)
    if isinstance(value, str) and len(value) > max_length:
        raise AgentError(f"'{name}' is longer than {max_length} characters.", field=name)
    return value


# The heartbeat's contract: an agent not heard for two intervals is not connected (agents.services.silent_agents
# makes its cluster unreachable; the relay refuses calls at once; the cluster panel says since when).


def is_silent(last_heartbeat_at: datetime.datetime | None, *, now=None) -> bool:
    """An agent not heard for two heartbeat intervals (or never) is not connected (`silent_agents` is its query)."""
    if last_heartbeat_at is None:
        return True
    now = now or timezone.now()
    return (now - last_heartbeat_at).total_seconds() > 2 * settings.FLEETWEB_AGENT_HEARTBEAT


def silence_reason(since: datetime.datetime | None) -> str:
    if since is None:
        return "agent not connected yet"
    return f"agent not connected since {since:%Y-%m-%d %H:%M:%S} UTC"
