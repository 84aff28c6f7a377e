import socket
import time
from datetime import UTC, datetime, timedelta

from celery import shared_task
from django.db import connection
from django.utils import timezone

from tracking.models import Heartbeat


@shared_task(ignore_result=True)
def heartbeat_task(name: str = "worker") -> None:
    """Record that a worker ran a task (beat sends it every minute; /healthz reads it)."""
    Heartbeat.objects.update_or_create(
        name=name, defaults={"at": timezone.now(), "hostname": socket.gethostname()}
    )


@shared_task(ignore_result=True, acks_late=True)
def process_pending_work_task(work_id: int) -> None:
    """Run the registered real-time handlers for one ingest (idempotent)."""
    from tracking import handoff

    handoff.process(work_id)


@shared_task(ignore_result=True)
def sweep_pending_work_task() -> int:
    """Re-run work whose task never finished (broker outage, killed worker)."""
    from tracking import handoff

    stale = handoff.stale_work()
    for work_id in stale:
        handoff.process(work_id)
    handoff.prune_completed()
    return len(stale)


@shared_task(ignore_result=True)
def ensure_event_partitions_task() -> list[str]:
    from tracking.partitions import ensure_event_partitions

    return ensure_event_partitions(months_back=1, months_ahead=3)


DEDUPE_HORIZON = timedelta(days=7)


@shared_task(ignore_result=True)
def prune_message_dedupe_task(batch: int = 50_000, seconds: float = 240.0, again: int = 10) -> int:
    """Forget message ids older than the dedupe horizon; a run that leaves some (more
    than ``seconds`` of work: beat was down, or a burst) hands on to a fresh task, up to
    ``again`` times (beat's next run takes over from there)."""
    pruned, done = message_ids_prune(batch=batch, seconds=seconds)
    if not done and again > 0:
        prune_message_dedupe_task.delay(batch=batch, seconds=seconds, again=again - 1)
    return pruned


def message_ids_prune(*, batch: int = 50_000, seconds: float = 240.0) -> tuple[int, bool]:
    """Delete message ids older than the horizon, oldest first, ``batch`` a statement
    (each commits: ingestion never waits behind one huge DELETE), for up to ``seconds``;
    returns (ids deleted, whether none is left).

    The horizon counts back from the oldest request still in the inbox, if that is
    older: a client's retry set aside there (a failed row, queued again by an admin days
    later) must still find its first copy's id, or it is stored twice. Each batch starts
    where the last ended (btree on first_seen), so it does not walk again over the rows
    the earlier batches deleted and no vacuum has removed yet: the old form (any 50,000
    rows older than the horizon, 20 times a run, every 6 hours) re-read them, and kept
    up with about 46 messages a second."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(received_at) FROM tracking_inboxbatch")
        oldest_queued = cursor.fetchone()[0]
    cutoff = timezone.now() - DEDUPE_HORIZON
    if oldest_queued is not None:
        cutoff = min(cutoff, oldest_queued - DEDUPE_HORIZON)
    total, since = 0, None
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                """
                WITH gone AS (
                    DELETE FROM tracking_messagededupe WHERE ctid = ANY(ARRAY(
                        SELECT ctid FROM tracking_messagededupe
                        WHERE first_seen < %s AND first_seen >= %s
                        ORDER BY first_seen LIMIT %s))
                    RETURNING first_seen
                )
                SELECT count(*), max(first_seen) FROM gone
                """,
                [cutoff, since or datetime.min.replace(tzinfo=UTC), batch],
            )
            deleted, last = cursor.fetchone()
            total += deleted
            if deleted < batch:
                return total, True
            since = last
            if time.monotonic() >= deadline:
                return total, False


@shared_task(ignore_result=True)
def drain_inbox_task() -> int:
    """Store queued tracking requests (tracking.inbox) until the inbox stays empty for a
    moment; past a minute of steady traffic, a fresh task takes over."""
    from tracking import inbox

    stats = inbox.drain()
    if stats.timed_out:
        drain_inbox_task.delay()
    return stats.messages
