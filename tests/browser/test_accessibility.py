"""Every page a marketer or an admin uses, checked with axe-core in Chromium at a
desktop's and a phone's width, and the controls that matter worked by keyboard alone.

axe runs WCAG 2.0/2.1/2.2 A and AA rules; a violation of impact "serious" or "critical"
fails the test. FOOTPRINT_A11Y_REPORT=/path.jsonl also writes every violation (any
impact, and axe's best-practice rules) there, one JSON line a page, for an audit;
FOOTPRINT_SCREENSHOTS=/dir keeps a picture of each page checked.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import PASSWORD, login
from tests.factories import MembershipFactory, SiteFactory, UserFactory
from tests.people import event, person, shopper
from tracking.models import InboxBatch, Membership, Site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FAILING = {"serious", "critical"}
REPORT = os.environ.get("FOOTPRINT_A11Y_REPORT")
SHOTS = os.environ.get("FOOTPRINT_SCREENSHOTS")
WIDTHS = [1280, 390]


def axe(page, where: str) -> list[dict]:
    """axe's violations on the page as it is now (after any htmx swaps)."""
    assert AXE.exists(), f"{AXE} is missing: run npm ci (axe-core is a devDependency)"
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    tags = WCAG + ["best-practice"] if REPORT else WCAG
    violations = page.evaluate(
        """async (tags) => (await axe.run(document, {
            runOnly: {type: 'tag', values: tags}, resultTypes: ['violations'],
        })).violations.map(v => ({
            id: v.id, impact: v.impact, tags: v.tags, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary})),
        }))""",
        tags,
    )
    if REPORT:
        with open(REPORT, "a") as report:
            report.write(json.dumps({"page": where, "violations": violations}) + "\n")
    return [v for v in violations if v["impact"] in FAILING and set(v["tags"]) & set(WCAG)]


def assert_accessible(page, where: str) -> None:
    page.wait_for_load_state("networkidle")
    shot(page, where)
    failing = axe(page, where)
    assert failing == [], f"{where}: " + "; ".join(
        f"{v['id']} ({v['impact']}, {len(v['nodes'])}x: {', '.join(n['target'] for n in v['nodes'][:4])}) {v['help']}"
        for v in failing
    )


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=f"{SHOTS}/{name}.png", full_page=True)


@pytest.fixture
def shop(db):
    site = SiteFactory(name="Shoe shop")
    SiteFactory(name="Blog")  # another site for the switcher
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    MembershipFactory(user=boss, site=site, role=Membership.Role.ADMIN)
    return site


@pytest.fixture
def ann(shop):
    now = timezone.now()
    ann = shopper(shop, views=60, since=timedelta(hours=20), step=timedelta(minutes=15))
    for i in range(54):
        person(shop, *([f"user:u{i:03}"] if i % 3 == 0 else []), f"anonymous:a-{i:03}x",
               properties={"email": f"user{i:03}@example.com"} if i % 3 == 0 else {},
               last_seen=now - timedelta(hours=i + 1))
    return ann


