"""Realistic demo traffic for the demo shop, sent through the ingestion service.

``demo_traffic(seed, people, days, now)`` plays a few thousand shoppers over the last
``days`` days and yields each person's calls in time order, as ``Message`` lists: visits
(page views with URL, referrer, campaign and user agent), category and product views
under Segment's e-commerce names, carts (``set-cart`` / ``purchase-cart``), sign-ups and
logins (identify with traits), people who come back on other days and other devices, and
a few group calls for the business buyers. The same seed and ``now`` give the same
traffic; ``load_demo`` batches it into ``ingest_batch``.

Nothing here touches the database.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracking.ingest.schema import Kind, Message

SHOP = "https://demo-shop.example"

CATEGORIES: dict[str, tuple[tuple[str, ...], float, float]] = {
    # category: (product nouns, lowest price, highest price)
    "clothing": (("T-shirt", "Hoodie", "Jeans", "Rain jacket", "Wool sweater", "Chinos"), 12, 140),
    "shoes": (("Running shoes", "Sneakers", "Hiking boots", "Sandals", "Loafers"), 35, 190),
    "electronics": (("Headphones", "Smartwatch", "Bluetooth speaker", "E-reader", "Power bank"), 20, 420),
    "home": (("Coffee grinder", "Desk lamp", "Throw blanket", "Chef knife", "Plant pot"), 9, 160),
    "beauty": (("Face cream", "Shampoo", "Perfume", "Lip balm"), 5, 95),
    "sports": (("Yoga mat", "Water bottle", "Dumbbells", "Bike helmet", "Tennis racket"), 10, 230),
    "books": (("Cookbook", "Travel guide", "Novel", "Children's book"), 8, 45),
}
# How often shoppers browse each category (clothing and shoes lead, as in most shops).
CATEGORY_WEIGHTS = (30, 18, 16, 12, 9, 9, 6)
ADJECTIVES = ("Classic", "Urban", "Nordic", "Pro", "Everyday", "Organic", "Slim", "Vintage")
BRANDS = ("Acme", "Northwind", "Lumen", "Fjord", "Kestrel", "Tandem")

FIRST_NAMES = (
    "Anna", "Ben", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
    "Kira", "Liam", "Maya", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tara",
    "Umar", "Vera", "Wei", "Ximena", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Andersen", "Brown", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Hansen", "Ivanova",
    "Jensen", "Kowalski", "Lambert", "Müller", "Novak", "Olsen", "Petrov", "Rossi", "Smith",
    "Tanaka", "Weber",
)
CITIES = (
    "Berlin", "London", "Paris", "Madrid", "Warsaw", "Amsterdam", "Vienna", "Prague",
    "Stockholm", "Lisbon", "Milan", "Copenhagen",
)
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
)
# (referrer, utm source, utm medium): where visits come from.
SOURCES = (
    ("https://www.google.com/", None, None),
    ("https://www.google.com/", "google", "cpc"),
    ("https://www.facebook.com/", "facebook", "social"),
    ("https://www.instagram.com/", "instagram", "social"),
    ("", "newsletter", "email"),
    ("", None, None),  # direct
)
SOURCE_WEIGHTS = (34, 14, 10, 8, 9, 25)
CAMPAIGNS = ("autumn-sale", "black-friday", "new-arrivals", "free-shipping")
# When shoppers come, in UTC for a shop selling in Europe (UTC+1): hardly anyone at night,
# a lunch bump and the evening peak; Saturday is the quiet day, Sunday evening a busy one.
HOUR_WEIGHTS = (
    1.5, 0.8, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.5, 4.0, 4.5, 5.0,
    5.5, 5.0, 4.5, 4.5, 4.8, 5.5, 6.5, 7.0, 7.5, 6.5, 4.5, 2.8,
)
WEEKDAY_WEIGHTS = (1.0, 0.97, 0.95, 0.95, 0.85, 0.7, 0.95)  # Monday first
COMPANIES = (
    ("acme-corp", {"name": "Acme Corp", "industry": "manufacturing", "employees": 420}),
    ("globex", {"name": "Globex", "industry": "energy", "employees": 1200}),
    ("initech", {"name": "Initech", "industry": "software", "employees": 85}),
    ("umbrella", {"name": "Umbrella Health", "industry": "healthcare", "employees": 3100}),
    ("hooli", {"name": "Hooli", "industry": "software", "employees": 9000}),
)


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    name: str
    category: str
    brand: str
    price: float

    def as_properties(self) -> dict[str, Any]:
        return {
            "product_id": self.product_id,
            "sku": self.product_id.upper(),
            "name": self.name,
            "category": self.category,
            "brand": self.brand,
            "price": self.price,
            "currency": "EUR",
            "url": f"{SHOP}/p/{self.product_id}",
        }


def catalogue(rng: random.Random) -> dict[str, list[Product]]:
    products: dict[str, list[Product]] = {}
    number = 1000
    for category, (nouns, low, high) in CATEGORIES.items():
        items = []
        for noun in nouns:
            for adjective in rng.sample(ADJECTIVES, 2):
                number += 1
                price = round(rng.uniform(low, high), 0) - 0.01
                items.append(Product(f"p{number}", f"{adjective} {noun}", category, rng.choice(BRANDS), price))
        products[category] = items
    return products


@dataclass
class _Person:
    number: int
    user_id: str | None = None  # set once signed up
    traits: dict[str, Any] = field(default_factory=dict)
    devices: list[tuple[str, str]] = field(default_factory=list)  # (anonymous id, user agent)
    logged_in_on: set[str] = field(default_factory=set)  # anonymous ids of devices they logged in on
    cart: dict[str, list[Any]] = field(default_factory=dict)  # product id -> [product, count]
    cart_id: str | None = None
    orders: int = 0
    company: str | None = None


class _Visit:
    """One person's calls, stamped in order: each call moves the clock on a little."""

    def __init__(self, person: _Person, rng: random.Random, at: datetime, device: tuple[str, str], seed: int):
        self.person = person
        self.rng = rng
        self.at = at
        self.anonymous_id, self.user_agent = device
        # A device they logged in on usually remembers them; a new one knows nobody.
        self.logged_in = self.anonymous_id in person.logged_in_on and rng.random() < 0.8
        self.messages: list[Message] = []
        self.seed = seed
        source = rng.choices(SOURCES, SOURCE_WEIGHTS)[0]
        self.referrer = source[0]
        self.campaign = None
        if source[1]:
            self.campaign = {"name": rng.choice(CAMPAIGNS), "source": source[1], "medium": source[2]}
        self.ip = f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        self.previous_url = self.referrer

    def _tick(self, low: float = 5, high: float = 120) -> None:
        self.at += timedelta(seconds=self.rng.uniform(low, high))

    def _context(self, url: str | None = None, title: str = "") -> dict[str, Any]:
        context: dict[str, Any] = {"userAgent": self.user_agent, "ip": self.ip, "locale": "en-GB"}
        if url:
            path = url.removeprefix(SHOP) or "/"
            context["page"] = {"url": url, "path": path, "referrer": self.previous_url, "title": title}
        if self.campaign:
            context["campaign"] = self.campaign
        return context

    def _send(self, kind: Kind, **fields: Any) -> Message:
        fields.setdefault("context", self._context())
        message = Message(
            kind=kind,
            user_id=self.person.user_id if self.logged_in else None,
            anonymous_id=self.anonymous_id,
            timestamp=self.at,
            message_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            **fields,
        )
        self.messages.append(message)
        return message

    def page(self, path: str, title: str, **properties: Any) -> None:
        url = f"{SHOP}{path}"
        self._send(
            Kind.PAGE,
            properties={"name": title, "path": path, "url": url, "referrer": self.previous_url, **properties},
            context=self._context(url, title),
        )
        self.previous_url = url
        self._tick()

    def track(self, event: str, properties: dict[str, Any], *, url: str | None = None) -> None:
        self._send(Kind.TRACK, event=event, properties=properties, context=self._context(url or self.previous_url))
        self._tick(2, 40)

    def cart_call(self, action: str) -> None:
        person = self.person
        products = [
            {"product_id": p.product_id, "name": p.name, "price": p.price, "count": count, "category": p.category}
            for p, count in person.cart.values()
        ]
        total = round(sum(p.price * count for p, count in person.cart.values()), 2)
        properties: dict[str, Any] = {"cart_id": person.cart_id, "totalprice": total, "products": products}
        if action == "purchase-cart":
            properties["order_id"] = f"o-{person.number}-{person.orders}"
        self._send(Kind.CART, event=action, properties=properties)

    def identify(self, traits: dict[str, Any] | None = None) -> None:
        self.logged_in = True
        self.person.logged_in_on.add(self.anonymous_id)
        self._send(Kind.IDENTIFY, traits=traits or {})
        self._tick(1, 10)


