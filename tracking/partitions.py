"""Monthly partitions of the events table.

Future months are created ahead of time by beat; an event outside every partition (a
clock years off) lands in ``tracking_event_default``, never in an error. Creating a
month whose rows already sit in the default partition moves them first, because
PostgreSQL refuses to attach a range the default partition still holds rows of.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.db import connection, transaction

PARENT = "tracking_event"
DEFAULT = "tracking_event_default"
PARTITIONS_LOCK = 0x6670_7074  # advisory lock held while a month is made ("fppt")


def month_start(day: date, offset: int = 0) -> date:
    index = day.year * 12 + (day.month - 1) + offset
    return date(index // 12, index % 12 + 1, 1)


def partition_name(start: date) -> str:
    return f"{PARENT}_{start:%Y_%m}"


def existing_partitions() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid
            JOIN pg_class p ON p.oid = i.inhparent
            WHERE p.relname = %s
            """,
            [PARENT],
        )
        return {row[0] for row in cursor.fetchall()}


def ensure_event_partitions(*, months_back: int = 3, months_ahead: int = 3, today: date | None = None) -> list[str]:
    """Create the monthly partitions from ``months_back`` ago to ``months_ahead`` ahead."""
    today = today or datetime.now(UTC).date()
    have = existing_partitions()
    created = []
    for offset in range(-months_back, months_ahead + 1):
        start = month_start(today, offset)
        name = partition_name(start)
        if name in have:
            continue
        end = month_start(start, 1)
        with transaction.atomic(), connection.cursor() as cursor:
            # One maker at a time (two beats, a beat and a migration): the second waits,
            # then finds the month made instead of failing on its name.
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITIONS_LOCK])
            if name in existing_partitions():
                continue
            lower = datetime(start.year, start.month, 1, tzinfo=UTC)
            upper = datetime(end.year, end.month, 1, tzinfo=UTC)
            # Writes to the default partition wait until the month is attached (reads go
            # on): a row of the month an ingest wrote there after the move would fail the
            # attach, and so every run while such traffic lasted.
            cursor.execute(f"LOCK TABLE {DEFAULT} IN SHARE ROW EXCLUSIVE MODE")
            cursor.execute(
                f"CREATE TABLE {name} (LIKE {PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            )
            cursor.execute(
                f"""
                WITH moved AS (
                    DELETE FROM {DEFAULT} WHERE occurred_at >= %s AND occurred_at < %s RETURNING *
                )
                INSERT INTO {name} SELECT * FROM moved
                """,
                [lower, upper],
            )
            cursor.execute(
                f"ALTER TABLE {PARENT} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                [lower, upper],
            )
        created.append(name)
    return created
