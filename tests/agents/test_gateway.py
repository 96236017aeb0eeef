"""The agents' gateway (agents.gateway): polls held open until work for their own cluster is queued, every other
agent door handed to the web tier's application with the same checks, and nothing else served."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from django.db import connections

from agents import relay, services
from agents.gateway import make_app
from fleetweb.wsgi import application as web
from inventory import port
from inventory.models import Cluster
from tests.agents.helpers import accepted_agent

pytestmark = pytest.mark.django_db(transaction=True)


def _scope(method: str, full_path: str, headers: dict, body: bytes = b"") -> dict:
    path, _, query = full_path.partition("?")
    pairs = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    if body:
        pairs += [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
    return {"type": "http", "http_version": "1.1", "method": method, "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "headers": pairs, "scheme": "http", "server": ("127.0.0.1", 8001),
            "client": ("127.0.0.1", 40000)}


async def _request(app, method: str, full_path: str, headers: dict, body: bytes = b"", *,
                   hang_up_after: float | None = None, answer_headers: dict | None = None
                   ) -> tuple[int | None, dict, float]:
    """One request through the ASGI app: (status, JSON answer, seconds); status None when nothing was sent.
    `answer_headers`: filled with the answer's headers."""
    sent: list[dict] = []
    given = False

    async def receive() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        if hang_up_after is not None:
            await asyncio.sleep(hang_up_after)
            return {"type": "http.disconnect"}
        await asyncio.Event().wait()
        return {}

    async def send(message: dict) -> None:
        sent.append(message)

    started = time.monotonic()
    await app(_scope(method, full_path, headers, body), receive, send)
    elapsed = time.monotonic() - started
    if not sent:
        return None, {}, elapsed
    if answer_headers is not None:
        answer_headers.update({k.decode(): v.decode() for k, v in sent[0].get("headers", [])})
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]) or b"{}"), elapsed


def _run(app, coroutine):
    """Run a test's requests, then close the database connections the gateway's door thread opened."""

    async def main():
        try:
            return await coroutine
        finally:
            await app.waiters.stop()
            await app.close_connections()

    return asyncio.run(main())


def _queue_work(cluster_id: int, *, after: float) -> threading.Thread:
    """Queue one call for the agent of `cluster_id` from another thread, `after` seconds from now (as a sync in a
    worker does), closing that thread's database connection after."""

    def later():
        time.sleep(after)
        try:
            member = port.connect(Cluster.objects.get(pk=cluster_id))
            member.submit(port.RelayedMember._http_op("GET", "/api/v1/namespaces/a", query=None, body=None,
                                                      content_type="application/json"),
                          what="read", until=time.monotonic() + 60)
        finally:
            connections.close_all()

    thread = threading.Thread(target=later)
    thread.start()
    return thread


def test_a_held_poll_is_answered_as_soon_as_its_clusters_work_is_queued(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=10, threads=1)
    path = "/agent/v1/work?wait=10&boot=b1"

    async def go():
        queued = _queue_work(cluster.pk, after=0.5)
        answer = await _request(app, "GET", path, agent.headers("GET", path, b""))
        queued.join()
        return answer

    status, answer, elapsed = _run(app, go())
    assert status == 200 and [item["path"] for item in answer["items"]] == ["/api/v1/namespaces/a"]
    assert 0.4 < elapsed < 3, f"answered {elapsed:.2f}s after it was asked: held, then woken by the work"


def _server_timing(headers: dict) -> dict[str, float]:
    return {name.strip(): float(dur.removeprefix("dur=")) for name, dur in
            (part.split(";") for part in headers["server-timing"].split(","))}


def test_each_answer_says_where_its_time_went_and_a_held_poll_does_not_count_its_hold(admin_user):
    """The benchmark tells the gateway's own time (a free thread, the door's work) from the network's and the event
    loop's by this header; the hold is waiting for work, neither."""
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=10, threads=1)
    path = "/agent/v1/work?wait=10&boot=b1"
    body = json.dumps({"agent_version": "0.1.0"}).encode()
    polled: dict = {}
    beat: dict = {}

    async def go():
        queued = _queue_work(cluster.pk, after=0.6)
        answer = await _request(app, "GET", path, agent.headers("GET", path, b""), answer_headers=polled)
        queued.join()
        await _request(app, "POST", "/agent/v1/heartbeat", agent.headers("POST", "/agent/v1/heartbeat", body), body,
                       answer_headers=beat)
        return answer

    status, answer, elapsed = _run(app, go())
    assert status == 200 and len(answer["items"]) == 1
    poll_timing, beat_timing = _server_timing(polled), _server_timing(beat)
    assert set(poll_timing) == set(beat_timing) == {"pool", "door"}
    assert 0 < poll_timing["door"] and poll_timing["pool"] + poll_timing["door"] < (elapsed - 0.5) * 1000, \
        (poll_timing, elapsed)
    assert beat_timing["door"] > 0


