"""Every public ingestion endpoint against hostile or odd input (DESIGN "Wire formats":
bad input gets a JSON error naming the field and reason, never a 500, and nothing of a
refused request is stored).

Property tests generate the input: random JSON at every field of a valid message, odd
numbers and strings (NaN, 10^400, NUL, lone surrogates, invalid UTF-8), broken bodies
and encodings, odd query strings. Each checks that the answer is not a 500, that an
error is JSON with ``code`` and ``message``, and that a refused request stored nothing.
The regression tests below them pin each input the properties found.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import secrets
import zlib
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.models import Identity, Profile
from tests.factories import SiteFactory
from tracking import inbox
from tracking.ingest.profile_tokens import redeem
from tracking.models import Event, InboxBatch

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),  # more for a longer hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ERROR_STATUSES = {400, 401, 403, 404, 405, 413, 414, 415, 429}


@pytest.fixture
def fuzz_site(db):
    return SiteFactory(name="Fuzzed")


def write_key(site) -> str:
    return site.primary_write_key().key


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def stored(site) -> tuple[int, int, int, int]:
    return (
        Event.objects.filter(site=site).count(),
        Profile.objects.filter(site=site).count(),
        Identity.objects.filter(site=site).count(),
        InboxBatch.objects.filter(site=site).count(),
    )


def check_answer(response, site, before) -> dict[str, Any] | None:
    """Not a 500; an error is JSON with code and message and stored nothing."""
    status = response.status_code
    assert status in ERROR_STATUSES | {200}, (status, response.content[:500])
    if response["Content-Type"].startswith("image/"):
        assert status == 200
        return None
    body = json.loads(response.content)
    if status >= 400:
        assert isinstance(body.get("code"), str) and body["code"], body
        assert isinstance(body.get("message"), str) and body["message"], body
        assert stored(site) == before, (body, before, stored(site))
    return body


# --- hostile values ------------------------------------------------------------------

# Text with what breaks things: NUL, lone surrogates, very long runs, odd whitespace.
odd_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.sampled_from(["\x00", "\ud800", "\udfff", "a", " ", "\u2028", "é", "\U0001f600"]), max_size=8),
    st.sampled_from(["", " ", "null", "undefined", "NaN", "0", "-1", "true", "1e999", "9" * 40, "x" * 300]),
)
odd_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63, 2**64, -(2**63) - 1, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
)
odd_scalars = st.one_of(st.none(), st.booleans(), odd_numbers, odd_text)
odd_json = st.recursive(
    odd_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(odd_text, inner, max_size=4),
    ),
    max_leaves=12,
)


def encode(value: Any) -> bytes:
    """JSON text of anything: NaN and Infinity as the literals, lone surrogates as
    escapes (what a buggy client sends)."""
    return json.dumps(value, allow_nan=True).encode()


def deep(depth: int, leaf: Any = 1) -> bytes:
    return b'{"a":' * depth + json.dumps(leaf).encode() + b"}" * depth


SEGMENT_BASE = {
    "track": {"type": "track", "userId": "u-1", "event": "Clicked", "properties": {"a": 1}},
    "identify": {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}},
    "page": {"type": "page", "anonymousId": "a-1", "name": "Home", "properties": {"url": "/"}},
    "screen": {"type": "screen", "anonymousId": "a-1", "name": "Home"},
    "group": {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}},
    "alias": {"type": "alias", "userId": "u-2", "previousId": "a-1"},
}
SEGMENT_FIELDS = [
    "type", "userId", "anonymousId", "profileId", "sessionId", "signature", "event", "properties",
    "traits", "context", "integrations", "timestamp", "sentAt", "messageId", "groupId", "previousId",
    "previousSignature", "name", "category", "writeKey",
]
odd_nested = st.dictionaries(odd_text, odd_json, min_size=1, max_size=3)


@st.composite
def segment_messages(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(list(SEGMENT_BASE)))
    message = dict(SEGMENT_BASE[kind])
    for name in draw(st.lists(st.sampled_from(SEGMENT_FIELDS), min_size=1, max_size=3, unique=True)):
        message[name] = draw(odd_json)
    if draw(st.booleans()):
        # Odd content one level down: where values are objects (context, properties).
        where = draw(st.sampled_from(["properties", "traits", "context", "integrations"]))
        message[where] = draw(odd_nested)
    if draw(st.booleans()):
        message[draw(odd_text)] = draw(odd_json)  # an odd key at the top
    return message


def segment_post(client, path, raw: bytes, key: str | None, **headers):
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    headers.setdefault("content_type", "application/json")
    return client.generic("POST", path, raw, **headers)


# --- Segment -----------------------------------------------------------------------


@FUZZ
@given(message=segment_messages(), path=st.sampled_from(["/v1/track", "/v1/i", "/v1/p", "/v1/s", "/v1/g", "/v1/a"]))
def test_segment_single_calls_never_fail_on_odd_fields(client, fuzz_site, message, path):
    before = stored(fuzz_site)
    response = segment_post(client, path, encode(message), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)


@FUZZ
@given(
    items=st.lists(st.one_of(segment_messages(), odd_json), min_size=1, max_size=4),
    shared=st.dictionaries(st.sampled_from(["context", "integrations", "sentAt", "writeKey"]), odd_json, max_size=2),
    path=st.sampled_from(["/v1/batch", "/v1/b", "/v1/import"]),
    strict=st.booleans(),
)
def test_segment_batches_list_each_invalid_message(client, fuzz_site, items, shared, path, strict):
    before = stored(fuzz_site)
    raw = encode({**shared, "batch": items})
    response = segment_post(client, path + ("?strict=1" if strict else ""), raw, write_key(fuzz_site))
    body = check_answer(response, fuzz_site, before)
    if response.status_code == 200:
        for error in body["errors"]:
            assert 0 <= error["index"] < len(items) and error["field"] and error["reason"], error


def test_a_nul_under_an_empty_key_names_the_message(client, fuzz_site):
    # Found by the test above: the error named the field "" (the key), that is nothing.
    items = [
        {"type": "track", "userId": "u-1", "event": "Clicked"},
        {"type": "track", "userId": "u-1", "event": "Clicked", "": ["\x00"]},
    ]
    response = segment_post(client, "/v1/batch", encode({"batch": items}), write_key(fuzz_site))
    assert response.status_code == 200
    [error] = response.json()["errors"]
    assert (error["index"], error["field"]) == (1, "message")


@FUZZ
@given(payload=odd_json, path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/identify", "/v1/alias"]))
def test_segment_bodies_of_any_shape_never_fail(client, fuzz_site, payload, path):
    before = stored(fuzz_site)
    response = segment_post(client, path, encode(payload), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)


@st.composite
def broken_bodies(draw) -> tuple[bytes, dict[str, str]]:
    valid = encode({"batch": [SEGMENT_BASE["track"]]})
    raw = draw(st.one_of(
        st.binary(max_size=64),
        st.just(valid),
        st.just(b""),
        st.just(valid[: len(valid) // 2]),
        st.just(valid.replace(b"Clicked", b"Cl\xff\xfeked")),  # invalid UTF-8 in a string
        st.just(valid.replace(b"Clicked", b"Cl\x00icked")),  # a raw NUL byte
        st.just(b'{"batch": [], "batch": [1]}'),  # duplicate keys
        st.just(b'\xef\xbb\xbf' + valid),  # a byte-order mark
        st.just(deep(1000)),
        st.just(b"[" * 5000),
        st.just(b'{"batch": [' + b"1e400," * 3 + b"1]}"),
        st.just(b'{"writeKey": "' + b"k" * 10_000 + b'"}'),
    ))
    encoding = draw(st.sampled_from(["", "gzip", "deflate", "x-gzip", "br", "gzip, deflate", " GZIP "]))
    how = draw(st.sampled_from(["as is", "compressed", "truncated", "garbage"]))
    if encoding.strip().lower() in ("gzip", "x-gzip", "deflate") and how != "as is":
        packed = gzip.compress(raw) if "gzip" in encoding.lower() else zlib.compress(raw)
        raw = {"compressed": packed, "truncated": packed[: len(packed) // 2], "garbage": packed[:10] + b"\x00" * 10}[how]
    headers = {"content_type": draw(st.sampled_from(["application/json", "text/plain", "", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded"]))}
    if encoding:
        headers["HTTP_CONTENT_ENCODING"] = encoding
    return raw, headers


@FUZZ
@given(body=broken_bodies(), path=st.sampled_from(["/v1/batch", "/v1/track", "/v1/b"]))
def test_segment_broken_bodies_and_encodings_are_refused_cleanly(client, fuzz_site, body, path):
    raw, headers = body
    before = stored(fuzz_site)
    response = segment_post(client, path, raw, write_key(fuzz_site), **headers)
    check_answer(response, fuzz_site, before)


@FUZZ
@given(
    authorization=st.one_of(
        st.none(),
        st.text(max_size=40),
        st.sampled_from(["Basic", "Basic ", "Basic !!!", "Basic " + base64.b64encode(b"\xff\xfe:").decode(), "Bearer x"]),
        st.binary(max_size=20).map(lambda b: "Basic " + base64.b64encode(b).decode()),
    ),
    key_in_body=odd_json,
)
def test_segment_odd_credentials_get_401_not_500(client, fuzz_site, authorization, key_in_body):
    before = stored(fuzz_site)
    headers = {"content_type": "application/json"}
    if authorization is not None:
        headers["HTTP_AUTHORIZATION"] = authorization
    raw = encode({**SEGMENT_BASE["track"], "writeKey": key_in_body})
    try:
        response = client.generic("POST", "/v1/track", raw, **headers)
    except UnicodeEncodeError:
        return  # the test client cannot send such a header; no server would see it
    check_answer(response, fuzz_site, before)


@FUZZ
@given(key=st.text(min_size=1, max_size=300).filter(lambda text: "/" not in text))
def test_segment_settings_for_any_key(client, fuzz_site, key):
    response = client.get(f"/v1/projects/{quote(key, safe='')}/settings")
    assert response.status_code in (200, 404), response.content[:300]
    body = response.json()
    if response.status_code == 404:
        assert body["code"] and body["message"]


# --- Tracardi ---------------------------------------------------------------------

TRACARDI_FIELDS = ["source", "session", "profile", "context", "properties", "options", "events"]
EVENT_FIELDS = ["type", "properties", "options", "context", "time", "tags"]


@st.composite
def tracardi_payloads(draw, key: str) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "page-view", "properties": {"a": 1}, "time": {"create": "2026-01-01T00:00:00Z"}}
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), max_size=2, unique=True)):
        event[name] = draw(odd_json)
    payload: dict[str, Any] = {
        "source": {"id": key}, "session": {"id": "s-1"}, "profile": {"id": "1"}, "events": [event],
    }
    for name in draw(st.lists(st.sampled_from(TRACARDI_FIELDS), max_size=2, unique=True)):
        payload[name] = draw(odd_json)
    where = draw(st.sampled_from(["session", "profile", "time", None]))
    if where == "time":
        event["time"] = {draw(st.sampled_from(["create", "insert"])): draw(odd_json)}
    elif where is not None:
        payload[where] = {"id": draw(odd_json)}
    return payload


@FUZZ
@given(data=st.data())
def test_tracardi_payloads_never_fail(client, fuzz_site, data):
    payload = data.draw(tracardi_payloads(write_key(fuzz_site)))
    before = stored(fuzz_site)
    response = client.generic("POST", "/track", encode(payload), content_type="application/json")
    check_answer(response, fuzz_site, before)


@FUZZ
@given(body=broken_bodies())
def test_tracardi_broken_bodies_are_refused_cleanly(client, fuzz_site, body):
    raw, headers = body
    before = stored(fuzz_site)
    response = client.generic("POST", "/track", raw, **headers)
    check_answer(response, fuzz_site, before)


# --- query-string formats (Tracktor, Raptor) -------------------------------------------

# Pieces of a raw query string: real names with odd values, repeats, broken escapes.
query_values = st.one_of(
    odd_text.map(lambda text: quote(text.encode("utf-8", "surrogatepass"), safe="")),
    st.sampled_from(["%", "%zz", "%ff%fe", "%00", "%ed%a0%80", "a+b", "", "%C3%28", "%u0041", "1e999", "nan"]),
    odd_json.map(lambda value: quote(encode(value), safe="")),
)


@st.composite
def query_strings(draw, names: list[str], base: dict[str, str]) -> str:
    pairs = [f"{name}={quote(value, safe='')}" for name, value in base.items()]
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        name = draw(st.sampled_from(names) | st.sampled_from(["", "%", "%ff", "=", "&"]))
        pairs.append(f"{name}={draw(query_values)}")
    if draw(st.booleans()):
        pairs = draw(st.permutations(pairs))
    return draw(st.sampled_from(["&", ";", "&&"])).join(pairs)


def raw_get(client, path: str, query: str, *, raw_bytes: bytes | None = None):
    """A GET with this exact query string (as a WSGI server hands it over: Latin-1)."""
    query_string = raw_bytes.decode("iso-8859-1") if raw_bytes is not None else query
    return client.generic("GET", path, QUERY_STRING=query_string)


TRACKTOR_NAMES = ["sid", "ts", "id", "sign", "data", "action", "srcid", "destid", "destsign"]


@FUZZ
@given(data=st.data(), path=st.sampled_from(["/set", "/track", "/alias"]))
def test_tracktor_calls_never_fail(client, fuzz_site, data, path):
    base = {"sid": write_key(fuzz_site), "ts": "1767225600", "id": "u-1", "action": "Clicked", "data": "{a:1}"}
    if path == "/alias":
        base = {"sid": base["sid"], "ts": base["ts"], "srcid": "a-1", "destid": "u-2"}
    query = data.draw(query_strings(TRACKTOR_NAMES, base))
    before = stored(fuzz_site)
    check_answer(raw_get(client, path, query), fuzz_site, before)


RAPTOR_NAMES = ["p1", "p2", "P7", "p7", "p999", "p1000", "coid", "sid", "ruid", "reaid", "xuid", "am", "cb"]


@FUZZ
@given(data=st.data())
def test_raptor_calls_never_fail(client, fuzz_site, data):
    base = {"p1": "visit", "coid": "c-1", "sid": "s-1"}
    query = data.draw(query_strings(RAPTOR_NAMES, base))
    before = stored(fuzz_site)
    check_answer(raw_get(client, f"/t/{write_key(fuzz_site)}.rsa", query), fuzz_site, before)


@FUZZ
@given(
    raw=st.binary(max_size=60),
    path=st.sampled_from(["/set", "/track", "/alias", "raptor"]),
)
def test_query_strings_of_any_bytes_never_fail(client, fuzz_site, raw, path):
    key = write_key(fuzz_site).encode()
    prefix = b"p1=v&coid=c&sid=s&" if path == "raptor" else b"sid=" + key + b"&ts=1767225600&id=u&action=x&"
    target = f"/t/{write_key(fuzz_site)}.rsa" if path == "raptor" else path
    before = stored(fuzz_site)
    check_answer(raw_get(client, target, "", raw_bytes=prefix + raw), fuzz_site, before)


@FUZZ
@given(customer=st.text(max_size=40).filter(lambda text: "/" not in text))
def test_raptor_any_customer_id_never_fails(client, fuzz_site, customer):
    before = stored(fuzz_site)
    response = client.get(f"/t/{quote(customer, safe='')}.rsa?p1=v&coid=c&sid=s")
    if response.status_code == 404 and not response["Content-Type"].startswith("application/json"):
        return  # the path did not reach the view (no such URL): Django's own 404
    check_answer(response, fuzz_site, before)


# --- queued mode: accepted by the web side, then stored by the drain ------------------



NUL_VALUES = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfffy", "\x00\ud83d"])


@st.composite
def nul_messages(draw) -> tuple[str, dict[str, Any]]:
    """A valid message with a NUL or lone surrogate in one string, key or value, anywhere."""
    kind = draw(st.sampled_from(["track", "identify", "page", "group", "alias"]))
    message = json.loads(json.dumps(SEGMENT_BASE[kind]))
    message.setdefault("properties", {})
    message.setdefault("context", {"library": {"name": "x"}})
    bad = draw(NUL_VALUES)
    where = draw(st.sampled_from([
        "userId", "anonymousId", "event", "messageId", "sessionId", "groupId", "previousId", "name",
        "category", "signature", "timestamp", "type", "property key", "property value", "nested key",
        "context value", "top key", "integrations", "list item",
    ]))
    if where == "property key":
        message["properties"][f"k{bad}"] = 1
        message["traits"] = {f"t{bad}": 1}
    elif where == "property value":
        message["properties"]["v"] = bad
        message["traits"] = {"v": bad}
    elif where == "nested key":
        message["context"] = {"page": {f"p{bad}": 1}}
    elif where == "context value":
        message["context"] = {"page": {"url": bad}}
    elif where == "top key":
        message[f"x{bad}"] = 1
    elif where == "integrations":
        message["integrations"] = {bad: True}
    elif where == "list item":
        message["properties"]["list"] = [1, [bad]]
        message["traits"] = {"list": [bad]}
    else:
        message[where] = f"v{bad}"
    return kind, message


def drained_cleanly() -> None:
    stats = inbox.drain(idle_seconds=0)
    assert stats.failed_rows == 0, InboxBatch.objects.filter(failed_at__isnull=False).values_list("last_error", flat=True)[:1]


@FUZZ
@given(call=nul_messages(), batch=st.booleans())
def test_queued_nul_and_surrogates_are_refused_or_stored_never_lost(fuzz_site, queued, call, batch):
    kind, message = call
    client = Client()
    before = stored(fuzz_site)
    path, body = ("/v1/batch", {"batch": [message]}) if batch else (f"/v1/{kind}", message)
    response = segment_post(client, path, encode(body), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)
    drained_cleanly()
    assert not InboxBatch.objects.filter(site=fuzz_site).exists()


# --- regressions: inputs the properties found -----------------------------------------


@pytest.mark.parametrize("key", ["k\x00", "\x00", "k\ud800"])
@pytest.mark.parametrize("where", ["basic", "body"])
def test_segment_a_write_key_no_key_can_be_is_401(client, fuzz_site, key, where):
    """A NUL in the key (Basic ``A00A`` decodes to one) made the key's lookup a 500."""
    before = stored(fuzz_site)
    if where == "basic":
        auth = "Basic " + base64.b64encode(key.encode("utf-8", "surrogatepass") + b":").decode()
        response = client.generic("POST", "/v1/track", encode(SEGMENT_BASE["track"]), content_type="application/json", HTTP_AUTHORIZATION=auth)
    else:
        raw = encode({**SEGMENT_BASE["track"], "writeKey": key})
        response = client.generic("POST", "/v1/track", raw, content_type="application/json")
    assert response.status_code == 401, response.content
    assert response.json()["code"] == "unauthorized"
    assert stored(fuzz_site) == before


