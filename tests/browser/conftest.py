import pytest

from tests.browser.tracker_site import Shop
from tests.factories import SiteFactory


@pytest.fixture
def shop(live_server, page):
    """A test shop page on its own origin, tracked into a fresh site (the People page
    tests define their own ``shop``: a site with a marketer)."""
    return Shop(live_server, SiteFactory(name="Tracker shop"), page)
