"""Read-side queries for people: search, detail, merged-id resolution, identity lookup.

Everything takes the site first and filters on it, so a caller holding site A can never
reach a person of site B, whatever id it passes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import BooleanField, Prefetch, Q, QuerySet
from django.db.models.expressions import RawSQL

from profiles.models import Company, Identity, Profile
from tracking import db
from tracking import selectors as event_selectors
from tracking.ingest import wire
from tracking.ingest.schema import MessageError
from tracking.keyset import Cursor, Page, keyset_page
from tracking.models import Event, Session, Site

# Sort keys the people list accepts (never an order_by straight from the query string).
PEOPLE_SORTS: dict[str, tuple[str, bool]] = {
    "-last_seen": ("last_seen", True),
    "last_seen": ("last_seen", False),
    "-first_seen": ("first_seen", True),
    "first_seen": ("first_seen", False),
}
DEFAULT_SORT = "-last_seen"
PEOPLE_SORT_LABELS = {
    "-last_seen": "Last seen, newest first",
    "last_seen": "Last seen, oldest first",
    "-first_seen": "First seen, newest first",
    "first_seen": "First seen, oldest first",
}
COUNT_CAP = 10_000
MAX_MERGE_HOPS = 50
# Order in which by-identity picks a profile when the same key exists under several kinds.
KIND_PREFERENCE = [
    Identity.Kind.USER,
    Identity.Kind.EMAIL,
    Identity.Kind.EXTERNAL,
    Identity.Kind.COOKIE,
    Identity.Kind.ANONYMOUS,
]
PROFILE_KIND = "profile"  # our own id, as handed to clients (DESIGN "People and identity")

# "plan=pro", "address.city = Berlin": search by a property value.
_PROPERTY_QUERY = re.compile(r"^([A-Za-z_$][\w$-]*(?:\.[\w$-]+)*)\s*=\s*(.+)$")


# --- search ---------------------------------------------------------------------------


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _property_documents(path: str, raw: str) -> list[Any]:
    """JSON documents for ``properties @> doc``: the value as text, and as the JSON
    scalar it spells when it spells one (``age=30`` matches 30 and "30")."""
    values: list[Any] = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    else:
        # NaN and infinities (Python's json reads them; JSON has none) are only text here,
        # and so is a string spelling a NUL or an unpaired surrogate ("\u0000"), which
        # jsonb refuses (no stored value holds one).
        finite = not isinstance(parsed, float) or math.isfinite(parsed)
        if isinstance(parsed, bool | int | float | str) and finite and _storable(parsed) and parsed not in values:
            values.append(parsed)
    docs = []
    for value in values:
        doc: Any = value
        for part in reversed(path.split(".")):
            doc = {part: doc}
        docs.append(doc)
    return docs


def _storable(value: Any) -> bool:
    try:
        wire.check_storable(value, "q")
    except MessageError:
        return False
    return True


def _text_matches(site_id: int, q: str, cap: int) -> tuple[set[int], bool]:
    """(ids, complete): the people free text ``q`` names, read up to ``cap`` + 1 rows an
    index; ``complete`` when none of those reads was cut short, so ``ids`` are all of
    them. All are live: a merge moves the identities of the profile it retires. ``q`` is
    a case-insensitive prefix of any identity key (index on (site_id, lower(key)
    text_pattern_ops)) or of the email property (expression index
    profile_site_email_lower_prefix), or, all digits, our own profile id.

    Each arm reads at most ``cap`` + 1 rows from its index, so a prefix that names a
    third of a million people costs what one naming ten thousand does (20 ms on bench
    data, against 0.6 s to collect every match)."""
    prefix = _like_prefix(q.lower())
    limit = cap + 1
    arms = [
        "(SELECT profile_id, 0 FROM profiles_identity WHERE site_id = %s AND lower(key) LIKE %s LIMIT %s)",
        "(SELECT id, 1 FROM profiles_profile WHERE site_id = %s AND merged_into_id IS NULL"
        " AND lower(properties->>'email') LIKE %s LIMIT %s)",
    ]
    params: list[Any] = [site_id, prefix, limit, site_id, prefix, limit]
    if q.isascii() and q.isdigit() and len(q) < 19:
        arms.append("(SELECT id, 2 FROM profiles_profile WHERE site_id = %s AND merged_into_id IS NULL AND id = %s)")
        params += [site_id, int(q)]
    with connection.cursor() as cursor:
        cursor.execute(" UNION ALL ".join(arms), params)
        rows = cursor.fetchall()
    per_arm = [0, 0, 0]
    for _, arm in rows:
        per_arm[arm] += 1
    return {pid for pid, _ in rows}, max(per_arm) <= cap


def _text_match_condition(q: str) -> RawSQL:
    """The same match as ``_text_matches``, tested on each profile row: for a prefix
    that names many people, walking the sort's index and testing rows finds a page in a
    few ms. The identity test is a scalar subquery with LIMIT, which PostgreSQL runs per
    row through the profile_id index; written as EXISTS it hashed every identity that
    matched first (180 ms on bench data)."""
    prefix = _like_prefix(q.lower())
    sql = (
        "lower(profiles_profile.properties->>'email') LIKE %s"
        " OR (SELECT 1 FROM profiles_identity i WHERE i.profile_id = profiles_profile.id"
        " AND lower(i.key) LIKE %s LIMIT 1) IS NOT NULL"
    )
    params: list[Any] = [prefix, prefix]
    if q.isascii() and q.isdigit() and len(q) < 19:
        sql += " OR profiles_profile.id = %s"
        params.append(int(q))
    return RawSQL(f"({sql})", params, output_field=BooleanField())


def _clean_query(q: str) -> str:
    return (q or "").replace("\x00", "").strip()[:255]  # PostgreSQL text cannot hold NUL


def text_matches(*, site: Site, q: str = "", cap: int = COUNT_CAP) -> tuple[set[int], bool] | None:
    """The probe a free-text ``q`` needs (``_text_matches``), for a caller that lists a
    page and counts it too: run once, passed to both (``matches``). None when ``q`` is
    empty or a property query, which need none."""
    q = _clean_query(q)
    if not q or _PROPERTY_QUERY.match(q):
        return None
    return _text_matches(site.pk, q, cap)


def people_queryset(
    *, site: Site, q: str = "", cap: int = COUNT_CAP, matches: tuple[set[int], bool] | None = None
) -> QuerySet[Profile]:
    """Live (not merged-away) people of the site, optionally matching ``q``.

    ``q`` written ``name=value`` matches a property value (dots reach nested keys;
    ``age=30`` matches 30 and "30"). It is a filter on the profile row itself, so the
    planner can walk the last-seen index when matches are common and a GIN index on
    properties when they are rare. Any other ``q`` matches an identity key or the
    email property by case-insensitive prefix, or a profile id: when at most ``cap``
    people match, by their ids (a sort of at most ``cap`` rows); when more do, by a test
    of each row as the sort's index is walked (they are then common enough that a page
    is found soon). A prefix naming a third of the bench's million people took 2.1 s to
    page and count by ids alone.
    """
    qs = Profile.objects.filter(site=site, merged_into__isnull=True)
    q = _clean_query(q)
    if not q:
        return qs
    match = _PROPERTY_QUERY.match(q)
    if match:
        condition = Q()
        for doc in _property_documents(match.group(1), match.group(2)):
            condition |= Q(properties__contains=doc)
        return qs.filter(condition)
    ids, complete = matches if matches is not None else _text_matches(site.pk, q, cap)
    if not complete or len(ids) > cap:
        return qs.filter(_text_match_condition(q))
    return qs.filter(pk__in=RawSQL("SELECT unnest(%s::bigint[])", [db.int_array(ids)]))


def people_page(
    *,
    site: Site,
    q: str = "",
    sort: str = DEFAULT_SORT,
    cursor: Cursor | None = None,
    limit: int = 50,
    matches: tuple[set[int], bool] | None = None,
) -> Page:
    """One page of people with their identities (2 queries, and the probe of a free-text
    ``q`` unless ``matches`` holds it). Sorting by last seen uses index
    profile_site_last_seen in either direction."""
    field_name, descending = PEOPLE_SORTS.get(sort, PEOPLE_SORTS[DEFAULT_SORT])
    qs = people_queryset(site=site, q=q, matches=matches).prefetch_related(
        Prefetch("identities", queryset=Identity.objects.order_by("kind", "key"))
    )
    return keyset_page(qs, field=field_name, descending=descending, cursor=cursor, limit=limit)


def people_count(
    *,
    site: Site,
    q: str = "",
    cap: int = COUNT_CAP,
    matches: tuple[set[int], bool] | None = None,
    page: Page | None = None,
) -> tuple[int, bool]:
    """How many people match, counted up to ``cap`` (an exact count of a million rows
    is a full index scan; "10,000+" says enough). Returns (count, capped). ``matches``:
    the probe of ``text_matches`` with the same ``q`` and ``cap``, when the caller has it.
    ``page``: the first page shown (no cursor), when the caller has it: one with nothing
    after it is every match, so no count runs (a property value no one has scanned every
    profile a second time: 117 ms of 255 on the bench's million people). Not a page
    after a cursor: one past the end is empty and has no links either."""
    if page is not None and page.next is None and page.previous is None:
        return len(page.items), False
    clean = _clean_query(q)
    if clean and not _PROPERTY_QUERY.match(clean):
        ids, complete = matches if matches is not None else _text_matches(site.pk, clean, cap)
        if len(ids) > cap:
            return cap, True
        if complete:
            return len(ids), False
        # Cut short yet at most ``cap`` distinct people: one person had several matching
        # identities. Counted row by row below.
    n = people_queryset(site=site, q=q, cap=cap, matches=matches).values("pk")[: cap + 1].count()
    return min(n, cap), n > cap


# --- one person -------------------------------------------------------------------------


def profile_get(*, site: Site, profile_id: int) -> Profile | None:
    """The live profile behind ``profile_id``: a merged-away id follows ``merged_into``
    (possibly several hops) to the profile that now holds its data."""
    profile = Profile.objects.filter(site=site, pk=profile_id).first()
    hops = 0
    while profile is not None and profile.merged_into_id is not None and hops < MAX_MERGE_HOPS:
        profile = Profile.objects.filter(site=site, pk=profile.merged_into_id).first()
        hops += 1
    if profile is None or profile.merged_into_id is not None:
        return None
    return profile


def profile_by_identity(*, site: Site, key: str, kind: str | None = None) -> Profile | None:
    """The live profile an identity key names. The same key may exist under several
    kinds (a user id that is also an email); ``kind`` picks one, else the most
    specific kind wins (user, email, external, cookie, anonymous)."""
    if "\x00" in key:
        return None
    if kind == PROFILE_KIND:
        return profile_get(site=site, profile_id=int(key)) if key.isascii() and key.isdigit() and len(key) < 19 else None
    identities = Identity.objects.filter(site=site, key=key)
    if kind:
        identities = identities.filter(kind=kind)
    found = {i.kind: i.profile_id for i in identities.only("kind", "profile_id")}
    for candidate in KIND_PREFERENCE:
        if candidate in found:
            return profile_get(site=site, profile_id=found[candidate])
    return None


_MERGED_INTO = """
    WITH RECURSIVE merged(id) AS (
        SELECT id FROM profiles_profile WHERE merged_into_id = %s AND site_id = %s
        UNION
        SELECT p.id FROM profiles_profile p JOIN merged m ON p.merged_into_id = m.id
    )
    SELECT id FROM merged
"""


def profile_merged_ids(*, profile: Profile) -> list[int]:
    """The profile's id followed by every tombstone merged into it, directly or
    through other tombstones (index on merged_into_id)."""
    with connection.cursor() as cursor:
        cursor.execute(_MERGED_INTO + " ORDER BY id", [profile.pk, profile.site_id])
        return [profile.pk] + [row[0] for row in cursor.fetchall()]


def profile_event_ids(*, profile: Profile) -> list[int]:
    """The ids the profile's events may still carry: its own, and those of tombstones
    whose merge has not been re-pointed yet (``ProfileMerge.repointed_at`` null)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _MERGED_INTO
            + """
            WHERE NOT EXISTS (
                SELECT 1 FROM profiles_profilemerge pm
                WHERE pm.site_id = %s AND pm.source_id = merged.id AND pm.repointed_at IS NOT NULL
            )
            ORDER BY id
            """,
            [profile.pk, profile.site_id, profile.site_id],
        )
        return [profile.pk] + [row[0] for row in cursor.fetchall()]


