"""Segment's own Python library (segment-analytics-python), unchanged, against a live
Footprint: what it sends is stored, merged and deduplicated as DESIGN says."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import segment.analytics as analytics
from segment.analytics import request as segment_request
from segment.analytics.request import APIError

from profiles.models import Company, Identity, Profile, ProfileMerge
from tests.factories import SiteFactory
from tracking.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_site():
    return SiteFactory(name="Live shop")


@pytest.fixture
def make_client(live_server, live_site, monkeypatch) -> Iterator[Any]:
    # The library shares one keep-alive HTTP session; a connection left open keeps a live
    # server thread, and its database connection, alive past the test database.
    session = requests.Session()
    monkeypatch.setattr(segment_request, "_session", session)
    clients: list[analytics.Client] = []

    def make(**options: Any) -> analytics.Client:
        options.setdefault("write_key", live_site.primary_write_key().key)
        options.setdefault("sync_mode", True)
        client = analytics.Client(host=live_server.url, max_retries=1, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        if not client.sync_mode:
            client.shutdown()
    session.close()


def stored(site, *types: str) -> list[Event]:
    rows = Event.objects.filter(site=site).order_by("id")
    return list(rows.filter(type__in=types) if types else rows.exclude(type="visited-site"))


def profile_of(site, kind: str, key: str) -> Profile:
    return Identity.objects.select_related("profile").get(site=site, kind=kind, key=key).profile


def test_it_stores_every_call_the_library_makes(make_client, live_site):
    client = make_client()
    client.page(anonymous_id="anon-1", category="Shop", name="Shoes", properties={"path": "/shoes"})
    client.track(
        anonymous_id="anon-1", event="Product Viewed", properties={"sku": "S-1", "price": 59.9}
    )
    client.identify(
        user_id="user-1", anonymous_id="anon-1", traits={"email": "ann@example.com", "plan": "free"}
    )
    client.track(user_id="user-1", event="Order Completed", properties={"revenue": 59.9})
    client.screen(user_id="user-1", name="Receipt")
    client.group(user_id="user-1", group_id="acme", traits={"name": "Acme Inc"})

    events = stored(live_site)
    assert [e.type for e in events] == [
        "page-view",
        "Product Viewed",
        "identify",
        "Order Completed",
        "screen-view",
        "group",
    ]
    person = profile_of(live_site, "user", "user-1")
    # The anonymous history merged into the person on identify.
    assert profile_of(live_site, "anonymous", "anon-1") == person
    assert {e.profile_id for e in events} == {person.pk}
    assert person.is_identified
    assert person.properties["email"] == "ann@example.com"
    assert events[0].properties == {"path": "/shoes", "name": "Shoes", "category": "Shop"}
    assert events[1].properties == {"sku": "S-1", "price": 59.9}
    assert events[0].context["library"]["name"] == "analytics-python"
    # A server library calls from the site's server: that address is not the person's.
    assert "ip" not in events[0].context
    assert all(e.message_id for e in events)
    company = Company.objects.get(site=live_site, key="acme")
    assert company.properties["name"] == "Acme Inc"
    assert list(company.members.all()) == [person]


def test_it_merges_on_alias(make_client, live_site):
    client = make_client()
    client.track(anonymous_id="device-7", event="Opened App")
    client.identify(user_id="user-7", traits={"name": "Bo"})
    client.alias(previous_id="device-7", user_id="user-7")

    person = profile_of(live_site, "user", "user-7")
    assert profile_of(live_site, "anonymous", "device-7") == person
    assert {e.profile_id for e in stored(live_site)} == {person.pk}
    assert ProfileMerge.objects.filter(site=live_site, target_id=person.pk, reason="alias").exists()


def test_it_stores_a_retried_message_once(make_client, live_site):
    client = make_client()
    for _ in range(3):  # what the library does when a response is lost
        client.track(user_id="user-1", event="Paid", message_id="pay-0001")
    assert [e.message_id for e in stored(live_site)] == ["pay-0001"]


def test_it_accepts_queued_batches_and_gzip(make_client, live_site):
    errors: list[Exception] = []
    client = make_client(
        sync_mode=False, gzip=True, upload_size=100, on_error=lambda e, batch: errors.append(e)
    )
    for n in range(250):
        client.track(user_id=f"user-{n % 10}", event="Viewed", properties={"n": n})
    client.flush()
    assert errors == []
    events = stored(live_site)
    assert sorted(e.properties["n"] for e in events) == list(range(250))
    assert Identity.objects.filter(site=live_site, kind="user").count() == 10


def test_it_corrects_the_clock_of_the_caller(make_client, live_site):
    client = make_client()
    then = datetime.now(UTC) - timedelta(hours=3)
    client.track(user_id="user-1", event="Late", timestamp=then)
    [event] = stored(live_site)
    assert abs(event.occurred_at - then) < timedelta(minutes=1)


def api_error(call) -> tuple[int, str, str]:
    """Status, code and message of the APIError the library raises. The error is not
    kept: its response holds the connection to the live server open."""
    try:
        call()
    except APIError as error:
        return error.status, error.code, error.message
    pytest.fail("the library raised no APIError")


def test_the_library_reads_our_errors(make_client, live_site):
    client = make_client(write_key="wk_wrong")
    error = api_error(lambda: client.track(user_id="user-1", event="Nope"))
    assert error == (401, "unauthorized", "Invalid write key")

    client = make_client()
    status, code, message = api_error(lambda: client.track(user_id="undefined", event="Junk"))
    assert (status, code) == (400, "invalid")
    assert "userId" in message
    assert stored(live_site) == []
