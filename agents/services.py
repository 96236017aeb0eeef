"""Every side effect of registered clusters: bootstrap tokens, registrations and their decision, the agents'
credentials (pickup, renewal, revocation) and heartbeats. Pages, the API and the agent endpoints call these; the
people's doors check `register_cluster` (global admins), the agents' doors check the agent's credential and key.

The two keys: an admin hands out a single-use bootstrap token (it expires, FLEETWEB_AGENT_BOOTSTRAP_TTL); the agent
presents it with the public half of a key pair it made and what identifies its cluster, and waits as *pending*; an
admin accepts (a member is made) or rejects it. Only then may the holder of that key pick up a credential, which
lasts FLEETWEB_AGENT_CREDENTIAL_TTL, is renewed by the agent at half its life and is useless without the key."""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from agents import protocol, relay
from agents.models import Agent, BootstrapToken, Registration, RegistrationState
from agents.protocol import AgentError
from foundation import outbound
from foundation.audit import record
from inventory import history, kinds, services, sync
from inventory.choices import ClusterEventKind, ClusterStatus, Environment
from inventory.models import Cluster
from inventory.people.access import require

log = logging.getLogger(__name__)

ADMIN_ONLY = "Registering clusters needs the global admin role."


# ---------------------------------------------------------------------------------------------
# Bootstrap tokens (people)


def create_bootstrap_token(*, user, name: str, environment: str = Environment.DEV, ttl: int | None = None,
                           source_ip: str = "") -> tuple[BootstrapToken, str]:
    """A single-use token for one agent to register the cluster `name`; the secret is returned once, here."""
    require(user, "register_cluster", message=ADMIN_ONLY)
    if environment not in Environment.values:
        raise AgentError(f"'{environment}' is not an environment ({', '.join(Environment.values)}).",
                         field="environment")
    taken = services.cluster_name_taken(name) or name_waiting(name)
    if taken:
        raise AgentError(taken, field="name", status=409)
    ttl = ttl or settings.FLEETWEB_AGENT_BOOTSTRAP_TTL
    if not 60 <= ttl <= 7 * 86400:
        raise AgentError("A bootstrap token lasts between 60 seconds and 7 days.", field="ttl")
    secret = protocol.new_secret(protocol.BOOTSTRAP_PREFIX)
    with transaction.atomic():
        token = BootstrapToken.objects.create(
            digest=protocol.digest(secret), prefix=secret[:10], name=name, environment=environment,
            created_by=user if getattr(user, "pk", None) else None,
            expires_at=timezone.now() + datetime.timedelta(seconds=ttl))
        record(user=user, action="agent.token.create", target=token, source_ip=source_ip,
               after={"name": name, "environment": environment, "expires_at": token.expires_at.isoformat(),
                      "prefix": token.prefix})
    return token, secret


def name_waiting(name: str) -> str:
    """Why `name` is already spoken for by an open bootstrap token or a pending registration, or ''."""
    now = timezone.now()
    if BootstrapToken.objects.filter(name=name, used_at__isnull=True, revoked_at__isnull=True,
                                     expires_at__gt=now).exists():
        return f"An unused bootstrap token for '{name}' exists already: revoke it first."
    if Registration.objects.filter(name=name, state=RegistrationState.PENDING).exists():
        return f"A registration of '{name}' is waiting for a decision already."
    return ""


def usable(token: BootstrapToken) -> bool:
    return token.used_at is None and token.revoked_at is None and token.expires_at > timezone.now()


def revoke_bootstrap_token(token: BootstrapToken, *, user, source_ip: str = "") -> None:
    require(user, "register_cluster", message=ADMIN_ONLY)
    with transaction.atomic():
        updated = BootstrapToken.objects.filter(pk=token.pk, used_at__isnull=True, revoked_at__isnull=True).update(
            revoked_at=timezone.now())
        if not updated:
            raise AgentError("That bootstrap token was used or revoked already.", status=409)
        record(user=user, action="agent.token.revoke", target=token, source_ip=source_ip)


# ---------------------------------------------------------------------------------------------
# Registration (the agent) and the decision (people)


