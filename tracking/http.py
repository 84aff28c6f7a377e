"""What every public tracking endpoint shares: the caller's address and CORS."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers

from tracking.ingest.schema import RequestRejected
from tracking.models import Site


def client_ip(request: HttpRequest) -> str | None:
    """The caller's address. X-Forwarded-For is trusted only for the number of proxy hops
    set in ``TRUSTED_PROXY_HOPS`` (default 0: never), counted from the right, since
    anything left of what our own proxies appended is whatever the client wrote."""
    remote = request.META.get("REMOTE_ADDR") or None
    hops = settings.TRUSTED_PROXY_HOPS
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops <= 0 or not forwarded:
        return remote
    chain = [part.strip() for part in forwarded.split(",") if part.strip()]
    if not chain:
        return remote
    candidate = chain[-hops] if len(chain) >= hops else chain[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def origin_allowed(origin: str, site: Site | None) -> bool:
    """A site with no allowed origins accepts any; a preflight (site unknown) passes and
    the real request is checked."""
    if site is None or not site.allowed_origins:
        return True
    wanted = origin.strip().rstrip("/").lower()
    return any(
        allowed == "*" or str(allowed).strip().rstrip("/").lower() == wanted
        for allowed in site.allowed_origins
    )


def check_origin(request: HttpRequest, site: Site) -> None:
    # Image and script beacons and server libraries send no Origin; a page's fetch does.
    # (META, not request.headers: that builds a mapping of every header on first use.)
    origin = request.META.get("HTTP_ORIGIN")
    if origin and not origin_allowed(origin, site):
        raise RequestRejected(
            403, "origin_not_allowed", f"Origin {origin[:200]} may not send events to this site"
        )


def add_cors_headers(request: HttpRequest, response: HttpResponse, *, site: Site | None) -> None:
    """Let the calling page read the answer: an allowed origin always, any origin when
    the answer is a refusal (a tracker that cannot see a 403 takes it for a network
    failure and retries it forever), and ``Retry-After`` with it (429, 503)."""
    patch_vary_headers(response, ["Origin"])
    origin = request.META.get("HTTP_ORIGIN")
    if origin and (response.status_code >= 400 or origin_allowed(origin, site)):
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "Retry-After"
