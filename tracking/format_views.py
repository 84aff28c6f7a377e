"""Endpoints of the compatible wire formats: Tracardi (``POST /track``), Tracktor.io
(``GET /set``, ``GET /track``, ``GET /alias``) and Raptor (``GET /t/<site>.rsa``).

Each view reads the request, hands it to its adapter (``tracking.ingest.tracardi``,
``.tracktor``, ``.raptor``) and to the ingestion core, and answers. A request is all or
nothing: any invalid part refuses it whole (``strict``) and nothing of it is stored.
CSRF-exempt (callers authenticate with a write key, never a cookie), with CORS so that
Tracardi's tracker can post cross-origin and beacons can be read by scripts; the GET
endpoints write, so their answers are never cached.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from tracking import services
from tracking.http import add_cors_headers, check_origin, client_ip
from tracking.ingest import profile_tokens, raptor, tracardi, tracktor
from tracking.ingest.core import IngestResult, ingest_batch
from tracking.ingest.schema import FieldError, Message, RequestRejected
from tracking.ingest.wire import parse_query, rename_fields
from tracking.models import Site

# A 1×1 GIF whose one pixel is transparent (43 bytes, with its end-of-data code).
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_CACHE = {
    "Cache-Control": "no-cache, no-store, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}
PREFLIGHT_HEADERS = "Content-Type, X-Timestamp"
MAX_HEADER_CHARS = 2000


@csrf_exempt
def track(request: HttpRequest) -> HttpResponse:
    """``/track``: Tracardi posts its tracker payload, Tracktor calls it with GET."""
    if request.method == "POST":
        return _tracardi(request)
    if request.method == "GET":
        return _tracktor(request, "track")
    return _other_method(request, "GET, POST, OPTIONS")


@csrf_exempt
def tracktor_set(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _tracktor(request, "set")
    return _other_method(request, "GET, OPTIONS")


@csrf_exempt
def tracktor_alias(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _tracktor(request, "alias")
    return _other_method(request, "GET, OPTIONS")


@csrf_exempt
def raptor_track(request: HttpRequest, customer: str) -> HttpResponse:
    """``/t/<site id or write key>.rsa``: answers a 1×1 GIF, so an image tag can call it."""
    if request.method != "GET":
        return _other_method(request, "GET, OPTIONS")
    received_at = timezone.now()
    site: Site | None = None
    try:
        params = parse_query(_query_string(request))
        site = _raptor_site(customer)
        check_origin(request, site)
        message = raptor.parse(params, site.raptor_mapping, request_context=_request_context(request))
        _ingest(site, [message], received_at, actor=f"raptor {customer}"[:100], names=raptor.FIELD_NAMES)
    except RequestRejected as exc:
        return _json(request, exc.body(), exc.status, site=site, cache=False)
    response = HttpResponse(PIXEL, content_type="image/gif")
    _finish(request, response, site=site, cache=False)
    return response


def _raptor_site(customer: str) -> Site:
    """Raptor's customer id: the site's id or one of its write keys."""
    if customer.isascii() and customer.isdigit():
        site = services.site_for_id(int(customer)) if len(customer) <= 18 else None
    else:
        site = services.site_for_write_key(customer)
    if site is None:
        raise RequestRejected.unauthorized("customerid", f"{customer[:64]!r} is neither a site id nor an active write key")
    return site


def _tracardi(request: HttpRequest) -> HttpResponse:
    received_at = timezone.now()
    site: Site | None = None
    try:
        payload = tracardi.decode(_body(request))
        key = tracardi.write_key(payload)
        site = services.site_for_write_key(key)
        if site is None:
            raise tracardi.unauthorized(key)
        check_origin(request, site)
        parsed = tracardi.parse(payload, request_context=_request_context(request))
        result = _ingest(site, parsed.messages, received_at, actor=f"write key {key}", names=tracardi.FIELD_NAMES)
    except RequestRejected as exc:
        return _json(request, tracardi.error_body(exc), exc.status, site=site)
    # One person per payload: every event resolved to the same profile (after merges).
    profile_id = result.profile_ids[max(result.profile_ids)]
    return _json(request, tracardi.answer(profile_id, parsed.session_id), 200, site=site)


def _tracktor(request: HttpRequest, endpoint: str) -> HttpResponse:
    received_at = timezone.now()
    site: Site | None = None
    try:
        params = parse_query(_query_string(request))
        key = tracktor.write_key(params)
        site = services.site_for_write_key(key)
        if site is None:
            raise tracktor.unauthorized(key)
        check_origin(request, site)
        message = tracktor.parse(endpoint, params, request_context=_request_context(request))
        result = _ingest(site, [message], received_at, actor=f"write key {key}", names=tracktor.field_names(message))
    except RequestRejected as exc:
        return _json(request, exc.body(), exc.status, site=site, cache=False)
    body = {"success": True, "profile_id": profile_tokens.issue(result.profile_ids[message.index])}
    return _json(request, body, 200, site=site, cache=False)


def _ingest(
    site: Site, messages: list[Message], received_at: datetime, *, actor: str, names: dict[str, str]
) -> IngestResult:
    """All or nothing: any refused message rolls the request back."""
    try:
        result = ingest_batch(site, messages, received_at=received_at, actor=actor, strict=True)
    except RequestRejected as exc:
        errors = rename_fields(exc.errors, names)
        message = f"{errors[0].field}: {errors[0].reason}" if len(errors) == 1 else exc.message
        raise RequestRejected(exc.status, exc.code, message, errors) from None
    if len(result.profile_ids) != len(messages):  # the core stores all or raises; be sure
        errors = rename_fields(result.errors, names) or [FieldError(None, "message", "was not stored")]
        raise RequestRejected(400, "invalid", f"{errors[0].field}: {errors[0].reason}", errors)
    return result


def _query_string(request: HttpRequest) -> str:
    """The raw query string. WSGI hands it over decoded as Latin-1; unescaped UTF-8 in
    it (some clients send it) is read back as UTF-8, anything else is refused."""
    raw = request.META.get("QUERY_STRING", "")
    try:
        return raw.encode("iso-8859-1").decode("utf-8")
    except UnicodeEncodeError:
        return raw  # already text (not from a WSGI server)
    except UnicodeDecodeError:
        raise RequestRejected(400, "invalid", "The query string is not valid UTF-8") from None


def _body(request: HttpRequest) -> bytes:
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isascii() and length.isdigit() and int(length) > tracardi.MAX_BODY_BYTES:
        raise RequestRejected(413, "payload_too_large", f"The body is {length} bytes; the limit is {tracardi.MAX_BODY_BYTES}")
    return request.body


def _request_context(request: HttpRequest) -> dict[str, Any]:
    """What the server saw of the caller; a payload's own context keys win over these."""
    context: dict[str, Any] = {}
    ip = client_ip(request)
    if ip:
        context["ip"] = ip
    agent = request.headers.get("User-Agent")
    if agent:
        context["userAgent"] = agent[:MAX_HEADER_CHARS]
    referrer = request.headers.get("Referer")
    if referrer:
        # A beacon's (or fetch's) Referer is the page that sent it.
        context["page"] = {"url": referrer[:MAX_HEADER_CHARS]}
    return context


