"""The ingestion inbox: accept a request with one INSERT, store its events in bulk later.

Why: storing a batch (dedupe, identities, profiles, sessions, events) is a dozen
statements whatever its size, so a request of one event paid for all of them while
its client waited. Now a Segment request is validated, its signatures checked and its
people looked up (so the answer still carries their profile ids), then written to
``tracking_inboxbatch`` and answered. Celery drains the inbox in chunks of thousands
of messages through the ingestion core's store step and deletes the rows in the same
transaction: every accepted message is stored exactly once, or it is still queued.

- ``submit`` is the web side. With ``INGEST_MODE = "immediate"`` (the tests, a site
  without a worker) it stores the request before answering, through the same queue row.
- ``drain`` is the worker side: claims chunks with ``FOR UPDATE SKIP LOCKED``, keeps
  going while rows arrive and stops after a quiet spell.
- Lanes: with ``INGEST_DRAINS`` above one, a request's messages are queued in one row per
  lane, a lane per person (``lanes``), and drain k stores the lanes ``lane % INGEST_DRAINS
  = k``. Drains then rarely touch the same profiles: without lanes, two drains stored less
  than one, waiting on each other's profile locks and redoing chunks that lost a race
  (a visitor's events in one chunk, their identify in the other's).
- A chunk that fails is retried row by row; a row that fails alone is set aside with its
  error (``failed_at``; the admin retries it) so it cannot block the rows behind it.
- Back-pressure: past ``INGEST_MAX_BACKLOG`` queued messages, requests get 429 with
  ``Retry-After`` and nothing of them is stored.

Alias messages (a refused merge must be reported in the answer) and privileged calls do
not queue: ``queueable`` says so and the view stores them at once.
"""

from __future__ import annotations

import logging
import time
import traceback
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from profiles.identity import identifies
from tracking import db, jsontext
from tracking.ingest import core
from tracking.ingest.schema import (
    WIRE_FIELDS,
    WIRE_INDEX,
    Kind,
    Message,
    RequestRejected,
    from_wire,
    to_wire,
)
from tracking.models import InboxBatch, Site

log = logging.getLogger(__name__)

CHUNK_MESSAGES = 5000  # messages stored per transaction by a drain
CHUNK_ROWS = 1000
IDLE_SECONDS = 2.0  # a drain waits this long for new rows before it ends
POLL_SECONDS = 0.05
SMALL_CHUNK = 500  # messages; after a smaller chunk the drain waits GATHER_SECONDS
GATHER_SECONDS = 0.2
VACUUM_SECONDS = 10.0  # a drain that stored rows vacuums the inbox this often


def immediate() -> bool:
    return settings.INGEST_MODE == "immediate"


def queueable(messages: list[Message]) -> bool:
    return all(m.kind is not Kind.ALIAS for m in messages)


# --- the web side ------------------------------------------------------------------------


def submit(
    site: Site, messages: list[Message], *, received_at: datetime, actor: str, strict: bool = False
) -> core.IngestResult:
    """Queue valid ``messages`` (validated, in request order) and answer for them.

    Raises ``RequestRejected`` for a bad signature (401) or a full inbox (429); then
    nothing is queued.
    """
    for m in messages:
        m.occurred_at = core.event_time(m, received_at)
        m.received_at = received_at
    core.check_signatures(site, messages, privileged=False)
    if immediate():
        return _store_now(site, messages, received_at=received_at, actor=actor, strict=strict)
    _check_backlog()
    known = _known_people(site, messages)
    profile_ids = _promise_profiles(messages, known)
    groups = _by_lane(messages, settings.INGEST_DRAINS, known)
    taken: dict[int, int] = {}  # reservation slot -> the profile id reserved for it
    slots = {lane: _local_slots(group) for lane, group in groups.items()}
    # One statement for every lane's row: a request split over lanes is queued whole or
    # not at all, with no transaction of its own (BEGIN, a second INSERT and COMMIT were
    # three more round trips, 5% of the web's instructions a batched message).
    rows = _insert(
        site,
        [(lane, group, len(slots[lane])) for lane, group in groups.items()],
        received_at=received_at,
        actor=actor,
    )
    for (_, reserved), local in zip(rows, slots.values(), strict=True):
        taken.update((slot, reserved[-mine - 1]) for slot, mine in local.items())
    for index, slot in list(profile_ids.items()):
        if slot < 0:  # a reservation slot: -1 is the first
            profile_ids[index] = taken[slot]
    transaction.on_commit(wake_drain)
    log.debug("queued request: %s messages in %s lanes", len(messages), len(groups))
    return core.IngestResult(accepted=[m.index for m in messages], profile_ids=profile_ids)