@pytest.mark.parametrize("key", ["k\x00", "k\ud800"])
def test_tracardi_a_source_id_no_key_can_be_is_401(client, fuzz_site, key):
    payload = {"source": {"id": key}, "session": {"id": "s-1"}, "events": [{"type": "page-view"}]}
    response = client.generic("POST", "/track", encode(payload), content_type="application/json")
    assert response.status_code == 401, response.content
    assert response.json()["detail"].startswith("Unauthorized Access")


@pytest.mark.parametrize("customer", ["%00", "k%00", "%ED%A0%80"])
def test_raptor_a_customer_id_no_key_can_be_is_401(client, fuzz_site, customer):
    response = client.get(f"/t/{customer}.rsa?p1=v&coid=c&sid=s")
    assert response.status_code == 401, response.content
    assert response.json()["errors"][0]["field"] == "customerid"


@pytest.mark.parametrize("key", ["%00", "k%00"])
def test_settings_and_tracker_config_of_a_key_no_key_can_be_are_404(client, fuzz_site, key):
    for path in (f"/v1/projects/{key}/settings", f"/v1/tracker-config/{key}"):
        response = client.get(path)
        assert response.status_code == 404, (path, response.content)
        assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("query", ["=%00", "cb=a%00b", "c%00b=1", "cb=1&cb=%00"])
