"""The relay between the member port and the agents: a call the hub makes to a registered cluster becomes a work
item in that cluster's queue in Redis; the agent picks it up when it polls (`take`), runs it against its own API
server and posts the answer (`answer`), which the waiting caller reads. Nothing holds a socket to a cluster: the
agents poll the normal web tier.

Each item carries its deadline (the caller's: FLEETWEB_KUBE_CALL_DEADLINE or a shorter budget) and is owned by one
cluster: an agent can neither take another cluster's work nor answer it. An answer counts once (the first; a
resent or replayed one is ignored), and an answer after the deadline is dropped with its item."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from agents import protocol
from agents.models import Agent
from agents.protocol import AgentError
from inventory import port

PREFIX = "fleetweb:agent"
MAX_TAKE = 20  # items handed to one poll
MAX_RESULTS = 50  # answers in one post
MAX_MESSAGE = 300  # of an agent's own error text

_clients: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    """This process's Redis client for the relay. A blocking pop holds its connection for up to its own timeout, so
    the socket has none (redis-py's default of 5 s would cut a longer wait)."""
    pid = os.getpid()
    if pid not in _clients:
        _clients.clear()
        _clients[pid] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=None, socket_connect_timeout=5,
                                             health_check_interval=30)
    return _clients[pid]


def _queue(cluster_id: int) -> str:
    return f"{PREFIX}:{cluster_id}:work"


def _owner(item_id: str) -> str:
    return f"{PREFIX}:item:{item_id}"


def _result(item_id: str) -> str:
    return f"{PREFIX}:result:{item_id}"


def _inflight(cluster_id: int) -> str:
    return f"{PREFIX}:{cluster_id}:inflight"


def _boot(cluster_id: int) -> str:
    return f"{PREFIX}:{cluster_id}:boot"


def _pushed(cluster_id: int) -> str:
    return f"{PREFIX}:{cluster_id}:pushed"


# Where the queueing of work for a cluster is announced (its id): the agents' gateway holds polls open and answers
# the one of that cluster as soon as its work is queued (`agents.gateway`).
WORK_CHANNEL = f"{PREFIX}:work-queued"

PUSHED_TTL = 600  # seconds a reported change waits for its sync (which normally starts at once)


# ---------------------------------------------------------------------------------------------
# The hub's side: the member port's adapter


class Relay:
    """Sends the member port's calls for one cluster to its agent and waits for the answers. Whether the agent is
    connected is judged when the member is opened (a job does not fail half-way because it outlasted a heartbeat
    interval: each call has its deadline); a silent or revoked agent fails every call at once, saying why."""

    def __init__(self, cluster_id: int, name: str, last_heartbeat_at, revoked: bool):
        self.cluster_id, self.name = cluster_id, name
        self.refusal: tuple[str, str] | None = None
        if revoked:
            self.refusal = ("unauthorized", "the agent's credential was revoked")
        elif protocol.is_silent(last_heartbeat_at):
            self.refusal = ("network", protocol.silence_reason(last_heartbeat_at))

    def _check_connected(self, what: str) -> None:
        if self.refusal is not None:
            raise port.KubeError(self.refusal[0], f"{what}: {self.refusal[1]}")

    def submit(self, op: dict, *, what: str, until: float) -> str:
        """Queue one call for the agent; its id, for `result`."""
        self._check_connected(what)
        left = until - time.monotonic()
        if left <= 0.05:
            raise port.KubeError("timeout", f"{what}: no time left for the agent to answer")
        item_id = uuid.uuid4().hex
        # The answer travels as a JSON string inside the agent's post: at most half its body cap before escaping.
        most = settings.FLEETWEB_AGENT_MAX_BODY_BYTES // 2
        cap = min(op.get("max_bytes", most), most)
        item = {**op, "max_bytes": cap, "id": item_id, "deadline": time.time() + left, "timeout": left}
        ttl = math.ceil(left) + 5
        with client().pipeline() as pipe:
            pipe.set(_owner(item_id), self.cluster_id, ex=ttl)
            pipe.rpush(_queue(self.cluster_id), json.dumps(item))
            pipe.expire(_queue(self.cluster_id), max(ttl, 600))
            pipe.publish(WORK_CHANNEL, self.cluster_id)  # a poll held by the agents' gateway answers at once
            pipe.execute()
        return item_id

    def result(self, item_id: str, *, what: str, until: float) -> dict:
        """The agent's answer to a submitted call, waited for until `until`; KubeError when none came, or when the
        agent reports it could not make the call."""
        left = until - time.monotonic()
        r = client()
        popped = r.blpop([_result(item_id)], timeout=max(left, 0.1))
        if popped is None:
            r.delete(_owner(item_id))  # a late answer is dropped
            raise port.KubeError("timeout", f"{what}: the agent did not answer within {max(left, 0):.0f}s")
        answer = json.loads(popped[1])
        error = answer.get("error")
        if error:
            kind = error.get("kind") if error.get("kind") in port.KubeError.KINDS else "network"
            raise port.KubeError(kind, f"{what}: the agent reports: {error.get('message', '')[:MAX_MESSAGE]}")
        return answer

    def send(self, op: dict, *, what: str, until: float) -> dict:
        return self.result(self.submit(op, what=what, until=until), what=what, until=until)


