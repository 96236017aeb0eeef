"""In a real browser at 1280x800 (issue 30, item 4): an admin invites a person from the People page, the person
sets their own password from the one-time link and signs in with the roles given; the admin gives a team role,
then deactivates them, and their open session ends."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from inventory.people import services as team_services
from tests.browser.test_layout import OVERFLOW
from tests.browser.test_onboarding import log_in
from tests.builders import make_cluster, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a long one of my own 7"


def test_an_admin_invites_a_person_who_sets_a_password_signs_in_and_is_deactivated(browser, page, live_server,
                                                                                  screenshot, settings):
    settings.EMAIL_HOST = ""
    admin = make_user("ada-admin", "admin")
    make_cluster("pay-prod", environment="prod", owner="payments")
    make_cluster("shop-prod", environment="prod", owner="shop")
    team_services.save_team(user=admin, name="payments", selector="owner=payments")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live_server, "ada-admin")

    page.click("#people-link")
    expect(page.locator("h1")).to_have_text("People")
    expect(page.locator('tr[data-person="ada-admin"]')).to_contain_text("admin")
    page.click("#person-new")
    page.fill("#id_username", "nina")
    page.fill("#id_first_name", "Nina")
    page.fill("#id_email", "nina@example.com")
    page.click("button:has-text('Create and invite')")
    expect(page.locator("#password-link-shown")).to_contain_text("shown only now")
    expect(page.locator("#password-link-shown")).to_contain_text("Pass it on to them yourself")
    link = page.locator("#password-link-url").input_value()
    assert link.startswith(f"{live_server.url}/accounts/set-password/")
    assert page.evaluate(OVERFLOW) <= 0
    screenshot("30-person")
    page.select_option("#team-role-add select[name=team]", label="payments")
    page.select_option("#team-role-add select[name=role]", "operator")
    page.click("#team-role-add button")
    expect(page.locator('tr[data-grant="payments-operator"]')).to_be_visible()

    person = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    person.goto(link)
    assert "/set/" in person.url and link.rsplit("/", 2)[-2] not in person.url  # the token left the address bar
    person.fill("#id_password", "short")
    person.fill("#id_again", "short")
    person.click("#set-password button")
    expect(person.locator("#set-password")).to_contain_text("too short")
    person.fill("#id_password", PASSWORD)
    person.fill("#id_again", PASSWORD)
    person.click("#set-password button")
    expect(person.locator(".alert.success")).to_contain_text("Your password is set")
    person.fill("#id_username", "nina")
    person.fill("#id_password", PASSWORD)
    person.click("button[type=submit]")
    expect(person.locator("h1")).to_have_text("Fleet overview")
    person.goto(f"{live_server.url}/clusters/")
    expect(person.locator("body")).to_contain_text("pay-prod")
    expect(person.locator("body")).not_to_contain_text("shop-prod")
    expect(person.locator("#people-link")).to_have_count(0)

    page.goto(f"{live_server.url}/people/nina/")
    page.click("#person-active")
    expect(page.locator(".alert.success")).to_contain_text("deactivated: signed out everywhere")
    assert not User.objects.get(username="nina").is_active
    person.goto(f"{live_server.url}/clusters/")
    expect(person.locator("h1")).to_have_text("Log in to Fleetweb")
    person.goto(link)
    expect(person.locator("#link-problem")).to_contain_text("not valid")
    page.goto(f"{live_server.url}/people/?state=deactivated")
    expect(page.locator('tr[data-person="nina"]')).to_contain_text("deactivated")
    screenshot("30-people")
    person.context.close()
