"""pytest plugin: real member clusters for end-to-end tests, started once per test session.

    def test_x(localfleet_members):
        m = localfleet_members["aws-eu-west"]   # MemberHandle
        m.server, m.ca_pem, m.reader_token, m.admin_kubeconfig
        m.stop_apiserver(); m.start_apiserver(); m.revoke_token(); m.restore_token()

Outside CI, a machine without Go (and without cached binaries) skips these tests with the
reason; in CI (CI=true) that is an error, never a skip. `LOCALFLEET_TEST_CLUSTERS` sets how
many members start (default 3: two Kubernetes minor versions, three environments for rollouts).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localfleet import binaries, seed
from localfleet.fleet import Fleet
from localfleet.member import Member


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require(condition: bool, reason: str) -> None:
    """Skip locally when a prerequisite is missing; fail in CI."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a prerequisite is missing: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclasses.dataclass
class MemberHandle:
    """What tests need of a member: where it is, how to log in, and how to break it."""

    member: Member

    @property
    def name(self) -> str:
        return self.member.name

    @property
    def server(self) -> str:
        return self.member.server

    @property
    def ca_pem(self) -> str:
        return self.member.ca_pem

    @property
    def reader_token(self) -> str:
        return self.member.file("reader.token").read_text()

    @property
    def admin_kubeconfig(self) -> dict:
        return self.member.kubeconfig("admin")

    @property
    def version(self) -> str:
        return self.member.apiserver_version

    def token_credentials(self) -> dict:
        return {"method": "token", "server": self.server, "ca_data": self.ca_pem, "token": self.reader_token}

    def admin_api(self):
        return seed.api_client(self.admin_kubeconfig)

    def stop_apiserver(self) -> None:
        self.member.stop_apiserver()

    def start_apiserver(self) -> None:
        """Start the apiserver again, and restart the controllers too: after an outage of half a minute the
        controller-manager's client backoff took 47 s to act again (measured: a token secret filled 47.5 s after
        a 25 s outage), which made the next test depend on how long the previous one kept its member down."""
        self.member.start_apiserver()
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self.member.stop_component(component)
        self.member.start()

    def revoke_token(self) -> None:
        with self.admin_api() as api:
            seed.revoke_reader_token(api)

    def expired_continue_token(self) -> str:
        """A well-formed continue token at a compacted etcd revision: the apiserver answers it with 410 Gone,
        exactly as it does when a paged list takes longer than etcd keeps history."""
        import base64
        import json
        import urllib.error
        import urllib.request

        etcd = f"http://127.0.0.1:{self.member.ports['etcd']}"

        def post(path: str, body: dict) -> dict:
            req = urllib.request.Request(etcd + path, data=json.dumps(body).encode(), method="POST")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())

        revision = int(post("/v3/kv/range", {"key": base64.b64encode(b"/registry/").decode()})["header"]["revision"])
        try:
            post("/v3/kv/compaction", {"revision": revision, "physical": True})
        except urllib.error.HTTPError as exc:
            if b"compacted" not in exc.read():  # already compacted at this revision: just as good
                raise
        # `start` is the last key read, relative to the resource prefix, as the apiserver encodes it.
        token = {"v": "meta.k8s.io/v1", "rv": max(revision - 50, 2), "start": "default/a"}
        return base64.urlsafe_b64encode(json.dumps(token, separators=(",", ":")).encode()).decode().rstrip("=")

    def restore_token(self) -> str:
        with self.admin_api() as api:
            token = seed.restore_reader_token(api)
        self.member.file("reader.token").write_text(token)
        return token


@pytest.fixture(scope="session")
def localfleet_members() -> Iterator[dict[str, MemberHandle]]:
    """Start the members once for the session (in a private state folder) and stop them at the end."""
    require(binaries.buildable(), "Go is not installed and no cached localfleet binaries exist")
    count = int(os.environ.get("LOCALFLEET_TEST_CLUSTERS", "3"))
    state = Path(tempfile.mkdtemp(prefix="localfleet-test-"))
    fleet = Fleet(state)
    try:
        members = fleet.up(count, nodes=4)
    except Exception:
        fleet.down()
        raise
    try:
        yield {m.name: MemberHandle(m) for m in members}
    finally:
        fleet.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="session")
def firewalled_member() -> Iterator[MemberHandle]:
    """One member whose API server listens on 127.0.0.2 only: a cluster "behind a firewall" when the hub's outbound
    policy allows 127.0.0.1 and not that address; its agent (a real process) reaches it. Started on first use."""
    require(binaries.buildable(), "Go is not installed and no cached localfleet binaries exist")
    state = Path(tempfile.mkdtemp(prefix="localfleet-firewalled-"))
    fleet = Fleet(state)
    try:
        (member,) = fleet.up(1, nodes=3, first=3, address="127.0.0.2")
    except Exception:
        fleet.down()
        raise
    try:
        yield MemberHandle(member)
    finally:
        fleet.down()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def member(localfleet_members) -> Iterator[MemberHandle]:
    """The first member (kube-apiserver v1.36), restored to a working state after the test."""
    handle = next(iter(localfleet_members.values()))
    yield handle
    if not handle.member.is_running("kube-apiserver"):
        handle.start_apiserver()


@pytest.fixture(scope="session")
def identity_provider() -> Iterator:
    """A real OpenID Connect provider (Ory Hydra and its login app, localfleet/idp.py) for the session."""
    from localfleet.idp import IdentityProvider

    require(binaries.buildable(), "Go is not installed and no cached hydra binary exists")
    state = Path(tempfile.mkdtemp(prefix="fleetweb-idp-"))
    idp = IdentityProvider(state).start()
    try:
        yield idp
    finally:
        idp.stop()
        shutil.rmtree(state, ignore_errors=True)
