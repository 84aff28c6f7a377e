"""Date-times RFC 3339 and ISO 8601 allow that ``datetime.fromisoformat`` (3.11) refuses,
with what each means, and near misses that stay invalid. Every wire format that reads
date-time strings is tested with both lists."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

MINUS_8 = timezone(timedelta(hours=-8))

# (sent, read)
EXTRA_FORMS = [
    # RFC 3339 5.6: "T" and "Z" may be lower case.
    ("2024-01-01T00:00:00z", datetime(2024, 1, 1, tzinfo=UTC)),
    ("2024-01-01t10:20:30.5z", datetime(2024, 1, 1, 10, 20, 30, 500000, tzinfo=UTC)),
    # ISO 8601 end of day: 00:00 of the next day (of the next year here).
    ("2024-01-01T24:00:00Z", datetime(2024, 1, 2, tzinfo=UTC)),
    ("2024-12-31T24:00Z", datetime(2025, 1, 1, tzinfo=UTC)),
    ("2024-02-28T24:00:00.000+02:00", datetime(2024, 2, 29, tzinfo=timezone(timedelta(hours=2)))),
    ("2024-01-01T24:00:00", datetime(2024, 1, 2, tzinfo=UTC)),  # no offset: UTC
    ("2024-01-01t24:00:00z", datetime(2024, 1, 2, tzinfo=UTC)),
    # A leap second: the last microsecond of the minute, so nothing jumps ahead.
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("2016-12-31T23:59:60.5z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ("1990-12-31T15:59:60-08:00", datetime(1990, 12, 31, 15, 59, 59, 999999, tzinfo=MINUS_8)),  # RFC 3339 5.8
    ("2016-12-31T23:59:60", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
]

STILL_INVALID = [
    "2024-01-01T24:01Z",
    "2024-01-01T24:00:01Z",
    "2024-01-01T24:00:00.5Z",
    "2024-01-01T25:00Z",
    "2024-01-01T23:60:00Z",
    "2024-01-01T23:59:61Z",
    "2024-01-01T12:30:60Z",  # a leap second only ends a UTC day
    "2016-12-31T23:59:60+01:00",  # 22:59:60 UTC
    "2024-01-01T00:00:00zz",
    "2024-01-01z",
]
