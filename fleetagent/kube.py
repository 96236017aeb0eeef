"""The agent's client of its own API server: the ServiceAccount's token (re-read as the kubelet rotates it), the
cluster's CA, a deadline on every call and a cap on every answer."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
MAX_ERROR_BODY = 64 * 1024


class CallError(Exception):
    """The API server could not be reached or did not answer in time: `kind` as the hub classifies it."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


@dataclass
class Answer:
    status: int
    body: bytes


class Kube:
    def __init__(self, server: str, *, token_file: str, ca_file: str):
        self.server = server.rstrip("/")
        self.token_file, self.ca_file = token_file, ca_file
        context = ssl.create_default_context(cafile=ca_file)
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=8, ssl_context=context, retries=False)

    def _token(self) -> str:
        with open(self.token_file) as f:
            return f.read().strip()

    def ca_fingerprint(self) -> str:
        """SHA-256 of the API server's CA certificate (DER), as `openssl x509 -fingerprint -sha256` prints it."""
        with open(self.ca_file) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read().split("-----END CERTIFICATE-----")[0]
                                           + "-----END CERTIFICATE-----\n")
        digest = hashlib.sha256(der).hexdigest().upper()
        return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

    def request(self, method: str, path: str, *, query: list | None = None, body: object = None,
                content_type: str = "application/json", accept: str = "application/json", timeout: float = 30,
                max_bytes: int = 64 * 2**20) -> Answer:
        """One call; the body read up to `max_bytes` (an error answer up to MAX_ERROR_BODY: only its Status is
        used). CallError when the server cannot be reached, the deadline passes or the answer is too large."""
        url = self.server + path + (("?" + urlencode(query)) if query else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": accept}
        if data is not None:
            headers["Content-Type"] = content_type
        end = time.monotonic() + timeout
        try:
            response = self.pool.request(method, url, body=data, headers=headers, preload_content=False,
                                         timeout=urllib3.Timeout(connect=min(5, timeout), read=timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise _classified(exc) from None
        try:
            ok = 200 <= response.status < 300
            cap = max_bytes if ok else MAX_ERROR_BODY
            chunks, size = [], 0
            for chunk in response.stream(65536):
                if time.monotonic() > end:
                    raise CallError("timeout", f"{method} {path}: no complete answer within {timeout:.0f}s")
                size += len(chunk)
                if size > cap:
                    if not ok:
                        break
                    raise CallError("protocol", f"{method} {path}: the answer is larger than {cap} bytes")
                chunks.append(chunk)
            return Answer(response.status, b"".join(chunks))
        except urllib3.exceptions.HTTPError as exc:
            raise _classified(exc) from None
        finally:
            response.release_conn()

    def lines(self, path: str, prefix: str, *, timeout: float, max_bytes: int) -> tuple[int, list[str]]:
        """The lines of the text document at `path` (the API server's /metrics) starting with `prefix`."""
        answer = self.request("GET", path, accept="text/plain", timeout=timeout, max_bytes=max_bytes)
        if not 200 <= answer.status < 300:
            return answer.status, []
        text = answer.body.decode("utf-8", "replace")
        return answer.status, [line for line in text.split("\n") if line.startswith(prefix)]

    def json(self, method: str, path: str, **kwargs) -> dict:
        answer = self.request(method, path, **kwargs)
        if not 200 <= answer.status < 300:
            raise CallError("http", f"{method} {path}: HTTP {answer.status}")
        return json.loads(answer.body)

    def secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded data of a Secret, None when there is none."""
        answer = self.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", timeout=10)
        if answer.status == 404:
            return None
        if not 200 <= answer.status < 300:
            raise CallError("http", f"read Secret {namespace}/{name}: HTTP {answer.status}")
        data = json.loads(answer.body).get("data") or {}
        return {k: base64.b64decode(v).decode() for k, v in data.items()}

    def write_secret(self, namespace: str, name: str, values: dict[str, str]) -> None:
        """Replace a Secret's data (the agent may update its own Secrets by name, never create one)."""
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
                "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}
        answer = self.request("PUT", f"/api/v1/namespaces/{namespace}/secrets/{name}", body=body, timeout=10)
        if not 200 <= answer.status < 300:
            raise CallError("http", f"write Secret {namespace}/{name}: HTTP {answer.status}")

    def delete_secret(self, namespace: str, name: str) -> None:
        answer = self.request("DELETE", f"/api/v1/namespaces/{namespace}/secrets/{name}", timeout=10)
        if answer.status not in (200, 202, 404):
            raise CallError("http", f"delete Secret {namespace}/{name}: HTTP {answer.status}")


def _classified(exc: BaseException) -> CallError:
    """A transport failure as the hub's error kinds name it (our words, never the other side's)."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, urllib3.exceptions.SSLError | ssl.SSLError):
        return CallError("tls", "TLS verification of the API server failed")
    if isinstance(reason, urllib3.exceptions.TimeoutError | socket.timeout | TimeoutError):
        return CallError("timeout", "the API server did not answer in time")
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        cause = reason.__cause__ or reason.__context__
        if isinstance(cause, ConnectionRefusedError):
            return CallError("refused", "the API server refused the connection")
        return CallError("network", "cannot connect to the API server")
    return CallError("network", f"the connection to the API server broke ({type(reason).__name__})")


MAX_EVENT_BYTES = 16 * 2**20  # one watch event (one object): past this the watch is dropped and started again


def watch_events(kube: Kube, path: str, resource_version: str, *, seconds: int = 240):
    """The events of a watch on `path` from `resource_version` (with bookmarks), one dict per line, until the server
    ends it (after `seconds`); CallError when it cannot be read."""
    query = [("watch", "1"), ("allowWatchBookmarks", "true"), ("resourceVersion", resource_version),
             ("timeoutSeconds", str(seconds))]
    url = kube.server + path + "?" + urlencode(query)
    try:
        response = kube.pool.request("GET", url, headers={"Authorization": f"Bearer {kube._token()}",
                                                          "Accept": "application/json"},
                                     preload_content=False, timeout=urllib3.Timeout(connect=5, read=seconds + 30))
    except urllib3.exceptions.HTTPError as exc:
        raise _classified(exc) from None
    try:
        if response.status == 410:
            yield {"type": "ERROR", "object": {"code": 410}}
            return
        if not 200 <= response.status < 300:
            raise CallError("http", f"watch {path}: HTTP {response.status}")
        rest = b""
        for chunk in response.stream(65536):
            *lines, rest = (rest + chunk).split(b"\n")
            if len(rest) > MAX_EVENT_BYTES:
                raise CallError("protocol", f"watch {path}: an event larger than {MAX_EVENT_BYTES} bytes")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    except urllib3.exceptions.HTTPError as exc:
        raise _classified(exc) from None
    finally:
        response.release_conn()