def _store_now(site, messages, *, received_at, actor, strict) -> core.IngestResult:
    """Immediate mode: the same row, stored before the answer (one transaction)."""

    def store_row() -> core.IngestResult:
        [(row_id, _)] = _insert(site, [(0, messages, 0)], received_at=received_at, actor=actor, stored_now=True)
        result = _store_rows([row_id], strict=strict)[row_id]
        InboxBatch.objects.filter(pk=row_id).delete()
        return result

    return core.in_retried_transaction(store_row)


def _known_people(site: Site, messages: list[Message]) -> dict[tuple[str, str], tuple[int, bool]]:
    """(kind, key) -> (profile id, identified?) for every id of ``messages`` known now.

    A profile id a message sends (``("profile", "17")``) maps to the live profile (a
    merged one's target) when it is this site's; an unknown one is left out, as the
    drain then makes a new profile."""
    keys = {k for m in messages for k in (m.user_id, m.anonymous_id) if k}
    keys.update(key for m in messages for _, key in m.identities)
    owners: dict[tuple[str, str], int] = {}
    if keys:
        rows = db.execute(
            "SELECT kind, key, profile_id FROM profiles_identity WHERE site_id = %s AND key = ANY(%s::text[])",
            [site.pk, db.text_array(keys)],
        )
        owners = {(kind, key): pid for kind, key, pid in rows}
    profiles = core.live_profiles(site, [m.profile_id for m in messages if m.profile_id])
    known = {("profile", str(pid)): found for pid, found in profiles.items()}
    # Whether a profile is identified matters only where a userId comes with another id
    # that is known: a userId not known yet (a first identify keeps that profile), or an
    # identify (it merges an anonymous profile, and only switches from an identified
    # one). Only those profiles are read: joining every key's profile was 40% of the
    # lookup, the largest statement PostgreSQL ran while batches arrived.
    unsure = {
        owners[other]
        for m in messages
        if m.user_id and (("user", m.user_id) not in owners or identifies(m))
        for other in _other_ids(m)
        if other in owners
    }
    identified: dict[int, bool] = {}
    if unsure:
        identified = dict(
            db.execute(
                "SELECT id, is_identified FROM profiles_profile WHERE id = ANY(%s::bigint[])",
                [db.int_array(sorted(unsure))],
            )
        )
    # A user id names an identified person; for the rest the flag is only read when unsure.
    known.update((key, (pid, identified.get(pid, key[0] == "user"))) for key, pid in owners.items())
    return known


def _other_ids(m: Message) -> list[tuple[str, str]]:
    """The ids of a message other than its userId, in the order the rules look at them
    (``profiles.identity``: anonymous id, our profile id, then the rest)."""
    others = [("anonymous", m.anonymous_id)] if m.anonymous_id else []
    if m.profile_id:
        others.append(("profile", str(m.profile_id)))
    return others + list(m.identities)


def _promise_profiles(
    messages: list[Message], known: dict[tuple[str, str], tuple[int, bool]]
) -> dict[int, int]:
    """The profile each message will land on, as the identity rules
    (``profiles.identity``) will decide it with what is known now, message after message
    as the drain stores them. A person not known yet gets a reservation slot (-1, -2, …;
    the ids are taken with the insert of its lane's row); messages of one new person
    share it. Returns message index -> profile id or slot."""
    owner = {key: pid for key, (pid, _) in known.items()}  # id -> profile or slot
    identified = {pid for pid, flag in known.values() if flag}
    merged: dict[int, int] = {}  # profile or slot -> the one it was merged into
    promised: dict[int, int] = {}
    slots = 0

    def new_slot() -> int:
        nonlocal slots
        slots += 1
        return -slots

    def owner_of(key: tuple[str, str]) -> int | None:
        pid = owner.get(key)
        while pid in merged:
            pid = merged[pid]
        return pid

    for m in messages:
        user = ("user", m.user_id) if m.user_id else None
        others = _other_ids(m)
        current = next((pid for k in others if (pid := owner_of(k)) is not None), None)
        if user:
            pid = owner_of(user)
            if pid is None:
                also = next((p for k in m.identities if k[0] == "user" and (p := owner_of(k)) is not None), None)
                if also is not None:
                    pid = also  # Raptor: a second user id of the same person
                elif current is not None and current not in identified:
                    pid = current  # the first identify keeps the anonymous profile
                else:
                    pid = new_slot()
                owner[user] = pid
            identified.add(pid)
            if current is not None and current != pid and current not in identified and identifies(m):
                merged[current] = pid  # the anonymous profile's ids name the person now
        elif current is not None:
            pid = current
        else:
            pid = new_slot()
        for key in others:
            if key[0] != "profile":  # an unknown profile id is not linked to anyone
                owner.setdefault(key, pid)
        promised[m.index] = pid
        if pid < 0:
            m.reserved_profile_id = pid
    return promised


