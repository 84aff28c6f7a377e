"""Secret-key authentication for the management API.

Kept apart from api_base: DRF imports authentication classes while importing
rest_framework.views, so this module must not import views itself.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from tracking import keys
from tracking.models import Site
from tracking.services import site_for_secret_key
from tracking.throttling import AuthFailureRateThrottle


class SecretKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_…``: authenticates as the key's site (request.auth).

    An address past its budget of wrong keys (``API_AUTH_FAILURE_RATE_LIMIT``) gets 429
    before its key is looked up, so keys cannot be guessed at the API's speed."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != self.keyword.lower():  # schemes are case-insensitive (RFC 7235)
            return None
        failures = AuthFailureRateThrottle()
        wait = failures.wait_for(request)
        if wait is not None:
            raise exceptions.Throttled(wait)
        credentials = credentials.strip()
        site = site_for_secret_key(credentials)
        if site is None:
            failures.count_failure(request)
            raise exceptions.AuthenticationFailed("Invalid or revoked secret key.")
        return (SiteKeyUser(site, key_lookup=keys.lookup_of(credentials)), site)

    def authenticate_header(self, request) -> str:
        return self.keyword


class SiteKeyUser:
    """The principal behind a secret key: no user, exactly one site. ``key_lookup`` (the
    key's public prefix, not a secret) tells two keys of a site apart, for rate limits."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, site: Site, key_lookup: str | None = None):
        self.site = site
        self.key_lookup = key_lookup

    def __str__(self) -> str:
        return f"secret key of {self.site}"


class SecretKeyScheme(OpenApiAuthenticationExtension):
    """Documents the secret key in /api/schema/ as HTTP bearer auth."""

    target_class = "tracking.authentication.SecretKeyAuthentication"
    name = "secretKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A site's secret key (sk_…), issued once in the admin.",
        }
