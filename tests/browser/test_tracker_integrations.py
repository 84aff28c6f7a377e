"""The JS tracker in Chromium: drop-in for Carma and Tracktor pages, auto events, the
letter-click identity, consent and do-not-track."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.tracker_site import Shop, stored_queue, wait_for
from tests.factories import SiteFactory
from tracking import keys
from tracking.models import Event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.browser.tracker_site"),
]


def test_a_carma_page_works_after_swapping_only_the_script_host_and_token(shop, page):
    # Carma's documented tag and calls, verbatim but for the host of src and data-token;
    # data-url still names Carma's collector, which must not be called.
    external: list[str] = []
    page.route("**/*amazonaws.com/**", lambda route: (external.append(route.request.url), route.abort()))
    logs: list[str] = []
    page.on("console", lambda message: logs.append(message.text))
    tag = (
        '<script id="carma-tracking" type="text/javascript" data-server="carma-42" '
        'data-url="//jp52d3joej.execute-api.eu-west-1.amazonaws.com/prod/t" '
        f'data-token="{shop.write_key}" data-debug="true" src="{shop.footprint}/carma-scripts/tracking.min.js"> </script>'
    )
    body = """
      <script type="text/javascript"> carma.tracking.identify("some.user@example.com"); </script>
      <script type="text/javascript"> carma.tracking.track("browsed-category", { category: "clothing" }); </script>
      <script type="text/javascript"> carma.tracking.track("visited-page"); </script>
    """
    page.goto(shop.add("carma", head=tag, body=body))

    events = shop.wait_for_types("identify", "browsed-category", "visited-page")
    person = shop.person("some.user@example.com")
    assert person.is_identified
    assert {e.profile_id for e in events} == {person.pk}
    by_type = {e.type: e for e in events}
    assert by_type["browsed-category"].properties == {"category": "clothing"}
    assert by_type["visited-page"].properties == {}
    assert external == []
    assert any(line.startswith("[footprint] identify") for line in logs)  # data-debug honoured


def test_a_carma_tag_pointing_data_url_at_footprint_is_honoured(shop, page):
    tag = (
        f'<script id="carma-tracking" data-server="x" data-url="{shop.footprint}/v1" '
        f'data-token="{shop.write_key}" src="{shop.script_url()}"></script>'
    )
    page.goto(shop.add("carma-url", head=tag, body="<script>carma.tracking.track('visited-page', {page: 'index.html'})</script>"))
    [event] = [e for e in shop.wait_for_types("visited-page") if e.type == "visited-page"]
    assert event.properties == {"page": "index.html"}


def test_every_loymax_event_has_its_call_and_an_anonymous_history_is_filed_on_login(shop, page):
    # Loymax's tracker document lists these web events; each is one call, queued by the
    # snippet before the script loads (its own examples are not in the document).
    script = """
      footprint.sectionView('action_xxx');
      footprint.categoryView('CAT-1');
      footprint.productView('CAT-1', 'PRD-1');
      footprint.addToCart('CAT-1', 'PRD-1');
      footprint.removeFromCart('PRD-1');
      footprint.addToCart('CAT-1', 'PRD-2', {quantity: 2});
      footprint.clearCart();
      footprint.track('news-subscription');
    """
    page.goto(shop.page_with_snippet("loymax", script=script))
    types = [
        "Section Viewed", "Product List Viewed", "Product Viewed", "Product Added",
        "Product Removed", "Product Added", "Cart Cleared", "news-subscription",
    ]
    shop.wait_for_types("page-view", *types)
    assert len(shop.people()) == 1 and not shop.people()[0].is_identified
    page.evaluate("footprint.login('CUST-1'); footprint.checkoutCompleted('ORDER-1')")
    shop.wait_for_types("Signed In", "Order Completed")
    page.evaluate("footprint.reset(); footprint.signup('CUST-2')")
    shop.wait_for_types("Signed Up")

    # The visit (start of a session) and the anonymous history are filed under CUST-1.
    customer = shop.person("CUST-1")
    mine = [e for e in shop.events(visits=True) if e.profile_id == customer.pk]
    assert sorted(e.type for e in mine) == sorted(
        ["visited-site", "page-view", *types, "identify", "Signed In", "Order Completed"]
    )
    properties = [(e.type, e.properties) for e in mine if e.properties and e.type != "page-view"]
    assert sorted(properties, key=repr) == sorted([
        ("Section Viewed", {"section": "action_xxx"}),
        ("Product List Viewed", {"category_id": "CAT-1"}),
        ("Product Viewed", {"category_id": "CAT-1", "product_id": "PRD-1"}),
        ("Product Added", {"category_id": "CAT-1", "product_id": "PRD-1"}),
        ("Product Removed", {"product_id": "PRD-1"}),
        ("Product Added", {"category_id": "CAT-1", "product_id": "PRD-2", "quantity": 2}),
        ("Order Completed", {"order_id": "ORDER-1"}),
    ], key=repr)
    assert shop.person("CUST-2").pk != customer.pk  # a registration after a logout is someone else


TRACKTOR_SNIPPET = """<script type="text/javascript">
(function() {
window.tio = window.tio || [];
var d = document, f = d.getElementsByTagName('script')[0],
t = 'YOUR_TOKEN_HERE',
s = d.createElement('script'), m = ['track', 'identify','setProperties'],
r = function (e) {return function () { tio.push([e].concat(Array.prototype.slice.call(arguments, 0))) }};
s.type = 'text/javascript'; s.async = true; s.src = 'https://tracktor.s3.amazonaws.com/scripts/'+t+'.js';
f.parentNode.insertBefore(s, f); for(var i in m) tio[m[i]] = r(m[i]);YS=tio; })();
</script>"""


def test_a_tracktor_page_works_after_swapping_only_the_script_host_and_token(shop, page):
    # Tracktor's documented example of secure mode: this secret signs identity 5115.
    shop.site.signing_secret = "2D8CarQ4rX3WvH6TK7DpJDk5"
    shop.site.only_signed_data = True
    shop.site.save()
    snippet = TRACKTOR_SNIPPET.replace("YOUR_TOKEN_HERE", shop.write_key).replace(
        "https://tracktor.s3.amazonaws.com", shop.footprint  # the host alone
    )
    calls = """<script>
      tio.identify('5115', '9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F');
      tio.setProperties({email: 'unicorn@example.com', first_name: 'Dave', last_name: 'Johnson', age: 25, billing_plan: 'free'});
      tio.track('rated-product', {productid: 33156, category: 'Consumer electronics', rating: 5, comment: 'Very good product!'});
    </script>"""
    page.goto(shop.add("tracktor", head=snippet + calls))
    # The e-commerce extension's calls, once the library has loaded (the snippet stubs
    # only track, identify and setProperties).
    page.wait_for_function("window.tio && window.tio.loaded === true && window.YS === window.tio")
    page.evaluate("""
      var cart = {totalprice: 3.98, products: [{name: 'Marshmallows 1kg pack', price: 1.99, color: 'green'},
                                               {name: 'Zephir 1kg pack', price: 1.99}], paid_with: 'Credit card'};
      tio.setCart(cart); tio.purchaseCart(cart); tio.cancelCart();
    """)

    events = shop.wait_for_types("identify", "identify", "rated-product", "set-cart", "purchase-cart", "cancel-cart")
    person = shop.person("5115")
    assert {e.profile_id for e in events} == {person.pk}
    assert person.properties == {
        "email": "unicorn@example.com", "first_name": "Dave", "last_name": "Johnson", "age": 25, "billing_plan": "free",
    }
    by_type = {e.type: e for e in events}
    assert by_type["rated-product"].properties["rating"] == 5
    assert by_type["set-cart"].properties["totalprice"] == 3.98
    assert len(by_type["purchase-cart"].properties["products"]) == 2


def tracktor_page(shop, name: str, *, body: str = "") -> str:
    snippet = TRACKTOR_SNIPPET.replace("YOUR_TOKEN_HERE", shop.write_key).replace(
        "https://tracktor.s3.amazonaws.com/scripts/", f"{shop.footprint}/tracker/"
    )
    return shop.add(name, head=snippet, body=body)


def test_a_tracktor_page_with_only_the_snippet_records_the_visit(shop, page):
    # Tracktor's library reports every page it is on (its "Visited Site" advanced event,
    # "the most popular pages of your site"): a page whose only code is the snippet counts.
    page.goto(tracktor_page(shop, "tracktor-landing"))
    [view] = shop.wait_for_types("page-view")
    assert view.properties["path"] == "/pages/tracktor-landing"
    assert shop.types(visits=True).count("visited-site") == 1
    page.goto(tracktor_page(shop, "tracktor-next"))
    shop.wait_for_types("page-view", "page-view")
    assert shop.types(visits=True).count("visited-site") == 1  # the same visit
    assert len(shop.people()) == 1


def test_tracktors_messenger_settings_are_ignored_without_breaking_the_page(shop, page):
    # The messenger widget is out of scope; its documented calls must not throw.
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(tracktor_page(shop, "tracktor-messenger"))
    page.wait_for_function("window.tio && window.tio.loaded === true")
    page.evaluate("""
      tio.setMessengerConfig({icon: 'https://cdnjs.cloudflare.com/ajax/libs/fatcow-icons/20130425/FatCow_Icons32x32/world.png',
        welcomeText: '', headerIcon: '', headerText: 'Tracktor.io Messenger', positionX: 'right', positionY: 'bottom',
        iconMargin: {"X": "10px", "Y": "10px"}, display: true});
      tio.setMessengerConfig({ display: false });
      tio.track('After Messenger');
    """)
    shop.wait_for_types("After Messenger")
    assert errors == []


def test_tracktors_people_api_merges_an_anonymous_person_switches_an_identified_one(shop, page):
    # tio.identify: "If the current person identity is anonymous, all it's data is merged
    # into the provided profile"; "If ... non-anonymous, this method just switches current
    # person without merging any data". setProperties: a null value removes a property.
    page.goto(tracktor_page(shop, "tracktor-people"))
    page.wait_for_function("window.tio && window.tio.loaded === true")
    page.evaluate("tio.track('Browsed Anonymously')")
    shop.wait_for_types("page-view", "Browsed Anonymously")
    page.evaluate("""
      tio.identify('unicorn');
      tio.setProperties({email: 'unicorn@example.com', billing_plan: 'free', delete_me: 'soon'});
      tio.setProperties({delete_me: null});
      tio.track('rated-product', {productid: 33156, rating: 5});
    """)
    shop.wait_for_types("rated-product")
    page.evaluate("tio.identify('dave'); tio.track('Dave Was Here')")
    shop.wait_for_types("Dave Was Here")

    unicorn, dave = shop.person("unicorn"), shop.person("dave")
    assert unicorn.pk != dave.pk
    assert [p.pk for p in shop.people()] == sorted([unicorn.pk, dave.pk])
    assert unicorn.properties == {"email": "unicorn@example.com", "billing_plan": "free"}
    assert dave.properties == {}
    by_person = {}
    for event in shop.events():
        by_person.setdefault(event.profile_id, []).append(event.type)
    assert {"page-view", "Browsed Anonymously", "rated-product"} <= set(by_person[unicorn.pk])
    assert "Dave Was Here" not in by_person[unicorn.pk]
    assert set(by_person[dave.pk]) == {"identify", "Dave Was Here"}
    assert shop.identities(dave) == {("user", "dave")}


def test_auto_page_view_and_click_rules_fire(shop, page):
    shop.site.auto_event_rules = [
        {"kind": "page", "match": "/pages/pricing*", "event": "Pricing Viewed"},
        {"kind": "page", "match": "/pages/search?q=*", "event": "Searched"},
        {"kind": "click", "match": "button.buy", "event": "Buy Clicked"},
        {"kind": "click", "match": "a[href*='/checkout']", "event": "Checkout Link Clicked"},
        {"kind": "click", "match": "div:::broken", "event": "Never"},
    ]
    shop.site.save()
    body = """
      <button class="buy" id="buy-1"><span>Buy <b>now</b></span></button>
      <button class="other">Other</button>
      <a href="#/checkout/start" class="go">Checkout</a>
    """
    page.goto(shop.page_with_snippet("pricing-plans", body=body))
    shop.wait_for_types("Pricing Viewed")
    page.click("button.buy b")  # a click inside the element counts
    page.click("button.other")
    page.click("a.go")
    shop.wait_for_types("Buy Clicked", "Checkout Link Clicked")

    # A single-page app moving to another matching address fires the page rule again.
    page.evaluate("history.pushState({}, '', '/pages/pricing-enterprise')")
    page.evaluate("history.pushState({}, '', '/pages/search?q=boots')")
    events = shop.wait_for_types("Pricing Viewed", "Pricing Viewed", "Searched")

    by_type: dict[str, list[Event]] = {}
    for event in events:
        by_type.setdefault(event.type, []).append(event)
    assert [e.properties["path"] for e in by_type["Pricing Viewed"]] == ["/pages/pricing-plans", "/pages/pricing-enterprise"]
    [buy] = by_type["Buy Clicked"]
    assert buy.properties == {"selector": "button.buy", "text": "Buy now", "id": "buy-1"}
    assert by_type["Checkout Link Clicked"][0].properties["href"].endswith("#/checkout/start")
    assert "Never" not in by_type
    assert len(shop.people()) == 1

    # Pages that match no rule record none.
    page.goto(shop.page_with_snippet("about"))
    shop.wait_for_types("page-view", "page-view")
    assert shop.types().count("Pricing Viewed") == 2


def test_a_letter_click_identifies_the_person_and_leaves_the_address_clean(shop, page):
    shop.site.only_signed_data = True  # the signature in the link is what lets it in
    shop.site.save()
    landing = shop.page_with_snippet("spring-sale")
    link = keys.add_identity_params(f"{landing}?utm_source=letter&utm_campaign=spring#top", "reader@example.com", shop.site.signing_secret)
    assert "fp_id=reader%40example.com" in link and "fp_sig=" in link

    page.goto(link)
    events = shop.wait_for_types("identify", "page-view")
    address = urlsplit(page.url)
    assert parse_qs(address.query) == {"utm_source": ["letter"], "utm_campaign": ["spring"]}
    assert address.fragment == "top"

    person = shop.person("reader@example.com")
    assert {e.profile_id for e in events} == {person.pk}
    page_view = next(e for e in events if e.type == "page-view")
    assert "fp_sig" not in page_view.properties["url"]  # the credential is never stored
    assert page_view.context["campaign"] == {"source": "letter", "name": "spring"}

    # A forged link (bad signature) does not identify anyone, and tracking goes on.
    forged = landing + "?fp_id=ceo@example.com&fp_sig=" + "0" * 64
    page.goto(forged)
    shop.wait_for_types("page-view", "page-view")
    assert "fp_id" not in page.url
    assert not shop.site.profiles.filter(identities__key="ceo@example.com").exists()


def test_consent_holds_events_until_given(shop, page):
    url = shop.page_with_snippet("consent", consent_required=True, script="footprint.track('Before Consent')")
    page.goto(url)
    wait_for(page=page, check=lambda: len(stored_queue(page, shop, "held")) == 2)  # page-view and the track
    page.reload()  # held events survive navigation
    wait_for(page=page, check=lambda: len(stored_queue(page, shop, "held")) == 4)
    page.wait_for_timeout(500)
    assert shop.events(visits=True) == []

    page.evaluate("footprint.consent(true)")
    shop.wait_for_types("page-view", "page-view", "Before Consent", "Before Consent")
    assert stored_queue(page, shop, "held") == []
    page.reload()  # the answer is remembered
    shop.wait_for_types("page-view", "page-view", "page-view")


def test_refused_consent_drops_held_events_and_sends_nothing(shop, page):
    page.goto(shop.page_with_snippet("refuse", consent_required=True, script="footprint.track('Before Refusal')"))
    wait_for(page=page, check=lambda: len(stored_queue(page, shop, "held")) == 2)
    page.evaluate("footprint.consent(false); footprint.track('After Refusal'); footprint.identify('u-1')")
    page.reload()
    page.evaluate("footprint.track('Next Page')")
    page.wait_for_timeout(1000)
    assert shop.events(visits=True) == []
    assert stored_queue(page, shop, "held") == [] and stored_queue(page, shop) == []
    assert page.evaluate("localStorage.getItem('fp_aid')") is None


def test_do_not_track_sends_nothing_when_the_site_respects_it(shop, page, live_server):
    shop.site.respect_do_not_track = True
    shop.site.save()
    requests: list[str] = []
    page.context.add_init_script("Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})")
    page.on("request", lambda request: requests.append(request.url))
    page.goto(shop.page_with_snippet("dnt", script="footprint.track('Tracked?'); footprint.identify('u-2')"))
    wait_for(page=page, check=lambda: any("/v1/tracker-config/" in url for url in requests))
    page.wait_for_timeout(1000)
    page.evaluate("footprint.track('Later')")
    page.wait_for_timeout(500)
    assert not [url for url in requests if "/v1/batch" in url]
    assert shop.events(visits=True) == []
    assert page.evaluate("localStorage.getItem('fp_aid')") is None

    # The same browser on a site that does not opt in is tracked as usual.
    other = Shop(live_server, SiteFactory(name="Other shop"), page)
    page.goto(other.page_with_snippet("no-dnt", script="footprint.track('Tracked')"))
    other.wait_for_types("page-view", "Tracked")


def test_page_rules_written_with_non_ascii_addresses_fire(shop, page):
    # Browsers give the tracker the address percent-encoded (/pages/%D0%BA…); a marketer
    # writes the page as it reads.
    shop.site.auto_event_rules = [
        {"kind": "page", "match": "/pages/каталог*", "event": "Catalogue Viewed"},
        {"kind": "page", "match": "/pages/suche?q=größe*", "event": "Searched"},
    ]
    shop.site.save()
    page.goto(shop.page_with_snippet("каталог-обуви"))
    shop.wait_for_types("Catalogue Viewed")
    page.evaluate("history.pushState({}, '', '/pages/suche?q=größe-42')")
    [searched] = [e for e in shop.wait_for_types("Searched") if e.type == "Searched"]
    assert searched.properties["rule"] == "/pages/suche?q=größe*"
