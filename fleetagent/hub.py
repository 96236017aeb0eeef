"""The agent's client of the hub: every request signed with the agent's Ed25519 key over its method, path, time
and body (the hub checks it: agents/protocol.py), JSON both ways, HTTPS only (plain http only to a loopback hub,
for a hub on the same machine)."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import time
from urllib.parse import urlsplit

import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class HubError(Exception):
    """The hub refused a request (`status`, its message) or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}" if status else message)
        self.status, self.message = status, message


def signed_text(method: str, path: str, date: str, body: bytes) -> bytes:
    return f"{method.upper()}\n{path}\n{date}\n{hashlib.sha256(body).hexdigest()}".encode()


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def key_text(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def load_key(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text))


def public_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def check_url(url: str) -> None:
    """ValueError unless `url` is https:// (or http:// to a hub on this machine)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
        raise ValueError(f"--hub must be an https:// URL (got {parts.scheme}://): the agent connects out over "
                         "HTTPS only (plain http only to a hub on this machine)")


class Hub:
    def __init__(self, url: str, key: Ed25519PrivateKey, *, ca_file: str | None = None):
        check_url(url)
        parts = urlsplit(url)
        self.url, self.base_path = url.rstrip("/"), parts.path.rstrip("/")
        self.key = key
        self.credential = ""
        context = ssl.create_default_context(cafile=ca_file)
        self.pool = urllib3.PoolManager(num_pools=2, maxsize=8, ssl_context=context, retries=False)

    def call(self, method: str, path: str, body: dict | None = None, *, timeout: float = 30,
             credential: bool = True) -> dict:
        """One signed request to `/agent/v1/<path>`; the JSON answer, or HubError."""
        full = f"{self.base_path}/agent/v1/{path}"
        data = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        date = str(int(time.time()))
        headers = {"X-Fleetweb-Date": date, "Content-Type": "application/json",
                   "X-Fleetweb-Signature": base64.b64encode(
                       self.key.sign(signed_text(method, full, date, data))).decode()}
        if credential and self.credential:
            headers["Authorization"] = f"Bearer {self.credential}"
        try:
            response = self.pool.request(method, self.url.removesuffix(self.base_path) + full, body=data or None,
                                         headers=headers, timeout=urllib3.Timeout(connect=10, read=timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise HubError(0, f"cannot reach the hub: {type(getattr(exc, 'reason', None) or exc).__name__}") \
                from None
        try:
            answer = json.loads(response.data or b"{}")
        except ValueError:
            answer = {}
        if not 200 <= response.status < 300:
            message = answer.get("error") if isinstance(answer, dict) else ""
            raise HubError(response.status, str(message or f"HTTP {response.status}")[:500])
        return answer if isinstance(answer, dict) else {}
