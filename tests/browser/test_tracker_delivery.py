"""The JS tracker in Chromium: the snippet's queue, identity, sessions and delivery.

Every test opens shop pages (tests/browser/tracker_site.py) that load the tracker the
way a customer's site does, then checks what Footprint stored."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest

from profiles.models import Profile
from tests.browser.tracker_site import SERVER, stored_queue, wait_for
from tracking.ingest.profile_tokens import issue
from tracking.models import Event, Session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.browser.tracker_site"),
]


@pytest.fixture
def server_down(page):
    """Take /v1/batch down: network errors for fetch (Playwright's routing) and 503s for
    the beacons routing cannot see (tests/browser/tracker_site.py)."""

    def down(is_down: bool) -> None:
        SERVER["down"] = is_down
        if is_down:
            page.route("**/v1/batch", lambda route: route.abort("connectionrefused"))
        else:
            page.unroute("**/v1/batch")

    yield down
    SERVER["down"] = False


def test_calls_made_before_the_script_loads_arrive(shop, page):
    url = shop.page_with_snippet(
        "early",
        script="""
          footprint.track("Early Bird", {plan: "gold", n: 3});
          footprint.setProperties({first_name: "Ada"});
          window.queuedBeforeLoad = !footprint.loaded && footprint.length;
        """,
    )
    page.goto(url)
    assert page.evaluate("window.queuedBeforeLoad") == 3  # the snippet's page(), track, setProperties

    events = shop.wait_for_types("page-view", "Early Bird", "set-properties")
    by_type = {e.type: e for e in events}
    assert by_type["Early Bird"].properties == {"plan": "gold", "n": 3}
    page_view = by_type["page-view"]
    assert page_view.properties["url"] == url
    assert page_view.properties["title"] == "Shop"
    assert page_view.context["library"]["name"] == "footprint.js"
    assert page_view.context["page"]["path"] == "/pages/early"
    # One anonymous person, with the tracker's anonymous id and the property set.
    [person] = shop.people()
    anonymous_id = page.evaluate("footprint.anonymousId()")
    assert re.fullmatch(r"a-[0-9A-Za-z]{22}", anonymous_id)
    assert shop.identities(person) == {("anonymous", anonymous_id)}
    assert person.properties == {"first_name": "Ada"}
    assert not person.is_identified
    assert {e.profile_id for e in events} == {person.pk}
    # The server's profile id is kept by the tracker.
    wait_for(page=page, check=lambda: page.evaluate("footprint.profileId()") == issue(person.pk))
    assert page.evaluate("localStorage.getItem('fp_pid')") == issue(person.pk)


def test_an_anonymous_visit_then_identify_merges_into_one_person(shop, page):
    # The person already exists: they signed in on another device earlier.
    known = shop.add("other-device", head=shop.snippet(), body="")
    other = page.context.browser.new_context()
    other_page = other.new_page()
    other_page.goto(known)
    other_page.evaluate("footprint.identify('user-7'); footprint.track('Signed In')")
    shop.wait_for_types("Signed In")
    other.close()
    user_profile = shop.person("user-7")

    page.goto(shop.page_with_snippet("catalog"))
    page.evaluate("footprint.productView('shoes', 'SKU-9')")
    shop.wait_for_types("Product Viewed")
    anonymous_id = page.evaluate("footprint.anonymousId()")
    assert len(shop.people()) == 2  # the visitor is anonymous so far

    page.evaluate("footprint.login('user-7')")
    shop.wait_for_types("identify", "Signed In", "Signed In")

    # The anonymous history moved to the user: one person with both ids and every event.
    assert [p.pk for p in shop.people()] == [user_profile.pk]
    assert ("anonymous", anonymous_id) in shop.identities(user_profile)
    assert {e.profile_id for e in shop.events(visits=True)} == {user_profile.pk}
    viewed = Event.objects.get(site=shop.site, type="Product Viewed")
    assert viewed.properties == {"category_id": "shoes", "product_id": "SKU-9"}
    wait_for(page=page, check=lambda: page.evaluate("footprint.profileId()") == issue(user_profile.pk))

    # Logging out starts a new anonymous person: a shared device never links two people.
    page.evaluate("footprint.reset(); footprint.track('Browsed After Logout')")
    after = shop.wait_for_types("Browsed After Logout")[-1]
    assert page.evaluate("footprint.anonymousId()") != anonymous_id
    assert page.evaluate("footprint.profileId()") in (None, issue(after.profile_id))
    assert after.profile_id != user_profile.pk
    assert not Profile.objects.get(pk=after.profile_id).is_identified


def test_a_reload_keeps_the_anonymous_id_and_the_session(shop, page):
    url = shop.page_with_snippet("home")
    page.goto(url)
    shop.wait_for_types("page-view")
    anonymous_id = page.evaluate("footprint.anonymousId()")
    session_cookie = page.evaluate("document.cookie.match(/fp_ses=s-(\\w+)/)[1]")

    page.reload()
    page.evaluate("footprint.track('Second Look')")
    events = shop.wait_for_types("page-view", "page-view", "Second Look")
    assert page.evaluate("footprint.anonymousId()") == anonymous_id
    assert page.evaluate("document.cookie.match(/fp_ses=s-(\\w+)/)[1]") == session_cookie

    [person] = shop.people()
    assert {e.profile_id for e in events} == {person.pk}
    assert len({e.session_id for e in events}) == 1
    assert Session.objects.filter(profile=person).count() == 1
    assert shop.types(visits=True).count("visited-site") == 1


def test_without_local_storage_the_ids_live_in_first_party_cookies(shop, page):
    page.context.add_init_script(
        "Object.defineProperty(window, 'localStorage', {get: function () { throw new Error('blocked'); }})"
    )
    page.goto(shop.page_with_snippet("cookies-only"))
    shop.wait_for_types("page-view")
    anonymous_id = page.evaluate("footprint.anonymousId()")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies["fp_aid"] == anonymous_id
    assert cookies["fp_ses"].startswith("s-")

    page.reload()
    shop.wait_for_types("page-view", "page-view")
    assert page.evaluate("footprint.anonymousId()") == anonymous_id
    [person] = shop.people()
    assert shop.identities(person) == {("anonymous", anonymous_id)}
    assert Session.objects.filter(profile=person).count() == 1


def test_a_new_session_starts_after_the_sites_timeout(shop, page):
    shop.site.session_timeout_minutes = 20
    shop.site.save()
    page.clock.install()
    page.goto(shop.page_with_snippet("clock"))
    shop.wait_for_types("page-view")

    page.clock.fast_forward("15:00")  # active again within the timeout: same visit
    page.evaluate("footprint.track('Still Here')")
    shop.wait_for_types("Still Here")
    page.clock.fast_forward("19:00")  # 19 minutes after the last activity: still the same
    page.evaluate("footprint.track('Still Here')")
    shop.wait_for_types("Still Here", "Still Here")
    page.clock.fast_forward("21:00")  # past the timeout: a new visit
    page.evaluate("footprint.track('Back Again')")
    events = shop.wait_for_types("Back Again")

    [person] = shop.people()
    sessions = list(Session.objects.filter(profile=person).order_by("started_at", "id"))
    assert len(sessions) == 2
    by_type = {}
    for event in events:
        by_type.setdefault(event.type, set()).add(event.session_id)
    assert by_type["page-view"] == by_type["Still Here"] == {sessions[0].pk}
    assert by_type["Back Again"] == {sessions[1].pk}
    assert shop.types(visits=True).count("visited-site") == 2


def test_events_sent_as_the_page_is_hidden_arrive(shop, page):
    shop.add("next", body="<p>next page</p>")
    page.goto(shop.page_with_snippet("leaving"))
    shop.wait_for_types("page-view")
    kinds: list[str] = []
    page.on("request", lambda r: "/v1/batch" in r.url and kinds.append(r.resource_type))

    # The event is queued for the next batch; the page goes away before that: the
    # pagehide handler hands it to navigator.sendBeacon.
    page.evaluate("footprint.track('Left Page', {step: 2}); window.dispatchEvent(new PageTransitionEvent('pagehide'))")
    [left] = [e for e in shop.wait_for_types("Left Page") if e.type == "Left Page"]
    assert left.properties == {"step": 2}
    assert kinds == ["ping"]  # a beacon, and nothing sent twice
    assert stored_queue(page, shop) == []

    # And for real: an event tracked right before leaving for another page.
    page.evaluate("footprint.track('Clicked Away')")
    page.goto(f"{shop.origin}/pages/next")
    shop.wait_for_types("Clicked Away")


def test_events_are_kept_while_the_server_is_down_and_arrive_when_it_is_back(shop, page, server_down):
    page.goto(shop.page_with_snippet("flaky", debug=True))
    shop.wait_for_types("page-view")
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))

    server_down(True)
    page.evaluate("footprint.track('Offline One'); footprint.track('Offline Two', {n: 2})")
    wait_for(page=page, check=lambda: any("send failed" in line for line in logs), message=lambda: "\n".join(logs))
    assert [m["event"] for m in stored_queue(page, shop)] == ["Offline One", "Offline Two"]

    # Still down on the next page (the beacon of the page left fails too): the stored
    # events wait, with the new page's own.
    page.goto(shop.page_with_snippet("flaky-2", debug=True))
    wait_for(page=page, check=lambda: len(stored_queue(page, shop)) == 3)
    page.wait_for_timeout(1500)  # a retry or two
    assert shop.types() == ["page-view"]

    server_down(False)
    events = shop.wait_for_types("Offline One", "Offline Two", "page-view", "page-view", timeout=20)
    assert [e.type for e in events].count("Offline One") == 1  # stored once, however often sent
    wait_for(page=page, check=lambda: stored_queue(page, shop) == [])
    offline_two = next(e for e in events if e.type == "Offline Two")
    assert offline_two.properties == {"n": 2}
    assert any("retry in" in line for line in logs)


def test_debug_mode_logs_every_call_and_send_and_says_when_the_queue_drops_events(shop, page, server_down):
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    page.goto(shop.page_with_snippet("debug", debug=True, script="footprint.track('Debugged', {a: 1})"))
    shop.wait_for_types("Debugged")
    wait_for(page=page, check=lambda: any(line.startswith("[footprint] sent") for line in logs), message=lambda: "\n".join(logs))
    assert any(line.startswith("[footprint] track") and "Debugged" in line for line in logs)
    assert any(line.startswith("[footprint] page") for line in logs)
    assert any(line.startswith("[footprint] send ") and "/v1/batch" in line for line in logs)
    assert any(line.startswith("[footprint] site config") for line in logs)

    # A full queue (500 events) drops the oldest first, and says so.
    server_down(True)
    page.evaluate("for (var i = 0; i < 503; i++) footprint.track('Burst', {i: i})")
    dropped = [line for line in logs if "queue full" in line]
    assert len(dropped) == 3, logs[-5:]
    queue = stored_queue(page, shop)
    assert len(queue) == 500
    assert queue[0]["properties"] == {"i": 3}
    server_down(False)
    page.evaluate("footprint.flush()")
    wait_for(page=page, check=lambda: len(shop.types()) >= 2 + 500, timeout=30)
    burst = [e.properties["i"] for e in Event.objects.filter(site=shop.site, type="Burst")]
    assert sorted(burst) == list(range(3, 503))


def test_nothing_is_logged_without_debug(shop, page):
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    page.goto(shop.page_with_snippet("quiet", script="footprint.track('Quiet')"))
    shop.wait_for_types("Quiet")
    assert not [line for line in logs if "[footprint]" in line]


def test_the_tracker_never_breaks_the_host_page(shop, page):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(
        shop.page_with_snippet(
            "robust",
            script="""
              footprint.track();                       // no name
              footprint.identify(null);                // no id
              footprint.track('Circular', (function () { var o = {}; o.self = o; return o; })());
              footprint.group();
              footprint.track('Fine After All');
              window.stillRunning = true;
            """,
        )
    )
    shop.wait_for_types("Fine After All")
    assert page.evaluate("window.stillRunning") is True
    # Garbage in its storage does not stop it either.
    page.evaluate(
        f"localStorage.setItem('fp_q{shop.write_key[-8:]}', '{{not json');"
        "localStorage.setItem('fp_cfg', '{\"k\": 1}'); document.cookie = 'fp_ses=garbage;path=/'"
    )
    page.reload()
    page.evaluate("footprint.track('Still Fine')")
    shop.wait_for_types("Still Fine")
    assert errors == []


def test_the_served_tracker_fits_the_size_budget(shop):
    import gzip

    url = shop.script_url()
    assert re.search(r"/static/tracker/[0-9a-f]{12}/footprint\.js$", url), "the tracker is not built (make install)"
    with urllib.request.urlopen(url) as response:
        served = response.read()
    assert len(gzip.compress(served, compresslevel=9)) < 6 * 1024
    assert b"sendBeacon" in served and b"\n  " not in served  # minified
    assert url in shop.snippet()
    config = json.loads(urllib.request.urlopen(f"{shop.footprint}/v1/tracker-config/{shop.write_key}").read())
    assert config["sessionTimeout"] == 20 * 60