def test_raptor_a_nul_in_a_parameter_kept_in_the_context_is_a_400(client, fuzz_site, query):
    """Parameters other than pN and the ids go to context["params"]: a NUL there was
    refused by PostgreSQL only when the event was copied in (500)."""
    before = stored(fuzz_site)
    response = client.get(f"/t/{write_key(fuzz_site)}.rsa?p1=visit&coid=c-1&sid=s-1&{query}")
    assert response.status_code == 400, response.content
    assert "NUL" in response.json()["errors"][0]["reason"]
    assert stored(fuzz_site) == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["session"].update(id="s\x00"), "session.id"),
        (lambda p: p["session"].update(id="s\ud800"), "session.id"),
        (lambda p: p["events"][0].update(type="page\x00view"), "type"),
        (lambda p: p["events"][0].update(type="page\udfffview"), "type"),
    ],
)
def test_tracardi_a_nul_or_lone_surrogate_in_an_id_or_event_type_is_a_400(client, fuzz_site, change, field):
    """Tracardi's session id and event type reached PostgreSQL unchecked (500)."""
    payload = {"source": {"id": write_key(fuzz_site)}, "session": {"id": "s-1"}, "events": [{"type": "page-view"}]}
    change(payload)
    before = stored(fuzz_site)
    response = client.generic("POST", "/track", encode(payload), content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][0]["field"] == field, response.json()
    assert stored(fuzz_site) == before


