"""The Tracardi adapter: tracker payloads to messages, without a database."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest

from tests.contract.seed_examples import TRACARDI_FULL as FULL_EXAMPLE
from tests.contract.seed_examples import TRACARDI_MINIMAL as MINIMAL_EXAMPLE
from tests.wire_times import EXTRA_FORMS, STILL_INVALID
from tracking.ingest import tracardi
from tracking.ingest.profile_tokens import issue
from tracking.ingest.schema import Kind
from tracking.ingest.wire import RequestRejected


def refused(payload, field: str) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        tracardi.parse(payload)
    assert caught.value.status == 400
    assert caught.value.errors[0].field == field, caught.value.errors
    return caught.value


def test_it_turns_each_event_into_a_track_message_of_one_session():
    parsed = tracardi.parse(FULL_EXAMPLE, request_context={"ip": "10.0.0.1", "system": "overridden"})

    assert parsed.write_key == "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
    assert parsed.session_id == "bfb3-bf0c8c8d3387-3ee63fc6-490a-4fd8"
    assert parsed.profile_id is None  # a Tracardi UUID: not one we issued
    assert [(m.kind, m.event, m.index) for m in parsed.messages] == [
        (Kind.TRACK, "page-view", 0), (Kind.TRACK, "consent-granted", 1), (Kind.TRACK, "product-in-basket", 2),
    ]
    assert {m.session_id for m in parsed.messages} == {parsed.session_id}
    page_view = parsed.messages[0]
    assert page_view.context == {
        "ip": "10.0.0.1",
        "system": "webstore-backend",  # the payload's own context wins over the server's view
        "webstore": {"url": "http://magento-store.com", "name": "Shoe store"},
        "client": {"browser": "Mozilla Firefox"},
        "tag": "product-details-page",
        "options": {"saveEvent": False, "saveSession": False, "debugger": False},
    }
    assert parsed.messages[2].properties == {"product": "Adidas sneakers", "price": 34.43}


def test_the_minimal_example_needs_no_profile_context_or_options():
    parsed = tracardi.parse(MINIMAL_EXAMPLE)
    assert parsed.profile_id is None
    assert [m.context for m in parsed.messages] == [{}, {}, {}]
    assert parsed.messages[1].properties == {"marketing": False, "general": True}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(issue(123), 123), (f" {issue(42)} ", 42), (123, None), ("123", None), ("bf0c-uuid", None), (None, None)],
)
def test_it_reads_our_profile_id_as_the_client_kept_it(sent, kept):
    payload = {**MINIMAL_EXAMPLE, "profile": {"id": sent}}
    parsed = tracardi.parse(payload)
    assert parsed.profile_id == kept
    assert {m.profile_id for m in parsed.messages} == {kept}


def test_events_inherit_payload_properties_and_options_and_keep_time_and_tags():
    payload = copy.deepcopy(MINIMAL_EXAMPLE)
    payload["properties"] = {"shop": "shoes", "pageTitle": "payload's"}
    payload["options"] = {"debugger": True}
    payload["events"][0].update(
        options={"saveEvent": False}, tags=["landing"], time={"create": "2023-01-01 10:00:00", "insert": "x"}
    )
    first, second, _ = tracardi.parse(payload).messages
    assert first.properties == {"shop": "shoes", "pageTitle": "My Page"}
    assert first.context == {"options": {"debugger": True, "saveEvent": False}, "tags": ["landing"]}
    assert first.timestamp == datetime(2023, 1, 1, 10, tzinfo=UTC)
    assert second.context == {"options": {"debugger": True}}
    assert second.timestamp is None


@pytest.mark.parametrize(("sent", "read"), EXTRA_FORMS)
@pytest.mark.parametrize("name", ["create", "insert"])
def test_it_reads_what_rfc_3339_allows_and_fromisoformat_refuses(sent, read, name):
    payload = copy.deepcopy(MINIMAL_EXAMPLE)
    payload["events"][0]["time"] = {name: sent}
    first = tracardi.parse(payload).messages[0]
    assert (first.timestamp, first.timestamp.utcoffset()) == (read, read.utcoffset())


@pytest.mark.parametrize("sent", STILL_INVALID)
@pytest.mark.parametrize("name", ["create", "insert"])
def test_an_hour_past_24_00_or_a_second_past_a_leap_second_is_still_refused(sent, name):
    payload = copy.deepcopy(MINIMAL_EXAMPLE)
    payload["events"][1]["time"] = {name: sent}
    assert "is not a date-time" in refused(payload, f"events[1].time.{name}").errors[0].reason


@pytest.mark.parametrize("sent", ["2999-12-31T24:00:00Z", "9999-12-31T24:00:00Z", "1969-12-31T23:59:60Z"])
def test_the_year_range_applies_to_the_day_24_00_ends_in(sent):
    payload = copy.deepcopy(MINIMAL_EXAMPLE)
    payload["events"][0]["time"] = {"create": sent}
    refused(payload, "events[0].time.create")


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (1672567200, datetime(2023, 1, 1, 10, tzinfo=UTC)),  # seconds
        (1672567200500, datetime(2023, 1, 1, 10, 0, 0, 500000, tzinfo=UTC)),  # milliseconds
        (1672567200.25, datetime(2023, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_it_reads_a_unix_time_as_tracardi_does(sent, read):
    payload = copy.deepcopy(MINIMAL_EXAMPLE)
    payload["events"][0].update(time={"create": sent}, tags=["landing", 1, {"a": True}])
    first = tracardi.parse(payload).messages[0]
    assert first.timestamp == read
    assert first.context["tags"] == ["landing", 1, {"a": True}]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"source": None}, "source.id"),
        ({"session": None}, "session"),
        ({"session": "s-1"}, "session"),
        ({"session": {}}, "session.id"),
        ({"session": {"id": "null"}}, "session.id"),
        ({"session": {"id": ["s-1"]}}, "session.id"),
        ({"profile": "p-1"}, "profile"),
        ({"profile": {"id": "undefined"}}, "profile.id"),
        ({"profile": {"id": {"a": 1}}}, "profile.id"),
        ({"context": "web"}, "context"),
        ({"properties": [1]}, "properties"),
        ({"options": 1}, "options"),
        ({"events": None}, "events"),
        ({"events": []}, "events"),
        ({"events": {"type": "x"}}, "events"),
        ({"events": ["page-view"]}, "events[0]"),
        ({"events": [{"type": ""}]}, "events[0].type"),
        ({"events": [{"type": 7}]}, "events[0].type"),
        ({"events": [{"type": "x"}, {"type": "y" * 256}]}, "events[1].type"),
        ({"events": [{"type": "x", "properties": []}]}, "events[0].properties"),
        ({"events": [{"type": "x", "context": "c"}]}, "events[0].context"),
        ({"events": [{"type": "x", "options": "o"}]}, "events[0].options"),
        ({"events": [{"type": "x", "tags": "t"}]}, "events[0].tags"),
        ({"events": [{"type": "x", "time": {"create": "yesterday"}}]}, "events[0].time.create"),
        ({"events": [{"type": "x", "time": {"create": True}}]}, "events[0].time.create"),
        ({"events": [{"type": "x", "time": {"create": 1e300}}]}, "events[0].time.create"),
        ({"events": [{"type": "x", "time": {"create": 10**400}}]}, "events[0].time.create"),  # was a 500
        ({"events": [{"type": "x", "properties": {"a": "nul\x00"}}]}, "events[0].properties.a"),
        ({"context": {"a": "\ud800"}}, "context.a"),
    ],
)
def test_it_refuses_the_payload_naming_the_field(change, field):
    refused({**MINIMAL_EXAMPLE, **change}, field)


def test_it_caps_the_number_of_events():
    payload = {**MINIMAL_EXAMPLE, "events": [{"type": "x"}] * (tracardi.MAX_EVENTS + 1)}
    assert "at most" in refused(payload, "events").message


def test_decode_wants_one_json_object_within_the_limit():
    assert tracardi.decode(json.dumps(MINIMAL_EXAMPLE).encode()) == MINIMAL_EXAMPLE
    for raw in (b"", b"  ", b"{", b"[]", b'{"a": NaN}'):
        with pytest.raises(RequestRejected) as caught:
            tracardi.decode(raw)
        assert (caught.value.status, caught.value.code) == (400, "invalid_json")
    with pytest.raises(RequestRejected) as caught:
        tracardi.decode(b" " * (tracardi.MAX_BODY_BYTES + 1))
    assert caught.value.status == 413


@pytest.mark.parametrize(
    ("payload", "key"),
    [({"source": {"id": " wk_1 "}}, "wk_1"), ({"source": {"id": ""}}, None), ({"source": {"id": 5}}, None),
     ({"source": "wk_1"}, None), ({}, None), ([], None)],
)
def test_the_write_key_is_source_id(payload, key):
    assert tracardi.write_key(payload) == key


def test_unauthorized_says_unauthorized_access_and_names_source_id():
    error = tracardi.unauthorized("nope")
    body = tracardi.error_body(error)
    assert error.status == 401
    assert body["detail"].startswith("Unauthorized Access")
    assert body["errors"] == [{"field": "source.id", "reason": "is not a valid write key"}]


def test_the_answer_carries_what_tracardis_tracker_reads():
    assert tracardi.answer(17, "s-1") == {"profile": {"id": issue(17)}, "session": {"id": "s-1"}, "ux": [], "response": {}}
