"""Tracktor.io's HTTP API (../shared/seeds/tracktor-docs.txt) end to end: the document's
example calls sent to a live server exactly as written (only the host and ``sid``
change), then the people, identities, properties and events read back through the
management API. Secure mode uses the document's own secret and signature."""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tests.contract.live import events, identities, stored_counts
from tests.contract.seed_examples import TRACKTOR_ALIAS as ALIAS_EXAMPLE
from tests.contract.seed_examples import TRACKTOR_CART as CART_SAMPLE
from tests.contract.seed_examples import TRACKTOR_IDENTITY as DOC_IDENTITY
from tests.contract.seed_examples import TRACKTOR_SECRET as DOC_SECRET
from tests.contract.seed_examples import TRACKTOR_SET as SET_EXAMPLE
from tests.contract.seed_examples import TRACKTOR_SET_PROPERTIES as SET_PROPERTIES_SAMPLE
from tests.contract.seed_examples import TRACKTOR_SIGNATURE as DOC_SIGNATURE
from tests.contract.seed_examples import TRACKTOR_TRACK as TRACK_EXAMPLE
from tests.contract.seed_examples import TRACKTOR_TRACK_DATA as TRACK_SAMPLE
from tracking import keys
from tracking.ingest.profile_tokens import redeem

pytestmark = pytest.mark.django_db(transaction=True)

def as_written(example: str, key: str) -> str:
    """The document's URL with our host and write key, the query untouched."""
    query = example.split("?", 1)[1]
    return "/track?" + query.replace("sid=00000000000", f"sid={key}")


def call(path: str, key: str | None, **params: str) -> str:
    query = ({"sid": key} if key is not None else {}) | {"ts": "1429186474"} | params
    return f"{path}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}"


def test_the_set_example_sets_a_persons_property(live, key):
    reply = live.get(as_written(SET_EXAMPLE, key))

    assert reply.status == 200, reply.text
    assert reply.json()["success"] is True
    person = live.person_by("unicorn")
    assert person["id"] == redeem(reply.json()["profile_id"])
    assert person["is_identified"] is True
    assert person["properties"] == {"billing_plan": "Gold"}
    assert identities(person) == {("user", "unicorn")}
    [set_call] = events(person)
    assert (set_call["type"], set_call["properties"]) == ("set-properties", {"billing_plan": "Gold"})


def test_the_set_method_url_takes_the_same_call(live, key):
    reply = live.get(as_written(SET_EXAMPLE, key).replace("/track?", "/set?"))
    assert reply.status == 200, reply.text
    assert live.person_by("unicorn")["properties"] == {"billing_plan": "Gold"}


def test_the_track_example_records_the_event_at_the_servers_time(live, key):
    reply = live.get(as_written(TRACK_EXAMPLE, key))

    assert reply.status == 200, reply.text
    person = live.person_by("unicorn")
    [rated] = events(person)
    assert rated["type"] == "rated item"
    assert rated["properties"] == {"category": "tires", "item": "Acme inc R14", "rating": 5}
    # ts (2015) is the client's clock when it sent the call: corrected for that skew,
    # the event happened when it arrived.
    occurred = datetime.fromisoformat(rated["occurred_at"])
    assert abs(occurred - timezone.now()) < timedelta(minutes=1)
    assert person["properties"] == {}


def test_the_alias_example_merges_the_anonymous_visitor_into_unicorn(live, key):
    anonymous = live.get(call("/track", key, id="a-x123124123", action="viewed-pricing"))
    assert anonymous.status == 200, anonymous.text
    assert live.person_by("a-x123124123")["is_identified"] is False
    live.get(as_written(SET_EXAMPLE, key))

    reply = live.get(as_written(ALIAS_EXAMPLE, key))

    assert reply.status == 200, reply.text
    unicorn = live.person_by("unicorn")
    assert unicorn["id"] == redeem(reply.json()["profile_id"])
    assert live.person_by("a-x123124123")["id"] == unicorn["id"]
    assert identities(unicorn) == {("user", "unicorn"), ("anonymous", "a-x123124123")}
    assert redeem(anonymous.json()["profile_id"]) in unicorn["merged_profile_ids"]
    assert [e["type"] for e in events(unicorn)] == ["viewed-pricing", "set-properties", "alias"]
    assert unicorn["properties"] == {"billing_plan": "Gold"}
    assert live.people_count() == 1


