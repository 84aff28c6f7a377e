"""The JS tracker's cart calls travel as Segment track events named after the cart
actions; the Segment adapter turns them into cart messages (as Tracktor's adapter does)."""

import pytest

from tracking.ingest.schema import Kind
from tracking.ingest.segment import parse_message

CART = {"totalprice": 3.98, "products": [{"name": "Zephir 1kg pack", "price": 1.99, "count": 2}], "paid_with": "card"}


@pytest.mark.parametrize("action", ["set-cart", "purchase-cart", "cancel-cart"])
def test_cart_actions_become_cart_messages(action):
    message = parse_message({"type": "track", "event": action, "anonymousId": "a-1", "properties": CART})
    assert (message.kind, message.event, message.properties) == (Kind.CART, action, CART)


def test_a_cancel_may_come_without_a_cart():
    message = parse_message({"type": "track", "event": "cancel-cart", "anonymousId": "a-1"})
    assert (message.kind, message.properties) == (Kind.CART, {})


def test_other_events_stay_track_events():
    message = parse_message({"type": "track", "event": "Cart Cleared", "anonymousId": "a-1"})
    assert message.kind is Kind.TRACK
