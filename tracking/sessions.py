"""Sessions for a batch of events: inactivity timeout, client session ids, visited-site.

A session is a visit. An event joins its person's current session unless the client
names another session, asks for a new one, or the person was inactive longer than the
site's timeout; then a new session starts, and with it a ``visited-site`` event. Calls
that describe the person rather than behaviour (identify, set, alias, group) join the
current session but never start one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection

from tracking import db, jsontext
from tracking.ingest.schema import Kind
from tracking.models import Session, Site

NON_VISIT_KINDS = frozenset({Kind.IDENTIFY, Kind.SET, Kind.ALIAS, Kind.GROUP})


@dataclass(slots=True)
class PlannedEvent:
    """An event about to be stored (the core builds these from messages)."""

    profile_id: int
    kind: Kind
    type: str
    properties: dict[str, Any]
    context: dict[str, Any]
    occurred_at: datetime
    message_id: str | None
    client_session_id: str | None = None
    new_session: bool = False
    received_at: datetime | None = None  # None: the batch's
    session: _OpenSession | None = None


@dataclass(slots=True)
class _OpenSession:
    id: int | None
    profile_id: int
    external_id: str | None
    started_at: datetime
    last_event_at: datetime
    event_count: int = 0
    context: dict[str, Any] = field(default_factory=dict)
    stored_start: datetime | None = None  # started_at as stored before this batch


def _stored(row: tuple) -> _OpenSession:
    """A session read from tracking_session (id, profile, external id, started_at,
    last_event_at, event_count)."""
    return _OpenSession(*row, stored_start=row[3])


def profiles_of_client_sessions(site: Site, external_ids: set[str]) -> dict[str, int]:
    """Client session id -> profile (session recovery: Tracardi sends only its session)."""
    if not external_ids:
        return {}
    rows = (
        Session.objects.filter(site=site, external_id__in=external_ids)
        .order_by("external_id", "-last_event_at")
        .distinct("external_id")
        .values_list("external_id", "profile_id")
    )
    return dict(rows)


def assign_sessions(
    site: Site, events: list[PlannedEvent], stored_last_seen: Mapping[int, datetime | None] | None = None
) -> list[PlannedEvent]:
    """Attach every event to a session (writing sessions in bulk); returns the
    visited-site events to store as well.

    ``stored_last_seen`` (profile id -> its last_seen before these events, None for a
    profile with nothing stored) spares the lookup of a person's latest session where it
    cannot be joined: no session of theirs ended after their last_seen, so when that is
    more than the timeout before their first event here, every session has expired (a
    returning visitor's first call; most of the bench's known people). Profiles not in
    it are looked up."""
    if not events:
        return []
    timeout = timedelta(minutes=site.session_timeout_minutes)
    by_profile: dict[int, list[PlannedEvent]] = defaultdict(list)
    for event in events:
        by_profile[event.profile_id].append(event)
    for profile_events in by_profile.values():
        profile_events.sort(key=lambda e: e.occurred_at)
    stored_last_seen = stored_last_seen or {}
    current = _joinable_sessions(
        {
            pid: profile_events for pid, profile_events in by_profile.items()
            if _may_continue(stored_last_seen, pid, profile_events[0].occurred_at, timeout)
        },
        timeout,
    )
    named = _client_sessions(site, {e.client_session_id for e in events if e.client_session_id})
    visits: list[PlannedEvent] = []
    opened: list[_OpenSession] = []
    joined: dict[int, _OpenSession] = {}  # every session an event joined, by object identity

    for profile_id, profile_events in by_profile.items():
        # The person's visits an event of theirs may still join: the stored ones within
        # the timeout of these events and those this batch opened. An event joins the
        # latest of them it fits, so a late event (an offline queue) that opens or joins
        # an old visit does not end the current one for the events after it.
        visits_open = list(current.get(profile_id, ()))
        for event in profile_events:
            at, wanted = event.occurred_at, event.client_session_id
            candidates = visits_open
            if wanted:
                candidates = [s for s in visits_open if s.external_id == wanted]
                if not candidates and (profile_id, wanted) in named:
                    candidates = [named[(profile_id, wanted)]]
            session = None
            if not event.new_session:
                for candidate in candidates:
                    if not _expired(candidate, at, timeout) and (
                        session is None or candidate.last_event_at > session.last_event_at
                    ):
                        session = candidate
            if session is None:
                if event.kind in NON_VISIT_KINDS and not event.new_session:
                    continue  # describes the person; there is no visit to join
                session = _open(profile_id, wanted, event, opened, visits, named)
            _join(session, event)
            joined[id(session)] = session
            if len(visits_open) != 1 or visits_open[0] is not session:
                # Events come oldest first: a visit that ended more than the timeout
                # before this one can take none of the later events.
                visits_open = [s for s in visits_open if s is not session and at - s.last_event_at <= timeout]
                visits_open.append(session)

    # Existing sessions only (opened ones are inserted whole); a batch may continue one
    # visit and then start another, so the one it left needs its update too.
    _write_sessions(site, opened, [s for s in joined.values() if s.id is not None])
    return visits


def _may_continue(
    stored_last_seen: Mapping[int, datetime | None], profile_id: int, first: datetime, timeout: timedelta
) -> bool:
    """Whether a session of ``profile_id`` stored before may be joined by an event at
    ``first`` or later (what ``_expired`` would say of the latest one, bounded by last_seen)."""
    if profile_id not in stored_last_seen:
        return True
    last_seen = stored_last_seen[profile_id]
    return last_seen is not None and first - last_seen <= timeout


def _expired(session: _OpenSession, at: datetime, timeout: timedelta) -> bool:
    # A late event (offline queue) inside the visit joins it; one far from it does not.
    return at - session.last_event_at > timeout or session.started_at - at > timeout


def _open(profile_id, external_id, event, opened, visits, named) -> _OpenSession:
    session = _OpenSession(
        id=None,
        profile_id=profile_id,
        external_id=external_id,
        started_at=event.occurred_at,
        last_event_at=event.occurred_at,
        context=_landing(event.context),
    )
    opened.append(session)
    if external_id:
        named[(profile_id, external_id)] = session
    visits.append(
        PlannedEvent(
            profile_id=profile_id,
            kind=Kind.TRACK,
            type="visited-site",
            properties={},
            context=event.context,
            occurred_at=event.occurred_at,
            message_id=None,
            received_at=event.received_at,
            session=session,
        )
    )
    session.event_count += 1
    return session


def _join(session: _OpenSession, event: PlannedEvent) -> None:
    event.session = session
    session.event_count += 1
    if event.occurred_at > session.last_event_at:
        session.last_event_at = event.occurred_at
    if event.occurred_at < session.started_at:
        session.started_at = event.occurred_at


def _landing(context: dict[str, Any] | jsontext.RawJSON) -> dict[str, Any]:
    context = jsontext.parsed(context)
    keep = {}
    for key in ("page", "referrer", "campaign", "userAgent", "ip"):
        if key in context:
            keep[key] = context[key]
    return keep


def _joinable_sessions(
    by_profile: Mapping[int, list[PlannedEvent]], timeout: timedelta
) -> dict[int, list[_OpenSession]]:
    """The stored sessions an event of ``by_profile`` (each person's events oldest first)
    may join, latest first: those that end no earlier than the timeout before a run of
    the person's events (events at most the timeout apart) and start no later than the
    timeout after it (``_expired`` of every other is true for each of the run's events).

    Not only the person's latest session: a late event (a batch the client retried after
    later ones went through) five minutes after an older visit belongs to that visit,
    and the latest one, started more than the timeout after it, would have made it a
    visit of its own. For events after the latest session, the usual case, the probe
    is the one it was: one range of (profile_id, last_event_at DESC) per person."""
    windows: list[tuple[int, datetime, datetime]] = []  # (profile, first, last) of each run
    for pid, events in by_profile.items():
        run_from = run_to = events[0].occurred_at
        for event in events[1:]:
            if event.occurred_at - run_to > timeout:
                windows.append((pid, run_from, run_to))
                run_from = event.occurred_at
            run_to = event.occurred_at
        windows.append((pid, run_from, run_to))
    if not windows:
        return {}
    with connection.cursor() as cursor:
        # Bounded: sessions overlapping a run of events at most the timeout apart are
        # few (a run's stored visits would have been one had they been that close).
        cursor.execute(
            """
            SELECT s.id, s.profile_id, s.external_id, s.started_at, s.last_event_at, s.event_count
            FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS w(id, low, high)
            CROSS JOIN LATERAL (
                SELECT id, profile_id, external_id, started_at, last_event_at, event_count
                FROM tracking_session
                WHERE profile_id = w.id AND last_event_at >= w.low AND started_at <= w.high
                ORDER BY last_event_at DESC LIMIT 20
            ) s
            """,
            [
                db.int_array(pid for pid, _, _ in windows),
                db.text_array((first - timeout).isoformat() for _, first, _ in windows),
                db.text_array((last + timeout).isoformat() for _, _, last in windows),
            ],
        )
        found: dict[int, dict[int, _OpenSession]] = defaultdict(dict)
        for row in cursor.fetchall():
            found[row[1]].setdefault(row[0], _stored(row))
    return {
        pid: sorted(sessions.values(), key=lambda s: s.last_event_at, reverse=True)
        for pid, sessions in found.items()
    }


def _client_sessions(site: Site, external_ids: set[str]) -> dict[tuple[int, str], _OpenSession]:
    if not external_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT DISTINCT ON (profile_id, external_id)
                   id, profile_id, external_id, started_at, last_event_at, event_count
            FROM tracking_session
            WHERE site_id = %s AND external_id = ANY(%s)
            ORDER BY profile_id, external_id, last_event_at DESC
            """,
            [site.pk, list(external_ids)],
        )
        return {(row[1], row[2]): _stored(row) for row in cursor.fetchall()}


