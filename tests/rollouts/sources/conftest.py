"""The real servers application sources are read from: a Git server over HTTP (git http-backend), started once per
session, with a token (a private repository) and a second one without (a public one)."""

from __future__ import annotations

import pytest

from localfleet.gitserver import GitServer

TOKEN = "s3cret-token"
WEB = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: "nginx:1.27"}]}
"""


@pytest.fixture
def team(admin_user):
    """The team whose application reads from the sources (its operators may use its credentials)."""
    from inventory.people import services as team_services

    return team_services.save_team(user=admin_user, name="payments", selector="owner=payments")


@pytest.fixture
def app(team):
    """The team's application: one Deployment pasted as revision 1."""
    from rollouts import services

    return services.create_application(name="pay", namespace="pay", manifests_text=WEB % 1, user=None,
                                       owner_team=team)


@pytest.fixture(scope="session")
def git_server(tmp_path_factory):
    server = GitServer(tmp_path_factory.mktemp("git"), token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def sources(settings):
    """Sources over plain http on loopback, as the test servers are."""
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = True
    settings.FLEETWEB_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    return settings


@pytest.fixture(scope="session")
def ssh_git(git_server, tmp_path_factory):
    """OpenSSH's sshd serving the Git server's repositories over SSH, every session forced through git-shell."""
    from localfleet import sshgit
    from localfleet.pytest_plugin import require

    require(sshgit.available(), "sshd (openssh-server), git-shell and ssh-keygen are needed for Git over SSH")
    server = sshgit.SshGitServer(tmp_path_factory.mktemp("ssh"), git_server.root).start()
    yield server
    server.stop()
