"""A site admin configures the tracker on the Settings page: auto-event rules and
do-not-track, with clear errors for bad patterns and selectors."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import login
from tests.factories import MembershipFactory, SiteFactory, UserFactory
from tracking.models import Membership

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def rows(page):
    return page.locator("#rules-body tr.rule-row:visible")


def test_an_admin_adds_edits_and_removes_auto_event_rules(page):
    site = SiteFactory(name="Rules shop", auto_event_rules=[{"kind": "page", "match": "/old/*", "event": "Old Page"}])
    MembershipFactory(user=UserFactory(username="ria"), site=site, role=Membership.Role.ADMIN)
    login(page, "ria")
    page.goto(f"/app/s/{site.pk}/settings/")
    expect(page.get_by_role("heading", name="Auto events")).to_be_visible()
    expect(rows(page)).to_have_count(1)
    expect(rows(page).nth(0).locator("input[name$='-match']")).to_have_value("/old/*")

    # Remove the old rule, add a page rule and a click rule.
    rows(page).nth(0).get_by_role("button", name="Remove").click()
    expect(rows(page)).to_have_count(0)
    expect(page.locator("#rules-empty")).to_be_visible()
    page.click("#add-rule")
    row = rows(page).nth(0)
    expect(row.locator("input[name$='-match']")).to_be_focused()
    row.locator("input[name$='-match']").fill("/pricing*")
    row.locator("input[name$='-event']").fill("Pricing Viewed")
    page.click("#add-rule")
    row = rows(page).nth(1)
    row.locator("select[name$='-kind']").select_option("click")
    expect(row.locator("input[name$='-match']")).to_have_attribute("placeholder", "button.buy")

    # The browser itself refuses a selector it cannot read, before anything is sent.
    row.locator("input[name$='-match']").fill("button..buy")
    expect(row.locator(".selector-error")).to_contain_text("cannot read")
    row.locator("input[name$='-match']").fill("button.buy, a[href*='/checkout']")
    expect(row.locator(".selector-error")).to_be_hidden()
    row.locator("input[name$='-event']").fill("Buy Clicked")
    page.check("#id_respect_do_not_track")
    page.click("text=Save settings")
    expect(page.locator(".flash")).to_have_text("Settings saved.")

    site.refresh_from_db()
    assert site.auto_event_rules == [
        {"kind": "page", "match": "/pricing*", "event": "Pricing Viewed"},
        {"kind": "click", "match": "button.buy, a[href*='/checkout']", "event": "Buy Clicked"},
    ]
    assert site.respect_do_not_track is True
    expect(rows(page)).to_have_count(2)


def test_bad_rules_are_refused_with_the_reason_next_to_the_field(page):
    site = SiteFactory(name="Strict shop")
    MembershipFactory(user=UserFactory(username="sam"), site=site, role=Membership.Role.ADMIN)
    login(page, "sam")
    page.goto(f"/app/s/{site.pk}/settings/")
    page.click("#add-rule")
    rows(page).nth(0).locator("input[name$='-match']").fill("pricing page")
    rows(page).nth(0).locator("input[name$='-event']").fill("Pricing Viewed")
    page.click("#add-rule")
    rows(page).nth(1).locator("select[name$='-kind']").select_option("click")
    rows(page).nth(1).locator("input[name$='-match']").fill("button.buy")  # but no event name
    page.click("text=Save settings")

    expect(rows(page).nth(0).locator("td", has=page.locator("input[name$='-match']"))).to_contain_text(
        "A URL pattern cannot contain spaces."
    )
    expect(rows(page).nth(1).locator("td", has=page.locator("input[name$='-event']"))).to_contain_text(
        "This field is required."
    )
    expect(page.locator(".flash")).to_have_count(0)
    site.refresh_from_db()
    assert site.auto_event_rules == []

    rows(page).nth(0).locator("input[name$='-match']").fill("/pricing*")
    rows(page).nth(1).locator("input[name$='-event']").fill("Buy Clicked")
    page.click("text=Save settings")
    expect(page.locator(".flash")).to_have_text("Settings saved.")
    site.refresh_from_db()
    assert [r["event"] for r in site.auto_event_rules] == ["Pricing Viewed", "Buy Clicked"]


def test_viewers_see_the_rules_but_cannot_change_them(page):
    site = SiteFactory(name="Read-only shop", auto_event_rules=[{"kind": "click", "match": "a.buy", "event": "Buy"}])
    MembershipFactory(user=UserFactory(username="vic"), site=site, role=Membership.Role.VIEWER)
    login(page, "vic")
    page.goto(f"/app/s/{site.pk}/settings/")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).nth(0).locator("input[name$='-match']")).to_be_disabled()
    expect(page.locator("#add-rule")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)


def test_the_settings_page_shows_the_drop_in_tags(page):
    site = SiteFactory(name="Moving shop")
    MembershipFactory(user=UserFactory(username="mo"), site=site, role=Membership.Role.ADMIN)
    login(page, "mo")
    page.goto(f"/app/s/{site.pk}/settings/")
    page.click("text=Moving from Carma or Tracktor.io?")
    key = site.primary_write_key().key
    expect(page.locator("#snippet-carma")).to_contain_text(f'data-token="{key}"')
    expect(page.locator("#snippet-carma")).to_contain_text('id="carma-tracking"')
    expect(page.locator(".drop-ins")).to_contain_text("/tracker/")


def test_the_rules_editor_works_on_a_phone(browser, live_server):
    site = SiteFactory(name="Phone rules", auto_event_rules=[{"kind": "page", "match": "/a*", "event": "A"}])
    MembershipFactory(user=UserFactory(username="phil"), site=site, role=Membership.Role.ADMIN)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, "phil")
    page.goto(f"/app/s/{site.pk}/settings/")
    page.click("#add-rule")
    expect(rows(page)).to_have_count(2)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the Settings page scrolls sideways on a phone ({width}px)"
    context.close()
