"""Segment's browser library (@segment/analytics-next from npm, unchanged) in Chromium:
it loads its settings from Footprint and sends identify, track and page there.

The shop page is served from http://127.0.0.1:<port> and Footprint from
http://localhost:<port>, so the calls are cross-origin and go through CORS preflight
as they do on a real site."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest

from profiles.models import Identity
from tests.factories import SiteFactory
from tracking.models import Event

pytestmark = [pytest.mark.browser, pytest.mark.urls("tests.contract.segment_page_urls")]

DELIVERY = {
    "one request a call": ({}, {"/v1/i", "/v1/t", "/v1/p"}),
    "batches": (
        {"deliveryStrategy": {"strategy": "batching", "config": {"size": 3, "timeout": 300}}},
        {"/v1/b"},
    ),
}


def wait_for_events(site, count: int, timeout: float = 15.0) -> list[Event]:
    deadline = time.monotonic() + timeout
    while True:
        events = list(
            Event.objects.filter(site=site)
            .exclude(type="visited-site")
            .order_by("occurred_at", "id")
        )
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


@pytest.mark.parametrize("delivery", list(DELIVERY))
def test_the_segment_browser_library_sends_to_footprint(page, live_server, delivery):
    site = SiteFactory(name="Browser shop")
    key = site.primary_write_key().key
    segmentio, expected_paths = DELIVERY[delivery]
    footprint = live_server.url  # http://localhost:<port>
    shop = footprint.replace("localhost", "127.0.0.1")

    requests: list[tuple[str, str]] = []
    page.on("request", lambda request: requests.append((request.method, request.url)))
    query = urlencode({"key": key, "footprint": footprint, "segmentio": json.dumps(segmentio)})
    page.goto(f"{shop}/shop/?{query}")
    page.wait_for_function("window.segmentDone || window.segmentError", timeout=20_000)
    assert page.evaluate("window.segmentError") is None
    anonymous_id = page.evaluate("window.segmentDone")

    events = wait_for_events(site, 3)
    assert sorted(e.type for e in events) == ["Product Viewed", "identify", "page-view"]
    person = Identity.objects.get(site=site, kind="user", key="shopper-1").profile
    assert Identity.objects.get(site=site, kind="anonymous", key=anonymous_id).profile == person
    assert {e.profile_id for e in events} == {person.pk}
    assert person.properties["plan"] == "gold"
    by_type = {e.type: e for e in events}
    assert by_type["Product Viewed"].properties == {"sku": "SHOE-9", "price": 89.5}
    assert by_type["page-view"].properties["name"] == "Shoes"
    assert by_type["page-view"].properties["category"] == "Shop"
    context = by_type["page-view"].context
    assert context["library"]["name"] == "analytics.js"
    assert context["page"]["url"].startswith(f"{shop}/shop/")
    assert context["userAgent"]
    assert context["ip"] == "127.0.0.1"

    # Settings came from Footprint, events went to Footprint, and nothing to Segment.
    urls = [url for _, url in requests]
    assert f"{footprint}/v1/projects/{key}/settings" in urls
    sent = {url.removeprefix(footprint) for method, url in requests if method == "POST"}
    assert sent == expected_paths
    assert not [url for url in urls if "segment.com" in url or "segment.io" in url]
