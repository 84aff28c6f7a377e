"""Durable hand-off of real-time work from ingestion to Celery.

Higher layers register handlers here (segments: membership; campaigns: triggers, carts).
Every ingest that stores events writes a ``PendingWork`` row in its own transaction and
enqueues ``process_pending_work_task`` on commit. A handler runs in a transaction that
also inserts its ``HandlerReceipt``; the unique receipt makes a repeated delivery a
no-op, so each handler takes effect exactly once per event. The sweep re-enqueues work
whose task never finished, so a broker outage or a killed worker delays work, never
loses it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from tracking.models import HandlerReceipt, PendingWork

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    profile_id: int
    session_id: int | None
    type: str
    properties: dict
    occurred_at: datetime


Handler = Callable[[PendingWork, list[EventRow]], None]
_handlers: dict[str, Handler] = {}


def register(name: str, handler: Handler) -> None:
    """Register a handler (call from an AppConfig.ready). Names are stable: they key receipts."""
    _handlers[name] = handler


def unregister(name: str) -> None:
    _handlers.pop(name, None)


def handlers() -> dict[str, Handler]:
    return dict(_handlers)


def events_of(work: PendingWork) -> list[EventRow]:
    with connection.cursor() as cursor:
        # The primary key (occurred_at, id); the time range prunes partitions. Not by
        # profile: a merge may have moved the events since the work was recorded, and
        # each row says whose it is now. A large merge moves them in the background
        # (``profiles.maintenance``): until then a row names the profile merged away,
        # whose ``merged_into`` is the person (a merge rewrites every tombstone's).
        cursor.execute(
            """
            SELECT e.id, coalesce(p.merged_into_id, e.profile_id), e.session_id, e.type, e.properties,
                   e.occurred_at
            FROM tracking_event e LEFT JOIN profiles_profile p ON p.id = e.profile_id
            WHERE e.site_id = %s AND e.occurred_at BETWEEN %s AND %s AND e.id = ANY(%s)
            ORDER BY e.occurred_at, e.id
            """,
            [work.site_id, work.occurred_from, work.occurred_to, work.event_ids],
        )
        # Django loads jsonb as text from raw cursors.
        return [EventRow(i, p, s, t, json.loads(props), at) for i, p, s, t, props, at in cursor.fetchall()]


def process(work_id: int) -> bool:
    """Run every handler not yet receipted for this work. True when all are done."""
    work = PendingWork.objects.filter(pk=work_id, completed_at__isnull=True).first()
    if work is None:
        return True
    PendingWork.objects.filter(pk=work_id).update(attempts=work.attempts + 1)
    done = set(work.receipts.values_list("handler", flat=True))
    events = None
    for name, handler in handlers().items():
        if name in done:
            continue
        if events is None:
            events = events_of(work)
        try:
            with transaction.atomic():
                if not _claim(work_id, name):
                    continue  # a rival delivery took it first
                handler(work, events)
        except Exception:
            # Any failure, a handler's own IntegrityError too, rolls back its receipt.
            log.exception("handler %s failed on pending work %s; the sweep retries it", name, work_id)
            return False
    PendingWork.objects.filter(pk=work_id).update(completed_at=timezone.now())
    return True


def _claim(work_id: int, handler: str) -> bool:
    """Insert the handler's receipt; False when another delivery holds it. A rival still
    running its handler makes this wait for its commit (taken) or rollback (ours)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {HandlerReceipt._meta.db_table} (work_id, handler, done_at)
            VALUES (%s, %s, now())
            ON CONFLICT (work_id, handler) DO NOTHING
            RETURNING id
            """,
            [work_id, handler],
        )
        return cursor.fetchone() is not None


MAX_BACKOFF_DOUBLINGS = 10  # at most ~17 hours between retries of failing work


def stale_work(older_than: timedelta = timedelta(minutes=1), limit: int = 500) -> list[int]:
    """Unfinished work to run again, oldest first. Work that keeps failing backs off
    (``older_than`` doubled per attempt), so a poisoned row cannot crowd out new work."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT id FROM {PendingWork._meta.db_table}
            WHERE completed_at IS NULL
              AND created_at < now() - %s * power(2, least(attempts, %s))
            ORDER BY created_at
            LIMIT %s
            """,
            [older_than, MAX_BACKOFF_DOUBLINGS, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def prune_completed(older_than: timedelta = timedelta(days=1), limit: int = 10_000) -> int:
    cutoff = timezone.now() - older_than
    ids = list(
        PendingWork.objects.filter(completed_at__lt=cutoff).values_list("pk", flat=True)[:limit]
    )
    return PendingWork.objects.filter(pk__in=ids).delete()[0] if ids else 0
