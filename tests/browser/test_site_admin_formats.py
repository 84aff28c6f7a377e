"""An admin edits a site's Raptor mapping as rows and reads how to call each format."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from tests.conftest import login
from tests.factories import SiteFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("FOOTPRINT_SCREENSHOTS")  # a directory: save screenshots there


def test_admin_maps_raptor_parameters_and_reads_the_calls(page):
    UserFactory(username="boss", is_staff=True, is_superuser=True)
    site = SiteFactory(name="Shoe shop")
    key = site.primary_write_key().key
    login(page, "boss", path="/admin/login/")
    page.goto(f"/admin/tracking/site/{site.pk}/change/")

    page.get_by_text("How to call each format").click()
    panel = page.locator(".format-examples")
    expect(panel.locator("h3")).to_have_text(["Segment HTTP API", "Tracardi", "Tracktor.io", "Raptor"])
    expect(panel.locator("[data-format=raptor] pre")).to_contain_text(f"/t/{key}.rsa?p1=itemclick")

    page.get_by_text("Integrations").click()
    mapping = page.locator("table.raptor-mapping")
    expect(mapping.locator("input[name=raptor_mapping-param]").first).to_have_value("p1")
    blank = mapping.locator("tbody tr").nth(2)
    blank.locator("input[name=raptor_mapping-param]").fill("p2")
    blank.locator("input[name=raptor_mapping-field]").fill("product_id")
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, "site-admin-formats.png"), full_page=True)
    page.click("input[name=_continue]")

    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    site.refresh_from_db()
    assert site.raptor_mapping == {"p1": "event_type", "p2": "product_id", "p7": "user_id"}
    page.get_by_text("How to call each format").click()
    expect(page.locator(".format-examples [data-format=raptor] pre")).to_contain_text("p1=itemclick&p2=12345")
