"""Ready-to-use calls of every wire format for one site, with its keys: what the admin's
"How to call each format" panel shows. Pure: builds text from the site, touches nothing."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from django.conf import settings

from tracking import keys
from tracking.ingest import raptor
from tracking.models import Site

SAMPLE_USER = "unicorn"
SAMPLE_ANONYMOUS = "a-3bxuAxl18r02UsdTUdk1Ri9"
SAMPLE_COOKIE = "6f1c2b3a-8e4d-4c5b-9a7f-0d1e2f3a4b5c"
SAMPLE_SESSION = "1b2c3d4e-5f60-4718-8a9b-0c1d2e3f4a5b"


@dataclass(frozen=True)
class Example:
    title: str
    summary: str
    code: str


def format_examples(site: Site, *, base_url: str | None = None, now: float | None = None) -> list[Example]:
    base = (base_url or settings.SITE_URL).rstrip("/")
    write_key = site.primary_write_key()
    key = write_key.key if write_key else "NO-ACTIVE-WRITE-KEY"
    ts = str(int(now if now is not None else time.time()))
    sign = keys.sign_identity(site.signing_secret, SAMPLE_USER)
    return [
        _segment(base, key, sign if site.only_signed_data else None),
        _tracardi(base, key),
        _tracktor(base, key, ts, sign, site.only_signed_data),
        _raptor(base, key, site),
    ]


def _segment(base: str, key: str, sign: str | None) -> Example:
    message = {"userId": SAMPLE_USER, "event": "Order Completed", "properties": {"total": 3.98}}
    if sign:
        message["signature"] = sign
    body = json.dumps(message)
    signed = (
        " This site accepts only signed data: userId needs signature, HMAC-SHA256(signing secret, "
        "userId) in hex, computed on your server."
        if sign
        else ""
    )
    return Example(
        "Segment HTTP API",
        "Write key as the HTTP Basic user (or writeKey in the body). Segment's libraries work "
        f"unchanged with their host set to {base} (analytics.js: apiHost {base.split('://', 1)[-1]}/v1)."
        + signed,
        f"curl -u '{key}:' -H 'Content-Type: application/json' \\\n"
        f"  -d '{body}' \\\n  {base}/v1/track",
    )


def _tracardi(base: str, key: str) -> Example:
    payload = {
        "source": {"id": key},
        "session": {"id": SAMPLE_SESSION},
        "events": [{"type": "page-view", "properties": {"pageTitle": "My Page"}}],
    }
    return Example(
        "Tracardi",
        "POST the tracker payload; source.id is the write key. Keep the returned profile.id and "
        "send it back as profile.id. Tracardi's JS tracker: tracker.url.api = "
        f"\"{base}\", tracker.source.id = \"{key}\".",
        f"POST {base}/track\nContent-Type: application/json\n\n{json.dumps(payload, indent=2)}",
    )


def _tracktor(base: str, key: str, ts: str, sign: str, only_signed: bool) -> Example:
    def url(path: str, **params: str) -> str:
        return f"{base}/{path}?" + urlencode({"sid": key, "ts": ts, **params}, quote_via=quote)

    calls = [
        ("set properties", url("set", id=SAMPLE_USER, sign=sign, data="{billing_plan:'Gold'}")),
        ("track an event", url("track", id=SAMPLE_USER, sign=sign, action="rated item",
                               data="{category:'tires',rating:5}")),
        ("an anonymous visitor's event", url("track", id=SAMPLE_ANONYMOUS, action="Visited pricing")),
        ("merge the visitor into the person (alias)",
         url("alias", srcid=SAMPLE_ANONYMOUS, destid=SAMPLE_USER, destsign=sign)),
        ("set the cart (also cancelCart, purchaseCart)", url("track", id=SAMPLE_USER, sign=sign, action="setCart",
         data="{totalprice:3.98,products:[{name:'Zephir 1kg pack',price:1.99,count:2}]}")),
    ]
    required = "required: this site accepts only signed data" if only_signed else "optional until you turn on only signed data"
    return Example(
        "Tracktor.io",
        f"GET calls; sid is the write key, ts the Unix time, data JSON or a JavaScript object literal "
        f"(url-encoded). sign is HMAC-SHA256(signing secret, id) in hex, computed on your server "
        f"({required}); the sign below is {SAMPLE_USER!r}'s. Anonymous ids start with a-.",
        _commented(calls),
    )


def _raptor(base: str, key: str, site: Site) -> Example:
    mapping = raptor.effective_mapping(site.raptor_mapping)
    samples = {raptor.EVENT_TYPE: "itemclick", "product_id": "12345", "category_id": "42", "price": "19.95"}
    params = {param: samples[target] for param, target in mapping.items() if target in samples}
    params |= {"coid": SAMPLE_COOKIE, "sid": SAMPLE_SESSION}
    if site.only_signed_data:
        users = (
            "This site accepts only signed data and Raptor calls carry no signature: send them "
            "without ruid or a user id parameter (they are refused otherwise)."
        )
    else:
        params["ruid"] = base64.b64encode(b"unicorn@example.com").decode()
        users = "ruid is the user id in base64."
    params["am"] = "GetSimilarItems"
    query = urlencode(params, quote_via=quote)
    described = ", ".join(f"{param} = {target}" for param, target in mapping.items())
    return Example(
        "Raptor",
        f"GET (an image tag will do: the answer is a 1×1 GIF). The site is named by its write key "
        f"or its id ({site.pk}). Mapping in use: {described}; other pN are kept as properties pN. "
        f"{users} am is the recommendation module of an item click.",
        _commented([("by write key", f"{base}/t/{key}.rsa?{query}"), ("by site id", f"{base}/t/{site.pk}.rsa?{query}")]),
    )


def _commented(calls: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"# {label}\n{line}" for label, line in calls)