def long_email(shape: str) -> Any:
    # Random, so that PostgreSQL cannot compress it below the index's entry limit.
    text = secrets.token_hex(1600)
    return {"text": text, "object": {"a": text}, "number": int("1" + "0" * 3000)}[shape]


@pytest.mark.parametrize("shape", ["text", "object", "number"])
@pytest.mark.parametrize("path", ["/v1/identify", "/v1/batch"])
def test_segment_an_email_trait_past_the_search_index_limit_is_a_400(client, fuzz_site, shape, path):
    """The email property is indexed for people search: a 3 KB email made the profile's
    row too large for the index (500 now, set aside after a 200 when queued)."""
    message = {"type": "identify", "userId": "u-1", "traits": {"email": long_email(shape), "plan": "pro"}}
    body = {"batch": [message]} if path == "/v1/batch" else message
    before = stored(fuzz_site)
    response = segment_post(client, path, encode(body), write_key(fuzz_site))
    assert response.status_code == 400, response.content[:300]
    assert response.json()["errors"][0]["field"] == "traits.email"
    assert stored(fuzz_site) == before


def test_tracktor_an_email_past_the_search_index_limit_is_a_400(client, fuzz_site):
    data = quote(json.dumps({"email": long_email("text")}))
    response = client.get(f"/set?sid={write_key(fuzz_site)}&ts=1767225600&id=u-1&data={data}")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["errors"][0]["field"] == "data.email"


