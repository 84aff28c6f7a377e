"""Rate limits of the management API: a budget per caller (secret key, user, address),
a lower one of their own for export and delete, a budget of wrong keys per address, 429
in the API's error shape with Retry-After (and in the schema), none of it on the tracking
endpoints, and requests let through when the cache counting them fails."""

import logging
from unittest import mock

import pytest
from django.core.cache.backends.base import BaseCache
from rest_framework.test import APIClient

from tests.factories import MembershipFactory
from tests.people import person
from tracking import services
from tracking.models import Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    """Small budgets, so a test spends one in a few calls."""

    def set_rates(api: str = "3/minute", heavy: str = "2/minute", auth: str | None = "3/minute") -> None:
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {"api": api, "api_heavy": heavy, "api_auth_failure": auth},
        }

    set_rates()
    return set_rates


def key_client(key: str, **extra) -> APIClient:
    client = APIClient(**extra)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_a_caller_past_its_budget_gets_429_with_retry_after_in_the_api_error_shape(rates, secret_key):
    client = key_client(secret_key)
    for _ in range(3):
        assert client.get("/api/v1/people").status_code == 200
    refused = client.get("/api/v1/people")
    assert refused.status_code == 429
    assert refused.json() == {"code": "throttled", "message": refused.json()["message"]}
    assert "throttled" in refused.json()["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert client.get("/api/v1/sites").status_code == 429  # one budget for the whole API


def test_the_budget_comes_back_once_the_window_has_passed(rates, secret_key, monkeypatch):
    from tracking import throttling

    now = [1_000_000.0]
    monkeypatch.setattr(throttling.CallerRateThrottle, "timer", lambda self: now[0])
    client = key_client(secret_key)
    for _ in range(3):
        client.get("/api/v1/people")
    assert client.get("/api/v1/people").status_code == 429
    now[0] += 61
    assert client.get("/api/v1/people").status_code == 200


def test_two_secret_keys_and_two_sites_do_not_share_a_budget(rates, site, other_site, secret_key):
    same_site_key = services.secret_key_issue(site=site).key
    other_site_key = services.secret_key_issue(site=other_site).key
    first = key_client(secret_key)
    for _ in range(3):
        first.get("/api/v1/people")
    assert first.get("/api/v1/people").status_code == 429
    assert key_client(same_site_key).get("/api/v1/people").status_code == 200
    assert key_client(other_site_key).get("/api/v1/people").status_code == 200


def test_a_logged_in_user_is_counted_as_themself_whatever_their_address(rates, site, make_user):
    alice, bob = make_user(), make_user()
    MembershipFactory(site=site, user=alice, role=Membership.Role.EDITOR)
    MembershipFactory(site=site, user=bob, role=Membership.Role.EDITOR)
    for n in range(3):
        client = APIClient(REMOTE_ADDR=f"10.0.0.{n}")
        client.force_login(alice)
        assert client.get("/api/v1/people", {"site": site.pk}).status_code == 200
    client = APIClient(REMOTE_ADDR="10.0.0.9")
    client.force_login(alice)
    assert client.get("/api/v1/people", {"site": site.pk}).status_code == 429
    client.force_login(bob)
    assert client.get("/api/v1/people", {"site": site.pk}).status_code == 200


def test_anonymous_callers_are_counted_by_address_and_a_forged_forwarded_for_does_not_reset_it(rates):
    # The schema is open to anyone: the one management endpoint an anonymous caller reaches.
    for n in range(3):
        forged = APIClient(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
        assert forged.get("/api/schema/").status_code == 200
    forged = APIClient(REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="198.51.100.99")
    assert forged.get("/api/schema/").status_code == 429
    assert APIClient(REMOTE_ADDR="203.0.113.8").get("/api/schema/").status_code == 200


def test_behind_trusted_proxies_the_forwarded_address_is_the_caller(rates, settings):
    settings.TRUSTED_PROXY_HOPS = 1
    proxy = "10.0.0.1"
    for _ in range(3):
        assert APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1").get("/api/schema/").status_code == 200
    assert APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.1").get("/api/schema/").status_code == 429
    assert APIClient(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="198.51.100.2").get("/api/schema/").status_code == 200


def test_export_and_delete_have_a_lower_budget_of_their_own(rates, site, secret_key):
    rates(api="100/minute", heavy="2/minute")
    people = [person(site, f"user:p{n}") for n in range(4)]
    client = key_client(secret_key)
    assert client.get(f"/api/v1/people/{people[0].pk}/export").status_code == 200
    assert client.delete(f"/api/v1/people/{people[1].pk}").status_code == 204
    for refused in (
        client.get(f"/api/v1/people/{people[0].pk}/export"),
        client.delete(f"/api/v1/people/{people[2].pk}"),
        client.delete("/api/v1/people/by-identity/p3"),
    ):
        assert refused.status_code == 429 and refused.json()["code"] == "throttled"
        assert int(refused["Retry-After"]) >= 1
    # Reading goes on: the detail, the lookup by identity and the list are not heavy.
    assert client.get(f"/api/v1/people/{people[2].pk}").status_code == 200
    assert client.get("/api/v1/people/by-identity/p3").status_code == 200
    assert client.get("/api/v1/people").status_code == 200
    # Another key's heavy budget is its own.
    other = key_client(services.secret_key_issue(site=site).key)
    assert other.get(f"/api/v1/people/{people[0].pk}/export").status_code == 200


def test_the_tracking_endpoints_are_not_limited_by_it(rates, site):
    """They have their own back-pressure (INGEST_MAX_BACKLOG); a budget of one call does
    not touch them, while the same address is limited on the management API."""
    rates(api="1/minute", heavy="1/minute")
    key = site.primary_write_key().key
    client = APIClient(REMOTE_ADDR="203.0.113.5")
    for n in range(3):
        segment = {"type": "track", "event": "Viewed", "anonymousId": "a-1", "messageId": f"m-{n}", "writeKey": key}
        assert client.post("/v1/track", segment, format="json").status_code == 200
        tracardi = {"source": {"id": key}, "session": {"id": "s-1"}, "events": [{"type": "viewed"}]}
        assert client.post("/track", tracardi, format="json").status_code == 200
        tracktor = {"sid": key, "ts": "1429186474", "id": "u-1", "data": '{"plan": "pro"}'}
        assert client.get("/set", tracktor).status_code == 200
        assert client.get(f"/t/{key}.rsa", {"p1": "visit", "coid": "c-1", "sid": "s-1"}).status_code == 200
        assert client.get(f"/v1/tracker-config/{key}").status_code == 200
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/schema/").status_code == 429


def test_wrong_keys_from_one_address_get_429_after_the_limit_and_then_no_key_is_tried(rates, secret_key):
    rates(api="100/minute", auth="3/minute")
    guesser = APIClient(REMOTE_ADDR="203.0.113.7")
    for n in range(3):
        guesser.credentials(HTTP_AUTHORIZATION=f"Bearer sk_guess{n}")
        assert guesser.get("/api/v1/people").status_code == 401
    guesser.credentials(HTTP_AUTHORIZATION="Bearer sk_guess3")
    refused = guesser.get("/api/v1/people")
    assert refused.status_code == 429
    assert refused.json() == {"code": "throttled", "message": refused.json()["message"]}
    assert 1 <= int(refused["Retry-After"]) <= 60
    # Past the limit the address is refused before any key is looked up, the right one too
    # (as a log-in lock-out refuses the right password).
    with mock.patch("tracking.authentication.site_for_secret_key") as lookup:
        assert key_client(secret_key, REMOTE_ADDR="203.0.113.7").get("/api/v1/people").status_code == 429
        assert guesser.get("/api/schema/").status_code == 429
    lookup.assert_not_called()
    # Another address is not refused: its wrong key is a 401, its right key answers.
    other = APIClient(REMOTE_ADDR="203.0.113.8")
    other.credentials(HTTP_AUTHORIZATION="Bearer sk_guess4")
    assert other.get("/api/v1/people").status_code == 401
    assert key_client(secret_key, REMOTE_ADDR="203.0.113.8").get("/api/v1/people").status_code == 200


def test_only_failed_authentications_count_against_the_address(rates, secret_key):
    rates(api="100/minute", auth="2/minute")
    good = key_client(secret_key, REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        assert good.get("/api/v1/people").status_code == 200
    bad = key_client("sk_nope", REMOTE_ADDR="203.0.113.7")
    assert [bad.get("/api/v1/people").status_code for _ in range(3)] == [401, 401, 429]


def test_the_wrong_key_budget_comes_back_once_the_window_has_passed(rates, secret_key, monkeypatch):
    from tracking import throttling

    now = [1_000_000.0]
    monkeypatch.setattr(throttling.CallerRateThrottle, "timer", lambda self: now[0])
    rates(api="100/minute", auth="2/minute")
    bad = key_client("sk_nope", REMOTE_ADDR="203.0.113.7")
    assert [bad.get("/api/v1/people").status_code for _ in range(3)] == [401, 401, 429]
    now[0] += 61
    assert key_client(secret_key, REMOTE_ADDR="203.0.113.7").get("/api/v1/people").status_code == 200
    assert bad.get("/api/v1/people").status_code == 401


def test_wrong_keys_are_counted_by_the_forwarded_address_only_behind_trusted_proxies(rates, settings):
    rates(api="100/minute", auth="2/minute")

    def attempt(remote: str, forwarded: str) -> int:
        return key_client("sk_nope", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded).get("/api/v1/people").status_code

    # No trusted proxy: a forged X-Forwarded-For does not give a fresh budget.
    assert [attempt("203.0.113.7", f"198.51.100.{n}") for n in range(3)] == [401, 401, 429]
    settings.TRUSTED_PROXY_HOPS = 1
    assert [attempt("10.0.0.1", "198.51.100.1") for _ in range(3)] == [401, 401, 429]
    assert attempt("10.0.0.1", "198.51.100.2") == 401


def test_the_wrong_key_limit_can_be_turned_off(rates):
    rates(api="100/minute", auth=None)
    bad = key_client("sk_nope", REMOTE_ADDR="203.0.113.7")
    assert {bad.get("/api/v1/people").status_code for _ in range(10)} == {401}


def test_an_address_past_the_wrong_key_limit_still_tracks(rates, site):
    rates(api="100/minute", auth="1/minute")
    key = site.primary_write_key().key
    client = APIClient(REMOTE_ADDR="203.0.113.5")
    client.credentials(HTTP_AUTHORIZATION="Bearer sk_nope")
    assert client.get("/api/v1/people").status_code == 401
    assert client.get("/api/v1/people").status_code == 429
    for n in range(3):
        segment = {"type": "track", "event": "Viewed", "anonymousId": "a-1", "messageId": f"m-{n}", "writeKey": key}
        assert client.post("/v1/track", segment, format="json").status_code == 200
        tracardi = {"source": {"id": key}, "session": {"id": "s-1"}, "events": [{"type": "viewed"}]}
        assert client.post("/track", tracardi, format="json").status_code == 200
        assert client.get(f"/t/{key}.rsa", {"p1": "visit", "coid": "c-1", "sid": "s-1"}).status_code == 200
    # A wrong write key on the tracking API is its own 401 and spends nothing here.
    rates(api="100/minute", auth="2/minute")
    client.credentials()
    for _ in range(3):
        assert client.post("/v1/track", {"type": "track", "event": "x", "anonymousId": "a", "writeKey": "wk_nope"}, format="json").status_code == 401


class UnreachableCache(BaseCache):
    """A cache server that is down (Redis refusing connections): every read and write
    raises. clear() is left alone for the autouse fixture's teardown."""

    def __init__(self, location, params):
        super().__init__(params)

    def _down(self, *args, **kwargs):
        raise ConnectionError("Error 111 connecting to cache.internal:6379. Connection refused.")

    get = set = add = delete = touch = incr = get_many = set_many = delete_many = has_key = _down

    def clear(self):
        pass


@pytest.fixture
def cache_down(settings):
    settings.CACHES = {"default": {"BACKEND": f"{__name__}.UnreachableCache"}}


def test_when_the_cache_fails_requests_are_let_through_with_a_warning(rates, cache_down, site, secret_key, caplog):
    rates(api="1/minute", heavy="1/minute", auth="1/minute")
    people = [person(site, f"user:p{n}") for n in range(2)]
    client = key_client(secret_key)
    with caplog.at_level(logging.WARNING, logger="tracking.throttling"):
        for _ in range(3):
            assert client.get("/api/v1/people").status_code == 200
        assert client.get(f"/api/v1/people/{people[0].pk}/export").status_code == 200
        assert client.delete(f"/api/v1/people/{people[1].pk}").status_code == 204
        assert [key_client("sk_nope").get("/api/v1/people").status_code for _ in range(3)] == [401] * 3
        assert APIClient().get("/api/schema/").status_code == 200
    warnings = [r for r in caplog.records if r.name == "tracking.throttling" and r.levelno == logging.WARNING]
    assert warnings and all("Connection refused" in r.getMessage() for r in warnings)


def test_every_management_endpoint_documents_429_with_retry_after_in_the_error_shape(secret_key):
    paths = key_client(secret_key).get("/api/schema/", {"format": "json"}).json()["paths"]
    operations = [(path, method, op) for path, ops in paths.items() if path.startswith("/api/") for method, op in ops.items()]
    assert len(operations) >= 8
    for path, method, op in operations:
        throttled = op["responses"].get("429")
        assert throttled, (method, path)
        assert throttled["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}, (method, path)
