"""Replacing a cluster's credentials from its page, tested first (issue 30, item 5): untested or failing
credentials are not stored unless 'Replace anyway' is ticked; a test of other credentials does not count; the
replacement is audited and on the cluster's History; nobody below the global operator role replaces anything."""

from __future__ import annotations

import pytest
from django.test import Client

from foundation.models import AuditEvent
from inventory import onboarding
from inventory.models import AttachDraft, Cluster, ClusterEvent
from tests.builders import make_cluster
from tests.inventory.test_direct_credentials import CERT

pytestmark = pytest.mark.django_db
DEAD = "https://127.0.0.1:1"  # nothing listens: the worker's test fails with "connection refused"


def _form(token: str = "new-token", **more) -> dict:
    return {"method": "token", "server": DEAD, "ca_data": CERT, "token": token, **more}


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _stored_token(cluster: Cluster) -> str:
    return Cluster.objects.get(pk=cluster.pk).credential.open()["token"]


def test_untested_or_failing_credentials_replace_nothing_unless_replace_anyway(operator):
    cluster = make_cluster("eks-prod")
    client = _client(operator)
    untested = client.post("/clusters/eks-prod/credentials/", _form())
    assert untested.status_code == 400 and "Test the connection first" in untested.content.decode()
    assert _stored_token(cluster) == "secret-token-of-eks-prod"
    assert b"new-token" not in untested.content, "a secret is never rendered back"
    draft = untested.context["draft"]

    # The page's Test connection (the attach wizard's): run by the worker, here called as the worker would.
    onboarding.request_test(draft, contexts=[], insecure=False, user=operator)
    onboarding.run_test(str(draft.pk))
    failing = client.post("/clusters/eks-prod/credentials/", {**_form(token=""), "draft": str(draft.pk)})
    assert failing.status_code == 400 and "The connection test did not pass" in failing.content.decode()
    assert _stored_token(cluster) == "secret-token-of-eks-prod"
    assert AttachDraft.objects.get(pk=draft.pk).test_state == "done", "holding the same credentials keeps the test"

    anyway = client.post("/clusters/eks-prod/credentials/", {**_form(token=""), "draft": str(draft.pk),
                                                             "replace_anyway": "on"})
    assert anyway.status_code == 302 and anyway["Location"] == "/clusters/eks-prod/"
    assert _stored_token(cluster) == "new-token"
    assert not AttachDraft.objects.filter(pk=draft.pk).exists(), "the held copy is deleted once used"
    [event] = AuditEvent.objects.filter(action="cluster.update", target_name="eks-prod")
    assert event.actor == operator and event.after["credentials"] == "replaced" and "new-token" not in str(event.after)
    assert ClusterEvent.objects.filter(cluster=cluster, summary__startswith="credentials replaced").exists()


def test_a_test_of_other_credentials_does_not_count(operator):
    make_cluster("eks-prod")
    draft = onboarding.save_draft(user=operator, method="token", source={"credentials": {
        "method": "token", "server": DEAD, "ca_data": CERT, "token": "tested"}})
    AttachDraft.objects.filter(pk=draft.pk).update(test_state="done", test_request={"contexts": []},
                                                   test_results=[{"target": DEAD, "ok": True, "checks": []}])
    assert onboarding.test_passed(AttachDraft.objects.get(pk=draft.pk), [])
    changed = onboarding.save_draft(user=operator, method="token", draft=AttachDraft.objects.get(pk=draft.pk),
                                    source={"credentials": {"method": "token", "server": DEAD, "ca_data": CERT,
                                                            "token": "other"}})
    assert not onboarding.test_passed(AttachDraft.objects.get(pk=changed.pk), [])


@pytest.mark.parametrize("role", ["team_operator", "viewer", "nobody"])
def test_operator_cannot_replace_credentials_below_the_global_role(org, role):
    cluster = Cluster.objects.get(name="pay-prod")
    user = {"team_operator": org["users"]["pay_operator"], "viewer": org["users"]["viewer"],
            "nobody": org["users"]["nobody"]}[role]
    answer = _client(user).post("/clusters/pay-prod/credentials/", _form(replace_anyway="on"))
    assert answer.status_code in (403, 404)
    assert _stored_token(cluster) == "secret-token-of-pay-prod"
    assert not AuditEvent.objects.filter(action="cluster.update", target_name="pay-prod").exists()


def test_an_agents_cluster_has_no_credentials_to_replace(operator):
    make_cluster("edge-1")
    Cluster.objects.filter(name="edge-1").update(auth_method="agent")
    answer = _client(operator).get("/clusters/edge-1/credentials/", follow=True)
    assert "reached through its agent" in answer.content.decode()
    assert 'id="replace-credentials"' not in _client(operator).get("/clusters/edge-1/").content.decode()
    make_cluster("eks-prod")
    assert 'id="replace-credentials"' in _client(operator).get("/clusters/eks-prod/").content.decode()