def _new_device(rng: random.Random) -> tuple[str, str]:
    token = "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", k=22))
    return f"a-{token}", rng.choice(USER_AGENTS)


def _sign_up(visit: _Visit, rng: random.Random) -> None:
    person = visit.person
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    person.user_id = f"user-{person.number:06d}"
    person.traits = {
        "email": f"{first.lower()}.{last.lower()}.{person.number}@example.com",
        "name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "plan": "pro" if rng.random() < 0.2 else "free",
        "city": rng.choice(CITIES),
        "created_at": visit.at.isoformat(),
    }
    visit.page("/signup", "Create your account")
    visit.identify(dict(person.traits))
    visit.track("Signed Up", {"method": rng.choice(("email", "google", "apple")), "plan": person.traits["plan"]})
    if rng.random() < 0.05:
        person.company, company_traits = rng.choice(COMPANIES)
        visit._send(Kind.GROUP, group_id=person.company, traits=dict(company_traits))


def _log_in(visit: _Visit, rng: random.Random) -> None:
    visit.page("/login", "Log in")
    visit.identify()
    visit.track("Logged In", {"method": rng.choice(("email", "google"))})


def _play_visit(visit: _Visit, products: dict[str, list[Product]], rng: random.Random) -> None:
    person = visit.person
    landing = rng.random()
    if landing < 0.45:
        visit.page("/", "Demo shop")
    if person.user_id and not visit.logged_in and rng.random() < 0.5:
        _log_in(visit, rng)
    elif person.user_id is None and rng.random() < 0.06:
        _sign_up(visit, rng)
    if person.user_id and visit.logged_in and rng.random() < 0.04:
        # People change their minds about their plan; a set call keeps the history.
        plan = "pro" if person.traits.get("plan") != "pro" else "free"
        person.traits["plan"] = plan
        visit.identify({"plan": plan})
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        category = rng.choices(list(CATEGORIES), CATEGORY_WEIGHTS)[0]
        listing = products[category]
        visit.page(f"/c/{category}", category.capitalize(), category=category)
        visit.track(
            "Product List Viewed",
            {
                "list_id": f"{category}-all",
                "category": category,
                "products": [{"product_id": p.product_id, "price": p.price} for p in listing[:6]],
            },
        )
        for product in rng.sample(listing, rng.choice((0, 1, 1, 2, 2, 3, 4))):
            visit.page(f"/p/{product.product_id}", product.name, category=category)
            visit.track("Product Viewed", product.as_properties())
            if rng.random() < 0.22:
                if person.cart_id is None:
                    person.cart_id = f"c-{person.number}-{person.orders}"
                quantity = 1 if rng.random() < 0.85 else 2
                entry = person.cart.setdefault(product.product_id, [product, 0])
                entry[1] += quantity
                visit.track("Product Added", {**product.as_properties(), "quantity": quantity, "cart_id": person.cart_id})
                visit.cart_call("set-cart")
    if person.cart and rng.random() < 0.12:
        product, count = person.cart.pop(rng.choice(sorted(person.cart)))
        visit.track("Product Removed", {**product.as_properties(), "quantity": count, "cart_id": person.cart_id})
        visit.cart_call("set-cart" if person.cart else "cancel-cart")
        if not person.cart:
            person.cart_id = None
    if person.cart and rng.random() < 0.45:
        _checkout(visit, rng)


