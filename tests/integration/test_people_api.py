"""Management API for people: shapes, paging, access per site and per role."""

import base64
import threading
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from profiles import services
from profiles.models import Identity, Profile
from tests import messages as ingest_messages
from tests.factories import MembershipFactory
from tests.people import company, event, merge, person, session
from tracking import inbox
from tracking import services as tracking_services
from tracking.models import Event, InboxBatch, Membership

pytestmark = pytest.mark.django_db


@pytest.fixture
def key_client(api_client, secret_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    return api_client


@pytest.fixture
def bob(site):
    bob = person(site, "user:bob", "anonymous:a-bob", properties={"email": "bob@example.com", "name": "Bob"})
    company(bob, "acme", name="Acme")
    s = session(bob)
    for i in range(3):
        event(bob, f"step-{i}", session=s, at=timezone.now() - timedelta(minutes=10 - i))
    return bob


@pytest.fixture
def stranger(other_site):
    """Someone on the other site, with an identity key equal to one of site A's."""
    return person(other_site, "user:bob", properties={"email": "other@example.com"})


def test_it_lists_and_searches_people_with_the_secret_key(key_client, site, bob, stranger):
    person(site, "user:carol")
    body = key_client.get("/api/v1/people").json()
    assert body["count"] == 2 and body["count_capped"] is False
    assert {p["id"] for p in body["results"]} == {bob.pk, Profile.objects.get(identities__key="carol").pk}

    body = key_client.get("/api/v1/people", {"q": "bob"}).json()
    [found] = body["results"]
    assert found["id"] == bob.pk and found["name"] == "Bob" and found["is_identified"] is True
    assert {(i["kind"], i["key"]) for i in found["identities"]} == {("user", "bob"), ("anonymous", "a-bob")}
    assert found["properties"]["email"] == "bob@example.com"


def test_a_search_probes_the_matches_once(key_client, site, bob):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        body = key_client.get("/api/v1/people", {"q": "bob"}).json()
    assert body["count"] == 1 and [p["id"] for p in body["results"]] == [bob.pk]
    assert sum("UNION ALL" in q["sql"] for q in queries.captured_queries) == 1


def test_a_list_that_fits_its_first_page_is_not_counted_again(key_client, site, bob):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    person(site, "user:pro", properties={"plan": "pro"})
    with CaptureQueriesContext(connection) as queries:
        body = key_client.get("/api/v1/people", {"q": "plan=pro"}).json()
    assert (body["count"], body["count_capped"]) == (1, False)
    assert not any("COUNT(" in q["sql"].upper() for q in queries.captured_queries)
    # A list longer than a page is counted.
    for n in range(3):
        person(site, f"user:more{n}", properties={"plan": "pro"})
    body = key_client.get("/api/v1/people", {"q": "plan=pro", "limit": 2}).json()
    assert (body["count"], len(body["results"])) == (4, 2)


def test_it_pages_people_by_cursor_links(key_client, site):
    for i in range(5):
        person(site, f"user:p{i}", last_seen=timezone.now() - timedelta(minutes=i))
    first = key_client.get("/api/v1/people", {"limit": 2}).json()
    assert first["previous"] is None and len(first["results"]) == 2
    second = key_client.get(first["next"]).json()
    third = key_client.get(second["next"]).json()
    assert third["next"] is None
    names = [p["identities"][0]["key"] for page in (first, second, third) for p in page["results"]]
    assert names == ["p0", "p1", "p2", "p3", "p4"]
    back = key_client.get(third["previous"]).json()
    assert back["results"] == second["results"]


def test_a_page_past_the_end_still_counts_everyone(key_client, client, site):
    # The last person goes between two pages: the next link now leads to an empty page.
    for i in range(2):
        person(site, f"user:p{i}", last_seen=timezone.now() - timedelta(minutes=i))
    first = key_client.get("/api/v1/people", {"limit": 1}).json()
    services.profile_forget(site=site, profile=Profile.objects.get(identities__key="p1"))
    after = key_client.get(first["next"]).json()
    assert after["results"] == [] and (after["count"], after["count_capped"]) == (1, False)

    # The page behind the same kind of link says so, not "this site has no data yet".
    client.force_login(MembershipFactory(site=site, role=Membership.Role.VIEWER).user)
    cursor = first["next"].split("cursor=")[1].split("&")[0]
    response = client.get(f"/app/s/{site.pk}/people/", {"cursor": cursor})
    assert response.status_code == 200 and response.context["site_is_empty"] is False
    assert response.context["count"] == 1


@pytest.mark.parametrize(
    "params, field",
    [({"cursor": "garbage"}, "cursor"), ({"sort": "password"}, "sort"), ({"limit": 0}, "limit")],
)
def test_it_names_the_bad_parameter(key_client, params, field):
    response = key_client.get("/api/v1/people", params)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and field in body["errors"]


@pytest.mark.parametrize(
    "raw, status",
    [
        ("f|2000-01-01T00:00:00+23:59|1", 200),  # read in UTC: PostgreSQL refuses offsets past 15:59
        ("b|2000-01-01T00:00:00-16:00|1", 200),
        ("f|0001-01-01T00:00:00+14:00|1", 400),  # before year 1 in UTC
    ],
)
def test_it_reads_a_cursor_time_with_any_offset_or_refuses_it(key_client, client, site, bob, raw, status):
    token = base64.urlsafe_b64encode(raw.encode()).decode()
    response = key_client.get("/api/v1/people", {"cursor": token})
    assert response.status_code == status, response.content  # a 500 before
    if status == 400:
        assert "cursor" in response.json()["errors"]
    # The people page shows its first page for a mangled link.
    client.force_login(MembershipFactory(site=site, role=Membership.Role.VIEWER).user)
    assert client.get(f"/app/s/{site.pk}/people/", {"cursor": token}).status_code == 200


def test_it_shows_a_person_with_identities_companies_and_recent_events(key_client, bob):
    body = key_client.get(f"/api/v1/people/{bob.pk}").json()
    assert body["id"] == bob.pk
    assert body["properties"] == {"email": "bob@example.com", "name": "Bob"}
    assert [c["key"] for c in body["companies"]] == ["acme"]
    assert [e["type"] for e in body["recent_events"]] == ["step-2", "step-1", "step-0"]
    assert body["event_count"] == 3 and body["session_count"] == 1
    assert set(body["recent_events"][0]) == {
        "id", "type", "occurred_at", "received_at", "session_id", "message_id", "properties", "context"
    }


def test_it_answers_a_merged_id_with_the_live_person(key_client, site, bob):
    old = person(site, "anonymous:a-old")
    merge(old, bob)
    body = key_client.get(f"/api/v1/people/{old.pk}").json()
    assert body["id"] == bob.pk and body["merged_profile_ids"] == [old.pk]


def test_it_finds_a_person_by_identity(key_client, site, bob, stranger):
    assert key_client.get("/api/v1/people/by-identity/a-bob").json()["id"] == bob.pk
    assert key_client.get("/api/v1/people/by-identity/bob", {"kind": "user"}).json()["id"] == bob.pk
    assert key_client.get("/api/v1/people/by-identity/bob", {"kind": "email"}).status_code == 404
    assert key_client.get(f"/api/v1/people/by-identity/{bob.pk}", {"kind": "profile"}).json()["id"] == bob.pk
    assert key_client.get("/api/v1/people/by-identity/bob", {"kind": "nonsense"}).status_code == 400
    slashed = person(site, "external:https://crm.example/c/7")
    assert key_client.get("/api/v1/people/by-identity/https://crm.example/c/7").json()["id"] == slashed.pk


def test_it_exports_a_person(key_client, bob):
    response = key_client.get(f"/api/v1/people/{bob.pk}/export")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == bob.pk and len(body["events"]) == 3 and len(body["sessions"]) == 1
    assert [c["key"] for c in body["companies"]] == ["acme"]
    assert {(i["kind"], i["key"]) for i in body["identities"]} == {("user", "bob"), ("anonymous", "a-bob")}


def test_an_export_writes_times_as_the_rest_of_the_api_does(key_client, bob):
    """One format across the API: DRF's, UTC with a ``Z`` (the export wrote ``+00:00``)."""
    detail = key_client.get(f"/api/v1/people/{bob.pk}").json()
    body = key_client.get(f"/api/v1/people/{bob.pk}/export").json()
    assert body["first_seen"] == detail["first_seen"] and body["last_seen"] == detail["last_seen"]
    times = [body["exported_at"], body["first_seen"], body["last_seen"]]
    times += [e[k] for e in body["events"] for k in ("occurred_at", "received_at")]
    times += [s[k] for s in body["sessions"] for k in ("started_at", "last_event_at")]
    times += [i["created_at"] for i in body["identities"]]
    assert times and all(t.endswith("Z") and "+" not in t for t in times), times


def test_it_deletes_a_person(key_client, site, bob, stranger):
    event(stranger, "elsewhere")
    response = key_client.delete(f"/api/v1/people/{bob.pk}")
    assert response.status_code == 204
    assert not Profile.objects.filter(pk=bob.pk).exists()
    assert not Event.objects.filter(profile_id=bob.pk).exists()
    assert Event.objects.filter(profile_id=stranger.pk).count() == 1
    assert key_client.get(f"/api/v1/people/{bob.pk}").status_code == 404


def test_it_forgets_a_person_named_by_any_identity_key(key_client, site, bob, stranger, marketer):
    # A request to be forgotten comes with an email or a user id, not our profile id.
    assert key_client.delete("/api/v1/people/by-identity/nobody").status_code == 404
    assert key_client.delete("/api/v1/people/by-identity/bob?kind=nonsense").status_code == 400
    editor = APIClient()
    editor.force_authenticate(marketer)  # an editor, not an admin of the site
    assert editor.delete(f"/api/v1/people/by-identity/bob?site={site.pk}").status_code == 403
    assert Profile.objects.filter(pk=bob.pk).exists()
    assert key_client.delete("/api/v1/people/by-identity/bob?kind=user").status_code == 204
    assert not Profile.objects.filter(pk=bob.pk).exists()
    assert not Event.objects.filter(profile_id=bob.pk).exists()
    assert Profile.objects.filter(pk=stranger.pk).exists()
    paths = key_client.get("/api/schema/", {"format": "json"}).json()["paths"]
    assert "delete" in paths["/api/v1/people/by-identity/{key}"]


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/people/{id}"),
        ("get", "/api/v1/people/{id}/export"),
        ("delete", "/api/v1/people/{id}"),
        ("get", "/api/v1/people/by-identity/other@example.com?kind=email"),
        ("delete", "/api/v1/people/by-identity/a-bob"),  # site A's visitor, by key of site B
    ],
)
def test_it_404s_people_of_another_site_for_a_secret_key(api_client, other_site, stranger, bob, method, path):
    # The key belongs to site B; bob lives on site A.
    other_key = tracking_services.secret_key_issue(site=other_site).key
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {other_key}")
    response = getattr(api_client, method)(path.format(id=bob.pk))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert Profile.objects.filter(pk=bob.pk).exists()
    # Site B's own person answers; by key it is B's "bob", never A's.
    assert api_client.get("/api/v1/people/by-identity/bob").json()["id"] == stranger.pk
    assert [p["id"] for p in api_client.get("/api/v1/people").json()["results"]] == [stranger.pk]


