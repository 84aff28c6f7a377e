"""The Segment HTTP tracking API under /v1/: read the request, hand it to the adapter
(``tracking.ingest.segment``) and the ingestion core, answer.

Plain Django views, CSRF-exempt (callers authenticate with a write key, never a
cookie), with CORS on every response so browsers on the sites' own origins can call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from tracking import inbox, jsontext, services
from tracking.http import add_cors_headers, check_origin, client_ip
from tracking.ingest import segment
from tracking.ingest.core import ingest_batch
from tracking.ingest.schema import RequestRejected
from tracking.models import Site

View = Callable[..., HttpResponse]

RETRY_AFTER_SECONDS = 5  # a full inbox (429): Segment's libraries back off and retry
ALIAS_SETTLE_SECONDS = 10.0  # an alias waits this long at most for the calls queued before it

PREFLIGHT_HEADERS = "Authorization, Content-Type, Content-Encoding, X-Strict-Mode, X-Retry-Count"


def cors(view: View) -> View:
    """Answer preflight requests; the view's own responses get headers from ``_respond``."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "OPTIONS":
            # A preflight carries no credentials, so the site is unknown here; the actual
            # request is checked against the site's allowed origins.
            response = HttpResponse(status=204)
            add_cors_headers(request, response, site=None)
            response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = (
                request.headers.get("Access-Control-Request-Headers") or PREFLIGHT_HEADERS
            )
            response["Access-Control-Max-Age"] = "86400"
            return response
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapper)


@cors
def track(request: HttpRequest, endpoint: str) -> HttpResponse:
    """POST /v1/batch, /v1/track, … and the short forms /v1/b, /v1/t, …"""
    if request.method != "POST":
        response = _respond(request, {"code": "method_not_allowed", "message": "Use POST"}, 405)
        response["Allow"] = "POST, OPTIONS"
        return response
    received_at = timezone.now()
    site: Site | None = None
    try:
        body = segment.decode_body(
            _read_body(request), content_encoding=request.META.get("HTTP_CONTENT_ENCODING", "")
        )
        write_key = segment.write_key_from(request.META.get("HTTP_AUTHORIZATION"), body.payload)
        site = services.site_for_write_key(write_key)
        if site is None:
            reason = "Invalid write key" if write_key else "Missing write key"
            raise RequestRejected(401, "unauthorized", reason)
        check_origin(request, site)
        parsed = segment.parse_request(body, endpoint=endpoint, client_ip=client_ip(request))
        strict = segment.is_strict(request.GET.get("strict"), request.META.get("HTTP_X_STRICT_MODE"))
        segment.refuse_invalid(parsed, strict=strict)
        actor = f"write key {write_key}"
        try:
            if inbox.queueable(parsed.messages):
                result = inbox.submit(
                    site, parsed.messages, received_at=received_at, actor=actor, strict=strict
                )
            else:
                if not inbox.immediate():
                    # An alias is stored now: the site's calls queued before it first, or
                    # it would see their people as they were (a visitor's identify still
                    # queued: the alias made a new person and the identify another).
                    inbox.store_queued(site_id=site.pk, timeout=ALIAS_SETTLE_SECONDS)
                result = ingest_batch(
                    site, parsed.messages, received_at=received_at, actor=actor, strict=strict
                )
        except RequestRejected as exc:
            raise RequestRejected(
                exc.status, exc.code, exc.message, [*parsed.errors, *exc.errors]
            ) from None
        answer = segment.answer(parsed, result)
    except RequestRejected as exc:
        response = _respond(request, exc.body(), exc.status, site=site)
        if exc.status == 429:
            response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return _respond(request, answer.body, answer.status, site=site)


@cors
def project_settings(request: HttpRequest, write_key: str) -> HttpResponse:
    """GET /v1/projects/<writeKey>/settings: what analytics.js loads before anything else."""
    if request.method not in ("GET", "HEAD"):
        response = _respond(request, {"code": "method_not_allowed", "message": "Use GET"}, 405)
        response["Allow"] = "GET, OPTIONS"
        return response
    site = services.site_for_write_key(write_key)
    if site is None:
        return _respond(request, {"code": "not_found", "message": "Unknown write key"}, 404)
    document = segment.settings_document(
        write_key, host=request.get_host(), secure=request.is_secure()
    )
    response = _respond(request, document, 200, site=site)
    response["Cache-Control"] = "public, max-age=60"
    return response


def _read_body(request: HttpRequest) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isascii() and length.isdigit() and int(length) > segment.MAX_BATCH_BYTES:
        raise segment.too_large(int(length))
    return request.body


def _respond(
    request: HttpRequest, body: dict[str, Any], status: int, *, site: Site | None = None
) -> HttpResponse:
    # orjson: JsonResponse's encoder was the costliest step of answering a /v1/track call.
    response = HttpResponse(jsontext.dumps_bytes(body), status=status, content_type="application/json")
    add_cors_headers(request, response, site=site)
    return response


# The tracking endpoints first: every request tries the patterns in order, and these are
# nearly all of them.
urlpatterns = [
    re_path(
        r"^(?P<endpoint>batch|import|track|identify|page|screen|group|alias|[btipsga])$",
        track,
        name="segment-track",
    ),
    path("projects/<str:write_key>/settings", project_settings, name="segment-settings"),
]
