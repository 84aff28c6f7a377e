"""The Segment adapter alone: bodies and messages in, ``Message`` objects and errors out."""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.wire_times import EXTRA_FORMS, STILL_INVALID
from tracking import services
from tracking.ingest import segment
from tracking.ingest.profile_tokens import issue
from tracking.ingest.schema import FieldError, Kind
from tracking.ingest.segment import Body, RequestRejected

CLIENT_IP = "203.0.113.7"


def body_of(payload: Any) -> Body:
    return segment.decode_body(json.dumps(payload).encode())


def parse(
    payload: Any, endpoint: str = "batch", client_ip: str | None = CLIENT_IP
) -> segment.ParsedRequest:
    return segment.parse_request(body_of(payload), endpoint=endpoint, client_ip=client_ip)


def one(message: dict[str, Any], endpoint: str = "batch"):
    """Parse one message in a batch; return it or its errors as dicts."""
    parsed = parse({"batch": [message]} if endpoint == "batch" else message, endpoint)
    if parsed.errors:
        return [error.as_dict() for error in parsed.errors]
    return parsed.messages[0]


def rejected(call) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        call()
    return info.value


def basic(user: str, password: str = "") -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- bodies -------------------------------------------------------------------------


def test_it_decodes_a_json_object_body():
    body = segment.decode_body(b'{"writeKey": "wk_1", "batch": []}')
    assert body.payload == {"writeKey": "wk_1", "batch": []}
    assert body.size == 33
    assert not body.has_risky_escape


def test_it_inflates_gzip_bodies():
    raw = gzip.compress(json.dumps({"event": "x"}).encode())
    assert segment.decode_body(raw, content_encoding="gzip").payload == {"event": "x"}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   ",
        b"{",
        b"not json",
        b'{"a": 1,}',
        b"\xff\xfe{}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"[1]",
        b'"s"',
    ],
)
def test_it_rejects_what_is_not_one_json_object_with_400(raw):
    error = rejected(lambda: segment.decode_body(raw))
    assert (error.status, error.code) == (400, "invalid_json")
    assert error.body()["message"]


def test_it_rejects_json_nested_past_the_recursion_limit():
    error = rejected(lambda: segment.decode_body(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"))
    assert error.status in (400, 413)


def test_it_rejects_a_body_over_500_kb_with_413():
    raw = json.dumps({"batch": [], "pad": "x" * segment.MAX_BATCH_BYTES}).encode()
    error = rejected(lambda: segment.decode_body(raw))
    assert (error.status, error.code) == (413, "payload_too_large")


def test_it_rejects_a_gzip_body_that_inflates_past_500_kb():
    raw = gzip.compress(json.dumps({"pad": "x" * (2 * segment.MAX_BATCH_BYTES)}).encode())
    assert len(raw) < 10_000
    assert rejected(lambda: segment.decode_body(raw, content_encoding="gzip")).status == 413


def test_it_rejects_corrupt_gzip_and_unknown_encodings():
    assert rejected(lambda: segment.decode_body(b"nope", content_encoding="gzip")).status == 400
    assert rejected(lambda: segment.decode_body(b"{}", content_encoding="br")).status == 415


def test_it_notices_escapes_that_may_not_be_storable():
    assert segment.decode_body(rb'{"a": "\u0000"}').has_risky_escape
    assert segment.decode_body(rb'{"a": "\ud83d\ude00"}').has_risky_escape
    assert not segment.decode_body(rb'{"a": "\u00e9"}').has_risky_escape


# --- write key -----------------------------------------------------------------------


def test_it_reads_the_write_key_from_the_basic_user():
    assert segment.write_key_from(basic("wk_header"), {"writeKey": "wk_body"}) == "wk_header"
    assert segment.write_key_from(basic("wk_header", "ignored"), {}) == "wk_header"


def test_it_falls_back_to_write_key_in_the_body():
    assert segment.write_key_from(None, {"writeKey": " wk_body "}) == "wk_body"
    assert segment.write_key_from("Bearer token", {"writeKey": "wk_body"}) == "wk_body"
    assert segment.write_key_from("Basic !!!not-base64", {"writeKey": "wk_body"}) == "wk_body"
    assert segment.write_key_from(basic(""), {"writeKey": "wk_body"}) == "wk_body"


@pytest.mark.parametrize("payload", [{}, {"writeKey": ""}, {"writeKey": 12}, {"writeKey": None}])
def test_it_finds_no_write_key_when_none_is_given(payload):
    assert segment.write_key_from(None, payload) is None


@pytest.mark.parametrize(
    ("query", "header", "strict"),
    [
        (None, None, False),
        ("1", None, True),
        (None, "1", True),
        ("true", None, True),
        ("0", "", False),
    ],
)
def test_it_reads_strict_mode_from_query_or_header(query, header, strict):
    assert segment.is_strict(query, header) is strict


# --- single calls and batches ---------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [
        ("track", Kind.TRACK),
        ("t", Kind.TRACK),
        ("identify", Kind.IDENTIFY),
        ("i", Kind.IDENTIFY),
        ("page", Kind.PAGE),
        ("p", Kind.PAGE),
        ("screen", Kind.SCREEN),
        ("s", Kind.SCREEN),
        ("group", Kind.GROUP),
        ("g", Kind.GROUP),
        ("alias", Kind.ALIAS),
        ("a", Kind.ALIAS),
    ],
)
def test_it_takes_the_kind_of_a_single_call_from_its_path(endpoint, kind):
    payload = {
        "type": "something else",
        "userId": "u1",
        "previousId": "anon-1",
        "groupId": "acme",
        "event": "Signed Up",
    }
    parsed = parse(payload, endpoint)
    assert not parsed.errors
    assert [m.kind for m in parsed.messages] == [kind]
    assert not parsed.is_batch