def test_an_idle_held_poll_ends_empty_at_the_hold_and_a_second_one_watches_first(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=1, threads=1)
    path = "/agent/v1/work?wait=5&boot=b1"  # asks for more than the gateway holds

    async def go():
        idle = await _request(app, "GET", path, agent.headers("GET", path, b""))
        queued = _queue_work(cluster.pk, after=0.3)  # known now: watched before its first look
        woken = await _request(app, "GET", path, agent.headers("GET", path, b""))
        queued.join()
        return idle, woken

    (status, answer, elapsed), (status2, answer2, elapsed2) = _run(app, go())
    assert (status, answer["items"]) == (200, []) and 0.9 < elapsed < 2.5
    assert status2 == 200 and len(answer2["items"]) == 1 and elapsed2 < 0.9


def test_an_agent_cannot_take_or_be_woken_by_another_clusters_work(admin_user):
    agent_a, _cluster_a = accepted_agent(admin_user, name="edge-a")
    _agent_b, cluster_b = accepted_agent(admin_user, name="edge-b")
    app = make_app(web, hold=1, threads=1)
    path = "/agent/v1/work?wait=1"

    async def go():
        queued = _queue_work(cluster_b.pk, after=0.2)
        answer = await _request(app, "GET", path, agent_a.headers("GET", path, b""))
        queued.join()
        return answer

    status, answer, elapsed = _run(app, go())
    assert (status, answer["items"]) == (200, []) and elapsed > 0.9
    assert len(relay.client().lrange(f"{relay.PREFIX}:{cluster_b.pk}:work", 0, -1)) == 1, "B's work is still B's"


def test_a_stranger_is_refused_at_once_and_holds_nothing(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=10, threads=1)
    path = "/agent/v1/work?wait=10"
    forged = dict(agent.headers("GET", path, b""), **{"X-Fleetweb-Signature": "AAAA"})
    nobody = {"Authorization": "Bearer fwa_not-a-credential", "X-Fleetweb-Date": str(int(time.time()))}

    async def go():
        return [await _request(app, "GET", path, headers) for headers in (forged, nobody, {})]

    answers = _run(app, go())
    assert [status for status, _answer, _elapsed in answers] == [401, 401, 401]
    assert all(elapsed < 1 for _status, _answer, elapsed in answers), "refused before any hold"


def test_a_revoked_agents_held_poll_ends_empty_and_its_next_poll_is_refused(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=2, threads=1)
    path = "/agent/v1/work?wait=2"

    async def go():
        def revoke_then_queue():
            time.sleep(0.3)
            try:
                services.revoke(Cluster.objects.get(pk=cluster.pk), user=admin_user)
            finally:
                connections.close_all()

        thread = threading.Thread(target=revoke_then_queue)
        thread.start()
        first = await _request(app, "GET", path, agent.headers("GET", path, b""))
        thread.join()
        return first

    status, answer, _elapsed = _run(app, go())
    assert (status, answer) == (200, {"items": []})  # the hold it was in ends with nothing handed out ...
    later_path = "/agent/v1/work?wait=2&boot=x"
    status, answer, elapsed = _run(app, _request(app, "GET", later_path, agent.headers("GET", later_path, b"")))
    assert status == 401 and "revoked" in answer["error"] and elapsed < 1  # ... and the next poll is cut off


def test_a_poll_whose_agent_hung_up_takes_nothing(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=10, threads=1)
    path = "/agent/v1/work?wait=10&boot=b1"

    async def go():
        await _request(app, "GET", path, agent.headers("GET", path, b""), hang_up_after=0.1)  # known now
        answer = await _request(app, "GET", path, agent.headers("GET", path, b""), hang_up_after=0.2)
        queued = _queue_work(cluster.pk, after=0)
        queued.join()
        return answer

    status, _answer, elapsed = _run(app, go())
    assert status is None and elapsed < 1, "the gateway stopped holding when the agent hung up"
    assert len(relay.client().lrange(f"{relay.PREFIX}:{cluster.pk}:work", 0, -1)) == 1, "the work waits for it"


def test_the_other_doors_go_to_the_web_tier_and_say_that_polls_are_held(admin_user):
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=25, threads=1)
    body = json.dumps({"agent_version": "0.1.0"}).encode()

    async def go():
        heartbeat = await _request(app, "POST", "/agent/v1/heartbeat",
                                   agent.headers("POST", "/agent/v1/heartbeat", body), body)
        big = b"{" + b" " * (70 * 1024) + b"}"
        too_big = await _request(app, "POST", "/agent/v1/heartbeat",
                                 agent.headers("POST", "/agent/v1/heartbeat", big), big)
        unsigned = await _request(app, "POST", "/agent/v1/heartbeat",
                                  {"Authorization": f"Bearer {agent.credential}"}, body)
        return heartbeat, too_big, unsigned

    (status, answer, _e), (big_status, big_answer, _e2), (unsigned_status, _a, _e3) = _run(app, go())
    assert status == 200 and answer["poll_hold_seconds"] == 25 and answer["idle_hold_seconds"] == 25
    assert big_status == 413 and "larger than" in big_answer["error"]
    assert unsigned_status == 401
    # through the web tier itself, polls are not held while idle
    assert agent.call("POST", "heartbeat", {"agent_version": "0.1.0"}).json()["idle_hold_seconds"] == 0


