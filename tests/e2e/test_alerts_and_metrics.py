"""End to end on a real member: its apiserver stopped and started again alerts exactly once and recovers exactly
once, by webhook (a real HTTP receiver) and email (a real SMTP server), within two sync intervals plus the
hold-down; its History shows the transitions; a real Prometheus scraping /metrics sees fleetweb_cluster_up go
from 1 to 0."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from inventory import services, sync
from inventory.choices import ClusterEventKind, ClusterStatus
from inventory.models import Cluster, ClusterEvent
from localfleet import binaries
from localfleet.pytest_plugin import require
from notifications import services as notification_services
from notifications.choices import ChannelKind
from tests.builders import make_user
from tests.conftest import wait_for

pytestmark = pytest.mark.e2e

INTERVAL, HOLD_DOWN, ALERT_INTERVAL = 5, 3, 1


@pytest.fixture
def beat_env() -> dict:
    return {"FLEETWEB_ALERT_INTERVAL": str(ALERT_INTERVAL)}


def test_stopped_member_alerts_once_and_recovers_once(member, celery_beat, http_receiver, smtp_server):
    admin = make_user("alert-admin", "admin")
    cluster = services.attach_cluster(name="alerting", credentials=member.token_credentials(), user=admin,
                                      sync_interval=INTERVAL, environment="prod")
    wait_for(lambda: Cluster.objects.get(pk=cluster.pk).status == ClusterStatus.CONNECTED, timeout=60,
             what="the first sync")
    hook = notification_services.save_channel(user=admin, name="oncall-hook", kind=ChannelKind.WEBHOOK,
                                              url=http_receiver.url("/alerts"), secret="s" * 20)
    mail = notification_services.save_channel(user=admin, name="oncall-mail", kind=ChannelKind.EMAIL,
                                              recipients="oncall@example.com")
    for channel in (hook, mail):
        notification_services.save_rule(user=admin, name=f"prod down {channel.name}", channel=channel,
                                        events=["cluster.status"], environments=["prod"],
                                        hold_down=HOLD_DOWN)

    def messages(state: str) -> list:
        return [r.json() for r in http_receiver.at("/alerts") if r.json()["data"].get("alert") == state]

    member.stop_apiserver()
    stopped = time.monotonic()
    try:
        wait_for(lambda: messages("firing"), timeout=2 * INTERVAL + HOLD_DOWN + 30, what="the alert")
        took = time.monotonic() - stopped
        # Within two sync intervals plus the hold-down (plus one alert evaluation and the delivery).
        assert took <= 2 * INTERVAL + HOLD_DOWN + ALERT_INTERVAL + 3, took
        [firing] = messages("firing")
        assert firing["data"]["cluster"] == "alerting" and firing["data"]["state"] == "unreachable"
        assert "connection refused" in firing["text"]
        [email] = smtp_server.wait(1)
        assert email["subject"] == "[Fleetweb] cluster alerting: unreachable"
        time.sleep(2 * INTERVAL)  # more failed syncs: still the one message
        assert len(messages("firing")) == 1 and len(smtp_server.messages) == 1
    finally:
        member.start_apiserver()
    wait_for(lambda: messages("resolved"), timeout=2 * INTERVAL + HOLD_DOWN + 30, what="the recovery")
    time.sleep(INTERVAL)
    assert len(messages("resolved")) == 1 and len(messages("firing")) == 1
    assert len(smtp_server.wait(2)) == 2
    # The apiserver may answer 401 for a moment while it starts: still the one alert, and its recovery says so.
    assert smtp_server.messages[1]["subject"] in ("[Fleetweb] cluster alerting: recovered (was unreachable)",
                                                  "[Fleetweb] cluster alerting: recovered (was unauthorized)")
    transitions = list(ClusterEvent.objects.filter(cluster=cluster, kind=ClusterEventKind.STATUS)
                       .order_by("at").values_list("summary", flat=True))
    assert transitions[0] == "pending first sync → connected"
    assert transitions[1].startswith("connected → unreachable: ")
    assert transitions[-1] in ("unreachable → connected", "unauthorized → connected")
    assert ClusterEvent.objects.filter(cluster=cluster, kind=ClusterEventKind.VERSION,
                                       summary=f"Kubernetes unknown → {member.member.apiserver_version}").exists()


@pytest.fixture
def prometheus(live_server):
    from localfleet.prometheus import Prometheus

    require(binaries.buildable(), "Go is not installed and no cached prometheus binary exists")
    state = Path(tempfile.mkdtemp(prefix="fleetweb-prometheus-"))
    server = Prometheus(state, target=live_server.url.removeprefix("http://"), token="e2e-metrics-token").start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_prometheus_sees_a_member_go_down(member, transactional_db, settings, prometheus):
    settings.FLEETWEB_METRICS_TOKEN = "e2e-metrics-token"
    cluster = services.attach_cluster(name="scraped", credentials=member.token_credentials(), user=None)
    assert sync.sync_cluster(cluster.pk).status == ClusterStatus.CONNECTED

    def up() -> str | None:
        result = prometheus.query('fleetweb_cluster_up{cluster="scraped"}')
        return result[0]["value"][1] if result else None

    wait_for(lambda: up() == "1", timeout=60, what="Prometheus scraping fleetweb_cluster_up 1")
    [target] = prometheus.targets()
    assert target["health"] == "up" and target["labels"]["job"] == "fleetweb"
    member.stop_apiserver()
    try:
        assert sync.sync_cluster(cluster.pk).status == ClusterStatus.UNREACHABLE
        wait_for(lambda: up() == "0", timeout=60, what="Prometheus scraping fleetweb_cluster_up 0")
        down = prometheus.query('fleetweb_cluster_status{cluster="scraped",status="unreachable"}')
        assert down[0]["value"][1] == "1"
    finally:
        member.start_apiserver()
