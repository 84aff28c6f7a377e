"""A marketer searches people, opens a person, pages their timeline and watches events
arrive on the Live page, in Chromium."""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import PASSWORD, login
from tests.factories import MembershipFactory, SiteFactory, UserFactory
from tests.people import company, event, person, session, shopper
from tracking.models import Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# FOOTPRINT_SCREENSHOTS=/tmp/shots keeps a picture of every page the tests visit.
SHOTS = os.environ.get("FOOTPRINT_SCREENSHOTS")


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png")


@pytest.fixture
def shop(db):
    site = SiteFactory(name="Shoe shop")
    user = UserFactory(username="mia")
    MembershipFactory(user=user, site=site, role=Membership.Role.ADMIN)
    return site


@pytest.fixture
def ann(shop):
    return shopper(shop, views=70, since=timedelta(days=30), step=timedelta(hours=9))


@pytest.fixture
def crowd(shop):
    now = timezone.now()
    people = []
    for i in range(55):
        identified = i % 3 == 0
        people.append(
            person(
                shop,
                *([f"user:u{i:03}"] if identified else []),
                f"anonymous:a-{i:03}x",
                properties={"email": f"user{i:03}@example.com", "name": f"Person {i:03}"} if identified else {},
                first_seen=now - timedelta(days=60 - i),
                last_seen=now - timedelta(hours=i + 1),
            )
        )
    return people


def test_marketer_searches_people_opens_a_person_and_pages_the_timeline(page, shop, ann, crowd):
    login(page, "mia", PASSWORD)
    expect(page.locator("h1")).to_have_text("People")
    expect(page.get_by_test_id("people-count")).to_have_text("56 people")
    expect(page.get_by_test_id("person-row")).to_have_count(50)
    expect(page.get_by_test_id("person-row").first).to_contain_text("Ann Lee")  # seen most recently
    shot(page, "people")

    # Paging and sorting.
    page.click("a[rel=next]")
    expect(page.get_by_test_id("person-row")).to_have_count(6)
    expect(page).to_have_url(re.compile(r"cursor="))
    page.click("a[rel=prev]")
    expect(page.get_by_test_id("person-row")).to_have_count(50)
    page.click("th >> text=First seen")
    expect(page.get_by_test_id("person-row").first).to_contain_text("Person 054")
    page.click("th >> text=First seen")
    expect(page.get_by_test_id("person-row").first).to_contain_text("Person 000")
    expect(page).to_have_url(re.compile(r"sort=first_seen"))
    expect(page.locator("#people-sort")).to_have_value("first_seen")  # the select follows
    page.select_option("#people-sort", "-last_seen")
    expect(page.get_by_test_id("person-row").first).to_contain_text("Ann Lee")
    expect(page).to_have_url(re.compile(r"sort=-last_seen"))

    # Live search as one types: no Enter, the URL follows.
    page.fill("#people-q", "ann@")
    expect(page.get_by_test_id("person-row")).to_have_count(1)
    expect(page.get_by_test_id("people-count")).to_have_text("1 person matching “ann@”")
    expect(page).to_have_url(re.compile(r"q=ann%40"))
    page.fill("#people-q", "plan=pro")
    expect(page.get_by_test_id("person-row")).to_have_count(1)
    page.fill("#people-q", "a-01")
    expect(page.get_by_test_id("person-row")).to_have_count(10)
    page.fill("#people-q", "nobody-here")
    expect(page.get_by_test_id("no-match")).to_contain_text("No one matches “nobody-here”.")
    page.fill("#people-q", "ANN-4")
    expect(page.get_by_test_id("person-row")).to_have_count(1)
    shot(page, "people-search")

    page.click("text=Ann Lee")
    expect(page.locator("h1")).to_contain_text("Ann Lee")
    expect(page.get_by_test_id("properties")).to_contain_text("Berlin")
    expect(page.get_by_test_id("identities")).to_contain_text("a-7Hq2kLm9")
    expect(page.get_by_test_id("companies")).to_contain_text("Acme Inc")
    expect(page.get_by_test_id("sessions")).to_contain_text("12 events")
    expect(page.get_by_test_id("event-count")).to_have_text("71 events")
    timeline = page.get_by_test_id("timeline-event")
    expect(timeline).to_have_count(50)
    expect(timeline.first).to_contain_text("order-completed")
    expect(timeline.first).to_contain_text("https://shoes.example/checkout/done")
    timeline.first.locator("summary").click()
    expect(timeline.first.locator("pre").first).to_contain_text('"currency": "EUR"')
    shot(page, "person")

    page.click("text=Older events")
    expect(timeline).to_have_count(71)
    expect(page.locator("text=Older events")).to_have_count(0)
    expect(timeline.last).to_contain_text("product-view")
    timeline.nth(49).scroll_into_view_if_needed()
    shot(page, "person-older")

    page.click("nav.breadcrumb >> text=People")
    expect(page.locator("h1")).to_have_text("People")


