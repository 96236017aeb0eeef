"""The record: every change of accounts, roles, tokens and admin saves is on it, and Fleetweb cannot erase it.

The erasure tests connect to the real test database as a runtime role given exactly the grants `migrate` gives
(foundation/dbroles.py) and prove UPDATE, DELETE, TRUNCATE, ALTER TABLE and DISABLE TRIGGER are refused.
"""

from __future__ import annotations

import secrets

import psycopg
import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from psycopg import sql

from foundation.audit import record
from foundation.dbroles import grant_runtime
from foundation.models import ApiToken, AuditEvent
from inventory.models import Cluster
from inventory.people.tokens import create_token, revoke_token
from tests.builders import make_cluster, make_user

RUNTIME_ROLE = "fleetweb_runtime_test"


def _connect(user: str, password: str = ""):
    s = connection.settings_dict
    return psycopg.connect(dbname=s["NAME"], user=user, password=password or s["PASSWORD"] or None,
                           host=s["HOST"] or None, port=s["PORT"] or None, autocommit=True)


@pytest.fixture
def runtime(transactional_db):
    """A connection as a role holding only the runtime grants, and one committed audit row to attack."""
    password = secrets.token_urlsafe(16)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [RUNTIME_ROLE])
        verb = "ALTER" if cursor.fetchone() else "CREATE"
        cursor.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(RUNTIME_ROLE),
                                                                            sql.Literal(password)))
        cursor.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(connection.settings_dict["NAME"]), sql.Identifier(RUNTIME_ROLE)))
    grant_runtime(connection, RUNTIME_ROLE)
    event = record(user=None, action="cluster.detach", target_name="prod-1", message="the row to erase")
    with _connect(RUNTIME_ROLE, password) as conn:
        yield conn, event


@pytest.mark.parametrize("statement", [
    "UPDATE governance_auditevent SET message = 'nothing happened'",
    "DELETE FROM governance_auditevent",
    "TRUNCATE governance_auditevent",
    "ALTER TABLE governance_auditevent DISABLE TRIGGER ALL",
    "ALTER TABLE governance_auditevent DISABLE TRIGGER governance_auditevent_no_update_delete",
    "ALTER TABLE governance_auditevent ADD COLUMN hidden boolean",
    "DROP TRIGGER governance_auditevent_no_truncate ON governance_auditevent",
])
def test_the_runtime_role_cannot_erase_the_record(runtime, statement):
    conn, event = runtime
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    assert AuditEvent.objects.get(pk=event.pk).message == "the row to erase"


def test_the_runtime_role_reads_and_appends_and_works_on_other_tables(runtime):
    conn, event = runtime
    assert conn.execute("SELECT count(*) FROM governance_auditevent").fetchone()[0] >= 1
    conn.execute("INSERT INTO governance_auditevent (at, action, target_type, target_id, target_name, message, "
                 "actor_name, count) VALUES (now(), 'test.append', '', '', '', '', '', 1)")
    make_cluster("dev-1")
    conn.execute("UPDATE inventory_cluster SET region = 'eu-north-1' WHERE name = 'dev-1'")
    assert Cluster.objects.get(name="dev-1").region == "eu-north-1"


def test_only_a_failed_login_count_may_grow_even_for_the_owner(transactional_db, client):
    for _ in range(3):
        client.post("/accounts/login/", {"username": "=HYPERLINK(1)", "password": "wrong"})
    rows = list(AuditEvent.objects.filter(action="auth.login_failed"))
    assert len(rows) == 1 and rows[0].count == 3, "one row per username and address per minute, with a count"
    with _connect(connection.settings_dict["USER"]) as owner:  # the owner role, without the test flush switch
        for statement in ("UPDATE governance_auditevent SET count = count - 1",
                          "UPDATE governance_auditevent SET target_name = 'someone-else', count = count + 1",
                          "DELETE FROM governance_auditevent", "TRUNCATE governance_auditevent"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as excinfo:
                owner.execute(statement)
            assert "append-only" in str(excinfo.value)
    assert AuditEvent.objects.get(action="auth.login_failed").count == 3


@pytest.mark.django_db
def test_users_roles_and_tokens_are_on_the_record_whatever_the_door(admin_user):
    user = User.objects.create_user("newcomer", password="x-very-long-pw-1")  # a shell or command: the system
    user.groups.add(Group.objects.get_or_create(name="approver")[0])
    Group.objects.get(name="approver").user_set.remove(user)
    token, key = create_token(owner=user, user=user, name="ci")
    user.is_active = False
    user.save()
    revoke_token(token, user=admin_user)
    actions = list(AuditEvent.objects.filter(target_name__contains="newcomer").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["user.create", "user.role_grant", "user.role_revoke", "token.create", "user.deactivate",
                       "token.revoke"]
    assert ApiToken.objects.get(pk=token.pk).digest != key and key not in str(ApiToken.objects.filter(
        pk=token.pk).values().first()), "only the key's digest is stored"
    assert not [e for e in AuditEvent.objects.all() if key in f"{e.before}{e.after}{e.message}{e.target_name}"], \
        "a token's key never reaches the log"


@pytest.mark.django_db
def test_admin_saves_are_on_the_record_with_who_did_them(client, admin_user):
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    victim = make_user("vic", "operator")
    client.force_login(admin_user)
    approver = Group.objects.get_or_create(name="approver")[0]
    response = client.post(f"/admin/auth/user/{victim.pk}/change/", {
        "username": "vic", "is_active": "on", "groups": [approver.pk, Group.objects.get(name="operator").pk],
        "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00", "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00"})
    assert response.status_code == 302, response.content[:2000]
    grant = AuditEvent.objects.get(action="user.role_grant", target_id=str(victim.pk), after__role="approver",
                                   actor=admin_user)
    assert grant.actor_name == "ada-admin"
    assert AuditEvent.objects.filter(action="admin.change", actor=admin_user, target_name__contains="vic").exists()


@pytest.mark.django_db
def test_inventory_is_read_only_in_the_admin(client, admin_user):
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    cluster = make_cluster("prod-1", environment="prod")
    client.force_login(admin_user)
    assert client.get(f"/admin/inventory/cluster/{cluster.pk}/delete/").status_code == 403
    response = client.post("/admin/inventory/cluster/", {"action": "delete_selected", "_selected_action": [cluster.pk],
                                                         "post": "yes"})
    assert Cluster.objects.filter(pk=cluster.pk).exists(), response.status_code
    assert client.post(f"/admin/inventory/cluster/{cluster.pk}/change/", {"owner": "x"}).status_code == 403
    assert Cluster.objects.get(pk=cluster.pk).owner == ""