def test_an_email_of_any_real_length_is_stored(client, fuzz_site):
    email = "x" * 64 + "@" + "d" * 251 + ".com"
    message = {"type": "identify", "userId": "u-1", "traits": {"email": email}}
    response = segment_post(client, "/v1/identify", encode(message), write_key(fuzz_site))
    assert response.status_code == 200, response.content
    assert Profile.objects.get(pk=redeem(response.json()["profile_id"])).properties["email"] == email


def test_queued_an_email_past_the_search_index_limit_is_refused_not_set_aside(fuzz_site, queued):
    message = {"type": "identify", "userId": "u-1", "traits": {"email": long_email("text")}}
    response = segment_post(Client(), "/v1/identify", encode(message), write_key(fuzz_site))
    assert response.status_code == 400, response.content[:300]
    drained_cleanly()
    assert not InboxBatch.objects.filter(site=fuzz_site).exists()


@pytest.mark.parametrize("number", ["1e400", "-1E999", "1" + "0" * 400 + ".5"])
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
def test_segment_a_number_past_a_double_is_refused_not_stored_as_null(client, fuzz_site, number, path):
    """JSON allows 1e400, but Python reads it as infinity, which was then written as
    null: the event was stored with a value other than the one sent."""
    message = encode(SEGMENT_BASE["track"]).replace(b'"a": 1', b'"a": ' + number.encode())
    raw = b'{"batch": [' + message + b"]}" if path == "/v1/batch" else message
    before = stored(fuzz_site)
    response = segment_post(client, path, raw, write_key(fuzz_site))
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_json"
    assert number[:5] in response.json()["message"]
    assert stored(fuzz_site) == before


