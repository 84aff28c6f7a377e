"""The one ingestion service every wire format calls.

``ingest_batch(site, messages)`` validates, dedupes, resolves every identity of the
batch at once, merges and creates profiles, assigns sessions, writes the events and
records the real-time work, in one transaction and a fixed number of queries whatever
the batch size (tests/integration/test_ingest_queries.py holds it to that).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from psycopg import postgres, pq
from psycopg.adapt import Dumper

from profiles.identity import ConcurrentChange, profiles_of_retries, resolve_batch
from tracking import db, handoff, jsontext, keys, partitions
from tracking.ingest.schema import (
    FieldError,
    Kind,
    Message,
    MessageError,
    RequestRejected,
    error_order,
    validate,
)
from tracking.models import PendingWork, Site
from tracking.sessions import PlannedEvent, assign_sessions, profiles_of_client_sessions

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRIES = 4


@dataclass
class IngestResult:
    accepted: list[int] = field(default_factory=list)  # message indexes stored
    duplicates: list[int] = field(default_factory=list)  # already seen (messageId): not stored again
    errors: list[FieldError] = field(default_factory=list)
    profile_ids: dict[int, int] = field(default_factory=dict)  # message index -> profile id
    event_ids: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)  # left for later (``store(defer_busy=True)``)


def event_time(m: Message, received_at: datetime) -> datetime:
    """The client's time corrected for its clock: receivedAt - (sentAt - timestamp),
    and never after receivedAt: an event cannot have happened after it arrived, and a
    time from a clock running ahead (with no sentAt to correct it) would stretch the
    person's visit into the future and be counted in days to come (PostHog too sets
    such a time to its arrival). In UTC, as ``received_at`` is: a client's offset may be
    one PostgreSQL's time input refuses (ISO 8601 allows ±23:59, PostgreSQL ±15:59), and
    times reach it as text in places (sessions, the inbox)."""
    if m.timestamp is None:
        return received_at
    if m.sent_at is not None:
        return min(received_at - (m.sent_at - m.timestamp), received_at)
    return min(m.timestamp.astimezone(UTC), received_at)


def check_signatures(site: Site, messages: list[Message], *, privileged: bool) -> None:
    """Secure mode. A signature that does not verify is always refused; with "only signed
    data", so is any message naming an identified person without one."""
    if privileged:
        return
    for m in messages:
        if m.signature and m.user_id:
            if not keys.check_identity_signature(site.signing_secret, m.user_id, m.signature):
                raise RequestRejected(
                    401, "bad_signature", "The identity signature does not match userId.",
                    [FieldError(m.index, "signature", "does not match userId")],
                )
        elif site.only_signed_data and m.user_id:
            raise RequestRejected(
                401, "unsigned", "This site accepts only signed identities.",
                [FieldError(m.index, "signature", "is required for userId on this site")],
            )
    if site.only_signed_data:
        _check_no_unsigned_person(site, messages)


# Ids a device makes up at random and keeps (the tracker's anonymous id, Raptor's cookie
# id) stand for that device: a call naming one comes from it. Other ids can be known or
# guessed (our profile ids are small numbers, emails are public), so in secure mode they
# name an identified person only with a signature. (Refusing the device's own id too
# refused the page views of a browser whose person had signed in there, once a forged
# link's identify failed and the tracker went on without a user id.)
DEVICE_ID_KINDS = frozenset({"anonymous", "cookie"})


def _check_no_unsigned_person(site: Site, messages: list[Message]) -> None:
    """"Only signed data": a message may not name an identified person without their
    signature by an id anyone may know or guess either (our profile id, an email or
    external id; an alias's previousId): one statement for the batch."""
    keys_named = {(kind, key) for m in messages for kind, key in _person_ids(m)}
    if not keys_named:
        return
    keys_wanted = {key for kind, key in keys_named if kind != "profile"}
    identified = set(db.execute(
        "SELECT i.kind, i.key FROM profiles_identity i JOIN profiles_profile p ON p.id = i.profile_id"
        " WHERE i.site_id = %s AND i.key = ANY(%s::text[]) AND p.is_identified",
        [site.pk, db.text_array(keys_wanted)],
    )) if keys_wanted else set()
    profiles = live_profiles(site, [int(key) for kind, key in keys_named if kind == "profile"])
    identified.update(("profile", str(pid)) for pid, (_, is_identified) in profiles.items() if is_identified)
    for m in messages:
        for kind, key in _person_ids(m):
            if (kind, key) not in identified:
                continue
            if m.kind is Kind.ALIAS:
                raise RequestRejected(
                    401, "unsigned", "This site accepts only signed identities.",
                    [FieldError(m.index, "previousId", "names an identified person: merging them needs the secret key")],
                )
            named = "profileId" if kind == "profile" else f"the {kind} id"
            raise RequestRejected(
                401, "unsigned", "This site accepts only signed identities.",
                [FieldError(m.index, "signature", f"is required on this site: {named} names an identified person")],
            )


