"""The agents' doors under /agent/v1/: register, learn the decision, heartbeat, renew, poll for work, answer it.

No session, no CSRF (an agent is no browser): every request but the first registration is signed with the agent's
key, and every one after acceptance carries its credential (`services.agent_of`). Each door reads at most
FLEETWEB_AGENT_MAX_BODY_BYTES (answers, reported changes) or SMALL_BODY (everything else), is rate-limited per agent,
and answers errors as `{"error": message}` with no other side's words in them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from agents import manifests, protocol, relay, services
from agents.models import BootstrapToken, Registration
from agents.protocol import AgentError
from agents.services import Caller
from foundation.web import client_ip

log = logging.getLogger(__name__)

SMALL_BODY = 64 * 1024
HOLD_KEY = "fleetweb.poll_hold"  # in a request's META: the seconds its server holds a poll (the agents' gateway)


def _body(request: HttpRequest, limit: int) -> bytes:
    """At most `limit` bytes of the body, refused (413) past it without reading it all."""
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise AgentError(f"The request body is larger than {limit} bytes.", status=413)
    data = request.read(limit + 1)
    if len(data) > limit:
        raise AgentError(f"The request body is larger than {limit} bytes.", status=413)
    return data


def held(request: HttpRequest) -> float | None:
    """How long the server answering holds a poll waiting for work, when it says so (the agents' gateway puts it in
    the request: `agents.gateway.HOLD_KEY`); None: FLEETWEB_AGENT_POLL_HOLD, the web tier's."""
    hold = request.META.get(HOLD_KEY)
    return float(hold) if hold is not None else None


def _signature(request: HttpRequest, body: bytes) -> dict:
    return {"method": request.method or "GET", "path": request.get_full_path(), "body": body,
            "date": request.headers.get("X-Fleetweb-Date", ""),
            "signature": request.headers.get("X-Fleetweb-Signature", "")}


def door(limit: int | None = SMALL_BODY, *, methods: tuple[str, ...] = ("POST",), agent: bool = True) -> Callable:
    """An agent door: its methods and body cap; with `agent`, the credential is checked (and the agent's rate) before
    the body is read, and the signature over it after; AgentError becomes its status and message as JSON. Without
    `agent`, the view checks who is asking itself (registration, and the poll for work: `services.poll`)."""

    def decorator(view: Callable) -> Callable:
        @csrf_exempt
        @require_http_methods(list(methods))
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            cap = settings.FLEETWEB_AGENT_MAX_BODY_BYTES if limit is None else limit
            try:
                if not agent:
                    if not relay.allow(f"ip:{client_ip(request)}"):
                        raise relay.too_many("this address")
                    return view(request, _body(request, cap), *args, **kwargs)
                credential = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
                found = services.agent_of(credential)
                if not relay.allow(found.cluster_id):
                    raise relay.too_many("this agent")
                body = _body(request, cap)
                services.check_signature(found, credential, signature=_signature(request, body))
                return view(request, body, found, *args, **kwargs)
            except AgentError as exc:
                return _refusal(exc)
        return wrapper
    return decorator


def _refusal(exc: AgentError) -> JsonResponse:
    response = JsonResponse({"error": exc.message}, status=exc.status)
    if exc.status == 429:
        response["Retry-After"] = "1"
    return response


@door(agent=False)
def register(request: HttpRequest, body: bytes) -> JsonResponse:
    data = protocol.parse_body(body, limit=SMALL_BODY)
    registration = services.register(data, signature=_signature(request, body), source_ip=client_ip(request))
    return JsonResponse({"registration": str(registration.id), "state": registration.state}, status=201)


@door(methods=("GET",), agent=False)
def registration(request: HttpRequest, body: bytes, registration_id) -> JsonResponse:
    found = Registration.objects.filter(pk=registration_id).first()
    if found is None:
        raise AgentError("No such registration.", status=404)
    return JsonResponse(services.pickup(found, signature=_signature(request, body), source_ip=client_ip(request),
                                        held=held(request)))


@door()
def heartbeat(request: HttpRequest, body: bytes, agent: Caller) -> JsonResponse:
    return JsonResponse(services.heartbeat(agent, protocol.parse_body(body, limit=SMALL_BODY), held=held(request)))


@door(limit=None)
def changes(request: HttpRequest, body: bytes, agent: Caller) -> JsonResponse:
    """What changed, with the changed kinds' whole lists (a large body, like answers: read after the credential)."""
    data = protocol.parse_body(body, limit=settings.FLEETWEB_AGENT_MAX_BODY_BYTES)
    return JsonResponse(services.changed(agent, data))


@door()
def credential(request: HttpRequest, body: bytes, agent: Caller) -> JsonResponse:
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return JsonResponse(services.renew(agent, presented=presented, held=held(request)))


@csrf_exempt
@require_http_methods(["GET"])
def work(request: HttpRequest) -> JsonResponse:
    """The poll for work: who is asking and what is theirs, in `services.poll` (the fleet's most frequent request:
    an idle one is one Redis round trip)."""
    try:
        try:
            wait = max(0.0, min(float(request.GET.get("wait", "0")), settings.FLEETWEB_AGENT_POLL_HOLD))
        except ValueError:
            raise AgentError("'wait' is a number of seconds.", field="wait") from None
        credential = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        items = services.poll(credential, signature=_signature(request, b""), wait=wait,
                              boot=request.GET.get("boot", "")[:64])
    except AgentError as exc:
        return _refusal(exc)
    return JsonResponse({"items": items})


@door(limit=None)
def answers(request: HttpRequest, body: bytes, agent: Caller) -> JsonResponse:
    """The answers to work items: the one door with a large body (a LIST page), read only after the credential
    passed, so an unauthenticated sender cannot make the hub read megabytes."""
    data = protocol.parse_body(body, limit=settings.FLEETWEB_AGENT_MAX_BODY_BYTES)
    return JsonResponse(relay.answer(agent.cluster_id, data.get("results")))


@csrf_exempt
@require_http_methods(["GET"])
def manifest(request: HttpRequest) -> HttpResponse:
    """The agent's manifest for `kubectl apply -f <this URL>`: the bootstrap token in the query is checked (not
    spent: registering spends it) and written into the manifest's bootstrap Secret."""
    if not relay.allow(f"ip:{client_ip(request)}"):
        return HttpResponse("Too many requests from this address.\n", status=429, content_type="text/plain",
                            headers={"Retry-After": "1"})
    secret = request.GET.get("token", "")
    token = BootstrapToken.objects.filter(digest=protocol.digest(secret)).first() if secret else None
    if token is None or not services.usable(token):
        return HttpResponse("The bootstrap token is unknown, used, revoked or expired: ask an admin for a new one.\n",
                            status=401, content_type="text/plain")
    return HttpResponse(manifests.agent_manifest(hub_url=manifests.hub_url(request), bootstrap_token=secret),
                        content_type="application/yaml")
