"""The member port: everything Fleetweb asks of a member cluster, in one place.

Every call from the hub to a member goes through a `Member` (the collector, upgrade readiness, the connection test,
enforcement, dry runs, rollouts, drift checks and re-applies): list a kind page by page, read one object, read the
lines of a metrics document, server-side apply (or dry-run) and delete an object, install and remove Fleetweb's
admission policies, review a permission, read the version. The caps, deadlines and the outbound address policy are
the adapter's, never the caller's.

Adapters, by how a cluster is reached (`ADAPTERS`): "direct" dials the cluster's API server with its stored
credentials (`inventory.kube`); "agent" (`agents.relay`) hands each call to the agent running in the cluster, which
polls for it and sends the answer back (`RelayedMember`: the same calls, caps, error classes and parsing as the
direct adapter, only the transport differs). A test installs a fake in the same table (tests/fakemember.py).

Errors are `KubeError` (classified: kind, status, whether it is fatal or worth retrying); a LIST restarted by a 410
raises `ListRestarted` to the consumer of `pages`.
"""

from __future__ import annotations

import functools
import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from django.conf import settings
from kubernetes.client.exceptions import ApiException

from inventory import kube
from inventory.choices import AuthMethod
from inventory.kubeerrors import classify
from inventory.models import ClusterCredential

KubeError = kube.KubeError
ListRestarted = kube.ListRestarted
FIELD_MANAGER = kube.FIELD_MANAGER
deadline = kube.deadline  # calls made in this thread inside the block end by `at`, whatever the adapter
server_of = kube.server_of  # the API server URL of credentials
uses_exec = kube.uses_exec  # whether credentials run an exec plugin (an admin's permission)

ADMISSION_API = "/apis/admissionregistration.k8s.io/v1"