def profile_lane(pid: int, count: int) -> int:
    """The lane of a known person: a multiplicative hash of their profile id (Knuth's,
    its upper 16 bits), which SQL computes too (``_PROFILE_LANE_SQL``). The id modulo
    the lanes would follow any structure in the ids: the bench's identified people are
    7 ids of every 20, which split 4:3 over two lanes."""
    return ((((pid & 0xFFFFFFFF) * 2654435761) & 0xFFFFFFFF) >> 16) % count


_PROFILE_LANE_SQL = "mod(div(mod(mod({id}, 4294967296) * 2654435761::numeric, 4294967296), 65536), {count})"

# The ids a row reserves for new people are drawn to fall in the row's lane (the lane of
# a known person), so a new person's profile is in the lane their first calls were
# queued in: their calls before and after their first storage share one lane, in order.
# A few more ids are drawn than reserved (``_draws``); the unused ones are skipped, and
# if too few fall in the lane, others make up the count.
_RESERVE_PROFILE_IDS = (
    f"SELECT d.id FROM ({db.next_ids_sql('profiles_profile', count='v.draws')}) AS d(id)"
    f" ORDER BY {_PROFILE_LANE_SQL.format(id='d.id', count='%s::int')} <> v.lane, d.id LIMIT v.reserve"
)


def _draws(reserve: int, count: int) -> int:
    """Ids to draw for ``reserve`` ids in one lane of ``count``."""
    return reserve if reserve == 0 or count <= 1 else count * (reserve + 2)


ACCEPT_LOCK = 0x6670_6163  # advisory lock class of a site's queue ("fpac"): shared by each
# statement queueing a call, taken by an erase (``stop_accepting``)


def _insert(
    site, rows: list[tuple[int, list[Message], int]], *, received_at, actor, stored_now: bool = False
) -> list[tuple[int, list[int]]]:
    """Queue one row per (lane, messages, profile ids to reserve), in one statement;
    returns (row id, reserved ids) per row, in the same order. A queued call waits while
    an erase on its site commits (``stop_accepting``); a row ``stored_now`` (immediate
    mode, in the transaction that stores it) need not."""
    values = ", ".join(["(%s::int, %s::int, %s::int, %s::int, %s::text)"] * len(rows))
    count = max(1, settings.INGEST_DRAINS)
    params: list = [] if stored_now else [ACCEPT_LOCK, site.pk % 2**31]
    params += [site.pk, received_at, actor, count]
    for lane, messages, reserve in rows:
        params += [lane, len(messages), reserve, _draws(reserve, count), _dump(messages)]
    # The lock is the statement's (autocommit): a CTE, evaluated once, before any row.
    accepting = "" if stored_now else "WITH accepting AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(%s, %s))"
    inserted = db.execute(
        f"""
        {accepting}
        INSERT INTO tracking_inboxbatch
            (site_id, received_at, actor, message_count, lane, reserved, messages, attempts, last_error)
        SELECT %s, %s, %s, v.message_count, v.lane,
               ARRAY({_RESERVE_PROFILE_IDS}), v.messages, 0, ''
        FROM (VALUES {values}) AS v(lane, message_count, reserve, draws, messages){"" if stored_now else ", accepting"}
        RETURNING id, lane, reserved
        """,
        params,
    )
    by_lane = {lane: (row_id, reserved) for row_id, lane, reserved in inserted}
    return [by_lane[lane] for lane, _, _ in rows]


# Which id of a person names their lane: the device's anonymous id first, so a visitor's
# events and the identify that merges them into a known person share a lane (the merge
# and the visitor's events then rarely race), then the other ids.
_LANE_ID_RANK = {"anonymous": 0, "cookie": 1, "email": 2, "external": 3, "user": 4, "profile": 5, "session": 6}


