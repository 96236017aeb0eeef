"""The agents' signed doors (the poll for work, heartbeats, reports of changes, answers, renewal) served without the
middleware people's pages need (sessions, CSRF, CSP, messages, htmx, login throttling, metrics): at a few thousand
agents polling every few seconds and heartbeating every thirty, that stack was a third of a poll's cost and more of
a heartbeat's. The views are the same (`agents.endpoints`: the credential, the signature, the rate, through the same
service functions); only the path to them is shorter. Registration and the manifest (no credential yet) take the
normal path. `fleetweb.wsgi` puts this in front of Django's handler."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.core import signals
from django.core.handlers.wsgi import WSGIRequest

from agents import endpoints

log = logging.getLogger(__name__)

DOORS: dict[tuple[str, str], Callable] = {
    ("GET", "/agent/v1/work"): endpoints.work,
    ("POST", "/agent/v1/heartbeat"): endpoints.heartbeat,
    ("POST", "/agent/v1/changes"): endpoints.changes,
    ("POST", "/agent/v1/answers"): endpoints.answers,
    ("POST", "/agent/v1/credential"): endpoints.credential,
}


def wrap(app: Callable) -> Callable:
    """`app` (Django's WSGI handler) with the agents' signed doors answered before it."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        view = DOORS.get((environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")))
        if view is None:
            return app(environ, start_response)
        signals.request_started.send(sender=None, environ=environ)  # database connections as for any request
        try:
            response = view(WSGIRequest(environ))
            status, headers, body = f"{response.status_code} {response.reason_phrase}", [*response.items()], \
                response.content
        except Exception:  # the database or Redis away: an error the agent retries, never a traceback
            log.exception("agent request %s failed", environ.get("PATH_INFO"))
            status, headers, body = "503 Service Unavailable", [("Content-Type", "application/json")], \
                b'{"error": "the hub cannot hand out work now; try again"}'
        finally:
            signals.request_finished.send(sender=None)
        start_response(status, headers)
        return [body]

    return application