def register(body: dict, *, signature: dict, source_ip: str = "") -> Registration:
    """An agent presents a bootstrap token, its public key and its cluster's identity (signed with that key). The
    token is spent whatever follows; the registration waits for an admin."""
    secret = protocol.field(body, "bootstrap_token", str, max_length=80)
    key = protocol.field(body, "public_key", str, max_length=64)
    protocol.public_key(key)
    protocol.verify(key, **signature)  # proof that the sender holds the key it presents
    identity = protocol.field(body, "identity", dict)
    ca = protocol.field(identity, "ca_fingerprint", str, max_length=95)
    uid = protocol.field(identity, "kube_system_uid", str, max_length=64)
    version = protocol.field(identity, "kubernetes_version", str, max_length=64, required=False, default="")
    nodes = protocol.field(identity, "node_count", int, required=False, default=0)
    server = protocol.field(identity, "server", str, max_length=512, required=False, default="")
    agent_version = protocol.field(body, "agent_version", str, max_length=32, required=False, default="")
    try:
        server = outbound.check_url(server, schemes=("https",), what="API server URL").url if server else ""
    except outbound.OutboundRefused:
        server = ""  # only shown: the hub never dials an agent's cluster
    with transaction.atomic():
        token = BootstrapToken.objects.select_for_update().filter(digest=protocol.digest(secret)).first()
        now = timezone.now()
        if token is None or token.revoked_at or token.expires_at <= now:
            raise AgentError("The bootstrap token is unknown, revoked or expired: ask an admin for a new one.",
                             status=401)
        if token.used_at:  # recorded, and refused once this transaction (which a raise would undo) commits
            record(user=None, action="agent.token.reused", target=token, source_ip=source_ip)
            registration = None
        else:
            token.used_at = now
            token.save(update_fields=["used_at"])
            registration = Registration.objects.create(
                token=token, name=token.name, environment=token.environment, public_key=key, ca_fingerprint=ca,
                kube_system_uid=uid, kubernetes_version=version, node_count=max(0, min(nodes, 10**6)),
                server=server, agent_version=agent_version, source_ip=source_ip or None)
            record(user=None, action="agent.register", target=registration, source_ip=source_ip,
                   after=registration_view(registration))
    if registration is None:
        raise AgentError("The bootstrap token was used already (each is good for one registration).", status=401)
    return registration


def registration_view(registration: Registration) -> dict:
    """What the audit log and the API keep of a registration (no secret is part of one)."""
    return {"name": registration.name, "environment": registration.environment, "state": registration.state,
            "ca_fingerprint": registration.ca_fingerprint, "kube_system_uid": registration.kube_system_uid,
            "kubernetes_version": registration.kubernetes_version, "node_count": registration.node_count,
            "agent_version": registration.agent_version}


def decide(registration: Registration, *, accept: bool, user, source_ip: str = "") -> Registration:
    """Accept (the cluster becomes a member reached through its agent) or reject a pending registration."""
    require(user, "register_cluster", message=ADMIN_ONLY)
    with transaction.atomic():
        locked = Registration.objects.select_for_update().get(pk=registration.pk)
        if locked.state != RegistrationState.PENDING:
            raise AgentError(f"This registration was {locked.state} already.", status=409)
        locked.decided_at, locked.decided_by = timezone.now(), user if getattr(user, "pk", None) else None
        if accept:
            cluster = services.add_registered_cluster(name=locked.name, environment=locked.environment,
                                                      server=locked.server, user=user, source_ip=source_ip,
                                                      kubernetes_version=locked.kubernetes_version)
            # No credential yet: the key's holder picks one up (a placeholder digest nobody holds, expired).
            Agent.objects.create(cluster=cluster, public_key=locked.public_key, version=locked.agent_version,
                                 credential_digest=protocol.digest(protocol.new_secret("unused_")),
                                 credential_expires_at=locked.decided_at)
            locked.cluster, locked.state = cluster, RegistrationState.ACCEPTED
        else:
            locked.state = RegistrationState.REJECTED
        locked.save(update_fields=["state", "decided_at", "decided_by", "cluster"])
        record(user=user, action=f"agent.registration.{locked.state}", target=locked, source_ip=source_ip,
               after=registration_view(locked))
    return locked


# ---------------------------------------------------------------------------------------------
# Credentials (the agent) and revocation (people)


def _issue(agent: Agent, *, keep_previous: bool) -> tuple[str, datetime.datetime]:
    secret = protocol.new_secret(protocol.CREDENTIAL_PREFIX)
    expires = timezone.now() + datetime.timedelta(seconds=settings.FLEETWEB_AGENT_CREDENTIAL_TTL)
    Agent.objects.filter(pk=agent.pk).update(
        previous_digest=agent.credential_digest if keep_previous else "",
        credential_digest=protocol.digest(secret), credential_expires_at=expires)
    forget(agent.credential_digest, agent.previous_digest)
    return secret, expires


