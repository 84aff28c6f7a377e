"""Sites and keys: the only code that writes them (admin, commands and views call these)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from tracking import keys
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


def secret_key_issue(*, site: Site, label: str = "") -> IssuedSecret:
    key, lookup, digest = keys.new_secret_key()
    record = SecretKey.objects.create(site=site, lookup=lookup, digest=digest, label=label)
    return IssuedSecret(record=record, key=key)


def site_for_write_key(key: str | None) -> Site | None:
    if not key:
        return None
    write_key = WriteKey.objects.active().select_related("site").filter(key=key).first()
    return write_key.site if write_key else None


def site_for_secret_key(key: str | None) -> Site | None:
    lookup = keys.lookup_of(key or "")
    if lookup is None:
        return None
    for candidate in SecretKey.objects.active().select_related("site").filter(lookup=lookup):
        if candidate.matches(key):
            SecretKey.objects.filter(pk=candidate.pk).update(last_used_at=timezone.now())
            return candidate.site
    return None
