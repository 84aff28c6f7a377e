"""The Tracktor adapter: GET parameters to one message, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from tests.contract.seed_examples import TRACKTOR_ALIAS, TRACKTOR_SET, TRACKTOR_TRACK
from tracking.ingest import tracktor
from tracking.ingest.schema import FieldError, Kind, MessageError, validate
from tracking.ingest.wire import RequestRejected, parse_query, rename_fields

DOC_TS = datetime(2015, 4, 16, 12, 14, 34, tzinfo=UTC)  # ts=1429186474


def params_of(url: str) -> dict[str, list[str]]:
    return parse_query(urlsplit(url).query)


def parse(endpoint: str = "track", **params: str):
    return tracktor.parse(endpoint, {"ts": ["1429186474"]} | {k: [v] for k, v in params.items()})


def refused(endpoint: str, field: str, **params: str) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse(endpoint, **params)
    assert caught.value.status == 400
    assert caught.value.errors[0].field == field, caught.value.errors
    return caught.value


def test_the_documents_set_example_sets_properties_even_on_track():
    message = tracktor.parse("track", params_of(TRACKTOR_SET), request_context={"ip": "10.0.0.1"})
    assert message.kind is Kind.SET
    assert (message.user_id, message.anonymous_id) == ("unicorn", None)
    assert message.traits == {"billing_plan": "Gold"}
    assert message.timestamp == message.sent_at == DOC_TS  # skew-corrected to arrival by the core
    assert message.context == {"ip": "10.0.0.1"}
    assert tracktor.write_key(params_of(TRACKTOR_SET)) == "00000000000"


def test_the_documents_track_example_is_an_event():
    message = tracktor.parse("track", params_of(TRACKTOR_TRACK))
    assert (message.kind, message.event, message.user_id) == (Kind.TRACK, "rated item", "unicorn")
    assert message.properties == {"category": "tires", "item": "Acme inc R14", "rating": 5}


def test_the_documents_alias_example_sent_to_track_is_an_alias():
    message = tracktor.parse("track", params_of(TRACKTOR_ALIAS))
    assert (message.kind, message.previous_id, message.user_id) == (Kind.ALIAS, "a-x123124123", "unicorn")
    assert tracktor.field_names(message)["previousId"] == "srcid"


def test_anonymous_ids_start_with_a_dash_and_identified_ones_carry_their_sign():
    anonymous = parse(id="a-3bxuAxl18r02UsdTUdk1Ri9", action="x", sign="ignored")
    assert (anonymous.anonymous_id, anonymous.user_id, anonymous.signature) == ("a-3bxuAxl18r02UsdTUdk1Ri9", None, None)
    known = parse(id="5115", action="x", sign="9622E88B")
    assert (known.user_id, known.signature) == ("5115", "9622E88B")
    alias = parse("alias", srcid="a-1", destid="5115", destsign="abc", sign="not this")
    assert alias.signature == "abc"


@pytest.mark.parametrize(
    "data",
    [
        "{billing_plan:'Gold', age: 25}",
        '{"billing_plan": "Gold", "age": 25}',
        "{billing_plan: 'Gold', /* a comment */ age: 25,}",
        "  {billing_plan:\"Gold\",age:25}  ",
    ],
)
def test_data_is_json_or_a_javascript_object_literal(data):
    assert parse("set", id="u", data=data).traits == {"billing_plan": "Gold", "age": 25}


def test_null_is_kept_so_that_the_core_deletes_the_property():
    assert parse("set", id="u", data="{delete_me: null}").traits == {"delete_me": None}


@pytest.mark.parametrize(
    ("action", "event"),
    [("setCart", "set-cart"), ("set-cart", "set-cart"), ("SET_CART", "set-cart"), ("purchase cart", "purchase-cart"),
     ("purchaseCart", "purchase-cart"), ("cancelCart", "cancel-cart")],
)
def test_cart_actions_become_cart_messages(action, event):
    cart = "{totalprice: 1.99, products: [{name: 'Zephir', price: 1.99, count: 1}], paid_with: 'card'}"
    message = parse(id="u", action=action, data=cart)
    assert (message.kind, message.event) == (Kind.CART, event)
    assert message.properties["paid_with"] == "card"


def test_a_cancel_may_come_without_its_cart():
    message = parse(id="u", action="cancelCart")
    assert (message.kind, message.properties) == (Kind.CART, {})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("{products: []}", "data.totalprice"),
        ("{totalprice: '3'}", "data.totalprice"),
        ("{totalprice: 3}", "data.products"),
        ("{totalprice: 3, products: ['x']}", "data.products[0]"),
        ("{totalprice: 3, products: [{price: 1}]}", "data.products[0].name"),
        ("{totalprice: 3, products: [{name: 'x', price: '1'}]}", "data.products[0].price"),
        ("{totalprice: 3, products: [{name: 'x', price: 1, count: 0}]}", "data.products[0].count"),
    ],
)
def test_a_malformed_cart_is_refused_naming_the_field(data, field):
    # The adapter parses; the shared validation (every format's) checks the cart, and
    # the view names its fields as Tracktor's.
    message = parse(id="u", action="setCart", data=data)
    with pytest.raises(MessageError) as caught:
        validate(message)
    error = FieldError(None, caught.value.field, caught.value.reason)
    assert rename_fields([error], tracktor.field_names(message))[0].field == field


@pytest.mark.parametrize(
    ("ts", "expected"),
    [("1429186474", DOC_TS), ("1429186474.5", DOC_TS.replace(microsecond=500000)), ("1429186474000", DOC_TS)],
)
def test_ts_is_unix_seconds_or_milliseconds(ts, expected):
    message = tracktor.parse("track", {"ts": [ts], "id": ["u"], "action": ["x"]})
    assert message.timestamp == expected


@pytest.mark.parametrize(
    ("endpoint", "params", "field"),
    [
        ("track", {"ts": "", "id": "u", "action": "x"}, "ts"),
        ("track", {"ts": "soon", "id": "u", "action": "x"}, "ts"),
        ("track", {"ts": "nan", "id": "u", "action": "x"}, "ts"),
        ("track", {"ts": "-99999999999", "id": "u", "action": "x"}, "ts"),
        ("track", {"ts": "1e300", "id": "u", "action": "x"}, "ts"),
        ("track", {"action": "x"}, "id"),
        ("track", {"id": "  ", "action": "x"}, "id"),
        ("track", {"id": "[object Object]", "action": "x"}, "id"),
        ("track", {"id": "u"}, "action"),
        ("track", {"id": "u", "action": "", "data": "{a: 1}"}, "action"),  # blank: not a set
        ("track", {"id": "u", "action": "x" * 256}, None),  # left to the core (event length)
        ("track", {"id": "u", "action": "x", "data": "{a:"}, "data"),
        ("track", {"id": "u", "action": "x", "data": "'text'"}, "data"),
        ("track", {"id": "u", "action": "x", "data": "{a: Infinity}"}, "data"),
        ("track", {"id": "u", "action": "x", "data": "{a: '\\u0000'}"}, "data.a"),
        ("track", {"srcid": "a-1", "destid": "u", "action": "x"}, "action"),
        ("set", {"id": "u"}, "data"),
        ("set", {"id": "u", "data": "[]"}, "data"),
        ("alias", {"destid": "u"}, "srcid"),
        ("alias", {"srcid": "a-1"}, "destid"),
        ("alias", {"srcid": "a-1", "destid": "a-2"}, "destid"),
        ("alias", {"srcid": "u", "destid": "u"}, "destid"),
    ],
)
def test_it_refuses_bad_parameters_naming_them(endpoint, params, field):
    query = {"ts": ["1429186474"]} | {k: [v] for k, v in params.items()}
    if field is None:
        assert tracktor.parse(endpoint, query).event == "x" * 256
        return
    with pytest.raises(RequestRejected) as caught:
        tracktor.parse(endpoint, query)
    assert caught.value.errors[0].field == field
    assert caught.value.message.startswith(field)


def test_a_parameter_given_twice_is_refused():
    with pytest.raises(RequestRejected) as caught:
        tracktor.parse("track", {"ts": ["1"], "id": ["u", "v"], "action": ["x"]})
    assert caught.value.errors[0].field == "id"


def test_unauthorized_names_sid():
    assert tracktor.unauthorized(None).errors[0].field == "sid"
    assert tracktor.unauthorized("wk_x").status == 401
