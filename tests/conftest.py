import os
import shutil
from unittest import mock

import pytest
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from tests.factories import MembershipFactory, SiteFactory, UserFactory
from tracking import services
from tracking.models import Membership

PASSWORD = "pw-for-tests-1"

# In CI the property tests draw the same examples every run (hypothesis' advice for CI):
# a run is red for a reason that shows on every rerun, never by the luck of the draw.
# Locally they draw fresh examples each time, which is how they go on finding things.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

# Playwright's sync API runs an event loop in the test thread; Django's ORM refuses
# to run inside one unless told it is safe (it is: the loop is Playwright's, not ours).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _clear_events_after_transactional_tests(request, django_db_blocker):
    """tracking_event is unmanaged (partitioned, made in raw SQL), so the flush after a
    transactional test skips it: clear it, or its rows outlive their sites and profiles
    and leak into later tests."""
    yield
    marker = request.node.get_closest_marker("django_db")
    transactional = marker is not None and (marker.kwargs.get("transaction") or marker.args[:1] == (True,))
    if transactional or "live_server" in request.fixturenames:
        from django.db import connection

        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute("TRUNCATE tracking_event")


@pytest.fixture(autouse=True)
def _immediate_ingest(settings):
    """Requests are stored before the answer (through the inbox row, in one
    transaction), so tests read what they sent at once; tests of the queue itself
    (tests/integration/test_inbox.py) set INGEST_MODE = "queued"."""
    settings.INGEST_MODE = "immediate"


@pytest.fixture(autouse=True)
def _fresh_cache(settings):
    """Each test its own empty cache in memory (not the files under .data/ that `make run`
    shares): the management API's rate limits count in it, so no test spends another's
    budget."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "tests"}}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def queued(settings):
    """INGEST_MODE = "queued" (production's): requests are answered from the inbox and
    stored when a test drains it (no broker here: drains are called, not enqueued)."""
    from tracking import inbox
    from tracking.tasks import drain_inbox_task

    settings.INGEST_MODE = "queued"
    settings.INGEST_MAX_BACKLOG = 0
    inbox._backlog.update(checked=0.0, full=False)
    with mock.patch.object(drain_inbox_task, "delay"):
        yield settings


@pytest.fixture
def site(db):
    return SiteFactory(name="Site A")


@pytest.fixture
def other_site(db):
    return SiteFactory(name="Site B")


@pytest.fixture
def secret_key(site):
    return services.secret_key_issue(site=site).key


@pytest.fixture
def api_client():
    return APIClient()


@pytest.fixture
def marketer(site):
    membership = MembershipFactory(site=site, role=Membership.Role.EDITOR)
    return membership.user


@pytest.fixture
def make_user(db):
    def make(**kwargs):
        return UserFactory(**kwargs)

    return make


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/ensure-chromium installs it as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def login(page, username: str, password: str = PASSWORD, path: str = "/app/login/"):
    page.goto(path)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_load_state("networkidle")
