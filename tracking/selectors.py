"""Read-side queries over events and sessions (people pages, exports, the live feed).

Events live in a partitioned table without foreign keys; every read here names the site,
so the (site_id, ...) indexes apply and a caller can never read another site's rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from tracking.keyset import Cursor, Page, keyset_page, keyset_page_of_union
from tracking.models import Event, Session

# The live feed looks at widening recent windows and stops at the first that holds a
# page: each costs about the events in it (sorted for the top page), so a busy site is
# answered from its last seconds and a quiet one from a longer span. One fixed 15-minute
# window held 407,000 events on bench data taking 450 a second: 277 ms a refresh.
LIVE_WINDOWS = (timedelta(seconds=1), timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1))


def _of_profiles(site_id: int, profile_ids: Sequence[int]) -> QuerySet[Event]:
    qs = Event.objects.filter(site_id=site_id)
    if len(profile_ids) == 1:
        # "= x" keeps the index order on occurred_at; "= ANY(...)" would need a sort.
        return qs.filter(profile_id=profile_ids[0])
    return qs.filter(profile_id__in=list(profile_ids))


def events_of_profiles_page(
    *, site_id: int, profile_ids: Sequence[int], cursor: Cursor | None = None, limit: int = 50
) -> Page:
    """A person's timeline, newest first, paged by keyset on (occurred_at, id).

    ``profile_ids`` is the live profile plus tombstones merged into it whose events may
    not be re-pointed yet (large merges move rows in background batches). Each id is
    read on its own through index (site_id, profile_id, occurred_at), which returns
    rows already in order, and a page is taken of their union: ``profile_id = ANY(...)``
    makes PostgreSQL walk the primary key backwards and filter instead.
    """
    if len(profile_ids) == 1:
        return keyset_page(
            _of_profiles(site_id, profile_ids), field="occurred_at", descending=True, cursor=cursor, limit=limit
        )
    # One statement: a background re-point batch committing between a read of each id
    # would move rows from a tombstone to the live id after the live id was read.
    return keyset_page_of_union(
        [_of_profiles(site_id, [pid]) for pid in profile_ids],
        field="occurred_at", descending=True, cursor=cursor, limit=limit,
    )


def events_of_profiles_iter(
    *, site_id: int, profile_ids: Sequence[int], chunk_size: int = 2000
) -> Iterator[Event]:
    """Every event of the profiles, oldest first, streamed in chunks (exports)."""
    return _of_profiles(site_id, profile_ids).order_by("occurred_at", "id").iterator(chunk_size=chunk_size)


def events_count_of_profiles(*, site_id: int, profile_ids: Sequence[int]) -> int:
    return _of_profiles(site_id, profile_ids).count()


def sessions_of_profiles(*, site_id: int, profile_ids: Sequence[int]) -> QuerySet[Session]:
    """Sessions newest first (index session_profile_last)."""
    return Session.objects.filter(site_id=site_id, profile_id__in=list(profile_ids)).order_by(
        "-last_event_at", "-id"
    )


def events_recent(
    *, site_id: int, hours: int = 24, limit: int = 50, type_prefix: str = "", before: Cursor | None = None
) -> list[Event]:
    """The newest events the site sent, by arrival (received_at), within ``hours``; with
    ``type_prefix``, only types starting with it; with ``before``, the page older than
    that (received_at, id). At most ``limit`` + 1 rows (one more than a page says there
    are older ones; a page of exactly ``limit`` may have more behind it).

    received_at follows insertion order, so the BRIN index on it narrows each
    partition to its last few blocks: windows widening back from the newest wanted
    arrival are read until one holds a page.
    """
    now = timezone.now()
    window = timedelta(hours=hours)
    since = now - window
    # Not before ``since`` (nothing older is read): windows are subtracted from it, and a
    # cursor may name any time at all.
    end = max(before.at, since) if before else now
    events = Event.objects.filter(site_id=site_id, received_at__gte=since)
    if type_prefix:
        events = events.filter(type__istartswith=type_prefix)
    if before:
        events = events.filter(Q(received_at__lt=before.at) | Q(received_at=before.at, id__lt=before.id))
    rows: list[Event] = []
    for span in [w for w in LIVE_WINDOWS if end - w > since] + [end - since]:
        rows = list(events.filter(received_at__gte=end - span).order_by("-received_at", "-id")[: limit + 1])
        if len(rows) >= limit:
            break
    return rows