def openers(clusters: list) -> dict[int, port.Opener]:
    """The member port's "agent" adapter: what each cluster's agent last said of itself is read now (one query for
    them all), the calls go later."""
    agents = {row["cluster_id"]: row for row in Agent.objects.filter(cluster_id__in=[c.pk for c in clusters])
              .values("cluster_id", "last_heartbeat_at", "revoked_at")}
    return {cluster.pk: _opener(cluster, agents.get(cluster.pk)) for cluster in clusters}


def _opener(cluster: Any, agent: Any) -> port.Opener:
    if agent is None:
        def unregistered() -> port.Member:
            raise port.KubeError("config", f"{cluster.name} is reached through an agent, and none is registered")
        return unregistered
    relay = Relay(cluster.pk, cluster.name, agent["last_heartbeat_at"], agent["revoked_at"] is not None)
    return lambda: port.RelayedMember(relay.send, submit=relay.submit, result=relay.result,
                                      changes=lambda: take_changes(cluster.pk))


def report_changes(cluster_id: int, changes: dict[str, str | None]) -> None:
    """Keep what an agent reported changed for the sync it asks for: per LIST path, the whole list it sent, or ""
    (read it through the agent). A newer report of a path replaces an older one: each is the whole list."""
    with client().pipeline() as pipe:
        pipe.hset(_pushed(cluster_id), mapping={path: text or "" for path, text in changes.items()})
        pipe.expire(_pushed(cluster_id), PUSHED_TTL)
        pipe.execute()


def take_changes(cluster_id: int) -> dict[str, str | None]:
    """What was reported since the last sync took it (taken: the next sync finds only what came after)."""
    with client().pipeline() as pipe:  # MULTI: nothing reported between the read and the delete is lost
        pipe.hgetall(_pushed(cluster_id))
        pipe.delete(_pushed(cluster_id))
        reported, _ = pipe.execute()
    return {key.decode(): value.decode() or None for key, value in reported.items()}


# ---------------------------------------------------------------------------------------------
# The agent's side: the endpoints call these


def take(cluster_id: int, *, wait: float, boot: str = "", counted: bool = False) -> list[dict]:
    """Up to MAX_TAKE work items for `cluster_id`, waiting up to `wait` seconds for the first; items whose deadline
    passed are dropped. Items handed out stay in flight until answered: when the agent polls as a new process (its
    `boot` changed: it restarted, maybe mid-apply), the previous one's unanswered items that still have time go back
    to the front of the queue, so the call is carried out by the new process instead of timing out. `counted`: the
    agent's rate (`allow`) is counted in the same round trip, and a refused poll leaves the queue as it was."""
    r = client()
    with r.pipeline(transaction=False) as pipe:  # one round trip for an idle poll
        if counted:
            pipe.incr(_rate(cluster_id))
            pipe.expire(_rate(cluster_id), 2)
        if boot:
            pipe.set(_boot(cluster_id), boot, ex=86400, get=True)
        pipe.lpop(_queue(cluster_id), MAX_TAKE)
        answers = pipe.execute()
    raw: list = answers[-1] or []
    if counted:
        count, _, *answers = answers
        if count > settings.FLEETWEB_AGENT_RATE:
            give_back(cluster_id, raw, boot=boot, previous=answers[0] if boot else None)
            raise too_many("this agent")
    return handed(cluster_id, raw, boot=boot, previous=answers[0] if boot else None, wait=wait)


