"""Reading a Git repository over HTTPS or SSH: its refs (cheap: one request, what a poll compares first), and one
commit's tree, written to a folder within the source limits (`rollouts.sources.tree`).

Git's smart HTTP protocol is spoken by Dulwich (pure Python), over a urllib3 pool that dials only the repository's
host, at the address the outbound policy checked (purpose "source": FLEETWEB_SOURCE_PRIVATE_NETWORKS), so no `git`
program runs and nothing is dialled the policy did not see: a redirect to another host is not followed. The pack is
fetched shallow (the one commit), capped at FLEETWEB_SOURCE_MAX_BYTES as it arrives, and the whole fetch ends by
FLEETWEB_SOURCE_DEADLINE seconds. Over SSH (a deploy key), `rollouts.sources.ssh` speaks SSH on a socket dialled
the same way, the host key pinned. Submodules are not fetched. Errors say what failed in Fleetweb's words, never what
the server answered.
"""

from __future__ import annotations

import dataclasses
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

from foundation import outbound
from rollouts.sources.tree import SourceError, Tree

if TYPE_CHECKING:
    from dulwich.client import SSHVendor

SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclasses.dataclass(frozen=True)
class Auth:
    """HTTPS credentials: a token (as the password, with any user name the host expects) or a user and password; or
    for SSH, a deploy key and the Git server's pinned host key."""

    username: str = ""
    password: str = ""
    ssh_key: str = ""
    host_key: str = ""


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: datetime


def schemes() -> tuple[str, ...]:
    """The URL schemes sources may use: https, and http where FLEETWEB_SOURCE_ALLOW_HTTP says so (a lab)."""
    return ("https", "http") if settings.FLEETWEB_SOURCE_ALLOW_HTTP else ("https",)


# `git@github.com:team/deploy.git`, the form Git hosts show for SSH.
SCP = re.compile(r"^(?P<user>[A-Za-z0-9._-]{1,64})@(?P<host>[A-Za-z0-9.-]{1,253}):(?P<path>[^/:][^:]*)$")
SSH_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def is_ssh(url: str) -> bool:
    text = (url or "").strip()
    return text[:6].lower() == "ssh://" or bool(SCP.match(text))


def remote(url: str) -> tuple[outbound.Target, str, str]:
    """A Git URL checked by the outbound policy: (the target, the SSH user, the repository's path). HTTPS (http in a
    lab), `ssh://[user@]host[:port]/path` or `user@host:path`; the user (default `git`) only in SSH URLs."""
    text = (url or "").strip()
    user, path = "", ""
    if m := SCP.match(text):
        user, path = m["user"], m["path"]
        text = f"ssh://{m['host']}/{path}"
    elif text[:6].lower() == "ssh://":
        parts = urlsplit(text)
        if parts.password is not None or (parts.username is not None and not SSH_USER.match(parts.username)):
            raise outbound.OutboundRefused("The Git repository URL may carry an SSH user name, nothing else.")
        user, path = parts.username or "", parts.path
        text = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment))
    target = outbound.check_and_resolve(text, schemes=(*schemes(), "ssh"), what="Git repository URL",
                                        purpose="source")
    if target.scheme == "ssh":
        return target, user or "git", path or urlsplit(target.url).path
    return target, "", urlsplit(target.url).path or "/"


def _client(url: str, auth: Auth | None):
    """(Dulwich client for the repository's host, over HTTP or SSH, the repository's path), under the outbound
    policy."""
    from dulwich.client import HttpGitClient, SSHGitClient

    from rollouts.sources import ssh

    if is_ssh(url):
        try:
            target, user, path = remote(url)
        except outbound.OutboundRefused as exc:
            raise SourceError(str(exc), kind="refused") from None
        if not (auth and auth.ssh_key):
            raise SourceError("Git over SSH needs a deploy key: choose SSH credentials for this source", kind="auth")
        vendor = ssh.Vendor(target, private_key=auth.ssh_key, pinned_host_key=auth.host_key)
        return SSHGitClient(target.host, target.port, username=user, quiet=True,
                            vendor=cast("SSHVendor", vendor)), path  # (Dulwich's vendor protocol, duck-typed)
    if auth and auth.ssh_key:
        raise SourceError("These credentials are an SSH deploy key: give the repository's ssh:// URL", kind="auth")
    try:
        checked, pool = outbound.pool_manager(url, schemes=schemes(), what="Git repository URL", purpose="source",
                                              retries=False, timeout=settings.FLEETWEB_SOURCE_DEADLINE)
    except outbound.OutboundRefused as exc:
        raise SourceError(str(exc), kind="refused") from None
    parts = urlsplit(checked)
    base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    client = HttpGitClient(base, pool_manager=pool, username=(auth.username or "git") if auth and auth.password
                           else None, password=auth.password if auth and auth.password else None,
                           timeout=settings.FLEETWEB_SOURCE_DEADLINE, quiet=True)
    return client, parts.path or "/"