class Member(Protocol):
    """What Fleetweb may ask of one member cluster. A Member is opened per job and closed after it (`with`)."""

    @property
    def bytes_read(self) -> int:
        """What this connection has read so far (the sync's figure)."""
        ...

    def version(self) -> dict:
        """The API server's `/version`."""
        ...

    def pages(self, path: str, *, limit: int | None = None) -> Iterator[bytes]:
        """Raw JSON pages of a LIST at `path` (following `continue`); ListRestarted when a 410 restarted it."""
        ...

    def warm(self, paths: list[str], *, limits: dict[str, int] | None = None, version: bool = False,
             lines: list[tuple[str, bytes, int]] | None = None) -> None:
        """A hint: what the job reads next, so that an adapter whose every call waits for a round trip (the agent's)
        asks for it all at once; one that dials the API server ignores it. `paths`: the first pages of LISTs
        (`pages`, at `limits[path]` where given); `version`: `/version`; `lines`: `metric_lines(path, prefix,
        max_bytes=)` calls. Asking again for what is already asked for does nothing."""
        ...

    def take_changes(self, *, read_lists: bool) -> list[str] | None:
        """The LIST paths the cluster reported changed since this was last asked, taken (None: this adapter cannot
        tell, so everything is read). With `read_lists`, the lists it sent along are what `pages` reads for those
        paths (a sync of what changed); without, they are dropped (a full sync reads everything afresh)."""
        ...

    def read(self, path: str, *, query: list | None = None) -> dict:
        """One object (or list) at `path`; KubeError with http_status 404 when there is none."""
        ...

    def metric_lines(self, path: str, prefix: bytes, *, max_bytes: int) -> list[bytes]:
        """The lines of the text document at `path` (an API server's `/metrics`) that start with `prefix`."""
        ...

    def apply(self, path: str, body: dict, *, dry_run: bool = False, strict: bool = False, what: str = "") -> dict:
        """Server-side apply of one object (field manager FIELD_MANAGER, conflicts forced); `dry_run`: the object
        as the apply would leave it, admission included, nothing persisted; `strict`: an unknown or duplicate field
        is an error, not dropped; `what`: how errors name the call."""
        ...

    def delete(self, path: str) -> bool:
        """Delete one object; False when it was gone already."""
        ...

    def review(self, attributes: dict) -> tuple[bool, str]:
        """A SelfSubjectAccessReview of `attributes` (resourceAttributes or nonResourceAttributes): (allowed,
        reason)."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> Member:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


class DirectMember:
    """The first adapter: Fleetweb dials the member's API server itself, with the stored credentials, through the
    outbound address policy (`inventory.kube`)."""

    def __init__(self, session: kube.Session):
        self.session = session

    @property
    def bytes_read(self) -> int:
        return self.session.bytes_read

    def version(self) -> dict:
        return kube.server_version(self.session)

    def pages(self, path: str, *, limit: int | None = None) -> Iterator[bytes]:
        return kube.paged_list(self.session, path, limit=limit)

    def warm(self, paths: list[str], *, limits: dict[str, int] | None = None, version: bool = False,
             lines: list[tuple[str, bytes, int]] | None = None) -> None:
        pass  # each call is one request to the API server already

    def take_changes(self, *, read_lists: bool) -> list[str] | None:
        return None  # nothing in the cluster reports to Fleetweb: every sync reads everything

    def read(self, path: str, *, query: list | None = None) -> dict:
        return kube.get_json(self.session, path, query=query)

    def metric_lines(self, path: str, prefix: bytes, *, max_bytes: int) -> list[bytes]:
        return kube.matching_lines(self.session, path, prefix, what=f"GET {path}", max_bytes=max_bytes)

    def apply(self, path: str, body: dict, *, dry_run: bool = False, strict: bool = False, what: str = "") -> dict:
        return kube.apply(self.session, path, body, dry_run=dry_run, strict=strict, what=what)

    def delete(self, path: str) -> bool:
        return kube.delete(self.session, path)

    def review(self, attributes: dict) -> tuple[bool, str]:
        return _review(lambda *a, **k: kube.request(self.session, *a, **k), attributes)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> DirectMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RelayedMember:
    """A member reached through a relay (the agent in the cluster): each call is one operation `send(op, what=,
    until=)` hands over and whose answer it returns, `{"status", "body"}` for an HTTP call and `{"status",
    "lines"}` for the lines of a metrics document. The relay raises KubeError when the agent is not connected, does
    not answer by `until` (time.monotonic()) or reports that it could not reach its API server; everything after is
    the direct adapter's: an error status is classified from its Kubernetes Status, JSON is depth-checked, a LIST is
    paged and restarted the same way."""

    def __init__(self, send: Callable[..., dict], *, submit: Callable[..., str] | None = None,
                 result: Callable[..., dict] | None = None,
                 changes: Callable[[], dict[str, str | None]] | None = None):
        self.send, self.submit, self.result, self.changes = send, submit, result, changes
        self._bytes = 0
        self._warmed: dict[tuple, tuple[str, float]] = {}  # (method, path, query) -> (item id, until)
        self._pushed: dict[str, str] = {}  # path -> the whole LIST the agent sent from its watch

    def take_changes(self, *, read_lists: bool) -> list[str] | None:
        """What the agent reported changed: {path: the LIST it sent, or None (read it through the agent)}."""
        if self.changes is None:
            return None
        reported = self.changes()
        self._pushed = {path: text for path, text in reported.items() if text is not None} if read_lists else {}
        return sorted(reported)

    @property
    def bytes_read(self) -> int:
        return self._bytes

    def warm(self, paths: list[str], *, limits: dict[str, int] | None = None, version: bool = False,
             lines: list[tuple[str, bytes, int]] | None = None) -> None:
        """Send every call named now, so that a full sync waits for one round trip to the agent instead of one per
        call (`/version`, the LISTs, the metrics lines, the CRDs); the calls then read these answers."""
        if self.submit is None:
            return
        ops = [(f"list {path}", self._http_op("GET", path, query=[["limit", (limits or {}).get(
            path, settings.FLEETWEB_KUBE_PAGE_SIZE)]], body=None, content_type="application/json"))
            for path in paths if path not in self._pushed]  # a LIST the agent sent is read from what it sent
        if version:
            ops.append(("GET /version", self._http_op("GET", "/version", query=None, body=None,
                                                      content_type="application/json")))
        ops += [(f"GET {path}", self._lines_op(path, prefix, max_bytes)) for path, prefix, max_bytes in lines or ()]
        for what, op in ops:
            key = self._key(op)
            if key not in self._warmed:
                until = kube.call_deadline()
                self._warmed[key] = (self.submit(op, what=what, until=until), until)

    @staticmethod
    def _key(op: dict) -> tuple:
        """What identifies a call among those warmed: the same call asked for later reads the warmed answer."""
        if op.get("op") == "lines":
            return ("lines", op.get("path"), op.get("prefix"), op.get("max_bytes"))
        return (op.get("method"), op.get("path"), json.dumps(op.get("query")))

    @staticmethod
    def _lines_op(path: str, prefix: bytes, max_bytes: int) -> dict:
        return {"op": "lines", "path": path, "prefix": prefix.decode(), "max_bytes": max_bytes}

    @staticmethod
    def _http_op(method: str, path: str, *, query: list | None, body: dict | None, content_type: str) -> dict:
        return {"op": "http", "method": method, "path": path, "query": [list(q) for q in query or []],
                "body": body, "content_type": content_type, "max_bytes": settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES}

    def _answer(self, op: dict, what: str) -> dict:
        warmed = self._warmed.pop(self._key(op), None)
        if warmed is not None and self.result is not None:
            answer = self.result(warmed[0], what=what, until=warmed[1])
        else:
            answer = self.send(op, what=what, until=kube.call_deadline())
        status = answer.get("status")
        if not isinstance(status, int) or isinstance(status, bool):
            raise KubeError("protocol", f"{what}: the agent's answer has no HTTP status")
        if not 200 <= status < 300:
            body = answer.get("body")
            raise classify(ApiException(status=status, reason="", body=body[:kube.MAX_ERROR_BODY]
                                        if isinstance(body, str) else ""), what=what)
        return answer

    def request(self, method: str, path: str, *, query: list | None = None, body: dict | None = None,
                content_type: str = "application/json", what: str = "") -> bytes:
        what = what or f"{method} {path}"
        answer = self._answer(self._http_op(method, path, query=query, body=body, content_type=content_type), what)
        text = answer.get("body")
        if not isinstance(text, str):
            raise KubeError("protocol", f"{what}: the agent's answer has no body")
        data = text.encode()
        if len(data) > settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES:
            raise KubeError("protocol", f"{what}: the answer is larger than "
                                        f"{settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES // 2**20} MiB "
                                        "(FLEETWEB_KUBE_MAX_RESPONSE_BYTES)")
        self._bytes += len(data)
        return data

    def version(self) -> dict:
        return kube.server_version_via(self.request)

    def pages(self, path: str, *, limit: int | None = None) -> Iterator[bytes]:
        pushed = self._pushed.pop(path, None)
        if pushed is not None:
            return self._pushed_list(path, pushed)
        return kube.pages_of(lambda query: self.request("GET", path, query=query, what=f"list {path}"), path,
                             limit=limit)

    def _pushed_list(self, path: str, text: str) -> Iterator[bytes]:
        """A whole LIST the agent sent from its watch cache: one page under the same cap as an answer, and no
        `continue` (it is whole, or it is refused)."""
        what = f"list {path} (sent by the agent)"
        data = text.encode()
        if len(data) > settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES:
            raise KubeError("protocol", f"{what}: larger than {settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES // 2**20} "
                                        "MiB (FLEETWEB_KUBE_MAX_RESPONSE_BYTES)")
        try:
            token = kube.decode_list_meta(data)
        except ValueError as exc:
            raise KubeError("protocol", f"{what}: {exc}") from None
        if token:
            raise KubeError("protocol", f"{what}: a sent list is whole, and this one has a 'continue' token")
        self._bytes += len(data)
        yield data

    def read(self, path: str, *, query: list | None = None) -> dict:
        return kube.get_json_via(self.request, path, query=query)

    def metric_lines(self, path: str, prefix: bytes, *, max_bytes: int) -> list[bytes]:
        what = f"GET {path}"
        answer = self._answer(self._lines_op(path, prefix, max_bytes), what)
        lines = answer.get("lines")
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            raise KubeError("protocol", f"{what}: the agent's answer has no lines")
        encoded = [line.encode() for line in lines if line.startswith(prefix.decode())]
        self._bytes += sum(len(line) + 1 for line in encoded)
        return encoded

    def apply(self, path: str, body: dict, *, dry_run: bool = False, strict: bool = False, what: str = "") -> dict:
        return kube.apply_via(self.request, path, body, dry_run=dry_run, strict=strict, what=what)

    def delete(self, path: str) -> bool:
        return kube.delete_via(self.request, path)

    def review(self, attributes: dict) -> tuple[bool, str]:
        return _review(self.request, attributes)

    def close(self) -> None:
        pass

    def __enter__(self) -> RelayedMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


REVIEW_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"


def _review(request: Callable[..., bytes], attributes: dict) -> tuple[bool, str]:
    """A SelfSubjectAccessReview over any adapter's raw request."""
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": attributes}
    result = kube.loads(request("POST", REVIEW_PATH, body=body, what="SelfSubjectAccessReview"),
                        what="SelfSubjectAccessReview")
    status = result.get("status") or {}
    return bool(status.get("allowed")), status.get("reason", "") or status.get("evaluationError", "")


