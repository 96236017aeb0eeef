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
