"""The pages of registered clusters: Register a cluster (token and manifest shown once), Registrations (Accept,
Reject, revoke a token), the agent panel on the cluster page, Revoke agent; admins only."""

from __future__ import annotations

import datetime

import pytest
import yaml
from django.utils import timezone

from agents import services
from agents.models import Agent, BootstrapToken, Registration, RegistrationState
from inventory.models import Cluster
from tests.agents.helpers import FakeAgent, accepted_agent

pytestmark = pytest.mark.django_db


def test_register_page_shows_the_apply_line_and_manifest_once(client, admin_user):
    client.force_login(admin_user)
    form = client.get("/clusters/register/")
    assert form.status_code == 200
    once = form.context["form"].initial["once"]
    answer = client.post("/clusters/register/", {"name": "edge-1", "environment": "prod", "minutes": 60,
                                                 "once": once})
    assert answer.status_code == 200
    text = answer.content.decode()
    assert "kubectl apply -f &#x27;http://testserver/agent/v1/manifest.yaml?token=fwb_" in text
    shown = answer.context["shown"]
    docs = [d for d in yaml.safe_load_all(shown["manifest"]) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Deployment") == 1 and "Secret" in kinds and "ServiceAccount" in kinds
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["args"][:2] == ["--hub", "http://testserver"]
    again = client.post("/clusters/register/", {"name": "edge-1", "environment": "prod", "minutes": 60,
                                                "once": once})
    assert again.status_code == 400 and "shown once" in again.content.decode()
    assert "fwb_" not in again.content.decode()
    assert BootstrapToken.objects.count() == 1


def test_the_manifest_url_serves_a_usable_token_and_refuses_a_spent_one(client, admin_user):
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    served = client.get(f"/agent/v1/manifest.yaml?token={secret}")
    assert served.status_code == 200 and secret in served.content.decode()
    FakeAgent().register(secret)
    spent = client.get(f"/agent/v1/manifest.yaml?token={secret}")
    assert spent.status_code == 401 and secret not in spent.content.decode()
    assert client.get("/agent/v1/manifest.yaml?token=fwb_guess").status_code == 401


def test_registrations_page_accepts_and_rejects(client, admin_user):
    client.force_login(admin_user)
    agents = {}
    for name in ("edge-1", "edge-2"):
        _token, secret = services.create_bootstrap_token(user=admin_user, name=name)
        agents[name] = FakeAgent()
        agents[name].register(secret, kube_system_uid=f"uid-{name}")
    page = client.get("/clusters/registrations/").content.decode()
    assert "uid-edge-1" in page and 'id="accept-edge-2"' in page
    one, two = (Registration.objects.get(name=n) for n in ("edge-1", "edge-2"))
    client.post(f"/clusters/registrations/{one.pk}/decide", {"decision": "accept"})
    client.post(f"/clusters/registrations/{two.pk}/decide", {"decision": "reject"})
    assert Cluster.objects.filter(name="edge-1", auth_method="agent").exists()
    assert not Cluster.objects.filter(name="edge-2").exists()
    assert Registration.objects.get(pk=two.pk).state == RegistrationState.REJECTED
    page = client.get("/clusters/registrations/").content.decode()
    assert 'id="no-pending"' in page


def test_operator_cannot_open_or_use_the_registration_pages(client, admin_user, operator):
    _token, secret = services.create_bootstrap_token(user=admin_user, name="edge-1")
    agent = FakeAgent()
    agent.register(secret)
    client.force_login(operator)
    assert client.get("/clusters/register/").status_code == 403
    assert client.post("/clusters/register/", {"name": "x", "environment": "dev", "minutes": 5,
                                               "once": "a"}).status_code == 403
    assert client.get("/clusters/registrations/").status_code == 403
    assert client.post(f"/clusters/registrations/{agent.registration}/decide",
                       {"decision": "accept"}).status_code == 403
    assert BootstrapToken.objects.count() == 1
    assert Registration.objects.get().state == RegistrationState.PENDING and not Cluster.objects.exists()


def test_cluster_page_shows_the_agent_and_says_since_when_it_is_silent(client, admin_user, viewer, settings):
    _agent, cluster = accepted_agent(admin_user)
    client.force_login(viewer)
    page = client.get(f"/clusters/{cluster.name}/").content.decode()
    assert 'id="via-agent"' in page and "last heartbeat" in page and 'id="revoke-agent"' not in page
    long_ago = timezone.now() - datetime.timedelta(seconds=5 * settings.FLEETWEB_AGENT_HEARTBEAT)
    Agent.objects.filter(cluster=cluster).update(last_heartbeat_at=long_ago,
                                                 report={"last_error": "cannot reach the hub: timeout"})
    page = client.get(f"/clusters/{cluster.name}/").content.decode()
    assert "agent not connected since" in page and "cannot reach the hub: timeout" in page
    Agent.objects.filter(cluster=cluster).update(version="0.0.9")
    assert 'id="agent-outdated"' in client.get(f"/clusters/{cluster.name}/").content.decode()
    listing = client.get("/clusters/").content.decode()
    assert "via agent" in listing


def test_revoke_agent_button_for_admins(client, admin_user, operator):
    agent, cluster = accepted_agent(admin_user)
    client.force_login(operator)
    assert client.post(f"/clusters/{cluster.name}/agent/revoke").status_code == 403
    assert Agent.objects.get(cluster=cluster).revoked_at is None
    client.force_login(admin_user)
    page = client.get(f"/clusters/{cluster.name}/").content.decode()
    assert 'id="revoke-agent"' in page
    client.post(f"/clusters/{cluster.name}/agent/revoke")
    assert Agent.objects.get(cluster=cluster).revoked_at is not None
    assert agent.call("POST", "heartbeat", {}).status_code == 401