def test_it_404s_a_site_param_that_is_not_the_keys(key_client, other_site, bob):
    assert key_client.get("/api/v1/people", {"site": other_site.pk}).status_code == 404


def test_a_key_and_a_session_read_the_site_param_alike(key_client, api_client, site, marketer, bob):
    api_client.force_authenticate(marketer)
    for client in (key_client, api_client):
        assert client.get("/api/v1/people", {"site": f"0{site.pk}"}).status_code == 200
        response = client.get("/api/v1/people", {"site": "one"})
        assert response.status_code == 400
        assert "site" in response.json()["errors"]


def test_it_serves_members_through_their_session_and_404s_others(api_client, site, other_site, bob, marketer, make_user):
    api_client.force_authenticate(marketer)
    assert api_client.get("/api/v1/people", {"site": site.pk}).json()["results"][0]["id"] == bob.pk
    assert api_client.get(f"/api/v1/people/{bob.pk}", {"site": site.pk}).status_code == 200
    assert api_client.get("/api/v1/people").status_code == 400  # which site?
    assert api_client.get("/api/v1/people", {"site": other_site.pk}).status_code == 404

    outsider = make_user()
    MembershipFactory(user=outsider, site=other_site, role=Membership.Role.ADMIN)
    api_client.force_authenticate(outsider)
    assert api_client.get("/api/v1/people", {"site": site.pk}).status_code == 404
    assert api_client.get(f"/api/v1/people/{bob.pk}", {"site": site.pk}).status_code == 404
    assert api_client.get(f"/api/v1/people/{bob.pk}", {"site": other_site.pk}).status_code == 404
    assert api_client.delete(f"/api/v1/people/{bob.pk}?site={site.pk}").status_code == 404
    assert Profile.objects.filter(pk=bob.pk).exists()