def lanes(
    messages: list[Message], count: int, known: Mapping[tuple[str, str], tuple[int, bool]] | None = None
) -> list[int]:
    """The lane (0 … count-1) of each message. A lane's drain locks the profiles of its
    messages, so one person's messages should be in one lane.

    Messages that share an id within the request (a visitor, their identify, their events
    after it) are one component and share a lane, so the identity rules see them in
    request order. A component's lane comes from its best-ranked id (``_LANE_ID_RANK``,
    then the smallest): the lane of the profile that id names when the server knows it
    (``known``: (kind, key) -> (profile id, identified), as the web side looked it up),
    else a hash of the id. So every call of a known person is in one lane whichever of
    their ids it carries: once a visitor is merged into a known person, their anonymous
    id names that person. (By the id alone, a merged visitor's calls and the person's
    userId calls were in two lanes, and each such person made one drain wait for the
    other's whole chunk.) A new visitor's calls share the lane of their anonymous id until
    they are stored, and the profile id reserved for them falls in that lane too
    (``_RESERVE_PROFILE_IDS``), so their later calls stay there. Stable (a hash of the
    profile id, ``profile_lane``, or the crc32 of the id): every web process and drain
    agrees."""
    if count <= 1:
        return [0] * len(messages)
    known = known or {}
    # Union-find over (rank, kind, key) triples, a smaller triple always the root: a
    # component's root is its best-ranked id, with no pass to find it, and its lane is
    # worked out once. (The web side runs this for every batched message: pairs of
    # (kind, key), a best-id pass and a crc32 per message cost 12% of its instructions.)
    parent: dict[tuple[int, str, str], tuple[int, str, str]] = {}
    ids = []
    for m in messages:
        own = [(0, "anonymous", m.anonymous_id)] if m.anonymous_id else []
        if m.user_id:
            own.append((4, "user", m.user_id))
        for kind, key in m.identities:
            own.append((_LANE_ID_RANK.get(kind, 4), kind, key))
        if m.profile_id:
            own.append((5, "profile", str(m.profile_id)))
        if m.session_id:
            own.append((6, "session", m.session_id))
        for other in own[1:]:
            db.union(parent, own[0], other)
        ids.append(own)
    chosen: dict[tuple[int, str, str], int] = {}
    out = []
    for own in ids:
        if not own:
            out.append(0)
            continue
        root = db.find(parent, own[0])
        lane = chosen.get(root)
        if lane is None:
            _, kind, key = root
            pid = known.get((kind, key), (int(key) if kind == "profile" else 0, False))[0]
            lane = chosen[root] = profile_lane(pid, count) if pid > 0 else zlib.crc32(f"{kind}:{key}".encode()) % count
        out.append(lane)
    return out


def _by_lane(
    messages: list[Message], count: int, known: Mapping[tuple[str, str], tuple[int, bool]]
) -> dict[int, list[Message]]:
    """Messages grouped by lane, in request order within each."""
    groups: dict[int, list[Message]] = {}
    for m, lane in zip(messages, lanes(messages, count, known), strict=True):
        groups.setdefault(lane, []).append(m)
    return groups


def _local_slots(group: list[Message]) -> dict[int, int]:
    """Renumber the reservation slots a lane's messages use (-1, -2, … within its row,
    whose ``reserved`` array holds only its own): request slot -> row slot. A new person
    is one component, so their slot is in one lane only."""
    local: dict[int, int] = {}
    for m in group:
        slot = m.reserved_profile_id
        if slot is not None:
            m.reserved_profile_id = local.setdefault(slot, -(len(local) + 1))
    return local


def _dump(messages: list[Message]) -> str:
    return jsontext.dumps([to_wire(m) for m in messages])


BACKLOG_CHECK_SECONDS = 5.0
_backlog = {"checked": 0.0, "full": False}


def _check_backlog() -> None:
    """429 while the inbox holds more than INGEST_MAX_BACKLOG messages, looked up at
    most every BACKLOG_CHECK_SECONDS per process: the count walks the inbox, dead rows
    and all (30-60 ms under /v1/track load, pg_stat_statements), and a limiter that
    protects a backlog of millions need not know it to the second."""
    limit = settings.INGEST_MAX_BACKLOG
    if not limit:
        return
    now = time.monotonic()
    if now - _backlog["checked"] >= BACKLOG_CHECK_SECONDS:
        _backlog["checked"] = now
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT coalesce(sum(message_count), 0) FROM ("
                " SELECT message_count FROM tracking_inboxbatch WHERE failed_at IS NULL LIMIT %s) q",
                [limit + 1],
            )
            _backlog["full"] = cursor.fetchone()[0] > limit
    if _backlog["full"]:
        raise RequestRejected(
            429, "too_many_requests", "Footprint is catching up with earlier traffic; retry shortly."
        )


_wake = {"at": 0.0}


def wake_drain() -> None:
    """Enqueue a drain unless this process did less than a second ago (a drain keeps
    polling for IDLE_SECONDS, so it is still running then). The beat runs one every few
    seconds as well, so a broker outage delays storage but loses nothing."""
    now = time.monotonic()
    if now - _wake["at"] < 1.0:
        return
    _wake["at"] = now
    from tracking.tasks import drain_inbox_task

    core._enqueue(drain_inbox_task)


# --- the worker side ----------------------------------------------------------------------


@dataclass
class DrainStats:
    rows: int = 0
    messages: int = 0
    failed_rows: int = 0
    timed_out: bool = False  # stopped by max_seconds with work still arriving


DRAIN_LOCK = 0x6670_6472  # advisory lock class of the drain slots ("fpdr"), held while a drain runs
LANE_LOCK = 0x6670_6c6e  # ... of the lanes ("fpln"), held by the chunk (transaction) storing one


