"""Synthetic bench data through COPY: people, identities, sessions and events, consistent.

``generate(site, people=1_000_000, events=10_000_000)`` plays ``people`` people over the
last ``days`` days: activity per person is heavy-tailed (a log-normal weight, at least one
event each), split into sessions (each opened by ``visited-site``, then types drawn from
``vocabulary.EVENT_WEIGHTS``), about a third of people identified (``vocabulary``
numbering). Rows go in with COPY into the real, indexed tables; events are written in
time order, as live ingestion lays them out, so the planner sees the physical order it
will see in production. Profiles' first/last seen, sessions' counts and identities all
agree with the events.

Ids are reserved from each table's sequence up front, so nothing else may write those
tables of the bench database while it runs (profiles and sessions are locked; events
are not, since ingestion takes event ids without a table lock).
"""

from __future__ import annotations

import random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection, transaction

from tracking.benchmarks import vocabulary as vocab
from tracking.models import Site
from tracking.partitions import ensure_event_partitions

CHUNK_ROWS = 20_000
EVENT_COLUMNS = (
    "id", "site_id", "profile_id", "session_id", "type", "properties", "context",
    "occurred_at", "received_at", "message_id",
)
Progress = Callable[[str, int, int], None]  # (stage, done now, stage total)


@dataclass
class Generated:
    people: int = 0
    identified: int = 0
    sessions: int = 0
    events: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def rows_per_second(self, stage: str, rows: int) -> float:
        return rows / self.seconds[stage] if self.seconds.get(stage) else 0.0


class _Clock:
    """Text timestamps for COPY, cheaply: one string per day, one per second of a day."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]

    def __call__(self, epoch: float) -> str:
        t = int(epoch)
        day = t // 86400
        text = self.days.get(day)
        if text is None:
            text = self.days[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d ")
        return text + self.times[t % 86400]


@dataclass
class _Plan:
    """Sessions of every person, as parallel arrays (1.7 M sessions for 10 M events)."""

    start_epoch: int
    person: array  # session -> person number
    start: array  # session -> start, seconds after start_epoch
    size: array  # session -> events, visited-site included
    gap: array  # session -> seconds between its events
    first_seen: array  # person -> seconds
    last_seen: array  # person -> seconds


def plan(*, people: int, events: int, days: int, seed: int, now: datetime) -> _Plan:
    if events < people:
        raise ValueError(f"events ({events}) must be at least people ({people}): everyone did something")
    rng = random.Random(seed)
    span = days * 86400
    weights = [rng.lognormvariate(0, 1.1) for _ in range(people)]
    scale = (events - people) / sum(weights)
    counts = [1 + int(w * scale) for w in weights]
    for _ in range(events - sum(counts)):
        counts[rng.randrange(people)] += 1
    person, start, size, gap = array("q"), array("d"), array("l"), array("d")
    first_seen, last_seen = array("d", bytes(8 * people)), array("d", bytes(8 * people))
    latest = span - 3600  # the last hour is left to live traffic
    for i, remaining in enumerate(counts):
        first = rng.uniform(0, latest * 0.98)
        sizes = []
        while remaining > 0:
            s = min(remaining, 1 + int(rng.expovariate(0.2)))
            sizes.append(s)
            remaining -= s
        starts = [first] + sorted(rng.uniform(first, latest) for _ in range(len(sizes) - 1))
        end = first
        for s, at in zip(sizes, starts, strict=True):
            g = rng.uniform(10, 90)
            person.append(i)
            start.append(at)
            size.append(s)
            gap.append(g)
            end = max(end, at + (s - 1) * g)
        first_seen[i] = first
        last_seen[i] = end
    return _Plan(int(now.timestamp()) - span, person, start, size, gap, first_seen, last_seen)


def _reserve(cursor, table: str, n: int) -> int:
    """First of ``n`` ids taken from ``table``'s sequence."""
    cursor.execute(
        "SELECT setval(s, nextval(s) + %s - 1) FROM pg_get_serial_sequence(%s, 'id') AS s", [n, table]
    )
    return cursor.fetchone()[0] - n + 1