def _checkout(visit: _Visit, rng: random.Random) -> None:
    person = visit.person
    total = round(sum(p.price * count for p, count in person.cart.values()), 2)
    lines = [
        {"product_id": p.product_id, "name": p.name, "category": p.category, "price": p.price, "quantity": count}
        for p, count in person.cart.values()
    ]
    visit.page("/checkout", "Checkout")
    visit.track("Checkout Started", {"cart_id": person.cart_id, "value": total, "currency": "EUR", "products": lines})
    if rng.random() > 0.7:
        return  # the cart stays; abandonment will notice
    if person.user_id is None:
        _sign_up(visit, rng)
    elif not visit.logged_in:
        _log_in(visit, rng)
    shipping = 0.0 if total >= 50 else 4.95
    visit.track(
        "Order Completed",
        {
            "order_id": f"o-{person.number}-{person.orders}",
            "cart_id": person.cart_id,
            "revenue": total,
            "shipping": shipping,
            "total": round(total + shipping, 2),
            "currency": "EUR",
            "coupon": "WELCOME10" if person.orders == 0 and rng.random() < 0.3 else None,
            "products": lines,
        },
        url=f"{SHOP}/checkout",
    )
    visit.cart_call("purchase-cart")
    visit.page("/checkout/thank-you", "Thank you")
    person.orders += 1
    person.cart = {}
    person.cart_id = None


