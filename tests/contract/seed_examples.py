"""The vendor documents' examples (../shared/seeds/), verbatim, for the contract tests
and the adapters' unit tests. Only hosts and keys are ever changed, by the tests."""

from __future__ import annotations

# --- Tracardi (tracardi-integration.txt) -------------------------------------------------

# The "full-fledged tracker payload".
TRACARDI_FULL = {
    "source": {"id": "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"},
    "session": {"id": "bfb3-bf0c8c8d3387-3ee63fc6-490a-4fd8"},
    "profile": {"id": "bf0c8c8d3387-3ee63fc6-490a-4fd8bfb3"},
    "context": {
        "system": "webstore-backend",
        "webstore": {"url": "http://magento-store.com", "name": "Shoe store"},
        "client": {"browser": "Mozilla Firefox"},
    },
    "properties": {},
    "events": [
        {
            "type": "page-view",
            "properties": {"pageTitle": "My Page"},
            "options": {"saveEvent": False, "saveSession": False, "debugger": False},
            "context": {"tag": "product-details-page"},
        },
        {
            "type": "consent-granted",
            "properties": {"marketing": False, "general": True},
            "options": {"profile": True, "saveSession": False},
        },
        {
            "type": "product-in-basket",
            "properties": {"product": "Adidas sneakers", "price": 34.43},
            "options": {"profile": False, "logs": False},
        },
    ],
    "options": {},
}

# The "minimalistic tracker payload".
TRACARDI_MINIMAL = {
    "source": {"id": "f14dc4b1-8dd8-4fc1-bd14-d6823ba7013e"},
    "session": {"id": "d6823ba7013e-8dd8-4fc1-bd14-f14dc4b1"},
    "events": [
        {"type": "page-view", "properties": {"pageTitle": "My Page"}},
        {"type": "consent-granted", "properties": {"marketing": False, "general": True}},
        {"type": "product-in-basket", "properties": {"product": "Adidas sneakers", "price": 34.43}},
    ],
}

# --- Tracktor.io (tracktor-docs.txt) ------------------------------------------------------

# Its example calls (the set-properties example is sent to /track too).
TRACKTOR_SET = "http://api.tracktor.io/track?sid=00000000000&ts=1429186474&id=unicorn&data=%7Bbilling_plan%3A%27Gold%27%7D"
TRACKTOR_TRACK = (
    "http://api.tracktor.io/track?sid=00000000000&ts=1429186474&id=unicorn&action=rated%20item"
    "&data=%7Bcategory%3A%27tires%27%2Citem%3A%27Acme%20inc%20R14%27%2Crating%3A5%7D"
)
TRACKTOR_ALIAS = "https://api.tracktor.io/track?sid=00000000000&ts=1429186474&srcid=a-x123124123&destid=unicorn"
TRACKTOR_DOC_KEY = "00000000000"
# Secure mode: its secret, identity and the signature its C# code prints.
TRACKTOR_SECRET = "2D8CarQ4rX3WvH6TK7DpJDk5"
TRACKTOR_IDENTITY = "5115"
TRACKTOR_SIGNATURE = "9622E88BED0B5BC186286CB9504A02E5F3B4207DCA0AB23CA4FBDDFC15627E2F"
# The JavaScript samples' objects, as the library would send them in data.
TRACKTOR_SET_PROPERTIES = (
    "{email: 'unicorn@example.com', first_name: 'Dave', last_name: 'Johnson', age: 25, billing_plan: 'free'}"
)
TRACKTOR_TRACK_DATA = "{productid: 33156, category: 'Consumer electronics', rating: 5, comment: 'Very good product!'}"
TRACKTOR_CART = """{
  totalprice: 3.98,
  products:
  [
    {name: "Marshmallows 1kg pack", price: 1.99, color: "green"},
    {name: "Zephir 1kg pack", price: 1.99}
  ],
  paid_with: "Credit card",
  card_type: "VISA",
  shipping_method: "in-store pick up"
}"""

# --- Raptor (raptor-server-side-tracking.txt) ---------------------------------------------

# Its URLs; [placeholders] are filled in by the tests.
RAPTOR_TRACKING = (
    "https://t.raptorsmartadvisor.com/[customerid].rsa?p1=[p1]&p2=[p2]&p999=[p999]"
    "&coid=[cookieId]&ruid=[base64UserId]&sid=[sessionId]"
)
RAPTOR_ITEM_CLICK = (
    "https://t.raptorsmartadvisor.com/[customerid].rsa?p1=itemclick&p2=12345&p999=[p999]"
    "&coid=[cookieId]&ruid=[base64UserId]&sid=[sessionId]&am=[GetSimilarItems]"
)
