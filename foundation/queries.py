"""Small query helpers shared by the apps."""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import QuerySet


def any_rows(*querysets: QuerySet) -> list[bool]:
    """Whether each queryset has a row, in one statement (`SELECT EXISTS (…), EXISTS (…)`).

    For the parts of a page that are empty most of the time and cost more to ask in full (a visibility subquery
    compiled and planned, joins planned) than to rule out: ask these narrow questions first, with no scope (a row
    that is not there in the whole table is not there in anybody's scope either), and the full, scoped question
    only where the answer is yes. Nothing of the answer is shown."""
    if not querysets:
        return []
    parts: list[str] = []
    params: list = []
    for queryset in querysets:
        unordered = queryset if queryset.query.is_sliced else queryset.order_by()
        try:
            sql, more = unordered.values("pk")[:1].query.sql_with_params()
        except EmptyResultSet:  # `none()`, `pk__in=[]`: nothing to ask
            parts.append("FALSE")
            continue
        parts.append(f"EXISTS ({sql})")
        params.extend(more)
    with connections[querysets[0].db].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return [bool(found) for found in cursor.fetchone()]
