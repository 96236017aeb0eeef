"""The direct adapter of the member port (`inventory.port`), the only code that dials member clusters: clients from
stored credentials (dialled only through the outbound address policy), raw paged lists, error classification.
Everything else reaches a member through the port. Kubeconfig files are read in `inventory.kubeconfigs`; what
Fleetweb may do in a cluster (RBAC manifest, connection test) is `inventory.access`.

Credentials (decrypted from ClusterCredential) are one of:
  {"method": "token", "server", "ca_data", "token", "insecure"}
  {"method": "client_cert", "server", "ca_data", "client_cert", "client_key", "insecure"}
  {"method": "kubeconfig", "kubeconfig": <flattened single-context dict>, "context"}
All three become a kubeconfig dict handed to the `kubernetes` package, which handles TLS, client
certificates and (checked, see `execplugins`) exec plugins the way kubectl does; auth providers are refused.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from foundation import outbound, untrusted
from inventory import execplugins
from inventory.decode import decode_list_meta
from inventory.kubeerrors import KubeError, classify


def server_of(credentials: dict) -> str:
    if credentials["method"] == "kubeconfig":
        return credentials["kubeconfig"]["clusters"][0]["cluster"]["server"]
    return credentials["server"]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _as_kubeconfig(credentials: dict, *, insecure: bool) -> dict:
    """Every credential method as one kubeconfig dict."""
    if credentials["method"] == "kubeconfig":
        config = json.loads(json.dumps(credentials["kubeconfig"]))
        cluster = config["clusters"][0]["cluster"]
    else:
        cluster = {"server": credentials["server"]}
        if credentials.get("ca_data"):
            cluster["certificate-authority-data"] = _b64(credentials["ca_data"])
        user: dict = {}
        if credentials["method"] == "token":
            user["token"] = credentials["token"]
        else:
            user["client-certificate-data"] = _b64(credentials["client_cert"])
            user["client-key-data"] = _b64(credentials["client_key"])
        config = {
            "clusters": [{"name": "c", "cluster": cluster}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "ctx",
        }
    if insecure:
        cluster.pop("certificate-authority-data", None)
        cluster["insecure-skip-tls-verify"] = True
    else:
        cluster.pop("insecure-skip-tls-verify", None)
    return config


# ---------------------------------------------------------------------------------------------
# Clients and calls


@dataclasses.dataclass
class Session:
    """An API client for one cluster plus the byte count of what it read."""

    api: k8s_client.ApiClient
    bytes_read: int = 0

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def uses_exec(credentials: dict) -> bool:
    return credentials.get("method") == "kubeconfig" and "exec" in credentials["kubeconfig"]["users"][0]["user"]


def _dial_targets(cluster: dict) -> list[tuple[outbound.Target, str]]:
    """The hosts this client may dial (server, and proxy when set), checked as text by the outbound policy; each
    connection resolves and checks its address again when it is made."""
    targets = [(outbound.check_url(cluster["server"], schemes=("https", "http"), what="API server URL"),
                "API server URL")]
    if cluster.get("proxy-url"):
        targets.append((outbound.check_url(cluster["proxy-url"], schemes=("http", "https"), what="proxy-url"),
                        "proxy-url"))
    return targets


def connect(credentials: dict, *, insecure: bool = False) -> Session:
    """Build an API client from credentials. It dials only the addresses the outbound policy checked, pinned
    (KubeError 'policy' otherwise); configuration problems raise KubeError('config')."""
    config_dict = _as_kubeconfig(credentials, insecure=insecure)
    cluster = config_dict["clusters"][0]["cluster"]
    try:
        targets = _dial_targets(cluster)
    except outbound.OutboundRefused as exc:
        raise KubeError(exc.kind, str(exc)) from None
    user = config_dict["users"][0]["user"]
    if "exec" in user:
        try:
            user.update(execplugins.credential(user.pop("exec") or {}, server=cluster["server"]))
        except execplugins.ExecPluginError as exc:
            raise KubeError("config", str(exc)) from None
    if "auth-provider" in user:
        # Credentials stored before auth providers were refused: the library would send the refresh token past the
        # outbound policy, so they are not used.
        raise KubeError("config", "The credentials use a kubeconfig auth provider, which Fleetweb no longer runs: "
                                  "replace them with an exec plugin or a ServiceAccount token.")
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config_from_dict(config_dict, client_configuration=configuration, persist_config=False)
    except (ConfigException, ValueError, TypeError, KeyError) as exc:
        raise KubeError("config", f"The credentials cannot be used: {exc}") from None
    configuration.retries = False  # Fleetweb retries itself, with backoff, only what is worth retrying
    api = k8s_client.ApiClient(configuration)
    outbound.pin_pool_manager(api.rest_client.pool_manager, *targets)
    return Session(api)


_budget = threading.local()


@contextlib.contextmanager
def deadline(at: float) -> Iterator[None]:
    """Calls made in this thread inside the block end by `at` (time.monotonic()): their timeouts shrink to what
    is left, and a call with nothing left fails as a timeout without dialling."""
    previous = getattr(_budget, "at", None)
    _budget.at = at
    try:
        yield
    finally:
        _budget.at = previous


def _timeout() -> tuple[float, float]:
    connect, read = settings.FLEETWEB_KUBE_CONNECT_TIMEOUT, settings.FLEETWEB_KUBE_READ_TIMEOUT
    at = getattr(_budget, "at", None)
    if at is None:
        return (connect, read)
    left = at - time.monotonic()
    if left <= 0.05:
        raise KubeError("timeout", "the connection test's time budget "
                                   f"({settings.FLEETWEB_CONNECTION_TEST_BUDGET}s) ran out")
    return (min(connect, left), min(read, left))


def call_deadline() -> float:
    """When the call starting now must be over: FLEETWEB_KUBE_CALL_DEADLINE, or the budget's end if sooner."""
    at = time.monotonic() + settings.FLEETWEB_KUBE_CALL_DEADLINE
    budget = getattr(_budget, "at", None)
    return at if budget is None else min(at, budget)


