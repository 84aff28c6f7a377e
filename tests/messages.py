"""Builders for ingestion messages, so tests read like the calls a site makes.

``ingest(site, track(...), identify(...))`` numbers the messages, gives each a fresh
messageId unless one is passed, and runs the real ingestion service.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from profiles.models import Identity, Profile
from tracking.ingest.core import IngestResult, ingest_batch
from tracking.ingest.schema import Kind, Message
from tracking.models import Event, Site

_seq = itertools.count()


def message(kind: Kind, **fields: Any) -> Message:
    fields.setdefault("message_id", f"m-{uuid.uuid4().hex}")
    return Message(kind=kind, **fields)


def track(event: str = "Product Viewed", *, user=None, anon=None, properties=None, **kw) -> Message:
    return message(Kind.TRACK, event=event, user_id=user, anonymous_id=anon, properties=properties or {}, **kw)


def page(*, user=None, anon=None, **kw) -> Message:
    return message(Kind.PAGE, user_id=user, anonymous_id=anon, **kw)


def identify(user, *, anon=None, traits=None, **kw) -> Message:
    return message(Kind.IDENTIFY, user_id=user, anonymous_id=anon, traits=traits or {}, **kw)


def set_properties(traits: dict, *, user=None, anon=None, **kw) -> Message:
    return message(Kind.SET, user_id=user, anonymous_id=anon, traits=traits, **kw)


def alias(previous, user, **kw) -> Message:
    return message(Kind.ALIAS, previous_id=previous, user_id=user, **kw)


def group(group_id, *, user=None, anon=None, traits=None, **kw) -> Message:
    return message(Kind.GROUP, group_id=group_id, user_id=user, anonymous_id=anon, traits=traits or {}, **kw)


def ingest(site: Site, *messages: Message, received_at: datetime | None = None, **kw) -> IngestResult:
    for index, m in enumerate(messages):
        m.index = index
    return ingest_batch(site, list(messages), received_at=received_at, **kw)


def profile_of(site: Site, key: str, kind: str = Identity.Kind.USER) -> Profile:
    return Identity.objects.select_related("profile").get(site=site, kind=kind, key=key).profile


def live(profile_id: int) -> int:
    """The live profile behind an id (tombstones point one hop to theirs)."""
    merged_into = Profile.objects.filter(pk=profile_id).values_list("merged_into_id", flat=True).first()
    return merged_into or profile_id


def events_of(site: Site, profile: Profile | int, *, include_visits: bool = False) -> list[Event]:
    pid = profile.pk if isinstance(profile, Profile) else profile
    events = Event.objects.filter(site=site, profile_id=pid).order_by("occurred_at", "id")
    if not include_visits:
        events = events.exclude(type="visited-site")
    return list(events)


def event_by_message(site: Site, message_id: str) -> Event:
    return Event.objects.get(site=site, message_id=message_id)
