"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis + hypothesis): no generated
request, valid or not, may get a 5xx or a status its operation does not declare."""

from __future__ import annotations

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

from fleetweb.tokens import create_token
from tests.builders import make_cluster, make_user

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
