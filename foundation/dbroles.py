"""Two database roles: the owner runs migrations; the running application may only read and write rows, and on the
audit table only INSERT and SELECT (plus growing a failed-login row's count). So Fleetweb itself, or anyone holding
its database password, cannot erase the record: UPDATE, DELETE, TRUNCATE, ALTER TABLE and DISABLE TRIGGER need
privileges or ownership the runtime role does not have.

`manage.py migrate` connects as FLEETWEB_MIGRATE_DATABASE_URL's user when it is set, and grants these privileges
to DATABASE_URL's user afterwards (fleetweb/management/commands/migrate.py).
"""

from __future__ import annotations

from psycopg import sql

AUDIT_TABLE = "governance_auditevent"


def runtime_grants(role: str) -> list[sql.Composable]:
    r = sql.Identifier(role)
    audit = sql.Identifier(AUDIT_TABLE)
    return [
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}").format(r),
        sql.SQL("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
        sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}").format(audit, r),
        sql.SQL("GRANT UPDATE (count) ON {} TO {}").format(audit, r),
    ]


def grant_runtime(connection, role: str) -> None:
    """Give `role` exactly what the running application needs on every table (run after each migration)."""
    with connection.cursor() as cursor:
        for statement in runtime_grants(role):
            cursor.execute(statement)
