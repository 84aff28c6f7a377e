"""Background upkeep of profiles: re-pointing large merged histories, retention purge."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from profiles.models import Profile, ProfileMerge
from tracking import inbox
from tracking.models import Event, Site
from tracking.signals import profiles_forgotten

REPOINT_LOCK = 0x6670_7270  # advisory lock class of the re-point ("fprp"), held while a run goes


def merged_events_repoint(*, site_id: int | None = None, batch: int = 5_000, max_batches: int = 200) -> int:
    """Move events of merged identified profiles to their target, ``batch`` rows per
    transaction so ingestion is never blocked behind one huge UPDATE.

    One run at a time (a run that finds another going returns at once; the beat's next
    run takes what that one did not list). Two runs moving the same history to two
    targets (one read before a later merge of the target, one after) overwrote each
    other's rows, and the stale target's could land after the other run had moved that
    target's own events and marked its merge done: events left on a tombstone."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, 0)", [REPOINT_LOCK])
        if not cursor.fetchone()[0]:
            return 0
    try:
        return _repoint(site_id=site_id, batch=batch, max_batches=max_batches)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, 0)", [REPOINT_LOCK])


def _repoint(*, site_id: int | None, batch: int, max_batches: int) -> int:
    moved = 0
    pending = ProfileMerge.objects.filter(repointed_at__isnull=True).order_by("id")
    if site_id is not None:
        pending = pending.filter(site_id=site_id)
    for merge in pending:
        target = Profile.objects.filter(pk=merge.target_id).values_list("merged_into_id", flat=True).first()
        target_id = target or merge.target_id  # the target may itself have been merged since
        for _ in range(max_batches):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    """
                    UPDATE tracking_event SET profile_id = %s
                    WHERE (occurred_at, id) IN (
                        SELECT occurred_at, id FROM tracking_event
                        WHERE site_id = %s AND profile_id = %s LIMIT %s)
                    """,
                    [target_id, merge.site_id, merge.source_id, batch],
                )
                moved += cursor.rowcount
                if cursor.rowcount < batch:
                    ProfileMerge.objects.filter(pk=merge.pk).update(repointed_at=timezone.now())
                    break
    return moved


def profiles_delete(*, site_id: int, profile_ids: list[int]) -> None:
    """Delete profiles with everything of theirs (events, sessions, identities, company
    memberships, tombstones merged into them). Set-based; the caller holds a transaction."""
    if not profile_ids:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM profiles_profile WHERE site_id = %s AND merged_into_id = ANY(%s)",
            [site_id, profile_ids],
        )
        everything = sorted(set(profile_ids) | {row[0] for row in cursor.fetchall()})
        cursor.execute(
            "DELETE FROM tracking_event WHERE site_id = %s AND profile_id = ANY(%s)", [site_id, everything]
        )
    profiles_forgotten.send(sender=Profile, site_id=site_id, profile_ids=everything)
    # Cascades remove sessions, identities and company memberships.
    Profile.objects.filter(site_id=site_id, pk__in=everything).delete()


def anonymous_profiles_purge(*, batch: int = 500, max_batches: int = 20, now=None, settle_seconds: float = 30.0) -> int:
    """Anonymous profiles idle longer than their site's retention go, with their events.

    A site's requests still queued in the inbox are stored first: a visitor who came
    back after the retention period and whose call is queued is active again, not idle
    (their profile was promised in the call's answer). Behind a backlog the site waits
    for the next run."""
    now = now or timezone.now()
    purged = 0
    for site in Site.objects.only("pk", "anonymous_retention_days"):
        if not inbox.store_queued(site_id=site.pk, timeout=settle_seconds):
            continue
        cutoff = now - timedelta(days=site.anonymous_retention_days)
        for _ in range(max_batches):
            with transaction.atomic():
                # Locked, skipping any an ingest holds: a visitor who comes back while
                # the purge runs keeps the profile its new events are being written to
                # (the lock re-checks last_seen against the committed row).
                ids = list(
                    Profile.objects.filter(
                        site=site, is_identified=False, merged_into__isnull=True, last_seen__lt=cutoff
                    )
                    # Idle since their last call arrived, not only by their events' dates:
                    # a device whose clock is months behind (and no sentAt to correct it)
                    # dates a new visitor's events before the cutoff. Their events are
                    # few (anonymous), read by index (site_id, profile_id, occurred_at).
                    .exclude(
                        Exists(
                            Event.objects.filter(
                                site_id=site.pk, profile_id=OuterRef("pk"), received_at__gte=cutoff
                            )
                        )
                    )
                    .order_by("last_seen")
                    .select_for_update(skip_locked=True)
                    .values_list("pk", flat=True)[:batch]
                )
                profiles_delete(site_id=site.pk, profile_ids=ids)
            purged += len(ids)
            if len(ids) < batch:
                break
    return purged