@pytest.mark.parametrize("path", ["/", "/admin/", "/api/v1/clusters/", "/accounts/login/", "/metrics"])
def test_nothing_but_the_agents_doors_is_served(path):
    app = make_app(web, hold=1, threads=1)
    status, answer, _elapsed = _run(app, _request(app, "GET", path, {}))
    assert status == 404 and "agents only" in answer["error"]


def test_the_gateway_says_it_is_up_and_nothing_more():
    app = make_app(web, hold=1, threads=1)
    status, answer, _elapsed = _run(app, _request(app, "GET", "/agent/v1/healthz", {}))
    assert (status, answer) == (200, {"ok": True})


def test_the_gateways_start_up_hides_what_it_loaded_from_the_garbage_collector():
    """A full collection stops the event loop and every door thread; what start-up made is never garbage, so it is
    frozen out of the collector's walk (settle_memory) when the server starts the application."""
    import gc

    app = make_app(web, hold=1, threads=1)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    gc.unfreeze()
    try:
        asyncio.run(app({"type": "lifespan"}, receive, send))
        frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert frozen > 10_000, f"only {frozen} objects frozen: start-up's modules were not"


def test_an_idle_poll_of_a_known_agent_takes_no_thread_and_is_still_checked(admin_user):
    """An agent seen before polls in one Redis round trip made on the event loop: no door thread is taken (so
    heartbeats and reports do not queue behind idle polls), and the checks still hold there: a forged signature is
    refused, work queued meanwhile is handed out (by a thread: it is kept in flight), a revoked agent is refused."""
    agent, cluster = accepted_agent(admin_user)
    app = make_app(web, hold=10, threads=1)
    threads: list[str] = []
    in_thread = app.in_thread

    async def counted(call, **kwargs):
        threads.append(getattr(call, "__name__", "call"))
        return await in_thread(call, **kwargs)

    app.in_thread = counted  # type: ignore[method-assign]
    path = "/agent/v1/work?wait=0&boot=b1"
    timings: list[dict] = []

    async def poll(headers=None):
        answer_headers: dict = {}
        status, answer, _elapsed = await _request(app, "GET", path, headers or agent.headers("GET", path, b""),
                                                  answer_headers=answer_headers)
        timings.append(answer_headers)
        return status, answer

    async def go():
        first = await poll()  # not seen by this process yet: the path of every door, in a thread
        seen = len(threads)
        idle = [await poll() for _ in range(3)]
        idle_threads = len(threads) - seen
        forged = await poll(dict(agent.headers("GET", path, b""), **{"X-Fleetweb-Signature": "AAAA"}))
        queued = _queue_work(cluster.pk, after=0)
        queued.join()
        with_work = await poll()
        await asyncio.to_thread(lambda: (services.revoke(cluster, user=admin_user), connections.close_all()))
        revoked = await poll()
        return first, seen, idle, idle_threads, forged, with_work, revoked

    first, seen, idle, idle_threads, forged, with_work, revoked = _run(app, go())
    assert first == (200, {"items": []}) and seen == 1
    assert idle == [(200, {"items": []})] * 3 and idle_threads == 0, "idle polls of a known agent took a thread"
    assert all(_server_timing(t) == {"pool": 0.0, "door": 0.0} for t in timings[1:4])
    assert forged[0] == 401
    assert with_work[0] == 200 and [i["path"] for i in with_work[1]["items"]] == ["/api/v1/namespaces/a"]
    assert revoked[0] == 401 and "revoked" in revoked[1]["error"]


def test_a_burst_of_idle_polls_waits_for_a_redis_connection_instead_of_failing():
    """Two thousand agents woken together send their idle polls in one burst; the event loop's Redis client had
    redis-py's default pool, which refuses the 101st connection at once ("Too many connections"): one loaded poll in
    ten answered 503 in the benchmark. Now the burst shares a few connections and every poll is answered."""
    async def burst() -> list:
        return await asyncio.gather(*(relay.take_known_async(f"{relay.PREFIX}:who:nobody-{i}", boot="")
                                      for i in range(400)), return_exceptions=True)

    answers = asyncio.run(burst())
    assert [a for a in answers if isinstance(a, BaseException)] == []
    assert {a[0] for a in answers} == {0}, "no identity cached for these keys: each says so"
