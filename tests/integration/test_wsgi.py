"""config.wsgi: the tracking API under /v1/ is served through a lean handler (only
SecurityMiddleware); every other path through Django's full middleware chain. Driven at
the WSGI level, as gunicorn calls it (Django's test client has its own handler)."""

from __future__ import annotations

import base64
import io
import json
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import wsgi
from tracking.models import Event

pytestmark = pytest.mark.django_db(transaction=True)  # the handler manages connections


def call(method, path, body=b"", **headers):
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["QUERY_STRING"] = headers.pop("query_string", "")
    environ.update({f"HTTP_{k.upper()}": v for k, v in headers.items()})
    if "HTTP_CONTENT_TYPE" in environ:
        environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE")
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    chunks = wsgi.application(environ, start_response)
    try:
        seen["body"] = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):  # a list (the tracking API's answers) has none
            chunks.close()
    seen["chunks"] = chunks
    return seen


def test_a_tracking_call_goes_through_the_lean_handler_and_is_stored(site):
    key = site.primary_write_key().key
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    body = json.dumps({"type": "track", "event": "Lean Call", "anonymousId": "a-lean", "messageId": "m-lean"})

    answer = call("POST", "/v1/track", body.encode(), authorization=auth, content_type="application/json")

    assert answer["status"] == 200, answer["body"]
    assert json.loads(answer["body"])["profile_ids"]
    assert answer["headers"]["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran
    assert int(answer["headers"]["Content-Length"]) == len(answer["body"])  # CommonMiddleware ran
    assert "Set-Cookie" not in answer["headers"]
    assert "Cookie" not in answer["headers"].get("Vary", "")  # no session middleware
    assert Event.objects.filter(site=site, type="Lean Call").count() == 1


def test_a_tracking_answer_is_one_closed_piece(site):
    """A list, which granian writes in one go (its iterator path held the GIL for 18% of
    a /v1/track call); the response is closed before, so request_finished still runs."""
    from django.core.signals import request_finished

    finished = []

    def receiver(**kwargs):
        finished.append(kwargs)

    request_finished.connect(receiver)
    try:
        answer = call("GET", f"/v1/projects/{site.primary_write_key().key}/settings")
    finally:
        request_finished.disconnect(receiver)
    assert answer["status"] == 200
    assert isinstance(answer["chunks"], list) and len(answer["chunks"]) == 1
    assert len(finished) == 1
    assert not isinstance(call("GET", "/admin/login/")["chunks"], list)  # the rest as Django answers


def test_the_tracking_api_still_answers_preflights_settings_and_errors(site):
    key = site.primary_write_key().key
    preflight = call("OPTIONS", "/v1/batch", origin="https://shop.example", access_control_request_method="POST")
    assert preflight["status"] == 204
    assert preflight["headers"]["Access-Control-Allow-Methods"] == "GET, POST, OPTIONS"
    assert call("GET", f"/v1/projects/{key}/settings")["status"] == 200
    assert call("GET", f"/v1/tracker-config/{key}")["status"] == 200
    bad = call("POST", "/v1/track", b"{not json", content_type="application/json")
    assert bad["status"] == 400 and json.loads(bad["body"])["code"] == "invalid_json"


def test_other_paths_keep_the_full_chain(site):
    login = call("GET", "/admin/login/")
    assert login["status"] == 200
    assert "csrftoken" in login["headers"].get("Set-Cookie", "")  # CSRF middleware ran
    assert login["headers"]["X-Frame-Options"] == "DENY"
    assert wsgi.tracking_application is not wsgi.django_application


def test_the_lean_handler_resolves_against_the_v1_urlconf_which_holds_every_v1_route(site):
    from django.urls import get_resolver

    lean = get_resolver(wsgi.TRACKING_URLCONF)
    v1_routes = [p for p in get_resolver().url_patterns if str(p.pattern).startswith("v1/")]
    assert v1_routes and all(p in lean.url_patterns for p in v1_routes)  # none only in the site's
    assert not any(str(p.pattern).startswith("admin/") for p in lean.url_patterns)
    # Not a /v1/ path in the lean URLconf: 404 rather than the site's page.
    missing = call("GET", "/v1/admin/")
    assert (missing["status"], json.loads(missing["body"])["code"]) == (404, "not_found")


# Raw request lines as a WSGI server hands them over: PATH_INFO and QUERY_STRING are
# the request's bytes decoded as Latin-1, whatever they were.
raw_paths = st.sampled_from(
    ["/v1/track", "/v1/batch", "/v1/projects/{key}/settings", "/v1/tracker-config/{key}", "/track", "/set", "/alias", "/t/{key}.rsa", "/{key}.rsa", "/v1/nope"]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=raw_paths,
    path_junk=st.binary(max_size=8),
    query=st.binary(max_size=40),
    method=st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]),
    body=st.binary(max_size=40),
)
def test_raw_bytes_in_the_path_and_query_are_never_a_500(site, path, path_junk, query, method, body):
    key = site.primary_write_key().key
    target = path.format(key=key)
    if path_junk:
        target = target.replace(key, key + path_junk.decode("iso-8859-1")) if "{key}" in path else target + path_junk.decode("iso-8859-1")
    environ_query = (f"sid={key}&ts=1767225600&id=u&p1=v&coid=c&sid=s&".encode() + query).decode("iso-8859-1")
    before = Event.objects.count()
    answer = call(method, target, body, query_string=environ_query, content_type="application/json")
    assert answer["status"] < 500, (target, environ_query, answer["body"][:300])
    if answer["status"] >= 400 and target.startswith(("/v1/track", "/v1/batch", "/track", "/set", "/alias")):
        assert Event.objects.count() == before


def test_what_django_refuses_under_v1_is_a_json_400(site):
    """Too many query fields (Django's own limit, met when the Segment view reads
    ``?strict``): the lean handler answered Django's HTML page."""
    key = site.primary_write_key().key
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    body = json.dumps({"type": "track", "event": "x", "anonymousId": "a-1"}).encode()
    query = "&".join(f"x{i}=1" for i in range(1001))
    answer = call("POST", "/v1/track", body, authorization=auth, content_type="application/json", query_string=query)
    assert answer["status"] == 400, answer["body"][:300]
    assert json.loads(answer["body"])["code"] == "bad_request"
    assert not Event.objects.exists()