def test_it_lets_only_site_admins_export_and_delete_through_a_session(api_client, site, bob, marketer):
    api_client.force_authenticate(marketer)  # editor
    assert api_client.get(f"/api/v1/people/{bob.pk}/export", {"site": site.pk}).status_code == 403
    response = api_client.delete(f"/api/v1/people/{bob.pk}?site={site.pk}")
    assert response.status_code == 403 and "admin" in response.json()["message"]
    assert Profile.objects.filter(pk=bob.pk).exists()

    Membership.objects.filter(user=marketer).update(role=Membership.Role.ADMIN)
    assert api_client.get(f"/api/v1/people/{bob.pk}/export", {"site": site.pk}).status_code == 200
    assert api_client.delete(f"/api/v1/people/{bob.pk}?site={site.pk}").status_code == 204


def test_it_refuses_anonymous_callers(api_client, bob):
    assert api_client.get(f"/api/v1/people/{bob.pk}").status_code in (401, 403)


def test_it_documents_the_people_endpoints(key_client):
    response = key_client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"get"} <= set(paths["/api/v1/people"])
    assert {"get", "delete"} <= set(paths["/api/v1/people/{profile_id}"])
    assert "get" in paths["/api/v1/people/{profile_id}/export"]
    assert "get" in paths["/api/v1/people/by-identity/{key}"]
    params = {p["name"] for p in paths["/api/v1/people"]["get"]["parameters"]}
    assert {"q", "sort", "cursor", "limit", "site"} <= params


