"""Person-level writes and exports: the right to be forgotten and the data export.

Identity resolution and merging live in ``profiles.identity``.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from profiles.models import Company, CompanyMembership, Identity, Profile, ProfileMerge
from profiles.selectors import profile_get, profile_merged_ids
from tracking import inbox
from tracking import selectors as event_selectors
from tracking.models import Event, Session, Site
from tracking.signals import profiles_forgotten


def _iso(value) -> str | None:
    """As DRF writes times in the rest of the API: UTC, with ``Z`` for ``+00:00``."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def event_as_dict(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.received_at),
        "session_id": event.session_id,
        "message_id": event.message_id,
        "properties": event.properties,
        "context": event.context,
    }


def session_as_dict(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "external_id": session.external_id,
        "started_at": _iso(session.started_at),
        "last_event_at": _iso(session.last_event_at),
        "event_count": session.event_count,
        "context": session.context,
    }


def identity_as_dict(identity: Identity) -> dict[str, Any]:
    return {"kind": identity.kind, "key": identity.key, "created_at": _iso(identity.created_at)}


def company_as_dict(company: Company) -> dict[str, Any]:
    return {"id": company.id, "key": company.key, "properties": company.properties}


def _lock(site: Site, ids: list[int]) -> None:
    # Id order, like identity resolution, so a concurrent ingest cannot deadlock us.
    list(Profile.objects.select_for_update().filter(site=site, pk__in=ids).order_by("pk").values_list("pk"))


class QueueBusy(Exception):
    """Requests accepted before the erase are still queued (a backlog): try again later."""


def profile_forget(*, site: Site, profile: Profile, settle_seconds: float = 30.0) -> dict[str, int]:
    """Erase a person (right to be forgotten): their events, sessions, identities,
    company memberships, merge records, the profile and every tombstone merged into it.
    Rows of other models with a foreign key to the profile go by cascade.

    First the site's requests still queued in the inbox are stored (``inbox.store_queued``):
    what was accepted before the erase goes with it, instead of making the person again
    when a drain stores it later. ``QueueBusy`` when that takes over ``settle_seconds``
    (nothing is erased). Then the profiles are locked; ingestion locks the profiles it
    touches, so a batch for this person commits before the erase or runs after it and
    finds no identity left (a later event for the same ids starts a new, empty profile).
    The person's calls still in the inbox, set aside as failed or queued meanwhile, are
    taken out (``inbox.forget``); a call arriving at the end waits for the commit
    (``inbox.stop_accepting``). Returns row counts.
    """
    if not inbox.store_queued(site_id=site.pk, timeout=settle_seconds):
        raise QueueBusy("Requests accepted before this one are still being stored; try again in a minute.")
    # The person as the queued calls just stored left them (``_erase`` follows merges).
    return _erase(site=site, profile=profile)


def _live(site: Site, profile: Profile) -> Profile:
    """The person as the queued calls just stored left them: a visitor who signed in as a
    known person in one of them was merged into that person, who holds their data now.
    ``Profile.DoesNotExist`` when they were erased meanwhile."""
    live = profile_get(site=site, profile_id=profile.pk)
    if live is None:
        raise Profile.DoesNotExist(f"profile {profile.pk} is gone")
    return live


