"""Prepared statements for the few queries every tracking request runs.

Django's PostgreSQL backend binds parameters on the client and never prepares, so
PostgreSQL parses and plans each statement again: for the identity lookup of a
``/v1/track`` call, planning took twice as long as running it (pg_stat_statements on
bench data: 0.17 ms planning, 0.09 ms executing). ``execute`` sends the parameters
apart from the SQL and prepares the statement once per connection (psycopg keeps the
prepared statements of a connection by their text), with Django's error translation,
so callers see ``django.db`` exceptions as with ``connection.cursor()``.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from django.db import connection
from django.db.backends.postgresql.psycopg_any import BaseTzLoader

TUPLES_OK = psycopg.pq.ExecStatus.TUPLES_OK

# Django opens connections with prepare_threshold=None, which makes psycopg ignore
# prepare=True as well; a threshold no query reaches lets only ``execute`` prepare.
NEVER = 2**31 - 1


def execute(sql: str, params: Sequence[Any]) -> list[tuple]:
    """Run ``sql`` (``%s`` placeholders) as a prepared statement; its rows, if any."""
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = NEVER
    with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        cursor.execute(sql, params, prepare=True)
        # The result's status, not ``cursor.description``, which builds a Column object
        # per column on every call.
        result = cursor.pgresult
        return cursor.fetchall() if result is not None and result.status == TUPLES_OK else []


# Array parameters as PostgreSQL's array text, cast in the SQL (``%s::bigint[]``,
# ``%s::text[]``, ``%s::timestamptz[]``): psycopg dumps a Python list element by element in
# Python (``ListDumper``), a tenth of the inbox drain's Python time for the lists of
# thousands of ids and keys a chunk passes; a join of strings is a fraction of that.
_ARRAY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"'})


def int_array(values: Iterable[int]) -> str:
    """``[1, 2]`` as ``{1,2}``, for ``%s::bigint[]`` (or ``int[]``)."""
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


def text_array(values: Iterable[str]) -> str:
    """Strings as ``{"a","b"}``, each quoted, for ``%s::text[]``, ``varchar[]`` or, with
    ISO 8601 strings, ``timestamptz[]``."""
    values = list(values)
    if not values:
        return "{}"
    joined = '","'.join(values)
    if "\\" in joined or joined.count('"') != 2 * (len(values) - 1):
        # Some value holds a quote or a backslash: escape each (nearly never: a join and
        # a count, without a translate per value, were a twentieth of a drain's Python).
        joined = '","'.join([v.translate(_ARRAY_ESCAPES) for v in values])
    return '{"' + joined + '"}'


def next_ids_sql(table: str, count: str = "%s::int") -> str:
    """SQL for the next ids of ``table``'s sequence, as many as ``count`` (an SQL
    expression: by default the statement's one ``%s``; a column in a per-row subquery).

    The sequence is looked up once (``OFFSET 0`` keeps the subquery from being merged
    into the outer query): ``nextval(pg_get_serial_sequence(…))`` looked it up again for
    every id, a catalog scan each, 3.8 µs an id against 0.7 (pgbench, 6,500 ids)."""
    return (
        "SELECT nextval(s.seq) FROM"
        f" (SELECT pg_get_serial_sequence('{table}', 'id')::regclass AS seq OFFSET 0) s,"
        f" generate_series(1, {count})"
    )


def find(parent: dict, x):
    """The root of ``x`` in a union-find kept in ``parent`` (halving the path)."""
    while (p := parent.get(x, x)) != x:
        parent[x] = parent.get(p, p)
        x = p
    return x


def union(parent: dict, a, b):
    """Join the sets of ``a`` and ``b``; the smaller root stays the root (so a set's
    root is its smallest member). Returns that root."""
    a, b = find(parent, a), find(parent, b)
    if a == b:
        return a
    if b < a:
        a, b = b, a
    parent[b] = a
    return a


def vacuum(tables: Sequence[str], *, options: str = "") -> bool:
    """VACUUM ``tables`` (names from code, never from input) with ``options`` such as
    "SKIP_LOCKED" or "ANALYZE". VACUUM cannot run inside a transaction block (the
    tests' own, say): there it is skipped. Returns whether it ran."""
    if connection.in_atomic_block:
        return False
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM {f'({options}) ' if options else ''}{', '.join(tables)}")
    return True


class UTCTimestamptzLoader(BaseTzLoader):
    """Django's timestamptz loader, ten times faster for a UTC session.

    Django loads every timestamptz through psycopg's pure-Python parser (its loader
    subclasses it to set the time zone), 4-5 µs a value against 0.5 for the standard
    library's ``datetime.fromisoformat``: about a tenth of the inbox drain's Python time
    went there (py-spy), reading the last seen and session times of thousands of people
    a chunk. PostgreSQL writes a timestamptz of a UTC session as ISO 8601 with "+00";
    anything else (infinity, BC dates, years past 9999, another offset) goes to Django's
    loader, with its results and errors.
    """

    timezone = datetime.UTC

    def load(self, data):
        try:
            value = datetime.datetime.fromisoformat(str(data, "ascii"))
        except ValueError:
            return super().load(data)
        if value.tzinfo is not datetime.UTC:
            return super().load(data)
        return value


def use_fast_timestamps(sender, connection, **kwargs) -> None:
    """``connection_created``: load timestamptz with ``UTCTimestamptzLoader`` where
    Django would load it in UTC (USE_TZ, a UTC database time zone)."""
    if connection.vendor != "postgresql" or connection.timezone is not datetime.UTC:
        return
    connection.connection.adapters.register_loader("timestamptz", UTCTimestamptzLoader)
