"""Writing many rows of one model at once, for the hot paths that change a few columns of many rows (a gathered write
of many clusters' syncs): one parameterised UPDATE sent for every row in one round trip (psycopg's `executemany`), with
no per-row query building. Django's `bulk_update` builds a CASE of every value per column instead, which costs more
Python than the statements it saves at these sizes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from django.db import connections, models


def update_rows(objects: Sequence[models.Model], fields: Iterable[str]) -> None:
    """Save `fields` of each of `objects` (one model) as `save(update_fields=fields)` would: each field's `pre_save`
    (an `auto_now` column is set) and database form, one UPDATE per row, sent together."""
    if not objects:
        return
    model = type(objects[0])
    meta = model._meta
    alias = model._default_manager.db
    connection = connections[alias]
    quote = connection.ops.quote_name
    columns = [cast(models.Field, meta.get_field(name)) for name in fields]
    sql = (f"UPDATE {quote(meta.db_table)} SET "  # noqa: S608 (the model's own names)
           + ", ".join(f"{quote(str(field.column))} = %s" for field in columns)
           + f" WHERE {quote(str(meta.pk.column))} = %s")
    params = [[field.get_db_prep_save(field.pre_save(obj, False), connection) for field in columns] + [obj.pk]
              for obj in objects]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def copy_rows(model: type[models.Model], fields: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Insert `rows` (one value per field of `fields`) into `model`'s table with PostgreSQL's COPY: no statement per
    batch, no parameter arrays quoted in Python, no model instances. Values are as psycopg sends them (str, int,
    float, bool, datetime, None); a JSON field's are encoded as the field encodes them. For new rows only (COPY has
    no ON CONFLICT), and every NOT NULL column must be among `fields`: a model's defaults are Django's, not the
    table's. Returns how many rows were written."""
    meta = model._meta
    connection = connections[model._default_manager.db]
    quote = connection.ops.quote_name
    columns = [cast(models.Field, meta.get_field(name)) for name in fields]
    encode = {i: field for i, field in enumerate(columns) if isinstance(field, models.JSONField)}
    names = ", ".join(quote(str(field.column)) for field in columns)
    written = 0
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY {quote(meta.db_table)} ({names}) FROM STDIN") as copy:  # the model's own names
        for row in rows:
            if encode:
                row = [encode[i].get_db_prep_save(value, connection) if i in encode else value
                       for i, value in enumerate(row)]
            copy.write_row(row)
            written += 1
    return written