def wipe(site: Site) -> None:
    """Delete a bench site's people and events (not the site and its keys)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM tracking_event WHERE site_id = %s", [site.pk])
        cursor.execute("DELETE FROM tracking_messagededupe WHERE site_id = %s", [site.pk])
        cursor.execute("DELETE FROM tracking_pendingwork WHERE site_id = %s", [site.pk])
        cursor.execute("DELETE FROM tracking_session WHERE site_id = %s", [site.pk])
        # Whatever else points at profiles (memberships, carts of later apps) goes first.
        cursor.execute(
            """
            SELECT c.conrelid::regclass::text, a.attname
            FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = 'profiles_profile'::regclass
              AND c.conrelid <> 'profiles_profile'::regclass
            """
        )
        for table, column in cursor.fetchall():
            cursor.execute(
                f'DELETE FROM {table} WHERE "{column}" IN (SELECT id FROM profiles_profile WHERE site_id = %s)',
                [site.pk],
            )
        cursor.execute("DELETE FROM profiles_profilemerge WHERE site_id = %s", [site.pk])
        cursor.execute("DELETE FROM profiles_company WHERE site_id = %s", [site.pk])
        cursor.execute("DELETE FROM profiles_profile WHERE site_id = %s", [site.pk])


def generate(
    site: Site,
    *,
    people: int,
    events: int,
    days: int = 90,
    seed: int = 1,
    now: datetime | None = None,
    progress: Progress | None = None,
    vacuum: bool = True,
) -> Generated:
    now = now or datetime.now(UTC)
    progress = progress or (lambda stage, done, total: None)
    result = Generated(people=people, events=events)
    clock = _Clock()
    rng = random.Random(seed + 1)
    pools = vocab.build_pools(seed)

    tick = time.perf_counter()
    p = plan(people=people, events=events, days=days, seed=seed, now=now)
    order = sorted(range(len(p.start)), key=p.start.__getitem__)  # sessions in time order
    result.sessions = len(order)
    result.seconds["plan"] = time.perf_counter() - tick
    ensure_event_partitions(months_back=days // 28 + 1, months_ahead=3)

    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    base = p.start_epoch
    site_id = site.pk

    # Profiles and identities.
    tick = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE profiles_profile IN SHARE ROW EXCLUSIVE MODE")
        first_profile = _reserve(cursor, "profiles_profile", people)
        with cursor.cursor.copy(
            "COPY profiles_profile (id, site_id, properties, is_identified, first_seen, last_seen) FROM STDIN"
        ) as copy:
            rows = []
            for i in range(people):
                identified = vocab.is_identified(i)
                result.identified += identified
                rows.append(
                    f"{first_profile + i}\t{site_id}\t{vocab.dumps(vocab.person_properties(i, rng))}\t"
                    f"{'t' if identified else 'f'}\t{clock(base + p.first_seen[i])}\t{clock(base + p.last_seen[i])}\n"
                )
                if len(rows) >= CHUNK_ROWS:
                    copy.write("".join(rows))
                    progress("profiles", len(rows), people)
                    rows = []
            copy.write("".join(rows))
            progress("profiles", len(rows), people)
        with cursor.cursor.copy(
            "COPY profiles_identity (site_id, profile_id, kind, key, created_at) FROM STDIN"
        ) as copy:
            rows = []
            for i in range(people):
                seen = clock(base + p.first_seen[i])
                rows.append(f"{site_id}\t{first_profile + i}\tanonymous\t{vocab.anonymous_key(i)}\t{seen}\n")
                if vocab.is_identified(i):
                    rows.append(f"{site_id}\t{first_profile + i}\tuser\t{vocab.user_key(i)}\t{seen}\n")
                if len(rows) >= CHUNK_ROWS:
                    copy.write("".join(rows))
                    rows = []
            copy.write("".join(rows))
    result.seconds["profiles"] = time.perf_counter() - tick

    # Sessions, in time order.
    tick = time.perf_counter()
    contexts = pools.contexts
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("LOCK TABLE tracking_session IN SHARE ROW EXCLUSIVE MODE")
        first_session = _reserve(cursor, "tracking_session", len(order))
        with cursor.cursor.copy(
            "COPY tracking_session (id, site_id, profile_id, started_at, last_event_at, event_count, context) FROM STDIN"
        ) as copy:
            rows = []
            for k, s in enumerate(order):
                at = base + p.start[s]
                rows.append(
                    f"{first_session + k}\t{site_id}\t{first_profile + p.person[s]}\t{clock(at)}\t"
                    f"{clock(at + (p.size[s] - 1) * p.gap[s])}\t{p.size[s]}\t{contexts[s & 255]}\n"
                )
                if len(rows) >= CHUNK_ROWS:
                    copy.write("".join(rows))
                    progress("sessions", len(rows), len(order))
                    rows = []
            copy.write("".join(rows))
            progress("sessions", len(rows), len(order))
    result.seconds["sessions"] = time.perf_counter() - tick

    # Events, in time order.
    tick = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        first_event = _reserve(cursor, "tracking_event", events)
        with cursor.cursor.copy(f"COPY tracking_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
            for chunk in event_rows(p, order, pools, rng, site_id, first_profile, first_session, first_event, clock):
                copy.write(chunk[0])
                progress("events", chunk[1], events)
    result.seconds["events"] = time.perf_counter() - tick

    if vacuum:
        # Fresh rows have no visibility map yet (no index-only scans) and no statistics;
        # in production autovacuum gets there, here we do it now.
        tick = time.perf_counter()
        with connection.cursor() as cursor:
            for table in ("profiles_profile", "profiles_identity", "tracking_session", "tracking_event"):
                cursor.execute(f"VACUUM (ANALYZE) {table}")
        result.seconds["vacuum"] = time.perf_counter() - tick
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = DEFAULT")
    return result


def event_rows(p: _Plan, order, pools, rng, site_id, first_profile, first_session, first_event, clock):
    """COPY text of the events, ``CHUNK_ROWS`` at a time: yields (text, rows)."""
    choices, getrandbits = rng.choices, rng.getrandbits
    types, cum = vocab.EVENT_TYPES, vocab.CUM_WEIGHTS
    props = pools.properties
    visit_props = props[vocab.VISITED_SITE][0][0]
    contexts = pools.contexts
    base = p.start_epoch
    event_id = first_event
    rows: list[str] = []
    for k, s in enumerate(order):
        session_id = first_session + k
        number = p.person[s]
        profile_id = first_profile + number
        identified = vocab.is_identified(number)
        cart_id = f"c{profile_id}"
        context = contexts[s & 255]
        at, gap, size = base + p.start[s], p.gap[s], p.size[s]
        head = f"\t{site_id}\t{profile_id}\t{session_id}\t"
        ts = clock(at)
        rows.append(f"{event_id}{head}visited-site\t{visit_props}\t{context}\t{ts}\t{ts}\t\\N\n")
        event_id += 1
        for j, kind in enumerate(choices(types, cum_weights=cum, k=size - 1), 1):
            if kind == "identify" and not identified:
                kind = "page-view"
            head_, tail = props[kind][getrandbits(8)]
            properties = head_ if tail is None else head_ + cart_id + tail
            ts = clock(at + j * gap)
            rows.append(
                f"{event_id}{head}{kind}\t{properties}\t{context}\t{ts}\t{ts}\t{getrandbits(128):032x}\n"
            )
            event_id += 1
        if len(rows) >= CHUNK_ROWS:
            yield "".join(rows), len(rows)
            rows = []
    if rows:
        yield "".join(rows), len(rows)


def copy_rows(site: Site, *, rows: int, seed: int = 3, now: datetime | None = None) -> tuple[str, int]:
    """COPY text of ``rows`` events like the HTTP bench's (recent, same vocabulary), for
    the COPY ceiling. Ids come from the table's sequence."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    pools = vocab.build_pools(seed)
    clock = _Clock()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(id), count(*) FROM (SELECT id FROM profiles_profile WHERE site_id = %s LIMIT 100000) p",
            [site.pk],
        )
        low, count = cursor.fetchone()
        first_event = _reserve(cursor, "tracking_event", rows)
    low, count = low or 1, max(count, 1)
    t0 = now.timestamp() - 600
    out = []
    types, cum = vocab.EVENT_TYPES, vocab.CUM_WEIGHTS
    for n, kind in enumerate(rng.choices(types, cum_weights=cum, k=rows)):
        profile_id = low + rng.randrange(count)
        head, tail = pools.properties[kind][rng.getrandbits(8)]
        properties = head if tail is None else f"{head}c{profile_id}{tail}"
        ts = clock(t0 + n * 600 / rows)
        out.append(
            f"{first_event + n}\t{site.pk}\t{profile_id}\t\\N\t{kind}\t{properties}\t"
            f"{pools.contexts[n & 255]}\t{ts}\t{ts}\t{rng.getrandbits(128):032x}\n"
        )
    return "".join(out), rows


def copy_ceiling(text: str, rows: int) -> float:
    """rows/s of PostgreSQL's COPY of ``text`` into the events table (rolled back after,
    so the bench data is unchanged; the timing ends when the server has taken every row
    and its index entries)."""
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with transaction.atomic():
            tick = time.perf_counter()
            with raw.copy(f"COPY tracking_event ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for start in range(0, len(text), 1 << 20):
                    copy.write(text[start : start + (1 << 20)])
            elapsed = time.perf_counter() - tick
            transaction.set_rollback(True)
    return rows / elapsed
