"""The agents' most frequent request, the poll for work, served without the middleware people's pages need
(sessions, CSRF, CSP, messages, htmx, login throttling, metrics): at a few thousand agents polling every few seconds,
that stack was a third of a poll's cost. The view is the same (`agents.endpoints.work`: the credential, the
signature, the rate and the queue, through the same service functions); only the path to it is shorter.
`fleetweb.wsgi` puts this in front of Django's handler."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.core import signals
from django.core.handlers.wsgi import WSGIRequest

from agents import endpoints

log = logging.getLogger(__name__)

POLL = "/agent/v1/work"


def wrap(app: Callable) -> Callable:
    """`app` (Django's WSGI handler) with the poll for work answered before it."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != POLL or environ.get("REQUEST_METHOD") != "GET":
            return app(environ, start_response)
        signals.request_started.send(sender=None, environ=environ)  # database connections as for any request
        try:
            response = endpoints.work(WSGIRequest(environ))
            status, headers, body = f"{response.status_code} {response.reason_phrase}", [*response.items()], \
                response.content
        except Exception:  # the database or Redis away: an error the agent retries, never a traceback
            log.exception("poll for work failed")
            status, headers, body = "503 Service Unavailable", [("Content-Type", "application/json")], \
                b'{"error": "the hub cannot hand out work now; try again"}'
        finally:
            signals.request_finished.send(sender=None)
        start_response(status, headers)
        return [body]

    return application
