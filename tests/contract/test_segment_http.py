"""The Segment HTTP tracking API end to end through Django: auth, content types, limits,
errors, strict mode, dedupe, CORS and the settings document. Nothing is stored by a
refused request; what a partly valid batch stores is checked in the database."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import pytest
from django.test import Client

from profiles.models import Identity, Profile
from tests.wire_times import EXTRA_FORMS, STILL_INVALID
from tracking import keys, services
from tracking.ingest import segment
from tracking.ingest.profile_tokens import redeem
from tracking.models import Event

pytestmark = pytest.mark.django_db


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


def send(
    client,
    path: str,
    payload: Any,
    *,
    key: str | None = None,
    content_type: str = "application/json",
    **headers: str,
):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = basic(key)
    return client.generic("POST", path, raw, content_type=content_type, **headers)


def events(site, **filters) -> list[Event]:
    return list(
        Event.objects.filter(site=site, **filters).exclude(type="visited-site").order_by("id")
    )


def track(event: str = "Clicked", **fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "user-1", "event": event, **fields}


# --- content types and keys ---------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "text/plain;charset=UTF-8"]
)
def test_it_accepts_json_sent_as_json_or_plain_text(client, site, key, content_type):
    response = send(client, "/v1/track", track(), key=key, content_type=content_type)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True
    assert body["profile_id"] == body["profile_ids"][0]
    [event] = events(site)
    assert (event.type, event.profile_id) == ("Clicked", redeem(body["profile_id"]))


def test_it_needs_no_csrf_token(site, key):
    strict_client = Client(enforce_csrf_checks=True)
    assert send(strict_client, "/v1/track", track(), key=key).status_code == 200


def test_it_takes_the_write_key_from_the_body(client, site, key):
    response = send(client, "/v1/t", {**track(), "writeKey": key}, content_type="text/plain")
    assert response.status_code == 200
    assert len(events(site)) == 1


def test_it_prefers_the_basic_user_over_the_body_key(client, site, other_site, key):
    other_key = other_site.primary_write_key().key
    assert send(client, "/v1/track", {**track(), "writeKey": other_key}, key=key).status_code == 200
    assert len(events(site)) == 1
    assert events(other_site) == []


@pytest.mark.parametrize("credentials", [{}, {"key": "wk_not-a-key"}, {"writeKey": "wk_nope"}])
def test_it_answers_401_to_a_missing_or_bad_write_key(client, site, credentials):
    payload = {
        **track(),
        **({"writeKey": credentials["writeKey"]} if "writeKey" in credentials else {}),
    }
    response = send(client, "/v1/track", payload, key=credentials.get("key"))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response.json()["message"]
    assert not Event.objects.filter(site=site).exists()


def test_it_refuses_a_revoked_write_key(client, site, key):
    assert send(client, "/v1/track", track(), key=key).status_code == 200
    site.write_keys.get(key=key).revoke()
    assert send(client, "/v1/track", track(), key=key).status_code == 401


def test_it_accepts_every_key_active_during_rotation(client, site, key):
    new_key = services.write_key_rotate(site=site).key
    assert send(client, "/v1/track", track(), key=key).status_code == 200
    assert send(client, "/v1/track", track(), key=new_key).status_code == 200


def test_it_accepts_gzip_bodies(client, site, key):
    raw = gzip.compress(json.dumps({"batch": [track(), track("Other")]}).encode())
    response = send(client, "/v1/batch", raw, key=key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200
    assert [e.type for e in events(site)] == ["Clicked", "Other"]


@pytest.mark.parametrize("wbits", [15, -15], ids=["zlib", "raw"])
def test_it_accepts_deflate_bodies_zlib_wrapped_or_raw(client, site, key, wbits):
    # HTTP's deflate is the zlib format, but some clients (and CompressionStream's
    # "deflate-raw") send the bare stream under the same name.
    packer = zlib.compressobj(wbits=wbits)
    raw = packer.compress(json.dumps({"batch": [track(), track("Other")]}).encode()) + packer.flush()
    response = send(client, "/v1/batch", raw, key=key, HTTP_CONTENT_ENCODING="deflate")
    assert response.status_code == 200, response.content
    assert [e.type for e in events(site)] == ["Clicked", "Other"]


def test_a_truncated_compressed_body_is_refused_whole(client, site, key):
    # Cut in its trailer (the check sum and length): the JSON inside is whole, but what
    # arrived is not what was sent.
    raw = gzip.compress(json.dumps({"batch": [track(), track("Other")]}).encode())
    response = send(client, "/v1/batch", raw[:-4], key=key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert events(site) == []


# --- every call and its fields ----------------------------------------------------------


@pytest.mark.parametrize(
    ("paths", "payload", "stored_type"),
    [
        (("/v1/track", "/v1/t"), {"userId": "u", "event": "Bought"}, "Bought"),
        (("/v1/identify", "/v1/i"), {"userId": "u", "traits": {"plan": "pro"}}, "identify"),
        (("/v1/page", "/v1/p"), {"anonymousId": "a-1", "name": "Home"}, "page-view"),
        (("/v1/screen", "/v1/s"), {"userId": "u", "name": "Cart"}, "screen-view"),
        (
            ("/v1/group", "/v1/g"),
            {"userId": "u", "groupId": "acme", "traits": {"name": "Acme"}},
            "group",
        ),
        (("/v1/alias", "/v1/a"), {"userId": "u", "previousId": "a-1"}, "alias"),
    ],
)
def test_it_serves_each_call_on_its_long_and_short_path(
    client, site, key, paths, payload, stored_type
):
    for path in paths:
        response = send(client, path, payload, key=key, content_type="text/plain")
        assert response.status_code == 200, (path, response.content)
    assert [e.type for e in events(site)] == [stored_type, stored_type]


def test_it_serves_the_import_path_of_the_ruby_java_and_dotnet_libraries(client, site, key):
    # analytics-ruby, analytics-java and Analytics.NET post their batches to /v1/import.
    body = {
        "sentAt": "2024-05-01T10:00:05.000Z",
        "batch": [track(timestamp="2024-05-01T10:00:00.000Z", messageId="m-1"), track("Other", messageId="m-2")],
    }
    response = send(client, "/v1/import", body, key=key)
    assert response.status_code == 200, response.content
    assert response.json()["success"] is True
    assert [e.type for e in events(site)] == ["Clicked", "Other"]


def test_a_batchs_integrations_are_merged_into_each_message(client, site, key):
    body = {
        "batch": [track(), track("Own", integrations={"Mixpanel": True, "All": True})],
        "integrations": {"All": False, "Mixpanel": False},
    }
    assert send(client, "/v1/batch", body, key=key).status_code == 200
    assert [e.context["integrations"] for e in events(site)] == [
        {"All": False, "Mixpanel": False},
        {"All": True, "Mixpanel": True},  # a message's own settings win
    ]


def test_it_refuses_a_batch_whose_integrations_are_not_an_object(client, site, key):
    response = send(client, "/v1/batch", {"batch": [track()], "integrations": ["All"]}, key=key)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "integrations", "reason": "must be an object"}]
    assert events(site) == []


def test_it_stores_the_fields_of_a_message(client, site, key):
    payload = {
        "type": "page",
        "anonymousId": "a-3bxuAxl18r02UsdTUdk1Ri9",
        "name": "Shoes",
        "category": "Shop",
        "properties": {"url": "https://shop.example/shoes"},
        "context": {"userAgent": "UA/1", "page": {"referrer": "https://search.example/"}},
        "integrations": {"All": True},
        "messageId": "msg-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "sentAt": "2024-05-01T10:00:00Z",
    }
    assert send(client, "/v1/page", payload, key=key, REMOTE_ADDR="198.51.100.9").status_code == 200
    [event] = events(site)
    assert event.properties == {
        "url": "https://shop.example/shoes",
        "name": "Shoes",
        "category": "Shop",
    }
    assert event.context["userAgent"] == "UA/1"
    assert event.context["integrations"] == {"All": True}
    assert event.context["ip"] == "198.51.100.9"
    assert event.message_id == "msg-1"
    identity = Identity.objects.get(site=site, key="a-3bxuAxl18r02UsdTUdk1Ri9")
    assert (identity.kind, identity.profile_id) == ("anonymous", event.profile_id)


def test_it_corrects_the_client_clock_with_sent_at(client, site, key):
    # The client's clock runs an hour fast: sentAt - timestamp = 5 s before it was sent.
    payload = track(timestamp="2030-01-01T12:00:00Z", sentAt="2030-01-01T12:00:05Z")
    send(client, "/v1/track", payload, key=key)
    [event] = events(site)
    assert (event.received_at - event.occurred_at).total_seconds() == pytest.approx(5, abs=1)


@pytest.mark.parametrize(("sent", "read"), EXTRA_FORMS)
def test_it_stores_the_times_rfc_3339_allows_that_fromisoformat_refuses(client, site, key, sent, read):
    response = send(client, "/v1/track", track(timestamp=sent), key=key)
    assert response.status_code == 200, response.content
    [event] = events(site)
    assert event.occurred_at == read


@pytest.mark.parametrize("field", ["timestamp", "sentAt"])
@pytest.mark.parametrize("sent", STILL_INVALID)
def test_it_answers_400_naming_the_field_to_an_impossible_time(client, site, key, sent, field):
    response = send(client, "/v1/track", track(**{field: sent}), key=key)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Event.objects.filter(site=site).exists()


def test_it_keeps_a_client_given_ip_and_ignores_forwarded_for_by_default(client, site, key):
    send(client, "/v1/track", track(context={"ip": "192.0.2.1"}), key=key)
    send(
        client,
        "/v1/track",
        track(),
        key=key,
        REMOTE_ADDR="198.51.100.2",
        HTTP_X_FORWARDED_FOR="6.6.6.6",
    )
    assert [e.context["ip"] for e in events(site)] == ["192.0.2.1", "198.51.100.2"]


@pytest.mark.parametrize(
    ("context", "ip"),
    [
        ({}, "198.51.100.2"),  # a browser's or an unnamed caller's call
        ({"library": {"name": "analytics.js", "version": "2.11.1"}}, "198.51.100.2"),
        # Server libraries call from the site's servers: their address is not the person's.
        ({"library": {"name": "analytics-python", "version": "2.3.2"}}, None),
        ({"library": {"name": "@segment/analytics-node", "version": "2.1.0"}}, None),
        ({"library": {"name": "Analytics.NET", "version": "3.8.0"}}, None),
        # ... unless the call says it comes straight from the person's device.
        ({"library": {"name": "analytics-python", "version": "2.3.2"}, "direct": True}, "198.51.100.2"),
    ],
)
def test_it_fills_the_callers_ip_for_client_side_calls_only(client, site, key, context, ip):
    send(client, "/v1/track", track(context=context), key=key, REMOTE_ADDR="198.51.100.2")
    assert events(site)[0].context.get("ip") == ip


def test_it_trusts_forwarded_for_only_as_far_as_the_configured_proxies(client, site, key, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    # The client wrote 6.6.6.6; our one proxy appended the address it saw.
    headers = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.50"}
    send(client, "/v1/track", track(), key=key, **headers)
    assert events(site)[0].context["ip"] == "203.0.113.50"


def test_it_turns_an_anonymous_identify_into_traits_on_that_person(client, site, key):
    payload = {"anonymousId": "a-9", "traits": {"plan": "trial"}}
    assert send(client, "/v1/identify", payload, key=key).status_code == 200
    profile = Profile.objects.get(identities__key="a-9")
    assert profile.properties["plan"] == "trial"
    assert not profile.is_identified


def test_it_answers_with_the_profile_id_to_keep(client, site, key):
    first = send(client, "/v1/page", {"anonymousId": "a-5"}, key=key).json()["profile_id"]
    again = send(client, "/v1/track", {"profileId": first, "event": "Back"}, key=key).json()
    assert again["profile_id"] == first


def test_a_bare_profile_id_kept_from_before_tokens_still_finds_its_person_by_anonymous_id(client, site, key):
    """A tracker upgraded from a release that handed out bare ids still sends one: it is
    unknown now, and the anonymous id sent with it finds the person; no one new is made."""
    token = send(client, "/v1/page", {"anonymousId": "a-old"}, key=key).json()["profile_id"]
    bare = token.partition(".")[0]
    again = send(client, "/v1/track", {"anonymousId": "a-old", "profileId": bare, "event": "Back"}, key=key).json()
    assert again["profile_id"] == token
    assert Profile.objects.filter(site=site).count() == 1


@pytest.mark.parametrize("guess", [lambda pk: pk, lambda pk: str(pk), lambda pk: f"{pk}.AAAAAAAAAAAAAAAA"])
def test_a_guessed_profile_id_does_not_reach_a_strangers_profile(client, site, key, guess):
    """Profile ids are a sequence. A visitor's number alone, sent with the public write
    key, must not add events to their profile, nor merge it into the sender."""
    victim = send(client, "/v1/page", {"anonymousId": "a-victim"}, key=key).json()["profile_id"]
    victim_pk = redeem(victim)

    sent = [{"type": "track", "profileId": guess(victim_pk), "event": "Planted"},
            {"type": "identify", "profileId": guess(victim_pk), "userId": "mallory"}]
    answer = send(client, "/v1/batch", {"batch": sent}, key=key).json()

    assert victim not in answer["profile_ids"]
    assert not Event.objects.filter(profile_id=victim_pk, type__in=["Planted", "identify"]).exists()
    stranger = Profile.objects.get(pk=victim_pk)
    assert stranger.merged_into_id is None and not stranger.is_identified
    assert Identity.objects.get(site=site, key="a-victim").profile_id == victim_pk


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[]", b'{"event": NaN}'])
def test_it_answers_400_to_an_unparsable_body(client, site, key, raw):
    response = send(client, "/v1/track", raw, key=key)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert not Event.objects.filter(site=site).exists()


def test_it_answers_413_to_a_body_over_500_kb(client, site, key):
    batch = [track(properties={"pad": "x" * 30_000}) for _ in range(20)]
    response = send(client, "/v1/batch", {"batch": batch}, key=key)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert not Event.objects.filter(site=site).exists()


def test_it_refuses_more_than_2500_messages(client, site, key):
    response = send(client, "/v1/batch", {"batch": [{"type": "track"}] * 2501}, key=key)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_messages"


def test_it_answers_400_to_a_single_call_over_32_kb(client, site, key):
    response = send(client, "/v1/track", track(properties={"pad": "x" * 33_000}), key=key)
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["reason"].startswith("message too large")
    assert body["message"].startswith("message: message too large")


def test_it_stores_the_valid_messages_of_a_batch_and_lists_the_others(client, site, key):
    batch = [
        track("First"),
        {"type": "track", "userId": "undefined", "event": "Junk id"},
        track("Too big", properties={"pad": "x" * 33_000}),
        {"type": "explode", "userId": "u"},
        track("Bad date", timestamp="last tuesday"),
        track("Last"),
    ]
    response = send(client, "/v1/batch", {"batch": batch}, key=key)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "userId"),
        (2, "message"),
        (3, "type"),
        (4, "timestamp"),
    ]
    assert all(e["reason"] for e in body["errors"])
    assert [e.type for e in events(site)] == ["First", "Last"]
    assert len(body["profile_ids"]) == 1


def test_it_answers_400_when_no_message_of_a_batch_is_valid(client, site, key):
    response = send(client, "/v1/batch", {"batch": [{"type": "nope"}, track(event=None)]}, key=key)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert body["message"].startswith("2 of 2 messages are invalid; message 0: type: ")
    assert [e["index"] for e in body["errors"]] == [0, 1]
    assert not Event.objects.filter(site=site).exists()


@pytest.mark.parametrize("how", [{"path": "/v1/batch?strict=1"}, {"HTTP_X_STRICT_MODE": "1"}])
def test_strict_mode_refuses_the_whole_batch_for_one_invalid_message(client, site, key, how):
    path = how.pop("path", "/v1/batch")
    response = send(client, path, {"batch": [track(), {"type": "nope"}]}, key=key, **how)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "index": 1,
            "field": "type",
            "reason": "must be one of track, identify, page, screen, group, alias",
        }
    ]
    assert not Event.objects.filter(site=site).exists()


def test_strict_mode_stores_a_fully_valid_batch(client, site, key):
    assert (
        send(client, "/v1/batch?strict=1", {"batch": [track(), track()]}, key=key).status_code
        == 200
    )
    assert len(events(site)) == 2


def test_it_answers_401_and_stores_nothing_for_unsigned_identities_in_secure_mode(
    client, site, key
):
    site.only_signed_data = True
    site.save()
    response = send(
        client, "/v1/batch", {"batch": [track(), {"type": "page", "anonymousId": "a"}]}, key=key
    )
    assert response.status_code == 401
    assert response.json()["code"] == "unsigned"
    assert not Event.objects.filter(site=site).exists()
    signed = track(signature=keys.sign_identity(site.signing_secret, "user-1"))
    assert send(client, "/v1/track", signed, key=key).status_code == 200


def test_it_answers_405_to_other_methods(client, key):
    response = client.get("/v1/track")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# --- dedupe -------------------------------------------------------------------------


def test_it_stores_a_retried_message_once(client, site, key):
    message = track(messageId="retry-me")
    first = send(client, "/v1/track", message, key=key)
    second = send(client, "/v1/batch", {"batch": [message, track(messageId="new")]}, key=key)
    assert first.status_code == second.status_code == 200
    assert second.json()["errors"] == []
    assert [e.message_id for e in events(site)] == ["retry-me", "new"]


def test_message_ids_are_per_site(client, site, other_site, key):
    send(client, "/v1/track", track(messageId="shared"), key=key)
    send(client, "/v1/track", track(messageId="shared"), key=other_site.primary_write_key().key)
    assert len(events(site)) == len(events(other_site)) == 1


# --- CORS and the settings document -------------------------------------------------------


def test_it_answers_preflight_requests(client):
    response = client.options(
        "/v1/t",
        HTTP_ORIGIN="https://shop.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization,content-type",
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert response["Access-Control-Allow-Headers"].lower() == "authorization,content-type"


def test_it_allows_any_origin_when_the_site_lists_none(client, site, key):
    response = send(client, "/v1/track", track(), key=key, HTTP_ORIGIN="https://any.example")
    assert response["Access-Control-Allow-Origin"] == "https://any.example"
    assert response["Vary"] == "Origin"
    error = send(client, "/v1/track", b"{", key=key, HTTP_ORIGIN="https://any.example")
    assert error["Access-Control-Allow-Origin"] == "https://any.example"


def test_it_refuses_browser_events_from_origins_the_site_does_not_allow(client, site, key):
    site.allowed_origins = ["https://shop.example"]
    site.save()
    allowed = send(client, "/v1/track", track("Ok"), key=key, HTTP_ORIGIN="https://shop.example")
    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == "https://shop.example"
    refused = send(client, "/v1/track", track("No"), key=key, HTTP_ORIGIN="https://evil.example")
    assert refused.status_code == 403
    assert refused.json()["code"] == "origin_not_allowed"
    # The page may read the refusal (so a tracker drops the events instead of retrying
    # them forever); nothing of the request was stored.
    assert refused["Access-Control-Allow-Origin"] == "https://evil.example"
    assert refused["Access-Control-Expose-Headers"] == "Retry-After"
    # Servers send no Origin: they are not browsers and CORS does not apply.
    assert send(client, "/v1/track", track("Server"), key=key).status_code == 200
    assert [e.type for e in events(site)] == ["Ok", "Server"]


def test_it_serves_the_settings_document_for_a_write_key(client, site, key):
    response = client.get(f"/v1/projects/{key}/settings", HTTP_ORIGIN="https://shop.example")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://shop.example"
    document = response.json()
    assert document["integrations"]["Segment.io"]["apiKey"] == key
    assert document["integrations"]["Segment.io"]["apiHost"] == "testserver/v1"
    assert document["integrations"]["Segment.io"]["protocol"] == "http"
    assert document["analyticsNextEnabled"] is True
    assert "plan" in document and "edgeFunction" in document


def test_it_answers_404_for_the_settings_of_an_unknown_key(client):
    response = client.get("/v1/projects/wk_unknown/settings")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_limits_are_segments(client):
    assert (segment.MAX_MESSAGE_BYTES, segment.MAX_BATCH_BYTES, segment.MAX_BATCH_MESSAGES) == (
        32 * 1024,
        500 * 1024,
        2500,
    )
