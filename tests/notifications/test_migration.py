"""The notification tables moved from the inventory app to the notifications app without losing a row: channels,
rules (their score and expiry columns become declared parameters), alerts and deliveries are read back after the
migrations from what inventory 0012 stored."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("inventory", "0012_upgrade_readiness"), ("notifications", None)]


def _migrate(targets, *, state_at):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(state_at).apps


def _latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_rules_channels_alerts_and_deliveries_survive_the_move():
    try:
        old = _migrate(BEFORE, state_at=[BEFORE[0]])
        Team = old.get_model("inventory", "Team")
        Channel = old.get_model("inventory", "Channel")
        AlertRule = old.get_model("inventory", "AlertRule")
        Alert = old.get_model("inventory", "Alert")
        Delivery = old.get_model("inventory", "Delivery")
        team = Team.objects.create(name="payments", selector="team=payments")
        channel = Channel.objects.create(name="pay-hook", team=team, kind="webhook", ciphertext="sealed",
                                         target_host="hooks.example.com")
        rule = AlertRule.objects.create(name="pay", team=team, channel=channel, events=["group.score_low"],
                                        score_below=62.5, expiry_days=9, hold_down=30)
        alert = Alert.objects.create(rule=rule, key="group:1", event="group.score_low", state="below 62.5",
                                     subject="group pay compliance", opened_at="2026-12-01T10:00:00Z")
        delivery = Delivery.objects.create(channel=channel, rule=rule, event="group.score_low", title="low",
                                           payload={"event": "group.score_low"}, state="sent")
    finally:
        new = _migrate(_latest(), state_at=_latest())
    rule_after = new.get_model("notifications", "AlertRule").objects.get(pk=rule.pk)
    assert rule_after.params == {"score_below": 62.5, "expiry_days": 9}
    assert (rule_after.name, rule_after.team_id, rule_after.channel_id, rule_after.hold_down) == (
        "pay", team.pk, channel.pk, 30)
    channel_after = new.get_model("notifications", "Channel").objects.get(pk=channel.pk)
    assert (channel_after.name, channel_after.ciphertext, channel_after.team_id) == ("pay-hook", "sealed", team.pk)
    assert new.get_model("notifications", "Alert").objects.get(pk=alert.pk).rule_id == rule.pk
    assert new.get_model("notifications", "Delivery").objects.get(pk=delivery.pk).payload == {
        "event": "group.score_low"}
    ContentType = new.get_model("contenttypes", "ContentType")
    assert set(ContentType.objects.filter(model__in=["channel", "alertrule", "alert", "delivery"])
               .values_list("app_label", flat=True)) <= {"notifications"}

    from notifications import events
    from notifications.models import AlertRule as LiveRule

    assert events.param(LiveRule.objects.get(pk=rule.pk), "score_below") == 62.5
