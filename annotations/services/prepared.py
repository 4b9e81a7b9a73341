"""Running the hottest statements prepared.

Django's psycopg 3 backend binds ORM parameters on the client (``ClientCursor``), which psycopg never
prepares. The assignment hot path (next task, submit) runs a handful of fixed statements thousands
of times a minute; for those, parsing and planning cost more than executing (shared/notes/
postgres-assignment.md, docs/benchmarks.md). A plain ``psycopg.Cursor`` on Django's own connection
binds on the server, so ``execute(..., prepare=True)`` prepares once per connection and reuses the
plan. It shares the connection, so it runs inside Django's transaction like any ORM query.

Preparation needs ``OPTIONS["prepare_threshold"]`` set (base settings do); without it psycopg runs
the same statements unprepared, which is still correct.
"""
from __future__ import annotations

import psycopg
from django.db import connection


def cursor() -> psycopg.Cursor:
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def fetchone(sql: str, params: dict) -> tuple | None:
    # Django's error wrapper, as around its own cursors: psycopg's errors become django.db's (the
    # API answers a lost database with 503, not 500) and the connection is marked for a health
    # check, so a dropped one is replaced instead of failing every later request of this thread.
    with connection.wrap_database_errors, cursor() as cur:
        cur.execute(sql, params, prepare=True)
        return cur.fetchone()


def fetchall(sql: str, params: dict) -> list[tuple]:
    with connection.wrap_database_errors, cursor() as cur:
        cur.execute(sql, params, prepare=True)
        return cur.fetchall()


# --- whole model rows from one prepared statement ------------------------------------------------
# The ORM compiles every query again on every request (as_sql was ~35 % of the CPU of "next" in
# bench/hotpath.py's profile). The few reads every API request makes (token -> user, membership ->
# project -> instructions) are fixed joins, so they run prepared and their rows become model
# instances the way the ORM would make them: each field's database converters, then ``from_db``.

_layout_cache: dict[type, tuple] = {}


def select_list(model, alias: str) -> str:
    """``alias.col, ...`` for the model's concrete fields, in the order ``build`` expects."""
    return ", ".join(f'{alias}."{f.column}"' for f in model._meta.concrete_fields)


def _layout(model) -> tuple:
    """(attnames, [(index, expression, converters)] for the fields that have converters, index of
    the primary key)."""
    found = _layout_cache.get(model)
    if found is None:
        fields = model._meta.concrete_fields
        converting = []
        for i, field in enumerate(fields):
            col = field.get_col(model._meta.db_table)
            converters = tuple(connection.ops.get_db_converters(col)) + tuple(field.get_db_converters(connection))
            if converters:
                converting.append((i, col, converters))
        found = _layout_cache[model] = ([f.attname for f in fields], converting, fields.index(model._meta.pk))
    return found


def build(model, values):
    """A model instance from ``values`` (a slice of a row laid out by ``select_list``)."""
    attnames, converting, _ = _layout(model)
    if converting:
        values = list(values)
        for i, col, converters in converting:
            for convert in converters:
                values[i] = convert(values[i], col, connection)
    return model.from_db(connection.alias, attnames, values)


def instances(row, *models) -> list:
    """One instance per model from consecutive slices of ``row`` (each laid out by ``select_list``,
    in the same order). A slice whose primary key is NULL (a LEFT JOIN that found nothing) gives
    None. Columns after the last model's are left to the caller."""
    out, start = [], 0
    for model in models:
        attnames, _, pk = _layout(model)
        values = row[start:start + len(attnames)]
        out.append(None if values[pk] is None else build(model, values))
        start += len(attnames)
    return out