def test_it_documents_every_status_it_answers(api_client, site, bob, marketer):
    ops = [
        ("get", "/api/v1/people", "/api/v1/people"),
        ("get", f"/api/v1/people/{bob.pk}", "/api/v1/people/{profile_id}"),
        ("delete", f"/api/v1/people/{bob.pk}", "/api/v1/people/{profile_id}"),
        ("get", f"/api/v1/people/{bob.pk}/export", "/api/v1/people/{profile_id}/export"),
        ("get", "/api/v1/people/by-identity/bob", "/api/v1/people/by-identity/{key}"),
        ("get", "/api/v1/sites", "/api/v1/sites"),
        ("get", f"/api/v1/sites/{site.pk}", "/api/v1/sites/{site_id}"),
    ]
    paths = api_client.get("/api/schema/", {"format": "json"}).json()["paths"]

    def assert_documented(response, method, template):
        documented = paths[template][method]["responses"]
        assert str(response.status_code) in documented, (method, template, response.status_code)
        assert documented[str(response.status_code)]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/Error"
        }
        assert set(response.json()) == {"code", "message"} | ({"errors"} & set(response.json()))

    for method, url, template in ops:  # no credentials, then a revoked or made-up key
        assert_documented(getattr(api_client, method)(url), method, template)
        api_client.credentials(HTTP_AUTHORIZATION="Bearer sk_nope")
        assert_documented(getattr(api_client, method)(url), method, template)
        api_client.credentials()
    api_client.force_authenticate(marketer)  # a session that does not say which site
    for method, url, template in ops[:5]:
        assert_documented(getattr(api_client, method)(url), method, template)