def _write_sessions(site: Site, opened: list[_OpenSession], touched: list[_OpenSession]) -> None:
    if opened:
        # The rows travel as one JSON document: a jsonb[] parameter would be quoted
        # element by element on the client (a regex per quote character), which cost
        # more than the insert itself.
        rows = [
            {
                "n": n,
                "profile_id": s.profile_id,
                "external_id": s.external_id,
                "started_at": s.started_at.isoformat(),
                "last_event_at": s.last_event_at.isoformat(),
                "event_count": s.event_count,
                "context": s.context,
            }
            for n, s in enumerate(opened)
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO tracking_session
                    (site_id, profile_id, external_id, started_at, last_event_at, event_count, context)
                SELECT %s, v.profile_id, v.external_id, v.started_at, v.last_event_at, v.event_count, v.context
                FROM jsonb_to_recordset(%s::jsonb) AS v(
                    n int, profile_id bigint, external_id varchar, started_at timestamptz,
                    last_event_at timestamptz, event_count int, context jsonb)
                ORDER BY v.n
                RETURNING id
                """,
                [site.pk, _json(rows)],
            )
            ids = [row[0] for row in cursor.fetchall()]
        for session, session_id in zip(opened, ids, strict=True):
            session.id = session_id
    if touched:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE tracking_session s SET
                    last_event_at = GREATEST(s.last_event_at, v.last_event_at),
                    started_at = LEAST(s.started_at, v.started_at),
                    event_count = v.event_count
                FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[], %s::int[])
                    AS v(id, last_event_at, started_at, event_count)
                WHERE s.id = v.id
                """,
                [
                    db.int_array(s.id for s in touched),
                    db.text_array(s.last_event_at.isoformat() for s in touched),
                    db.text_array(s.started_at.isoformat() for s in touched),
                    db.int_array(s.event_count for s in touched),
                ],
            )
        moved: dict[int, tuple[datetime, datetime]] = {}  # id -> (start stored, new start)
        for s in touched:
            if s.stored_start is not None and s.started_at < s.stored_start and s.id is not None:
                # One visit may have been read twice (as the person's and by its client
                # id): the earliest start of its copies is the one stored.
                was, start = moved.get(s.id, (s.stored_start, s.started_at))
                moved[s.id] = (was, min(start, s.started_at))
        _move_visits(site, moved)


