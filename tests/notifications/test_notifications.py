"""Alerts: conditions opened once and closed once, hold-down, digests, deliveries to a real HTTP receiver and a
real SMTP server, retries, the delivery log, and who may change channels and rules."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from foundation.models import AuditEvent
from inventory.choices import ClusterStatus
from inventory.credentials import expiry_of
from inventory.models import Cluster, Team, TeamMember
from notifications import alerting as notifications
from notifications import events, services
from notifications.choices import ChannelKind, DeliveryState
from notifications.models import Alert, AlertRule, Channel, Delivery
from tests.builders import make_cluster, make_user, make_workload

pytestmark = pytest.mark.django_db

SECRET = "a-signing-secret-of-32-characters"


@pytest.fixture
def admin(db):
    return make_user("ada-admin", "admin")


def hook(receiver, admin, *, name="ops", path="/hook", team=None, kind=ChannelKind.WEBHOOK, user=None) -> Channel:
    return services.save_channel(user=user or admin, name=name, kind=kind, url=receiver.url(path), team=team,
                                 secret=SECRET if kind == ChannelKind.WEBHOOK else "")


def rule_for(channel, admin, *events, team=None, hold_down=0, **fields) -> AlertRule:
    return services.save_rule(user=admin, name=f"rule-{channel.name}", channel=channel, team=team,
                              events=list(events) or ["cluster.status"], hold_down=hold_down, **fields)


def down(cluster: Cluster, status=ClusterStatus.UNREACHABLE, *, ago: float = 600, reason="connection refused"):
    Cluster.objects.filter(pk=cluster.pk).update(status=status, status_reason=reason,
                                                 status_changed_at=timezone.now() - timedelta(seconds=ago))


def send_all() -> list[Delivery]:
    """What a worker does with the queued deliveries: one attempt each."""
    for pk in Delivery.objects.filter(state=DeliveryState.PENDING).order_by("pk").values_list("pk", flat=True):
        notifications.attempt(pk)
    return list(Delivery.objects.order_by("pk"))


# ---------------------------------------------------------------------------------------------
# Conditions: once per transition, hold-down, recovery


def test_cluster_alert_fires_once_and_recovers_once(http_receiver, admin, django_capture_on_commit_callbacks):
    channel = hook(http_receiver, admin)
    rule_for(channel, admin, hold_down=60)
    cluster = make_cluster("pay-prod", environment="prod")
    down(cluster, ago=120)
    with django_capture_on_commit_callbacks():
        assert notifications.evaluate() == 1
    assert notifications.evaluate() == 0, "an open alert sends nothing more"
    send_all()
    [sent] = http_receiver.at("/hook")
    body = sent.json()
    assert body["event"] == "cluster.status" and body["data"]["state"] == "unreachable"
    assert body["title"] == "cluster pay-prod: unreachable" and body["data"]["alert"] == "firing"
    assert sent.headers["X-Fleetweb-Signature"] == "sha256=" + hmac.new(SECRET.encode(), sent.body,
                                                                        hashlib.sha256).hexdigest()
    # Back, but for less than the hold-down: still open.
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.CONNECTED, status_changed_at=timezone.now())
    assert notifications.evaluate() == 0
    assert Alert.objects.get().closed_at is None
    # Back for longer than the hold-down: one recovery, then quiet.
    Cluster.objects.filter(pk=cluster.pk).update(status_changed_at=timezone.now() - timedelta(seconds=61))
    assert notifications.evaluate() == 1
    assert notifications.evaluate() == 0
    send_all()
    recovery = http_receiver.at("/hook")[-1].json()
    assert recovery["severity"] == "resolved" and recovery["data"]["was"] == "unreachable"
    assert len(http_receiver.at("/hook")) == 2
    assert Alert.objects.get().closed_at is not None


def test_flapping_cluster_is_held_down(http_receiver, admin):
    rule_for(hook(http_receiver, admin), admin, hold_down=300)
    cluster = make_cluster("flappy")
    for _ in range(5):  # down and up again, each time for less than the hold-down
        down(cluster, ago=30)
        assert notifications.evaluate() == 0
        Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.CONNECTED, status_changed_at=timezone.now())
        assert notifications.evaluate() == 0
    assert not Delivery.objects.exists() and not Alert.objects.exists()


def test_failing_differently_stays_one_alert_and_pending_or_degraded_never_alert(http_receiver, admin):
    """A member's apiserver coming back answers 401 for a few seconds before it is connected again: that is
    still the one outage, not a second alert."""
    rule_for(hook(http_receiver, admin), admin)
    cluster = make_cluster("a")
    make_cluster("new", status=ClusterStatus.PENDING)
    make_cluster("slow", status=ClusterStatus.DEGRADED)
    down(cluster)
    assert notifications.evaluate() == 1
    down(cluster, ClusterStatus.UNAUTHORIZED, reason="401")
    assert notifications.evaluate() == 0
    assert Alert.objects.get().state == ClusterStatus.UNAUTHORIZED
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.CONNECTED,
                                                 status_changed_at=timezone.now() - timedelta(hours=1))
    assert notifications.evaluate() == 1
    assert [d.title for d in Delivery.objects.order_by("pk")] == ["cluster a: unreachable",
                                                                 "cluster a: recovered (was unauthorized)"]


def test_a_region_going_down_sends_one_digest(http_receiver, admin, settings):
    settings.FLEETWEB_ALERT_DIGEST_OVER = 10
    rule_for(hook(http_receiver, admin), admin)
    for i in range(25):
        down(make_cluster(f"eu-{i}", region="eu-west-1"))
    assert notifications.evaluate() == 1
    [digest] = send_all()
    assert digest.event == "digest" and digest.title == "25 alerts: 25 firing, 0 resolved"
    body = http_receiver.at("/hook")[0].json()
    assert len(body["data"]["messages"]) == 25 and len(body["items"]) == 25
    assert Alert.objects.filter(closed_at__isnull=True).count() == 25, "each cluster still recovers on its own"


def test_environment_filter_and_team_scope(http_receiver, admin):
    team = Team.objects.create(name="payments", selector="owner=payments")
    platform = hook(http_receiver, admin, name="platform", path="/platform")
    rule_for(platform, admin, environments=["prod"])
    team_channel = hook(http_receiver, admin, name="payments", path="/payments", team=team)
    rule_for(team_channel, admin, team=team)
    down(make_cluster("pay-dev", owner="payments", environment="dev"))
    down(make_cluster("web-prod", owner="web", environment="prod"))
    notifications.evaluate()
    send_all()
    assert [r.json()["data"]["cluster"] for r in http_receiver.at("/platform")] == ["web-prod"]
    assert [r.json()["data"]["cluster"] for r in http_receiver.at("/payments")] == ["pay-dev"]


def test_credentials_expiry_from_a_jwt(http_receiver, admin):
    def jwt(exp: int) -> str:
        claims = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=").decode()
        return f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"

    soon = int((timezone.now() + timedelta(days=3)).timestamp())
    assert expiry_of({"method": "token", "token": jwt(soon)}).timestamp() == soon
    assert expiry_of({"method": "token", "token": "opaque-token"}) is None
    rule_for(hook(http_receiver, admin), admin, "cluster.credentials_expiring", expiry_days=7)
    make_cluster("far", credentials_expire_at=timezone.now() + timedelta(days=30))
    make_cluster("near", credentials_expire_at=timezone.now() + timedelta(days=3))
    assert notifications.evaluate() == 1
    assert Delivery.objects.get().title == "credentials of cluster near: expiring"


# ---------------------------------------------------------------------------------------------
# Channels: Slack, email, errors, retries


def test_slack_and_email_channels_deliver(http_receiver, smtp_server, admin):
    slack = hook(http_receiver, admin, name="slack", path="/services/T0/B0/x", kind=ChannelKind.SLACK)
    mail = services.save_channel(user=admin, name="oncall", kind=ChannelKind.EMAIL,
                                 recipients="oncall@example.com, sre@example.com")
    for channel in (slack, mail):
        rule_for(channel, admin)
    down(make_cluster("mail-me"))
    assert notifications.evaluate() == 2
    states = {d.channel.name: (d.state, d.answer) for d in send_all()}
    assert states["slack"] == (DeliveryState.SENT, "HTTP 204 No Content")
    assert states["oncall"] == (DeliveryState.SENT, "accepted by the SMTP server for 2 recipient(s)")
    text = http_receiver.at("/services/T0/B0/x")[0].json()["text"]
    assert text.startswith("*cluster mail-me: unreachable*") and "connection refused" in text
    [message] = smtp_server.wait(1)
    assert message["to"] == ["oncall@example.com", "sre@example.com"]
    assert message["subject"] == "[Fleetweb] cluster mail-me: unreachable"
    assert "connection refused" in message["body"] and "cluster.status" in message["body"]


def test_a_members_words_cannot_become_a_slack_link_or_a_mail_header(http_receiver, smtp_server, admin):
    """A member's status message is its own words: in Slack mrkdwn `<…|…>` would be a link and `<!channel>` a
    mention, and in a mail subject a line break would start a header. Both arrive as plain text."""
    slack = hook(http_receiver, admin, name="slack", path="/services/T0/B0/y", kind=ChannelKind.SLACK)
    mail = services.save_channel(user=admin, name="oncall", kind=ChannelKind.EMAIL, recipients="oncall@example.com")
    for channel in (slack, mail):
        rule_for(channel, admin)
    down(make_cluster("evil"), reason="<https://evil.example/login|Re-authenticate here> <!channel> & co")
    assert notifications.evaluate() == 2
    assert {d.state for d in send_all()} == {DeliveryState.SENT}
    text = http_receiver.at("/services/T0/B0/y")[0].json()["text"]
    assert "&lt;https://evil.example/login|Re-authenticate here&gt; &lt;!channel&gt; &amp; co" in text
    assert "<https://evil.example" not in text and "<!channel>" not in text
    [message] = smtp_server.wait(1)
    assert message["subject"] == "[Fleetweb] cluster evil: unreachable"
    assert "<https://evil.example/login|Re-authenticate here>" in message["body"]  # plain text, shown as it is
    from notifications.channels import header_text
    assert header_text("a\r\nBcc: victim@example.com") == "a Bcc: victim@example.com"


def test_failing_receiver_is_retried_then_given_up_and_never_quoted(http_receiver, admin, settings):
    settings.FLEETWEB_DELIVERY_ATTEMPTS = 3
    broken = hook(http_receiver, admin, name="broken", path="/broken")
    working = hook(http_receiver, admin, name="working", path="/working")
    rule_for(broken, admin)
    rule_for(working, admin)
    http_receiver.statuses["/broken"] = [500, 503, 502]
    down(make_cluster("x"))
    notifications.evaluate()
    bad = Delivery.objects.get(channel=broken)
    good = Delivery.objects.get(channel=working)
    state, retry_in = notifications.attempt(bad.pk)
    assert state == DeliveryState.RETRYING and 8 <= retry_in <= 12
    assert notifications.attempt(good.pk) == (DeliveryState.SENT, None), "one broken channel delays no other"
    assert notifications.attempt(bad.pk)[0] == DeliveryState.RETRYING
    assert notifications.attempt(bad.pk) == (DeliveryState.FAILED, None)
    bad.refresh_from_db()
    assert bad.attempts == 3 and bad.answer == "HTTP 502 Bad Gateway"
    assert "secret internals" not in bad.answer
    assert notifications.attempt(bad.pk) == ("skipped", None), "a failed delivery is not tried again"


def test_gone_receiver_is_not_retried(http_receiver, admin):
    channel = hook(http_receiver, admin)
    rule_for(channel, admin)
    http_receiver.statuses["/hook"] = [410]
    down(make_cluster("x"))
    notifications.evaluate()
    assert notifications.attempt(Delivery.objects.get().pk) == (DeliveryState.FAILED, None)
    assert Delivery.objects.get().answer == "HTTP 410 Gone"


@pytest.mark.parametrize(("url", "why"), [
    ("ftp://hooks.example.com/x", "must start with https:// or http://"),
    ("https://user:pw@hooks.example.com/x", "may not carry a user name or password"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("https://hooks.example.com/x?token=1", "query string"),
])
def test_bad_channel_urls_are_refused_with_the_reason(admin, url, why):
    with pytest.raises(services.ServiceError) as refused:
        services.save_channel(user=admin, name="bad", kind=ChannelKind.WEBHOOK, url=url)
    assert why in str(refused.value.errors["url"])
    assert not Channel.objects.exists()


def test_loopback_receiver_is_refused_unless_allowed(admin, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    with pytest.raises(services.ServiceError) as refused:
        services.save_channel(user=admin, name="local", kind=ChannelKind.WEBHOOK, url="http://127.0.0.1:9/x")
    assert "loopback" in str(refused.value.errors["url"])


def test_email_channel_needs_smtp_and_valid_addresses(admin, settings):
    settings.EMAIL_HOST = ""
    with pytest.raises(services.ServiceError) as refused:
        services.save_channel(user=admin, name="m", kind=ChannelKind.EMAIL, recipients="a@example.com")
    assert "FLEETWEB_EMAIL_HOST" in str(refused.value.errors["kind"])
    settings.EMAIL_HOST = "smtp.example.com"
    with pytest.raises(services.ServiceError) as refused:
        services.save_channel(user=admin, name="m", kind=ChannelKind.EMAIL, recipients="a@example.com, nope")
    assert "'nope' is not an email address" in str(refused.value.errors["recipients"])


def test_send_test_message_page_shows_the_answer(client, http_receiver, admin):
    channel = hook(http_receiver, admin)
    client.force_login(admin)
    http_receiver.statuses["/hook"] = [401]
    page = client.post(f"/notifications/channels/{channel.pk}/test/", HTTP_HX_REQUEST="true")
    assert page.status_code == 200
    assert b'data-state="failed"' in page.content and b"HTTP 401 Unauthorized" in page.content
    page = client.post(f"/notifications/channels/{channel.pk}/test/", HTTP_HX_REQUEST="true")
    assert b'data-state="sent"' in page.content
    # The channel page's delivery table comes along (out of band): both test messages, no "Nothing sent yet".
    table = page.content.decode().split('id="channel-deliveries" hx-swap-oob="true"', 1)[1]
    assert table.count("data-delivery=") == 2 and "Nothing sent yet" not in table
    assert http_receiver.at("/hook")[-1].json()["event"] == "test"
    assert AuditEvent.objects.filter(action="channel.test").count() == 2
    log = client.get("/notifications/deliveries/").content.decode()
    assert log.count('data-state="sent"') == 1 and log.count('data-state="failed"') == 1
    detail = client.get(f"/notifications/deliveries/{Delivery.objects.first().pk}/").content.decode()
    assert "Test message to channel ops" in detail


def test_channel_secrets_are_never_shown_or_returned(client, http_receiver, admin, api_as):
    channel = hook(http_receiver, admin, path="/services/T000/B000/XXXXSECRETPATH")
    client.force_login(admin)
    for path in ("/notifications/", f"/notifications/channels/{channel.pk}/"):
        page = client.get(path).content.decode()
        assert "XXXXSECRETPATH" not in page and SECRET not in page and "127.0.0.1" in page
    body = api_as(admin).get(f"/api/v1/notification-channels/{channel.pk}/").json()
    assert "url" not in body and "secret" not in body and body["destination"] == "127.0.0.1"
    audit = json.dumps(list(AuditEvent.objects.filter(action__startswith="channel.").values("before", "after")))
    assert "XXXXSECRETPATH" not in audit and SECRET not in audit


def test_editing_keeps_the_stored_url_and_secret(http_receiver, admin):
    channel = hook(http_receiver, admin)
    services.save_channel(user=admin, channel=channel, name="ops-renamed", kind=channel.kind, url="", secret="")
    channel.refresh_from_db()
    assert channel.name == "ops-renamed" and channel.open() == {"url": http_receiver.url(), "secret": SECRET}


# ---------------------------------------------------------------------------------------------
# Events: violations and rollouts


def test_violation_alert_respects_the_rule_severity(http_receiver, admin):
    from governance.alerts import violations_opened

    rule_for(hook(http_receiver, admin), admin, "violation.opened", min_severity="high")
    cluster = make_cluster("v1")
    violations_opened([(cluster.pk, "no-privileged", "critical", "Pod", "web", "api-0"),
                       (cluster.pk, "require-limits", "medium", "Deployment", "web", "api")])
    [delivery] = Delivery.objects.all()
    assert delivery.title == "critical violation of no-privileged on v1"
    assert delivery.payload["data"]["name"] == "api-0"


def test_awaiting_approval_goes_to_the_approver_team_only(http_receiver, admin):
    from rollouts import alerts as rollout_alerts
    from rollouts import services as rollout_services
    from tests.rollouts.test_api_and_pages import MANIFESTS

    owners = Team.objects.create(name="payments", selector="owner=payments")
    approvers = Team.objects.create(name="pay-approvers", selector="owner=payments")
    make_cluster("pay-prod", environment="prod", owner="payments")
    for team, path in ((owners, "/owners"), (approvers, "/approvers")):
        rule_for(hook(http_receiver, admin, name=team.name, path=path, team=team), admin,
                 "rollout.awaiting_approval", "rollout.failed", team=team)
    platform = hook(http_receiver, admin, name="platform", path="/platform")
    rule_for(platform, admin, "rollout.awaiting_approval")
    app = rollout_services.create_application(name="pay", namespace="pay", manifests_text=MANIFESTS, user=admin,
                                              owner_team=owners, approver_team=approvers)
    rollout = rollout_services.create_rollout(revision=app.revisions.get(), user=admin,
                                              stages=[{"name": "prod", "selector": "environment=prod",
                                                       "approvals_required": 1}])
    stage = rollout.stages.get()
    rollout_alerts.notify("stage.awaiting_approval", rollout, stage=stage)
    rollout_alerts.notify("rollout.failed", rollout, stage=stage)
    send_all()
    assert [r.json()["event"] for r in http_receiver.at("/approvers")] == ["rollout.awaiting_approval",
                                                                           "rollout.failed"]
    assert [r.json()["event"] for r in http_receiver.at("/owners")] == ["rollout.failed"]
    assert [r.json()["event"] for r in http_receiver.at("/platform")] == ["rollout.awaiting_approval"]
    body = http_receiver.at("/approvers")[0].json()
    assert body["title"] == "pay revision 1: stage prod awaits approval" and body["data"]["clusters"] == ["pay-prod"]


# ---------------------------------------------------------------------------------------------
# Who may change what


@pytest.fixture
def team_operator(db):
    team = Team.objects.create(name="payments", selector="owner=payments")
    user = make_user("paula-payments")
    TeamMember.objects.create(team=team, user=user, role="operator")
    return user


def test_team_operator_manages_only_the_teams_own_channels(client, http_receiver, admin, team_operator):
    payments = Team.objects.get(name="payments")
    web = Team.objects.create(name="web", selector="owner=web")
    hook(http_receiver, admin, name="web-oncall", team=web)
    own = hook(http_receiver, admin, name="pay-oncall", team=payments, user=team_operator)
    rule_for(own, team_operator, team=payments)
    assert AlertRule.objects.get().team == payments
    client.force_login(team_operator)
    page = client.get("/notifications/").content.decode()
    assert 'data-channel="pay-oncall"' in page and "web-oncall" not in page
    form = client.get("/notifications/channels/new/").content.decode()
    assert 'value="payments"' in form and 'value="web"' not in form and "Platform (no team)" not in form


def test_operator_cannot_create_platform_channels_or_rules(http_receiver, admin, team_operator):
    platform = hook(http_receiver, admin, name="platform")
    before = (Channel.objects.count(), AlertRule.objects.count(), AuditEvent.objects.count())
    with pytest.raises(services.ServiceError) as refused:
        hook(http_receiver, admin, name="mine", user=team_operator)
    assert refused.value.status == 403
    with pytest.raises(services.ServiceError):
        services.save_rule(user=team_operator, name="steal", channel=platform, events=["cluster.status"])
    with pytest.raises(services.ServiceError):
        services.send_test(platform, user=team_operator)
    with pytest.raises(services.ServiceError):
        services.delete_channel(platform, user=team_operator)
    assert (Channel.objects.count(), AlertRule.objects.count(), AuditEvent.objects.count()) == before


def test_operator_cannot_route_another_teams_events_or_platform_events_to_their_channel(http_receiver, admin,
                                                                                       team_operator):
    payments = Team.objects.get(name="payments")
    web = Team.objects.create(name="web", selector="owner=web")
    own = hook(http_receiver, admin, name="pay", team=payments)
    web_channel = hook(http_receiver, admin, name="webc", team=web)
    with pytest.raises(services.ServiceError) as refused:
        services.save_rule(user=team_operator, name="x", team=web, channel=own, events=["cluster.status"])
    assert refused.value.status == 403
    with pytest.raises(services.ServiceError) as refused:  # own team, someone else's channel
        services.save_rule(user=team_operator, name="x", team=payments, channel=web_channel,
                           events=["cluster.status"])
    assert "team's own channels" in str(refused.value.errors["channel"])
    with pytest.raises(services.ServiceError):  # a platform rule (every cluster) sending to the team's channel
        services.save_rule(user=admin, name="x", channel=own, events=["cluster.status"])
    assert not AlertRule.objects.exists()


def test_operator_cannot_see_or_change_other_teams_channels_through_the_api(http_receiver, admin, team_operator,
                                                                           api_as):
    web = Team.objects.create(name="web", selector="owner=web")
    theirs = hook(http_receiver, admin, name="webc", team=web)
    api = api_as(team_operator)
    assert api.get("/api/v1/notification-channels/").json()["results"] == []
    assert api.get(f"/api/v1/notification-channels/{theirs.pk}/").status_code == 404
    assert api.patch(f"/api/v1/notification-channels/{theirs.pk}/", {"enabled": False},
                     format="json").status_code == 404
    created = api.post("/api/v1/notification-channels/", {"name": "sneak", "kind": "webhook", "team": "web",
                                                          "url": http_receiver.url()}, format="json")
    assert created.status_code == 400 and "team" in created.json()["errors"]
    theirs.refresh_from_db()
    assert theirs.enabled and Channel.objects.count() == 1


def test_viewer_cannot_add_channels(client, http_receiver, viewer):
    client.force_login(viewer)
    assert client.get("/notifications/channels/new/").status_code == 403
    assert client.post("/notifications/channels/new/", {"name": "x", "kind": "webhook",
                                                        "url": http_receiver.url()}).status_code == 403
    assert not Channel.objects.exists()


def test_api_creates_channels_and_rules_through_the_services(http_receiver, admin, api_as):
    api = api_as(admin)
    created = api.post("/api/v1/notification-channels/", {"name": "ops", "kind": "webhook", "url": http_receiver.url(),
                                                          "secret": SECRET}, format="json")
    assert created.status_code == 201, created.json()
    channel = created.json()["id"]
    rule = api.post("/api/v1/alert-rules/", {"name": "prod down", "channel": channel, "events": ["cluster.status"],
                                             "environments": ["prod"], "hold_down": 30}, format="json")
    assert rule.status_code == 201, rule.json()
    bad = api.post("/api/v1/alert-rules/", {"name": "x", "channel": channel, "events": ["cluster.exploded"]},
                   format="json")
    assert bad.status_code == 400 and "Unknown events" in bad.json()["errors"]["events"][0]
    assert AuditEvent.objects.filter(action__in=["channel.create", "alert_rule.create"]).count() == 2
    tested = api.post(f"/api/v1/notification-channels/{channel}/test/")
    assert tested.status_code == 200 and tested.json()["state"] == "sent"
    assert api.get("/api/v1/notification-deliveries/").json()["count"] == 1


def test_group_score_and_failing_enforcement_conditions(http_receiver, admin):
    from governance import evaluation
    from governance.choices import EnforcementState, Mode
    from governance.models import Enforcement, PolicyAssignment, PolicyResult
    from inventory.models import ClusterGroup, Workload

    rule_for(hook(http_receiver, admin), admin, "group.score_low", "enforcement.failed",
             score_below=75)
    group = ClusterGroup.objects.create(name="prod", selector="environment=prod")
    clusters = [make_cluster(f"p{i}", environment="prod") for i in range(4)]
    assignment = PolicyAssignment.objects.create(group=group, rule_key="no-privileged-containers", mode=Mode.ENFORCE)
    for i, cluster in enumerate(clusters):  # two of the four run a privileged container: the group scores 50
        make_workload(cluster, "web")
        Workload.objects.filter(cluster=cluster).update(pod_template={"containers": [
            {"name": "main", "image": "r.example.com/web:1", "privileged": i < 2}]})
    evaluation.evaluate_clusters(clusters)
    assert PolicyResult.objects.filter(violations=1).count() == 2
    failing = Enforcement.objects.create(assignment=assignment, cluster=clusters[0], state=EnforcementState.FAILED,
                                         message="403: cannot create validatingadmissionpolicies")
    assert notifications.evaluate() == 2
    titles = sorted(d.title for d in Delivery.objects.all())
    assert titles == ["enforcement of no-privileged-containers on p0: failing", "group prod compliance: below 75"]
    # Fixed: both close, one recovery each.
    Workload.objects.update(pod_template={"containers": [{"name": "main", "image": "r.example.com/web:1"}]})
    evaluation.evaluate_clusters(clusters)
    failing.state = EnforcementState.INSTALLED
    failing.save()
    assert notifications.evaluate() == 2
    assert Alert.objects.filter(closed_at__isnull=True).count() == 0
    assert Delivery.objects.filter(payload__severity="resolved").count() == 2


def test_a_disabled_channel_sends_nothing_more(http_receiver, admin):
    channel = hook(http_receiver, admin)
    rule_for(channel, admin)
    down(make_cluster("x"))
    notifications.evaluate()
    services.save_channel(user=admin, channel=channel, name=channel.name, kind=channel.kind, enabled=False)
    assert notifications.attempt(Delivery.objects.get().pk) == (DeliveryState.FAILED, None)
    assert Delivery.objects.get().answer == "not sent: the channel was disabled"
    assert http_receiver.at("/hook") == []
    down(make_cluster("y"))
    assert notifications.evaluate() == 0, "rules of a disabled channel are not evaluated"


def test_one_broken_condition_does_not_stop_the_others(http_receiver, admin, monkeypatch):
    def broken(rule, scope, now):
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")  # a failed query inside the evaluation's transaction
        return {}, set()

    monkeypatch.setitem(events.EVENTS, "group.score_low",
                        dataclasses.replace(events.EVENTS["group.score_low"], condition=broken))
    rule_for(hook(http_receiver, admin), admin, "group.score_low", "cluster.status")
    down(make_cluster("still-alerts"))
    assert notifications.evaluate() == 1
    assert Delivery.objects.get().title == "cluster still-alerts: unreachable"


def test_the_alerts_page_says_when_links_in_alerts_will_be_relative(client, admin, settings):
    client.force_login(admin)
    settings.FLEETWEB_BASE_URL = ""
    page = client.get("/notifications/").content.decode()
    assert 'id="no-base-url"' in page and "FLEETWEB_BASE_URL" in page
    settings.FLEETWEB_BASE_URL = "https://fleetweb.example.com"
    assert 'id="no-base-url"' not in client.get("/notifications/").content.decode()
