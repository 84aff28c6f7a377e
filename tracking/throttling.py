"""Rate limits of the management API (DESIGN: a request refused for load gets 429 with
``Retry-After`` and the error shape ``code`` / ``message``; the exception handler in
api_base gives it both).

DRF's own throttles, counted in the default cache (``CACHE_URL``), by caller: a secret
key, a logged-in user, or for anyone else the address ``tracking.http.client_ip`` reads
(X-Forwarded-For only across ``TRUSTED_PROXY_HOPS``, as for the log-in lock-out). The
tracking endpoints are plain Django views and never pass through here.

A request refused 401 (no or a wrong key) is refused before throttles run (DRF checks
permissions first) and spends no budget. Counting is read-then-write in the cache, as DRF
does it: a burst of simultaneous requests may let a few past the limit, with Redis too.

Kept apart from api_base for the reason authentication.py is: DRF imports its default
throttle classes while importing rest_framework.views.
"""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from tracking.authentication import SiteKeyUser
from tracking.http import client_ip


def caller_of(request) -> str:
    """Whose budget a request spends: the key (two keys of one site are two callers), the
    user (from any address), else the address."""
    user = request.user
    if isinstance(user, SiteKeyUser):
        return f"key-{user.site.pk}-{user.key_lookup}"
    if user is not None and user.is_authenticated:
        return f"user-{user.pk}"
    return f"addr-{client_ip(request) or 'unknown'}"


class CallerRateThrottle(SimpleRateThrottle):
    """Every management API request: ``API_RATE_LIMIT`` per caller."""

    scope = "api"

    def get_rate(self) -> str | None:
        # Read per request, not frozen at import as DRF's class attribute is.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": caller_of(request)}


class HeavyCallerRateThrottle(CallerRateThrottle):
    """The methods a view lists in ``heavy_methods`` (export, delete): a lower budget of
    their own, ``API_HEAVY_RATE_LIMIT`` per caller, spent besides the caller's."""

    scope = "api_heavy"

    def get_cache_key(self, request, view) -> str | None:
        if request.method not in getattr(view, "heavy_methods", ()):
            return None
        return super().get_cache_key(request, view)
