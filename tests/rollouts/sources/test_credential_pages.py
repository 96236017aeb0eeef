"""The Source credentials page: a team operator generates a deploy key for their team and sees its public half to
add to the repository (never the private one), stores a token, deletes what no source uses; they cannot store
credentials for another team or delete another team's, and viewers do not reach the page."""

from __future__ import annotations

import pytest
from django.test import Client

from foundation.models import AuditEvent
from inventory.people import services as team_services
from rollouts import services, sourcing
from rollouts.models import SourceCredential
from tests.builders import make_user

pytestmark = pytest.mark.django_db

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
URL = "/source-credentials/"


@pytest.fixture
def teams(admin_user):
    pay = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    operator = make_user("pay-op")
    team_services.add_member(pay, member=operator, role="operator", user=admin_user)
    client = Client()
    client.force_login(operator)
    return {"pay": pay, "shop": shop, "operator": operator, "client": client}


def test_a_team_operator_generates_a_deploy_key_and_sees_only_its_public_half(teams):
    client = teams["client"]
    page = client.get(URL)
    assert page.status_code == 200 and b"credential-form" in page.content
    answer = client.post(URL, {"name": "pay-deploy", "owner_team": teams["pay"].pk, "kind": "ssh",
                               "host_key": f"github.com {HOST_KEY}"})
    assert answer.status_code == 200, answer.content.decode()[:2000]
    credential = SourceCredential.objects.get(name="pay-deploy")
    text = answer.content.decode()
    assert credential.public_key in text and 'id="new-public-key"' in text
    assert credential.open().splitlines()[1] not in text
    assert credential.owner_team == teams["pay"] and credential.host_key == HOST_KEY
    assert AuditEvent.objects.filter(action="source_credential.create", actor=teams["operator"]).exists()
    token = client.post(URL, {"name": "pay-token", "owner_team": teams["pay"].pk, "kind": "token",
                              "secret": "very-secret-token-1"})
    assert token.status_code == 200 and b"very-secret-token-1" not in token.content
    assert SourceCredential.objects.get(name="pay-token").open() == "very-secret-token-1"
    assert b"very-secret-token-1" not in client.get(URL).content


def test_bad_input_gets_its_error_on_the_form_and_keeps_nothing(teams):
    answer = teams["client"].post(URL, {"name": "pay-bad", "owner_team": teams["pay"].pk, "kind": "ssh",
                                        "secret": "-----BEGIN OPENSSH PRIVATE KEY-----\nnope", "host_key": "x"})
    assert answer.status_code == 400
    text = answer.content.decode()
    assert "not a private key" in text and "ssh-keyscan" in text and "nope" not in text
    assert not SourceCredential.objects.filter(name="pay-bad").exists()


def test_operator_cannot_store_credentials_for_another_team_or_delete_theirs(teams, admin_user):
    client = teams["client"]
    answer = client.post(URL, {"name": "for-shop", "owner_team": teams["shop"].pk, "kind": "token",
                               "secret": "t"})
    assert answer.status_code == 400 and not SourceCredential.objects.filter(name="for-shop").exists()
    theirs = sourcing.create_credential(user=admin_user, name="shop-git", secret="s", owner_team=teams["shop"])
    assert client.post(f"{URL}shop-git/delete/").status_code == 404
    assert SourceCredential.objects.filter(pk=theirs.pk).exists()
    assert b"shop-git" not in client.get(URL).content


def test_credentials_in_use_are_not_deleted_and_unused_ones_are(teams, admin_user, settings):
    settings.FLEETWEB_SOURCE_ALLOW_HTTP, settings.FLEETWEB_ALLOWED_NETWORKS = True, ["127.0.0.0/8"]
    used = sourcing.create_credential(user=admin_user, name="pay-used", secret="s", owner_team=teams["pay"])
    sourcing.create_credential(user=admin_user, name="pay-unused", secret="s", owner_team=teams["pay"])
    app = services.create_application(name="pay", namespace="pay", user=None, owner_team=teams["pay"],
                                      manifests_text="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    sourcing.set_source(app, user=admin_user, kind="git", url="http://127.0.0.1:9/pay.git", credential=used)
    client = teams["client"]
    page = client.post(f"{URL}pay-used/delete/", follow=True)
    assert "in use by pay" in page.content.decode() and SourceCredential.objects.filter(name="pay-used").exists()
    client.post(f"{URL}pay-unused/delete/")
    assert not SourceCredential.objects.filter(name="pay-unused").exists()


def test_viewers_do_not_reach_the_page(viewer):
    client = Client()
    client.force_login(viewer)
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"name": "v", "kind": "token", "secret": "t"}).status_code == 403
    assert not SourceCredential.objects.exists()