def credentials_of(cluster: Any) -> dict:
    """The cluster's stored credentials, decrypted: read by the direct adapter only (and the credential services)."""
    return ClusterCredential.objects.get(cluster=cluster).open()


Opener = Callable[[], Member]


def _direct(clusters: list) -> dict[int, Opener]:
    return {cluster.pk: functools.partial(connect_with, credentials_of(cluster),
                                          insecure=cluster.insecure_skip_tls_verify) for cluster in clusters}


# How a cluster is reached -> what prepares the openers of clusters reached that way ({cluster id: opener}), reading
# the database now (for all of them at once where it can), so that an opener itself may run in another thread. The
# agents app adds "agent" (`agents.relay.openers`); tests put a fake here.
ADAPTERS: dict[str, Callable[[list], dict[int, Opener]]] = {"direct": _direct}


def reached_by(cluster: Any) -> str:
    """How `cluster` is reached: "agent" for a registered cluster, else "direct"."""
    return "agent" if cluster.auth_method == AuthMethod.AGENT else "direct"


def opener(cluster: Any) -> Opener:
    """What opens the member `cluster` (an inventory Cluster) later, in any thread: the database is read now."""
    return ADAPTERS[reached_by(cluster)]([cluster])[cluster.pk]


def openers(clusters: list) -> dict[int, Opener]:
    """`opener` of each of `clusters`, by cluster id, with one read per adapter (a gathered write of many clusters)."""
    by_adapter: dict[str, list] = {}
    for cluster in clusters:
        by_adapter.setdefault(reached_by(cluster), []).append(cluster)
    return {pk: found for adapter, alike in by_adapter.items() for pk, found in ADAPTERS[adapter](alike).items()}


