"""Times shown in the site's time zone (DESIGN "Sites and tokens": a site has a time zone):
the People, Person, Live and Settings pages render every date in it, on the day clocks
change too; the management API answers in UTC, with the offset written.

Fixed instants around the day British Summer Time ended in 2026 (Oct 25, 01:00 UTC):
00:30 and 01:30 UTC both read 01:30 in London, one BST (+01:00), one GMT (+00:00).
Kolkata is +05:30 all year, Sao Paulo -03:00 (no daylight saving since 2019)."""

import base64
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from profiles.maintenance import anonymous_profiles_purge
from profiles.models import Identity, Profile
from tests.factories import MembershipFactory
from tests.people import event, person, session
from tracking import inbox
from tracking import services as tracking_services
from tracking.models import Event, Membership, WriteKey
from tracking.partitions import DEFAULT, ensure_event_partitions

pytestmark = pytest.mark.django_db

BEFORE = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 01:30 BST in London
AFTER = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 01:30 GMT in London
FIRST = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # 00:30 GMT, half an hour before BST began
SINCE = datetime(2026, 10, 24, 23, 0, tzinfo=UTC)  # the 25th in London and Kolkata, the 24th in Sao Paulo

# zone -> (BEFORE shown, its ISO form, AFTER shown, its ISO form, FIRST shown, SINCE's day)
SHOWN = {
    "Europe/London": (
        "Oct 25, 2026 01:30:00", "2026-10-25T01:30:00+01:00",
        "Oct 25, 2026 01:30:00", "2026-10-25T01:30:00+00:00",
        "Mar 29, 2026 00:30", "Oct 25, 2026",
    ),
    "Asia/Kolkata": (
        "Oct 25, 2026 06:00:00", "2026-10-25T06:00:00+05:30",
        "Oct 25, 2026 07:00:00", "2026-10-25T07:00:00+05:30",
        "Mar 29, 2026 06:00", "Oct 25, 2026",
    ),
    "America/Sao_Paulo": (
        "Oct 24, 2026 21:30:00", "2026-10-24T21:30:00-03:00",
        "Oct 24, 2026 22:30:00", "2026-10-24T22:30:00-03:00",
        "Mar 28, 2026 21:30", "Oct 24, 2026",
    ),
}


@pytest.fixture
def logged_in(client, site):
    membership = MembershipFactory(site=site, role=Membership.Role.ADMIN)  # admins see the settings
    client.force_login(membership.user)  # client.login passes no request, which django-axes needs
    return client


def _set_zone(site, zone: str) -> None:
    site.time_zone = zone
    site.save(update_fields=["time_zone"])


@pytest.mark.parametrize("zone", list(SHOWN))
def test_the_person_page_shows_times_in_the_sites_zone(logged_in, site, zone):
    _set_zone(site, zone)
    before, before_iso, after, after_iso, first, since_day = SHOWN[zone]
    ann = person(site, "user:ann", first_seen=FIRST, last_seen=AFTER)
    Identity.objects.filter(profile=ann).update(created_at=SINCE)
    visit = session(ann, started_at=BEFORE)
    event(ann, "early", at=BEFORE, session=visit)
    event(ann, "late", at=AFTER, session=visit)

    html = logged_in.get(reverse("app:person", args=[site.pk, ann.pk])).content.decode()

    assert f'<time datetime="{before_iso}"' in html and f">{before}</time>" in html
    assert f'<time datetime="{after_iso}"' in html and f">{after}</time>" in html
    assert f">{first}</time>" in html  # first seen
    assert f"since {since_day}" in html  # identity
    shown = BEFORE.astimezone(ZoneInfo(zone))
    assert f">{shown:%b} {shown.day}, {shown:%H:%M}</time>" in html  # the session's start


@pytest.mark.parametrize("zone", list(SHOWN))
def test_the_people_page_shows_times_in_the_sites_zone(logged_in, site, zone):
    _set_zone(site, zone)
    _, before_iso, _, after_iso, first, _ = SHOWN[zone]
    person(site, "user:ann", first_seen=BEFORE, last_seen=AFTER)

    html = logged_in.get(reverse("app:people", args=[site.pk])).content.decode()

    assert f'<time datetime="{before_iso}"' in html  # first seen
    assert f'<time datetime="{after_iso}"' in html  # last seen
    day = BEFORE.astimezone(ZoneInfo(zone))
    assert f">{day:%b} {day.day}, {day.year}</time>" in html