def test_it_parses_a_track_call_field_by_field():
    message = one(
        {
            "type": "track",
            "userId": 42,
            "anonymousId": "a-3bxuAxl18r02UsdTUdk1Ri9",
            "event": " Order Completed ",
            "properties": {"revenue": 9.5, "products": [{"sku": "s1"}]},
            "messageId": "m-1",
            "timestamp": "2024-05-01T10:00:00.123Z",
            "sentAt": "2024-05-01T10:00:05+02:00",
            "context": {"page": {"url": "https://shop.example/"}, "traits": {"email": "ignored@x"}},
            "integrations": {"All": False, "Mixpanel": True},
            "traits": {"ignored": True},
        }
    )
    assert message.kind is Kind.TRACK
    assert (message.user_id, message.anonymous_id) == ("42", "a-3bxuAxl18r02UsdTUdk1Ri9")
    assert message.event == "Order Completed"
    assert message.properties == {"revenue": 9.5, "products": [{"sku": "s1"}]}
    assert message.traits == {}
    assert message.message_id == "m-1"
    assert message.timestamp == datetime(2024, 5, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert message.sent_at == datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC)
    assert message.context["integrations"] == {"All": False, "Mixpanel": True}
    assert message.context["page"] == {"url": "https://shop.example/"}
    assert message.context["ip"] == CLIENT_IP
    assert message.index == 0


def test_it_keeps_a_given_context_ip_and_leaves_none_when_the_caller_is_unknown():
    assert one(
        {"type": "track", "userId": "u", "event": "e", "context": {"ip": "198.51.100.1"}}
    ).context["ip"] == ("198.51.100.1")
    parsed = parse({"batch": [{"type": "track", "userId": "u", "event": "e"}]}, client_ip=None)
    assert "ip" not in parsed.messages[0].context


def test_it_puts_page_and_screen_name_and_category_into_properties():
    page = one(
        {
            "type": "page",
            "anonymousId": "a1",
            "name": "Shoes",
            "category": "Shop",
            "properties": {"path": "/s"},
        }
    )
    assert page.properties == {"path": "/s", "name": "Shoes", "category": "Shop"}
    screen = one({"type": "screen", "anonymousId": "a1", "name": "Cart"})
    assert (screen.kind, screen.properties) == (Kind.SCREEN, {"name": "Cart"})


