"""People pages of the marketer UI: People (search), Person, Live events.

Views parse the request, call a selector or service and render; htmx requests get only
the fragment they swap in (search results, a page of the timeline, the live feed).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from profiles import selectors, services
from profiles.models import Profile
from tracking.access import can, site_page
from tracking.keyset import Cursor, InvalidCursor
from tracking.models import Membership, Site

PAGE_SIZE = 50
TIMELINE_PAGE_SIZE = 50
LIVE_LIMIT = 50
LIVE_HOURS = 24
LIVE_POLL_SECONDS = 3


def _cursor(request: HttpRequest) -> Cursor | None:
    try:
        return Cursor.parse(request.GET.get("cursor"))
    except InvalidCursor:
        return None  # a mangled link shows the first page rather than an error


def _wants_fragment(request: HttpRequest, target: str) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request and htmx.target == target


def _person_or_404(site: Site, profile_id: int) -> Profile:
    profile = selectors.profile_get(site=site, profile_id=profile_id)
    if profile is None:
        raise Http404("No such person.")
    return profile


@require_GET
@site_page
def people(request: HttpRequest, site: Site) -> HttpResponse:
    q = request.GET.get("q", "").strip()[:255]
    sort = request.GET.get("sort", selectors.DEFAULT_SORT)
    if sort not in selectors.PEOPLE_SORTS:
        sort = selectors.DEFAULT_SORT
    matches = selectors.text_matches(site=site, q=q)  # one probe for the page and its count
    cursor = _cursor(request)
    page = selectors.people_page(site=site, q=q, sort=sort, cursor=cursor, limit=PAGE_SIZE, matches=matches)
    first_page = page if cursor is None else None  # one after a cursor may be past the end
    count, capped = selectors.people_count(site=site, q=q, matches=matches, page=first_page)
    context = {
        "section": "people",
        "title": "People",
        "q": q,
        "sort": sort,
        "sorts": selectors.PEOPLE_SORT_LABELS.items(),
        "page": page,
        "count": count,
        "count_capped": capped,
        # An empty site gets the "paste the snippet" state instead of a search box.
        "site_is_empty": not q and count == 0 and not page.items,
    }
    if _wants_fragment(request, "people-results"):
        return render(request, "profiles/_people_results.html", context)
    return render(request, "profiles/people.html", context)


@require_GET
@site_page
def person(request: HttpRequest, site: Site, profile_id: int) -> HttpResponse:
    profile = _person_or_404(site, profile_id)
    if profile.pk != profile_id:  # a merged-away id: show the person it became
        return redirect("app:person", site_id=site.pk, profile_id=profile.pk)
    detail = selectors.person_detail(site=site, profile=profile, events_limit=TIMELINE_PAGE_SIZE)
    return render(
        request,
        "profiles/person.html",
        {
            "section": "people",
            "title": profile.display_name,
            "person": profile,
            "detail": detail,
            "properties": sorted((profile.properties or {}).items()),
            "may_manage": can(request.user, site, Membership.Role.ADMIN),
        },
    )


@require_GET
@site_page
def person_events(request: HttpRequest, site: Site, profile_id: int) -> HttpResponse:
    """The next page of a person's timeline (htmx swaps it in place of "Older")."""
    profile = _person_or_404(site, profile_id)
    ids = selectors.profile_event_ids(profile=profile)
    page = selectors.person_events_page(
        site=site, profile_ids=ids, cursor=_cursor(request), limit=TIMELINE_PAGE_SIZE
    )
    return render(request, "profiles/_timeline_items.html", {"person": profile, "events": page})


@require_GET
@site_page(role=Membership.Role.ADMIN)
def person_export(request: HttpRequest, site: Site, profile_id: int) -> HttpResponse:
    profile = _person_or_404(site, profile_id)
    data = services.profile_export(site=site, profile=profile)
    response = JsonResponse(data, json_dumps_params={"indent": 2, "ensure_ascii": False})
    response["Content-Disposition"] = f'attachment; filename="person-{profile.pk}.json"'
    return response


@require_POST
@site_page(role=Membership.Role.ADMIN)
def person_forget(request: HttpRequest, site: Site, profile_id: int) -> HttpResponse:
    profile = _person_or_404(site, profile_id)
    name = profile.display_name
    try:
        counts = services.profile_forget(site=site, profile=profile)
    except services.QueueBusy as exc:
        messages.error(request, f"{name} was not deleted: {exc}")
        return redirect("app:person", site_id=site.pk, profile_id=profile.pk)
    messages.success(
        request,
        f"{name} was deleted with {counts['events']} events and {counts['sessions']} sessions.",
    )
    return redirect("app:people", site_id=site.pk)


def _live_context(request: HttpRequest, site: Site) -> dict:
    type_prefix = request.GET.get("type", "").replace("\x00", "").strip()[:255]
    before = _cursor(request)  # an older page: it stands still (no polling)
    page = selectors.live_events(site=site, hours=LIVE_HOURS, limit=LIVE_LIMIT, type_prefix=type_prefix, before=before)
    rows = page.items
    # Rows newer than the newest one the browser already shows are highlighted.
    seen = request.GET.get("seen", "")
    seen_id = int(seen) if seen.isascii() and seen.isdigit() and len(seen) < 19 else None
    return {
        "section": "live",
        "title": "Live events",
        "rows": rows,
        "type": type_prefix,
        "older": page.next.encode() if page.next else None,
        "is_history": before is not None,
        "seen_id": seen_id,
        "newest_id": max((r.event.id for r in rows), default=seen_id or 0),
        "hours": LIVE_HOURS,
        "poll_seconds": LIVE_POLL_SECONDS,
        "updated_at": timezone.now(),
    }


@require_GET
@site_page
def live(request: HttpRequest, site: Site) -> HttpResponse:
    context = _live_context(request, site)
    if _wants_fragment(request, "live-feed"):
        return render(request, "profiles/_live_feed.html", context)
    return render(request, "profiles/live.html", context)


@require_GET
@site_page
def live_feed(request: HttpRequest, site: Site) -> HttpResponse:
    return render(request, "profiles/_live_feed.html", _live_context(request, site))
