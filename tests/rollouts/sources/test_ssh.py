"""Git over SSH with a deploy key, against OpenSSH's sshd: a key Fleetweb generates (its public half added to the
server, as to a repository's deploy keys) reads a commit that becomes a revision; the server's host key is pinned, so
another server at the address is refused before the key is offered; a key the server does not know, an address the
outbound policy refuses, a passphrase-protected key and a host key that is not one are refused in Fleetweb's words;
the private key is never returned, logged or audited; and a team operator cannot read with another team's key."""

from __future__ import annotations

import logging

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from foundation.models import AuditEvent
from inventory.people import services as team_services
from rollouts import sourcing
from rollouts.errors import RolloutError
from rollouts.models import Revision, Source, SourceCredential
from rollouts.sources import ssh
from tests.builders import make_user
from tests.rollouts.sources.conftest import WEB

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sources")]


@pytest.fixture
def deploy_key(admin_user, team, ssh_git):
    credential = sourcing.create_credential(user=admin_user, name="pay-deploy", kind="ssh", generate=True,
                                            host_key=f"[127.0.0.1]:{ssh_git.port} {ssh_git.host_key}",
                                            owner_team=team)
    ssh_git.authorize(credential.public_key)
    return credential


def _private_key_text() -> str:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()


def test_a_commit_read_over_ssh_with_a_generated_deploy_key_becomes_a_revision(
        git_server, ssh_git, app, deploy_key, admin_user, caplog):
    caplog.set_level(logging.DEBUG)
    git_server.create("payments/ssh-a")
    sha = git_server.commit("payments/ssh-a", {"deploy/web.yaml": WEB % 4}, message="Four over SSH")
    url = ssh_git.url("payments/ssh-a")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=url, ref="main", path="deploy",
                                 credential=deploy_key)
    revision = sourcing.check(source)
    assert revision is not None and revision.source["commit"] == sha and "replicas: 4" in revision.manifests
    assert revision.source["url"] == url
    private = deploy_key.open()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY")
    assert deploy_key.public_key.startswith("ssh-ed25519 ") and private not in deploy_key.public_key
    body = private.splitlines()[1]
    audited = AuditEvent.objects.filter(action="source_credential.create").latest("pk")
    assert audited.after["public_key"] == deploy_key.public_key and body not in str(audited.after)
    assert body not in caplog.text


def test_another_server_at_the_address_is_refused_before_the_key_is_offered(
        git_server, ssh_git, app, admin_user, team, tmp_path):
    from localfleet.sshgit import SshGitServer

    impostor = SshGitServer(tmp_path, git_server.root).start()  # another host key, the same repositories
    try:
        credential = sourcing.create_credential(user=admin_user, name="pinned", kind="ssh", generate=True,
                                                host_key=ssh_git.host_key, owner_team=team)
        impostor.authorize(credential.public_key)
        git_server.create("payments/ssh-b")
        git_server.commit("payments/ssh-b", {"web.yaml": WEB % 2}, message="two")
        source = sourcing.set_source(app, user=admin_user, kind="git", url=impostor.url("payments/ssh-b"),
                                     credential=credential)
        assert sourcing.check(source) is None
        source.refresh_from_db()
        assert source.error_kind == "host_key" and "another host key" in source.error
        assert app.revisions.count() == 1
        assert "Accepted publickey" not in (impostor.dir / "sshd.log").read_text(), "the key was never offered"
    finally:
        impostor.stop()


def test_a_key_the_repository_does_not_know_is_refused_as_such(git_server, ssh_git, app, admin_user, team):
    credential = sourcing.create_credential(user=admin_user, name="unknown-key", kind="ssh",
                                            secret=_private_key_text(), host_key=ssh_git.host_key, owner_team=team)
    git_server.create("payments/ssh-c")
    git_server.commit("payments/ssh-c", {"web.yaml": WEB % 2}, message="two")
    source = sourcing.set_source(app, user=admin_user, kind="git", url=ssh_git.url("payments/ssh-c"),
                                 credential=credential)
    assert sourcing.check(source) is None
    source.refresh_from_db()
    assert source.error_kind == "auth" and "refused the deploy key" in source.error