@pytest.mark.parametrize("depth", [100, 250, 300, 600, 916, 960, 1020, 1100, 5000])
@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch", "/track"])
def test_deeply_nested_properties_are_stored_or_refused_cleanly(client, fuzz_site, depth, path):
    """Properties nested about a thousand deep were read, then failed to be written
    (RecursionError: a 500); the limit is now what orjson writes, 254 levels."""
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    if path == "/track":
        raw = encode({"source": {"id": write_key(fuzz_site)}, "session": {"id": "s-1"}, "events": [{"type": "x", "properties": {"p": 0}}]})
        raw = raw.replace(b'{"p": 0}', nested)
    else:
        raw = encode(SEGMENT_BASE["track"]).replace(b'{"a": 1}', nested)
        raw = b'{"batch": [' + raw + b"]}" if path == "/v1/batch" else raw
    before = stored(fuzz_site)
    response = client.generic("POST", path, raw, content_type="application/json", HTTP_AUTHORIZATION=basic(write_key(fuzz_site)))
    body = check_answer(response, fuzz_site, before)
    if depth <= 250:
        assert response.status_code == 200, body
    else:
        assert response.status_code == 400 and body["code"] == "invalid_json", body



# Dates a client may send: any year the adapters take, any offset ISO 8601 allows, and
# what RFC 3339 allows beyond fromisoformat (a lower-case z, 24:00, a leap second).
odd_offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: f"{'+' if minutes >= 0 else '-'}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
)
odd_dates = st.builds(
    lambda moment, offset, shape: {
        "offset": moment.isoformat() + offset,
        "Z": moment.isoformat() + "Z",
        "z": moment.isoformat() + "z",
        "naive": moment.isoformat(),
        "date": moment.date().isoformat(),
        "24:00": f"{moment.date().isoformat()}T24:00:00{offset}",
        "leap": f"{moment.date().isoformat()}T{moment.hour:02d}:59:60{offset}",
    }[shape],
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
    odd_offsets,
    st.sampled_from(["offset", "Z", "z", "naive", "date", "24:00", "leap"]),
)