def test_it_parses_identify_group_and_alias():
    identify = one(
        {
            "type": "identify",
            "userId": "u1",
            "anonymousId": "a1",
            "traits": {"email": "p@x", "plan": None},
        }
    )
    assert (identify.kind, identify.traits) == (Kind.IDENTIFY, {"email": "p@x", "plan": None})
    group = one({"type": "group", "userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}})
    assert (group.kind, group.group_id, group.traits) == (Kind.GROUP, "acme", {"name": "Acme"})
    alias = one({"type": "alias", "userId": "u2", "previousId": "a1", "previousSignature": "ab"})
    assert (alias.kind, alias.user_id, alias.previous_id, alias.previous_signature) == (
        Kind.ALIAS,
        "u2",
        "a1",
        "ab",
    )


def test_it_turns_an_identify_without_user_id_into_setting_the_anonymous_traits():
    message = one({"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}})
    assert (message.kind, message.anonymous_id, message.traits) == (Kind.SET, "a1", {"plan": "pro"})


def test_it_reads_footprint_extras_from_the_top_level_or_the_context():
    top = one(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "signature": "ab12",
            "sessionId": "s-1",
            "profileId": issue(17),
        }
    )
    assert (top.signature, top.session_id, top.profile_id) == ("ab12", "s-1", 17)
    nested = one(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "context": {"signature": "cd", "sessionId": 99},
        }
    )
    assert (nested.signature, nested.session_id) == ("cd", "99")
    assert "signature" not in nested.context and "sessionId" not in nested.context


def test_it_accepts_a_message_with_only_a_profile_id():
    message = one({"type": "track", "profileId": issue(5), "event": "e"})
    assert (message.profile_id, message.user_id, message.anonymous_id) == (5, None, None)


def test_it_treats_a_profile_id_we_cannot_have_issued_as_unknown_not_invalid():
    message = one({"type": "track", "profileId": "0b6c-uuid", "event": "e"})
    assert message.profile_id is None


def test_it_merges_the_batch_context_under_each_message_context_and_shares_sent_at():
    parsed = parse(
        {
            "sentAt": "2024-01-01T00:00:10Z",
            "context": {"library": {"name": "batch-lib"}, "locale": "en"},
            "batch": [
                {"type": "track", "userId": "u", "event": "a", "context": {"locale": "de"}},
                {"type": "track", "userId": "u", "event": "b", "sentAt": "2024-01-01T00:00:20Z"},
            ],
        }
    )
    first, second = parsed.messages
    assert first.context["library"] == {"name": "batch-lib"}
    assert (first.context["locale"], second.context["locale"]) == ("de", "en")
    assert first.sent_at == datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)
    assert second.sent_at == datetime(2024, 1, 1, 0, 0, 20, tzinfo=UTC)
    assert [m.index for m in parsed.messages] == [0, 1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-04T05:06:07Z", datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)),
        (
            "2024-03-04T05:06:07.5+01:00",
            datetime(2024, 3, 4, 5, 6, 7, 500000, tzinfo=timezone(timedelta(hours=1))),
        ),
        ("2024-03-04T05:06:07", datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)),
        ("2024-03-04", datetime(2024, 3, 4, tzinfo=UTC)),
    ],
)
def test_it_parses_iso_8601_dates_as_aware_datetimes(text, expected):
    parsed = segment.parse_datetime(text, "timestamp")
    assert parsed == expected
    assert parsed.tzinfo is not None


