"""What bench traffic looks like: event types, their properties, people and their keys.

Shared by the COPY generator (``synthetic``) and the HTTP clients (``client``), so the
rows COPY writes and the events the server stores are alike. Standard library only: the
client processes import this without Django.

Properties and contexts are pre-rendered JSON (a few hundred variants per type), so
making ten million rows costs string joins, not ``json.dumps`` calls. Cart and order
properties carry the person's own ``cart_id`` (filled in per row), so "hold property
constant" funnels have something real to hold.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from itertools import accumulate

# Twenty event types. ``visited-site`` opens every session (the pipeline's own event);
# the other nineteen are drawn with these weights, so a few types dominate, as on a shop.
VISITED_SITE = "visited-site"
EVENT_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("page-view", 300),
    ("Product Viewed", 160),
    ("Product List Viewed", 90),
    ("Products Searched", 50),
    ("Product Clicked", 45),
    ("Product Added", 40),
    ("Promotion Viewed", 35),
    ("set-cart", 35),
    ("Cart Viewed", 25),
    ("Checkout Started", 14),
    ("Product Added to Wishlist", 12),
    ("Product Removed", 12),
    ("Payment Info Entered", 9),
    ("Order Completed", 8),
    ("purchase-cart", 8),
    ("identify", 6),
    ("Coupon Applied", 4),
    ("Product Reviewed", 3),
    ("Product Shared", 2),
)
EVENT_TYPES = tuple(name for name, _ in EVENT_WEIGHTS)
CUM_WEIGHTS = tuple(accumulate(w for _, w in EVENT_WEIGHTS))
ALL_TYPES = (VISITED_SITE, *EVENT_TYPES)
assert len(ALL_TYPES) == 20

CART_TYPES = frozenset(
    {
        "Product Added", "set-cart", "Cart Viewed", "Checkout Started", "Product Removed",
        "Payment Info Entered", "Order Completed", "purchase-cart", "Coupon Applied",
    }
)
# Types that are not Segment `track` calls on the wire.
PAGE_TYPE = "page-view"
IDENTIFY_TYPE = "identify"
CART_ACTIONS = frozenset({"set-cart", "purchase-cart"})

CATEGORIES = ("clothing", "shoes", "electronics", "home", "beauty", "sports", "books", "toys")
CATEGORY_WEIGHTS = (30, 18, 15, 12, 9, 8, 5, 3)
BRANDS = ("Acme", "Northwind", "Lumen", "Fjord", "Kestrel", "Tandem", "Orbit", "Halden")
CITIES = ("Berlin", "London", "Paris", "Madrid", "Warsaw", "Amsterdam", "Vienna", "Prague", "Lisbon", "Milan")
CITY_WEIGHTS = (20, 18, 15, 10, 8, 8, 6, 6, 5, 4)
FIRST_NAMES = ("Anna", "Ben", "Chloe", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36",
)
SHOP = "https://bench-shop.example"
PRODUCTS = 2000
VARIANTS = 256  # pre-rendered property variants per type


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


# -- people ----------------------------------------------------------------------------
# Person i (0-based, in generation order) has the anonymous id ``a<i>``; about a third
# are identified, with the user id ``u<i>``. Clients derive known people from the
# numbers alone, without asking the database.


def is_identified(i: int) -> bool:
    return i % 20 < 7


def user_key(i: int) -> str:
    return f"bench-u{i}"


def anonymous_key(i: int) -> str:
    return f"bench-a{i}"


def person_properties(i: int, rng: random.Random) -> dict:
    city = rng.choices(CITIES, CITY_WEIGHTS)[0]
    if not is_identified(i):
        return {"city": city} if rng.random() < 0.3 else {}
    return {
        "email": f"person{i}@example.com",
        "first_name": rng.choice(FIRST_NAMES),
        "plan": "pro" if rng.random() < 0.2 else "free",
        "city": city,
        "age": rng.randint(18, 75),
        "orders": rng.choice((0, 0, 0, 1, 1, 2, 3, 5)),
    }


# -- properties and contexts -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pools:
    """Pre-rendered JSON. A property variant is ``(head, tail)``: ``tail`` is None for
    fixed JSON, else the row's JSON is ``head + cart_id + tail``."""

    properties: dict[str, list[tuple[str, str | None]]]
    contexts: list[str]