def test_the_alias_method_url_merges_too(live, key):
    live.get(call("/track", key, id="a-3bxuAxl18r02UsdTUdk1Ri9", action="Visited pricing"))
    reply = live.get(call("/alias", key, srcid="a-3bxuAxl18r02UsdTUdk1Ri9", destid="dave"))
    assert reply.status == 200, reply.text
    dave = live.person_by("dave")
    assert live.person_by("a-3bxuAxl18r02UsdTUdk1Ri9")["id"] == dave["id"]
    assert "Visited pricing" in [e["type"] for e in events(dave)]


def test_the_javascript_samples_work_as_object_literals_and_as_json(live, key):
    set_reply = live.get(call("/set", key, id="unicorn", data=SET_PROPERTIES_SAMPLE))
    track_reply = live.get(call("/track", key, id="unicorn", action="rated-product", data=TRACK_SAMPLE))
    json_reply = live.get(call("/set", key, id="unicorn", data=json.dumps({"city": "Berlin", "tags": ["a", 1]})))

    assert (set_reply.status, track_reply.status, json_reply.status) == (200, 200, 200)
    person = live.person_by("unicorn")
    assert person["properties"] == {
        "email": "unicorn@example.com",
        "first_name": "Dave",
        "last_name": "Johnson",
        "age": 25,
        "billing_plan": "free",
        "city": "Berlin",
        "tags": ["a", 1],
    }
    rated = [e for e in events(person) if e["type"] == "rated-product"]
    assert rated[0]["properties"] == {
        "productid": 33156,
        "category": "Consumer electronics",
        "rating": 5,
        "comment": "Very good product!",
    }


def test_null_deletes_a_property_and_leaves_the_others(live, key):
    live.get(call("/set", key, id="unicorn", data="{delete_me: 'soon', keep: 1}"))
    reply = live.get(call("/set", key, id="unicorn", data="{delete_me: null}"))
    assert reply.status == 200
    assert live.person_by("unicorn")["properties"] == {"keep": 1}


def test_anonymous_ids_need_no_signature_even_in_secure_mode(live, site, key):
    site.only_signed_data = True
    site.save()
    reply = live.get(call("/track", key, id="a-xrWNmprAoEJM507bt7m5LKg", action="Site visit"))
    assert reply.status == 200, reply.text
    assert live.person_by("a-xrWNmprAoEJM507bt7m5LKg")["is_identified"] is False


def test_secure_mode_accepts_the_documents_signature_and_refuses_anything_else(live, site, key):
    site.signing_secret = DOC_SECRET
    site.only_signed_data = True
    site.save()
    before = stored_counts()

    unsigned = live.get(call("/set", key, id=DOC_IDENTITY, data="{plan: 'pro'}"))
    forged = live.get(call("/set", key, id=DOC_IDENTITY, sign="00" * 32, data="{plan: 'pro'}"))

    assert unsigned.status == 401 and unsigned.json()["errors"][0]["field"] == "sign"
    assert forged.status == 401 and forged.json()["errors"][0]["field"] == "sign"
    assert stored_counts() == before
    signed = live.get(call("/set", key, id=DOC_IDENTITY, sign=DOC_SIGNATURE, data="{plan: 'pro'}"))
    assert signed.status == 200, signed.text
    assert live.person_by(DOC_IDENTITY)["properties"] == {"plan": "pro"}