def drain(*, idle_seconds: float = IDLE_SECONDS, max_seconds: float = 60.0) -> DrainStats:
    """Store queued requests chunk by chunk until none has arrived for ``idle_seconds``
    (or ``max_seconds`` have passed: the task then enqueues a successor).

    At most INGEST_DRAINS drains run at once, whatever number of tasks were enqueued
    (each holds one of that many advisory-lock slots); a task that finds every slot
    taken returns at once: the running drains poll for new rows anyway."""
    stats = DrainStats()
    slot = _take_slot()
    if slot is None:
        return stats
    try:
        return _drain(stats, idle_seconds=idle_seconds, max_seconds=max_seconds, lane=slot)
    finally:
        _release_slot(slot)


def _take_slot() -> int | None:
    return next((slot for slot in range(settings.INGEST_DRAINS) if _try_slot(slot)), None)


def _try_slot(slot: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [DRAIN_LOCK, slot])
        return cursor.fetchone()[0]


def _release_slot(slot: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [DRAIN_LOCK, slot])


def _unowned(slots: list[int]) -> list[int]:
    """The slots of ``slots`` no drain holds now (looked at, not taken)."""
    if not slots:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT s FROM unnest(%s::int[]) AS s WHERE NOT EXISTS ("
            " SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::oid AND objid = s::oid AND objsubid = 2"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
            [slots, DRAIN_LOCK],
        )
        return [row[0] for row in cursor.fetchall()]


def _drain_lanes(lane: int) -> tuple[int, int, int]:
    """A chunk of the drain's own lane and of every lane whose drain is not running (no
    drain holds its slot), oldest rows first, so that fewer drains than INGEST_DRAINS (a
    worker short of processes, or helpers that stopped) still store every lane, and one
    drain storing every lane does it in chunks as large as with one lane (a chunk per
    lane cost a transaction per lane). Borrowed lanes are locked for the chunk only
    (``_lock_lanes``), never their slots: a drain that borrowed a lane by taking its slot
    held every slot through most of its chunks, so the helper a backlog starts found
    none free and one drain stored the whole backlog (two of three bench runs)."""
    others = [other for other in range(settings.INGEST_DRAINS) if other != lane]
    return drain_chunk([lane, *_unowned(others)])


