"""Sources and their credentials over the API: the same services and checks as every other door; a secret goes in
and never comes out; a name the caller cannot see is not found."""

from __future__ import annotations

import pytest

from foundation.models import AuditEvent
from inventory.people import services as team_services
from rollouts import services, sourcing
from rollouts.models import Source, SourceCredential
from tests.builders import make_user
from tests.rollouts.sources.conftest import TOKEN

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]

WEB = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\n"


@pytest.fixture
def org(admin_user):
    payments = team_services.save_team(user=admin_user, name="payments", selector="owner=payments")
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    operator = make_user("pay-operator")
    team_services.add_member(payments, member=operator, role="operator", user=admin_user)
    viewer = make_user("pay-viewer")
    team_services.add_member(payments, member=viewer, role="viewer", user=admin_user)
    app = services.create_application(name="pay", namespace="pay", manifests_text=WEB, user=None,
                                      owner_team=payments)
    return {"payments": payments, "shop": shop, "operator": operator, "viewer": viewer, "app": app}


def test_a_credential_secret_goes_in_and_never_comes_out(api_as, org):
    client = api_as(org["operator"])
    made = client.post("/api/v1/source-credentials/", {"name": "pay-git", "owner_team": "payments",
                                                       "username": "bot", "secret": "ghp_secret123"}, format="json")
    assert made.status_code == 201, made.content
    assert "secret" not in made.json() and "ghp_secret123" not in made.content.decode()
    listed = client.get("/api/v1/source-credentials/")
    assert [c["name"] for c in listed.json()["results"]] == ["pay-git"]
    assert "ghp_secret123" not in listed.content.decode()
    assert SourceCredential.objects.get().open() == "ghp_secret123"
    event = AuditEvent.objects.get(action="source_credential.create")
    assert "ghp_secret123" not in str(event.after)


def test_operator_cannot_store_a_credential_for_another_team_over_the_api(api_as, org):
    answer = api_as(org["operator"]).post("/api/v1/source-credentials/", {
        "name": "theirs", "owner_team": "shop", "secret": "x"}, format="json")
    assert answer.status_code in (400, 403)
    assert not SourceCredential.objects.exists()


def test_a_source_is_set_read_and_checked_through_the_api(api_as, org, git_server):
    client = api_as(org["operator"])
    sourcing.create_credential(user=org["operator"], name="pay-git", secret="t", owner_team=org["payments"])
    app = org["app"]
    assert client.get(f"/api/v1/applications/{app.pk}/source/").status_code == 404
    url = git_server.url("payments/api")
    answer = client.put(f"/api/v1/applications/{app.pk}/source/", {"kind": "git", "url": url, "ref": "main",
                                                                    "path": "deploy", "credential": "pay-git"},
                        format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["url"] == url and answer.json()["credential"] == "pay-git"
    assert client.get(f"/api/v1/applications/{app.pk}/source/").json()["path"] == "deploy"
    assert client.post(f"/api/v1/applications/{app.pk}/source/check/").status_code == 202
    assert AuditEvent.objects.filter(action="application.source").count() == 1


def test_operator_cannot_name_another_teams_credential(api_as, org, git_server, admin_user):
    sourcing.create_credential(user=admin_user, name="shop-git", secret="t", owner_team=org["shop"])
    answer = api_as(org["operator"]).put(f"/api/v1/applications/{org['app'].pk}/source/", {
        "kind": "git", "url": git_server.url("shop/x"), "credential": "shop-git"}, format="json")
    assert answer.status_code == 400 and "credential" in answer.json()["errors"]
    unknown = api_as(org["operator"]).put(f"/api/v1/applications/{org['app'].pk}/source/", {
        "kind": "git", "url": git_server.url("shop/x"), "credential": "no-such-name"}, format="json")
    assert answer.json()["errors"]["credential"] == [m.replace("no-such-name", "shop-git")
                                                     for m in unknown.json()["errors"]["credential"]], \
        "another team's credential reads as one that does not exist"
    assert not Source.objects.exists()


def test_viewer_cannot_set_or_check_a_source(api_as, org, git_server, admin_user):
    client = api_as(org["viewer"])
    app = org["app"]
    answer = client.put(f"/api/v1/applications/{app.pk}/source/", {"kind": "git", "url": git_server.url("p/x")},
                        format="json")
    assert answer.status_code == 403 and not Source.objects.exists()
    sourcing.set_source(app, user=admin_user, kind="git", url=git_server.url("p/x"))
    assert client.post(f"/api/v1/applications/{app.pk}/source/check/").status_code == 403


def test_a_revision_shows_what_it_pins(api_as, org, git_server, admin_user):
    url = git_server.create("payments/pins")
    sha = git_server.commit("payments/pins", {"web.yaml": WEB.replace("web", "web2")}, message="rename")
    token = sourcing.create_credential(user=admin_user, name="pay-git", secret=TOKEN, owner_team=org["payments"])
    source = sourcing.set_source(org["app"], user=admin_user, kind="git", url=url, credential=token)
    revision = sourcing.check(source)
    assert revision is not None
    listed = api_as(org["operator"]).get(f"/api/v1/applications/{org['app'].pk}/revisions/").json()["results"]
    assert listed[0]["source"]["commit"] == sha and listed[1]["source"] == {}


def test_a_webhook_is_issued_once_over_the_api(api_as, org, git_server, admin_user):
    client = api_as(org["operator"])
    app = org["app"]
    assert client.post(f"/api/v1/applications/{app.pk}/source/webhook/").status_code == 409, "no source yet"
    sourcing.set_source(app, user=admin_user, kind="git", url=git_server.url("p/hook"))
    answer = client.post(f"/api/v1/applications/{app.pk}/source/webhook/")
    assert answer.status_code == 201 and answer.json()["url"].startswith("http://testserver/hooks/sources/")
    secret = answer.json()["secret"]
    assert secret not in client.get(f"/api/v1/applications/{app.pk}/source/").content.decode()
    assert api_as(org["viewer"]).post(f"/api/v1/applications/{app.pk}/source/webhook/").status_code == 403