def test_an_address_the_outbound_policy_refuses_is_never_dialled(ssh_git, app, deploy_key, admin_user, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    with pytest.raises(RolloutError) as refused:
        sourcing.set_source(app, user=admin_user, kind="git", url=ssh_git.url("payments/ssh-a"),
                            credential=deploy_key)
    assert "url" in refused.value.errors and "does not dial" in str(refused.value.errors["url"])
    assert not Source.objects.filter(application=app).exists()


def test_bad_keys_and_mismatched_urls_get_clear_errors_and_store_nothing(ssh_git, app, admin_user, team):
    encrypted = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.BestAvailableEncryption(b"passphrase")).decode()
    cases = [({"secret": encrypted, "host_key": ssh_git.host_key}, "secret", "passphrase"),
             ({"secret": "not a key", "host_key": ssh_git.host_key}, "secret", "not a private key"),
             ({"generate": True, "host_key": "ssh-ed25519 bm90LWEta2V5"}, "host_key", "ssh-keyscan"),
             ({"generate": True, "host_key": ""}, "host_key", "host key"),
             ({"generate": True, "secret": _private_key_text(), "host_key": ssh_git.host_key}, "secret", "not both")]
    for fields, field, words in cases:
        with pytest.raises(RolloutError) as refused:
            sourcing.create_credential(user=admin_user, name="bad", kind="ssh", owner_team=team, **fields)
        assert words in str(refused.value.errors[field]), (fields, refused.value.errors)
    assert not SourceCredential.objects.filter(name="bad").exists()
    token = sourcing.create_credential(user=admin_user, name="a-token", secret="t0ken", owner_team=team)
    key = sourcing.create_credential(user=admin_user, name="a-key", kind="ssh", generate=True,
                                     host_key=ssh_git.host_key, owner_team=team)
    for url, credential, words in [(ssh_git.url("payments/x"), token, "needs SSH credentials"),
                                   (ssh_git.url("payments/x"), None, "needs SSH credentials"),
                                   ("http://127.0.0.1:1/payments/x.git", key, "Git over SSH only")]:
        with pytest.raises(RolloutError) as refused:
            sourcing.set_source(app, user=admin_user, kind="git", url=url, credential=credential)
        assert words in str(refused.value.errors["credential"])
    assert not Source.objects.filter(application=app).exists()


def test_host_keys_are_read_from_what_people_paste():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    assert ssh.host_key(key) == key
    assert ssh.host_key(f"github.com {key}") == key
    assert ssh.host_key(f"{key} root@host") == key
    with pytest.raises(ssh.SourceError):
        ssh.host_key("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")  # type lies


def test_the_api_returns_the_public_key_and_never_the_private_one(api_as, admin_user, ssh_git, team):
    client = api_as(admin_user)
    created = client.post("/api/v1/source-credentials/", {"name": "api-key", "kind": "ssh", "generate": True,
                                                           "host_key": ssh_git.host_key, "owner_team": "payments"},
                          format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["public_key"].startswith("ssh-ed25519 ") and "secret" not in body and body["kind"] == "ssh"
    private = SourceCredential.objects.get(name="api-key").open()
    listed = client.get("/api/v1/source-credentials/").content.decode()
    assert private.splitlines()[1] not in listed and "api-key" in listed
    refused = client.post("/api/v1/source-credentials/", {"name": "api-bad", "kind": "ssh", "secret": "nope",
                                                          "host_key": ssh_git.host_key}, format="json")
    assert refused.status_code == 400 and "nope" not in refused.content.decode()


def test_operator_cannot_read_over_ssh_with_another_teams_deploy_key(admin_user, ssh_git, app, team):
    shop = team_services.save_team(user=admin_user, name="shop", selector="owner=shop")
    theirs = sourcing.create_credential(user=admin_user, name="shop-key", kind="ssh", generate=True,
                                        host_key=ssh_git.host_key, owner_team=shop)
    operator = make_user("pay-op")
    team_services.add_member(team, member=operator, role="operator", user=admin_user)
    with pytest.raises(RolloutError) as refused:
        sourcing.set_source(app, user=operator, kind="git", url=ssh_git.url("payments/x"), credential=theirs)
    assert refused.value.status == 403
    assert not Source.objects.filter(application=app).exists() and not Revision.objects.filter(
        application=app, number__gt=1).exists()