# --- CORS and answers ----------------------------------------------------------------


def _finish(request: HttpRequest, response: HttpResponse, *, site: Site | None, cache: bool = True) -> None:
    add_cors_headers(request, response, site=site)
    if not cache:
        for name, value in NO_CACHE.items():
            response[name] = value


def _json(
    request: HttpRequest, body: dict[str, Any], status: int, *, site: Site | None, cache: bool = True
) -> HttpResponse:
    response = JsonResponse(body, status=status)
    _finish(request, response, site=site, cache=cache)
    return response


def _other_method(request: HttpRequest, allowed: str) -> HttpResponse:
    if request.method == "OPTIONS":
        # A preflight carries no credentials, so the site is unknown: the actual request
        # is checked against the site's allowed origins.
        response = HttpResponse(status=204)
        _finish(request, response, site=None)
        response["Access-Control-Allow-Methods"] = allowed
        response["Access-Control-Allow-Headers"] = (
            request.headers.get("Access-Control-Request-Headers") or PREFLIGHT_HEADERS
        )
        response["Access-Control-Max-Age"] = "86400"
        return response
    methods = allowed.replace(", OPTIONS", "")
    response = _json(request, {"code": "method_not_allowed", "message": f"Use {methods}"}, 405, site=None)
    response["Allow"] = allowed
    return response
