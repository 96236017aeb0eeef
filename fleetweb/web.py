"""Small request helpers shared by pages, API and signals."""

from __future__ import annotations

from contextvars import ContextVar


def client_ip(request) -> str:
    """The address a request came from, as the WSGI server saw it ('' without a request).

    Behind a proxy this is the proxy's address; Fleetweb does not trust X-Forwarded-For blindly.
    """
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


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


def current_actor() -> tuple:
    """(user, source ip) of the request being served, or (None, "") outside one (shell, command, task). The user
    is read now, not when the request began: the API authenticates tokens inside the view."""
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
