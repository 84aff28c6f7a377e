"""The JS tracker's cart calls travel as Segment track events named after the cart
actions; the shared validation turns them into cart messages (Tracktor's adapter makes
them from its actions) and checks their cart."""

import pytest

from tracking.ingest.schema import Kind, MessageError, validate
from tracking.ingest.segment import parse_message


def parse(item):
    message = parse_message(item)
    validate(message)
    return message

CART = {"totalprice": 3.98, "products": [{"name": "Zephir 1kg pack", "price": 1.99, "count": 2}], "paid_with": "card"}


@pytest.mark.parametrize("action", ["set-cart", "purchase-cart", "cancel-cart"])
def test_cart_actions_become_cart_messages(action):
    message = parse({"type": "track", "event": action, "anonymousId": "a-1", "properties": CART})
    assert (message.kind, message.event, message.properties) == (Kind.CART, action, CART)


def test_a_cancel_may_come_without_a_cart():
    message = parse({"type": "track", "event": "cancel-cart", "anonymousId": "a-1"})
    assert (message.kind, message.properties) == (Kind.CART, {})


def test_other_events_stay_track_events():
    message = parse({"type": "track", "event": "Cart Cleared", "anonymousId": "a-1"})
    assert message.kind is Kind.TRACK


@pytest.mark.parametrize(
    ("cart", "field"),
    [
        ({"totalprice": 3, "products": "x"}, "properties.products"),
        ({"totalprice": "3", "products": []}, "properties.totalprice"),
        ({"totalprice": 3, "products": [1]}, "properties.products[0]"),
    ],
)
def test_a_malformed_cart_is_refused_naming_the_field(cart, field):
    with pytest.raises(MessageError) as caught:
        parse({"type": "track", "event": "set-cart", "anonymousId": "a-1", "properties": cart})
    assert caught.value.field == field
