"""Small request helpers shared by pages, API and signals."""


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
