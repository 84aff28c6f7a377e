"""People, Person and Live pages rendered by the server (the browser tests click them)."""

import base64
import json
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from profiles.models import Profile
from tests.people import company, event, events, merge, person, session
from tracking.keyset import Cursor
from tracking.models import Event, Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def logged_in(client, marketer):
    client.force_login(marketer)
    return client


def test_it_shows_the_snippet_hint_on_an_empty_site(logged_in, site):
    html = logged_in.get(reverse("app:people", args=[site.pk])).content.decode()
    assert "No one has been tracked on this site yet." in html
    assert reverse("app:settings", args=[site.pk]) in html
    html = logged_in.get(reverse("app:live", args=[site.pk])).content.decode()
    assert "No events in the last 24 hours." in html
    assert reverse("app:settings", args=[site.pk]) in html


def test_it_lists_and_searches_people(logged_in, site, other_site):
    person(site, "user:ann", properties={"name": "Ann Lee", "email": "ann@example.com"})
    person(site, "user:bob", properties={"name": "Bob Stone"})
    person(other_site, "user:ann", properties={"name": "Ann Elsewhere"})
    url = reverse("app:people", args=[site.pk])
    html = logged_in.get(url).content.decode()
    assert "Ann Lee" in html and "Bob Stone" in html and "Elsewhere" not in html
    assert "ann@example.com" in html and "2 people" in html

    html = logged_in.get(url, {"q": "ann"}).content.decode()
    assert "Ann Lee" in html and "Bob Stone" not in html

    html = logged_in.get(url, {"q": "zed"}).content.decode()
    assert "No one matches “zed”." in html