@pytest.mark.parametrize("zone", list(SHOWN))
def test_the_live_page_shows_arrival_times_in_the_sites_zone(logged_in, site, zone):
    _set_zone(site, zone)
    ann = person(site, "user:ann")
    received = timezone.now().replace(microsecond=0) - timedelta(minutes=3)
    event(ann, "page-view", at=received, received_at=received)

    html = logged_in.get(reverse("app:live-feed", args=[site.pk])).content.decode()

    local = received.astimezone(ZoneInfo(zone))
    assert f'<time datetime="{local.isoformat()}"' in html
    assert f">{local:%H:%M:%S}</time>" in html
    assert "3\xa0minutes ago" in html


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "America/Sao_Paulo"])
def test_the_settings_page_shows_a_keys_expiry_in_the_sites_zone(logged_in, site, zone):
    """A rotated key's grace ends at an instant; the page said it in UTC, unlabelled, while
    every other page speaks the site's zone."""
    _set_zone(site, zone)
    expires = timezone.now().replace(second=0, microsecond=0) + timedelta(hours=5)
    WriteKey.objects.create(site=site, expires_at=expires)

    html = logged_in.get(reverse("app:settings", args=[site.pk])).content.decode()

    local = expires.astimezone(ZoneInfo(zone))
    assert f'expires <time datetime="{local.isoformat()}">{local:%Y-%m-%d %H:%M} {local:%Z}</time>' in html


def test_the_api_answers_in_utc_with_the_offset_written(site):
    """Whatever the site's zone: ISO 8601 in UTC, so a client needs no zone to read it."""
    _set_zone(site, "Asia/Kolkata")
    key = tracking_services.secret_key_issue(site=site).key
    ann = person(site, "user:ann", first_seen=FIRST, last_seen=AFTER)
    event(ann, "late", at=AFTER)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    detail = api.get(f"/api/v1/people/{ann.pk}").json()
    listed = api.get("/api/v1/people").json()["results"][0]
    exported = api.get(f"/api/v1/people/{ann.pk}/export").json()

    for value, instant in [
        (detail["first_seen"], FIRST), (detail["last_seen"], AFTER), (detail["recent_events"][0]["occurred_at"], AFTER),
        (listed["last_seen"], AFTER), (exported["last_seen"], AFTER), (exported["events"][0]["occurred_at"], AFTER),
    ]:
        assert datetime.fromisoformat(value) == instant
        assert datetime.fromisoformat(value).utcoffset() == timedelta(0)


# Segment timestamps a client in London sends the night BST ended in 2025 (Oct 26, 01:00
# UTC), in the shapes ISO 8601 allows (an offset, Z, none: read as UTC), with the UTC
# instant each stands for.
NIGHT = [
    ("2025-10-26T01:10:00+01:00", datetime(2025, 10, 26, 0, 10, tzinfo=UTC)),
    ("2025-10-26T01:25:00+00:00", datetime(2025, 10, 26, 1, 25, tzinfo=UTC)),  # 15 min later on the wall, 75 elapsed
    ("2025-10-26T01:40:00Z", datetime(2025, 10, 26, 1, 40, tzinfo=UTC)),
    ("2025-10-26T01:59:59.999999", datetime(2025, 10, 26, 1, 59, 59, 999999, tzinfo=UTC)),  # 20 min less 1 µs
    ("2025-10-26T07:50:00.0000011+05:30", datetime(2025, 10, 26, 2, 20, 0, 1, tzinfo=UTC)),  # 20 min and 2 µs
]


