"""A shop for the tracker's browser tests: Footprint's URLs plus /pages/<name>, which
serves whatever HTML a test registered under that name. Mounted only by the tests that
ask for it (``pytest.mark.urls("tests.browser.tracker_site")``).

The shop pages are opened at http://127.0.0.1:<port> while Footprint answers at
http://localhost:<port>, so the tracker talks to Footprint cross-origin, as on a real
site (CORS, first-party storage on the shop's origin)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as footprint_urlpatterns
from profiles.models import Identity, Profile
from tracking import segment_views, tracker
from tracking.models import Event, Site
from tracking.snippet import tracker_snippet

PAGES: dict[str, str] = {}
# Playwright's routing does not see navigator.sendBeacon's requests, so "the server is
# down" is also played on the server: /v1/batch answers 503 while this is set.
SERVER = {"down": False}

T = TypeVar("T")


def shop_page(request: HttpRequest, name: str) -> HttpResponse:
    html = PAGES.get(name)
    if html is None:
        raise Http404(name)
    return HttpResponse(html)


@csrf_exempt
def batch(request: HttpRequest) -> HttpResponse:
    if SERVER["down"]:
        return HttpResponse("down for a test", status=503)
    return segment_views.track(request, endpoint="batch")


urlpatterns = [
    path("pages/<str:name>", shop_page),
    path("v1/batch", batch),
    *footprint_urlpatterns,
]


class Shop:
    """Pages of one test site, and what Footprint stored for it."""

    def __init__(self, live_server, site: Site, page=None):
        self.page = page  # waits pump its events (console, requests) while they poll
        self.footprint = live_server.url  # http://localhost:<port>
        self.origin = live_server.url.replace("localhost", "127.0.0.1")
        self.site = site
        self.write_key = site.primary_write_key().key

    def snippet(self, *, debug: bool = False, consent_required: bool = False) -> str:
        snippet = tracker_snippet(self.site, base_url=self.footprint)
        if debug:
            snippet = snippet.replace('"data-debug","false"', '"data-debug","true"')
        if consent_required:
            snippet = snippet.replace('e.setAttribute("data-debug"', 'e.setAttribute("data-consent","required");e.setAttribute("data-debug"')
        return snippet

    def script_url(self) -> str:
        return tracker.script_url(self.footprint)

    def add(self, name: str, *, head: str = "", body: str = "", title: str = "Shop") -> str:
        """Register a page; returns its URL."""
        PAGES[name] = (
            f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>{head}</head>'
            f"<body>{body}</body></html>"
        )
        return f"{self.origin}/pages/{name}"

    def page_with_snippet(self, name: str, *, body: str = "", script: str = "", **snippet: Any) -> str:
        after = f"<script>{script}</script>" if script else ""
        return self.add(name, head=self.snippet(**snippet) + after, body=body)

    # --- what was stored ---------------------------------------------------------------

    def events(self, *, visits: bool = False) -> list[Event]:
        events = Event.objects.filter(site=self.site).order_by("occurred_at", "id")
        if not visits:
            events = events.exclude(type="visited-site")
        return list(events)

    def types(self, **kwargs: Any) -> list[str]:
        return [e.type for e in self.events(**kwargs)]

    def wait_for_types(self, *expected: str, timeout: float = 15) -> list[Event]:
        """Wait until every expected type (with multiplicity) is stored; returns all events."""

        def arrived() -> list[Event] | None:
            events = self.events()
            types = [e.type for e in events]
            return events if all(types.count(t) >= expected.count(t) for t in expected) else None

        return wait_for(
            arrived, page=self.page, timeout=timeout, message=lambda: f"expected {expected}, stored {self.types()}"
        )

    def people(self) -> list[Profile]:
        return list(Profile.objects.filter(site=self.site, merged_into__isnull=True).order_by("id"))

    def person(self, user_id: str) -> Profile:
        return Identity.objects.select_related("profile").get(site=self.site, kind="user", key=user_id).profile

    def identities(self, profile: Profile) -> set[tuple[str, str]]:
        return set(Identity.objects.filter(profile=profile).values_list("kind", "key"))


def wait_for(
    check: Callable[[], T | None],
    *,
    page=None,
    timeout: float = 15,
    message: Callable[[], str] | None = None,
) -> T:
    """Poll ``check`` until it returns something truthy. With a page, the wait runs inside
    Playwright so the page's events (console, requests) reach their handlers meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if message else "timed out")
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)


def tracker_ready(page) -> None:
    """Wait until the tracker has loaded and fetched its site config."""
    page.wait_for_function("window.footprint && window.footprint.loaded === true")


def stored_queue(page, shop: Shop, name: str = "q") -> list[dict]:
    """Events the tracker keeps in localStorage: unsent (``q``) or waiting for consent (``held``)."""
    return page.evaluate(f"JSON.parse(localStorage.getItem('fp_{name}{shop.write_key[-8:]}') || '[]')")
