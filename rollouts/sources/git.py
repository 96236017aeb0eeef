"""Reading a Git repository over HTTPS: its refs (cheap: one request, what a poll compares first), and one commit's
tree, written to a folder within the source limits (`rollouts.sources.tree`).

Git's smart HTTP protocol is spoken by Dulwich (pure Python), over a urllib3 pool that dials only the repository's
host, at the address the outbound policy checked (purpose "source": FLEETWEB_SOURCE_PRIVATE_NETWORKS), so no `git`
program runs and nothing is dialled the policy did not see: a redirect to another host is not followed. The pack is
fetched shallow (the one commit), capped at FLEETWEB_SOURCE_MAX_BYTES as it arrives, and the whole fetch ends by
FLEETWEB_SOURCE_DEADLINE seconds. Submodules are not fetched. Errors say what failed in Fleetweb's words, never what
the server answered.
"""

from __future__ import annotations

import dataclasses
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

from foundation import outbound
from rollouts.sources.tree import SourceError, Tree

SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclasses.dataclass(frozen=True)
class Auth:
    """HTTPS credentials: a token (as the password, with any user name the host expects) or a user and password."""

    username: str = ""
    password: str = ""


@dataclasses.dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str
    date: datetime


def schemes() -> tuple[str, ...]:
    """The URL schemes sources may use: https, and http where FLEETWEB_SOURCE_ALLOW_HTTP says so (a lab)."""
    return ("https", "http") if settings.FLEETWEB_SOURCE_ALLOW_HTTP else ("https",)


def _client(url: str, auth: Auth | None):
    """(Dulwich HTTP client for the repository's host, the repository's path), under the outbound policy."""
    from dulwich.client import HttpGitClient

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
    from dulwich.client import HTTPUnauthorized
    from dulwich.errors import GitProtocolError, HangupException, NotGitRepository

    host = urlsplit(url).hostname or "the host"
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
        return SourceError(f"{host} did not answer as a Git server over HTTP", kind="network")
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