def _failure(exc: Exception, url: str) -> SourceError:
    """A Dulwich or network error in Fleetweb's words."""
    import paramiko
    from dulwich.client import HTTPUnauthorized
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

    m = SCP.match(url.strip())
    host = (m["host"] if m else urlsplit(url).hostname) or "the host"
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, outbound.OutboundRefused):
        return SourceError(str(exc), kind="refused")
    if isinstance(exc, HTTPUnauthorized):
        return SourceError(f"{host} refused the credentials (or asks for some): check the repository's token",
                           kind="auth")
    if isinstance(exc, NotGitRepository):
        return SourceError(f"{host} has no Git repository at this URL (or hides it from these credentials)",
                           kind="not_found")
    if isinstance(exc, HangupException | GitProtocolError):
        if is_ssh(url):
            return SourceError(f"{host} did not answer as a Git server over SSH (or has no repository at this path "
                               "for this key)", kind="network")
        return SourceError(f"{host} did not answer as a Git server over HTTP", kind="network")
    if isinstance(exc, paramiko.SSHException | EOFError):
        return SourceError(f"{host} did not complete an SSH handshake with Fleetweb", kind="network")
    if isinstance(exc, TimeoutError):
        return SourceError(f"{host} did not answer within {settings.FLEETWEB_SOURCE_DEADLINE} s", kind="network")
    if isinstance(exc, OSError):
        return SourceError(f"{host} could not be reached ({type(exc).__name__})", kind="network")
    return SourceError(f"reading the repository at {host} failed ({type(exc).__name__})", kind="network")


def refs(url: str, auth: Auth | None = None) -> dict[str, str]:
    """The repository's branches and tags: {"refs/heads/main": sha, "refs/tags/v1": sha (peeled to its commit)}."""
    client, path = _client(url, auth)
    try:
        with outbound.deadline(time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE):
            found = client.get_refs(path)
    except Exception as exc:
        raise _failure(exc, url) from None
    out: dict[str, str] = {}
    for name, sha in found.refs.items():
        if sha is None:
            continue
        text = name.decode(errors="replace")
        if text.endswith("^{}"):  # a tag's commit
            out[text[:-3]] = sha.decode()
        elif text.startswith(("refs/heads/", "refs/tags/")):
            out.setdefault(text, sha.decode())
    head = found.symrefs.get(b"HEAD")
    if head is not None and head.decode() in out:
        out["HEAD"] = out[head.decode()]
    return out


def resolve(url: str, ref: str, auth: Auth | None = None) -> str:
    """The commit `ref` names: a branch, a tag, a full ref, or a commit's full sha (kept as it is)."""
    ref = ref.strip() or "HEAD"
    if SHA.match(ref):
        return ref
    found = refs(url, auth)
    for name in (ref, f"refs/heads/{ref}", f"refs/tags/{ref}"):
        if name in found:
            return found[name]
    raise SourceError(f"the repository has no branch or tag '{ref[:100]}'", kind="not_found")


def checkout(url: str, sha: str, into: Path, auth: Auth | None = None) -> Commit:
    """Fetch commit `sha` (shallow) and write its whole tree under `into`, within the limits; the commit's subject,
    author and date."""
    from dulwich.object_store import MemoryObjectStore

    if not SHA.match(sha):
        raise SourceError("a commit is named by its full 40-character sha")
    client, path = _client(url, auth)
    store = MemoryObjectStore()
    pack, commit_pack, abort = store.add_pack()
    received = 0
    cap = settings.FLEETWEB_SOURCE_MAX_BYTES

    def take(data: bytes) -> int:
        nonlocal received
        received += len(data)
        if received > cap:
            raise SourceError(f"the repository's pack is larger than {cap // 2**20} MiB", kind="limit")
        return pack.write(data)

    class Walker:  # nothing is here yet: the server sends the commit and what it needs
        def __next__(self):
            return None

        def next(self):
            return None

        def ack(self, _sha):
            return None

        def nak(self):
            return None

    try:
        with outbound.deadline(time.monotonic() + settings.FLEETWEB_SOURCE_DEADLINE):
            client.fetch_pack(path, lambda _refs, depth=None: [sha.encode()], Walker(), take, depth=1)
        commit_pack()
    except Exception as exc:
        abort()
        raise _failure(exc, url) from None
    from dulwich.objects import Blob, ObjectID
    from dulwich.objects import Commit as GitCommit

    found = store[ObjectID(sha.encode())] if ObjectID(sha.encode()) in store else None
    if found is None:
        raise SourceError(f"the repository has no commit {sha[:12]}", kind="not_found")
    if not isinstance(found, GitCommit):
        raise SourceError(f"{sha[:12]} is not a commit")
    tree = Tree(into)
    for entry in store.iter_tree_contents(found.tree, max_depth=64):
        if not (stat.S_ISLNK(entry.mode) or stat.S_ISREG(entry.mode)):
            continue  # a submodule (a commit of another repository) is not fetched
        name = entry.path.decode(errors="replace")
        blob = store[entry.sha]
        if not isinstance(blob, Blob):
            raise SourceError(f"{name[:120]} is not stored as a file in the repository")
        if stat.S_ISLNK(entry.mode):
            tree.add_link(name, blob.data.decode(errors="replace"))
        else:
            tree.add_file(name, blob.data)
    tree.finish()
    message = found.message.decode(errors="replace")
    return Commit(sha=sha, subject=message.strip().splitlines()[0][:200] if message.strip() else "",
                  author=found.author.decode(errors="replace")[:200],
                  date=datetime.fromtimestamp(found.author_time, tz=UTC))