def test_a_server_error_under_the_api_answers_in_its_error_shape(secret_key, client, site):
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    with mock.patch("profiles.selectors.people_page", side_effect=RuntimeError("boom")):
        response = api.get("/api/v1/people")
        assert response.status_code == 500 and response["Content-Type"] == "application/json"
        assert response.json() == {"code": "server_error", "message": "Server error."}
        # Pages keep Django's.
        client.raise_request_exception = False
        client.force_login(MembershipFactory(site=site, role=Membership.Role.VIEWER).user)
        page = client.get(f"/app/s/{site.pk}/people/")
        assert page.status_code == 500 and page["Content-Type"].startswith("text/html")


def test_a_request_django_refuses_answers_in_the_api_error_shape(key_client):
    # More query fields than DATA_UPLOAD_MAX_NUMBER_FIELDS: Django's SuspiciousOperation.
    query = "&".join(f"x{i}=1" for i in range(1100))
    response = key_client.get(f"/api/v1/people?{query}")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "bad_request", "message": "Bad request."}


def test_it_survives_nul_bytes_in_search_and_keys(key_client, bob):
    response = key_client.get("/api/v1/people", {"q": "bo\x00b"})
    assert response.status_code == 400 and "q" in response.json()["errors"]
    assert key_client.get("/api/v1/people/by-identity/bo%00b").status_code == 404


@pytest.mark.parametrize("q", ["²", "١٢", "x=NaN", "x=-Infinity", "x=1e400"])
def test_it_searches_for_odd_digits_and_numbers_as_text(key_client, bob, q):
    # Unicode digits are not a profile id; NaN and infinities are no JSON value.
    response = key_client.get("/api/v1/people", {"q": q})
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []
    assert key_client.get("/api/v1/people/by-identity/%C2%B2", {"kind": "profile"}).status_code == 404


@pytest.mark.parametrize("q", ['plan="\\u0000"', 'plan="\\ud800"'])
def test_a_property_search_for_a_value_jsonb_cannot_hold_finds_no_one(key_client, bob, q):
    response = key_client.get("/api/v1/people", {"q": q})
    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_tampered_cursor_is_a_400_naming_it_or_read_in_utc(key_client, bob):
    # Past year 1 once in UTC: no time a row holds.
    response = key_client.get("/api/v1/people", {"cursor": _cursor("f|0001-01-01T00:00:00+14:00|1")})
    assert response.status_code == 400 and "cursor" in response.json()["errors"]
    # An offset PostgreSQL refuses (past ±15:59) is the same moment in UTC.
    response = key_client.get("/api/v1/people", {"cursor": _cursor("f|2999-01-01T00:00:00+23:59|1")})
    assert response.status_code == 200 and [p["id"] for p in response.json()["results"]] == [bob.pk]


def test_it_finds_a_property_spelled_as_a_number_or_as_text(key_client, site):
    person(site, "user:n", properties={"score": "NaN"})
    assert [p["id"] for p in key_client.get("/api/v1/people", {"q": "score=NaN"}).json()["results"]] != []