def _lock_lanes(lanes: list[int]) -> list[int]:
    """In the chunk's transaction: lock the first lane (the drain's own; waits while a
    drain that borrowed it finishes its chunk) and whichever of the others (borrowed)
    no chunk holds; returns the lanes locked. A drain that starts for a lane another
    drain borrowed takes it over at that chunk's end, so one lane is stored by one
    chunk at a time, oldest rows first, and a person's calls stay in order."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LANE_LOCK, lanes[0]])
        if len(lanes) == 1:
            return lanes
        cursor.execute(
            "SELECT s FROM unnest(%s::int[]) WITH ORDINALITY AS u(s, n)"
            " WHERE pg_try_advisory_xact_lock(%s, s) ORDER BY n",
            [lanes[1:], LANE_LOCK],
        )
        return [lanes[0], *(row[0] for row in cursor.fetchall())]


def _drain(stats: DrainStats, *, idle_seconds: float, max_seconds: float, lane: int) -> DrainStats:
    started = last_work = vacuumed = time.monotonic()
    while True:
        if stats.rows and time.monotonic() - vacuumed >= VACUUM_SECONDS:
            vacuumed = time.monotonic()
            vacuum()
        if time.monotonic() - started >= max_seconds:
            stats.timed_out = True
            break
        rows, messages, failed = _drain_lanes(lane)
        stats.rows += rows
        stats.messages += messages
        stats.failed_rows += failed
        if lane > 0 and messages < SMALL_CHUNK:
            # A helper drain (slot 1 and up) runs while there is a backlog; at a trickle
            # drain 0 stores its lane with its own, in one chunk: two drains each storing
            # half a trickle answered 10% fewer /v1/track calls than one drain.
            break
        if rows or failed:
            last_work = time.monotonic()
            if messages < SMALL_CHUNK:
                # A trickle (single calls): let it gather, a chunk costs a dozen statements.
                time.sleep(GATHER_SECONDS)
        elif time.monotonic() - last_work >= idle_seconds:
            break
        else:
            time.sleep(POLL_SECONDS)
    return stats


def vacuum() -> None:
    """VACUUM the inbox. Every stored row is deleted, so under load the table and its
    key fill with dead rows faster than autovacuum (at most once a minute) clears them,
    and the claim and backlog queries walked over them: 17 and 62 ms a call after a
    minute of /v1/track traffic (pg_stat_statements), a few ms once vacuumed."""
    # SKIP_LOCKED: when autovacuum is at it already, leave it be rather than wait.
    db.vacuum(["tracking_inboxbatch"], options="SKIP_LOCKED")


_rows_hint = {"rows": 100}  # rows to claim for about CHUNK_MESSAGES (learned per chunk)


def drain_chunk(lane: int | Sequence[int] = 0) -> tuple[int, int, int]:
    """Claim the oldest rows of ``lane`` or lanes (mod INGEST_DRAINS) no other drain holds (about
    CHUNK_MESSAGES messages) and store them in one transaction. Returns (rows stored, their messages, rows set aside).
    A chunk that fails is stored row by row; a row that fails alone is set aside."""
    claimed: list[int] = []
    lanes = [lane] if isinstance(lane, int) else list(lane)
    try:
        return (*_drain_together(claimed, lanes=lanes), 0)
    except Exception:
        if not claimed:
            raise
        log.warning("a chunk of %s queued requests failed; storing them one by one", len(claimed), exc_info=True)
    rows = messages = failed = 0
    for row_id in claimed:
        try:
            r, m = _drain_together([], only=row_id)
        except Exception:
            log.exception("queued request %s failed; set aside", row_id)
            failed += _set_aside(row_id)
            continue
        rows, messages = rows + r, messages + m
    return rows, messages, failed


def _drain_together(claimed: list[int], *, only: int | None = None, lanes: Sequence[int] = (0,)) -> tuple[int, int]:
    """Claim and store one chunk in a (retried) transaction: (rows stored, messages)."""

    def store_chunk() -> tuple[int, int]:
        claimed[:] = _claim(only, lanes if only is not None else _lock_lanes(list(lanes)))
        if not claimed:
            return 0, 0
        results = _store_rows(claimed, defer_busy=True)
        done = [row_id for row_id in claimed if not results[row_id].deferred]
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM tracking_inboxbatch WHERE id = ANY(%s)", [done])
        return len(results), sum(len(r.accepted) + len(r.duplicates) for r in results.values())

    return core.in_retried_transaction(store_chunk)


def _claim(only: int | None, lanes: Sequence[int] = (0,)) -> list[int]:
    """Lock the oldest queued rows of ``lanes`` that no other drain holds, in the caller's
    transaction, and keep a prefix of about CHUNK_MESSAGES messages (at least one row);
    the rest are released at commit, for the next chunk. Lanes count mod INGEST_DRAINS,
    so rows queued under a larger setting are still drained."""
    with connection.cursor() as cursor:
        if only is not None:
            cursor.execute(
                "SELECT id, message_count FROM tracking_inboxbatch"
                " WHERE id = %s AND failed_at IS NULL FOR UPDATE SKIP LOCKED",
                [only],
            )
        elif len({k % settings.INGEST_DRAINS for k in lanes}) < settings.INGEST_DRAINS:
            cursor.execute(
                "SELECT id, message_count FROM tracking_inboxbatch WHERE failed_at IS NULL"
                " AND mod(lane, %s) = ANY(%s) ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [settings.INGEST_DRAINS, sorted(set(lanes)), _rows_hint["rows"]],
            )
        else:
            cursor.execute(
                "SELECT id, message_count FROM tracking_inboxbatch WHERE failed_at IS NULL"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                [_rows_hint["rows"]],
            )
        rows = cursor.fetchall()
    ids, total = [], 0
    for row_id, count in rows:
        if ids and total + count > CHUNK_MESSAGES:
            break
        ids.append(row_id)
        total += count
    if rows and only is None:
        average = max(1, total // len(ids))
        _rows_hint["rows"] = max(1, min(CHUNK_ROWS, CHUNK_MESSAGES // average + 1))
    return ids


def store_queued(*, site_id: int, timeout: float = 30.0) -> bool:
    """Store every request of ``site_id`` queued before this call, here and now (chunks
    of every lane, as a drain would, oldest rows first), waiting for those another drain
    holds. What was accepted before a person is erased must be erased with them, not
    stored after (it would make them again). Returns False when some are still queued
    after ``timeout`` seconds (a backlog); rows set aside as failed are not waited for."""
    [(watermark,)] = db.execute(
        "SELECT max(id) FROM tracking_inboxbatch WHERE site_id = %s AND failed_at IS NULL", [site_id]
    )
    if watermark is None:
        return True
    deadline = time.monotonic() + timeout
    lanes = list(range(max(1, settings.INGEST_DRAINS)))
    while db.execute(
        "SELECT 1 FROM tracking_inboxbatch WHERE site_id = %s AND id <= %s AND failed_at IS NULL LIMIT 1",
        [site_id, watermark],
    ):
        if time.monotonic() >= deadline:
            return False
        rows, _, _ = drain_chunk(lanes)
        if not rows:
            time.sleep(POLL_SECONDS)  # the rows left are in another drain's chunk
    return True


_USER_ID, _ANONYMOUS_ID, _PROFILE_ID, _SESSION_ID = (
    WIRE_FIELDS.index(name) for name in ("user_id", "anonymous_id", "profile_id", "session_id")
)
_IDENTITIES = WIRE_FIELDS.index("identities")


def forget(
    *, site_id: int, keys: set[tuple[str, str]], profile_ids: set[int], session_ids: set[str], identified: bool
) -> int:
    """Take a person's messages out of the site's inbox rows, queued or set aside as
    failed (an admin's retry after the erase would make them again), in the caller's
    transaction, which holds every lane (``hold_lanes``: no drain stores rows meanwhile,
    nor stores later rows first while these are locked) and has stopped accepting
    calls (``stop_accepting``). Other people's messages stay; a row left empty goes.
    Returns the messages taken out.

    A message is the person's when it names them (``keys``: their (kind, key) ids; our
    ``profile_ids``; their client ``session_ids``) as the identity rules would resolve
    it: by its userId when it has one (another person's userId makes it theirs: the rules
    switch, they never merge two identified people; so does a new userId, unless the
    person is anonymous: their first identify keeps their profile), by its other ids
    otherwise. The ids such a message names that nobody holds yet would have become the
    person's when stored, so messages naming only those are the person's too (a new
    device's calls around the identify that signs in on it)."""
    rows = db.execute(
        "SELECT id, messages FROM tracking_inboxbatch WHERE site_id = %s ORDER BY id FOR UPDATE", [site_id]
    )
    if not rows:
        return 0
    queued = {row_id: jsontext.loads(text) for row_id, text in rows}
    named = {(kind, key) for values in _each(queued) for kind, key in _ids_of(values)}
    owned = {
        (kind, key)
        for kind, key in db.execute(
            "SELECT kind, key FROM profiles_identity WHERE site_id = %s AND key = ANY(%s::text[])",
            [site_id, db.text_array({key for _, key in named})],
        )
    }
    keys, session_ids = set(keys), set(session_ids)
    taken: set[tuple[int, int]] = set()  # (row id, place in the row)
    changed = True
    while changed:  # until the ids the person's messages name bring in no more messages
        changed = False
        for row_id, messages in queued.items():
            for place, values in enumerate(messages):
                if (row_id, place) in taken or not _names_person(
                    values, keys, profile_ids, session_ids, identified=identified, owned=owned
                ):
                    continue
                taken.add((row_id, place))
                changed = True
                keys.update(pair for pair in _ids_of(values) if pair not in owned)
                if values[_SESSION_ID]:
                    session_ids.add(values[_SESSION_ID])
    if not taken:
        return 0
    emptied, kept = [], {}
    for row_id, messages in queued.items():
        left = [values for place, values in enumerate(messages) if (row_id, place) not in taken]
        if not left:
            emptied.append(row_id)
        elif len(left) < len(messages):
            kept[row_id] = left
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM tracking_inboxbatch WHERE id = ANY(%s)", [emptied])
        cursor.execute(
            """
            UPDATE tracking_inboxbatch b SET messages = v.messages, message_count = v.message_count
            FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS v(id, messages, message_count)
            WHERE b.id = v.id
            """,
            [list(kept), [jsontext.dumps(left) for left in kept.values()], [len(left) for left in kept.values()]],
        )
    return len(taken)


def hold_lanes() -> None:
    """Until the caller's transaction ends, no drain stores a chunk: the chunks being
    stored are waited for (their lanes' locks, ``_lock_lanes``, in lane order as a
    drain's own lane is taken; a drain waits only for its first lane)."""
    db.execute(
        "SELECT pg_advisory_xact_lock(%s, s) FROM generate_series(0, %s - 1) AS s",
        [LANE_LOCK, max(1, settings.INGEST_DRAINS)],
    )


def stop_accepting(*, site_id: int) -> None:
    """Until the caller's transaction ends, queue no more calls for ``site_id``: calls
    being queued are waited for, new ones wait (``_insert``). An erase takes this before
    its look at the inbox (``forget``), so a call of the person is either queued before
    it, and erased, or answered after the erase has committed (a call after the erase:
    a new profile). Without it, a call looked up and queued while the erase ran
    was answered with the person's profile, before the erase ended, and stored after it.
    Calls stored at once (immediate mode) wait for the erase on the person's profile."""
    db.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ACCEPT_LOCK, site_id % 2**31])