def handed(cluster_id: int, raw: list, *, boot: str, previous: Any, wait: float = 0) -> list[dict]:
    """What a poll hands out of the `raw` items it popped (`previous`: the boot id it replaced): the last process's
    unanswered items first when the agent restarted, nothing past its deadline, each kept in flight."""
    r = client()
    if restarted(boot, previous):
        _requeue(r, cluster_id)  # what the last process held goes first, then what was just taken
        raw = (r.lpop(_queue(cluster_id), MAX_TAKE) or []) + raw  # type: ignore[operator,assignment]
    if not raw and wait > 0:
        popped = r.blpop([_queue(cluster_id)], timeout=wait)
        raw = [popped[1]] if popped else []
    now = time.time()
    items = [item for item in (json.loads(value) for value in raw) if item.get("deadline", 0) > now]
    if items:
        with r.pipeline() as pipe:
            pipe.hset(_inflight(cluster_id), mapping={item["id"]: json.dumps(item) for item in items})
            pipe.expire(_inflight(cluster_id), 600)
            pipe.execute()
    return items


def restarted(boot: str, previous: Any) -> bool:
    """Whether a poll naming process `boot` replaced another process's id (`previous`, as Redis returned it)."""
    return bool(boot) and isinstance(previous, bytes) and bool(previous) and previous.decode() != boot


def too_many(sender: str) -> AgentError:
    """The refusal of a sender over FLEETWEB_AGENT_RATE requests a second (429)."""
    return AgentError(f"More than {settings.FLEETWEB_AGENT_RATE} requests a second from {sender}.", status=429)


def give_back(cluster_id: int, raw: list, *, boot: str, previous: Any) -> None:
    """Undo a refused poll: the items it popped go back to the front, in order, and the boot id it replaced back."""
    with client().pipeline(transaction=False) as pipe:
        if raw:
            pipe.lpush(_queue(cluster_id), *reversed(raw))
        if restarted(boot, previous):
            pipe.set(_boot(cluster_id), previous, ex=86400)
        pipe.execute()


# The idle poll in one round trip, for an agent whose identity is cached (`agents.services.poll`): the identity is
# read where the credential's digest says, and the cluster it names (never one the request names) has its rate
# counted, its boot id swapped and its queue popped. {0}: no cached identity (nothing done); {2, who}: over the rate
# (nothing popped); {1, who, the boot id replaced, items}.
_POLL_SCRIPT = """
local who = redis.call('GET', KEYS[1])
if not who then return {0} end
local base = ARGV[1] .. ':' .. string.format('%d', cjson.decode(who)[2])
local rate_key = base .. ':rate:' .. ARGV[2]
local rate = redis.call('INCR', rate_key)
if rate == 1 then redis.call('EXPIRE', rate_key, 2) end
if rate > tonumber(ARGV[3]) then return {2, who} end
local previous = ''
if ARGV[4] ~= '' then previous = redis.call('SET', base .. ':boot', ARGV[4], 'EX', 86400, 'GET') or '' end
local items = redis.call('LPOP', base .. ':work', tonumber(ARGV[5])) or {}
return {1, who, previous, items}
"""
_scripts: dict[int, Any] = {}


def take_known(who_key: str, *, boot: str) -> tuple[int, bytes | None, bytes | None, list]:
    """(state, identity, boot id replaced, raw items) of one idle poll's single round trip (`_POLL_SCRIPT`)."""
    pid = os.getpid()
    if pid not in _scripts:
        _scripts.clear()
        _scripts[pid] = client().register_script(_POLL_SCRIPT)
    return _known_answer(_scripts[pid](keys=[who_key], args=_known_args(boot)))


async def take_known_async(who_key: str, *, boot: str) -> tuple[int, bytes | None, bytes | None, list]:
    """`take_known` on the running event loop (the gateway's), with its own asyncio client: an idle poll of a known
    agent then needs no thread."""
    global _async_script
    loop = asyncio.get_running_loop()
    if _async_script is None or _async_script[0] is not loop:  # (a client belongs to the loop it was made on)
        # A burst of polls (two thousand agents woken together) waits for one of a few connections rather than
        # failing: redis-py's default pool refuses the 101st at once ("Too many connections"), which answered one
        # loaded poll in ten with 503 at 2,000 agents.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=ASYNC_CONNECTIONS, timeout=ASYNC_CONNECTION_WAIT,
            socket_connect_timeout=5, socket_timeout=10, health_check_interval=30)
        _async_script = (loop, aioredis.Redis(connection_pool=pool).register_script(_POLL_SCRIPT))
    return _known_answer(await _async_script[1](keys=[who_key], args=_known_args(boot)))