def test_it_reads_original_timestamp_when_a_message_has_no_timestamp():
    """Segment's own stored messages (exports replayed through /v1/import, some SDKs'
    queues) carry the client's time as ``originalTimestamp``; ``timestamp`` wins when
    both are there, and a bad one is refused by its own name."""
    alone = one({"type": "track", "userId": "u", "event": "e", "originalTimestamp": "2024-03-04T05:06:07Z"})
    assert alone.timestamp == datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    both = one({
        "type": "track", "userId": "u", "event": "e",
        "timestamp": "2024-03-04T05:06:07Z", "originalTimestamp": "2024-01-01T00:00:00Z",
    })
    assert both.timestamp == datetime(2024, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert one({"type": "track", "userId": "u", "event": "e", "originalTimestamp": "yesterday"}) == [
        {"index": 0, "field": "originalTimestamp", "reason": one(
            {"type": "track", "userId": "u", "event": "e", "timestamp": "yesterday"})[0]["reason"]}
    ]


@pytest.mark.parametrize(("text", "expected"), EXTRA_FORMS)
def test_it_reads_what_rfc_3339_allows_and_fromisoformat_refuses(text, expected):
    for name in ("timestamp", "sentAt"):
        message = one({"type": "track", "userId": "u", "event": "e", name: text})
        parsed = message.timestamp if name == "timestamp" else message.sent_at
        assert (parsed, parsed.utcoffset()) == (expected, expected.utcoffset())
    shared = parse({"sentAt": text, "batch": [{"type": "track", "userId": "u", "event": "e"}]})
    assert shared.messages[0].sent_at == expected


@pytest.mark.parametrize("text", STILL_INVALID)
def test_an_hour_past_24_00_or_a_second_past_a_leap_second_is_still_refused(text):
    for name in ("timestamp", "sentAt"):
        [error] = one({"type": "track", "userId": "u", "event": "e", name: text})
        assert error["field"] == name
        assert "is not an ISO 8601 date-time" in error["reason"]
    error = rejected(lambda: parse({"sentAt": text, "batch": [{"type": "track", "userId": "u", "event": "e"}]}))
    assert (error.status, error.errors[0].field) == (400, "sentAt")


def test_a_leap_second_sorts_between_the_last_second_and_the_next_day():
    times = [
        segment.parse_datetime(text, "timestamp")
        for text in ("2016-12-31T23:59:59.5Z", "2016-12-31T23:59:60Z", "2016-12-31T24:00:00Z", "2017-01-01T00:00:00.1Z")
    ]
    assert times == sorted(times) and len(set(times)) == 4


@pytest.mark.parametrize(
    "text", ["2999-12-31T24:00:00Z", "9999-12-31T24:00:00Z", "9999-12-31T23:59:60Z", "1899-12-31T23:59:60Z"]
)
def test_the_year_range_applies_to_the_day_24_00_ends_in(text):
    [error] = one({"type": "track", "userId": "u", "event": "e", "timestamp": text})
    assert error["field"] == "timestamp"


# --- one bad message: its index, field and reason --------------------------------------


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"userId": "u", "event": "e"}, "type"),
        ({"type": "purchase", "userId": "u", "event": "e"}, "type"),
        ({"type": 3, "userId": "u"}, "type"),
        ({"type": "track", "userId": "u"}, "event"),
        ({"type": "track", "userId": "u", "event": "   "}, "event"),
        ({"type": "track", "userId": "u", "event": 12}, "event"),
        ({"type": "track", "userId": "u", "event": "x" * 256}, "event"),
        ({"type": "track", "event": "e"}, "userId"),
        ({"type": "track", "userId": {"id": 1}, "event": "e"}, "userId"),
        ({"type": "track", "userId": True, "event": "e"}, "userId"),
        ({"type": "track", "userId": "u" * 256, "event": "e"}, "userId"),
        ({"type": "track", "anonymousId": ["a"], "event": "e"}, "anonymousId"),
        ({"type": "track", "userId": "u", "event": "e", "properties": [1, 2]}, "properties"),
        ({"type": "track", "userId": "u", "event": "e", "context": "web"}, "context"),
        ({"type": "track", "userId": "u", "event": "e", "integrations": ["All"]}, "integrations"),
        ({"type": "track", "userId": "u", "event": "e", "timestamp": "yesterday"}, "timestamp"),
        ({"type": "track", "userId": "u", "event": "e", "timestamp": 1714557600000}, "timestamp"),
        (
            {"type": "track", "userId": "u", "event": "e", "timestamp": "0001-01-01T00:00:00Z"},
            "timestamp",
        ),
        (
            {"type": "track", "userId": "u", "event": "e", "sentAt": "2024-13-01T00:00:00Z"},
            "sentAt",
        ),
        ({"type": "track", "userId": "u", "event": "e", "messageId": {"id": 1}}, "messageId"),
        ({"type": "track", "userId": "u", "event": "e", "messageId": "m" * 256}, "messageId"),
        ({"type": "track", "userId": "u", "event": "e", "profileId": "undefined"}, "profileId"),
        ({"type": "track", "userId": "u", "event": "e", "profileId": {"id": 1}}, "profileId"),
        ({"type": "track", "userId": "u", "event": "e", "profileId": -3}, "profileId"),
        ({"type": "track", "userId": "u", "event": "e", "profileId": True}, "profileId"),
        ({"type": "track", "userId": "u", "event": "e", "signature": 5}, "signature"),
        ({"type": "track", "userId": "u", "event": "e", "sessionId": {}}, "sessionId"),
        ({"type": "identify", "userId": "u", "traits": "vip"}, "traits"),
        ({"type": "identify", "traits": {"a": 1}}, "userId"),
        ({"type": "page", "anonymousId": "a", "name": 5}, "name"),
        ({"type": "screen", "anonymousId": "a", "category": ["c"]}, "category"),
        ({"type": "group", "userId": "u"}, "groupId"),
        ({"type": "group", "userId": "u", "groupId": "null"}, "groupId"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "alias", "previousId": "a"}, "userId"),
        ("not an object", "message"),
        (None, "message"),
    ],
)
def test_it_names_the_field_of_an_invalid_message(message, field):
    parsed = parse({"batch": [{"type": "track", "userId": "ok", "event": "fine"}, message]})
    assert [m.index for m in parsed.messages] == [0]
    assert len(parsed.errors) == 1
    error = parsed.errors[0].as_dict()
    assert (error["index"], error["field"]) == (1, field)
    assert error["reason"]


