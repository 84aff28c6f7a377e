import socket

from celery import shared_task
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


@shared_task(ignore_result=True)
def prune_message_dedupe_task(batch: int = 50_000, max_batches: int = 20) -> int:
    """Forget message ids older than the dedupe horizon (7 days), in bounded batches.

    The horizon counts back from the oldest request still in the inbox, if that is
    older: a client's retry set aside there (a failed row, queued again by an admin days
    later) must still find its first copy's id, or it is stored twice."""
    from datetime import timedelta

    from django.db import connection

    horizon = timedelta(days=7)
    with connection.cursor() as cursor:
        cursor.execute("SELECT min(received_at) FROM tracking_inboxbatch")
        oldest_queued = cursor.fetchone()[0]
    cutoff = timezone.now() - horizon
    if oldest_queued is not None:
        cutoff = min(cutoff, oldest_queued - horizon)
    total = 0
    with connection.cursor() as cursor:
        for _ in range(max_batches):
            cursor.execute(
                """
                DELETE FROM tracking_messagededupe WHERE (site_id, message_id) IN (
                    SELECT site_id, message_id FROM tracking_messagededupe
                    WHERE first_seen < %s LIMIT %s)
                """,
                [cutoff, batch],
            )
            total += cursor.rowcount
            if cursor.rowcount < batch:
                break
    return total


@shared_task(ignore_result=True)
def drain_inbox_task() -> int:
    """Store queued tracking requests (tracking.inbox) until the inbox stays empty for a
    moment; past a minute of steady traffic, a fresh task takes over."""
    from tracking import inbox

    stats = inbox.drain()
    if stats.timed_out:
        drain_inbox_task.delay()
    return stats.messages