@pytest.mark.parametrize("mode", ["immediate", "queued"])
def test_sessions_count_elapsed_time_across_a_clock_change_in_both_modes(client, site, mode, request):
    """The inactivity timeout is elapsed time, whatever the wall clock did: two events
    15 minutes apart on a London clock that fell back an hour between them are 75
    minutes apart, two visits; and an offset, Z or none is read the same in both modes."""
    _set_zone(site, "Europe/London")
    if mode == "queued":
        request.getfixturevalue("queued")
    auth = "Basic " + base64.b64encode(f"{site.primary_write_key().key}:".encode()).decode()
    for n, (stamp, _) in enumerate(NIGHT):
        body = {"batch": [{"type": "track", "event": "Viewed", "anonymousId": "a-1", "messageId": f"m{n}", "timestamp": stamp}]}
        response = client.post("/v1/batch", body, content_type="application/json", HTTP_AUTHORIZATION=auth)
        assert response.status_code == 200, response.content
    if mode == "queued":
        inbox.drain(idle_seconds=0)

    stored = {e.message_id: e for e in Event.objects.filter(site=site).exclude(type="visited-site")}
    assert [stored[f"m{n}"].occurred_at for n in range(len(NIGHT))] == [instant for _, instant in NIGHT]
    visits = [stored[f"m{n}"].session_id for n in range(len(NIGHT))]
    assert visits[0] != visits[1] == visits[2] == visits[3] != visits[4] and visits[0] != visits[4]
    assert Event.objects.filter(site=site, type="visited-site").count() == 3


@pytest.mark.parametrize(("stamp", "instant"), [NIGHT[0], NIGHT[3], ("2025-10-26", datetime(2025, 10, 26, tzinfo=UTC))])
def test_segment_and_tracardi_read_a_time_alike(client, site, stamp, instant):
    """A time with no offset is UTC in every format that takes one (never the server's
    zone), an offset is honoured, a date alone is its midnight in UTC."""
    key = site.primary_write_key().key
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    body = {"type": "track", "event": "Viewed", "anonymousId": "a-1", "messageId": "seg", "timestamp": stamp}
    assert client.post("/v1/track", body, content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 200
    payload = {"source": {"id": key}, "session": {"id": "s-1"}, "events": [{"type": "viewed", "time": {"create": stamp}}]}
    assert client.post("/track", payload, content_type="application/json").status_code == 200

    assert Event.objects.get(site=site, message_id="seg").occurred_at == instant
    assert Event.objects.get(site=site, type="viewed").occurred_at == instant


def test_months_are_utc_months_whatever_the_sites_zone(client, site):
    """Partitions hold UTC months: 05:29:59.999999 on Feb 1 in Kolkata is still January."""
    _set_zone(site, "Asia/Kolkata")
    auth = "Basic " + base64.b64encode(f"{site.primary_write_key().key}:".encode()).decode()
    batch = [
        {"type": "track", "event": "x", "anonymousId": "a-1", "messageId": "jan", "timestamp": "1999-02-01T05:29:59.999999+05:30"},
        {"type": "track", "event": "x", "anonymousId": "a-1", "messageId": "feb", "timestamp": "1999-02-01T05:30:00+05:30"},
    ]
    assert client.post("/v1/batch", {"batch": batch}, content_type="application/json", HTTP_AUTHORIZATION=auth).status_code == 200

    assert ensure_event_partitions(months_back=0, months_ahead=0, today=date(1999, 1, 31)) == ["tracking_event_1999_01"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT message_id, tableoid::regclass::text FROM tracking_event WHERE site_id = %s"
                       " AND message_id IS NOT NULL", [site.pk])
        assert dict(cursor.fetchall()) == {"jan": "tracking_event_1999_01", "feb": DEFAULT}


def test_retention_counts_elapsed_days_across_a_clock_change(site):
    """60 days are 60 × 24 hours back from now, whatever the site's clocks did between:
    last seen exactly then is kept, a microsecond earlier purged (London fell back an
    hour on Oct 25; in its wall time the two are 13:00 BST and 12:00 GMT)."""
    _set_zone(site, "Europe/London")
    now = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    cutoff = now - timedelta(days=60)
    kept = person(site, "anonymous:a-kept", first_seen=cutoff, last_seen=cutoff)
    gone = person(site, "anonymous:a-gone", first_seen=cutoff, last_seen=cutoff - timedelta(microseconds=1))

    assert anonymous_profiles_purge(now=now) == 1
    assert list(Profile.objects.filter(site=site).values_list("pk", flat=True)) == [kept.pk]
    assert not Profile.objects.filter(pk=gone.pk).exists()
