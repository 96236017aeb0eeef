"""Small request helpers shared by pages, API and signals."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.http.response import HttpResponseBase

from foundation import untrusted
from foundation.errors import ServiceError

# The cyclic garbage collector in a web process: a full collection walks every object the process holds (about
# 170,000 once Django, DRF and every view are loaded, about 100 ms on the benchmark's 2 cores), and under Python's
# default thresholds one ran every few requests of a large API page, which made that request's p95 (the compliance
# per cluster API at 10,000 clusters: p50 40 ms, p95 200-300 ms, each slow one a full collection). What is loaded at
# start is moved out of the collector's sight (`gc.freeze`), and collections run less often; request garbage is
# mostly freed by reference counting anyway.
WEB_GC_THRESHOLDS = (50_000, 50, 50)


def settle_web_process() -> None:
    """Load every URL pattern (so every view module), then freeze what is loaded and set WEB_GC_THRESHOLDS; the WSGI
    entry point calls it once per process."""
    import gc

    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module now, not at the first request
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WEB_GC_THRESHOLDS)


def _within(address: str, networks: list) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


def client_ip(request) -> str:
    """The address a request came from ('' without a request): the WSGI server's peer, or, when that peer is one of
    FLEETWEB_TRUSTED_PROXIES, the nearest X-Forwarded-For hop that is not a trusted proxy (hops left of it were
    written by the client and are never believed). Audit rows and login lock-outs use it."""
    if request is None:
        return ""
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = [ipaddress.ip_network(net, strict=False) for net in settings.FLEETWEB_TRUSTED_PROXIES]
    if not proxies or not _within(remote, proxies):
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return remote  # not an address: the proxy did not write it, so nothing left of it is known
        if not _within(hop, proxies):
            return hop
    return hops[0] if hops else remote


class ServerTimingMiddleware:
    """`Server-Timing: app;dur=…` on every response: the time Django spent, visible in browser dev tools
    and read by the benchmarks (it excludes time spent waiting for a free worker)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        import time

        started = time.perf_counter()
        response = self.get_response(request)
        response["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response


_request: ContextVar = ContextVar("fleetweb_request", default=None)
_acting: ContextVar = ContextVar("fleetweb_acting", default=None)


@contextmanager
def acting(user, source_ip: str = "") -> Iterator[None]:
    """A service that changes users or roles through model saves names its caller for the audit receivers of
    those saves, whatever the door (a command or a task has no request; a set-password link's request has no
    signed-in user)."""
    token = _acting.set((user if getattr(user, "pk", None) else None, source_ip))
    try:
        yield
    finally:
        _acting.reset(token)


def current_actor() -> tuple:
    """(user, source ip) of the service call or request being served, or (None, "") outside one (shell, command,
    task). The user is read now, not when the request began: the API authenticates tokens inside the view."""
    named = _acting.get()
    if named is not None:
        return named
    request = _request.get()
    if request is None:
        return None, ""
    user = getattr(request, "user", None)
    return (user if getattr(user, "is_authenticated", False) else None), client_ip(request)


class ActorMiddleware:
    """Remembers who is acting for the length of a request, for audit receivers of model signals (users, roles,
    tokens, admin saves) that are not handed a request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


class TextInputMiddleware:
    """One check for all text input: no NUL byte in any query parameter, form field or JSON string (PostgreSQL
    text cannot hold 0x00, and no legitimate input carries one). The 400 names the field; the API's body has the
    API's error shape."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        field = _nul_field(request)
        if field is not None:
            message = "Text may not contain NUL (0x00) characters."
            if request.path.startswith("/api/"):
                from django.http import JsonResponse

                return JsonResponse({"detail": f"Invalid input in: {field}.", "errors": {field: [message]}},
                                    status=400)
            from django.http import HttpResponseBadRequest

            return HttpResponseBadRequest(f"{field}: {message}", content_type="text/plain")
        return self.get_response(request)


def _nul_field(request) -> str | None:
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            return name.replace("\x00", "")
    content_type = request.META.get("CONTENT_TYPE", "")
    if request.method in ("POST", "PUT", "PATCH") and content_type.startswith("application/json"):
        import json


        try:
            data = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError):
            return None  # the parser says what is wrong with it
        if untrusted.too_deep(data, untrusted.MAX_BODY_DEPTH):
            return None  # the parser refuses it, before anything walks it recursively
        return _nul_in(data, "")
    if request.method == "POST":
        for name, values in request.POST.lists():
            if "\x00" in name or any("\x00" in v for v in values):
                return name.replace("\x00", "")
    return None


def _nul_in(value, path: str) -> str | None:
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return sub.replace("\x00", "")
            found = _nul_in(item, sub)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_in(item, f"{path}[{index}]")
            if found:
                return found
    return None


class ServiceErrorMiddleware:
    """A service's refusal no page caught becomes the matching error page (403, 404, 409 or 400) with the
    refusal's own words, never a 500: permission checks live in the services, so every door refuses alike."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception) -> HttpResponseBase | None:
        from django.core.exceptions import PermissionDenied
        from django.http import Http404, HttpResponse
        from django.views import defaults


        if not isinstance(exception, ServiceError):
            return None
        if exception.status == 403:
            return defaults.permission_denied(request, PermissionDenied(exception.message))
        if exception.status == 404:
            return defaults.page_not_found(request, Http404(exception.message))
        return HttpResponse(exception.message, status=exception.status, content_type="text/plain; charset=utf-8")
