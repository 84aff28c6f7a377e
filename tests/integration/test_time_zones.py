"""Times shown in the site's time zone (DESIGN "Sites and tokens": a site has a time zone):
the People, Person, Live and Settings pages render every date in it, on the day clocks
change too; the management API answers in UTC, with the offset written.

Fixed instants around the day British Summer Time ended in 2026 (Oct 25, 01:00 UTC):
00:30 and 01:30 UTC both read 01:30 in London, one BST (+01:00), one GMT (+00:00).
Kolkata is +05:30 all year, Sao Paulo -03:00 (no daylight saving since 2019)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from profiles.models import Identity
from tests.conftest import PASSWORD
from tests.factories import MembershipFactory
from tests.people import event, person, session
from tracking import services as tracking_services
from tracking.models import Membership, WriteKey

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
    client.login(username=membership.user.username, password=PASSWORD)
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