@transaction.atomic
def _erase(*, site: Site, profile: Profile) -> dict[str, int]:
    # Lock until nothing moved while we waited: a merge into this person may have
    # committed, or one of this person into another; then it is the person they are now
    # that goes, as for a request naming the merged-away id (the tombstone alone left
    # their ids, sessions and properties on the other profile).
    ids: list[int] = []
    while True:
        live = profile_get(site=site, profile_id=profile.pk)
        now = profile_merged_ids(profile=live) if live is not None else [profile.pk]
        if now == ids:
            break
        ids, profile = now, live or profile
        _lock(site, ids)
    # What names them, for their calls still in the inbox (below, once it is gone).
    named = {
        "keys": set(Identity.objects.filter(site=site, profile_id__in=ids).values_list("kind", "key")),
        "profile_ids": set(ids),
        "identified": profile.is_identified,
        "session_ids": set(
            Session.objects.filter(site=site, profile_id__in=ids, external_id__isnull=False).values_list(
                "external_id", flat=True
            )
        ),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM tracking_event WHERE site_id = %s AND profile_id = ANY(%s)", [site.pk, ids]
        )
        events = cursor.rowcount
    counts = {
        "events": events,
        "sessions": Session.objects.filter(site=site, profile_id__in=ids).delete()[0],
        "identities": Identity.objects.filter(site=site, profile_id__in=ids).delete()[0],
        "company_memberships": CompanyMembership.objects.filter(
            company__site=site, profile_id__in=ids
        ).delete()[0],
        # Merge records name the person's ids (emails, user ids): personal data too.
        "merges": ProfileMerge.objects.filter(site=site, source_id__in=ids).delete()[0]
        + ProfileMerge.objects.filter(site=site, target_id__in=ids).delete()[0],
    }
    # Higher layers delete their own rows of the person (in this transaction).
    profiles_forgotten.send(sender=Profile, site_id=site.pk, profile_ids=ids)
    _, by_model = Profile.objects.filter(site=site, pk__in=ids).delete()
    counts["profiles"] = by_model.get(Profile._meta.label, 0)
    # Their calls still in the inbox: set aside as failed (an admin may retry them), or
    # queued since ``store_queued`` (a drain would store them after the erase). Last, so
    # that the drains (``hold_lanes``) and the site's tracking calls (``stop_accepting``)
    # wait only for this look and the commit, not for the deletes.
    inbox.hold_lanes()
    inbox.stop_accepting(site_id=site.pk)
    inbox.forget(site_id=site.pk, **named)
    return counts


def profile_export(*, site: Site, profile: Profile, settle_seconds: float = 10.0) -> dict[str, Any]:
    """Everything Footprint holds about a person, as JSON-ready data: properties (and
    those of the profiles merged into theirs), identities, companies, sessions, merge
    records and all events (oldest first).

    The site's requests still queued are stored first, for up to ``settle_seconds``
    (behind a longer backlog the export holds what is stored by then)."""
    inbox.store_queued(site_id=site.pk, timeout=settle_seconds)
    profile = _live(site, profile)
    ids = profile_merged_ids(profile=profile)
    companies = Company.objects.filter(site=site, members__in=ids).distinct().order_by("key")
    merges = ProfileMerge.objects.filter(site=site, target_id__in=ids).order_by("merged_at", "id")
    return {
        "id": profile.pk,
        "site_id": site.pk,
        "exported_at": _iso(timezone.now()),
        "is_identified": profile.is_identified,
        "first_seen": _iso(profile.first_seen),
        "last_seen": _iso(profile.last_seen),
        "properties": profile.properties,
        "merged_profile_ids": ids[1:],
        # A merge keeps the target's value of a property both had: the source's stays here.
        "merged_profiles": [
            {
                "id": p.pk,
                "is_identified": p.is_identified,
                "first_seen": _iso(p.first_seen),
                "last_seen": _iso(p.last_seen),
                "properties": p.properties,
            }
            for p in Profile.objects.filter(site=site, pk__in=ids[1:]).order_by("pk")
        ],
        "identities": [
            identity_as_dict(i)
            for i in Identity.objects.filter(site=site, profile_id__in=ids).order_by("kind", "key")
        ],
        "companies": [company_as_dict(c) for c in companies],
        "sessions": [
            session_as_dict(s)
            for s in event_selectors.sessions_of_profiles(site_id=site.pk, profile_ids=ids).reverse()
        ],
        "merges": [
            {
                "source_id": m.source_id,
                "target_id": m.target_id,
                "reason": m.reason,
                "identities": m.identities,
                "merged_at": _iso(m.merged_at),
            }
            for m in merges
        ],
        "events": [
            event_as_dict(e)
            for e in event_selectors.events_of_profiles_iter(site_id=site.pk, profile_ids=ids)
        ],
    }