def live_profiles(site: Site, profile_ids: list[int]) -> dict[int, tuple[int, bool]]:
    """Profile id sent by a client -> (the live profile: a merged one's target, whether
    that person is identified), for the ids that are this site's profiles."""
    if not profile_ids:
        return {}
    rows = db.execute(
        "SELECT p.id, coalesce(t.id, p.id), coalesce(t.is_identified, p.is_identified)"
        " FROM profiles_profile p LEFT JOIN profiles_profile t ON t.id = p.merged_into_id"
        " WHERE p.site_id = %s AND p.id = ANY(%s::bigint[])",
        [site.pk, db.int_array(sorted(set(profile_ids)))],
    )
    return {pid: (live, identified) for pid, live, identified in rows}


def _person_ids(m: Message) -> list[tuple[str, str]]:
    """The ids of ``m`` that would let a caller without that person's signature act for
    an identified person: with a userId (signed), only an alias's previousId, whose
    person would be merged into the signer (a signature of the destination proves
    nothing about the source)."""
    if m.kind is Kind.ALIAS:
        return [("user", m.previous_id)] if m.previous_id else []
    if m.user_id:
        return []
    ids = [("profile", str(m.profile_id))] if m.profile_id else []
    return ids + [(kind, key) for kind, key in m.identities if kind not in DEVICE_ID_KINDS]


def ingest_batch(
    site: Site,
    messages: list[Message],
    *,
    received_at: datetime | None = None,
    privileged: bool = False,
    actor: str = "write key",
    strict: bool = False,
) -> IngestResult:
    received_at = received_at or timezone.now()
    result = IngestResult()
    valid: list[Message] = []
    for m in messages:
        try:
            validate(m)
        except MessageError as exc:
            result.errors.append(FieldError(m.index, exc.field, exc.reason))
            continue
        m.occurred_at = event_time(m, received_at)
        m.received_at = m.received_at or received_at
        valid.append(m)
    if strict and result.errors:
        raise RequestRejected(400, "invalid", "The batch has invalid messages.", result.errors)
    check_signatures(site, valid, privileged=privileged)
    if not valid:
        return result

    stored = in_retried_transaction(
        lambda: _store(site, valid, received_at=received_at, privileged=privileged, actor=actor, strict=strict)
    )
    result.accepted = stored.accepted
    result.duplicates = stored.duplicates
    result.errors.extend(stored.errors)
    result.profile_ids = stored.profile_ids
    result.event_ids = stored.event_ids
    result.errors.sort(key=lambda e: (e.index if e.index is not None else -1))
    return result


def in_retried_transaction(work: Callable[[], T]) -> T:
    """Run ``work`` in a transaction, again when it lost a race: a concurrent batch
    created the same person (ConcurrentChange), a deadlock / serialization failure, or
    an event routed to the default partition while its month was being made there.
    The transaction rolled back whole, so running it again is safe."""
    for attempt in range(RETRIES):
        try:
            with transaction.atomic():
                return work()
        except (ConcurrentChange, OperationalError, IntegrityError) as exc:
            if attempt == RETRIES - 1 or (not isinstance(exc, ConcurrentChange) and not _retryable(exc)):
                raise
            log.info("ingest retry %s: %s", attempt + 1, exc)
    raise AssertionError("unreachable")


def _retryable(exc: OperationalError | IntegrityError) -> bool:
    cause = getattr(exc, "__cause__", None)
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate == "23514":
        # A check violation of the default partition's constraint: the row was routed
        # there, then waited while tracking.partitions attached its month; the next
        # attempt routes it to that month.
        return getattr(getattr(cause, "diag", None), "table_name", None) == partitions.DEFAULT
    return sqlstate in {"40P01", "40001"}  # deadlock detected, serialization failure


def store(
    site: Site,
    messages: list[Message],
    *,
    received_at: datetime,
    actor: str,
    actors: Mapping[int, str] | None = None,
    strict: bool = False,
    defer_busy: bool = False,
) -> IngestResult:
    """Store validated messages (``occurred_at`` set) in the caller's transaction: the
    inbox drain's entry (``tracking.inbox``). Raises ConcurrentChange / OperationalError
    for the caller to retry the transaction. ``actors`` (message index -> sender) where
    the messages came from different senders, ``actor`` for the rest. With
    ``defer_busy``, messages that need a profile another transaction holds are not
    waited for: they are left unstored (and unclaimed) and listed in ``deferred``, for
    the caller to keep."""
    return _store(
        site, messages, received_at=received_at, privileged=False, actor=actor, actors=actors, strict=strict,
        defer_busy=defer_busy,
    )