@pytest.mark.parametrize("query", ["segment=1", "segment=", "segment=1&segment=", "segment=abc"])
def test_it_refuses_a_segment_filter_rather_than_listing_everyone(api_client, site, secret_key, bob, query):
    # A blank or repeated segment is a filter too: answering everyone would be the wrong list.
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    response = api_client.get(f"/api/v1/people?{query}")
    assert response.status_code == 400
    assert "segment" in response.json()["errors"]



def test_a_delete_erases_what_was_still_queued_for_the_person(key_client, site, queued):
    ingest_messages.ingest(site, ingest_messages.identify("u-1", anon="a-1"))  # stored
    profile = ingest_messages.profile_of(site, "u-1")
    queued_message = ingest_messages.track("Order Completed", user="u-1", anon="a-1", message_id="m-queued", index=0)
    inbox.submit(site, [queued_message], received_at=timezone.now(), actor="write key")
    assert InboxBatch.objects.exists()

    assert key_client.delete(f"/api/v1/people/{profile.pk}").status_code == 204
    inbox.drain(idle_seconds=0)  # what a drain would find afterwards: nothing of them

    assert not InboxBatch.objects.exists()
    assert not Event.objects.filter(site=site).exists()
    assert not Identity.objects.filter(site=site).exists()
    assert not Profile.objects.filter(site=site).exists()


def test_a_delete_behind_a_backlog_is_refused_and_erases_nothing(key_client, site, bob, queued):
    with mock.patch.object(inbox, "store_queued", return_value=False):
        response = key_client.delete(f"/api/v1/people/{bob.pk}")
    assert response.status_code == 503 and response["Retry-After"] == "60"
    assert response.json()["code"] == "busy"
    assert Profile.objects.filter(pk=bob.pk).exists()


def test_storing_the_queue_gives_up_after_its_timeout(site, queued):
    inbox.submit(site, [ingest_messages.track(anon="a-1", index=0)], received_at=timezone.now(), actor="write key")
    assert inbox.store_queued(site_id=site.pk, timeout=0) is False
    assert inbox.store_queued(site_id=site.pk, timeout=5) is True
    assert not InboxBatch.objects.exists()


def test_an_export_holds_what_was_still_queued_for_the_person(key_client, site, queued):
    ingest_messages.ingest(site, ingest_messages.identify("u-1", anon="a-1"))
    profile = ingest_messages.profile_of(site, "u-1")
    queued_message = ingest_messages.track("Order Completed", user="u-1", message_id="m-queued", index=0)
    inbox.submit(site, [queued_message], received_at=timezone.now(), actor="write key")

    body = key_client.get(f"/api/v1/people/{profile.pk}/export").json()
    assert "Order Completed" in [e["type"] for e in body["events"]]


def test_a_delete_erases_the_persons_calls_set_aside_and_keeps_everyone_elses(key_client, site, queued):
    """Rows set aside as failed hold calls of the person (alone, or beside other people's):
    an admin's retry after the delete must not bring the person back."""
    ingest_messages.ingest(site, ingest_messages.identify("u-1", anon="a-1"))
    profile = ingest_messages.profile_of(site, "u-1")
    t = ingest_messages.track
    mixed = [
        t("Order Completed", user="u-1", index=0),
        t("Product Viewed", anon="a-1", index=1),
        t("Signed Up", user="u-2", anon="a-2", index=2),
        ingest_messages.identify("u-1", anon="a-new", index=3),
        t("Page Viewed", anon="a-new", index=4),  # that device is the person's since the identify
        ingest_messages.identify("u-3", anon="a-1", index=5),  # someone else signs in on their device
    ]
    inbox.submit(site, mixed, received_at=timezone.now(), actor="write key")
    inbox.submit(site, [t("Cart Viewed", profile_id=profile.pk, index=0)], received_at=timezone.now(), actor="write key")
    InboxBatch.objects.update(failed_at=timezone.now(), last_error="boom")

    assert key_client.delete(f"/api/v1/people/{profile.pk}").status_code == 204
    inbox.retry_failed(list(InboxBatch.objects.values_list("pk", flat=True)))  # the admin, later
    inbox.drain(idle_seconds=0)

    assert not InboxBatch.objects.exists()
    assert not Identity.objects.filter(site=site, key__in=["u-1", "a-new"]).exists()
    other, third = ingest_messages.profile_of(site, "u-2"), ingest_messages.profile_of(site, "u-3")
    events = Event.objects.filter(site=site).exclude(type="visited-site")
    assert set(events.values_list("profile_id", "type")) == {(other.pk, "Signed Up"), (third.pk, "identify")}
    assert set(Profile.objects.filter(site=site)) == {other, third}


