"""The audit log: append-only in the database itself, secrets never recorded, logins audited."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from foundation.audit import record
from foundation.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_database_refuses_update_and_delete(operator):
    event = record(user=operator, action="cluster.attach", target_name="c1", after={"name": "c1"})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "cluster.attach"


def test_secrets_are_scrubbed_however_deep(operator):
    event = record(user=operator, action="x", after={"token": "abc", "nested": {"client_key": "k", "ok": 1},
                                                     "list": [{"password": "p"}]})
    assert event.after == {"token": "<redacted>", "nested": {"client_key": "<redacted>", "ok": 1},
                           "list": [{"password": "<redacted>"}]}


def test_logins_and_failed_logins_are_audited(client, operator):
    assert client.post("/accounts/login/", {"username": "otto-operator", "password": "wrong"}).status_code == 200
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.target_name == "otto-operator" and failed.source_ip == "127.0.0.1"
    assert "wrong" not in str(failed.__dict__)
    response = client.post("/accounts/login/", {"username": "otto-operator", "password": "pw-for-tests-1"})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action="auth.login", actor_name="otto-operator").exists()


def test_audit_page_filters_and_exports_for_admins(client, admin_user, operator):
    record(user=operator, action="cluster.attach", target_name="alpha")
    record(user=operator, action="cluster.detach", target_name="beta")
    client.force_login(admin_user)
    page = client.get("/audit/?action=cluster.detach")
    assert b"beta" in page.content and b"alpha" not in page.content
    partial = client.get("/audit/?q=alpha", HTTP_HX_REQUEST="true")
    assert b"<html" not in partial.content and b"alpha" in partial.content
    csv = b"".join(client.get("/audit/export.csv?action=cluster.").streaming_content).decode()
    assert csv.splitlines()[0].startswith("at,actor,source_ip,action")
    assert "alpha" in csv and "beta" in csv
