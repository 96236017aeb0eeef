"""Settings for static analysis only (mypy's Django plugin imports the settings to learn the models).

`fleetweb.settings` needs DATABASE_URL and REDIS_URL (launchers start the embedded servers; mypy is none).
Here they point nowhere: nothing is started, nothing is dialled. The key below encrypts nothing; it only satisfies
the settings' checks.
"""

import os

os.environ.setdefault("DATABASE_URL", "postgres://typecheck@127.0.0.1:1/typecheck")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")
os.environ.setdefault("FLEETWEB_SECRET_KEY", "typecheck-only-not-a-secret-" + "0" * 32)
os.environ.setdefault("FLEETWEB_ENCRYPTION_KEYS", "W2FyYxgRhDXXP2Fxn03VDybtwPlPGfFVju4vwRpscu4=")

from fleetweb.settings import *  # noqa: E402,F403
