"""The People pages and `/api/v1/users/` (issue 30, item 4): admins create and invite people, change their global
and team roles, deactivate them and issue set-password links, from Fleetweb's own pages, through one service,
audited; a person sets their own password from the link; nobody below admin changes anyone."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from foundation.models import AuditEvent
from inventory.models import SsoIdentity, TeamMember
from inventory.people import accounts
from inventory.people import services as team_services
from inventory.people.tokens import create_service_account
from tests.builders import make_user
from tests.conftest import api_client_for

GOOD = "long enough and mine 42"


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _link_path(url: str) -> str:
    return re.sub(r"^https?://[^/]+", "", url)


def _password_ok(username: str, password: str) -> bool:
    return User.objects.get(username=username).check_password(password)


def _events(action: str, target: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_name=target).order_by("id"))


def test_an_admin_invites_a_person_who_sets_their_own_password_once(admin_user, smtp_server):
    client = _client(admin_user)
    answer = client.post(reverse("person_create"), {"username": "nina", "first_name": "Nina", "last_name": "Berg",
                                                    "email": "nina@example.com", "roles": ["viewer", "approver"]})
    assert answer.status_code == 201
    nina = User.objects.get(username="nina")
    assert not nina.has_usable_password() and nina.is_active and nina.email == "nina@example.com"
    assert accounts.roles_held(nina) == ["viewer", "approver"]
    page = answer.content.decode()
    [url] = re.findall(r'value="(http://testserver/accounts/set-password/[^"]+)"', page)
    assert "Also mailed to nina@example.com" in page
    [mail] = smtp_server.wait(1)
    assert mail["to"] == ["nina@example.com"] and url in mail["body"] and "username: nina" in mail["body"]
    [created] = _events("user.create", "nina")
    assert created.actor == admin_user and created.after["email"] == "nina@example.com"
    assert {e.after["role"] for e in _events("user.role_grant", "nina")} == {"viewer", "approver"}
    assert all(e.actor == admin_user for e in _events("user.role_grant", "nina"))

    # The person opens the link: the token leaves the address bar before the form is shown.
    person = Client()
    opened = person.get(_link_path(url))
    assert opened.status_code == 302 and opened["Location"].endswith("/set/")
    form = person.get(opened["Location"])
    assert form.status_code == 200 and "For the Fleetweb account <strong>nina</strong>" in form.content.decode()
    weak = person.post(opened["Location"], {"password": "nina", "again": "nina"})
    assert weak.status_code == 400 and "too short" in weak.content.decode()
    differ = person.post(opened["Location"], {"password": GOOD, "again": GOOD + "x"})
    assert differ.status_code == 400 and "The two passwords differ." in differ.content.decode()
    nina.refresh_from_db()
    assert not nina.has_usable_password()
    done = person.post(opened["Location"], {"password": GOOD, "again": GOOD})
    assert done.status_code == 302 and done["Location"] == reverse("login")
    assert _password_ok("nina", GOOD)
    [set_event] = _events("user.password_set", "nina")
    assert set_event.actor.username == "nina" and GOOD not in str(set_event.after)

    # The link worked once.
    again = Client()
    reused = again.get(again.get(_link_path(url))["Location"])
    assert reused.status_code == 404 and "used already" in reused.content.decode()
    assert _password_ok("nina", GOOD)


def test_a_reset_takes_the_password_away_now_and_voids_the_earlier_link(admin_user, settings):
    settings.EMAIL_HOST = ""
    bob = make_user("bob", password=GOOD)
    first = accounts.issue_password_link(bob, user=admin_user)
    assert not _password_ok("bob", GOOD), "the old password stops working at once"
    assert first.mailed_to == "" and first.mail_problem == ""
    answer = _client(admin_user).post(reverse("person_password_link", args=["bob"]))
    assert answer.status_code == 200 and "Pass it on to them yourself" in answer.content.decode()
    [second] = re.findall(r'value="(http://testserver/accounts/set-password/[^"]+)"', answer.content.decode())
    old = Client()
    assert old.get(old.get(_link_path(first.url))["Location"]).status_code == 404
    new = Client()
    form = new.get(_link_path(second))["Location"]
    assert new.post(form, {"password": GOOD + "!", "again": GOOD + "!"}).status_code == 302
    assert _password_ok("bob", GOOD + "!")
    assert [e.actor for e in _events("user.password_reset", "bob")] == [admin_user, admin_user]


def test_deactivating_signs_a_person_out_everywhere_and_reactivating_brings_them_back(admin_user):
    carl = make_user("carl", "operator")
    session = _client(carl)
    api = api_client_for(carl)
    assert session.get(reverse("inventory:cluster_list")).status_code == 200
    assert api.get("/api/v1/clusters/").status_code == 200
    answer = _client(admin_user).post(reverse("person_active", args=["carl"]), {"active": "0"})
    assert answer.status_code == 302
    carl.refresh_from_db()
    assert not carl.is_active
    assert session.get(reverse("inventory:cluster_list")).status_code == 302  # to the login page
    assert api.get("/api/v1/clusters/").status_code == 401
    [event] = _events("user.deactivate", "carl")
    assert event.actor == admin_user and event.after == {"is_active": False}
    _client(admin_user).post(reverse("person_active", args=["carl"]), {"active": "1"})
    carl.refresh_from_db()
    assert carl.is_active and accounts.roles_held(carl) == ["operator"]


def test_roles_and_team_roles_from_the_person_page(admin_user, org):
    dora = make_user("dora")
    client = _client(admin_user)
    saved = client.post(reverse("person_detail", args=["dora"]), {"first_name": "Dora", "last_name": "",
                                                                  "email": "", "roles": ["operator"]})
    assert saved.status_code == 302
    assert accounts.roles_held(User.objects.get(username="dora")) == ["operator"]
    payments = org["teams"]["payments"]
    client.post(reverse("person_team_add", args=["dora"]), {"team": payments.pk, "role": "approver"})
    grant = TeamMember.objects.get(user=dora, team=payments)
    assert grant.role == "approver" and _events("team.member_add", "payments")[-1].after["user"] == "dora"
    page = client.get(reverse("person_detail", args=["dora"])).content.decode()
    assert 'data-grant="payments-approver"' in page and 'value="operator"' in page
    listing = client.get(reverse("people_list") + "?q=dor").content.decode()
    assert 'data-person="dora"' in listing and "payments (approver)" in listing and 'data-person="bob"' not in listing
    client.post(reverse("person_team_remove", args=["dora", grant.pk]))
    assert not TeamMember.objects.filter(user=dora).exists()
    client.post(reverse("person_detail", args=["dora"]), {"first_name": "Dora", "email": "", "roles": []})
    assert accounts.roles_held(User.objects.get(username="dora")) == []
    assert _events("user.role_revoke", "dora")[-1].after["role"] == "operator"


def test_admins_cannot_lock_themselves_or_everyone_out(admin_user):
    other = make_user("second-admin", "admin")
    for change in ({"is_active": False}, {"roles": ["operator"]}):
        with pytest.raises(accounts.ServiceError) as refused:
            accounts.update_account(admin_user, user=admin_user, **change)
        assert refused.value.status == 409 and "your own" in refused.value.message
    accounts.update_account(other, user=admin_user, is_active=False)  # another admin remains: ada
    User.objects.filter(pk=admin_user.pk).update(is_active=True)
    with pytest.raises(accounts.ServiceError) as last:
        accounts.update_account(admin_user, user=None, roles=[])
    assert last.value.status == 409 and "last active admin" in last.value.message
    assert accounts.roles_held(User.objects.get(pk=admin_user.pk)) == ["admin"]
    page = _client(admin_user).post(reverse("person_active", args=[admin_user.username]), {"active": "0"})
    assert page.status_code == 302 and User.objects.get(pk=admin_user.pk).is_active


def test_an_admin_cannot_take_over_a_superuser_or_a_sign_on_or_service_account(admin_user):
    root = User.objects.create_superuser("root", password=GOOD)
    before = root.password
    for call in (lambda: accounts.issue_password_link(root, user=admin_user),
                 lambda: accounts.update_account(root, user=admin_user, is_active=False)):
        with pytest.raises(accounts.ServiceError) as refused:
            call()
        assert refused.value.status == 403
    root.refresh_from_db()
    assert root.password == before and root.is_active
    sso = make_user("sue")
    SsoIdentity.objects.create(user=sso, issuer=settings.FLEETWEB_OIDC_ISSUER or "https://idp", subject="sue")
    robot = create_service_account(username="ci-robot", user=admin_user)
    for account in (sso, robot):
        with pytest.raises(accounts.ServiceError, match="never with a password"):
            accounts.issue_password_link(account, user=admin_user)
    with pytest.raises(accounts.ServiceError, match="identity provider"):
        accounts.update_account(sso, user=admin_user, roles=["admin"])
    assert accounts.roles_held(User.objects.get(username="sue")) == []
    accounts.update_account(sso, user=admin_user, is_active=False)  # deactivating a sign-on account is fine
    assert not User.objects.get(username="sue").is_active


@pytest.mark.parametrize("role", ["operator", "approver", "viewer", "pay_operator", "nobody"])
def test_operator_cannot_create_change_or_reset_anyone(org, role):
    """Every role below admin, on every door: pages, API; nothing changes."""
    attacker = org["users"][role] if role in org["users"] else make_user(f"global-{role}", role)
    victim = make_user("victim", password=GOOD)
    accounts_before = set(User.objects.values_list("username", "is_active", "password"))
    grants_before = set(TeamMember.objects.values_list("user_id", "team_id", "role"))
    client = _client(attacker)
    for method, url, data in (
            ("get", reverse("people_list"), {}),
            ("get", reverse("person_create"), {}),
            ("post", reverse("person_create"), {"username": "mallory", "roles": ["admin"]}),
            ("post", reverse("person_detail", args=[attacker.username]), {"roles": ["admin"]}),
            ("post", reverse("person_active", args=["victim"]), {"active": "0"}),
            ("post", reverse("person_password_link", args=["victim"]), {}),
            ("post", reverse("person_team_add", args=[attacker.username]),
             {"team": org["teams"]["shop"].pk, "role": "operator"})):
        answer = getattr(client, method)(url, data)
        assert answer.status_code == 403, (method, url, answer.status_code)
    api = api_client_for(attacker)
    for method, url, data in (("get", "/api/v1/users/", None), ("post", "/api/v1/users/", {"username": "mallory"}),
                              ("patch", f"/api/v1/users/{attacker.username}/", {"roles": ["admin"]}),
                              ("post", "/api/v1/users/victim/password-link/", None),
                              ("post", f"/api/v1/users/{attacker.username}/team-roles/",
                               {"team": "shop", "role": "operator"})):
        answer = getattr(api, method)(url, data, format="json")
        assert answer.status_code == 403, (method, url, answer.status_code)
    for call in (lambda: accounts.create_account(user=attacker, username="mallory", roles=["admin"]),
                 lambda: accounts.update_account(attacker, user=attacker, roles=["admin"]),
                 lambda: accounts.issue_password_link(victim, user=attacker)):
        with pytest.raises(accounts.ServiceError) as refused:
            call()
        assert refused.value.status == 403
    assert set(User.objects.values_list("username", "is_active", "password")) == accounts_before
    assert set(TeamMember.objects.values_list("user_id", "team_id", "role")) == grants_before
    assert _password_ok("victim", GOOD)


def test_a_forged_or_foreign_link_sets_nothing(admin_user):
    victim = make_user("victim", password=GOOD)
    link = accounts.issue_password_link(make_user("mine"), user=admin_user)
    uid, token = _link_path(link.url).rstrip("/").split("/")[-2:]
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode
    victim_uid = urlsafe_base64_encode(force_bytes(victim.pk))
    before = User.objects.get(pk=victim.pk).password
    for bad_uid, bad_token in ((victim_uid, token), (victim_uid, "abc-123"), ("!!", token), (uid, token + "0")):
        client = Client()
        form = client.get(f"/accounts/set-password/{bad_uid}/{bad_token}/")["Location"]
        assert client.get(form).status_code == 404
        answer = client.post(form, {"password": GOOD + "?", "again": GOOD + "?"})
        assert answer.status_code == 404 and accounts.BAD_LINK in answer.content.decode()
    assert User.objects.get(pk=victim.pk).password == before
    deactivated = make_user("gone")
    gone_link = accounts.issue_password_link(deactivated, user=admin_user)
    accounts.update_account(deactivated, user=admin_user, is_active=False)
    client = Client()
    assert client.get(client.get(_link_path(gone_link.url))["Location"]).status_code == 404


def test_the_users_api_does_what_the_pages_do(admin_user, org, settings):
    settings.EMAIL_HOST = ""
    api = api_client_for(admin_user)
    created = api.post("/api/v1/users/", {"username": "eve", "email": "eve@example.com", "roles": ["viewer"]},
                       format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["roles"] == ["viewer"] and body["kind"] == "local" and body["has_password"] is False
    assert body["password_link"]["url"].startswith("http://testserver/accounts/set-password/")
    assert "password_link" not in api.get("/api/v1/users/eve/").json()
    taken = api.post("/api/v1/users/", {"username": "EVE"}, format="json")
    assert taken.status_code == 409 and "exists already" in taken.json()["detail"]
    bad = api.post("/api/v1/users/", {"username": "x y", "roles": ["root"]}, format="json")
    assert bad.status_code == 400 and "roles" in bad.json()["errors"]
    changed = api.patch("/api/v1/users/eve/", {"roles": ["operator", "approver"], "first_name": "Eve"},
                        format="json")
    assert changed.status_code == 200 and changed.json()["roles"] == ["operator", "approver"]
    assert api.patch("/api/v1/users/eve/", {"username": "adam"}, format="json").status_code == 400
    grant = api.post("/api/v1/users/eve/team-roles/", {"team": "payments", "role": "operator"}, format="json")
    assert grant.status_code == 201 and grant.json()["team"] == "payments"
    listed = api.get("/api/v1/users/?q=eve").json()["results"]
    assert [u["username"] for u in listed] == ["eve"] and listed[0]["team_roles"][0]["role"] == "operator"
    assert api.delete(f"/api/v1/users/eve/team-roles/{grant.json()['id']}/").status_code == 204
    assert api.delete("/api/v1/users/eve/team-roles/999999/").status_code == 404
    link = api.post("/api/v1/users/eve/password-link/")
    assert link.status_code == 201 and link.json()["url"] != body["password_link"]["url"]
    off = api.patch("/api/v1/users/eve/", {"is_active": False}, format="json")
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert [u["username"] for u in api.get("/api/v1/users/?is_active=false").json()["results"]] == ["eve"]
    assert api.delete("/api/v1/users/eve/").status_code == 405  # deactivated, never deleted
    assert api.patch(f"/api/v1/users/{admin_user.username}/", {"is_active": False}, format="json").status_code == 409


def test_a_sign_on_role_is_not_removed_by_hand(admin_user, org):
    sso = make_user("sam")
    grant = team_services.add_member(org["teams"]["shop"], member=sso, role="viewer", user=None, source="sso")
    api = api_client_for(admin_user)
    answer = api.delete(f"/api/v1/users/sam/team-roles/{grant.pk}/")
    assert answer.status_code == 409 and "identity provider" in answer.json()["detail"]
    page = _client(admin_user).post(reverse("inventory:team_member_remove", args=["shop", grant.pk]))
    assert page.status_code == 302 and TeamMember.objects.filter(pk=grant.pk).exists()