def pickup(registration: Registration, *, signature: dict, source_ip: str = "", held: float | None = None) -> dict:
    """What the agent that made `registration` learns when it asks (signed with its key): still pending, rejected,
    or accepted with its first credential. Until that credential is first used, asking again issues a new one (a
    lost answer strands nobody); after that, only renewal with the credential and the key gets another."""
    protocol.verify(registration.public_key, **signature)
    if registration.state == RegistrationState.PENDING:
        return {"state": "pending"}
    if registration.state == RegistrationState.REJECTED or registration.cluster_id is None:
        raise AgentError("This registration was rejected (or its cluster detached): register again with a new "
                         "bootstrap token.", status=403)
    with transaction.atomic():
        agent = Agent.objects.select_for_update().select_related("cluster").get(cluster_id=registration.cluster_id)
        if agent.revoked_at:
            raise AgentError("This agent's credential was revoked: register again with a new bootstrap token.",
                             status=403)
        if agent.last_heartbeat_at is not None:  # the agent's first act with a credential is a heartbeat
            raise AgentError("A credential was picked up and used already: renew it, or register again.", status=409)
        secret, expires = _issue(agent, keep_previous=False)
        record(user=None, action="agent.credential.pickup", target=agent.cluster, source_ip=source_ip)
    return {"state": "accepted", "cluster": agent.cluster.name, "credential": secret,
            "expires_at": expires.isoformat(), **intervals(held=held)}


# While work is flowing (an item came in the last BUSY_FOR seconds, or the hub answered a report by saying it will ask
# for more), the agent polls every BUSY_POLL seconds instead of every FLEETWEB_AGENT_POLL: a full read through the
# agent is a few dozen calls one after another, and each waits for the next poll.
BUSY_POLL = 0.1


def intervals(*, held: float | None = None) -> dict:
    """How often the agent heartbeats and polls, when it renews, and the kinds it watches (the hub decides; the agent
    follows). `held`: the server answering holds every poll up to that many seconds until work comes (the agents'
    gateway, `agents.gateway`), so the agent polls again as soon as an answer comes, idle or busy; otherwise it polls
    every FLEETWEB_AGENT_POLL seconds, and while work flows every BUSY_POLL held up to FLEETWEB_AGENT_POLL_HOLD."""
    hold = settings.FLEETWEB_AGENT_POLL_HOLD if held is None else held
    return {"heartbeat_seconds": settings.FLEETWEB_AGENT_HEARTBEAT, "poll_seconds": settings.FLEETWEB_AGENT_POLL,
            "busy_poll_seconds": BUSY_POLL, "poll_hold_seconds": hold, "idle_hold_seconds": held or 0,
            "renew_after_seconds": settings.FLEETWEB_AGENT_CREDENTIAL_TTL // 2,
            "watch": [kind.path for kind in kinds.KINDS],
            # kinds whose lists a report of the first sends along (the hub's fold of the first reads them)
            "send_with": {kind.path: [kinds.BY_NAME[need].path for need in kind.needs]
                          for kind in kinds.KINDS if kind.needs}}


@dataclasses.dataclass(frozen=True)
class Caller:
    """The agent behind a request, as its doors need it (read in one plain query, or for a poll from its Redis copy:
    polls are the fleet's most frequent request)."""

    pk: int
    cluster_id: int
    public_key: str
    credential_digest: str
    previous_digest: str
    credential_expires_at: datetime.datetime
    revoked_at: datetime.datetime | None
    last_heartbeat_at: datetime.datetime | None
    cluster_status: str


CALLER_SQL = (
    f"SELECT a.id, a.cluster_id, a.public_key, a.credential_digest, a.previous_digest, a.credential_expires_at, "
    f"a.revoked_at, a.last_heartbeat_at, c.status FROM {Agent._meta.db_table} a "
    f"JOIN {Cluster._meta.db_table} c ON c.id = a.cluster_id WHERE a.credential_digest = %s OR a.previous_digest = %s "
    f"ORDER BY (a.credential_digest = %s) DESC LIMIT 1")


WHO_TTL = 60  # seconds a poll's cached identity lasts at most (every change to it drops it at once: `forget`)


def _who(digest: str) -> str:
    return f"{relay.PREFIX}:who:{digest}"


