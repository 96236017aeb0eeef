"""Credentials at rest: MultiFernet over FLEETWEB_ENCRYPTION_KEYS (first key encrypts, all decrypt)."""

from __future__ import annotations

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from foundation.env import ConfigError


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ConfigError("FLEETWEB_ENCRYPTION_KEYS is empty")
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys])
    except ValueError as exc:
        raise ConfigError(f"FLEETWEB_ENCRYPTION_KEYS holds a key that is not a Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    """The MultiFernet of the configured keys."""
    return _fernet(tuple(settings.FLEETWEB_ENCRYPTION_KEYS))


def encrypt_json(value: dict) -> str:
    """Encrypt a JSON-serialisable dict to a Fernet token (text)."""
    return fernet().encrypt(json.dumps(value, separators=(",", ":")).encode()).decode()


def decrypt_json(token: str) -> dict:
    """Decrypt a token made by `encrypt_json`; a token no configured key opens is a ConfigError."""
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken:
        raise ConfigError("stored credentials cannot be decrypted with FLEETWEB_ENCRYPTION_KEYS "
                          "(was a key removed before rotating?)") from None


def rotate(token: str) -> str:
    """Re-encrypt a token under the first (newest) key."""
    return fernet().rotate(token.encode()).decode()


# Models holding a `ciphertext` column, as each app registers them in its AppConfig.ready: (model, what the command
# calls its rows, other fields a re-encryption saves). `manage.py rotate_encryption_keys` re-encrypts them all.
SEALED: list[tuple[type, str, tuple[str, ...], str]] = []


def sealed(model: type, what: str, *, also: tuple[str, ...] = (), field: str = "ciphertext") -> None:
    """Register a model whose `field` holds secrets sealed with these keys (`rotate_encryption_keys` re-encrypts
    every one; `also`: fields its save updates with it)."""
    if not any(entry[0] is model and entry[3] == field for entry in SEALED):
        SEALED.append((model, what, also, field))