def _store(
    site: Site, messages: list[Message], *, received_at, privileged, actor, strict, defer_busy=False, actors=None
) -> IngestResult:
    result = IngestResult()
    fresh = _dedupe(site, messages, received_at)
    # By identity: Message compares by value, which is slow (a scan per message) and would
    # take a repeat of an identical message for the one that was stored.
    claimed = {id(m) for m in fresh}
    result.duplicates = [m.index for m in messages if id(m) not in claimed]
    if not fresh:
        result.profile_ids = profiles_of_retries(site, messages)
        return result
    client_sessions = {m.session_id for m in fresh if m.session_id}
    resolution = resolve_batch(
        site,
        fresh,
        session_profiles=profiles_of_client_sessions(site, client_sessions),
        privileged=privileged,
        actor=actor,
        actors=actors,
        defer_busy=defer_busy,
    )
    result.errors = resolution.errors
    result.deferred = resolution.deferred
    if strict and resolution.errors:
        # An identity rule refused a message (an alias, say): all or nothing, so roll back.
        raise RequestRejected(400, "invalid", "The batch has invalid messages.", resolution.errors)
    if resolution.errors or resolution.deferred:
        # Nothing of these is stored: their messageIds may come again (a deferred
        # message comes again itself, from the inbox).
        _release(site, [m for m in fresh if m.index not in resolution.profile_ids])
    planned = [
        PlannedEvent(
            profile_id=resolution.profile_ids[m.index],
            kind=m.kind,
            type=m.event_type(),
            properties=m.event_properties(),
            context=m.context,
            occurred_at=m.occurred_at,
            message_id=m.message_id,
            client_session_id=m.session_id,
            new_session=m.new_session,
            received_at=m.received_at,
        )
        for m in fresh
        if m.index in resolution.profile_ids
    ]
    visits = assign_sessions(site, planned, resolution.stored_last_seen)
    events = planned + visits
    # None when every message was refused or deferred.
    result.event_ids = _insert_events(site, events, received_at) if events else []
    result.accepted = [m.index for m in fresh if m.index in resolution.profile_ids]
    result.profile_ids = resolution.profile_ids
    if result.duplicates:
        # A retry is not stored again, but its sender still keeps the profile id.
        retried = [m for m in messages if id(m) not in claimed]
        result.profile_ids = {**profiles_of_retries(site, retried), **resolution.profile_ids}
    if events:
        _record_work(site, events, result.event_ids, repoint_later=resolution.repoint_later)
    refused = {e.index for e in resolution.errors}
    refused_ids = {m.message_id for m in fresh if m.message_id and m.index in refused} if refused else set()
    again = [m for m in messages if id(m) not in claimed and m.message_id in refused_ids] if refused_ids else []
    if again:
        # A copy of a refused message later in the batch (a client that retried, signed
        # this time, before the first answer) was set aside as its repeat, but nothing
        # was stored under that id and the id is released: it gets its own turn.
        more = _store(site, again, received_at=received_at, privileged=privileged, actor=actor,
                      strict=strict, defer_busy=defer_busy, actors=actors)
        handled = {*more.accepted, *more.deferred, *(e.index for e in more.errors)}
        result.duplicates = [i for i in result.duplicates if i not in handled]
        result.accepted = sorted([*result.accepted, *more.accepted])
        result.errors = sorted([*result.errors, *more.errors], key=error_order)
        result.deferred = [*result.deferred, *more.deferred]
        # Each copy is answered for as its own turn went: a copy refused again (or left
        # for later) names no profile, not the one its ids name now, as a retry would.
        result.profile_ids = {
            **{i: pid for i, pid in result.profile_ids.items() if i not in handled}, **more.profile_ids
        }
        result.event_ids = [*result.event_ids, *more.event_ids]
    return result


def _dedupe(site: Site, messages: list[Message], received_at: datetime) -> list[Message]:
    """Messages whose messageId was not seen before (claimed now, in this transaction)."""
    first: dict[str, Message] = {}
    for m in messages:
        if m.message_id and m.message_id not in first:
            first[m.message_id] = m
    seen_before = _claim_message_ids(site, sorted(first), received_at) if first else set()
    return [
        m for m in messages
        if not m.message_id or (first[m.message_id] is m and m.message_id not in seen_before)
    ]


