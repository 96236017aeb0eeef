"""`foundation.queries.any_rows`: several existence questions in one statement."""

from __future__ import annotations

import pytest
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from foundation.lists import MAX_PAGE, Counted, KeysFirst, page_rows
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


def test_keys_first_pages_in_the_querysets_order_with_the_rows_whole_and_drops_a_row_gone_meanwhile():
    for i in range(7):
        make_cluster(f"c-{i}", environment="prod" if i % 2 else "dev")
    rows = KeysFirst(Cluster.objects.filter(environment="prod").order_by("-name"))
    paginator = Paginator(rows, 2)
    assert paginator.count == 3 and paginator.num_pages == 2
    with CaptureQueriesContext(connection) as ctx:
        first = list(paginator.page(1).object_list)
    assert [c.name for c in first] == ["c-5", "c-3"] and first[0].server  # whole rows, in the queryset's order
    keys_query, rows_query = (q["sql"] for q in ctx.captured_queries)
    assert keys_query.startswith('SELECT "inventory_cluster"."id" AS "pk" FROM') and "LIMIT 2" in keys_query
    assert '"inventory_cluster"."server"' in rows_query and "LIMIT" not in rows_query
    assert rows[2].name == "c-1"


def test_keys_first_leaves_out_a_row_removed_between_its_two_queries():
    for i in range(3):
        make_cluster(f"c-{i}")
    detached = []

    def detach_after_the_keys(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('SELECT "inventory_cluster"."id" AS "pk" FROM') and not detached:
            detached.append(Cluster.objects.filter(name="c-1").delete())
        return result

    with connection.execute_wrapper(detach_after_the_keys):
        page = KeysFirst(Cluster.objects.order_by("name"))[0:3]
    assert detached and [c.name for c in page] == ["c-0", "c-2"]


def test_a_count_given_to_the_paginator_spares_its_count_query_and_a_function_is_asked_once_when_needed():
    for i in range(3):
        make_cluster(f"counted-{i}")
    rows = Cluster.objects.order_by("name")
    asked: list[int] = []

    def count() -> int:
        asked.append(1)
        return 3

    for given, expected_counts in ((3, 0), (count, 0), (None, 1)):
        with CaptureQueriesContext(connection) as ctx:
            page = Paginator(Counted(rows, count=given), 2).get_page(2)
            names = [c.name for c in page.object_list]
        counts = [q for q in ctx.captured_queries if "COUNT(" in q["sql"]]
        assert len(counts) == expected_counts and names == ["counted-2"] and page.paginator.count == 3
    assert asked == [1]
    assert Paginator(KeysFirst(rows, count=3), 2).get_page(1).paginator.num_pages == 2


def test_keys_first_uses_the_keys_it_was_given_for_that_page_only_and_asks_for_any_other():
    for i in range(5):
        make_cluster(f"k-{i}")
    rows = Cluster.objects.order_by("name")
    ids = list(rows.values_list("pk", flat=True))
    for number, wanted in (("2", slice(2, 4)), (None, slice(0, 2)), ("x", slice(0, 2)), ("-3", slice(0, 2)),
                           ("3", slice(4, 6)), ("9" * 30, slice((MAX_PAGE - 1) * 2, MAX_PAGE * 2))):
        assert page_rows(number, 2) == wanted, number
    given = (slice(2, 4), ids[2:4])
    for number, names, key_queries in (("2", ["k-2", "k-3"], 0), ("1", ["k-0", "k-1"], 1), ("3", ["k-4"], 1)):
        with CaptureQueriesContext(connection) as ctx:
            page = Paginator(KeysFirst(rows, count=5, keys=given), 2).get_page(number)
            assert [c.name for c in page.object_list] == names, number
        sql = [q["sql"] for q in ctx.captured_queries]
        assert len([q for q in sql if q.startswith('SELECT "inventory_cluster"."id" AS "pk"')]) == key_queries
        assert len(sql) == key_queries + 1, number  # and the page's rows
    # The last page, cut short by the paginator, is within the keys read for a whole page.
    with CaptureQueriesContext(connection) as ctx:
        last = Paginator(KeysFirst(rows, count=5, keys=(slice(4, 6), ids[4:])), 2).get_page(3)
        assert [c.name for c in last.object_list] == ["k-4"] and len(ctx.captured_queries) == 1
