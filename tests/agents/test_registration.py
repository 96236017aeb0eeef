"""Registration with two keys turned, the agents' credentials and their doors, as an attacker would try them:
expired and reused bootstrap tokens, a pending agent acting before acceptance, a stolen credential without the key,
another cluster's work, oversized and deep bodies, replayed answers, floods, and people without the admin role.
Each refusal is asserted with what did not change."""

from __future__ import annotations

import datetime
import json
import threading
import time

import pytest
from django.utils import timezone

from agents import relay, services
from agents.models import Agent, BootstrapToken, Registration, RegistrationState
from foundation.errors import ServiceError
from foundation.models import AuditEvent
from inventory import port
from inventory.choices import ClusterStatus
from inventory.models import Cluster
from tests.agents.helpers import FakeAgent, accepted_agent
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db(transaction=True)  # commits happen: the poll cache is dropped on commit


def test_register_wait_accept_pickup_heartbeat_each_step_audited(admin_user):
    token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1", environment="prod")
    assert secret.startswith("fwb_") and token.digest != secret and secret not in json.dumps(
        list(AuditEvent.objects.values_list("after", flat=True)))
    agent = FakeAgent()
    answer = agent.register(secret)
    assert answer.status_code == 201, answer.content
    assert answer.json()["state"] == "pending"
    registration = Registration.objects.get(pk=agent.registration)
    assert (registration.name, registration.environment, registration.node_count) == ("edge-1", "prod", 3)
    assert agent.pickup().json() == {"state": "pending"}
    assert not Cluster.objects.filter(name="edge-1").exists()

    services.decide(registration, accept=True, user=admin_user)
    picked = agent.pickup()
    assert picked.status_code == 200 and picked.json()["state"] == "accepted"
    assert agent.credential.startswith("fwa_")
    assert agent.call("POST", "heartbeat", {"agent_version": "0.1.0", "checks": [
        {"name": "list nodes", "ok": True}]}).status_code == 200
    held = Agent.objects.get(cluster__name="edge-1")
    assert held.last_heartbeat_at is not None and held.report["checks"] == [
        {"name": "list nodes", "ok": True, "detail": ""}]
    assert held.credential_digest != agent.credential  # only a digest is kept
    assert Cluster.objects.get(name="edge-1").auth_method == "agent"
    actions = list(AuditEvent.objects.filter(action__regex=r"^(agent|cluster)\.").order_by("at", "pk")
                   .values_list("action", flat=True))
    assert actions == ["agent.token.create", "agent.register", "cluster.attach", "agent.registration.accepted",
                       "agent.credential.pickup"]


def test_a_picked_up_credential_is_not_issued_again_once_used(admin_user):
    agent, _cluster = accepted_agent(admin_user)
    again = agent.pickup()
    assert again.status_code == 409
    assert "renew" in again.json()["error"]


def test_an_expired_bootstrap_token_registers_nothing(admin_user):
    token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    BootstrapToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    answer = FakeAgent().register(secret)
    assert answer.status_code == 401 and "expired" in answer.json()["error"]
    assert not Registration.objects.exists()


def test_a_reused_bootstrap_token_is_refused_and_recorded(admin_user):
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    assert FakeAgent().register(secret).status_code == 201
    second = FakeAgent().register(secret, kube_system_uid="another-cluster")
    assert second.status_code == 401 and "used already" in second.json()["error"]
    assert Registration.objects.count() == 1
    assert AuditEvent.objects.filter(action="agent.token.reused").count() == 1


def test_a_registration_not_signed_by_the_key_it_presents_is_refused_and_spends_nothing(admin_user):
    token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    agent, impostor = FakeAgent(), FakeAgent()
    body = json.dumps({"bootstrap_token": secret, "public_key": agent.public,
                       "identity": {"ca_fingerprint": "x", "kube_system_uid": "y"}}).encode()
    answer = agent.client.post("/agent/v1/register", body, content_type="application/json",
                               headers=impostor.headers("POST", "/agent/v1/register", body))
    assert answer.status_code == 401 and "signature" in answer.json()["error"]
    token.refresh_from_db()
    assert token.used_at is None and not Registration.objects.exists()


