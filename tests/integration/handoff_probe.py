"""A hand-off handler for tests: records every event it is given in a table, in the
handler's own transaction, so a test (or a real worker) can count effects."""

from __future__ import annotations

from django.db import connection

NAME = "test-probe"
TABLE = "test_handoff_effects"


def create_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} "
            "(handler text NOT NULL, work_id bigint NOT NULL, event_id bigint NOT NULL, profile_id bigint, type text)"
        )


def drop_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")


def record(work, events, *, handler: str = NAME) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {TABLE} (handler, work_id, event_id, profile_id, type)
                SELECT %s, %s, e.id, e.profile_id, e.type
                FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS e(id, profile_id, type)""",
            [handler, work.pk, [e.id for e in events], [e.profile_id for e in events], [e.type for e in events]],
        )


def effects(handler: str = NAME) -> list[tuple[int, int, str]]:
    """(event id, profile id, type) of every recorded effect, in id order."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id, profile_id, type FROM {TABLE} WHERE handler = %s ORDER BY event_id", [handler])
        return cursor.fetchall()