@FUZZ
@given(timestamp=st.none() | odd_dates, sent_at=st.none() | odd_dates, batch_sent_at=st.none() | odd_dates)
def test_segment_any_dates_are_stored_or_refused_cleanly(client, fuzz_site, timestamp, sent_at, batch_sent_at):
    message = {**SEGMENT_BASE["track"], "timestamp": timestamp, "sentAt": sent_at}
    before = stored(fuzz_site)
    response = segment_post(client, "/v1/batch", encode({"batch": [message], "sentAt": batch_sent_at}), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)


@FUZZ
@given(
    moment=st.one_of(
        odd_dates,
        st.integers(min_value=-(10**20), max_value=10**20),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    name=st.sampled_from(["create", "insert"]),
)
def test_tracardi_any_event_time_is_stored_or_refused_cleanly(client, fuzz_site, moment, name):
    payload = {"source": {"id": write_key(fuzz_site)}, "session": {"id": "s-1"}, "events": [{"type": "x", "time": {name: moment}}]}
    before = stored(fuzz_site)
    response = client.generic("POST", "/track", encode(payload), content_type="application/json")
    check_answer(response, fuzz_site, before)


@FUZZ
@given(ts=st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["1e308", "-0", "0x10", "1_000", " 1767225600 ", "１７６７２２５６００"]),
))
def test_tracktor_any_ts_is_stored_or_refused_cleanly(client, fuzz_site, ts):
    before = stored(fuzz_site)
    response = client.get("/track", {"sid": write_key(fuzz_site), "ts": ts, "id": "u-1", "action": "x"})
    check_answer(response, fuzz_site, before)