def _busy(at: datetime, rng: random.Random) -> bool:
    """Whether a visit happens at ``at``: kept with the odds of its hour and weekday."""
    odds = HOUR_WEIGHTS[at.hour] / max(HOUR_WEIGHTS) * WEEKDAY_WEIGHTS[at.weekday()] / max(WEEKDAY_WEIGHTS)
    return rng.random() < odds


def demo_traffic(*, seed: int, people: int, days: int, now: datetime) -> Iterator[list[Message]]:
    """Each person's calls in time order, one list per person, all before ``now``."""
    rng = random.Random(seed)
    products = catalogue(rng)
    start = now - timedelta(days=days)
    last_visit = now - timedelta(hours=1)  # a visit starting later might end after now
    span = (last_visit - start).total_seconds()
    for number in range(1, people + 1):
        person = _Person(number=number)
        person.devices.append(_new_device(rng))
        # Arrivals spread over the period, up to the last hour, at the times people shop;
        # about 40% come back, some many times.
        at = start + timedelta(seconds=rng.uniform(0, span))
        while not _busy(at, rng):
            at = start + timedelta(seconds=rng.uniform(0, span))
        visits = 1
        while rng.random() < (0.4 if visits == 1 else 0.6) and visits < 12:
            visits += 1
        messages: list[Message] = []
        for _ in range(visits):
            if at >= last_visit:
                break
            if person.user_id and rng.random() < 0.2:
                person.devices.append(_new_device(rng))  # a phone, a work laptop
            device = rng.choice(person.devices[-2:])
            visit = _Visit(person, rng, at, device, seed)
            _play_visit(visit, products, rng)
            messages.extend(visit.messages)
            # The next visit: hours to weeks later (always past the session timeout).
            ended = visit.at
            at = ended + timedelta(hours=rng.expovariate(1 / 120) + 0.5)
            while not _busy(at, rng):
                at = ended + timedelta(hours=rng.expovariate(1 / 120) + 0.5)
        yield [m for m in messages if m.timestamp < now]
