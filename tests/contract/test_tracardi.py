"""Tracardi's tracker payload (../shared/seeds/tracardi-integration.txt) end to end:
the document's full and minimal examples posted to a live server as written (only the
source id is the site's write key), then the people, sessions and events read back
through the management API. Refused requests store nothing."""

from __future__ import annotations

import copy
import uuid

import pytest

from tests.contract.live import events, stored_counts
from tests.contract.seed_examples import TRACARDI_FULL as FULL_EXAMPLE
from tests.contract.seed_examples import TRACARDI_MINIMAL as MINIMAL_EXAMPLE
from tracking.ingest.profile_tokens import redeem

pytestmark = pytest.mark.django_db(transaction=True)

def payload(example: dict, key: str, **changes) -> dict:
    body = copy.deepcopy(example)
    body["source"]["id"] = key
    body.update(changes)
    return body


def test_it_accepts_the_full_example_and_returns_a_new_profile_id(live, key):
    reply = live.post_json("/track", payload(FULL_EXAMPLE, key))

    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    # Tracardi's tracker keeps response.data.profile.id (a string) and mounts response.data.ux.
    profile_id = body["profile"]["id"]
    assert isinstance(profile_id, str) and redeem(profile_id) is not None
    assert profile_id != FULL_EXAMPLE["profile"]["id"]  # unknown to us: a new profile
    assert body["session"] == {"id": FULL_EXAMPLE["session"]["id"]}
    assert body["ux"] == []

    person = live.person(profile_id)
    assert person["is_identified"] is False
    assert person["session_count"] == 1
    page_view, consent, basket = events(person)
    assert [page_view["type"], consent["type"], basket["type"]] == [
        "page-view", "consent-granted", "product-in-basket",
    ]
    assert page_view["properties"] == {"pageTitle": "My Page"}
    assert consent["properties"] == {"marketing": False, "general": True}
    assert basket["properties"] == {"product": "Adidas sneakers", "price": 34.43}
    # Each event inherits the payload's context under its own; options are recorded.
    assert page_view["context"]["system"] == "webstore-backend"
    assert page_view["context"]["webstore"] == {"url": "http://magento-store.com", "name": "Shoe store"}
    assert page_view["context"]["client"] == {"browser": "Mozilla Firefox"}
    assert page_view["context"]["tag"] == "product-details-page"
    assert page_view["context"]["options"] == {"saveEvent": False, "saveSession": False, "debugger": False}
    assert "tag" not in consent["context"]
    assert consent["context"]["options"] == {"profile": True, "saveSession": False}
    assert consent["context"]["ip"] == "127.0.0.1"
    # All three in the one session, which the new visit opened.
    [visit] = [e for e in events(person, visits=True) if e["type"] == "visited-site"]
    assert {e["session_id"] for e in (page_view, consent, basket)} == {visit["session_id"]}


def test_it_keeps_the_profile_when_the_client_sends_back_the_returned_id(live, key):
    first = live.post_json("/track", payload(FULL_EXAMPLE, key)).json()["profile"]["id"]

    again = payload(FULL_EXAMPLE, key, profile={"id": first})
    assert live.post_json("/track", again).json()["profile"]["id"] == first
    # A new visit: new session id, same profile (the document's "changing session ID").
    new_visit = payload(FULL_EXAMPLE, key, profile={"id": first}, session={"id": str(uuid.uuid4())})
    assert live.post_json("/track", new_visit).json()["profile"]["id"] == first

    person = live.person(first)
    assert person["event_count"] == 9 + 2  # three requests of three events, two visits
    assert person["session_count"] == 2


def test_a_guessed_profile_id_does_not_reach_a_strangers_profile(live, key):
    """Our ids are a sequence; Tracardi's own are UUIDs. A number alone (no tag) is unknown."""
    first = live.post_json("/track", payload(FULL_EXAMPLE, key)).json()["profile"]["id"]
    number = first.partition(".")[0]

    for guess in (number, int(number)):
        reply = live.post_json("/track", payload(FULL_EXAMPLE, key, profile={"id": guess}, session={"id": str(uuid.uuid4())}))
        assert reply.status == 200, reply.text
        assert reply.json()["profile"]["id"] != first
    assert live.person(first)["event_count"] == 3 + 1