@dataclass
class PersonDetail:
    profile: Profile
    profile_ids: list[int]  # the profile's own id first, then the ids merged into it
    identities: list[Identity]
    companies: list[Company]
    sessions: list[Session]
    session_count: int
    event_profile_ids: list[int]
    events: Page
    event_count: int


def person_detail(
    *, site: Site, profile: Profile, events_limit: int = 50, sessions_limit: int = 10
) -> PersonDetail:
    """Everything the person page and ``GET /api/v1/people/<id>`` show (about 8
    queries, each on an index, whatever the size of the history)."""
    ids = profile_merged_ids(profile=profile)
    event_ids = profile_event_ids(profile=profile) if len(ids) > 1 else ids
    sessions = event_selectors.sessions_of_profiles(site_id=site.pk, profile_ids=ids)
    return PersonDetail(
        profile=profile,
        profile_ids=ids,
        identities=list(
            Identity.objects.filter(site=site, profile_id__in=ids).order_by("kind", "created_at", "key")
        ),
        companies=list(Company.objects.filter(site=site, members__in=ids).distinct().order_by("key")),
        sessions=list(sessions[:sessions_limit]),
        session_count=sessions.count(),
        event_profile_ids=event_ids,
        events=person_events_page(site=site, profile_ids=event_ids, limit=events_limit),
        event_count=event_selectors.events_count_of_profiles(site_id=site.pk, profile_ids=event_ids),
    )


