"""Typed readers of environment variables that fail loudly on bad values (Healthchecks' style).

Every secret can also come from a file named by `<NAME>_FILE` (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


class ConfigError(ValueError):
    """An environment variable holds a value Fleetweb cannot use."""


def env_str(name: str, default: str = "") -> str:
    """A string, also read from the file named by `NAME_FILE`."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={file_name!r} cannot be read: {exc.strerror}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    """`1/true/yes/on` or `0/false/no/off` (any case); anything else is an error."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """An integer, at least `minimum` when given."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    raw = env_str(name)
    if not raw:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int_map(name: str, keys: tuple[str, ...], *, minimum: int = 0) -> dict[str, int]:
    """`key=integer` pairs, comma-separated (`prod=14400,staging=86400`), each key one of `keys`, each value at least
    `minimum`; empty: none."""
    out: dict[str, int] = {}
    for item in env_list(name):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or key not in keys:
            raise ConfigError(f"{name}: {item!r} is not KEY=SECONDS with KEY one of {', '.join(keys)}")
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}: {item!r}: {raw.strip()!r} is not an integer") from None
        if value < minimum:
            raise ConfigError(f"{name}: {key}={value} must be at least {minimum}")
        out[key] = value
    return out


def env_networks(name: str, default: list[str] | None = None, *, none_word: bool = False) -> list[str]:
    """A comma-separated list of networks (CIDRs), each checked; with `none_word`, `none` means an empty list."""
    import ipaddress

    value = env_list(name, default)
    if none_word and value == ["none"]:
        return []
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            also = ", nor 'none'" if none_word else ""
            raise ConfigError(f"{name}: {item!r} is not a network (CIDR such as 10.20.0.0/16){also}") from None
    return value


def parse_database_url(url: str) -> dict:
    """Django DATABASES entry from `postgres://user:pass@host:port/name?sslmode=…&host=/socket/dir`."""
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ConfigError("DATABASE_URL must be a postgres:// URL (PostgreSQL is the only database), "
                          f"got {parsed.scheme!r}")
    query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    name = unquote(parsed.path.lstrip("/"))
    if not name:
        raise ConfigError("DATABASE_URL names no database (postgres://user:pass@host:5432/NAME)")
    host = query.pop("host", None) or unquote(parsed.hostname or "")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "OPTIONS": query,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }


def celery_broker_url(redis_url: str) -> str:
    """Celery spells a unix-socket Redis `redis+socket://`; redis-py spells it `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url.removeprefix("unix://")
    return redis_url