def forget(*digests: str) -> None:
    """Drop the polls' cached identities of these credential digests, once the transaction that changed the agent
    commits (revocation, renewal, a new credential, the end of the previous one, detaching)."""
    keys = [_who(digest) for digest in digests if digest]

    def drop() -> None:
        try:
            relay.client().delete(*keys)
        except redis.RedisError:  # then polls fail too (the relay is in Redis), and the entry ends within WHO_TTL
            log.warning("could not drop %d cached agent identities", len(keys))

    if keys:
        transaction.on_commit(drop)


def _caller(row: list) -> Caller:
    values = list(row)
    for index in (5, 6, 7):  # credential_expires_at, revoked_at, last_heartbeat_at
        if isinstance(values[index], str):
            values[index] = datetime.datetime.fromisoformat(values[index])
    return Caller(*values)


def agent_of(credential: str, *, cached: bool = False) -> Caller:
    """The agent whose current (or just-renewed) credential this is; AgentError 401 when there is none, or it was
    revoked (or its cluster detached), or it expired. The request's signature is checked next (`check_signature`).

    `cached`: the poll for work, the fleet's most frequent request, reads it from Redis (kept WHO_TTL seconds,
    dropped by every change to what it holds) instead of the database; its cluster's status there may be older."""
    if not credential.startswith(protocol.CREDENTIAL_PREFIX):
        raise AgentError("No agent credential (Authorization: Bearer fwa_…).", status=401)
    key = protocol.digest(credential)
    found = relay.client().get(_who(key)) if cached else None
    if found is not None:
        agent = _caller(json.loads(found))
    else:
        with connection.cursor() as cursor:
            cursor.execute(CALLER_SQL, [key, key, key])
            row = cursor.fetchone()
        if row is None:
            raise AgentError("The agent credential is unknown (its cluster detached, or replaced by a renewal).",
                             status=401)
        agent = Caller(*row)
        if cached:
            relay.client().set(_who(key), json.dumps(dataclasses.astuple(agent), default=str), ex=WHO_TTL)
    _still_good(agent, key)
    if len(_KEYS) > MAX_KEYS:
        _KEYS.clear()
    _KEYS[key] = agent.public_key
    return agent


def _still_good(agent: Caller, key: str) -> None:
    if agent.revoked_at:
        raise AgentError("This agent's credential was revoked: register again with a new bootstrap token.",
                         status=401)
    if agent.credential_digest == key and agent.credential_expires_at <= timezone.now():
        raise AgentError("The agent credential expired: register again with a new bootstrap token.", status=401)


# Each credential digest's public key, once seen in this process (a digest belongs to one agent, whose key never
# changes): the idle poll checks the signature before it touches Redis, then does the rest in one round trip.
_KEYS: dict[str, str] = {}
MAX_KEYS = 100_000


def poll(credential: str, *, signature: dict, boot: str, wait: float) -> list[dict]:
    """The poll for work: the items handed out (`poll_of`)."""
    return poll_of(credential, signature=signature, boot=boot, wait=wait)[1]


def poll_of(credential: str, *, signature: dict, boot: str, wait: float) -> tuple[int, list[dict]]:
    """The poll for work, answering (the asking agent's cluster id, its items): who is asking (credential, key,
    revocation, expiry, rate), then its cluster's items (`relay.take`). For an agent seen before whose identity is
    cached, an idle poll is one Redis round trip (`relay.take_known`, after the signature was checked against the key
    this process saw; the gateway makes that trip on its event loop, `relay.take_known_async`); anything else takes
    the path of every other door (`poll_slow`), with the same refusals."""
    who_key = known_poll(credential, signature=signature) if wait <= 0 else None
    if who_key is not None:
        found = after_known(credential, relay.take_known(who_key, boot=boot), boot=boot)
        if found is not None:
            return found
    return poll_slow(credential, signature=signature, boot=boot, wait=wait)


def known_poll(credential: str, *, signature: dict) -> str | None:
    """The Redis key of the cached identity of an agent this process has seen, once the request's signature checks
    against that agent's key (refused here, before Redis is touched); None for an agent not seen here. No I/O."""
    if not credential.startswith(protocol.CREDENTIAL_PREFIX):
        raise AgentError("No agent credential (Authorization: Bearer fwa_…).", status=401)
    key = protocol.digest(credential)
    public = _KEYS.get(key)
    if public is None:
        return None
    protocol.verify(public, **signature)
    return _who(key)


