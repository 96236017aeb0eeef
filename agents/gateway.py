"""The agents' gateway: an asyncio server (uvicorn) for everything under /agent/v1/, so that agents can hold their
poll for work open instead of asking every few seconds.

Why: the poll is the fleet's most frequent request. Asked every FLEETWEB_AGENT_POLL seconds, two thousand agents send
about 670 polls a second that almost always find nothing, and a change waits up to an interval to be picked up. A
thread of the web tier cannot wait for work on behalf of one agent (two thousand agents would need two thousand
threads); here a held poll is a coroutine waiting on an event. A poll is held up to FLEETWEB_AGENT_GATEWAY_HOLD
seconds and answered as soon as work for its cluster is queued: `agents.relay` announces each queued item on
`relay.WORK_CHANNEL`, and one subscription per process wakes the polls of that cluster. The agent polls again as
soon as it has an answer (the heartbeat answer tells it the gateway holds), so work is picked up in milliseconds, and
an idle agent costs one poll per hold.

Nothing else changes: who is asking, the signature, the rate, the queue and every refusal are `services.poll_of`,
run in a thread like the other doors; the other doors (heartbeat, reports, answers, renewal, registration, the
manifest) are the web tier's own WSGI application, called in a thread with the request body streamed to it, so each
door still reads its body only after the credential passed and never past its cap. Paths outside /agent/v1/ are
not served here.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from django.conf import settings
from django.core import signals
from django.db import connections
from django.utils.encoding import escape_uri_path, iri_to_uri

from agents import protocol, relay, services
from agents.endpoints import HOLD_KEY
from agents.protocol import AgentError

log = logging.getLogger(__name__)

PREFIX = "/agent/v1/"
WORK = "/agent/v1/work"
HEALTH = "/agent/v1/healthz"


class Waiters:
    """The held polls of this process, by cluster id, and the one subscription that wakes them."""

    def __init__(self) -> None:
        self.events: dict[int, set[asyncio.Event]] = {}
        self.task: asyncio.Task | None = None

    def watch(self, cluster_id: int) -> asyncio.Event:
        event = asyncio.Event()
        self.events.setdefault(cluster_id, set()).add(event)
        return event

    def unwatch(self, cluster_id: int, event: asyncio.Event) -> None:
        found = self.events.get(cluster_id)
        if found is not None:
            found.discard(event)
            if not found:
                del self.events[cluster_id]

    def wake(self, cluster_id: int) -> None:
        for event in self.events.get(cluster_id, ()):
            event.set()

    def wake_all(self) -> None:
        for events in self.events.values():
            for event in events:
                event.set()

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.listen())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def listen(self) -> None:
        """Wake the polls of each cluster whose work is queued. Whenever the subscription is (re)made, every held
        poll looks again: an announcement sent while it was down is not lost, only late by one look."""
        while True:
            client = aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(relay.WORK_CHANNEL)
                self.wake_all()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        try:
                            self.wake(int(message["data"]))
                        except (TypeError, ValueError):
                            continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: the held polls look again, and the subscription is retried
                log.warning("the agents' gateway lost its work subscription (%s); retrying", type(exc).__name__)
                self.wake_all()
                await asyncio.sleep(1)
            finally:  # bounded: a server stopping must not wait on a Redis that does not answer
                try:
                    await asyncio.wait_for(_close(pubsub, client), 2)
                except (Exception, asyncio.CancelledError):
                    pass


async def _close(pubsub: Any, client: aioredis.Redis) -> None:
    await pubsub.aclose()
    await client.aclose()


class _Body(io.RawIOBase):
    """The request body as a WSGI application reads it, in its thread: each chunk is received from the server when
    the application asks for it (a door that refuses the credential never makes the gateway read the body)."""

    def __init__(self, receive: Callable, loop: asyncio.AbstractEventLoop):
        super().__init__()
        self._receive, self._loop = receive, loop
        self._buffer = bytearray()
        self._done = False

    def readable(self) -> bool:
        return True

    def _more(self) -> None:
        message = asyncio.run_coroutine_threadsafe(self._receive(), self._loop).result()
        if message.get("type") != "http.request":
            self._done = True
            return
        self._buffer += message.get("body", b"")
        if not message.get("more_body"):
            self._done = True

    def read(self, size: int | None = -1) -> bytes:
        while not self._done and (size is None or size < 0 or len(self._buffer) < size):
            self._more()
        size = len(self._buffer) if size is None or size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        while not self._done and b"\n" not in self._buffer and (size is None or size < 0 or len(self._buffer) < size):
            self._more()
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        return self.read(end if size is None or size < 0 else min(end, size))


def _headers(scope: dict) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        found[key] = f"{found[key]},{value.decode('latin-1')}" if key in found else value.decode("latin-1")
    return found


def _environ(scope: dict, body: io.RawIOBase, hold: float) -> dict[str, Any]:
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client") or ("", 0)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"], "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]), "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}", "REMOTE_ADDR": client[0],
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.get("scheme", "http"), "wsgi.input": body,
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        HOLD_KEY: hold,
    }
    for key, value in _headers(scope).items():
        name = key.upper().replace("-", "_")
        environ[name if name in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{name}"] = value
    return environ


def _call_wsgi(app: Callable, environ: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    started: dict[str, Any] = {}

    def start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
        started["status"], started["headers"] = status, headers
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    headers = [(name.lower().encode("latin-1"), str(value).encode("latin-1")) for name, value in started["headers"]]
    return int(started["status"].split(" ", 1)[0]), headers, body


class Timing:
    """Where one request's time went in this process, sent back as `Server-Timing` (milliseconds): `pool`, waiting
    for a free thread; `door`, the door's own work in it. What an agent measures beyond them is the network and this
    process's event loop (or its own). Held time is in neither."""

    def __init__(self) -> None:
        self.pool = self.door = 0.0

    def header(self) -> tuple[bytes, bytes]:
        return b"server-timing", f"pool;dur={self.pool * 1000:.1f}, door;dur={self.door * 1000:.1f}".encode()