def test_aliasing_two_identified_people_needs_destsign(live, site, key):
    live.get(call("/set", key, id="alice", data="{a: 1}"))
    live.get(call("/set", key, id="bob", data="{b: 2}"))
    before = stored_counts()

    refused = live.get(call("/alias", key, srcid="alice", destid="bob"))
    assert refused.status == 400
    assert refused.json()["errors"][0]["field"] == "srcid"
    assert stored_counts() == before

    signed = live.get(call("/alias", key, srcid="alice", destid="bob", destsign=keys.sign_identity(site.signing_secret, "bob")))
    assert signed.status == 200, signed.text
    bob = live.person_by("bob")
    assert live.person_by("alice")["id"] == bob["id"]
    assert bob["properties"] == {"a": 1, "b": 2}


def test_in_secure_mode_a_signature_of_dest_does_not_take_over_an_identified_source(live, site, key):
    site.only_signed_data = True
    site.save()
    sign = {who: keys.sign_identity(site.signing_secret, who) for who in ("victim", "mallory", "mallory2")}
    live.get(call("/set", key, id="victim", sign=sign["victim"], data="{email: 'v@example.com'}"))
    live.get(call("/set", key, id="mallory", sign=sign["mallory"], data="{plan: 1}"))
    before = stored_counts()

    # Mallory holds her own signatures only (what the site's pages give her).
    for destid in ("mallory", "mallory2"):
        refused = live.get(call("/alias", key, srcid="victim", destid=destid, destsign=sign[destid]))
        assert refused.status == 401, refused.text
        error = refused.json()["errors"][0]
        assert (error["field"], error["reason"]) == ("srcid", "names an identified person: merging them needs the secret key")
    assert stored_counts() == before
    assert live.person_by("victim")["properties"] == {"email": "v@example.com"}
    # A visitor's own anonymous history still joins the signed person.
    live.get(call("/track", key, id="a-mallory-phone", action="Site visit"))
    joined = live.get(call("/alias", key, srcid="a-mallory-phone", destid="mallory", destsign=sign["mallory"]))
    assert joined.status == 200, joined.text


@pytest.mark.parametrize(("path", "params"), [
    ("/set", {"id": "5115", "sign": "é", "data": "{a: 1}"}),
    ("/alias", {"srcid": "a-1", "destid": "5115", "destsign": "é"}),
])
def test_a_signature_that_is_not_hex_text_is_a_401_not_a_crash(live, key, path, params):
    reply = live.get(call(path, key, **params))
    assert reply.status == 401, reply.text
    assert reply.json()["errors"][0]["field"] in ("sign", "destsign")


def test_cart_calls_carry_the_cart(live, key):
    for action in ("setCart", "purchaseCart"):
        reply = live.get(call("/track", key, id="unicorn", action=action, data=CART_SAMPLE))
        assert reply.status == 200, reply.text
    assert live.get(call("/track", key, id="unicorn", action="cancelCart")).status == 200

    set_cart, purchase, cancel = events(live.person_by("unicorn"))
    assert (set_cart["type"], purchase["type"], cancel["type"]) == ("set-cart", "purchase-cart", "cancel-cart")
    assert set_cart["properties"]["totalprice"] == 3.98
    assert set_cart["properties"]["products"][0] == {"name": "Marshmallows 1kg pack", "price": 1.99, "color": "green"}
    assert purchase["properties"]["shipping_method"] == "in-store pick up"
    assert cancel["properties"] == {}


def test_beacon_answers_are_never_cached_and_readable_cross_origin(live, key):
    reply = live.get(as_written(TRACK_EXAMPLE, key), Origin="https://shop.example")
    assert "no-store" in reply.headers["cache-control"]
    assert reply.headers["access-control-allow-origin"] == "https://shop.example"
    assert live.request("POST", call("/set", key, id="unicorn", data="{a: 1}"), body=b"").status == 405