def new_page(browser, live_server, width: int):
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.mark.parametrize("width", WIDTHS)
def test_login_and_not_found_pages(browser, live_server, shop, width):
    page = new_page(browser, live_server, width)
    page.goto("/app/login/")
    assert_accessible(page, f"login@{width}")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_be_visible()
    assert_accessible(page, f"login-error@{width}")
    login(page, "boss", PASSWORD)
    page.goto("/app/s/999999/people/")
    expect(page.get_by_test_id("not-found")).to_be_visible()
    assert_accessible(page, f"404@{width}")
    page.goto(f"/app/s/{shop.pk}/segments/")
    assert_accessible(page, f"segments@{width}")
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_people_pages(browser, live_server, shop, ann, width):
    page = new_page(browser, live_server, width)
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/")
    assert_accessible(page, f"people@{width}")
    if width < 800:
        page.click("#nav-toggle")
        expect(page.locator("nav.mainnav")).to_be_visible()
        assert_accessible(page, f"menu-open@{width}")
        page.click("#nav-toggle")
    page.click("a[rel=next]")
    expect(page.get_by_test_id("person-row")).to_have_count(5)
    assert_accessible(page, f"people-page2@{width}")
    page.select_option("#people-sort", "first_seen")
    expect(page).to_have_url(re.compile(r"sort=first_seen"))
    page.fill("#people-q", "ann@")
    expect(page.get_by_test_id("person-row")).to_have_count(1)
    assert_accessible(page, f"people-search@{width}")
    page.fill("#people-q", "nobody-here")
    expect(page.get_by_test_id("no-match")).to_be_visible()
    assert_accessible(page, f"people-no-match@{width}")

    page.goto(f"/app/s/{shop.pk}/people/{ann.pk}/")
    timeline = page.get_by_test_id("timeline-event")
    timeline.first.locator("summary").click()
    assert_accessible(page, f"person@{width}")
    page.click("text=Older events")
    expect(timeline).to_have_count(61)
    assert_accessible(page, f"person-older@{width}")
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_live_page(browser, live_server, shop, ann, width):
    page = new_page(browser, live_server, width)
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/live/")
    rows = page.get_by_test_id("live-event")
    expect(rows.first).to_contain_text("order-completed")
    assert_accessible(page, f"live@{width}")
    arrival = event(ann, "product-added", properties={"product": "Red shoe"})
    expect(page.locator(f'[data-event-id="{arrival.id}"]')).to_be_visible(timeout=12_000)
    assert_accessible(page, f"live-updated@{width}")
    page.fill("#live-type", "order")
    expect(rows).to_have_count(1)
    assert_accessible(page, f"live-filtered@{width}")
    page.fill("#live-type", "")
    page.click("a[rel=next]")
    expect(page.get_by_test_id("live-history")).to_be_visible()
    assert_accessible(page, f"live-older@{width}")
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_settings_page(browser, live_server, shop, width):
    page = new_page(browser, live_server, width)
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/settings/")
    page.click("#add-rule")
    page.locator("details.drop-ins summary").click()
    assert_accessible(page, f"settings@{width}")
    page.goto(f"/app/s/{shop.pk}/live/")
    expect(page.get_by_test_id("empty-live")).to_be_visible()
    assert_accessible(page, f"live-empty@{width}")
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_settings_read_only_with_a_key_warning_and_the_no_sites_page(browser, live_server, shop, width):
    shop.write_keys.update(expires_at=timezone.now() + timedelta(hours=3))
    viewer = UserFactory(username="vic")
    MembershipFactory(user=viewer, site=shop, role=Membership.Role.VIEWER)
    page = new_page(browser, live_server, width)
    login(page, "vic", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/settings/")
    expect(page.get_by_text("expires within 24 hours")).to_be_visible()
    expect(page.locator("#id_name")).to_be_disabled()
    assert_accessible(page, f"settings-read-only@{width}")
    page.context.close()

    UserFactory(username="newbie")
    page = new_page(browser, live_server, width)
    login(page, "newbie", PASSWORD)
    page.goto("/app/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert_accessible(page, f"no-sites@{width}")
    page.context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_admin_pages(browser, live_server, shop, width):
    InboxBatch.objects.create(site=shop, received_at=timezone.now(), actor="write key x", message_count=3,
                              messages="[]", attempts=3, last_error="boom", failed_at=timezone.now())
    page = new_page(browser, live_server, width)
    login(page, "boss", PASSWORD, path="/admin/login/")
    assert_accessible(page, f"admin-index@{width}")
    page.goto("/admin/tracking/site/")
    assert_accessible(page, f"admin-sites@{width}")
    page.goto(f"/admin/tracking/site/{shop.pk}/change/")
    page.get_by_text("How to call each format").click()
    page.get_by_text("Integrations").click()
    assert_accessible(page, f"admin-site@{width}")
    page.click("text=Issue write key")
    expect(page.locator(".messagelist")).to_contain_text("New write key issued")
    assert_accessible(page, f"admin-site-key-issued@{width}")
    page.click("text=Issue secret key")
    assert_accessible(page, f"admin-secret-key@{width}")
    page.goto("/admin/tracking/writekey/")
    assert_accessible(page, f"admin-writekeys@{width}")
    page.click("table#result_list tbody a >> nth=0")
    assert_accessible(page, f"admin-writekey@{width}")
    page.goto("/admin/tracking/inboxbatch/")
    assert_accessible(page, f"admin-inbox@{width}")
    page.click("table#result_list tbody a >> nth=0")
    assert_accessible(page, f"admin-inbox-batch@{width}")
    page.context.close()


# Keyboard only: Tab, Shift+Tab, Enter, Space, Escape and the arrows, no clicks.

def focused(page) -> str:
    """What has the focus, as id, test id or tag and text."""
    return page.evaluate("""() => { const e = document.activeElement;
        return e.id ? '#' + e.id : (e.dataset.testid || e.tagName.toLowerCase() + ':' + e.textContent.trim().slice(0, 30)); }""")


def tab_to(page, selector: str, limit: int = 120, key: str = "Tab") -> None:
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reaches {selector} (stuck at {focused(page)})")


def settled(page) -> None:
    """Wait until htmx has swapped and settled every request: a key pressed before that
    lands on content about to be replaced (a person is slower than the test)."""
    expect(page.locator(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")).to_have_count(0)


def focus_ring(page) -> str | None:
    """The focused element's outline or box shadow, None when it shows no focus."""
    return page.evaluate("""() => { const s = getComputedStyle(document.activeElement);
        if (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) return 'outline ' + s.outlineStyle + ' ' + s.outlineWidth;
        return s.boxShadow !== 'none' ? 'shadow ' + s.boxShadow : null; }""")


def test_skip_link_and_a_visible_focus_on_every_tab_stop(page, shop, ann):
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/{ann.pk}/")
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    box = skip.bounding_box()
    assert box and box["y"] >= 0 and box["height"] > 10, f"the skip link is off screen when focused: {box}"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # the first stop after the skip link is in the page, not the top bar
    expect(page.locator("nav.breadcrumb a")).to_be_focused()

    page.reload()  # Tab from the top again
    page.evaluate("document.activeElement.blur()")
    seen = []
    for _ in range(150):
        page.keyboard.press("Tab")
        where = focused(page)
        if where in seen[:1] or page.evaluate("document.activeElement === document.body"):
            break
        seen.append(where)
        assert focus_ring(page), f"no visible focus on {where}"
    assert "#site-switcher" in seen and len(seen) > 20, seen  # it went round the whole page


def test_menu_opens_with_enter_and_closes_with_escape_on_a_phone(browser, live_server, shop):
    page = new_page(browser, live_server, 390)
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/")
    nav = page.locator("nav.mainnav")
    expect(nav).to_be_hidden()
    page.evaluate("document.activeElement.blur()")
    tab_to(page, "#nav-toggle", limit=6)
    toggle = page.locator("#nav-toggle")
    expect(toggle).to_have_attribute("aria-expanded", "false")
    assert focus_ring(page)
    page.keyboard.press("Enter")
    expect(nav).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    expect(nav.locator("a").first).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(nav).to_be_hidden()
    expect(toggle).to_be_focused()
    page.keyboard.press("Space")
    expect(nav).to_be_visible()
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Live events")
    page.context.close()


def test_site_switcher_search_sort_and_paging_by_keyboard(page, shop, ann):
    blog = Site.objects.get(name="Blog")  # boss is a superuser: the switcher lists every site
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/")
    rows = page.get_by_test_id("person-row")
    expect(rows).to_have_count(50)
    page.evaluate("document.activeElement.blur()")

    # Search: typed, no Enter; the focus stays in the box as the results change.
    tab_to(page, "#people-q")
    page.keyboard.type("ann@")
    expect(rows).to_have_count(1)
    expect(page.locator("#people-q")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    expect(rows).to_have_count(50)

    # Sort by a column header's link: the focus stays on it.
    settled(page)
    tab_to(page, "th a.sort")
    sort = page.locator("th a.sort").first
    page.keyboard.press("Enter")
    expect(sort).to_have_text("First seen ↓")  # the table was swapped (htmx pushes the URL before)
    expect(page).to_have_url(re.compile(r"sort=-first_seen"))
    expect(sort).to_be_focused()
    settled(page)
    page.keyboard.press("Enter")
    expect(sort).to_have_text("First seen ↑")
    expect(page).to_have_url(re.compile(r"sort=first_seen"))
    expect(sort).to_be_focused()

    # Paging: Enter on Next keeps the focus on the pager, not back at the top of the page.
    settled(page)
    tab_to(page, "a[rel=next]")
    page.keyboard.press("Enter")
    expect(rows).to_have_count(5)
    expect(page.locator("nav.pager :focus")).to_have_count(1)  # not back at the top of the page
    settled(page)
    tab_to(page, "a[rel=prev]", key="Shift+Tab", limit=3)
    page.keyboard.press("Enter")
    expect(rows).to_have_count(50)
    expect(page.locator("nav.pager :focus")).to_have_count(1)  # not back at the top of the page

    # The site switcher: arrows choose, Enter goes.
    page.reload()
    expect(page.locator("#people-q")).to_be_focused()  # autofocus
    tab_to(page, "#site-switcher", key="Shift+Tab", limit=15)
    page.keyboard.press("ArrowUp")  # "Blog" is listed before "Shoe shop"
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/app/s/{blog.pk}/people/")


def test_timeline_paging_by_keyboard_goes_on_to_the_older_events(page, shop, ann):
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/people/{ann.pk}/")
    timeline = page.get_by_test_id("timeline-event")
    expect(timeline).to_have_count(50)
    page.locator(".timeline .more button").focus()
    page.keyboard.press("Enter")
    expect(timeline).to_have_count(61)
    # The focus is on the first of the events just loaded, not lost with the button.
    expect(timeline.nth(50).locator("summary")).to_be_focused()
    page.keyboard.press("Enter")
    expect(timeline.nth(50).locator("details")).to_have_attribute("open", "")


def test_live_page_by_keyboard_keeps_focus_across_updates_and_announces_arrivals(page, shop, ann):
    login(page, "boss", PASSWORD)
    page.goto(f"/app/s/{shop.pk}/live/")
    rows = page.get_by_test_id("live-event")
    expect(rows.first).to_contain_text("order-completed")
    announcer = page.get_by_role("status")
    expect(announcer).to_have_attribute("aria-live", "polite")

    # Reading the rows with Tab: an update every few seconds does not take the focus away.
    first = rows.first.get_attribute("data-event-id")
    link = page.locator(f'[data-event-id="{first}"] a')
    page.evaluate("document.activeElement.blur()")
    tab_to(page, f'[data-event-id="{first}"] a')
    arrival = event(ann, "product-added", properties={"product": "Red shoe"})
    expect(page.locator(f'[data-event-id="{arrival.id}"]')).to_be_visible(timeout=12_000)
    expect(announcer).to_have_text("1 new event: product-added")
    expect(link).to_be_focused()

    # Pause and resume with Space on the checkbox.
    tab_to(page, "#live-pause", key="Shift+Tab")
    page.keyboard.press("Space")
    expect(page.locator("#live-pause")).to_be_checked()
    paused = event(ann, "cart-viewed")
    page.wait_for_timeout(4_000)
    expect(page.locator(f'[data-event-id="{paused.id}"]')).to_have_count(0)
    page.keyboard.press("Space")
    expect(page.locator(f'[data-event-id="{paused.id}"]')).to_have_count(1, timeout=12_000)
    expect(announcer).to_have_text("1 new event: cart-viewed")