def test_a_pending_agent_cannot_act_before_acceptance(admin_user):
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    agent = FakeAgent()
    agent.register(secret)
    assert agent.pickup().json() == {"state": "pending"} and not agent.credential
    for path, method in (("heartbeat", "POST"), ("work", "GET"), ("answers", "POST"), ("credential", "POST")):
        answer = agent.call(method, path, {} if method == "POST" else None)
        assert answer.status_code == 401, (path, answer.content)
    agent.credential = "fwa_" + "x" * 43  # a guess
    assert agent.call("POST", "heartbeat", {}).status_code == 401
    assert not Agent.objects.exists() and not Cluster.objects.exists()


def test_a_rejected_registration_gets_no_credential(admin_user):
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    agent = FakeAgent()
    agent.register(secret)
    services.decide(Registration.objects.get(pk=agent.registration), accept=False, user=admin_user)
    answer = agent.pickup()
    assert answer.status_code == 403 and "rejected" in answer.json()["error"]
    assert not agent.credential and not Cluster.objects.filter(name="edge-1").exists()
    with pytest.raises(services.AgentError) as refused:
        services.decide(Registration.objects.get(pk=agent.registration), accept=True, user=admin_user)
    assert refused.value.status == 409


def test_a_stolen_credential_without_the_key_is_useless(admin_user):
    agent, cluster = accepted_agent(admin_user)
    before = Agent.objects.get(cluster=cluster).last_heartbeat_at
    thief = FakeAgent()
    thief.credential = agent.credential
    answer = thief.call("POST", "heartbeat", {"agent_version": "9.9.9"})
    assert answer.status_code == 401 and "signature" in answer.json()["error"]
    held = Agent.objects.get(cluster=cluster)
    assert held.last_heartbeat_at == before and held.version == "0.1.0"


def test_a_request_signed_long_ago_is_refused(admin_user):
    agent, cluster = accepted_agent(admin_user)
    answer = agent.call("POST", "heartbeat", {"agent_version": "0.2.0"}, date=int(time.time()) - 3600)
    assert answer.status_code == 401 and "clock" in answer.json()["error"]
    assert Agent.objects.get(cluster=cluster).version == "0.1.0"


def test_a_tampered_body_breaks_the_signature(admin_user):
    agent, cluster = accepted_agent(admin_user)
    signed = json.dumps({"agent_version": "0.1.0"}).encode()
    headers = agent.headers("POST", "/agent/v1/heartbeat", signed)
    answer = agent.client.post("/agent/v1/heartbeat", json.dumps({"agent_version": "6.6.6"}),
                               content_type="application/json", headers=headers)
    assert answer.status_code == 401
    assert Agent.objects.get(cluster=cluster).version == "0.1.0"


def test_revoking_cuts_the_agent_off_at_its_next_request(admin_user):
    agent, cluster = accepted_agent(admin_user)
    assert agent.call("GET", "work?wait=0").status_code == 200  # its identity is cached for polls now
    services.revoke(cluster, user=admin_user)
    for method, path in (("POST", "heartbeat"), ("GET", "work"), ("POST", "credential")):
        answer = agent.call(method, path, {} if method == "POST" else None)
        assert answer.status_code == 401 and "revoked" in answer.json()["error"], path
    assert AuditEvent.objects.filter(action="agent.revoke").count() == 1
    with pytest.raises(port.KubeError) as failed:
        port.connect(cluster).version()
    assert failed.value.kind == "unauthorized"


def test_detaching_the_cluster_cuts_its_agent_off(admin_user):
    from inventory.services import detach_cluster

    agent, cluster = accepted_agent(admin_user)
    assert agent.call("GET", "work?wait=0").status_code == 200  # its identity is cached for polls now
    detach_cluster(cluster, user=admin_user)
    answer = agent.call("POST", "heartbeat", {})
    assert answer.status_code == 401 and not Agent.objects.exists()
    assert agent.call("GET", "work?wait=0").status_code == 401