@contextlib.contextmanager
def _bounded(what: str) -> Iterator[None]:
    """One call to a member, ended by its total deadline (outbound.deadline shuts its connection then) and with every
    failure a classified KubeError."""
    watch = None
    try:
        with outbound.deadline(call_deadline()) as watch:
            yield
            if watch.fired:  # a cut connection can read as a short, complete answer
                raise KubeError("timeout", what)
    except Exception as exc:  # every failure of the call becomes a classified KubeError
        if watch is not None and watch.fired:
            budget = getattr(_budget, "at", None)
            if budget is not None and budget <= watch.at:
                raise KubeError("timeout", f"{what}: the connection test's time budget "
                                           f"({settings.FLEETWEB_CONNECTION_TEST_BUDGET}s) ran out") from exc
            raise KubeError("timeout", f"{what}: no complete answer within {settings.FLEETWEB_KUBE_CALL_DEADLINE}s "
                                       "(FLEETWEB_KUBE_CALL_DEADLINE)") from exc
        raise classify(exc, what=what) from exc


MAX_JSON_DEPTH = 100


def loads(data: bytes, *, what: str) -> Any:
    """A member's JSON answer, refused (KubeError 'protocol') when it is not JSON or nests deeper than
    MAX_JSON_DEPTH: a hostile member's deep answer must not reach code that walks it recursively."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise KubeError("protocol", f"{what}: the answer nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise KubeError("protocol", f"{what}: the answer is not JSON") from None
    if untrusted.too_deep(value, MAX_JSON_DEPTH):
        raise KubeError("protocol", f"{what}: the answer nests deeper than {MAX_JSON_DEPTH} levels")
    return value


def _read_capped(response, *, what: str, cap: int, truncate: bool = False) -> bytes:
    """The body of a urllib3 response, at most `cap` bytes after decompression: past it KubeError('protocol'), or
    with `truncate` (an error body, of which only a Status message is ever used) the first `cap` bytes."""
    raw = getattr(response, "response", response)
    declared = raw.headers.get("Content-Length") or ""
    chunks, size = [], 0
    try:
        if declared.isdigit() and int(declared) > cap and not truncate:
            raise KubeError("protocol", f"{what}: the answer is larger than {cap // 2**20} MiB "
                                        "(FLEETWEB_KUBE_MAX_RESPONSE_BYTES)")
        for chunk in raw.stream(65536):
            size += len(chunk)
            if size > cap:
                if truncate:
                    chunks.append(chunk[:cap - size + len(chunk)])
                    raw.close()  # the rest is never read: the connection is not reused
                    break
                raise KubeError("protocol", f"{what}: the answer is larger than {cap // 2**20} MiB "
                                            "(FLEETWEB_KUBE_MAX_RESPONSE_BYTES)")
            chunks.append(chunk)
    except BaseException:
        raw.close()
        raise
    finally:
        raw.release_conn()
    return b"".join(chunks)


def _call(session: Session, method: str, path: str, *, query: list | None, body: dict | None, content_type: str,
          accept: str = "application/json"):
    """Send one call with timeouts; the response's body is not read yet, except for an error status."""
    api = session.api
    method, url, headers, body_data, post_params = api.param_serialize(
        method, path, query_params=query or [], body=body,
        header_params={"Accept": accept, "Content-Type": content_type}, auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body_data, post_params=post_params,
                            _request_timeout=_timeout())
    if not 200 <= response.status < 300:
        body_read = _read_capped(response, what=path, cap=MAX_ERROR_BODY, truncate=True)
        raise ApiException(status=response.status, reason=response.reason,
                           body=body_read.decode("utf-8", "replace"))
    return response


MAX_ERROR_BODY = 64 * 1024  # of an error answer only a Status message is used


def request(session: Session, method: str, path: str, *, query: list | None = None, body: dict | None = None,
            what: str = "", content_type: str = "application/json") -> bytes:
    """One raw call within the total deadline and the byte cap; returns the body bytes or raises KubeError."""
    what = what or f"{method} {path}"
    with _bounded(what):
        response = _call(session, method, path, query=query, body=body, content_type=content_type)
        data = _read_capped(response, what=what, cap=settings.FLEETWEB_KUBE_MAX_RESPONSE_BYTES)
    session.bytes_read += len(data)
    return data