def test_it_accepts_the_minimal_example_and_recovers_the_profile_from_the_session(live, key):
    reply = live.post_json("/track", payload(MINIMAL_EXAMPLE, key))
    assert reply.status == 200, reply.text
    profile_id = reply.json()["profile"]["id"]

    # The client lost its profile id but kept the session: the same person is found.
    again = live.post_json("/track", payload(MINIMAL_EXAMPLE, key)).json()
    assert again["profile"]["id"] == profile_id
    person = live.person(profile_id)
    assert [e["type"] for e in events(person)] == ["page-view", "consent-granted", "product-in-basket"] * 2
    assert person["session_count"] == 1
    assert live.people_count() == 1


def test_an_unknown_profile_id_makes_a_new_profile_and_returns_it(live, key):
    reply = live.post_json("/track", payload(MINIMAL_EXAMPLE, key, profile={"id": "987654321"}, session={"id": "s-new"}))
    assert reply.status == 200, reply.text
    profile_id = reply.json()["profile"]["id"]
    assert profile_id != "987654321"
    assert live.person(profile_id)["event_count"] == 4  # three events and the visit


def test_it_answers_a_browser_preflight_and_cross_origin_posts(live, key):
    # Tracardi's tracker posts JSON with an x-timestamp header, so browsers ask first.
    preflight = live.request(
        "OPTIONS",
        "/track",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-timestamp",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-headers"] == "content-type,x-timestamp"

    reply = live.post_json("/track", payload(MINIMAL_EXAMPLE, key), Origin="https://shop.example")
    assert reply.status == 200
    assert reply.headers["access-control-allow-origin"] == "https://shop.example"


# --- refusals: nothing is stored -------------------------------------------------------


def test_a_bad_source_id_is_unauthorized_access(live, key):
    before = stored_counts()
    for body in (
        payload(FULL_EXAMPLE, "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"),  # not one of our keys
        {k: v for k, v in MINIMAL_EXAMPLE.items() if k != "source"},
    ):
        reply = live.post_json("/track", body)
        assert reply.status == 401
        assert "Unauthorized Access" in reply.text
        assert reply.json()["errors"][0]["field"] == "source.id"
        assert "Unauthorized Access" in reply.json()["detail"]  # what Tracardi's tracker logs
    assert stored_counts() == before


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"session": None}, "session"),
        ({"session": {"id": ""}}, "session.id"),
        ({"session": {"id": "undefined"}}, "session.id"),
        ({"events": []}, "events"),
        ({"events": "page-view"}, "events"),
        ({"context": ["not", "an", "object"]}, "context"),
        ({"profile": {"id": ["x"]}}, "profile.id"),
    ],
)
def test_it_refuses_a_payload_missing_required_fields(live, key, change, field):
    before = stored_counts()
    body = payload(MINIMAL_EXAMPLE, key)
    body.update(change)
    reply = live.post_json("/track", body)
    assert reply.status == 400, reply.text
    assert reply.json()["errors"][0]["field"] == field
    assert field in reply.json()["message"]
    assert stored_counts() == before


def test_one_bad_event_refuses_the_whole_payload(live, key):
    before = stored_counts()
    body = payload(MINIMAL_EXAMPLE, key)
    body["events"][1] = {"properties": {"marketing": False}}  # no type
    reply = live.post_json("/track", body)
    assert reply.status == 400
    assert reply.json()["errors"] == [
        {"field": "events[1].type", "reason": "is required and must be a non-empty string"}
    ]
    body["events"][1] = {"type": "consent-granted", "properties": "yes"}
    assert live.post_json("/track", body).json()["errors"][0]["field"] == "events[1].properties"
    assert stored_counts() == before


def test_malformed_json_is_refused(live, key):
    before = stored_counts()
    reply = live.request("POST", "/track", body=b'{"source": {"id": "' + key.encode() + b'"}, "events": [',
                         headers={"Content-Type": "application/json"})
    assert reply.status == 400
    assert reply.json()["code"] == "invalid_json"
    assert live.post_json("/track", b"[1, 2]").json()["code"] == "invalid_json"
    assert stored_counts() == before


def test_a_disallowed_origin_is_refused(live, site, key):
    site.allowed_origins = ["https://shop.example"]
    site.save()
    before = stored_counts()
    reply = live.post_json("/track", payload(MINIMAL_EXAMPLE, key), Origin="https://evil.example")
    assert reply.status == 403
    assert stored_counts() == before


def test_other_methods_are_refused(live):
    reply = live.request("PUT", "/track", body=b"{}")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, POST, OPTIONS"