def connect(cluster: Any) -> Member:
    """Open the member `cluster` through its adapter."""
    return opener(cluster)()


def connect_with(credentials: dict, *, insecure: bool = False) -> Member:
    """Open a member from credentials (the direct adapter; the attach form's connection test, before anything is
    stored)."""
    return DirectMember(kube.connect(credentials, insecure=insecure))


def can_i(member: Member, *, verb: str, group: str, resource: str) -> tuple[bool, str]:
    """May Fleetweb's credentials `verb` `resource` in every namespace?"""
    return member.review({"resourceAttributes": {"verb": verb, "group": group, "resource": resource}})


def admission_policies(member: Member, selector: str, *, server: str = "this API server") -> dict[str, dict]:
    """Fleetweb's ValidatingAdmissionPolicies in the member (by name) that match the label `selector`; KubeError
    when the API server (named `server` in the error: its version, say) does not serve them."""
    try:
        resources = member.read(ADMISSION_API).get("resources", [])
    except KubeError as exc:
        if exc.http_status != 404:
            raise
        resources = []
    if not any(r.get("name") == "validatingadmissionpolicies" for r in resources):
        raise KubeError("http", f"{server} does not serve admissionregistration.k8s.io/v1 "
                                "ValidatingAdmissionPolicy (Kubernetes 1.30 or newer needed)")
    items = member.read(f"{ADMISSION_API}/validatingadmissionpolicies",
                        query=[("labelSelector", selector)]).get("items", [])
    return {p["metadata"]["name"]: p for p in items}


def install_admission_policy(member: Member, policy: dict, binding: dict) -> None:
    """Apply an admission policy and its binding (policy first: a binding without its policy admits nothing)."""
    member.apply(f"{ADMISSION_API}/validatingadmissionpolicies/{policy['metadata']['name']}", policy)
    member.apply(f"{ADMISSION_API}/validatingadmissionpolicybindings/{binding['metadata']['name']}", binding)


def remove_admission_policy(member: Member, name: str) -> None:
    """Delete an admission policy's binding, then the policy (binding first: nothing refers to a missing policy)."""
    member.delete(f"{ADMISSION_API}/validatingadmissionpolicybindings/{name}")
    member.delete(f"{ADMISSION_API}/validatingadmissionpolicies/{name}")


def prefetch(pages: Iterator[bytes], depth: int = 2, *,
             more: Callable[[bytes], bool] | None = None) -> Iterator[bytes]:
    """Read the next pages in a thread while the caller decodes this one, so a sync takes about as long as
    its reads, not reads plus decoding. At most `depth` pages wait in memory; errors reach the caller in
    order; stopping early stops the reader. `more(first page)`: whether pages follow it; given, the first page is
    read in the caller's thread and the reader starts only when more follow (a list of one page, as most are, costs
    no thread)."""
    first: list[bytes] = []
    if more is not None:
        for page in pages:  # (a break does not close the generator)
            first.append(page)
            break
        if not first:
            return
        if not more(first[0]):
            yield first[0]
            yield from pages  # (nothing, unless `more` was wrong: then read here, in order)
            return
    box: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def reader() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        box.put((page, None), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: tuple[object, BaseException | None] = (end, None)
        except BaseException as exc:  # handed to the consumer, who raises it where the read happened
            item = (None, exc)
        while not stop.is_set():
            try:
                box.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    thread = threading.Thread(target=reader, name="kube-prefetch", daemon=True)
    thread.start()
    try:
        if first:
            yield first[0]
        while True:
            page, error = box.get()
            if error is not None:
                raise error
            if page is end:
                return
            yield page
    finally:
        stop.set()
        thread.join(timeout=5)
