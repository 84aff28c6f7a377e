"""Cart calls are validated alike whatever their wire format (DESIGN "Carts": a cart has
``totalprice``, ``products[]`` with name, price, count, any extra fields), and in both
ingestion modes: a bad cart is refused naming its field, and nothing of it is stored."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from tracking import inbox
from tracking.models import Event

pytestmark = pytest.mark.django_db

CART = {"totalprice": 3.98, "products": [{"name": "Zephir 1kg pack", "price": 1.99, "count": 2}], "paid_with": "card"}

# (cart, the field the error names, below the message's cart: Segment's properties)
BAD_CARTS = [
    ({"totalprice": 3, "products": "x"}, "products"),
    ({"totalprice": "3.98", "products": []}, "totalprice"),
    ({"products": []}, "totalprice"),
    ({"totalprice": 3}, "products"),
    ({"totalprice": 3, "products": ["x"]}, "products[0]"),
    ({"totalprice": 3, "products": [{"price": 1}]}, "products[0].name"),
    ({"totalprice": 3, "products": [{"name": "x", "price": "1"}]}, "products[0].price"),
    ({"totalprice": 3, "products": [{"name": "x", "price": 1, "count": 0}]}, "products[0].count"),
    ({}, "totalprice"),
]


def post_segment(site, body):
    auth = base64.b64encode(f"{site.primary_write_key().key}:".encode()).decode()
    return Client().post(
        "/v1/batch", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Basic {auth}"
    )


def cart_call(event, properties, n=0):
    return {"type": "track", "event": event, "anonymousId": "a-cart", "properties": properties, "messageId": f"c-{n}"}


def stored_types(site):
    inbox.drain(idle_seconds=0)  # queued mode: store what was queued (nothing, in immediate mode)
    return sorted(Event.objects.filter(site=site).exclude(type="visited-site").values_list("type", flat=True))


@pytest.fixture(params=["immediate", "queued"])
def mode(request):
    if request.param == "queued":
        request.getfixturevalue("queued")
    return request.param


@pytest.mark.parametrize(("cart", "field"), BAD_CARTS)
@pytest.mark.parametrize("event", ["set-cart", "purchase-cart"])
def test_a_segment_cart_call_with_a_bad_cart_is_refused_naming_the_field(site, mode, event, cart, field):
    good = {"type": "track", "event": "Product Viewed", "anonymousId": "a-cart", "messageId": "ok"}
    response = post_segment(site, {"batch": [good, cart_call(event, cart)]})

    assert response.status_code == 200, response.content  # the batch's valid messages are kept
    errors = response.json().get("errors", [])
    assert [(e["index"], e["field"]) for e in errors] == [(1, f"properties.{field}")]
    assert errors[0]["reason"]
    assert stored_types(site) == ["Product Viewed"]


def test_a_bad_cart_in_a_strict_segment_batch_refuses_it_whole(site, mode):
    auth = base64.b64encode(f"{site.primary_write_key().key}:".encode()).decode()
    response = Client().post(
        "/v1/batch?strict=1",
        data=json.dumps({"batch": [cart_call("set-cart", CART), cart_call("set-cart", {"totalprice": 1, "products": "x"}, 1)]}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Basic {auth}",
    )

    assert response.status_code == 400, response.content
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "properties.products")]
    assert stored_types(site) == []


def test_good_segment_cart_calls_are_stored_and_a_cancel_may_come_without_a_cart(site, mode):
    response = post_segment(site, {"batch": [
        cart_call("set-cart", CART), cart_call("purchase-cart", CART, 1), cart_call("cancel-cart", {}, 2),
    ]})

    assert response.status_code == 200, response.content
    assert not response.json().get("errors")
    assert stored_types(site) == ["cancel-cart", "purchase-cart", "set-cart"]


def test_a_cancel_that_carries_a_cart_has_it_checked(site, mode):
    response = post_segment(site, {"batch": [cart_call("cancel-cart", {"totalprice": "lots"})]})

    assert [(e["index"], e["field"]) for e in response.json().get("errors", [])] == [(0, "properties.totalprice")]
    assert stored_types(site) == []


@pytest.mark.parametrize(("cart", "field"), BAD_CARTS[:3])
def test_tracktor_names_the_same_fields_as_data(site, cart, field):
    response = Client().get("/track", {
        "sid": site.primary_write_key().key, "ts": "1429186474", "id": "u-1", "action": "setCart", "data": json.dumps(cart),
    })

    assert response.status_code == 400, response.content
    assert [e["field"] for e in response.json()["errors"]] == [f"data.{field}"]
    assert stored_types(site) == []


@pytest.mark.parametrize(("cart", "field"), BAD_CARTS[:3])
def test_a_tracardi_event_named_after_a_cart_action_is_a_cart_call(site, cart, field):
    payload = {
        "source": {"id": site.primary_write_key().key}, "session": {"id": "s-1"},
        "events": [{"type": "Product Viewed"}, {"type": "set-cart", "properties": cart}],
    }
    response = Client().post("/track", data=json.dumps(payload), content_type="application/json")

    assert response.status_code == 400, response.content
    assert [(e.get("index"), e["field"]) for e in response.json()["errors"]] == [(1, f"properties.{field}")]
    assert stored_types(site) == []