def test_it_answers_htmx_searches_with_the_results_only(logged_in, site):
    person(site, "user:ann", properties={"name": "Ann Lee"})
    url = reverse("app:people", args=[site.pk])
    fragment = logged_in.get(url, {"q": "ann"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="people-results")
    html = fragment.content.decode()
    assert "Ann Lee" in html and "<html" not in html and 'id="people-q"' not in html
    restore = logged_in.get(
        url, {"q": "ann"}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="people-results", HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert "<html" in restore.content.decode()


def test_it_lists_people_in_a_fixed_number_of_queries(logged_in, site, django_assert_max_num_queries):
    for i in range(30):
        person(site, f"user:u{i}", f"anonymous:a-{i}")
    # session + user + sites + role + people + identities + count + savepoints
    with django_assert_max_num_queries(12):
        response = logged_in.get(reverse("app:people", args=[site.pk]))
    assert response.content.decode().count('data-testid="person-row"') == 30


def test_a_search_probes_the_matches_once_for_the_page_and_its_count(logged_in, site):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(3):
        person(site, f"user:ann{i}", f"anonymous:a-{i}")
    with CaptureQueriesContext(connection) as queries:
        response = logged_in.get(reverse("app:people", args=[site.pk]), {"q": "ann"})
    assert response.content.decode().count('data-testid="person-row"') == 3
    assert sum("UNION ALL" in q["sql"] for q in queries.captured_queries) == 1


def test_it_ignores_unknown_sorts_and_broken_cursors(logged_in, site):
    person(site, "user:ann")
    url = reverse("app:people", args=[site.pk])
    assert logged_in.get(url, {"sort": "password", "cursor": "%%%"}).status_code == 200
    assert logged_in.get(url, {"q": "an\x00n"}).status_code == 200


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# A time past the year's edge once in UTC, or an offset PostgreSQL refuses (±15:59 at
# most): a tampered link, well formed.
TAMPERED_CURSORS = [
    "f|0001-01-01T00:00:00+14:00|1",
    "f|2024-01-01T00:00:00+23:59|1",
]


@pytest.mark.parametrize("cursor", TAMPERED_CURSORS)
def test_a_tampered_cursor_shows_a_page_rather_than_an_error(logged_in, site, cursor):
    who = person(site, "user:ann")
    event(who)
    for name, args in [("app:people", [site.pk]), ("app:live", [site.pk]), ("app:person-events", [site.pk, who.pk])]:
        response = logged_in.get(reverse(name, args=args), {"cursor": _cursor(cursor)})
        assert response.status_code == 200, (name, response.status_code)


def test_a_page_past_the_end_leads_back_to_the_first(logged_in, site):
    # The people after the last page's cursor were deleted (or the link is old): the
    # empty page says so and links to the first page, keeping the search and sort.
    ann = person(site, "user:ann")
    url = reverse("app:people", args=[site.pk])
    past = Cursor(ann.first_seen - timedelta(days=3650), 1).encode()
    html = logged_in.get(url, {"cursor": past, "sort": "-first_seen"}).content.decode()
    assert "No more people." in html
    first = re.search(r'<a[^>]*href="([^"]*)"[^>]*>← First page</a>', html)
    assert first, html
    assert first.group(1).replace("&amp;", "&") == "?sort=-first_seen"
    html = logged_in.get(url, {"cursor": past, "q": "zed"}).content.decode()
    assert "No one matches “zed”." in html and "?q=zed" in html


@pytest.mark.parametrize("q", ['plan="\\u0000"', 'plan="pro\\ud800"', 'address.city="\\udc00"'])
def test_a_property_search_for_a_value_no_one_can_hold_finds_no_one(logged_in, site, q):
    # The JSON escape spells a NUL or an unpaired surrogate: jsonb holds neither.
    person(site, "user:ann", properties={"plan": "pro", "address": {"city": "Berlin"}})
    response = logged_in.get(reverse("app:people", args=[site.pk]), {"q": q})
    assert response.status_code == 200
    assert 'data-testid="no-match"' in response.content.decode()


def test_it_shows_a_person(logged_in, site):
    who = person(site, "user:ann", "anonymous:a-ann", properties={"name": "Ann Lee", "plan": "pro", "tags": ["a", "b"]})
    session(who, landing_page="https://shop.example/")
    event(who, "product-view", properties={"product": "Shoe"}, context={"page": {"url": "https://shop.example/shoe"}})
    html = logged_in.get(reverse("app:person", args=[site.pk, who.pk])).content.decode()
    for text in ("Ann Lee", "plan", "pro", '[&quot;a&quot;, &quot;b&quot;]', "a-ann", "product-view", "https://shop.example/shoe", "product=Shoe"):
        assert text in html
    assert "Export JSON" not in html  # editors do not manage people


def test_a_person_with_many_properties_shows_the_first_and_folds_the_rest(logged_in, site):
    who = person(site, "user:ann", properties={f"k{i:03}": i for i in range(200)})
    html = logged_in.get(reverse("app:person", args=[site.pk, who.pk])).content.decode()
    shown, folded = html.split('data-testid="more-properties"')
    assert "k014" in shown and "k015" not in shown
    assert "<summary>185 more properties</summary>" in folded
    assert "k015" in folded and "k199" in folded.split("</details>")[0]
    html = logged_in.get(reverse("app:person", args=[site.pk, person(site, "user:bob", properties={f"k{i}": i for i in range(16)}).pk])).content.decode()
    assert "<summary>1 more property</summary>" in html


def test_a_company_trait_named_items_shows_as_a_trait(logged_in, site):
    # Anyone with the public write key can name a company trait; the page must still load.
    who = person(site, "user:ann")
    company(who, "acme", name="Acme", items=5, plan="gold")
    response = logged_in.get(reverse("app:person", args=[site.pk, who.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "items=5" in html and "plan=gold" in html


def test_it_redirects_a_merged_id_to_the_live_person(logged_in, site):
    live, old = person(site, "user:ann"), person(site, "anonymous:a-1")
    merge(old, live)
    response = logged_in.get(reverse("app:person", args=[site.pk, old.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("app:person", args=[site.pk, live.pk])


def test_it_404s_people_of_other_sites_and_unknown_ids(logged_in, site, other_site):
    stranger = person(other_site, "user:x")
    assert logged_in.get(reverse("app:person", args=[site.pk, stranger.pk])).status_code == 404
    assert logged_in.get(reverse("app:person", args=[other_site.pk, stranger.pk])).status_code == 404
    assert logged_in.get(reverse("app:person-events", args=[site.pk, stranger.pk])).status_code == 404
    assert logged_in.get(reverse("app:person", args=[site.pk, 10**12])).status_code == 404
    assert logged_in.get(reverse("app:live-feed", args=[other_site.pk])).status_code == 404


def test_a_deleted_persons_link_leads_back_into_the_app(logged_in, site):
    """An old link (a deleted person, a bookmark) gets a page with the navigation and a way
    back, not Django's bare "Not Found"."""
    response = logged_in.get(reverse("app:person", args=[site.pk, 10**12]))
    assert response.status_code == 404
    html = response.content.decode()
    assert "<title>Not found · Footprint</title>" in html
    assert 'class="mainnav"' in html and f'href="{reverse("app:people", args=[site.pk])}"' in html
    assert "Log out" in html
    response = logged_in.get("/app/no-such-page/")
    assert response.status_code == 404 and f'href="{reverse("app:home")}"' in response.content.decode()


def test_it_pages_the_timeline(logged_in, site):
    who = person(site, "user:t")
    events(who, 60, start=timezone.now() - timedelta(days=2), step=timedelta(minutes=10))
    html = logged_in.get(reverse("app:person", args=[site.pk, who.pk])).content.decode()
    assert html.count('data-testid="timeline-event"') == 50 and "Older events" in html
    cursor = html.split("events/?cursor=")[1].split('"')[0]
    more = logged_in.get(reverse("app:person-events", args=[site.pk, who.pk]), {"cursor": cursor}).content.decode()
    assert more.count('data-testid="timeline-event"') == 10 and "Older events" not in more


def test_it_exports_and_deletes_for_site_admins_only(logged_in, site, marketer):
    who = person(site, "user:gone", properties={"name": "Gone Soon"})
    event(who, "page-view")
    export_url = reverse("app:person-export", args=[site.pk, who.pk])
    delete_url = reverse("app:person-forget", args=[site.pk, who.pk])
    assert logged_in.get(export_url).status_code == 403
    assert logged_in.post(delete_url).status_code == 403

    Membership.objects.filter(user=marketer).update(role=Membership.Role.ADMIN)
    response = logged_in.get(export_url)
    assert response["Content-Disposition"] == f'attachment; filename="person-{who.pk}.json"'
    assert json.loads(response.content)["events"][0]["type"] == "page-view"
    assert logged_in.get(delete_url).status_code == 405
    response = logged_in.post(delete_url, follow=True)
    assert "Gone Soon was deleted with 1 events" in response.content.decode()
    assert not Profile.objects.filter(pk=who.pk).exists()
    assert not Event.objects.filter(profile_id=who.pk).exists()


def test_live_events_filter_by_type_and_page_back_without_updating(logged_in, site):
    who = person(site, "user:liv", properties={"name": "Liv"})
    now = timezone.now()
    for n in range(55):
        event(who, "order-completed" if n == 3 else "page-view", at=now - timedelta(seconds=n), received_at=now - timedelta(seconds=n))
    url = reverse("app:live", args=[site.pk])
    html = logged_in.get(url).content.decode()
    assert html.count('data-testid="live-event"') == 50 and "Older events" in html
    assert "every 3s" in html  # the newest page keeps itself up to date

    older = re.search(r'rel="next" href="\?([^"]+)"', html).group(1).replace("&amp;", "&")
    history = logged_in.get(f"{url}?{older}").content.decode()
    assert history.count('data-testid="live-event"') == 5
    assert 'data-testid="live-history"' in history and "every 3s" not in history

    filtered = logged_in.get(url, {"type": "order"}).content.decode()
    assert filtered.count('data-testid="live-event"') == 1 and "order-completed" in filtered
    assert "type=order" in filtered  # the refresh keeps the filter
    nothing = logged_in.get(url, {"type": "refund"}).content.decode()
    assert "No “refund” events in the last 24 hours." in nothing


def test_the_people_list_has_a_sort_control_outside_its_table_headers(logged_in, site):
    person(site, "user:a", properties={"name": "Ann"})
    html = logged_in.get(reverse("app:people", args=[site.pk]), {"sort": "first_seen", "q": "a"}).content.decode()
    # Column headers are hidden on a phone: the select is how a phone sorts.
    assert '<select id="people-sort" name="sort">' in html
    assert '<option value="first_seen" selected>First seen, oldest first</option>' in html
    assert '<input type="hidden" name="q" value="a">' in html


def test_live_events_name_the_person_a_merged_profile_went_into(logged_in, site):
    old = person(site, "user:old", properties={"name": "Old account"})
    alice = person(site, "user:alice", properties={"name": "Alice"})
    event(old, "bought")
    merge(old, alice, repointed=False)  # a large history moves in the background
    html = logged_in.get(reverse("app:live", args=[site.pk])).content.decode()
    assert "Alice" in html and "Old account" not in html
    assert reverse("app:person", args=[site.pk, alice.pk]) in html


def test_it_shows_live_events_and_marks_the_new_ones(logged_in, site, other_site):
    who = person(site, "user:live", properties={"name": "Liv"})
    first = event(who, "page-view", context={"page": {"url": "https://shop.example/"}})
    event(person(other_site, "user:x"), "elsewhere")
    html = logged_in.get(reverse("app:live", args=[site.pk])).content.decode()
    assert "page-view" in html and "Liv" in html and "elsewhere" not in html
    assert f"?seen={first.id}" in html and "is-new" not in html

    second = event(who, "order-completed")
    feed = logged_in.get(reverse("app:live-feed", args=[site.pk]), {"seen": first.id}).content.decode()
    assert "<html" not in feed and "order-completed" in feed
    assert f'data-event-id="{second.id}" class="is-new"' in feed
    assert f'data-event-id="{first.id}" >' in feed or f'data-event-id="{first.id}">' in feed
