"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis + hypothesis): no generated
request, valid or not, may get a 5xx or a status its operation does not declare."""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from inventory.people.tokens import create_token
from tests.builders import make_cluster, make_user
from tests.conftest import api_client_for

EXAMPLES = 15  # per operation and mode; `FLEETWEB_FUZZ_EXAMPLES` raises it for a longer hunt


@pytest.fixture
def api_schema(db):
    """The schema as the app serves it to an admin, calling the app in-process as that admin."""
    admin = make_user("fuzz-admin", "admin")
    key = create_token(owner=admin, user=None, name="fuzz")[1]
    for name in ("c1", "c2"):
        make_cluster(name, nodes=1)
    django_app = WSGIHandler()

    def as_admin(environ, start_response):
        environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        return django_app(environ, start_response)

    # As Django's test client does: the test's transaction is the requests', so no request may close it.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", as_admin)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def test_no_request_gets_a_server_error_or_an_undeclared_status(api_schema):
    import os

    examples = int(os.environ.get("FLEETWEB_FUZZ_EXAMPLES", EXAMPLES))
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                             operation.as_strategy(GenerationMode.NEGATIVE))

        @hypothesis_settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case):
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance])

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is fuzzed; all failures reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:1500]}")
    assert operations > 30, f"the schema lists only {operations} operations"
    assert not failures, "\n\n".join(failures)


def _hostile_bodies(properties: dict) -> list:
    """Shapes no generator finds on its own: depth, wrong types at the top and in every declared field, sizes."""
    deep = "[" * 5000 + "]" * 5000
    nested = {"a": 1}
    for _ in range(40):
        nested = {"a": nested}
    bodies: list = [deep, '{"name": ' + deep + "}", "[1, 2]", '"text"', "null", "12", "{"]
    for name in properties:
        for value in (nested, [nested], ["x"] * 3, 10**30, -1, True, None, "x" * 100_000, "\x00", {"": ""}):
            bodies.append(json.dumps({name: value}))
    return bodies


def test_hostile_shapes_to_every_write_operation_get_a_clear_answer(api_schema, db):
    """Every POST/PUT/PATCH of the schema, given bodies nested 5,000 deep, of the wrong type at the top and in each
    declared field, and oversized: never a 5xx (each answer is a 4xx naming what is wrong, or a success)."""
    from inventory.models import Cluster, ClusterGroup

    admin = make_user("hostile-admin", "admin")
    client = api_client_for(admin)
    group = ClusterGroup.objects.create(name="g1")
    ids = {"id": str(Cluster.objects.first().pk), "group": group.name, "pk": str(Cluster.objects.first().pk)}
    raw = api_schema.raw_schema
    failures, writes = [], 0
    for path, item in raw["paths"].items():
        for method in ("post", "put", "patch"):
            operation = item.get(method)
            if operation is None:
                continue
            writes += 1
            url = re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), "1"), path)
            content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            schema = content.get("schema", {})
            if "$ref" in schema:
                schema = raw["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
            for body in _hostile_bodies(schema.get("properties") or {}):
                response = client.generic(method.upper(), url, body, content_type="application/json")
                if response.status_code >= 500:
                    failures.append(f"{method.upper()} {url} {body[:80]!r}: {response.status_code}")
    assert writes > 15, f"the schema lists only {writes} write operations"
    assert not failures, "\n".join(failures[:40])