def test_admin_exports_and_deletes_a_person(page, shop, ann):
    login(page, "mia", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/{ann.pk}/")
    with page.expect_download() as download:
        page.click("text=Export JSON")
    assert download.value.suggested_filename == f"person-{ann.pk}.json"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Delete person")
    expect(page.locator(".flash")).to_contain_text("Ann Lee was deleted with 71 events")
    expect(page.get_by_test_id("empty-people")).to_be_visible()


def test_live_events_arrive_on_their_own(page, shop, ann):
    login(page, "mia", PASSWORD)
    page.click("nav.mainnav >> text=Live")
    expect(page.locator("h1")).to_have_text("Live events")
    rows = page.get_by_test_id("live-event")
    expect(rows.first).to_contain_text("order-completed")
    expect(rows.first).to_contain_text("Ann Lee")
    shot(page, "live")

    newcomer = person(shop, "anonymous:a-new", properties={"name": "Newcomer"})
    arrival = event(newcomer, "product-added", properties={"product": "Red shoe"},
                    context={"page": {"url": "https://shoes.example/p/red"}})
    expect(page.locator(f'[data-event-id="{arrival.id}"]')).to_contain_text("product-added", timeout=12_000)
    expect(rows.first).to_contain_text("Newcomer")
    expect(rows.first).to_have_class(re.compile("is-new"))
    shot(page, "live-updated")

    # Paused, the list stands still; resumed, it catches up.
    page.check("#live-pause")
    page.wait_for_timeout(500)
    paused = event(newcomer, "cart-viewed")
    page.wait_for_timeout(4_000)
    expect(page.locator(f'[data-event-id="{paused.id}"]')).to_have_count(0)
    page.uncheck("#live-pause")
    expect(page.locator(f'[data-event-id="{paused.id}"]')).to_have_count(1, timeout=12_000)

    page.click(f'[data-event-id="{arrival.id}"] >> text=Newcomer')
    expect(page.locator("h1")).to_contain_text("Newcomer")


def test_empty_live_page_points_to_settings(page, shop):
    login(page, "mia", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/live/")
    expect(page.get_by_test_id("empty-live")).to_contain_text("No events in the last 24 hours.")
    shot(page, "live-empty")
    page.click("text=Get the tracker snippet in Settings")
    expect(page.locator("h1")).to_contain_text("Settings")


def test_people_pages_work_on_a_phone(browser, live_server, shop, ann, crowd):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, "mia", PASSWORD)
    for name, path in [
        ("phone-people", f"/app/s/{shop.pk}/people/"),
        ("phone-person", f"/app/s/{shop.pk}/people/{ann.pk}/"),
        ("phone-live", f"/app/s/{shop.pk}/live/"),
    ]:
        page.goto(path)
        page.wait_for_load_state("networkidle")
        shot(page, name)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
    page.goto(f"/app/s/{shop.pk}/people/")
    # The column headers (their sort links) are clipped away on a phone; this is not.
    page.select_option("#people-sort", "first_seen")
    expect(page.get_by_test_id("person-row").first).to_contain_text("Person 000")
    shot(page, "phone-people-sorted")
    page.fill("#people-q", "ann")
    expect(page.get_by_test_id("person-row")).to_have_count(1)
    expect(page.get_by_test_id("person-row")).to_contain_text("Ann Lee")
    expect(page).to_have_url(re.compile(r"q=ann.*sort=first_seen|sort=first_seen.*q=ann"))  # the search kept the sort
    context.close()


def test_marketer_filters_live_events_and_pages_back_through_older_ones(page, shop, ann):
    now = timezone.now()
    for n in range(60):
        event(ann, "page-view", at=now - timedelta(seconds=n), received_at=now - timedelta(seconds=n))
    login(page, "mia", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/live/")
    rows = page.get_by_test_id("live-event")
    expect(rows).to_have_count(50)

    page.fill("#live-type", "order")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("order-completed")
    expect(page).to_have_url(re.compile(r"type=order"))
    shot(page, "live-filtered")
    page.fill("#live-type", "")
    expect(rows).to_have_count(50)

    page.click("a[rel=next]")
    expect(page.get_by_test_id("live-history")).to_be_visible()
    expect(rows).to_have_count(11)  # 61 events in the last 24 hours
    expect(page).to_have_url(re.compile(r"cursor="))
    shot(page, "live-older")
    page.click("text=Back to the newest")
    expect(page.get_by_test_id("live-history")).to_have_count(0)
    expect(rows.first).to_contain_text("page-view")


def _no_sideways_scroll(page, what: str) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"{what} scrolls sideways ({width}px in a {viewport}px window)"


@pytest.fixture
def awkward(shop):
    """A person whose data is as long as people make it: an unbroken name, a company with
    long values, very long event types, a long landing page, RTL text."""
    now = timezone.now()
    who = person(
        shop,
        "user:" + "k" * 60,
        "anonymous:" + "z" * 120,
        properties={"name": "Maximilian" * 9, "email": "a.very.long.address.that.goes.on@sub.example-company.com",
                    "title": "عنوان الصفحة " * 8, "a_long_key_with_no_spaces_" * 4: "x" * 300},
        last_seen=now,
    )
    company(who, "c" * 80, name="Company" + "Ł" * 60, industry="x" * 200)
    session(who, started_at=now - timedelta(hours=1), landing_page="https://shoes.example/" + "path/" * 60)
    event(who, "custom-event-with-a-really-long-type-name-" + "t" * 60, at=now,
          context={"page": {"url": "https://shoes.example/" + "segment-" * 50}})
    return who


@pytest.mark.parametrize("width", [1280, 390])
def test_long_names_and_values_stay_on_screen(browser, live_server, shop, awkward, crowd, width):
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, "mia", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/")
    expect(page.get_by_test_id("person-row").first).to_contain_text("Maximilian")
    shot(page, f"awkward-people-{width}")
    _no_sideways_scroll(page, "the People list")
    # Names are there to read, not cut off at the edge of the table; so are emails on a
    # phone (a desktop shortens them with an ellipsis).
    clipped = page.evaluate("""() => [...document.querySelectorAll('[data-testid=person-row] td')]
        .filter(td => td.scrollWidth > td.clientWidth + 1
                      && !(innerWidth > 800 && td.classList.contains('nowrap-ellipsis')))
        .map(td => td.dataset.label + ': ' + td.textContent.trim().slice(0, 30))""")
    assert clipped == [], f"cut off: {clipped}"
    if width > 800:  # the ids column is not squeezed to a letter per line by a long name
        id_width = page.evaluate("document.querySelector('table.people th:nth-child(3)').getBoundingClientRect().width")
        assert id_width >= 150, f"the ids column is {id_width}px wide"

    page.fill("#people-q", "no-such-" + "q" * 90)
    expect(page.get_by_test_id("no-match")).to_be_visible()
    shot(page, f"awkward-no-match-{width}")
    _no_sideways_scroll(page, "the no-match message")

    page.goto(f"/app/s/{shop.pk}/people/{awkward.pk}/")
    expect(page.get_by_test_id("companies")).to_contain_text("Company")
    shot(page, f"awkward-person-{width}")
    _no_sideways_scroll(page, "the Person page")

    page.goto(f"/app/s/{shop.pk}/live/?type=no-such-" + "q" * 90)
    expect(page.get_by_test_id("no-match")).to_be_visible()
    _no_sideways_scroll(page, "the Live page's no-match message")
    context.close()


def test_a_person_with_hundreds_of_properties_keeps_their_events_near_on_a_phone(browser, live_server, shop):
    many = person(shop, "user:many", properties={f"trait_{i:03}": f"value {i}" for i in range(200)})
    event(many, "order-completed")
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(15_000)
    login(page, "mia", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/{many.pk}/")
    timeline = page.get_by_role("heading", name="Events")
    assert timeline.bounding_box()["y"] < 3 * 844, "the events are screens away below the properties"
    expect(page.get_by_text("value 199")).to_be_hidden()
    page.get_by_text("185 more properties").click()
    expect(page.get_by_text("value 199")).to_be_visible()
    shot(page, "phone-person-many-properties")
    context.close()