def _each(queued: Mapping[int, list[list]]):
    return (values for messages in queued.values() for values in messages)


def _ids_of(values: list) -> list[tuple[str, str]]:
    """The (kind, key) ids a queued message names (not our profile id, not its session)."""
    ids = [("user", values[_USER_ID])] if values[_USER_ID] else []
    if values[_ANONYMOUS_ID]:
        ids.append(("anonymous", values[_ANONYMOUS_ID]))
    return ids + [(kind, key) for kind, key in values[_IDENTITIES]]


def _names_person(
    values: list, keys: set, profile_ids: set[int], session_ids: set[str], *, identified: bool, owned: set
) -> bool:
    """Whether a queued message is the person's (``forget``)."""
    ids = _ids_of(values)
    users = [pair for pair in ids if pair[0] == "user"]
    if users and not any(pair in keys for pair in users) and (identified or any(pair in owned for pair in users)):
        return False  # someone else's userId, or a new one that the identity rules give a new profile
    return (
        any(pair in keys for pair in ids)
        or values[_PROFILE_ID] in profile_ids
        or (values[_SESSION_ID] is not None and values[_SESSION_ID] in session_ids)
    )


def _set_aside(row_id: int) -> int:
    error = traceback.format_exc(limit=5)
    return InboxBatch.objects.filter(pk=row_id, failed_at__isnull=True).update(
        failed_at=timezone.now(), last_error=error[-4000:], attempts=F("attempts") + 1
    )