class NeedsThread(Exception):
    """`after_known(inline=True)` would touch the database or Redis: run it again in a thread."""


def after_known(credential: str, answer: tuple[int, bytes | None, bytes | None, list], *, boot: str,
                inline: bool = False) -> tuple[int, list[dict]] | None:
    """The rest of an idle poll after its round trip (`relay.take_known`'s answer): the agent's checks, then the items
    handed out; None when no identity was cached (then `poll_slow`). `inline` (the gateway's event loop): raise
    NeedsThread instead of touching Redis or the database, which happens only when items were popped, the agent
    restarted, its credential is refused, or a renewed one is used for the first time."""
    state, who, previous, raw = answer
    if state == 2:
        raise relay.too_many("this agent")
    if state != 1 or who is None:
        return None
    if inline and (raw or relay.restarted(boot, previous)):
        raise NeedsThread
    key = protocol.digest(credential)
    agent = _caller(json.loads(who))
    try:
        _still_good(agent, key)
        if _first_used(agent, key):
            if inline:
                raise NeedsThread
            _first_use(agent, credential)  # (the signature was checked by known_poll)
    except AgentError:
        if inline:
            raise NeedsThread from None
        relay.give_back(agent.cluster_id, raw, boot=boot, previous=previous)
        raise
    return agent.cluster_id, relay.handed(agent.cluster_id, raw, boot=boot, previous=previous)


def poll_slow(credential: str, *, signature: dict, boot: str, wait: float) -> tuple[int, list[dict]]:
    """The poll of an agent whose identity is not cached here: every check of the other doors (`agent_of`,
    `check_signature`), then its items (`relay.take`)."""
    agent = agent_of(credential, cached=True)
    check_signature(agent, credential, signature=signature)
    return agent.cluster_id, relay.take(agent.cluster_id, wait=wait, boot=boot, counted=True)


def check_signature(agent: Caller, credential: str, *, signature: dict) -> None:
    """Refuse (401) a request not signed with the agent's key; the first use of a renewed credential ends the one
    it replaced."""
    protocol.verify(agent.public_key, **signature)
    _first_use(agent, credential)


def _first_used(agent: Caller, key: str) -> bool:
    """Whether credential digest `key` is a renewed credential used for the first time."""
    return bool(agent.previous_digest and agent.credential_digest == key)


def _first_use(agent: Caller, credential: str) -> None:
    """A renewed credential's first (signed) use ends the one it replaced."""
    if _first_used(agent, protocol.digest(credential)):
        with transaction.atomic():
            Agent.objects.filter(pk=agent.pk).update(previous_digest="")
            forget(agent.previous_digest, agent.credential_digest)