def _claim_message_ids(site: Site, message_ids: list[str], received_at: datetime) -> set[str]:
    """Claim ``message_ids`` (sorted) in this transaction; returns those claimed before.

    A plain INSERT first, in a savepoint: retries are rare, and INSERT … ON CONFLICT DO
    NOTHING RETURNING, with the set difference that names the repeats, cost the drain's
    backend about twice as much a message. Only when some id was claimed before does
    the INSERT fail, and the careful form runs. Sorted: two overlapping retries then wait
    for each other instead of deadlocking."""
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                cursor.execute(
                    "INSERT INTO tracking_messagededupe (site_id, message_id, first_seen)"
                    " SELECT %s, unnest(%s::varchar[]), %s",
                    [site.pk, db.text_array(message_ids), received_at],
                )
            return set()
        except IntegrityError:
            pass
        # Only the ids already claimed come back (usually a few), not the thousands
        # claimed now.
        cursor.execute(
            """
            WITH wanted AS (SELECT unnest(%s::varchar[]) AS message_id),
            claimed AS (
                INSERT INTO tracking_messagededupe (site_id, message_id, first_seen)
                SELECT %s, message_id, %s FROM wanted
                ON CONFLICT DO NOTHING
                RETURNING message_id
            )
            SELECT message_id FROM wanted EXCEPT ALL SELECT message_id FROM claimed
            """,
            [db.text_array(message_ids), site.pk, received_at],
        )
        return {row[0] for row in cursor.fetchall()}


def _release(site: Site, refused: list[Message]) -> None:
    """Forget the messageIds of refused messages: nothing of them was stored, so the
    client may send them again (signed, or with the secret key)."""
    message_ids = [m.message_id for m in refused if m.message_id]
    if message_ids:
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM tracking_messagededupe WHERE site_id = %s AND message_id = ANY(%s)",
                [site.pk, message_ids],
            )


COPY_COLUMNS = (
    "id", "site_id", "profile_id", "session_id", "type", "properties", "context",
    "occurred_at", "received_at", "message_id",
)
COPY_TYPES = ("int8", "int8", "int8", "int8", "varchar", "jsonb", "jsonb", "timestamptz", "timestamptz", "varchar")


class _JsonbText(Dumper):
    """jsonb in COPY's binary format from JSON text already written: its version byte (1)
    and the text. psycopg's own jsonb dumper takes an object and writes it again."""

    format = pq.Format.BINARY
    oid = postgres.types["jsonb"].oid

    def dump(self, obj: str) -> bytes:
        return b"\x01" + obj.encode()


def _insert_events(site: Site, events: list[PlannedEvent], received_at: datetime) -> list[int]:
    """COPY the events in, in the binary format; ids are taken from the table's sequence
    first (COPY returns none). Binary rather than text: PostgreSQL need not parse the
    numbers and times, nor Python write and escape them. Measured on 5,000-row COPYs of
    bench-like events into a table without indexes: 5.8 µs a row in the backend and 5.8
    in Python as text, 2.9 and 3.1 in binary."""
    with connection.cursor() as cursor:
        cursor.execute(
            db.next_ids_sql("tracking_event"),
            [len(events)],
        )
        ids = [row[0] for row in cursor.fetchall()]
        raw = cursor.cursor  # psycopg's own cursor: COPY is not in the DB-API
        # By oid only (``None``): used where COPY names the column's type, not for str.
        raw.adapters.register_dumper(None, _JsonbText)
        site_id = site.pk
        # Django's error translation, as for its own cursors: a deadlock or a row routed
        # to the default partition while its month was attached is retried by
        # ``in_retried_transaction`` only as a ``django.db`` error.
        with connection.wrap_database_errors, raw.copy(f"COPY tracking_event ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(COPY_TYPES)
            write_row = copy.write_row
            for event_id, e in zip(ids, events, strict=True):
                write_row(
                    (
                        event_id,
                        site_id,
                        e.profile_id,
                        e.session.id if e.session is not None else None,
                        e.type,
                        json_text(e.properties),
                        json_text(e.context),
                        e.occurred_at,
                        e.received_at or received_at,
                        e.message_id or None,
                    )
                )
    return ids


def _record_work(site: Site, events: list[PlannedEvent], event_ids: list[int], *, repoint_later: bool) -> None:
    if repoint_later:
        from profiles.tasks import repoint_merged_events_task

        transaction.on_commit(lambda: _enqueue(repoint_merged_events_task, site.pk))
    if not handoff.handlers():
        return
    work = PendingWork.objects.create(
        site=site,
        event_ids=event_ids,
        profile_ids=sorted({e.profile_id for e in events}),
        occurred_from=min(e.occurred_at for e in events),
        occurred_to=max(e.occurred_at for e in events),
    )
    from tracking.tasks import process_pending_work_task

    transaction.on_commit(lambda: _enqueue(process_pending_work_task, work.pk))


def _enqueue(task, *args) -> None:
    try:
        task.delay(*args)
    except Exception:
        # The broker is down: the work is in PostgreSQL and the sweep will pick it up.
        log.warning("could not enqueue %s%s; the sweep will", task.name, args, exc_info=True)


def json_text(value: Any) -> str:
    """The JSON text an event column stores: queued text as it is, an object written."""
    return value if type(value) is jsontext.RawJSON else jsontext.dumps(value)
