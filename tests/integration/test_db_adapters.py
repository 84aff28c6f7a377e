"""Faster adapters than Django's for the hot paths (tracking.db): timestamptz values
loaded as Django loads them, and array parameters sent as PostgreSQL's array text."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import DataError
from psycopg.adapt import AdaptersMap
from psycopg.pq import Format

from tracking import db, jsontext
from tracking.db import UTCTimestamptzLoader, int_array, text_array

pytestmark = pytest.mark.django_db


def loaders():
    connection.ensure_connection()
    raw = connection.connection
    oid = raw.adapters.types["timestamptz"].oid
    djangos = AdaptersMap(raw.adapters)
    register_tzloader(UTC, djangos)
    return UTCTimestamptzLoader(oid, raw), djangos.get_loader(oid, Format.TEXT)(oid, raw)


def as_postgres_writes_it(value) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz::text", [value])
        return cursor.fetchone()[0].encode()


def test_connections_use_it():
    connection.ensure_connection()
    raw = connection.connection
    assert raw.adapters.get_loader(raw.adapters.types["timestamptz"].oid, Format.TEXT) is UTCTimestamptzLoader
    with connection.cursor() as cursor:
        cursor.execute("SELECT '2026-11-28 16:44:16.5+01'::timestamptz")
        value = cursor.fetchone()[0]
    assert value == datetime(2026, 11, 28, 15, 44, 16, 500000, tzinfo=UTC) and value.tzinfo is UTC


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)))
def test_it_loads_what_djangos_loader_loads(value):
    fast, djangos = loaders()
    text = as_postgres_writes_it(value)

    loaded = fast.load(text)

    assert loaded == djangos.load(text) == value
    assert loaded.tzinfo is UTC


@pytest.mark.parametrize(
    "text", ["infinity", "-infinity", "0044-03-15 12:00:00+00 BC", "12000-01-01 00:00:00+00"]
)
def test_what_python_cannot_hold_fails_as_in_django(text):
    fast, djangos = loaders()
    postgres_text = as_postgres_writes_it(text)

    with pytest.raises(DataError) as theirs:
        djangos.load(postgres_text)
    with pytest.raises(DataError) as ours:
        fast.load(postgres_text)
    assert str(ours.value) == str(theirs.value)


def test_another_offset_goes_to_djangos_parser():
    fast, djangos = loaders()
    assert fast.load(b"2026-11-28 17:44:16+01") == djangos.load(b"2026-11-28 17:44:16+01")


# --- array parameters as PostgreSQL's array text (tracking.db.int_array / text_array) ---------

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(TEXT, max_size=8), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8))
def test_array_parameters_reach_postgresql_as_the_lists_they_were(texts, numbers):
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::bigint[]", [text_array(texts), int_array(numbers)])
        assert cursor.fetchone() == (texts, numbers)


def test_timestamps_travel_as_iso_text():
    moments = [datetime(2026, 11, 28, 16, 44, 16, 123456, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::timestamptz[]", [text_array(m.isoformat() for m in moments)])
        assert cursor.fetchone()[0] == moments


def test_prepared_execute_returns_rows_only_for_statements_that_have_them(site):
    assert db.execute("SELECT id, name FROM tracking_site WHERE id = %s", [site.pk]) == [(site.pk, site.name)]
    assert db.execute("SELECT id FROM tracking_site WHERE id = %s", [-1]) == []
    assert db.execute("UPDATE tracking_site SET name = name WHERE id = %s", [site.pk]) == []


# --- events COPY in the binary format (tracking.ingest.core._insert_events) ----------------

STORABLE_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
STORABLE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False, allow_infinity=False)
    | STORABLE_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(STORABLE_TEXT, children, max_size=4),
    max_leaves=12,
)
OBJECTS = st.dictionaries(STORABLE_TEXT, STORABLE_JSON, max_size=4)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(
            STORABLE_TEXT.filter(bool), OBJECTS, OBJECTS, st.booleans(), st.none() | STORABLE_TEXT.filter(bool),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_events_reach_the_table_as_they_were_planned(site, rows):
    """Tabs, newlines, backslashes, quotes and any Unicode in names, ids and JSON; JSON as
    objects or as the inbox's text; integers past 64 bits: stored as given."""
    from profiles.models import Profile
    from tracking.ingest.core import _insert_events
    from tracking.ingest.schema import Kind
    from tracking.sessions import PlannedEvent

    now = datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=UTC)
    profile = Profile.objects.create(site=site, first_seen=now, last_seen=now)
    events = [
        PlannedEvent(
            profile_id=profile.pk, kind=Kind.TRACK, type=name,
            properties=jsontext.RawJSON(jsontext.dumps(properties)) if as_text else properties,
            context=context, occurred_at=occurred_at, message_id=message_id,
        )
        for name, properties, context, as_text, message_id, occurred_at in rows
    ]

    ids = _insert_events(site, events, now)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, site_id, profile_id, session_id, type, properties::text, context::text,"
            " occurred_at, received_at, message_id FROM tracking_event WHERE id = ANY(%s) ORDER BY id",
            [ids],
        )
        stored = cursor.fetchall()
    assert [row[0] for row in stored] == sorted(ids)
    for row, (name, properties, context, _, message_id, occurred_at) in zip(stored, rows, strict=True):
        assert row[1:5] == (site.pk, profile.pk, None, name)
        # As PostgreSQL reads the JSON text (a float past 2^53 becomes that exact number).
        assert row[5:7] == as_jsonb_text(properties, context)
        assert row[7:] == (occurred_at, now, message_id)


def as_jsonb_text(*values) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(["%s::jsonb::text"] * len(values)), [jsontext.dumps(v) for v in values])
        return cursor.fetchone()
