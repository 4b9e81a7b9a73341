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
    with cursor() as cur:
        cur.execute(sql, params, prepare=True)
        return cur.fetchone()