def test_renewal_replaces_the_credential_and_ends_the_old_one_at_first_use(admin_user):
    agent, cluster = accepted_agent(admin_user)
    old = agent.credential
    assert agent.call("GET", "work?wait=0").status_code == 200  # its identity is cached for polls now
    renewed = agent.call("POST", "credential", {})
    assert renewed.status_code == 200
    new = renewed.json()["credential"]
    assert new != old
    assert agent.call("POST", "heartbeat", {}).status_code == 200  # the old one, until the new one is used
    assert agent.call("GET", "work?wait=0").status_code == 200
    agent.credential = new
    assert agent.call("GET", "work?wait=0").status_code == 200
    agent.credential = old
    assert agent.call("POST", "heartbeat", {}).status_code == 401
    assert agent.call("GET", "work?wait=0").status_code == 401, "the old one's cached identity was dropped"


def test_an_expired_credential_is_refused(admin_user):
    agent, cluster = accepted_agent(admin_user)
    Agent.objects.filter(cluster=cluster).update(credential_expires_at=timezone.now())
    answer = agent.call("POST", "heartbeat", {})
    assert answer.status_code == 401 and "expired" in answer.json()["error"]


def test_oversized_and_deeply_nested_bodies_are_refused(admin_user):
    agent, cluster = accepted_agent(admin_user)
    big = agent.call("POST", "heartbeat", {"last_error": "x" * 70_000})
    assert big.status_code == 413
    deep: dict = {}
    node = deep
    for _ in range(40):
        node["a"] = {}
        node = node["a"]
    nested = agent.call("POST", "heartbeat", {"checks": [deep]})
    assert nested.status_code == 400 and "deeper" in nested.json()["error"]
    bad = agent.call("POST", "heartbeat", {"checks": [{"name": 7, "ok": True}]})
    assert bad.status_code == 400 and "'name'" in bad.json()["error"]
    assert Agent.objects.get(cluster=cluster).report.get("last_error", "") == ""


def _one_item(cluster_id: int, timeout: float = 10) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        items = relay.take(cluster_id, wait=1)
        if items:
            return items[0]
    raise AssertionError("no work item arrived")


def test_the_relay_carries_a_call_and_its_answer(admin_user, settings):
    agent, cluster = accepted_agent(admin_user)
    results: dict = {}
    member = port.connect(Cluster.objects.get(pk=cluster.pk))
    thread = threading.Thread(target=lambda: results.update(answer=member.version()))
    thread.start()
    item = _one_item(cluster.pk)
    assert (item["op"], item["method"], item["path"]) == ("http", "GET", "/version")
    answer = agent.call("POST", "answers", {"results": [{"id": item["id"], "status": 200,
                                                         "body": '{"gitVersion": "v1.36.3"}'}]})
    assert answer.json() == {"delivered": 1, "ignored": 0}
    thread.join(10)
    assert results["answer"] == {"gitVersion": "v1.36.3"}
    replay = agent.call("POST", "answers", {"results": [{"id": item["id"], "status": 200, "body": "{}"}]})
    assert replay.json() == {"delivered": 0, "ignored": 1}  # a replayed answer counts for nothing


def test_an_error_status_is_classified_from_its_kubernetes_status_only(admin_user):
    agent, cluster = accepted_agent(admin_user)
    errors: dict = {}
    member = port.connect(Cluster.objects.get(pk=cluster.pk))

    def call():
        try:
            member.apply("/apis/apps/v1/namespaces/web/deployments/web", {"kind": "Deployment"})
        except port.KubeError as exc:
            errors["error"] = exc
    thread = threading.Thread(target=call)
    thread.start()
    item = _one_item(cluster.pk)
    status = {"kind": "Status", "apiVersion": "v1", "message": "admission webhook denied: no privileged"}
    agent.call("POST", "answers", {"results": [{"id": item["id"], "status": 403, "body": json.dumps(status)}]})
    thread.join(10)
    assert errors["error"].kind == "forbidden" and "no privileged" in errors["error"].message
    assert item["query"] == [["fieldManager", "fleetweb"], ["force", "true"]]


