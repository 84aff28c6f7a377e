"""Secret-key authentication for the management API.

Kept apart from api_base: DRF imports authentication classes while importing
rest_framework.views, so this module must not import views itself.
"""

from __future__ import annotations

from rest_framework import authentication, exceptions

from tracking.models import Site
from tracking.services import site_for_secret_key


class SecretKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer sk_…``: authenticates as the key's site (request.auth)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header.startswith(self.keyword + " "):
            return None
        site = site_for_secret_key(header[len(self.keyword) + 1 :].strip())
        if site is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked secret key.")
        return (SiteKeyUser(site), site)

    def authenticate_header(self, request) -> str:
        return self.keyword


class SiteKeyUser:
    """The principal behind a secret key: no user, exactly one site."""

    is_authenticated = True
    is_active = True
    is_superuser = False
    is_staff = False
    pk = None

    def __init__(self, site: Site):
        self.site = site

    def __str__(self) -> str:
        return f"secret key of {self.site}"
