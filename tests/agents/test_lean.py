"""The poll for work served in front of Django's handler (agents.lean, as gunicorn runs it through fleetweb.wsgi):
the same answers and refusals as through the full stack, and every other request handed on."""

from __future__ import annotations

import json

import pytest
from django.test import RequestFactory

from agents import lean, services
from fleetweb.wsgi import application
from tests.agents.helpers import accepted_agent

pytestmark = pytest.mark.django_db(transaction=True)


def _call(app, environ: dict) -> tuple[str, dict, bytes]:
    seen: dict = {}

    def start_response(status, headers):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def test_the_poll_is_answered_in_front_of_django_with_the_same_checks(admin_user):
    agent, cluster = accepted_agent(admin_user)
    path = "/agent/v1/work?wait=0&boot=b1"
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in agent.headers("GET", path, b"").items()}
    environ = RequestFactory().get(path, **headers).environ
    status, _headers, body = _call(application, environ)
    assert status.startswith("200") and json.loads(body) == {"items": []}

    services.revoke(cluster, user=admin_user)
    status, _headers, body = _call(application, RequestFactory().get(path, **headers).environ)
    assert status.startswith("401") and "revoked" in json.loads(body)["error"]

    stolen = dict(headers, HTTP_X_FLEETWEB_SIGNATURE="AAAA")
    status, _headers, _body = _call(application, RequestFactory().get(path, **stolen).environ)
    assert status.startswith("401")


def test_every_other_request_goes_to_django():
    handed: list[str] = []

    def django_app(environ, start_response):
        handed.append(environ["PATH_INFO"])
        start_response("200 OK", [])
        return [b""]

    app = lean.wrap(django_app)
    for path, method in (("/agent/v1/heartbeat", "get"), ("/clusters/", "get"), ("/agent/v1/work", "post"),
                         ("/agent/v1/register", "post"), ("/agent/v1/manifest.yaml", "get")):
        _call(app, getattr(RequestFactory(), method)(path).environ)
    assert handed == ["/agent/v1/heartbeat", "/clusters/", "/agent/v1/work", "/agent/v1/register",
                      "/agent/v1/manifest.yaml"]


def test_a_heartbeat_in_front_of_django_is_checked_and_stored_as_through_it(admin_user):
    from agents.models import Agent

    agent, _cluster = accepted_agent(admin_user)
    body = json.dumps({"agent_version": "0.2.0"}).encode()
    headers = {f"HTTP_{k.upper().replace('-', '_')}": v
               for k, v in agent.headers("POST", "/agent/v1/heartbeat", body).items()}
    environ = RequestFactory().post("/agent/v1/heartbeat", body, content_type="application/json", **headers).environ
    status, _headers, answer = _call(application, environ)
    assert status.startswith("200") and "watch" in json.loads(answer)
    assert Agent.objects.get().version == "0.2.0"
    tampered = RequestFactory().post("/agent/v1/heartbeat", json.dumps({"agent_version": "6.6.6"}),
                                     content_type="application/json", **headers).environ
    status, _headers, _answer = _call(application, tampered)
    assert status.startswith("401") and Agent.objects.get().version == "0.2.0"