def matching_lines(session: Session, path: str, prefix: bytes, *, what: str, max_bytes: int) -> list[bytes]:
    """GET a text document (an API server's `/metrics`: megabytes on a big cluster) chunk by chunk and keep only
    the lines starting with `prefix`; stop with KubeError('protocol') past `max_bytes`."""
    lines: list[bytes] = []
    rest = b""
    read = 0
    with _bounded(what):
        response = _call(session, "GET", path, query=None, body=None, content_type="application/json",
                         accept="text/plain")
        raw = response.response
        try:
            for chunk in raw.stream(65536):
                read += len(chunk)
                session.bytes_read += len(chunk)
                if read > max_bytes:
                    raise KubeError("protocol", f"{what}: the answer is larger than {max_bytes // 2**20} MiB")
                *complete, rest = (rest + chunk).split(b"\n")
                lines += [line for line in complete if line.startswith(prefix)]
                if len(rest) > 2**20:  # one line of a megabyte is no metric: keep memory bounded
                    rest = rest[:len(prefix)]
        except BaseException:
            raw.close()
            raise
        finally:
            raw.release_conn()
    if rest.startswith(prefix):
        lines.append(rest)
    return lines


class ListRestarted(Exception):
    """Raised inside `paged_list` consumers' loop when a 410 restarted the list from the start."""


def paged_list(session: Session, path: str, *, limit: int | None = None) -> Iterator[bytes]:
    """Yield raw pages of a LIST, following `continue`. A 410 on `continue` raises ListRestarted
    after which the caller starts over (the accumulated pages are no longer a consistent list)."""
    return pages_of(lambda query: request(session, "GET", path, query=query, what=f"list {path}"), path, limit=limit)


def pages_of(fetch: Callable[[list], bytes], path: str, *, limit: int | None = None) -> Iterator[bytes]:
    """The paging of a LIST at `path` over any way of sending one GET (`fetch(query)`: the direct adapter's request,
    or a relay to an agent)."""
    page_size = limit or settings.FLEETWEB_KUBE_PAGE_SIZE
    token = ""
    while True:
        query: list = [("limit", page_size)]
        if token:
            query.append(("continue", token))
        try:
            page = fetch(query)
        except KubeError as exc:
            if exc.kind == "gone" and token:
                raise ListRestarted(path) from exc
            raise
        yield page
        try:
            token = decode_list_meta(page)
        except ValueError as exc:  # decode.DecodeError: the member's page is no list
            raise KubeError("protocol", f"list {path}: {exc}") from None
        if not token:
            return


FIELD_MANAGER = "fleetweb"


# The calls below over any way of sending one raw request: `send(method, path, *, query=, body=, what=,
# content_type=) -> body bytes`, raising KubeError. The direct adapter sends with `request` and its Session; the agent
# relay (`inventory.port.RelayedMember.request`) through the agent. Each has its session form for the direct adapter.
Send = Callable[..., bytes]


def apply_via(send: Send, path: str, body: dict, *, dry_run: bool = False, strict: bool = False,
              what: str = "") -> dict:
    """Server-side apply of one object at its own path (field manager `fleetweb`, conflicts forced); `dry_run`:
    the object as the apply would leave it, nothing persisted (admission and defaulting included); `strict`: unknown
    and duplicate fields are errors (fieldValidation=Strict)."""
    query = [("fieldManager", FIELD_MANAGER), ("force", "true")] + ([("dryRun", "All")] if dry_run else []) + \
        ([("fieldValidation", "Strict")] if strict else [])
    verb = "dry-run apply" if dry_run else "apply"
    what = what or f"{verb} {body.get('kind', '')} {body.get('metadata', {}).get('name', '')}".strip()
    data = send("PATCH", path, body=body, content_type="application/apply-patch+yaml", query=query, what=what)
    return loads(data, what=verb)


def delete_via(send: Send, path: str) -> bool:
    """Delete one object; False when it was already gone."""
    try:
        send("DELETE", path, what=f"delete {path}")
    except KubeError as exc:
        if exc.http_status == 404:
            return False
        raise
    return True


def get_json_via(send: Send, path: str, *, query: list | None = None) -> dict:
    return loads(send("GET", path, query=query, what=f"GET {path}"), what=f"GET {path}")


def server_version_via(send: Send) -> dict:
    """`/version` of the API server."""
    return loads(send("GET", "/version", what="GET /version"), what="GET /version")


def apply(session: Session, path: str, body: dict, *, dry_run: bool = False, strict: bool = False,
          what: str = "") -> dict:
    return apply_via(functools.partial(request, session), path, body, dry_run=dry_run, strict=strict, what=what)


def delete(session: Session, path: str) -> bool:
    return delete_via(functools.partial(request, session), path)


def get_json(session: Session, path: str, *, query: list | None = None) -> dict:
    return get_json_via(functools.partial(request, session), path, query=query)


def server_version(session: Session) -> dict:
    return server_version_via(functools.partial(request, session))
