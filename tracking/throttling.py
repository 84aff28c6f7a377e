"""Rate limits of the management API (DESIGN: a request refused for load gets 429 with
``Retry-After`` and the error shape ``code`` / ``message``; the exception handler in
api_base gives it both).

DRF's own throttles, counted in the default cache (``CACHE_URL``), by caller: a secret
key, a logged-in user, or for anyone else the address ``tracking.http.client_ip`` reads
(X-Forwarded-For only across ``TRUSTED_PROXY_HOPS``, as for the log-in lock-out). The
tracking endpoints are plain Django views and never pass through here.

A request refused 401 (no or a wrong key) is refused before throttles run (DRF checks
permissions first) and spends no budget of its caller. Wrong keys spend one of their own
instead, per address (``AuthFailureRateThrottle``, called by the secret-key
authentication): past it the address gets 429 before any key it sends is looked up, the
right one too, as a log-in lock-out refuses the right password. Counting is
read-then-write in the cache, as DRF does it: a burst of simultaneous requests may let a
few past the limit, with Redis too.

A cache that fails (Redis down) counts nothing and lets every request through, with a
warning logged: an outage of the counter is not an outage of the API.

Kept apart from api_base for the reason authentication.py is: DRF imports its default
throttle classes while importing rest_framework.views.
"""

from __future__ import annotations

import logging

from django.core.cache import cache as default_cache
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from tracking.http import client_ip
from tracking.models import Site

logger = logging.getLogger(__name__)


class CacheUnavailable(Exception):
    """The cache the limits count in failed; the request goes uncounted."""


class _Counts:
    """The default cache, its failures raised as ``CacheUnavailable`` so that only they,
    not a mistake in the throttle itself, let a request through uncounted."""

    def get(self, key: str, default=None):
        try:
            return default_cache.get(key, default)
        except Exception as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def set(self, key: str, value, timeout: int) -> None:
        try:
            default_cache.set(key, value, timeout)
        except Exception as exc:
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _uncounted(scope: str, exc: CacheUnavailable) -> None:
    logger.warning("Rate limit %s not applied, the cache failed: %s", scope, exc)


def caller_of(request) -> str:
    """Whose budget a request spends: the key (two keys of one site are two callers), the
    user (from any address), else the address."""
    if isinstance(request.auth, Site):  # a secret key (tracking.authentication)
        return f"key-{request.auth.pk}-{request.user.key_lookup}"
    user = request.user
    if user is not None and user.is_authenticated:
        return f"user-{user.pk}"
    return f"addr-{client_ip(request) or 'unknown'}"


class CallerRateThrottle(SimpleRateThrottle):
    """Every management API request: ``API_RATE_LIMIT`` per caller."""

    scope = "api"
    cache = _Counts()

    def get_rate(self) -> str | None:
        # Read per request, not frozen at import as DRF's class attribute is.
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def get_cache_key(self, request, view) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": caller_of(request)}

    def allow_request(self, request, view) -> bool:
        try:
            return super().allow_request(request, view)
        except CacheUnavailable as exc:
            _uncounted(self.scope, exc)
            return True


class HeavyCallerRateThrottle(CallerRateThrottle):
    """The methods a view lists in ``heavy_methods`` (export, delete): a lower budget of
    their own, ``API_HEAVY_RATE_LIMIT`` per caller, spent besides the caller's."""

    scope = "api_heavy"

    def get_cache_key(self, request, view) -> str | None:
        if request.method not in getattr(view, "heavy_methods", ()):
            return None
        return super().get_cache_key(request, view)


class AuthFailureRateThrottle(CallerRateThrottle):
    """Wrong secret keys: ``API_AUTH_FAILURE_RATE_LIMIT`` per client address. Not a DRF
    throttle class (those run after authentication): the authentication asks
    ``wait_for`` before it tries a key and calls ``count_failure`` when the key is wrong."""

    scope = "api_auth_failure"

    def get_cache_key(self, request, view=None) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": f"addr-{client_ip(request) or 'unknown'}"}

    def _recent(self, request) -> list[float] | None:
        """The address's failures within the window, newest first; None when not counted
        (the limit is off, or the cache failed)."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request)
        self.now = self.timer()
        try:
            history = self.cache.get(self.key, [])
        except CacheUnavailable as exc:
            _uncounted(self.scope, exc)
            return None
        return [moment for moment in history if moment > self.now - self.duration]

    def wait_for(self, request) -> float | None:
        """Seconds until the address may try a key again, or None if it may now."""
        recent = self._recent(request)
        if recent is None or len(recent) < self.num_requests:
            return None
        # Under the limit again once the failure num_requests back from the newest expires.
        return max(recent[self.num_requests - 1] + self.duration - self.now, 1)

    def count_failure(self, request) -> None:
        recent = self._recent(request)
        if recent is None:
            return
        try:
            self.cache.set(self.key, [self.now, *recent], self.duration)
        except CacheUnavailable as exc:
            _uncounted(self.scope, exc)