def test_an_agent_cannot_take_or_answer_another_clusters_work(admin_user):
    agent_a, cluster_a = accepted_agent(admin_user, name="edge-a")
    agent_b, cluster_b = accepted_agent(admin_user, name="edge-b")
    results: dict = {}
    member_b = port.connect(Cluster.objects.get(pk=cluster_b.pk))
    thread = threading.Thread(target=lambda: results.update(answer=member_b.version()))
    thread.start()
    taken_by_a = agent_a.call("GET", "work?wait=0").json()["items"]
    assert taken_by_a == []
    item = _one_item(cluster_b.pk)
    forged = agent_a.call("POST", "answers", {"results": [{"id": item["id"], "status": 200,
                                                           "body": '{"gitVersion": "forged"}'}]})
    assert forged.status_code == 403
    agent_b.call("POST", "answers", {"results": [{"id": item["id"], "status": 200, "body": '{"gitVersion": "b"}'}]})
    thread.join(10)
    assert results["answer"] == {"gitVersion": "b"}


def test_a_call_nobody_answers_ends_at_its_deadline(admin_user, settings):
    _agent, cluster = accepted_agent(admin_user)
    settings.FLEETWEB_KUBE_CALL_DEADLINE = 1
    started = time.monotonic()
    with pytest.raises(port.KubeError) as failed:
        port.connect(Cluster.objects.get(pk=cluster.pk)).version()
    assert failed.value.kind == "timeout" and "did not answer" in failed.value.message
    assert time.monotonic() - started < 5
    assert relay.take(cluster.pk, wait=0) == []  # the expired item is not handed out later


def test_a_silent_agent_makes_its_cluster_unreachable_saying_since_when(admin_user, settings):
    _agent, cluster = accepted_agent(admin_user)
    Cluster.objects.filter(pk=cluster.pk).update(status=ClusterStatus.CONNECTED)
    long_ago = timezone.now() - datetime.timedelta(seconds=3 * settings.FLEETWEB_AGENT_HEARTBEAT)
    Agent.objects.filter(cluster=cluster).update(last_heartbeat_at=long_ago)
    assert services.silent_agents() == 1
    cluster.refresh_from_db()
    assert cluster.status == ClusterStatus.UNREACHABLE
    assert cluster.status_reason.startswith("agent not connected since ")
    with pytest.raises(port.KubeError) as failed:
        port.connect(cluster).version()
    assert "agent not connected since" in failed.value.message  # no wait for a deadline
    assert services.silent_agents() == 0  # once


def test_a_flood_from_one_agent_is_limited_and_the_others_go_on(admin_user, settings):
    flooder, _a = accepted_agent(admin_user, name="edge-a")
    calm, _b = accepted_agent(admin_user, name="edge-b")
    settings.FLEETWEB_AGENT_RATE = 5
    member = port.connect(Cluster.objects.get(pk=_a.pk))
    ids = [member.submit(port.RelayedMember._http_op("GET", f"/api/v1/namespaces/n{i}", query=None, body=None,
                                                     content_type="application/json"),
                         what="read", until=time.monotonic() + 60) for i in range(40)]
    answers = [flooder.call("GET", "work?wait=0&boot=one") for _ in range(15)]
    statuses = [answer.status_code for answer in answers]
    assert 429 in statuses
    assert calm.call("GET", "work?wait=0").status_code == 200
    taken = [item["id"] for answer in answers if answer.status_code == 200 for item in answer.json()["items"]]
    time.sleep(1.1)  # the next second: polls are welcome again, and what a refused poll held is still there
    while len(taken) < len(ids):
        items = flooder.call("GET", "work?wait=0&boot=one").json()["items"]
        assert items, "work a refused poll took was put back"
        taken += [item["id"] for item in items]
    assert sorted(taken) == sorted(ids)