ASYNC_CONNECTIONS = 32  # the gateway loop's connections for idle polls; more would only queue inside Redis
ASYNC_CONNECTION_WAIT = 10  # seconds a poll waits for one before it answers 503 (the agent retries)


_async_script: tuple[asyncio.AbstractEventLoop, Any] | None = None


def _known_args(boot: str) -> list:
    return [PREFIX, int(time.time()), settings.FLEETWEB_AGENT_RATE, boot, MAX_TAKE]


def _known_answer(answer: list) -> tuple[int, bytes | None, bytes | None, list]:
    state = int(answer[0])
    if state != 1:
        return state, answer[1] if len(answer) > 1 else None, None, []
    return state, answer[1], answer[2], list(answer[3] or [])


def _requeue(r: redis.Redis, cluster_id: int) -> None:
    held: dict = r.hgetall(_inflight(cluster_id))  # type: ignore[assignment]
    r.delete(_inflight(cluster_id))
    now = time.time()
    again = [value for key, value in held.items()
             if r.exists(_owner(key.decode())) and json.loads(value).get("deadline", 0) > now]
    if again:
        r.lpush(_queue(cluster_id), *reversed(again))


def answer(cluster_id: int, results: Any) -> dict:
    """Deliver an agent's answers: each to the call waiting for it, once. An answer to another cluster's item is
    refused (403) and nothing is delivered; to an unknown or answered one it is ignored (a replay, a resend after a
    restart, a call that gave up)."""
    if not isinstance(results, list) or len(results) > MAX_RESULTS:
        raise AgentError(f"'results' is a list of at most {MAX_RESULTS} answers.", field="results")
    checked = [_checked(result) for result in results]
    r = client()
    owners = r.mget([_owner(item_id) for item_id, _ in checked]) if checked else []
    if any(owner is not None and int(owner) != cluster_id for owner in owners):
        raise AgentError("An answer names work that is not this cluster's.", status=403)
    delivered = ignored = 0
    for (item_id, payload), owner in zip(checked, owners, strict=True):
        if owner is None or not r.delete(_owner(item_id)):  # the first DELETE wins: an answer counts once
            ignored += 1
            continue
        with r.pipeline() as pipe:
            pipe.hdel(_inflight(cluster_id), item_id)
            pipe.rpush(_result(item_id), payload)
            pipe.expire(_result(item_id), 60)
            pipe.execute()
        delivered += 1
    return {"delivered": delivered, "ignored": ignored}


def _checked(result: Any) -> tuple[str, str]:
    """(item id, the answer as the waiting call reads it) of one answer, in the schema, else AgentError."""
    if not isinstance(result, dict):
        raise AgentError("Each answer is an object.", field="results")
    item_id = protocol.field(result, "id", str, max_length=32)
    if len(item_id) != 32 or any(c not in "0123456789abcdef" for c in item_id):
        raise AgentError("An answer's 'id' is not a work item's.", field="results")
    error = protocol.field(result, "error", dict, required=False)
    if error is not None:
        return item_id, json.dumps({"error": {
            "kind": protocol.field(error, "kind", str, max_length=32),
            "message": protocol.field(error, "message", str, max_length=2000)[:MAX_MESSAGE]}})
    status = protocol.field(result, "status", int)
    if not 100 <= status <= 599:
        raise AgentError("An answer's 'status' is not an HTTP status.", field="results")
    payload: dict = {"status": status}
    if "lines" in result:
        lines = protocol.field(result, "lines", list)
        if not all(isinstance(line, str) for line in lines):
            raise AgentError("An answer's 'lines' are strings.", field="results")
        payload["lines"] = lines
    else:
        payload["body"] = protocol.field(result, "body", str, max_length=settings.FLEETWEB_AGENT_MAX_BODY_BYTES)
    return item_id, json.dumps(payload)


def allow(who: int | str) -> bool:
    """Whether this agent (a cluster id), or this address (the doors before a credential: "ip:<address>"), is within
    FLEETWEB_AGENT_RATE requests a second (one counter per sender and second, so a flood from one is refused with 429
    while the others go on)."""
    with client().pipeline(transaction=False) as pipe:
        pipe.incr(_rate(who))
        pipe.expire(_rate(who), 2)
        count, _ = pipe.execute()
    return count <= settings.FLEETWEB_AGENT_RATE


def _rate(who: int | str) -> str:
    return f"{PREFIX}:{who}:rate:{int(time.time())}"