def renew(agent: Caller, *, presented: str, held: float | None = None) -> dict:
    """A new credential for an authenticated agent (the old one lasts until the new one is first used)."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        if locked.credential_digest != protocol.digest(presented):
            raise AgentError("Renew with the newest credential.", status=409)
        secret, expires = _issue(locked, keep_previous=True)
    return {"credential": secret, "expires_at": expires.isoformat(), **intervals(held=held)}


def revoke(cluster: Cluster, *, user, source_ip: str = "") -> None:
    """Cut an agent off: its next request is refused; the cluster stays, unreachable, until detached or
    registered again."""
    require(user, "register_cluster", message=ADMIN_ONLY)
    with transaction.atomic():
        digests = list(Agent.objects.filter(cluster=cluster, revoked_at__isnull=True)
                       .values_list("credential_digest", "previous_digest"))
        updated = Agent.objects.filter(cluster=cluster, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if not updated:
            raise AgentError(f"{cluster.name} has no agent with a live credential.", status=409)
        forget(*(digest for pair in digests for digest in pair))
        record(user=user, action="agent.revoke", target=cluster, source_ip=source_ip)
        history.record(history.event(cluster.pk, ClusterEventKind.CREDENTIALS, "agent credential revoked",
                                     actor=user.get_username() if getattr(user, "pk", None) else ""))


# ---------------------------------------------------------------------------------------------
# Heartbeats


MAX_REPORT_TEXT = 500


def heartbeat(agent: Caller, body: dict, *, held: float | None = None) -> dict:
    """What the agent says of itself every FLEETWEB_AGENT_HEARTBEAT seconds: its version, its permission check and
    its last error. One UPDATE."""
    version = protocol.field(body, "agent_version", str, max_length=32, required=False, default="")
    error = protocol.field(body, "last_error", str, max_length=4000, required=False, default="")
    checks = protocol.field(body, "checks", list, required=False, default=[])
    if len(checks) > 64:
        raise AgentError("At most 64 checks.", field="checks")
    report_checks = []
    for check in checks:
        if not isinstance(check, dict):
            raise AgentError("Each check is an object.", field="checks")
        report_checks.append({"name": protocol.field(check, "name", str, max_length=200),
                              "ok": protocol.field(check, "ok", bool),
                              "detail": protocol.field(check, "detail", str, max_length=MAX_REPORT_TEXT,
                                                       required=False, default="")})
    now = timezone.now()
    Agent.objects.filter(pk=agent.pk).update(
        version=version, last_heartbeat_at=now,
        report={"checks": report_checks, "last_error": error[:MAX_REPORT_TEXT], "at": now.isoformat()})
    # The hub has not heard from it (its first heartbeat, or the first after an outage): it reports every kind, with
    # the lists its watches kept (resumed where they were, so the cluster is not listed again), and the sync of
    # those makes the cluster reachable again. Until it does, each heartbeat asks again.
    fresh = agent.last_heartbeat_at is None or agent.cluster_status == ClusterStatus.UNREACHABLE
    return {"ok": True, **({"report_all": True} if fresh else {}), **intervals(held=held)}


def changed(agent: Caller, body: dict) -> dict:
    """The agent saw collected kinds change. With each kind's path it may send the kind's whole list from its watch
    cache ("lists": {path: the LIST's JSON text}); the sync then reads that instead of asking the agent (a kind named
    without a list is read through it).

    When every list the sync needs was sent, the write is gathered (`inventory.sync.gather_reported`): a worker writes
    it within half a second, with the other clusters reported meanwhile, so the agent's request costs a few
    milliseconds whatever the write costs. Otherwise a sync of its own is queued, which asks the agent for the rest
    (and waits for a sync already holding the cluster, `inventory.tasks.sync_cluster`). The answer says `queued`, and
    whether the hub will ask the agent for anything (`pull`: the agent polls quickly meanwhile); `written` is always
    false (kept for agents that read it)."""
    paths = protocol.field(body, "kinds", list)
    known = {kind.path for kind in kinds.KINDS}
    if not paths or len(paths) > len(known) or not all(isinstance(p, str) and p in known for p in paths):
        raise AgentError("'kinds' lists collected kinds' paths (those the heartbeat answer names).", field="kinds")
    lists = protocol.field(body, "lists", dict, required=False, default={})
    if not all(path in paths and isinstance(text, str) and text for path, text in lists.items()):
        raise AgentError("'lists' maps paths named in 'kinds' to the JSON text of each kind's whole list.",
                         field="lists")
    relay.report_changes(agent.cluster_id, {path: lists.get(path) for path in paths})
    read = {kinds.BY_NAME[name].path for name in kinds.closure(kinds.by_path(paths))}
    pull = any(path not in lists for path in read)
    if pull:
        services.request_sync(agent.cluster_id, triggered_by=services.SYNC_AFTER_CHANGE)
    else:
        sync.gather_reported(agent.cluster_id)
    return {"written": False, "queued": True, "pull": pull}


def silent_agents(*, now=None) -> int:
    """Agents not heard for two heartbeat intervals make their clusters unreachable, saying since when (run by beat:
    never stale-green). One locking SELECT, one UPDATE per cluster, History rows together."""
    now = now or timezone.now()
    limit = now - datetime.timedelta(seconds=2 * settings.FLEETWEB_AGENT_HEARTBEAT)
    with transaction.atomic():
        rows = list(Cluster.objects.filter(agent__isnull=False, agent__last_heartbeat_at__lt=limit)
                    .exclude(status=ClusterStatus.UNREACHABLE)
                    .select_for_update(of=("self",), skip_locked=True)
                    .values_list("pk", "status", "agent__last_heartbeat_at"))
        events = []
        for pk, old, since in rows:
            reason = protocol.silence_reason(since)
            Cluster.objects.filter(pk=pk).update(status=ClusterStatus.UNREACHABLE, status_reason=reason[:255],
                                                 status_changed_at=now, updated_at=now,
                                                 consecutive_failures=F("consecutive_failures") + 1)
            events.append(history.status_change(pk, old, ClusterStatus.UNREACHABLE, reason, at=now))
        history.record(*events)
    return len(rows)