@pytest.mark.parametrize("role", ["operator", "approver", "viewer"])
def test_people_below_admin_cannot_register_or_decide(role, admin_user, api_as, request):
    user = request.getfixturevalue(role)
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    agent = FakeAgent()
    agent.register(secret)
    created = api_as(user).post("/api/v1/registrations/", {"name": "edge-2"}, format="json")
    assert created.status_code == 403
    accepted = api_as(user).post(f"/api/v1/registrations/{agent.registration}/accept/")
    assert accepted.status_code == 403
    assert BootstrapToken.objects.count() == 1
    assert Registration.objects.get().state == RegistrationState.PENDING
    assert not Cluster.objects.exists()


def test_operator_cannot_revoke_an_agent(admin_user, operator):
    _agent, cluster = accepted_agent(admin_user)
    with pytest.raises(ServiceError) as refused:
        services.revoke(cluster, user=operator)
    assert refused.value.status == 403
    assert Agent.objects.get(cluster=cluster).revoked_at is None


def test_a_name_already_taken_gets_no_token(admin_user):
    make_cluster("edge-1")
    with pytest.raises(services.AgentError) as refused:
        services.create_bootstrap_token(user=admin_user, name="edge-1")
    assert refused.value.status == 409 and not BootstrapToken.objects.exists()


def test_the_heartbeat_answer_names_the_kinds_to_watch(admin_user):
    from inventory import kinds

    agent, _cluster = accepted_agent(admin_user)
    answer = agent.call("POST", "heartbeat", {}).json()
    assert answer["watch"] == [kind.path for kind in kinds.KINDS]


def test_a_restarted_agent_gets_the_work_its_last_process_held(admin_user):
    agent, cluster = accepted_agent(admin_user)
    results: dict = {}
    member = port.connect(Cluster.objects.get(pk=cluster.pk))
    thread = threading.Thread(target=lambda: results.update(answer=member.version()))
    thread.start()
    end = time.monotonic() + 10
    taken: list = []
    while not taken and time.monotonic() < end:
        taken = agent.call("GET", "work?wait=0&boot=first").json()["items"]
    assert len(taken) == 1
    assert agent.call("GET", "work?wait=0&boot=first").json()["items"] == []  # the same process: not again
    again = agent.call("GET", "work?wait=0&boot=second").json()["items"]  # it restarted before answering
    assert [item["id"] for item in again] == [taken[0]["id"]]
    body = {"results": [{"id": taken[0]["id"], "status": 200, "body": '{"gitVersion": "v1.36.3"}'}]}
    assert agent.call("POST", "answers", body).json() == {"delivered": 1, "ignored": 0}
    assert agent.call("POST", "answers", body).json() == {"delivered": 0, "ignored": 1}
    thread.join(10)
    assert results["answer"] == {"gitVersion": "v1.36.3"}
    assert agent.call("GET", "work?wait=0&boot=third").json()["items"] == []  # answered: nothing comes back


def test_a_flood_of_registrations_from_one_address_is_limited(admin_user, settings):
    settings.FLEETWEB_AGENT_RATE = 5
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    statuses = [FakeAgent().register("fwb_wrong").status_code for _ in range(15)]
    assert 429 in statuses and set(statuses) <= {401, 429}
    assert not Registration.objects.exists()


def test_a_poll_with_a_stolen_credential_takes_nothing_and_moves_nothing(admin_user):
    from fleetagent.hub import new_key

    agent, cluster = accepted_agent(admin_user)
    assert agent.call("GET", "work?wait=0&boot=real").json()["items"] == []  # identity and key cached now
    member = port.connect(Cluster.objects.get(pk=cluster.pk))
    item = member.submit(port.RelayedMember._http_op("GET", "/api/v1/namespaces/a", query=None, body=None,
                                                     content_type="application/json"),
                         what="read", until=time.monotonic() + 60)
    thief_key = new_key()
    for _ in range(3):
        stolen = agent.call("GET", "work?wait=0&boot=thief", key=thief_key)
        assert stolen.status_code == 401
    taken = agent.call("GET", "work?wait=0&boot=real").json()["items"]
    assert [i["id"] for i in taken] == [item], "the real agent gets its work; its boot id was not replaced"
    assert relay.client().get(relay._boot(cluster.pk)) == b"real"