def test_a_delete_erases_a_call_queued_after_the_queue_was_stored(key_client, site, queued):
    """A call of the person accepted between ``store_queued`` and the erase (its answer
    came before the delete's) goes with them, not into a new profile after."""
    ingest_messages.ingest(site, ingest_messages.identify("u-1", anon="a-1"))
    profile = ingest_messages.profile_of(site, "u-1")
    real_store_queued = inbox.store_queued

    def store_then_accept_a_call(**kwargs):
        stored = real_store_queued(**kwargs)
        late = ingest_messages.track("Order Completed", anon="a-1", index=0)
        assert inbox.submit(site, [late], received_at=timezone.now(), actor="write key").profile_ids == {0: profile.pk}
        return stored

    with mock.patch.object(inbox, "store_queued", side_effect=store_then_accept_a_call):
        assert key_client.delete(f"/api/v1/people/{profile.pk}").status_code == 204
    inbox.drain(idle_seconds=0)

    assert not InboxBatch.objects.exists()
    assert not Profile.objects.filter(site=site).exists()
    assert not Event.objects.filter(site=site).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("arrives_after", ["lock", "stop_accepting"])
def test_a_call_arriving_during_the_erase_goes_with_it_or_waits_for_its_end(site, queued, arrives_after):
    """A call of the person arriving while the erase runs (its lookup still sees them):
    if it is accepted, answered with their profile, before the erase commits, it is
    erased with them; else it waits for the commit and is a call after the erase, which
    a new, empty profile takes. Never answered before and stored after. It arrives once
    the erase has locked the person, or once it queues no more calls (then it waits)."""
    ingest_messages.ingest(site, ingest_messages.identify("u-1", anon="a-1"), ingest_messages.track(user="u-1"))
    profile = ingest_messages.profile_of(site, "u-1")
    answered = threading.Event()
    answers, during_erase = [], []

    def send():
        try:
            late = ingest_messages.track("Order Completed", anon="a-1", index=0)
            answers.append(inbox.submit(site, [late], received_at=timezone.now(), actor="write key"))
            answered.set()
        finally:
            connections.close_all()

    sender = threading.Thread(target=send)
    where, name = (services, "_lock") if arrives_after == "lock" else (inbox, "stop_accepting")
    real = getattr(where, name, None)

    def then_a_call_arrives(*args, **kwargs):
        result = real(*args, **kwargs)
        if not during_erase:
            sender.start()
            answered.wait(1)  # long enough for an INSERT; the erase then goes on and commits
            during_erase.append(answered.is_set())
        return result

    with mock.patch.object(where, name, side_effect=then_a_call_arrives, create=True):
        services.profile_forget(site=site, profile=profile)
    sender.join(10)
    inbox.drain(idle_seconds=0)

    assert answers[0].profile_ids == {0: profile.pk}  # looked up before the commit
    assert not Identity.objects.filter(site=site, key="u-1").exists()
    if during_erase == [True]:
        assert not Profile.objects.filter(site=site).exists() and not Event.objects.filter(site=site).exists()
    else:
        fresh = ingest_messages.profile_of(site, "a-1", "anonymous")
        assert fresh.pk != profile.pk
        assert list(Event.objects.filter(site=site).exclude(type="visited-site").values_list("type", flat=True)) == [
            "Order Completed"
        ]
    assert during_erase == [arrives_after == "lock"]


