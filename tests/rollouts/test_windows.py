"""Change windows and freezes (rollouts/windows.py, rollouts/calendar.py): when a cluster may change, across time
zones and daylight-saving changes; who may make, lift and override windows and mark clusters busy; the stage gate
and Re-apply that obey them."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from foundation.errors import ServiceError
from foundation.models import AuditEvent
from inventory import services as inventory_services
from inventory.models import Cluster
from inventory.people import services as team_services
from rollouts import calendar, gates, windows
from rollouts.choices import RolloutState, StageState
from rollouts.models import ChangeWindow, Stage
from tests.builders import make_cluster, make_user
from tests.rollouts.fakes import run, start


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def rule(kind=windows.DENY, name="w", **schedule) -> windows.Rule:
    return windows.Rule(pk=1, name=name, kind=kind, reason="because", schedule=windows.schedule(**schedule))


# ---------------------------------------------------------------------------------------------
# When: time zones, daylight saving, recurring and one-off, overlaps


def test_a_recurring_window_follows_local_time_across_a_daylight_saving_change():
    friday = rule(zone="Europe/Berlin", weekdays=[4], start=time(15), end=time(18))
    # 2026-03-27 is a Friday in CET (UTC+1); 2026-04-03 one in CEST (UTC+2).
    assert friday.schedule.occurrences(at("2026-03-27T00:00Z"), at("2026-03-28T00:00Z")) == [
        (at("2026-03-27T14:00Z"), at("2026-03-27T17:00Z"))]
    assert friday.schedule.occurrences(at("2026-04-03T00:00Z"), at("2026-04-04T00:00Z")) == [
        (at("2026-04-03T13:00Z"), at("2026-04-03T16:00Z"))]
    assert friday.schedule.is_open(at("2026-04-03T13:30Z")) and not friday.schedule.is_open(at("2026-04-03T16:00Z"))


def test_skipped_and_repeated_local_hours_have_one_meaning():
    # Clocks go forward at 02:00 on 2026-03-29 in Berlin: 02:30 does not exist and is read as 03:30 CEST.
    gap = windows.schedule(zone="Europe/Berlin", weekdays=[6], start=time(2, 30), end=time(4))
    assert gap.occurrences(at("2026-03-29T00:00Z"), at("2026-03-29T05:00Z")) == [
        (at("2026-03-29T01:30Z"), at("2026-03-29T02:00Z"))]
    # Clocks go back at 03:00 on 2026-10-25: 02:30 happens twice; the first (CEST) is meant.
    repeat = windows.schedule(zone="Europe/Berlin", weekdays=[6], start=time(2, 30), end=time(5))
    assert repeat.occurrences(at("2026-10-25T00:00Z"), at("2026-10-25T06:00Z")) == [
        (at("2026-10-25T00:30Z"), at("2026-10-25T04:00Z"))]


def test_a_window_ending_before_it_starts_ends_the_next_day():
    night = windows.schedule(zone="America/New_York", weekdays=[0], start=time(22), end=time(2))
    # Monday 2026-12-07 22:00 EST to Tuesday 02:00 EST.
    assert night.is_open(at("2026-12-08T06:30Z")), "01:30 on Tuesday belongs to Monday's window"
    assert not night.is_open(at("2026-12-08T07:00Z"))
    assert not night.is_open(at("2026-12-09T06:30Z")), "Tuesday night has none"


def test_a_freeze_wins_over_an_allow_window_and_the_next_opening_is_when_both_agree():
    allow = rule(windows.ALLOW, "weekdays", zone="UTC", weekdays=[0, 1, 2, 3, 4], start=time(9), end=time(17))
    freeze = rule(windows.DENY, "year-end", zone="UTC", starts_at=at("2026-12-24T00:00Z"),
                  ends_at=at("2027-01-04T12:00Z"))
    rules = [allow, freeze]
    assert windows.allowed_at(rules, at("2026-12-22T10:00Z")) == (True, ())
    assert windows.allowed_at(rules, at("2026-12-22T18:00Z")) == (False, (allow,)), "outside the allow window"
    assert windows.allowed_at(rules, at("2026-12-28T10:00Z")) == (False, (freeze,)), "inside both: frozen"
    assert windows.next_open(rules, at("2026-12-28T10:00Z")) == at("2027-01-04T12:00Z"), \
        "the freeze ends on a Monday inside the allow window"
    assert windows.next_open(rules, at("2026-12-22T18:00Z")) == at("2026-12-23T09:00Z")
    decision = windows.decide(rules, at("2026-12-28T10:00Z"))
    assert not decision.allowed and "freeze 'year-end' (because): opens 2027-01-04 12:00 UTC" in decision.words()
    assert windows.decide(rules, at("2026-12-22T10:00Z"), busy="incident 42").words() == \
        "marked busy (incident 42) until its team clears it"


def test_a_window_that_never_opens_says_so():
    never = rule(windows.ALLOW, zone="UTC", starts_at=at("2020-01-01T00:00Z"), ends_at=at("2020-01-02T00:00Z"))
    assert windows.next_open([never], at("2026-12-07T00:00Z")) is None
    assert "no change window opens within 400 days" in windows.decide([never], at("2026-12-07T00:00Z")).words()


@pytest.mark.parametrize(("fields", "field"), [
    ({"zone": "Mars/Olympus", "weekdays": [0], "start": time(1), "end": time(2)}, "zone"),
    ({"zone": "UTC", "weekdays": [], "start": time(1), "end": time(2)}, "weekdays"),
    ({"zone": "UTC", "weekdays": [7], "start": time(1), "end": time(2)}, "weekdays"),
    ({"zone": "UTC", "weekdays": [1], "start": time(1), "end": time(1)}, "end"),
    ({"zone": "UTC", "starts_at": at("2026-01-02T00:00Z"), "ends_at": at("2026-01-01T00:00Z")}, "ends_at"),
    ({"zone": "UTC", "starts_at": datetime(2026, 1, 1), "ends_at": datetime(2026, 1, 2)}, "starts_at"),
    ({"zone": "UTC", "weekdays": [1], "start": time(1), "end": time(2), "starts_at": at("2026-01-01T00:00Z"),
      "ends_at": at("2026-01-02T00:00Z")}, "starts_at"),
])
def test_a_window_that_cannot_be_is_refused_naming_the_field(fields, field):
    with pytest.raises(windows.WindowError) as refused:
        windows.schedule(**fields)
    assert refused.value.field == field


# ---------------------------------------------------------------------------------------------
# Who: services and their permission checks


@pytest.fixture
def teams(db, admin_user):
    for name, env, owner in (("pay-prod", "prod", "payments"), ("pay-dev", "dev", "payments"),
                             ("shop-prod", "prod", "shop")):
        make_cluster(name, environment=env, labels={"team": owner}).__class__.objects.filter(name=name).update(
            owner=owner)
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    pat, sam = make_user("pat"), make_user("sam")
    team_services.add_member(payments, member=pat, role="operator", user=admin_user)
    team_services.add_member(shop, member=sam, role="operator", user=admin_user)
    return {"payments": payments, "shop": shop, "pat": pat, "sam": sam}


FREEZE = {"name": "year-end", "kind": "deny", "reason": "year-end freeze", "zone": "Europe/Berlin",
          "starts_at": "2026-12-24T00:00+01:00", "ends_at": "2027-01-04T00:00+01:00"}


def held_names(now=None) -> dict[str, list[str]]:
    clusters = list(Cluster.objects.order_by("name"))
    held = calendar.holding(clusters)
    return {c.name: [w.name for w in held[c.pk]] for c in clusters}


def test_a_platform_freeze_holds_its_environment_and_a_team_window_only_the_teams_clusters(teams, admin_user):
    calendar.save_window(user=admin_user, environments=["prod"], **FREEZE)
    calendar.save_window(user=teams["pat"], team=teams["payments"], name="pay-nights", kind="deny",
                         reason="batch jobs", zone="UTC", weekdays=[0, 1, 2, 3, 4], start_time="22:00",
                         end_time="06:00")
    assert held_names() == {"pay-dev": ["pay-nights"], "pay-prod": ["pay-nights", "year-end"],
                            "shop-prod": ["year-end"]}
    event = AuditEvent.objects.get(action="window.create", target_name="pay-nights")
    assert event.actor_name == "pat" and event.after["schedule"] == "Mon, Tue, Wed, Thu, Fri 22:00-06:00 (next day) UTC"


def test_operator_cannot_make_a_platform_window_or_lift_a_platform_freeze(teams, admin_user):
    freeze = calendar.save_window(user=admin_user, **FREEZE)
    before = AuditEvent.objects.count()
    with pytest.raises(ServiceError) as refused:
        calendar.save_window(user=teams["pat"], name="mine", kind="allow", reason="x", zone="UTC", weekdays=[0],
                             start_time="09:00", end_time="10:00")
    assert refused.value.status == 403
    for attempt in (lambda: calendar.save_window(user=teams["pat"], window=freeze, **{**FREEZE, "enabled": False}),
                    lambda: calendar.delete_window(freeze, user=teams["pat"])):
        with pytest.raises(ServiceError) as refused:
            attempt()
        assert refused.value.status == 403
    freeze.refresh_from_db()
    assert freeze.enabled and ChangeWindow.objects.count() == 1 and AuditEvent.objects.count() == before


def test_operator_cannot_make_or_change_another_teams_windows(teams, admin_user):
    theirs = calendar.save_window(user=teams["sam"], team=teams["shop"], name="shop-quiet", kind="deny",
                                  reason="sale", zone="UTC", weekdays=[5], start_time="00:00", end_time="23:59")
    with pytest.raises(ServiceError):
        calendar.save_window(user=teams["pat"], team=teams["shop"], name="sneaky", kind="allow", reason="x",
                             zone="UTC", weekdays=[0], start_time="01:00", end_time="02:00")
    with pytest.raises(ServiceError):
        calendar.delete_window(theirs, user=teams["pat"])
    assert list(ChangeWindow.objects.values_list("name", flat=True)) == ["shop-quiet"]


def test_bad_window_fields_are_refused_and_nothing_is_stored(teams, admin_user):
    for bad, field in (({"zone": "Nowhere/City"}, "zone"), ({"starts_at": "yesterday"}, "starts_at"),
                       ({"reason": ""}, "reason"), ({"kind": "maybe"}, "kind"), ({"selector": "env in ("}, "selector"),
                       ({"environments": ["moon"]}, "environments")):
        with pytest.raises(ServiceError) as refused:
            calendar.save_window(user=admin_user, **{**FREEZE, **bad})
        assert field in refused.value.errors, bad
    assert not ChangeWindow.objects.exists()


def test_a_team_member_reads_its_teams_windows_and_the_platform_windows_that_hold_its_clusters(teams, admin_user):
    calendar.save_window(user=admin_user, environments=["prod"], **FREEZE)
    calendar.save_window(user=admin_user, **{**FREEZE, "name": "staging-only", "environments": ["staging"]})
    calendar.save_window(user=teams["sam"], team=teams["shop"], name="shop-quiet", kind="deny", reason="sale",
                         zone="UTC", weekdays=[5], start_time="00:00", end_time="23:59")
    assert [w.name for w in calendar.visible_windows(teams["pat"])] == ["year-end"]
    assert [w.name for w in calendar.visible_windows(teams["sam"])] == ["shop-quiet", "year-end"]
    assert len(calendar.visible_windows(admin_user)) == 3


def test_operator_cannot_mark_a_cluster_outside_its_scope_busy(teams, viewer):
    shop = Cluster.objects.get(name="shop-prod")
    for who in (teams["pat"], viewer):
        with pytest.raises(ServiceError) as refused:
            inventory_services.set_busy(shop, user=who, reason="incident")
        assert refused.value.status == 403
    shop.refresh_from_db()
    assert shop.busy_since is None and not AuditEvent.objects.filter(action="cluster.busy").exists()
    inventory_services.set_busy(shop, user=teams["sam"], reason="INC-7 database failover")
    shop.refresh_from_db()
    assert shop.busy_reason == "INC-7 database failover"
    assert calendar.refusal(shop) == "shop-prod is marked busy (INC-7 database failover) until its team clears it"
    inventory_services.set_busy(shop, user=teams["sam"], busy=False)
    shop.refresh_from_db()
    assert shop.busy_since is None and calendar.refusal(shop) == ""
    assert list(AuditEvent.objects.filter(target_name="shop-prod", action__startswith="cluster.busy")
                .order_by("pk").values_list("action", "actor_name")) == [("cluster.busy", "sam"),
                                                                     ("cluster.busy_cleared", "sam")]


# ---------------------------------------------------------------------------------------------
# The stage gate, the override, Re-apply


@pytest.mark.django_db
def test_a_stage_waits_for_a_freeze_says_when_it_opens_and_goes_when_it_ends(fleet, operator, admin_user):
    fleet.ready.add("b-1")
    freeze = calendar.save_window(user=admin_user, name="b-freeze", kind="deny", reason="INC-9", zone="UTC",
                                  selector="ring=b", starts_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                                  ends_at=(timezone.now() + timedelta(hours=2)).isoformat())
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]))
    stage = Stage.objects.get(rollout=rollout)
    assert stage.state == StageState.PENDING and fleet.pushed == [], "nothing applied while frozen"
    assert stage.window_hold == {"clusters": ["b-1"], "busy": [], "windows": ["b-freeze"],
                                 "opens_at": freeze.ends_at.isoformat()}
    assert rollout.next_step_at == freeze.ends_at
    verdict = gates.entry(stage, timezone.now())
    assert "b-1: freeze 'b-freeze' (INC-9): opens" in verdict.message
    # The freeze is moved to have ended: the rollout is looked at again and goes.
    calendar.save_window(user=admin_user, window=freeze, name="b-freeze", kind="deny", reason="INC-9", zone="UTC",
                         selector="ring=b", starts_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                         ends_at=(timezone.now() - timedelta(seconds=1)).isoformat())
    rollout = run(rollout, 10)
    assert rollout.state == RolloutState.SUCCEEDED and fleet.applied_to(1) == ["b-1"]
    assert Stage.objects.get(rollout=rollout).window_hold == {}


@pytest.mark.django_db
def test_operator_cannot_override_a_window_and_an_admins_override_is_audited_but_never_lifts_busy(
        fleet, operator, admin_user):
    fleet.ready.add("b-1")
    calendar.save_window(user=admin_user, name="b-freeze", kind="deny", reason="INC-9", zone="UTC", selector="ring=b",
                         starts_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                         ends_at=(timezone.now() + timedelta(hours=2)).isoformat())
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]))
    stage = Stage.objects.get(rollout=rollout)
    with pytest.raises(ServiceError) as refused:
        calendar.override_stage(stage, user=operator, reason="I am in a hurry")
    assert refused.value.status == 403
    stage.refresh_from_db()
    assert stage.window_override == {} and not AuditEvent.objects.filter(action="rollout.window_override").exists()
    b1 = Cluster.objects.get(name="b-1")
    inventory_services.set_busy(b1, user=admin_user, reason="INC-10")
    calendar.override_stage(stage, user=admin_user, reason="security fix CVE-2026-1")
    rollout = run(rollout, 4)
    stage.refresh_from_db()
    assert stage.state == StageState.PENDING and fleet.pushed == [], "a busy cluster still holds it"
    assert stage.window_hold["busy"] == ["b-1"] and stage.window_hold["windows"] == [], "the freeze is overridden"
    event = AuditEvent.objects.get(action="rollout.window_override")
    assert event.actor_name == "ada-admin" and event.after["reason"] == "security fix CVE-2026-1"
    inventory_services.set_busy(b1, user=admin_user, busy=False)
    rollout = run(rollout, 10)
    assert rollout.state == RolloutState.SUCCEEDED and fleet.applied_to(1) == ["b-1"]


@pytest.mark.django_db
def test_re_apply_waits_for_the_window(fleet, operator, admin_user):
    from rollouts import corrections
    from rollouts.models import Deployed

    fleet.ready.add("b-1")
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]), 10)
    assert rollout.state == RolloutState.SUCCEEDED
    deployed = Deployed.objects.select_related("application", "cluster", "revision").get(cluster__name="b-1")
    calendar.save_window(user=admin_user, name="b-freeze", kind="deny", reason="INC-9", zone="UTC", selector="ring=b",
                         starts_at=(timezone.now() - timedelta(hours=1)).isoformat(),
                         ends_at=(timezone.now() + timedelta(hours=2)).isoformat())
    pushed = len(fleet.pushed)
    with pytest.raises(ServiceError) as refused:
        corrections.request_reapply(deployed, user=operator)
    assert refused.value.status == 409 and "freeze 'b-freeze' (INC-9)" in str(refused.value)
    assert len(fleet.pushed) == pushed and not AuditEvent.objects.filter(action="application.reapply").exists()


# ---------------------------------------------------------------------------------------------
# The API: the same services and checks


def test_the_api_makes_lists_and_refuses_windows_as_the_services_do(teams, admin_user, api_as):
    url = "/api/v1/change-windows/"
    body = {"name": "pay-nights", "kind": "deny", "reason": "batch jobs", "zone": "Europe/Berlin",
            "weekdays": [0, 1, 2, 3, 4], "start_time": "22:00", "end_time": "06:00", "team": "payments"}
    made = api_as(teams["pat"]).post(url, body, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["schedule"] == "Mon, Tue, Wed, Thu, Fri 22:00-06:00 (next day) Europe/Berlin"
    platform = api_as(teams["pat"]).post(url, {**body, "name": "everyone", "team": None}, format="json")
    assert platform.status_code == 403
    other = api_as(teams["pat"]).post(url, {**body, "name": "theirs", "team": "shop"}, format="json")
    assert other.status_code in (400, 403), "another team's name does not resolve for pat, or is refused"
    bad = api_as(teams["pat"]).post(url, {**body, "name": "bad", "zone": "Nowhere/City"}, format="json")
    assert bad.status_code == 400 and "zone" in bad.json()["errors"]
    assert list(ChangeWindow.objects.values_list("name", flat=True)) == ["pay-nights"]
    assert [w["name"] for w in api_as(teams["sam"]).get(url).json()] == [], "shop does not read payments' windows"
    freeze = api_as(admin_user).post(url, {**body, "name": "year-end", "team": None, "weekdays": [],
                                           "start_time": None, "end_time": None,
                                           "starts_at": "2026-12-24T00:00+01:00", "ends_at": "2027-01-04T00:00+01:00"},
                                     format="json")
    assert freeze.status_code == 201, freeze.content
    lift = api_as(teams["pat"]).patch(f"{url}{freeze.json()['id']}/", {"enabled": False}, format="json")
    assert lift.status_code == 403 and ChangeWindow.objects.get(name="year-end").enabled
    assert api_as(teams["pat"]).delete(f"{url}{freeze.json()['id']}/").status_code == 403
    busy = api_as(teams["pat"]).post(f"/api/v1/clusters/{Cluster.objects.get(name='shop-prod').pk}/busy/",
                                     {"busy": True, "reason": "x"}, format="json")
    assert busy.status_code == 404, "a cluster outside pat's scope is not found"
    mine = Cluster.objects.get(name="pay-prod")
    marked = api_as(teams["pat"]).post(f"/api/v1/clusters/{mine.pk}/busy/", {"busy": True, "reason": "INC-1"},
                                       format="json")
    assert marked.status_code == 200 and marked.json()["busy_reason"] == "INC-1"


@pytest.mark.django_db
def test_metrics_say_which_stage_a_window_holds_and_when_it_opens(fleet, operator, admin_user):
    from foundation import metrics

    ends = timezone.now() + timedelta(hours=2)
    calendar.save_window(user=admin_user, name="b-freeze", kind="deny", reason="INC-9", zone="UTC", selector="ring=b",
                         starts_at=(timezone.now() - timedelta(hours=1)).isoformat(), ends_at=ends.isoformat())
    rollout = run(start(operator, [{"name": "ring-b", "selector": "ring=b"}]))
    [line] = [line for line in metrics.fleet_text().splitlines()
              if line.startswith("fleetweb_stage_window_opens_in_seconds{")]
    name, value = line.rsplit(" ", 1)
    assert name == f'fleetweb_stage_window_opens_in_seconds{{application="web",rollout="{rollout.pk}",stage="ring-b"}}'
    assert 7000 < float(value) <= 7200