def _product(rng: random.Random) -> dict:
    number = rng.randrange(PRODUCTS)
    category = CATEGORIES[number % len(CATEGORIES)] if rng.random() < 0.3 else rng.choices(CATEGORIES, CATEGORY_WEIGHTS)[0]
    return {
        "product_id": f"p{number}",
        "category": category,
        "brand": BRANDS[number % len(BRANDS)],
        "price": round(5 + (number * 7919 % 400) + 0.99, 2),
    }


def _properties(event: str, rng: random.Random) -> dict:
    product = _product(rng)
    if event == "page-view":
        path = rng.choice(("/", "/sale", f"/c/{product['category']}", f"/p/{product['product_id']}", "/about"))
        return {"path": path, "url": SHOP + path, "title": path.strip("/") or "home"}
    if event in ("Product Viewed", "Product Clicked", "Product Added to Wishlist", "Product Shared"):
        return {**product, "currency": "EUR", "position": rng.randint(1, 24)}
    if event == "Product List Viewed":
        return {"list_id": f"{product['category']}-all", "category": product["category"]}
    if event == "Products Searched":
        return {"query": rng.choice(("jacket", "red shoes", "headphones", "gift", "lamp", "yoga"))}
    if event == "Promotion Viewed":
        return {"promotion_id": rng.choice(("autumn", "bf-2026", "free-ship")), "creative": "banner"}
    if event == "Product Reviewed":
        return {"product_id": product["product_id"], "rating": rng.randint(1, 5)}
    if event == "identify":
        return {"plan": rng.choice(("free", "free", "pro")), "city": rng.choices(CITIES, CITY_WEIGHTS)[0]}
    # Cart and order events.
    quantity = rng.choice((1, 1, 1, 2, 3))
    value = round(product["price"] * quantity, 2)
    if event in ("Product Added", "Product Removed"):
        return {**product, "quantity": quantity, "currency": "EUR"}
    if event in ("set-cart", "purchase-cart"):
        return {
            "totalprice": value,
            # A cart's products have a name (DESIGN "Carts"): ingestion refuses them without.
            "products": [{
                "product_id": product["product_id"], "name": f"{product['brand']} {product['product_id']}",
                "price": product["price"], "count": quantity,
            }],
        }
    if event in ("Order Completed", "Checkout Started", "Payment Info Entered", "Cart Viewed"):
        return {"revenue": value, "currency": "EUR", "products": quantity, "category": product["category"]}
    if event == "Coupon Applied":
        return {"coupon": rng.choice(("WELCOME10", "BF26", "FREESHIP"))}
    return {}


def build_pools(seed: int = 7) -> Pools:
    rng = random.Random(seed)
    properties: dict[str, list[tuple[str, str | None]]] = {}
    for event in (VISITED_SITE, *EVENT_TYPES):
        variants = []
        for _ in range(VARIANTS if event != VISITED_SITE else 1):
            text = dumps(_properties(event, rng) if event != VISITED_SITE else {})
            if event in CART_TYPES:
                # {"cart_id":"<filled per row>", ...the rest}
                rest = text[1:]
                head = '{"cart_id":"'
                tail = '"' + ("," + rest if rest != "}" else "}")
                variants.append((head, tail))
            else:
                variants.append((text, None))
        properties[event] = variants
    contexts = []
    for _ in range(VARIANTS):
        path = rng.choice(("/", "/sale", "/c/clothing", "/c/shoes", "/p/p1201", "/checkout"))
        context = {
            "page": {"path": path, "url": SHOP + path, "referrer": rng.choice(("", "https://www.google.com/"))},
            "userAgent": rng.choice(USER_AGENTS),
            "ip": f"198.51.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "library": {"name": "analytics.js", "version": "5.2.0"},
        }
        if rng.random() < 0.2:
            context["campaign"] = {"name": "autumn", "source": "newsletter", "medium": "email"}
        contexts.append(dumps(context))
    return Pools(properties=properties, contexts=contexts)


def render_properties(variant: tuple[str, str | None], cart_id: str) -> str:
    head, tail = variant
    return head if tail is None else head + cart_id + tail