@pytest.mark.parametrize(
    "junk",
    [
        "",
        "null",
        "undefined",
        "Undefined",
        "anonymous",
        "guest",
        "0",
        "-1",
        "[object Object]",
        "NaN",
        "none",
        "true",
        "FALSE",
        "  null ",
    ],
)
def test_it_rejects_junk_ids(junk):
    assert (
        one({"type": "track", "userId": junk, "anonymousId": "a1", "event": "e"})[0]["field"]
        == "userId"
    )
    assert one({"type": "track", "anonymousId": junk, "event": "e"})[0]["field"] == "anonymousId"
    assert one({"type": "alias", "userId": "u", "previousId": junk})[0]["field"] == "previousId"


def test_it_rejects_a_message_over_32_kb_but_keeps_the_rest_of_the_batch():
    big = {
        "type": "track",
        "userId": "u",
        "event": "big",
        "properties": {"pad": "x" * segment.MAX_MESSAGE_BYTES},
    }
    small = {"type": "track", "userId": "u", "event": "small"}
    parsed = parse({"batch": [small, big, small]})
    assert [m.index for m in parsed.messages] == [0, 2]
    [error] = parsed.errors
    assert (error.index, error.field) == (1, "message")
    assert error.reason.startswith("message too large")


def test_it_rejects_a_single_call_over_32_kb():
    parsed = parse(
        {"userId": "u", "event": "big", "properties": {"pad": "x" * segment.MAX_MESSAGE_BYTES}},
        "track",
    )
    assert parsed.messages == []
    assert parsed.errors[0].reason.startswith("message too large")


def test_it_counts_a_message_size_in_utf8_bytes():
    # 11,000 three-byte characters: 33 KB on the wire, though fewer than 32,768 characters.
    parsed = parse(
        {
            "batch": [
                {"type": "track", "userId": "u", "event": "e", "properties": {"t": "€" * 11_000}}
            ]
        }
    )
    assert parsed.errors[0].reason.startswith("message too large")


