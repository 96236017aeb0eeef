"""The Change windows page, a cluster's busy switch and a stage's override on the pages: the same services and
checks as the API (rollouts/window_views.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from foundation.models import AuditEvent
from inventory.models import Cluster
from inventory.people import services as team_services
from rollouts import calendar
from rollouts.models import ChangeWindow, Stage
from tests.builders import make_cluster, make_user
from tests.rollouts.fakes import run, start

pytestmark = pytest.mark.django_db
URL = "/change-windows/"


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def org(admin_user):
    for name, env, owner in (("pay-prod", "prod", "payments"), ("shop-prod", "prod", "shop")):
        make_cluster(name, environment=env)
        Cluster.objects.filter(name=name).update(owner=owner)
    pay = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    pat, viewer = make_user("pat"), make_user("vic")
    team_services.add_member(pay, member=pat, role="operator", user=admin_user)
    team_services.add_member(pay, member=viewer, role="viewer", user=admin_user)
    return {"pay": pay, "shop": shop, "pat": pat, "viewer": viewer}


def test_a_team_operator_makes_a_recurring_freeze_for_the_team_in_its_time_zone(org):
    client = client_of(org["pat"])
    page = client.get(URL)
    assert page.status_code == 200 and b"window-form" in page.content
    answer = client.post(URL, {"name": "pay-nights", "kind": "deny", "reason": "batch jobs", "team": org["pay"].pk,
                               "zone": "Asia/Shanghai", "weekdays": ["0", "1", "2", "3", "4"], "start_time": "22:00",
                               "end_time": "06:00", "enabled": "on"})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    window = ChangeWindow.objects.get(name="pay-nights")
    assert (window.team, window.zone, window.weekdays) == (org["pay"], "Asia/Shanghai", [0, 1, 2, 3, 4])
    listed = client.get(URL).content.decode()
    assert "Mon, Tue, Wed, Thu, Fri 22:00-06:00 (next day) Asia/Shanghai" in listed
    assert AuditEvent.objects.filter(action="window.create", actor_name="pat").exists()


def test_a_one_off_window_is_read_in_its_own_time_zone(org, admin_user):
    answer = client_of(admin_user).post(URL, {"name": "year-end", "kind": "deny", "reason": "freeze", "team": "",
                                              "zone": "Europe/Berlin", "starts_at": "2026-12-24T00:00",
                                              "ends_at": "2027-01-04T00:00", "enabled": "on"})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    window = ChangeWindow.objects.get(name="year-end")
    assert window.team is None
    assert window.starts_at.isoformat() == "2026-12-23T23:00:00+00:00", "midnight in Berlin is 23:00 UTC in winter"


def test_operator_cannot_make_a_platform_window_or_lift_one_on_the_page(org, admin_user):
    freeze = calendar.save_window(user=admin_user, name="year-end", kind="deny", reason="freeze", zone="UTC",
                                  starts_at="2026-12-24T00:00Z", ends_at="2027-01-04T00:00Z")
    client = client_of(org["pat"])
    answer = client.post(URL, {"name": "mine", "kind": "deny", "reason": "x", "team": "", "zone": "UTC",
                               "weekdays": ["0"], "start_time": "01:00", "end_time": "02:00"})
    assert answer.status_code == 400 and not ChangeWindow.objects.filter(name="mine").exists()
    page = client.get(URL).content.decode()
    assert "year-end" in page and f"/change-windows/{freeze.pk}/edit/" not in page, "shown, not editable"
    client.post(f"/change-windows/{freeze.pk}/delete/")
    assert client.post(f"/change-windows/{freeze.pk}/edit/", {
        "name": "year-end", "kind": "deny", "reason": "freeze", "zone": "UTC", "starts_at": "2026-12-24T00:00",
        "ends_at": "2026-12-24T00:01"}).status_code == 400
    freeze.refresh_from_db()
    assert freeze.ends_at.isoformat() == "2027-01-04T00:00:00+00:00"
    assert ChangeWindow.objects.count() == 1
    assert client_of(org["viewer"]).get(URL).status_code == 200, "viewers read the windows that hold their clusters"


def test_operator_cannot_mark_another_teams_cluster_busy_on_the_page(org):
    client = client_of(org["pat"])
    assert client.post("/clusters/shop-prod/busy/", {"busy": "1", "reason": "x"}).status_code == 404
    assert Cluster.objects.get(name="shop-prod").busy_since is None
    client.post("/clusters/pay-prod/busy/", {"busy": "1", "reason": "INC-3 failover"})
    assert Cluster.objects.get(name="pay-prod").busy_reason == "INC-3 failover"
    page = client.get("/clusters/pay-prod/").content.decode()
    assert "INC-3 failover" in page and 'id="busy-clear"' in page
    client.post("/clusters/pay-prod/busy/", {"busy": "0"})
    assert Cluster.objects.get(name="pay-prod").busy_since is None
    assert client_of(org["viewer"]).post("/clusters/pay-prod/busy/", {"busy": "1", "reason": "x"}).status_code == 403


def test_the_rollout_page_says_which_window_holds_a_stage_and_only_admins_override_it(fleet, operator, admin_user):
    calendar.save_window(user=admin_user, name="b-freeze", kind="deny", reason="INC-9", zone="UTC", selector="ring=b",
                         starts_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                         ends_at=(timezone.now() + timedelta(hours=2)).isoformat())
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]))
    page = client_of(operator).get(rollout.get_absolute_url()).content.decode()
    assert "Waiting for a change window" in page and "b-freeze" in page and "override-window" not in page
    answer = client_of(operator).post(f"/rollouts/{rollout.pk}/stages/0/override-window/", {"reason": "hurry"})
    assert answer.status_code == 302 and Stage.objects.get(rollout=rollout).window_override == {}
    admin_page = client_of(admin_user).get(rollout.get_absolute_url()).content.decode()
    assert "override-window" in admin_page
    client_of(admin_user).post(f"/rollouts/{rollout.pk}/stages/0/override-window/", {"reason": "CVE fix"})
    assert Stage.objects.get(rollout=rollout).window_override["reason"] == "CVE fix"