def person_events_page(
    *, site: Site, profile_ids: Sequence[int], cursor: Cursor | None = None, limit: int = 50
) -> Page:
    """A page of the timeline; ``profile_ids`` from ``profile_event_ids``."""
    return event_selectors.events_of_profiles_page(
        site_id=site.pk, profile_ids=profile_ids, cursor=cursor, limit=limit
    )


# --- live feed ----------------------------------------------------------------------------


@dataclass
class LiveEvent:
    event: Event
    profile: Profile | None


def live_events(
    *, site: Site, hours: int = 24, limit: int = 50, type_prefix: str = "", before: Cursor | None = None
) -> Page:
    """A page of the newest events of the site (of the types starting with
    ``type_prefix``; older than ``before``) with the people who did them: one query for
    the people and one per recent window read (``tracking.selectors.LIVE_WINDOWS``).
    ``next`` is the cursor of the older page when this one is full (there may be more;
    finding out for sure would read a wider window on every refresh)."""
    events = event_selectors.events_recent(
        site_id=site.pk, hours=hours, limit=limit, type_prefix=type_prefix, before=before
    )
    more = len(events) >= limit
    events = events[:limit]
    by_id = _people_by_id(site, {e.profile_id for e in events})
    return Page(
        items=[LiveEvent(event=e, profile=by_id.get(e.profile_id)) for e in events],
        next=Cursor(events[-1].received_at, events[-1].id) if more else None,
        previous=None,
    )


def _people_by_id(site: Site, ids: set[int]) -> dict[int, Profile]:
    """id -> the live person: a profile merged away (its events not moved yet, a large
    history moves in the background) stands for the person it was merged into."""
    fields = ("id", "properties", "is_identified", "merged_into_id")
    people = {p.pk: p for p in Profile.objects.filter(site=site, pk__in=ids).only(*fields)}
    targets = {p.merged_into_id for p in people.values() if p.merged_into_id} - people.keys()
    if targets:
        people.update((p.pk, p) for p in Profile.objects.filter(site=site, pk__in=targets).only(*fields))
    return {pid: people.get(p.merged_into_id, p) if p.merged_into_id else p for pid, p in people.items()}
