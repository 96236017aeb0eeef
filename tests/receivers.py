"""Real receivers for notifications, started by the test session: an HTTP server recording every POST (the
webhook and Slack channels' far end) and an SMTP server (aiosmtpd) recording every message."""

from __future__ import annotations

import email
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from localfleet.member import free_port


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers each POST with the next status of `statuses` for its path (204 when none is left)."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)
    statuses: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def reset(self) -> None:
        with self.lock:
            self.received.clear()
            self.statuses.clear()


class _Handler(BaseHTTPRequestHandler):
    receiver: HttpReceiver

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver = self.server.receiver  # type: ignore[attr-defined]
        with receiver.lock:
            receiver.received.append(Received(self.path, dict(self.headers), body))
            queue = receiver.statuses.get(self.path) or []
            status = queue.pop(0) if queue else 204
        self.send_response(status)
        payload = b"receiver says: secret internals" if status >= 400 else b""
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def _http_receiver_server() -> Iterator[HttpReceiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    receiver = HttpReceiver(server)
    server.receiver = receiver  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_receiver(_http_receiver_server, settings) -> HttpReceiver:
    """The session's HTTP receiver, emptied; loopback allowed by the outbound policy for the test."""
    settings.FLEETWEB_ALLOWED_NETWORKS = [*settings.FLEETWEB_ALLOWED_NETWORKS, "127.0.0.0/8"]
    _http_receiver_server.reset()
    return _http_receiver_server


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list = field(default_factory=list)

    def wait(self, count: int, timeout: float = 15) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(self.messages) < count:
            time.sleep(0.1)
        return list(self.messages)


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpServer]:
    from aiosmtpd.controller import Controller

    class Handler:
        def __init__(self, sink: SmtpServer):
            self.sink = sink

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's API
            message = email.message_from_bytes(envelope.original_content or envelope.content)
            self.sink.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                                       "subject": message["Subject"], "body": message.get_payload(decode=True)
                                       .decode("utf-8", "replace"), "headers": dict(message.items())})
            return "250 Message accepted for delivery"

    sink = SmtpServer("127.0.0.1", free_port())
    controller = Controller(Handler(sink), hostname=sink.host, port=sink.port)
    controller.start()
    yield sink
    controller.stop()


@pytest.fixture
def smtp_server(_smtp_server, settings) -> SmtpServer:
    """The session's SMTP server, emptied, configured as FLEETWEB_EMAIL_* for the test."""
    _smtp_server.messages.clear()
    settings.EMAIL_HOST, settings.EMAIL_PORT = _smtp_server.host, _smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    return _smtp_server