def test_a_delete_follows_a_queued_merge_of_the_person_into_another(key_client, site, queued):
    """The person (a visitor) signed in as a known user in a call still queued: storing
    it merges them into that user, whose profile is the person's now and goes."""
    ingest_messages.ingest(site, ingest_messages.identify("u-1"), ingest_messages.track("Known", user="u-1"))
    ingest_messages.ingest(site, ingest_messages.track("Browsed", anon="a-1"))
    visitor, known = ingest_messages.profile_of(site, "a-1", "anonymous"), ingest_messages.profile_of(site, "u-1")
    signs_in = ingest_messages.identify("u-1", anon="a-1", index=0)
    inbox.submit(site, [signs_in], received_at=timezone.now(), actor="write key")

    assert key_client.delete(f"/api/v1/people/{visitor.pk}").status_code == 204

    assert not Profile.objects.filter(pk__in=[visitor.pk, known.pk]).exists()
    assert not Event.objects.filter(site=site).exists()
    assert not Identity.objects.filter(site=site).exists()


def test_an_export_follows_a_queued_merge_of_the_person_into_another(key_client, site, queued):
    ingest_messages.ingest(site, ingest_messages.identify("u-1"), ingest_messages.track("Known", user="u-1"))
    ingest_messages.ingest(site, ingest_messages.track("Browsed", anon="a-1"))
    visitor, known = ingest_messages.profile_of(site, "a-1", "anonymous"), ingest_messages.profile_of(site, "u-1")
    signs_in = ingest_messages.identify("u-1", anon="a-1", index=0)
    inbox.submit(site, [signs_in], received_at=timezone.now(), actor="write key")

    body = key_client.get(f"/api/v1/people/{visitor.pk}/export").json()

    assert body["id"] == known.pk and visitor.pk in body["merged_profile_ids"]
    assert {"Browsed", "Known"} <= {e["type"] for e in body["events"]}
    assert {(i["kind"], i["key"]) for i in body["identities"]} == {("user", "u-1"), ("anonymous", "a-1")}


def test_a_visitors_delete_erases_their_first_sign_in_set_aside(key_client, site, queued):
    """An anonymous person's first identify keeps their profile (the identity rules): a
    set-aside sign-in with a new userId, and that user's calls, are theirs. A known user
    signing in on their device is someone else."""
    ingest_messages.ingest(site, ingest_messages.track("Browsed", anon="a-1"), ingest_messages.identify("u-2"))
    visitor = ingest_messages.profile_of(site, "a-1", "anonymous")
    calls = [
        ingest_messages.identify("u-new", anon="a-1", traits={"email": "v@example.com"}, index=0),
        ingest_messages.track("Order Completed", user="u-new", index=1),
        ingest_messages.track("Logged In", user="u-2", anon="a-1", index=2),
    ]
    inbox.submit(site, calls, received_at=timezone.now(), actor="write key")
    InboxBatch.objects.update(failed_at=timezone.now(), last_error="boom")

    assert key_client.delete(f"/api/v1/people/{visitor.pk}").status_code == 204
    inbox.retry_failed(list(InboxBatch.objects.values_list("pk", flat=True)))
    inbox.drain(idle_seconds=0)

    assert not Identity.objects.filter(site=site, key="u-new").exists()
    known = ingest_messages.profile_of(site, "u-2")
    assert list(Profile.objects.filter(site=site)) == [known]
    assert set(Event.objects.filter(site=site).exclude(type="visited-site").values_list("type", flat=True)) == {
        "identify", "Logged In"
    }
