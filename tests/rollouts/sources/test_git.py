"""A Git repository read over HTTP from a real Git server (git http-backend): refs, a ref resolved, one commit's tree
written within the limits, and every refusal in Fleetweb's words with nothing left on disk."""

from __future__ import annotations

import os

import pytest

from rollouts.sources import git, tree
from rollouts.sources.git import Auth
from rollouts.sources.tree import SourceError
from tests.rollouts.sources.conftest import TOKEN

pytestmark = pytest.mark.usefixtures("sources")
AUTH = Auth(password=TOKEN)
DEPLOY = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: '1'\n"


def test_a_branch_and_a_tag_resolve_to_their_commits(git_server):
    url = git_server.create("team/refs")
    first = git_server.commit("team/refs", {"deploy/web.yaml": DEPLOY}, message="first", tag="v1.0.0")
    second = git_server.commit("team/refs", {"deploy/web.yaml": DEPLOY + "  b: '2'\n"}, message="second")
    found = git.refs(url, AUTH)
    assert found["refs/heads/main"] == second and found["refs/tags/v1.0.0"] == first
    assert git.resolve(url, "main", AUTH) == second
    assert git.resolve(url, "v1.0.0", AUTH) == first
    assert git.resolve(url, first, AUTH) == first
    with pytest.raises(SourceError, match="no branch or tag 'nope'") as missing:
        git.resolve(url, "nope", AUTH)
    assert missing.value.kind == "not_found"


def test_a_commits_tree_is_written_with_its_subject_author_and_date(git_server, tmp_path):
    url = git_server.create("team/tree")
    sha = git_server.commit("team/tree", {"deploy/web.yaml": DEPLOY, "README.md": "hi"},
                            message="Scale web to three\n\nbody", symlinks={"deploy/also.yaml": "web.yaml"})
    commit = git.checkout(url, sha, tmp_path, AUTH)
    assert (commit.sha, commit.subject) == (sha, "Scale web to three")
    assert commit.author.startswith("Anna Example <anna@example.com>")
    assert (tmp_path / "deploy/web.yaml").read_text() == DEPLOY
    assert (tmp_path / "deploy/also.yaml").read_text() == DEPLOY, "a link inside the checkout is kept"
    older = git_server.commit("team/tree", {"deploy/web.yaml": None}, message="remove")
    assert older != sha
    again = tmp_path / "again"
    git.checkout(url, sha, again, AUTH)  # an older commit is still what it was
    assert (again / "deploy/web.yaml").read_text() == DEPLOY


def test_a_wrong_or_missing_token_is_refused_as_such(git_server):
    url = git_server.create("team/private")
    git_server.commit("team/private", {"a.yaml": DEPLOY}, message="x")
    for auth in (None, Auth(password="wrong")):
        with pytest.raises(SourceError, match="refused the credentials") as refused:
            git.refs(url, auth)
        assert refused.value.kind == "auth"
        assert "wrong" not in str(refused.value)


def test_no_repository_there_is_not_found(git_server):
    with pytest.raises(SourceError, match="no Git repository at this URL") as missing:
        git.refs(git_server.url("team/none"), AUTH)
    assert missing.value.kind == "not_found"


def test_a_repository_with_a_link_to_a_host_file_is_refused_and_nothing_stays(git_server):
    url = git_server.create("team/leak")
    sha = git_server.commit("team/leak", {"deploy/web.yaml": DEPLOY}, message="leak",
                            symlinks={"deploy/passwd.yaml": "/etc/passwd"})
    with pytest.raises(SourceError, match="deploy/passwd.yaml is a symbolic link out of the source"), \
            tree.folder() as into:
        git.checkout(url, sha, into, AUTH)
    assert not into.exists()


def test_a_huge_file_is_refused(git_server, tmp_path, settings):
    settings.FLEETWEB_SOURCE_MAX_FILE_BYTES = 2**16
    url = git_server.create("team/huge")
    sha = git_server.commit("team/huge", {"big.yaml": "x" * (2**16 + 10)}, message="big")
    with pytest.raises(SourceError, match="big.yaml is larger than 64 KiB"):
        git.checkout(url, sha, tmp_path, AUTH)


def test_a_pack_over_the_cap_is_abandoned_as_it_arrives(git_server, tmp_path, settings):
    url = git_server.create("team/pack")
    sha = git_server.commit("team/pack", {f"f{i}.bin": os.urandom(100_000) for i in range(12)},
                            message="big pack")  # random: the pack is as large as the files
    settings.FLEETWEB_SOURCE_MAX_BYTES = 2**20
    with pytest.raises(SourceError, match="pack is larger than 1 MiB") as refused:
        git.checkout(url, sha, tmp_path, AUTH)
    assert refused.value.kind == "limit"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data.git", "http://[fe80::1]/x.git",
                                 "http://100.100.100.200/x.git", "file:///etc/passwd", "ssh://git@host/x.git"])
def test_a_url_at_a_metadata_address_or_another_scheme_is_refused(url, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    with pytest.raises(SourceError) as refused:
        git.refs(url)
    assert refused.value.kind == "refused"


def test_plain_http_is_refused_unless_allowed(git_server, settings):
    settings.FLEETWEB_SOURCE_ALLOW_HTTP = False
    with pytest.raises(SourceError, match="must start with https://"):
        git.refs(git_server.url("team/refs"), AUTH)


def test_loopback_is_refused_unless_allowed(git_server, settings):
    settings.FLEETWEB_ALLOWED_NETWORKS = []
    with pytest.raises(SourceError, match="loopback address") as refused:
        git.refs(git_server.url("team/refs"), AUTH)
    assert refused.value.kind == "refused"
