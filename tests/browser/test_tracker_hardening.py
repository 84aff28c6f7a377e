"""The JS tracker where a page, a shared device or the network does something awkward:
the first page view of a return visit, a logout with events still in flight, junk ids,
refused consent, long non-Latin text, a page that changes its cart after the call,
refusals and rate limits. Each test fails on the tracker before these fixes."""

from __future__ import annotations

import time

import pytest

from profiles.models import Identity
from tests.browser.tracker_site import stored_queue, tracker_ready, wait_for
from tracking.ingest.profile_tokens import issue
from tracking.models import Session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.browser.tracker_site"),
]

AGE_SESSION = """(function (minutes) {
  var id = document.cookie.match(/fp_ses=(s-\\w+)/)[1];
  var v = id + '.' + (Date.now() - minutes * 60000) + '.3600';
  document.cookie = 'fp_ses=' + v + ';path=/;max-age=7200'; localStorage.setItem('fp_ses', v);
})"""


def test_a_return_visit_within_the_sites_timeout_continues_the_session(shop, page):
    shop.site.session_timeout_minutes = 60
    shop.site.save()
    page.goto(shop.page_with_snippet("return"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    page.wait_for_timeout(300)  # the config is fetched and cached
    page.evaluate(f"{AGE_SESSION}(30)")
    page.reload()  # the snippet's page view is replayed before the config is fetched
    shop.wait_for_types("page-view", "page-view")
    assert Session.objects.filter(site=shop.site).count() == 1
    assert shop.types(visits=True).count("visited-site") == 1


def test_events_sent_after_a_reset_do_not_tie_the_new_visitor_to_the_old_person(shop, page):
    page.goto(shop.page_with_snippet("logout"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    wait_for(page=page, check=lambda: page.evaluate("footprint.profileId()"))
    page.evaluate("footprint.identify('user-1'); footprint.track('Logged Out'); footprint.reset();")
    shop.wait_for_types("identify", "Logged Out")
    page.wait_for_timeout(300)
    user = shop.person("user-1")
    assert page.evaluate("footprint.profileId()") != issue(user.pk)
    fresh = page.evaluate("footprint.anonymousId()")
    page.evaluate("footprint.track('Browsed After Logout')")
    after = next(e for e in shop.wait_for_types("Browsed After Logout") if e.type == "Browsed After Logout")
    assert after.profile_id != user.pk
    assert Identity.objects.get(site=shop.site, key=fresh).profile_id != user.pk


@pytest.mark.parametrize("junk", ["0", "'undefined'", "'guest'", "'null'", "false"])
def test_a_junk_id_is_not_kept_and_tracking_goes_on(shop, page, junk):
    page.goto(shop.page_with_snippet("junk"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    page.evaluate(f"footprint.identify({junk}); footprint.track('Added To Wishlist')")
    shop.wait_for_types("Added To Wishlist")
    assert page.evaluate("localStorage.getItem('fp_uid')") is None
    page.reload()
    page.evaluate("footprint.track('Next Page')")
    shop.wait_for_types("Next Page")


def test_after_refused_consent_no_id_or_signature_is_kept(shop, page):
    page.goto(shop.page_with_snippet("refused"))
    shop.wait_for_types("page-view")
    page.evaluate("footprint.consent(false); footprint.identify('u-1', 'abc123'); footprint.alias('u-2')")
    kept = "[localStorage.getItem('fp_uid'), localStorage.getItem('fp_sig'), localStorage.getItem('fp_aid')]"
    assert page.evaluate(kept) == [None, None, None]
    page.reload()
    assert page.evaluate(kept) == [None, None, None]


def test_long_non_latin_text_is_sent_in_batches_that_fit(shop, page):
    page.goto(shop.page_with_snippet("ru"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    # ~24 KB of UTF-8 each (12,000 Cyrillic characters): three of them are over the 64 KiB
    # a keepalive request may carry, counted in characters they were under it.
    page.evaluate("""var d = new Array(12001).join('\\u0436');
      footprint.track('Review', {text: d}); footprint.track('Review', {text: d}); footprint.track('Review', {text: d});
      footprint.track('Small');""")
    shop.wait_for_types("Review", "Review", "Review", "Small")
    wait_for(page=page, check=lambda: stored_queue(page, shop) == [])


def test_the_cart_sent_is_the_cart_at_the_call(shop, page):
    page.goto(shop.page_with_snippet("cart"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    page.evaluate("""
      var cart = {totalprice: 3.98, products: [{name: 'Marshmallows 1kg pack', price: 1.99, count: 1},
                                               {name: 'Zephir 1kg pack', price: 1.99}]};
      footprint.purchaseCart(cart);
      cart.products.length = 0; cart.totalprice = 0;  // the shop empties its cart right after
      var props = {tags: ['a']}; footprint.track('Tagged', props); props.tags.push('later');
    """)
    by_type = {e.type: e for e in shop.wait_for_types("purchase-cart", "Tagged")}
    assert by_type["purchase-cart"].properties == {
        "totalprice": 3.98,
        "products": [{"name": "Marshmallows 1kg pack", "price": 1.99, "count": 1}, {"name": "Zephir 1kg pack", "price": 1.99}],
    }
    assert by_type["Tagged"].properties == {"tags": ["a"]}


def test_a_refused_origin_is_dropped_not_retried(shop, page):
    shop.site.allowed_origins = ["https://www.other-shop.example"]
    shop.site.save()
    hits = []
    page.on("request", lambda r: "/v1/batch" in r.url and hits.append(r.url))
    page.goto(shop.page_with_snippet("origin"))
    tracker_ready(page)
    wait_for(page=page, check=lambda: hits and stored_queue(page, shop) == [])
    page.wait_for_timeout(2500)  # a retried batch would be sent again within a second or two
    assert len(hits) == 1


def test_a_429_is_retried_no_sooner_than_its_retry_after(shop, page):
    page.goto(shop.page_with_snippet("throttled"))
    shop.wait_for_types("page-view")
    tracker_ready(page)
    hits = []

    def throttle(route):
        hits.append(time.monotonic())
        route.fulfill(status=429, headers={"Retry-After": "30", "Access-Control-Allow-Origin": "*",
                                           "Access-Control-Expose-Headers": "Retry-After"},
                      body='{"code": "rate_limited", "message": "slow down"}')

    page.route("**/v1/batch", throttle)
    page.evaluate("footprint.track('Throttled')")
    for n in range(6):  # calls while the batch waits must not send it early
        page.wait_for_timeout(400)
        page.evaluate(f"footprint.track('Meanwhile {n}')")
    page.wait_for_timeout(1500)
    assert len(hits) == 1