async def _answer(send: Callable, status: int, payload: dict | bytes,
                  headers: list[tuple[bytes, bytes]] | None = None, timing: Timing | None = None) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if headers is None:
        headers = [(b"content-type", b"application/json")]
        if status == 429:
            headers.append((b"retry-after", b"1"))
    headers = [h for h in headers if h[0] != b"content-length"] + [(b"content-length", str(len(body)).encode())]
    if timing is not None:
        headers.append(timing.header())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _run_door(call: Callable[[], Any]) -> Any:
    """A door's work in a pool thread, with the database connections handled as for any request."""
    signals.request_started.send(sender=None, environ=None)
    try:
        return call()
    finally:
        signals.request_finished.send(sender=None)


def _plain(call: Callable[[], Any]) -> Any:
    return call()


class Gateway:
    """The gateway's ASGI application: held polls here, every other /agent/v1/ door through `wsgi` (the web tier's
    application, `fleetweb.wsgi`)."""

    def __init__(self, wsgi: Callable, *, hold: float | None = None, threads: int | None = None):
        self.wsgi = wsgi
        self.hold = float(settings.FLEETWEB_AGENT_GATEWAY_HOLD if hold is None else hold)
        self.pool = ThreadPoolExecutor(threads or settings.FLEETWEB_AGENT_GATEWAY_THREADS,
                                       thread_name_prefix="agent-door")
        self.waiters = Waiters()
        self.clusters: dict[str, int] = {}  # credential digest -> its cluster, once seen: a poll watches, then looks

    async def in_thread(self, call: Callable[[], Any], *, request: bool = True, timing: Timing | None = None) -> Any:
        """`call` in a pool thread; `request`: as a request, for its database connections (the WSGI application
        does that itself); `timing`: what it waited for a thread and ran is added there."""
        queued = time.perf_counter()
        began: list[float] = []

        def timed() -> Any:
            began.append(time.perf_counter())
            return (_run_door if request else _plain)(call)

        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, timed)
        finally:
            if timing is not None and began:
                timing.pool += began[0] - queued
                timing.door += time.perf_counter() - began[0]

    async def close_connections(self) -> None:
        """Close the database connections of every pool thread (each thread holds its own): one call per thread,
        which a barrier keeps in distinct threads."""
        count = self.pool._max_workers
        barrier = threading.Barrier(count, timeout=5)

        def close() -> None:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass
            connections.close_all()

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.pool, close) for _ in range(count)),
                             return_exceptions=True)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.waiters.start()
                    settle_memory()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.waiters.stop()
                    await self.close_connections()
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if not path.startswith(PREFIX):
            return await _answer(send, 404, {"error": "This address serves Fleetweb's agents only (/agent/v1/)."})
        if path == HEALTH:  # the process answers (the container's probe): nothing else is asked
            return await _answer(send, 200, {"ok": True})
        if path == WORK and scope.get("method") == "GET":
            self.waiters.start()  # once (a server without lifespan events starts it here)
            return await self.poll(scope, receive, send)
        environ = _environ(scope, _Body(receive, asyncio.get_running_loop()), self.hold)
        timing = Timing()
        try:
            status, headers, body = await self.in_thread(lambda: _call_wsgi(self.wsgi, environ), request=False,
                                                         timing=timing)
        except Exception:
            log.exception("agent request %s failed", path)
            return await _answer(send, 503, {"error": "the hub cannot answer now; try again"}, timing=timing)
        await _answer(send, status, body, headers, timing)

    async def poll(self, scope: dict, receive: Callable, send: Callable) -> None:
        """The poll for work, held up to its `wait` (at most the gateway's hold) until its cluster's work is queued.
        Each look is `services.poll_of`, with every check and refusal of the web tier's poll."""
        await receive()  # the (empty) body: from now on `receive` says when the agent hangs up
        query = scope.get("query_string", b"").decode("latin-1")
        params = parse_qs(query)
        headers = _headers(scope)
        watching: tuple[int, asyncio.Event] | None = None
        timing = Timing()
        try:
            try:
                wait = max(0.0, min(float(params.get("wait", ["0"])[0]), self.hold))
            except ValueError:
                raise AgentError("'wait' is a number of seconds.", field="wait") from None
            credential = headers.get("authorization", "").removeprefix("Bearer ").strip()
            signature = {"method": "GET",
                         "path": escape_uri_path(scope["path"]) + (f"?{iri_to_uri(query)}" if query else ""),
                         "body": b"", "date": headers.get("x-fleetweb-date", ""),
                         "signature": headers.get("x-fleetweb-signature", "")}
            boot = params.get("boot", [""])[0][:64]

            def slow() -> tuple[int, list[dict]]:
                return services.poll_slow(credential, signature=signature, boot=boot, wait=0)

            async def take() -> tuple[int, list[dict]]:
                """One look: for an agent seen here, its single Redis round trip on this loop, and a thread only
                when there is more to do (items popped, a restart, a refusal: `services.NeedsThread`)."""
                who_key = services.known_poll(credential, signature=signature)
                if who_key is None:
                    return await self.in_thread(slow, timing=timing)
                answer = await relay.take_known_async(who_key, boot=boot)
                try:
                    found = services.after_known(credential, answer, boot=boot, inline=True)
                except services.NeedsThread:
                    return await self.in_thread(
                        lambda: services.after_known(credential, answer, boot=boot) or slow(), timing=timing)
                return found if found is not None else await self.in_thread(slow, timing=timing)

            digest = protocol.digest(credential)
            known = self.clusters.get(digest)
            if known is not None and wait > 0:
                watching = (known, self.waiters.watch(known))
            cluster_id, items = await take()
            if len(self.clusters) > services.MAX_KEYS:
                self.clusters.clear()
            self.clusters[digest] = cluster_id
            if items or wait <= 0:
                return await _answer(send, 200, {"items": items}, timing=timing)
            if watching is None or watching[0] != cluster_id:  # first seen: watch, then look once more
                if watching is not None:
                    self.waiters.unwatch(*watching)
                watching = (cluster_id, self.waiters.watch(cluster_id))
                cluster_id, items = await take()
            event = watching[1]
            loop = asyncio.get_running_loop()
            until = loop.time() + wait
            hung_up = asyncio.ensure_future(receive())
            try:
                while not items and loop.time() < until:
                    woken = asyncio.ensure_future(event.wait())
                    await asyncio.wait({woken, hung_up}, timeout=until - loop.time(),
                                       return_when=asyncio.FIRST_COMPLETED)
                    woken.cancel()
                    if hung_up.done():
                        return None  # the agent is gone: take nothing it could not receive
                    if event.is_set():
                        event.clear()
                        cluster_id, items = await take()
            finally:
                hung_up.cancel()
            return await _answer(send, 200, {"items": items}, timing=timing)
        except AgentError as exc:
            return await _answer(send, exc.status, {"error": exc.message}, timing=timing)
        except Exception:  # the database or Redis away: an error the agent retries, never a traceback
            log.exception("agent poll failed")
            return await _answer(send, 503, {"error": "the hub cannot hand out work now; try again"})
        finally:
            if watching is not None:
                self.waiters.unwatch(*watching)


def settle_memory() -> None:
    """Move everything start-up made (Django, the apps, their modules: most of the process's objects) out of the
    garbage collector's sight. A full collection walks every tracked object and stops every thread and the event
    loop while it does: measured at 2,000 agents, each gateway process paused 165-400 ms three times in 90 s, finding
    nothing to free, which was most of the agents' p95 latency (BENCHMARKS.md part 5)."""
    gc.collect()
    gc.freeze()


def make_app(wsgi: Callable, *, hold: float | None = None, threads: int | None = None) -> Gateway:
    """The gateway's ASGI application over the web tier's WSGI application."""
    return Gateway(wsgi, hold=hold, threads=threads)