# --- refusals: a clear error naming the parameter, nothing stored ------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/track", {"sid": None, "id": "unicorn", "action": "x"}, 401, "sid"),
        ("/track", {"sid": "wk_not-a-key", "id": "unicorn", "action": "x"}, 401, "sid"),
        ("/track", {"ts": "", "id": "unicorn", "action": "x"}, 400, "ts"),
        ("/track", {"ts": "yesterday", "id": "unicorn", "action": "x"}, 400, "ts"),
        ("/track", {"action": "x"}, 400, "id"),
        ("/track", {"id": "undefined", "action": "x"}, 400, "id"),
        ("/track", {"id": "unicorn"}, 400, "action"),
        ("/track", {"id": "unicorn", "action": "x", "data": "{billing_plan:'Gold'"}, 400, "data"),
        ("/track", {"id": "unicorn", "action": "x", "data": "[1, 2]"}, 400, "data"),
        ("/track", {"id": "unicorn", "action": "x", "data": "{a: NaN}"}, 400, "data"),
        ("/track", {"id": "unicorn", "action": "setCart", "data": "{products: []}"}, 400, "data.totalprice"),
        ("/track", {"id": "unicorn", "action": "setCart"}, 400, "data"),
        ("/track", {"srcid": "a-1", "destid": "unicorn", "action": "x"}, 400, "action"),
        ("/set", {"id": "unicorn"}, 400, "data"),
        ("/set", {"data": "{a: 1}"}, 400, "id"),
        ("/alias", {"srcid": "a-1"}, 400, "destid"),
        ("/alias", {"destid": "unicorn"}, 400, "srcid"),
        ("/alias", {"srcid": "unicorn", "destid": "a-1"}, 400, "destid"),
    ],
)
def test_it_refuses_bad_calls_naming_the_parameter(live, key, path, params, status, field):
    before = stored_counts()
    query = {"sid": key, "ts": "1429186474"} | params
    reply = live.get(f"{path}?{urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})}")
    assert reply.status == status, reply.text
    body = reply.json()
    assert body["errors"][0]["field"] == field
    assert body["message"].startswith(field)
    assert stored_counts() == before


def test_a_repeated_parameter_is_refused(live, key):
    before = stored_counts()
    reply = live.get(call("/track", key, id="unicorn", action="x") + "&id=other")
    assert reply.status == 400
    assert reply.json()["errors"] == [{"field": "id", "reason": "is given more than once"}]
    assert stored_counts() == before


# --- retries: the API has no message id; the same URL again is the same call ----------


def test_a_retried_call_is_stored_once_and_answered_alike(live, key):
    url = call("/track", key, id="unicorn", action="rated item", data="{rating: 5}")
    first, retry = live.get(url), live.get(url)

    assert (first.status, retry.status) == (200, 200), (first.text, retry.text)
    assert first.json()["profile_id"] == retry.json()["profile_id"]
    assert [e["type"] for e in events(live.person_by("unicorn"))] == ["rated item"]


def test_the_same_action_in_another_second_or_with_other_data_is_a_new_call(live, key):
    for query in (
        {"ts": "1429186474", "data": "{rating: 5}"},
        {"ts": "1429186475", "data": "{rating: 5}"},
        {"ts": "1429186475", "data": "{rating: 4}"},
    ):
        reply = live.get(call("/track", key, id="unicorn", action="rated item", **query))
        assert reply.status == 200, reply.text
    ratings = [e["properties"]["rating"] for e in events(live.person_by("unicorn"))]
    assert sorted(ratings) == [4, 5, 5]


def test_a_retried_set_changes_the_properties_once(live, key):
    url = call("/set", key, id="unicorn", data="{visits: 1}")
    live.get(url)
    live.get(call("/set", key, id="unicorn", data="{visits: 2}", ts="1429186475"))
    live.get(url)  # a late retry of the first call must not undo the second

    person = live.person_by("unicorn")
    assert person["properties"] == {"visits": 2}
    assert len(events(person)) == 2
