"""Builders for people, identities, sessions and events, straight through the ORM
(the people pages only read; how ingestion writes these is tested elsewhere)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from profiles.models import Company, CompanyMembership, Identity, Profile, ProfileMerge
from tracking.models import Event, Session, Site


def person(
    site: Site,
    *ids: str,
    properties: dict | None = None,
    identified: bool | None = None,
    first_seen: datetime | None = None,
    last_seen: datetime | None = None,
) -> Profile:
    """A profile with identities given as "kind:key" (``"user:u1"``, ``"anonymous:a-1"``)."""
    now = timezone.now()
    kinds = [i.split(":", 1)[0] for i in ids]
    profile = Profile.objects.create(
        site=site,
        properties=properties or {},
        is_identified=identified if identified is not None else any(k != "anonymous" for k in kinds),
        first_seen=first_seen or now - timedelta(days=10),
        last_seen=last_seen or now,
    )
    for spec in ids:
        kind, key = spec.split(":", 1)
        Identity.objects.create(site=site, profile=profile, kind=kind, key=key)
    return profile


def event(
    profile: Profile,
    type: str = "page-view",
    *,
    at: datetime | None = None,
    received_at: datetime | None = None,
    session: Session | None = None,
    properties: dict | None = None,
    context: dict | None = None,
    profile_id: int | None = None,
) -> Event:
    at = at or timezone.now()
    return Event.objects.create(
        site_id=profile.site_id,
        profile_id=profile_id or profile.pk,
        session=session,
        type=type,
        properties=properties or {},
        context=context or {},
        occurred_at=at,
        received_at=received_at or at,
    )


def events(profile: Profile, n: int, *, start: datetime, step: timedelta, type: str = "page-view") -> list[Event]:
    """``n`` events from ``start``, ``step`` apart, in one INSERT."""
    return Event.objects.bulk_create(
        [
            Event(
                site_id=profile.site_id,
                profile_id=profile.pk,
                type=type,
                properties={"n": i},
                context={},
                occurred_at=start + i * step,
                received_at=start + i * step,
            )
            for i in range(n)
        ]
    )


def session(profile: Profile, *, started_at: datetime | None = None, events: int = 1, **context) -> Session:
    started = started_at or timezone.now() - timedelta(hours=1)
    return Session.objects.create(
        site_id=profile.site_id,
        profile=profile,
        started_at=started,
        last_event_at=started + timedelta(minutes=5),
        event_count=events,
        context=context,
    )


def company(profile: Profile, key: str, **properties) -> Company:
    company, _ = Company.objects.get_or_create(site_id=profile.site_id, key=key, defaults={"properties": properties})
    CompanyMembership.objects.create(company=company, profile=profile)
    return company


def merge(source: Profile, target: Profile, *, repointed: bool = True) -> None:
    """What a merge leaves behind: a tombstone pointing at the target, identities moved,
    and a merge record. Events move only when ``repointed`` (small histories)."""
    Identity.objects.filter(profile=source).update(profile=target)
    Profile.objects.filter(merged_into=source).update(merged_into=target)
    source.merged_into = target
    source.save(update_fields=["merged_into"])
    if repointed:
        Event.objects.filter(site_id=source.site_id, profile_id=source.pk).update(profile_id=target.pk)
    ProfileMerge.objects.create(
        site_id=source.site_id,
        source_id=source.pk,
        target_id=target.pk,
        reason=ProfileMerge.Reason.IDENTIFY,
        identities={"source": source.pk},
        actor="test",
        repointed_at=timezone.now() if repointed else None,
    )


def shopper(site: Site, *, views: int, since: timedelta, step: timedelta) -> Profile:
    """Ann, the people pages' regular: identified by three ids, in a company, on a visit
    that ended in an order 3 minutes ago, with ``views`` product views from ``since`` ago,
    ``step`` apart, before it."""
    now = timezone.now()
    ann = person(
        site,
        "user:ann-42",
        "email:ann@example.com",
        "anonymous:a-7Hq2kLm9",
        properties={"name": "Ann Lee", "email": "ann@example.com", "plan": "pro", "city": "Berlin", "orders": 3},
        first_seen=now - timedelta(days=40),
        last_seen=now - timedelta(minutes=3),
    )
    company(ann, "acme", name="Acme Inc", industry="retail")
    visit = session(ann, started_at=now - timedelta(hours=2), events=12, landing_page="https://shoes.example/sale")
    events(ann, views, start=now - since, step=step, type="product-view")
    event(
        ann,
        "order-completed",
        at=now - timedelta(minutes=3),
        session=visit,
        properties={"total": 129.9, "currency": "EUR", "products": 2},
        context={"page": {"url": "https://shoes.example/checkout/done"}},
    )
    return ann
