"""`migrate` as the owner role when FLEETWEB_MIGRATE_DATABASE_URL is set, then the runtime role's grants.

The running processes connect with DATABASE_URL (the runtime role, which may not alter or truncate anything);
only this command connects as the owner. A test database (its name differs from the owner URL's) is migrated
as it is.
"""

from __future__ import annotations

import os

from django.core.management.commands.migrate import Command as DjangoMigrate
from django.db import connections

from foundation.dbroles import grant_runtime
from foundation.env import parse_database_url

SWAPPED = ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")


class Command(DjangoMigrate):
    help = DjangoMigrate.help + " Runs as FLEETWEB_MIGRATE_DATABASE_URL's role when set."

    def handle(self, *args, **options) -> None:
        owner_url = os.environ.get("FLEETWEB_MIGRATE_DATABASE_URL", "").strip()
        connection = connections[options["database"]]
        runtime = dict(connection.settings_dict)
        owner = parse_database_url(owner_url) if owner_url else None
        if owner is None or owner["NAME"] != runtime["NAME"]:
            super().handle(*args, **options)
            return
        connection.close()
        connection.settings_dict.update({key: owner[key] for key in SWAPPED})
        try:
            super().handle(*args, **options)
            role = _runtime_role(runtime)
            if role and role != owner["USER"]:
                grant_runtime(connection, role)
                if options["verbosity"]:
                    self.stdout.write(f"Granted the runtime role {role} its privileges.")
        finally:
            connection.close()
            connection.settings_dict.update({key: runtime[key] for key in SWAPPED})


def _runtime_role(runtime: dict) -> str:
    """The role the processes run as: FLEETWEB_RUNTIME_DATABASE_URL's (`make run`, whose own connection is the
    embedded superuser), else this connection's (DATABASE_URL)."""
    url = os.environ.get("FLEETWEB_RUNTIME_DATABASE_URL", "").strip()
    return parse_database_url(url)["USER"] if url else runtime["USER"]
