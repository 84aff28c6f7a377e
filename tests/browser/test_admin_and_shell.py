"""Admins and marketers clicking through the admin and the UI shell in Chromium."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD, login
from tests.factories import MembershipFactory, SiteFactory, UserFactory
from tracking.models import Membership, Site

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_creates_a_site_issues_a_write_key_and_sees_the_snippet(page):
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    login(page, "boss", path="/admin/login/")
    page.goto("/admin/tracking/site/add/")
    page.fill("#id_name", "Browser shop")
    page.click("input[name=_continue]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    site = Site.objects.get(name="Browser shop")
    first_key = site.primary_write_key().key
    expect(page.locator("pre.footprint-snippet")).to_contain_text(first_key)

    page.click("text=Issue write key")
    expect(page.locator(".messagelist")).to_contain_text("New write key issued")
    new_key = site.write_keys.order_by("-created_at").first().key
    assert new_key != first_key
    expect(page.locator("pre.footprint-snippet")).to_contain_text(new_key)
    expect(page.locator("pre.footprint-snippet")).to_contain_text("footprint.js")

    page.click("text=Issue secret key")
    expect(page.locator("#secret-key")).to_have_text(re.compile(r"^sk_[0-9a-f]{8}_"))
    expect(page.get_by_text("will not be shown again")).to_be_visible()


def test_marketer_switches_sites_and_cannot_open_another_sites_pages(page):
    shop, blog, secret = SiteFactory(name="Shop"), SiteFactory(name="Blog"), SiteFactory(name="Secret")
    user = UserFactory(username="mia")
    MembershipFactory(user=user, site=shop, role=Membership.Role.ADMIN)
    MembershipFactory(user=user, site=blog, role=Membership.Role.VIEWER)

    login(page, "mia", PASSWORD)
    expect(page.locator("h1")).to_have_text("People")
    expect(page.locator("#site-switcher option")).to_have_count(2)
    expect(page.get_by_test_id("empty-people")).to_contain_text("No one has been tracked")

    # Sites are listed by name, so Blog (viewer) comes first.
    expect(page.locator("#site-switcher")).to_have_value(str(blog.pk))
    page.click("nav.mainnav >> text=Settings")
    expect(page.locator("#snippet")).to_contain_text(blog.primary_write_key().key)
    expect(page.get_by_text("Only site admins can change these.")).to_be_visible()
    page.select_option("#site-switcher", str(shop.pk))
    page.wait_for_url(f"**/app/s/{shop.pk}/settings/")
    expect(page.locator("#snippet")).to_contain_text(shop.primary_write_key().key)
    expect(page.locator("button", has_text="Save settings")).to_be_visible()

    # From the keyboard: the arrows step through the sites without leaving the page, and
    # Enter goes (an arrow key used to open the next site at once).
    page.focus("#site-switcher")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#site-switcher")).to_have_value(str(blog.pk))
    page.wait_for_timeout(300)
    assert page.url.endswith(f"/app/s/{shop.pk}/settings/")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/app/s/{blog.pk}/settings/")

    response = page.goto(f"/app/s/{secret.pk}/people/")
    assert response.status == 404
    response = page.goto(f"/app/s/{secret.pk}/settings/")
    assert response.status == 404

    page.goto(f"/app/s/{shop.pk}/settings/")
    page.fill("#id_session_timeout_minutes", "45")
    page.click("text=Save settings")
    expect(page.locator(".flash")).to_have_text("Settings saved.")
    shop.refresh_from_db()
    assert shop.session_timeout_minutes == 45

    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Log in to Footprint")


def test_shell_works_on_a_phone(browser, live_server):
    site = SiteFactory(name="Phone shop")
    user = UserFactory(username="pho")
    MembershipFactory(user=user, site=site)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, "pho")
    expect(page.locator("nav.mainnav")).to_be_hidden()
    page.click("#nav-toggle")
    expect(page.locator("nav.mainnav")).to_be_visible()
    page.click("nav.mainnav >> text=Segments")
    expect(page.locator("h1")).to_have_text("Segments")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"page scrolls sideways on a phone ({width}px)"
    context.close()


def test_menu_opens_from_the_keyboard_on_a_narrow_screen(browser, live_server):
    site = SiteFactory(name="Phone shop")
    MembershipFactory(user=UserFactory(username="kim"), site=site)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    login(page, "kim")
    expect(page.locator("nav.mainnav")).to_be_hidden()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(6):  # the brand, the site switcher, then the menu button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "nav-toggle":
            break
    assert page.evaluate("document.activeElement.id") == "nav-toggle", "Tab never reaches the menu button"
    page.keyboard.press("Space")
    expect(page.locator("nav.mainnav")).to_be_visible()
    page.keyboard.press("Tab")
    expect(page.locator("nav.mainnav a").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("People")
    context.close()
