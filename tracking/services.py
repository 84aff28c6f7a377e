"""Sites and keys: the only code that writes them (admin, commands and views call these)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from tracking import keys
from tracking.ingest.schema import storable_text
from tracking.models import SecretKey, Site, WriteKey


@dataclass(frozen=True)
class IssuedSecret:
    record: SecretKey
    key: str  # the only time the full key exists outside the client


@transaction.atomic
def site_create(*, name: str, **options) -> tuple[Site, WriteKey]:
    site = Site.objects.create(name=name, **options)
    return site, write_key_issue(site=site, label="default")


def write_key_issue(*, site: Site, label: str = "") -> WriteKey:
    return WriteKey.objects.create(site=site, label=label)


@transaction.atomic
def write_key_rotate(*, site: Site, label: str = "rotated") -> WriteKey:
    """Issue a new write key; keys active now stay valid for the grace period only."""
    expires = timezone.now() + WriteKey.ROTATION_GRACE
    site.write_keys.active().exclude(expires_at__lte=expires).update(expires_at=expires)
    return write_key_issue(site=site, label=label)


# How far ahead a site's last active write keys expiring is worth a warning: a rotation's
# grace, so the warning is up while the old keys are the only ones left.
WRITE_KEY_EXPIRY_WARNING = timedelta(hours=24)


def write_key_warning(site: Site) -> str | None:
    """What the site's admin page and Settings page warn about when its tracking is
    about to stop (every active write key expires within a day) or has (none active),
    else None. An expiry is set by a rotation or by hand, for rotation."""
    now = timezone.now()
    expiries = list(site.write_keys.active().values_list("expires_at", flat=True))
    if not expiries:
        return "This site has no active write key: every tracking call is refused. Issue one in the admin."
    if None in expiries or max(expiries) > now + WRITE_KEY_EXPIRY_WARNING:
        return None
    last = timezone.localtime(max(expiries), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Every active write key of this site expires within 24 hours (the last at {last}), and tracking "
        "calls are refused after that: issue a new one in the admin and put it in your pages."
    )


def secret_key_issue(*, site: Site, label: str = "") -> IssuedSecret:
    key, lookup, digest = keys.new_secret_key()
    record = SecretKey.objects.create(site=site, lookup=lookup, digest=digest, label=label)
    return IssuedSecret(record=record, key=key)


# Write key -> (cache entry expiry on the monotonic clock, site, key expiry). Every
# tracking request looks its key up; with ``WRITE_KEY_CACHE_SECONDS`` > 0 (off by
# default) this spares the query. Saving or deleting a site or key clears the cache of
# this process; other processes, and ``QuerySet.update()``, are seen within the TTL.
_write_key_cache: dict[str, tuple[float, Site, datetime | None]] = {}
_WRITE_KEY_CACHE_LIMIT = 10_000
_WRITE_KEY_LENGTH = WriteKey._meta.get_field("key").max_length


def site_for_write_key(key: str | None) -> Site | None:
    """The site of an active write key (cached for ``WRITE_KEY_CACHE_SECONDS`` when set).
    A key that no key can be (past the column's length, a NUL or lone surrogate, which
    PostgreSQL refuses to compare) names no site."""
    if not key or len(key) > _WRITE_KEY_LENGTH or not storable_text(key):
        return None
    ttl = settings.WRITE_KEY_CACHE_SECONDS
    now = time.monotonic()
    if ttl > 0:
        hit = _write_key_cache.get(key)
        if hit is not None and hit[0] > now and (hit[2] is None or hit[2] > timezone.now()):
            return hit[1]
    write_key = WriteKey.objects.active().select_related("site").filter(key=key).first()
    if write_key is None:
        _write_key_cache.pop(key, None)
        return None
    if ttl > 0:
        if len(_write_key_cache) >= _WRITE_KEY_CACHE_LIMIT:
            _write_key_cache.clear()
        _write_key_cache[key] = (now + ttl, write_key.site, write_key.expires_at)
    return write_key.site


@receiver([post_save, post_delete], sender=Site)
@receiver([post_save, post_delete], sender=WriteKey)
def _forget_write_keys(**kwargs) -> None:
    _write_key_cache.clear()


def site_for_id(site_id: int) -> Site | None:
    """A site by id, as Raptor URLs name it (``/t/<site id>.rsa``), while it has an active
    write key: revoking every key of a site stops its data whichever way it is named."""
    key = WriteKey.objects.active().select_related("site").filter(site_id=site_id).first()
    return key.site if key else None


def site_for_secret_key(key: str | None) -> Site | None:
    lookup = keys.lookup_of(key or "")
    if lookup is None:
        return None
    for candidate in SecretKey.objects.active().select_related("site").filter(lookup=lookup):
        if candidate.matches(key):
            SecretKey.objects.filter(pk=candidate.pk).update(last_used_at=timezone.now())
            return candidate.site
    return None