@pytest.mark.parametrize(
    "raw",
    [
        rb'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"a": "x\u0000y"}}]}',
        rb'{"batch": [{"type": "track", "userId": "u", "event": "e\u0000"}]}',
        rb'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"\ud800": 1}}]}',
        rb'{"batch": [{"type": "track", "userId": "u", "event": "e", "context": {"x": ["\udc00"]}}]}',
    ],
)
def test_it_rejects_strings_postgresql_cannot_store(raw):
    parsed = segment.parse_request(segment.decode_body(raw), endpoint="batch", client_ip=None)
    assert parsed.messages == []
    assert "cannot be stored" in parsed.errors[0].reason


def test_it_rejects_a_batch_whose_shared_context_cannot_be_stored():
    raw = (
        rb'{"context": {"x": "\u0000"}, "batch": [{"type": "track", "userId": "u", "event": "e"}]}'
    )
    error = rejected(
        lambda: segment.parse_request(segment.decode_body(raw), endpoint="batch", client_ip=None)
    )
    assert (error.status, error.errors[0].field) == (400, "context")


def test_it_rejects_an_oversized_message_with_a_lone_surrogate_without_crashing():
    properties = {"a": "\ud800", "pad": "x" * segment.MAX_MESSAGE_BYTES}
    raw = json.dumps(
        {"batch": [{"type": "track", "userId": "u", "event": "e", "properties": properties}]}
    )
    parsed = segment.parse_request(
        segment.decode_body(raw.encode()), endpoint="batch", client_ip=None
    )
    assert parsed.messages == []
    assert [error.field for error in parsed.errors] == ["properties"]


def test_it_keeps_escaped_emoji_which_are_valid_pairs():
    raw = rb'{"batch": [{"type": "track", "userId": "u", "event": "e", "properties": {"face": "\ud83d\ude00"}}]}'
    parsed = segment.parse_request(segment.decode_body(raw), endpoint="batch", client_ip=None)
    assert parsed.messages[0].properties == {"face": "\N{GRINNING FACE}"}


# --- the batch as a whole --------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [{}, {"batch": {"type": "track"}}, {"batch": "x"}, {"batch": []}]
)
def test_it_rejects_a_batch_that_is_no_list_of_messages(payload):
    error = rejected(lambda: parse(payload))
    assert error.status == 400
    assert error.body()["errors"][0]["field"] == "batch"


def test_it_rejects_more_than_2500_messages():
    messages = [{"type": "track", "userId": "u", "event": "e"}] * (segment.MAX_BATCH_MESSAGES + 1)
    error = rejected(lambda: parse({"batch": messages}))
    assert (error.status, error.code) == (413, "too_many_messages")
    assert len(parse({"batch": messages[:-1]}).messages) == segment.MAX_BATCH_MESSAGES


@pytest.mark.parametrize(
    ("payload", "field"), [({"context": []}, "context"), ({"sentAt": "soon"}, "sentAt")]
)
def test_it_rejects_a_bad_shared_field_for_the_whole_batch(payload, field):
    error = rejected(
        lambda: parse({**payload, "batch": [{"type": "track", "userId": "u", "event": "e"}]})
    )
    assert error.status == 400
    assert error.body()["errors"] == [{"field": field, "reason": error.errors[0].reason}]


def test_it_refuses_unknown_endpoints():
    assert rejected(lambda: parse({"userId": "u"}, "x")).status == 404


# --- answers -----------------------------------------------------------------------


@dataclass
class Outcome:
    accepted: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    profile_ids: dict[int, int] = field(default_factory=dict)


def test_it_refuses_before_ingesting_when_no_message_is_valid():
    parsed = parse({"batch": [{"type": "nope"}, {"type": "track"}]})
    error = rejected(lambda: segment.refuse_invalid(parsed, strict=False))
    assert (error.status, error.code) == (400, "invalid")
    assert error.message == (
        "2 of 2 messages are invalid; message 0: type: must be one of track, identify, page, "
        "screen, group, alias"
    )
    assert [e["index"] for e in error.body()["errors"]] == [0, 1]


