"""`foundation.queries.any_rows`: several existence questions in one statement."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.queries import any_rows
from inventory.models import Cluster
from tests.builders import make_cluster

pytestmark = pytest.mark.django_db


def test_each_queryset_is_answered_in_one_statement_whatever_its_order_or_slice():
    make_cluster("a-prod", environment="prod")
    make_cluster("b-dev", environment="dev")
    with CaptureQueriesContext(connection) as ctx:
        found = any_rows(Cluster.objects.filter(environment="prod").order_by("-name"),
                         Cluster.objects.filter(environment="staging"),
                         Cluster.objects.filter(name__startswith="b-", environment="dev")[:5],
                         Cluster.objects.none(), Cluster.objects.filter(pk__in=[]))
    assert found == [True, False, True, False, False]
    assert len(ctx.captured_queries) == 1 and ctx.captured_queries[0]["sql"].startswith("SELECT EXISTS")
    assert any_rows() == []