def retry_failed(ids: list[int]) -> int:
    """Put set-aside rows back in the queue (the admin's action)."""
    return InboxBatch.objects.filter(pk__in=ids, failed_at__isnull=False).update(failed_at=None)


def _store_rows(ids: list[int], *, strict: bool = False, defer_busy: bool = False) -> dict[int, core.IngestResult]:
    """Store the messages of inbox rows ``ids`` (in the caller's transaction, which has
    them locked or made them); a site's rows are stored together, in row order, whichever
    key sent each (grouped by sender, a person's calls sent with the old and the new key
    during a rotation were stored out of order). Returns row id -> result.

    ``defer_busy`` (the drain): messages whose profiles another transaction holds (a
    person in two lanes at once, say a visitor signing in as someone whose own calls
    another drain is storing) are not waited for: a row keeps them, and only them, for
    its next chunk (the first rows a chunk claims are the oldest). Waiting meant one
    drain idle for the rest of the other's chunk, half the time with two drains."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT id, site_id, received_at, actor, reserved, messages FROM tracking_inboxbatch
            WHERE id = ANY(%s) ORDER BY id
            """,
            [ids],
        )
        rows = cursor.fetchall()
    groups: dict[int, list[tuple[int, str, list[Message]]]] = defaultdict(list)
    queued: dict[int, list[list]] = {}  # row id -> its messages in the queued form
    for row_id, site_id, received_at, actor, reserved, text in rows:
        queued[row_id] = jsontext.loads(text)
        messages = [from_wire(values, received_at=received_at) for values in queued[row_id]]
        for m in messages:
            if m.reserved_profile_id is not None:
                m.reserved_profile_id = reserved[-m.reserved_profile_id - 1]
        groups[site_id].append((row_id, actor, messages))
    sites = Site.objects.in_bulk(list(groups))
    results: dict[int, core.IngestResult] = {}
    now = timezone.now()
    for site_id, batch in groups.items():
        site = sites.get(site_id)
        if site is None:  # the site was deleted meanwhile: its data goes with it
            results.update((row_id, core.IngestResult()) for row_id, _, _ in batch)
            continue
        # Indexes are unique per request; the core needs them unique per call.
        combined: list[Message] = []
        owner: list[tuple[int, int]] = []  # per combined message: (row id, its own index)
        actors: dict[int, str] = {}  # combined index -> sender, where not the first row's
        for row_id, actor, messages in batch:
            for m in messages:
                owner.append((row_id, m.index))
                m.position = m.index
                m.index = len(combined)
                if actor != batch[0][1]:
                    actors[m.index] = actor
                combined.append(m)
        stored = core.store(
            site, combined, received_at=now, actor=batch[0][1], actors=actors, strict=strict, defer_busy=defer_busy
        )
        for row_id, _, _ in batch:
            results[row_id] = core.IngestResult()
        for field_name in ("accepted", "duplicates", "deferred"):
            for i in getattr(stored, field_name):
                row_id, index = owner[i]
                getattr(results[row_id], field_name).append(index)
        for i, pid in stored.profile_ids.items():
            row_id, index = owner[i]
            results[row_id].profile_ids[index] = pid
        for error in stored.errors:
            row_id, index = owner[error.index]
            error.index = index
            results[row_id].errors.append(error)
    _keep_deferred(results, queued)
    return results


def _keep_deferred(results: dict[int, core.IngestResult], queued: dict[int, list[list]]) -> None:
    """Rows with deferred messages keep those (in their queued form, untouched: their
    indexes and reservation slots still refer to the row) and nothing else."""
    kept = {row_id: r.deferred for row_id, r in results.items() if r.deferred}
    if not kept:
        return
    texts = {}
    for row_id, indexes in kept.items():
        wanted = set(indexes)
        texts[row_id] = jsontext.dumps([values for values in queued[row_id] if values[WIRE_INDEX] in wanted])
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE tracking_inboxbatch b SET messages = v.messages, message_count = v.message_count
            FROM unnest(%s::bigint[], %s::text[], %s::int[]) AS v(id, messages, message_count)
            WHERE b.id = v.id
            """,
            [list(kept), [texts[row_id] for row_id in kept], [len(indexes) for indexes in kept.values()]],
        )
    log.debug("kept %s messages of %s rows for the next chunk", sum(map(len, kept.values())), len(kept))