def test_it_refuses_any_invalid_message_in_strict_mode_only():
    parsed = parse({"batch": [{"type": "track", "userId": "u", "event": "e"}, {"type": "nope"}]})
    segment.refuse_invalid(parsed, strict=False)
    error = rejected(lambda: segment.refuse_invalid(parsed, strict=True))
    assert error.status == 400
    assert error.body()["errors"] == [
        {"index": 1, "field": "type", "reason": parsed.errors[0].reason}
    ]


def test_it_answers_a_batch_with_distinct_profile_ids_and_every_error_in_order():
    parsed = parse(
        {"batch": [{"type": "track", "userId": "u", "event": "e"}] * 3 + [{"type": "nope"}]}
    )
    outcome = Outcome(
        accepted=[0, 2],
        duplicates=[1],
        errors=[FieldError(2, "userId", "refused")],
        profile_ids={2: 9, 0: 9, 1: 4},
    )
    answer = segment.answer(parsed, outcome)
    assert answer.status == 200
    assert answer.body == {
        "success": True,
        "profile_ids": [issue(9), issue(4)],
        "errors": [
            {"index": 2, "field": "userId", "reason": "refused"},
            {"index": 3, "field": "type", "reason": parsed.errors[0].reason},
        ],
    }


def test_it_answers_a_single_call_with_its_profile_id():
    parsed = parse({"userId": "u", "event": "e"}, "track")
    answer = segment.answer(parsed, Outcome(accepted=[0], profile_ids={0: 7}))
    assert answer.body == {"success": True, "profile_ids": [issue(7)], "profile_id": issue(7)}


def test_it_counts_a_duplicate_as_success():
    parsed = parse({"userId": "u", "event": "e", "messageId": "m"}, "track")
    assert segment.answer(parsed, Outcome(duplicates=[0])).status == 200


def test_it_answers_400_when_the_core_refused_every_message():
    parsed = parse({"type": "alias", "userId": "u", "previousId": "v"}, "alias")
    error = rejected(
        lambda: segment.answer(
            parsed, Outcome(errors=[FieldError(0, "userId", "needs the secret key")])
        )
    )
    assert error.status == 400
    assert error.message == "userId: needs the secret key"


# --- settings document -----------------------------------------------------------------


def test_it_points_the_browser_library_at_this_host():
    document = segment.settings_document("wk_1", host="track.example:8443", secure=True)
    io = document["integrations"]["Segment.io"]
    assert (io["apiKey"], io["apiHost"], io["protocol"]) == (
        "wk_1",
        "track.example:8443/v1",
        "https",
    )
    assert list(document["integrations"]) == ["Segment.io"]  # no destination code to load
    assert document["analyticsNextEnabled"] is True
    assert document["metrics"]["sampleRate"] == 0
    assert (
        segment.settings_document("wk_1", host="h", secure=False)["integrations"]["Segment.io"][
            "protocol"
        ]
        == "http"
    )


# --- the write key cache (off unless WRITE_KEY_CACHE_SECONDS is set) --------------------


@pytest.mark.django_db
def test_it_caches_write_key_lookups_when_enabled(site, settings, django_assert_num_queries):
    settings.WRITE_KEY_CACHE_SECONDS = 30
    key = site.primary_write_key().key
    assert services.site_for_write_key(key) == site
    with django_assert_num_queries(0):
        assert services.site_for_write_key(key) == site
    site.write_keys.get(key=key).revoke()  # a save in this process clears the cache
    assert services.site_for_write_key(key) is None


@pytest.mark.django_db
def test_it_does_not_cache_write_keys_by_default(site, django_assert_num_queries):
    key = site.primary_write_key().key
    services.site_for_write_key(key)
    with django_assert_num_queries(1):
        assert services.site_for_write_key(key) == site
