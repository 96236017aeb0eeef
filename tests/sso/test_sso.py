"""Single sign-on end to end against a real OpenID Connect provider (Ory Hydra, started by the session)."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User

from foundation.audit import AuditEvent
from foundation.roles import has_role
from inventory.choices import GrantSource
from inventory.models import SsoIdentity, TeamMember
from inventory.people import services as team_services
from inventory.people import sso as sso_module
from tests.builders import make_cluster
from tests.sso.conftest import person, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def payments(db, admin_user):
    make_cluster("pay-prod", environment="prod", owner="payments")
    make_cluster("shop-prod", environment="prod", owner="shop")
    team = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    team_services.add_mapping(claim_value="payments-sre", team=team, role="operator", user=admin_user)
    team_services.add_mapping(claim_value="fleet-auditors", role="viewer", user=admin_user)
    return team


def test_first_sign_in_creates_the_account_with_the_mapped_roles(client, sso, payments):
    idp = sso()
    username, password = person(idp, ["payments-sre", "unrelated"])
    answer = sign_in(client, idp, username, password, next_url="/clusters/")
    assert answer.status_code == 302 and answer["Location"] == "/clusters/", answer.content[:500]
    user = User.objects.get(username=username)
    identity = SsoIdentity.objects.get(user=user)
    assert identity.issuer == idp.issuer and identity.subject == username
    assert identity.claim_values == ["payments-sre", "unrelated"] and not user.has_usable_password()
    assert TeamMember.objects.filter(user=user, team=payments, role="operator", source=GrantSource.SSO).exists()
    assert not has_role(user, "viewer")
    page = client.get("/clusters/").content.decode()
    assert "pay-prod" in page and "shop-prod" not in page
    assert client.session.get_expiry_age() == pytest.approx(sso_module.settings.FLEETWEB_OIDC_SESSION_MAX_AGE, abs=5)
    assert AuditEvent.objects.filter(action="team.member_add", after__user=username, after__source="sso").exists()


def test_a_person_removed_from_an_idp_group_loses_the_role_at_the_next_sign_in(client, sso, payments, admin_user):
    idp = sso()
    username, password = person(idp, ["payments-sre", "fleet-auditors"])
    sign_in(client, idp, username, password)
    user = User.objects.get(username=username)
    assert has_role(user, "viewer") and user.team_roles.filter(source=GrantSource.SSO).count() == 1
    team_services.add_member(payments, member=user, role="viewer", user=admin_user)  # given by hand: stays
    client.logout()
    idp.set_groups(username, [])
    sign_in(client, idp, username, password)
    user = User.objects.get(username=username)
    assert not has_role(user, "viewer")
    assert list(user.team_roles.values_list("role", "source")) == [("viewer", GrantSource.MANUAL)]
    assert AuditEvent.objects.filter(action="team.member_remove", before__user=username,
                                     before__source="sso").exists()
    assert AuditEvent.objects.filter(action="user.role_revoke", target_id=str(user.pk)).exists()


def test_someone_disabled_at_the_idp_is_out_once_the_session_ends(client, sso, payments):
    idp = sso()
    username, password = person(idp, ["payments-sre"])
    sign_in(client, idp, username, password)
    assert client.get("/clusters/").status_code == 200
    idp.disable(username)
    session = client.session
    session.set_expiry(1)  # what FLEETWEB_OIDC_SESSION_MAX_AGE does, shortened
    session.save()
    time.sleep(1.5)
    assert client.get("/clusters/").status_code == 302  # back to the login page
    refused = sign_in(client, idp, username, password)
    assert refused.status_code == 403 and b"did not sign you in" in refused.content
    assert client.get("/clusters/").status_code == 302


def test_a_forged_or_replayed_callback_is_refused(client, sso, payments):
    idp = sso()
    username, password = person(idp, ["payments-sre"])
    assert client.get("/accounts/sso/callback/?code=x&state=forged").status_code == 403
    client.get("/accounts/sso/login/")
    assert client.get("/accounts/sso/callback/?code=x&state=forged").status_code == 403  # wrong state
    answer = sign_in(client, idp, username, password)
    assert answer.status_code == 302
    client.logout()
    replayed = client.get(answer.callback)  # the same code and state again: the state was used up
    assert replayed.status_code == 403 and "_auth_user_id" not in client.session
    assert not User.objects.filter(username__startswith="x").exists()


def test_an_idp_user_named_like_a_local_admin_does_not_become_them(client, sso, payments, admin_user):
    idp = sso()
    _name, password = person(idp, ["payments-sre"], name=f"{admin_user.username}")
    sign_in(client, idp, admin_user.username, password)
    created = SsoIdentity.objects.get(subject=admin_user.username).user
    assert created.pk != admin_user.pk and created.username.startswith(f"{admin_user.username}-")
    assert not has_role(created, "admin")


def test_an_issuer_refused_by_the_outbound_policy_is_never_dialled(client, settings, db):
    settings.FLEETWEB_OIDC_ISSUER = "https://169.254.169.254"
    settings.FLEETWEB_OIDC_CLIENT_ID, settings.FLEETWEB_OIDC_CLIENT_SECRET = "id", "secret"
    answer = client.get("/accounts/sso/login/")
    assert answer.status_code == 502 and b"outbound address policy" in answer.content


def test_password_sign_in_off_except_for_the_break_glass_admin(client, settings, operator, admin_user):
    settings.FLEETWEB_OIDC_ISSUER = "https://idp.example.test"
    settings.FLEETWEB_LOCAL_LOGIN = False
    settings.FLEETWEB_BREAK_GLASS_ADMIN = admin_user.username
    refused = client.post("/accounts/login/", {"username": operator.username, "password": "pw-for-tests-1"})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert client.post("/admin/login/", {"username": operator.username, "password": "pw-for-tests-1"}
                       ).status_code == 200 and "_auth_user_id" not in client.session
    allowed = client.post("/accounts/login/", {"username": admin_user.username, "password": "pw-for-tests-1"})
    assert allowed.status_code == 302 and client.session["_auth_user_id"] == str(admin_user.pk)
    from django.test import Client

    page = Client().get("/accounts/login/").content.decode()
    assert "Password sign-in is off" in page and 'name="password"' not in page and 'id="sso-login"' in page