@FUZZ
@given(items=st.lists(segment_messages(), min_size=1, max_size=3), strict=st.booleans())
def test_queued_what_is_accepted_is_stored_by_the_drain(fuzz_site, queued, items, strict):
    """In queued mode a 200 is a promise: the drain must store what was accepted, not
    set it aside."""
    before = stored(fuzz_site)
    response = segment_post(Client(), "/v1/batch" + ("?strict=1" if strict else ""), encode({"batch": items}), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)
    drained_cleanly()
    assert not InboxBatch.objects.filter(site=fuzz_site).exists()


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
@pytest.mark.parametrize("bad", ["\\u0000", "\\ud800"])
def test_segment_a_nul_escape_in_a_body_not_in_utf8_is_refused(client, fuzz_site, codec, bad):
    """The standard library reads JSON in UTF-16 and UTF-32 too, where the scan for
    escapes PostgreSQL cannot store (on the body's bytes) saw none: 500."""
    text = '{"type": "track", "userId": "u-1", "event": "Clicked", "properties": {"a": "xBADy"}}'.replace("BAD", bad)
    before = stored(fuzz_site)
    response = segment_post(client, "/v1/track", text.encode(codec), write_key(fuzz_site))
    assert response.status_code == 400, response.content[:300]
    assert stored(fuzz_site) == before


def test_queued_a_nul_escape_in_utf16_is_refused_not_set_aside(fuzz_site, queued):
    text = '{"type": "track", "userId": "u-1", "event": "Clicked", "properties": {"a": "x\\u0000y"}}'
    response = segment_post(Client(), "/v1/track", text.encode("utf-16"), write_key(fuzz_site))
    assert response.status_code == 400, response.content[:300]
    drained_cleanly()
    assert not InboxBatch.objects.filter(site=fuzz_site).exists()


def test_segment_too_many_query_fields_is_a_json_400(client, fuzz_site):
    """Django refuses more than 1,000 query fields when the view reads ``?strict``:
    its HTML page was the answer, with no ``code`` for a library to read."""
    query = "&".join(f"x{i}=1" for i in range(1001))
    before = stored(fuzz_site)
    response = segment_post(client, f"/v1/track?{query}", encode(SEGMENT_BASE["track"]), write_key(fuzz_site))
    assert response.status_code == 400
    assert response.json()["code"] == "bad_request"
    assert stored(fuzz_site) == before


@FUZZ
@given(
    message=segment_messages(),
    signature=st.one_of(odd_json, st.sampled_from(["", "é", "ff" * 32, "FF" * 32 + " ", "\x00"])),
    where=st.sampled_from(["signature", "previousSignature", "context"]),
)
def test_secure_sites_refuse_odd_signatures_cleanly(client, fuzz_site, message, signature, where):
    fuzz_site.only_signed_data = True
    fuzz_site.save(update_fields=["only_signed_data"])
    if where == "context":
        message = {**message, "context": {"signature": signature}}
    else:
        message = {**message, where: signature}
    before = stored(fuzz_site)
    response = segment_post(client, "/v1/batch", encode({"batch": [message]}), write_key(fuzz_site))
    check_answer(response, fuzz_site, before)