def _move_visits(site: Site, moved: Mapping[int, tuple[datetime, datetime]]) -> None:
    """Re-time the visited-site of each stored visit a late event moved the start of
    earlier (session id -> its start as stored, its new start): the visited-site stays
    the visit's first event. One statement, only when a start moved (a session this
    batch opened starts at its first event already).

    The events table has no session index: the start it had finds the row (by site,
    type and time, in that month's partition); PostgreSQL moves a row whose new time
    falls in another month. The profiles are locked (``resolve_batch``): no other batch
    moved these starts since they were read.

    Real-time work still waiting to hand a moved visited-site off finds its events by id
    within a time range (``handoff.events_of``): the same statement widens the range of
    each such work to the new time, or the visit would never be handed off."""
    if not moved:
        return
    with connection.cursor() as cursor:
        # The constant bounds prune the partitions when the statement is planned,
        # whichever way the join is made.
        cursor.execute(
            """
            WITH moved AS (
                UPDATE tracking_event e SET occurred_at = v.started_at
                FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(session_id, was, started_at)
                WHERE e.site_id = %s AND e.type = 'visited-site' AND e.occurred_at BETWEEN %s AND %s
                  AND e.occurred_at = v.was AND e.session_id = v.session_id
                RETURNING e.id, e.occurred_at
            )
            UPDATE tracking_pendingwork w
            SET occurred_from = LEAST(
                w.occurred_from, (SELECT min(m.occurred_at) FROM moved m WHERE m.id = ANY(w.event_ids)))
            WHERE w.site_id = %s AND w.completed_at IS NULL
              AND w.event_ids && (SELECT array_agg(m.id) FROM moved m)
            """,
            [
                db.int_array(moved),
                db.text_array(was.isoformat() for was, _ in moved.values()),
                db.text_array(start.isoformat() for _, start in moved.values()),
                site.pk,
                min(was for was, _ in moved.values()),
                max(was for was, _ in moved.values()),
                site.pk,
            ],
        )


def _json(value: Any) -> str:
    return jsontext.dumps(value)
