"""Our profile id as clients see it: the id with a keyed tag, ``"<id>.<tag>"``.

Profile ids are a sequence, so a bare id is easy to guess. Were a bare id taken back, anyone
holding a site's public write key could name a stranger's anonymous profile by guessing
its number: add events to it, or merge it into themselves with an identify, and from then
on the stranger's visits would land on them. So clients only ever get ids with a tag, an
HMAC-SHA256 of the id under the site-wide ``SECRET_KEY`` (96 bits of it), and an id
without a valid tag is one we did not issue: unknown, which is not an error (DESIGN
"People and identity": a new profile is made and its id returned).

Tokens stay valid across a key rotation while the old key is in ``SECRET_KEY_FALLBACKS``,
as Django's own signed values do.
"""

from __future__ import annotations

import base64
import hmac
from functools import lru_cache

from django.conf import settings
from django.utils.crypto import constant_time_compare, salted_hmac

_SALT = "footprint.profile-id"
_TAG_BYTES = 12  # 96 bits: out of reach of guessing over HTTP
MAX_PROFILE_ID = 2**63 - 1  # bigint


@lru_cache(maxsize=8)
def _keyed(secret: str) -> hmac.HMAC:
    """The HMAC keyed for ``secret`` with nothing hashed yet; copied for each id (the
    key's derivation is half the cost of a tag, and a batch answer tags 100 ids)."""
    return salted_hmac(_SALT, b"", secret=secret, algorithm="sha256")


def _tag(profile_id: int, secret: str) -> str:
    mac = _keyed(secret).copy()
    mac.update(str(profile_id).encode())
    return base64.urlsafe_b64encode(mac.digest()[:_TAG_BYTES]).decode()


def issue(profile_id: int) -> str:
    """The id to hand a client for ``profile_id``."""
    return f"{profile_id}.{_tag(profile_id, settings.SECRET_KEY)}"


def redeem(token: str) -> int | None:
    """The profile id in a token we issued; None for anything else (a bare number, a
    Tracardi UUID, a wrong or stale tag)."""
    number, dot, tag = token.partition(".")
    if not dot or not (number.isascii() and number.isdigit()) or len(number) > 19:
        return None
    profile_id = int(number)
    if not 0 < profile_id <= MAX_PROFILE_ID:
        return None
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        if constant_time_compare(tag, _tag(profile_id, secret)):
            return profile_id
    return None


class ProfileIdConverter:
    """A person in a management API path: our id, or the token a tracking answer gave a
    client (holders of the secret key may name anyone; the tag is not what protects
    them there, but clients keep the token, so it is taken as it is)."""

    regex = r"[0-9]{1,19}(?:\.[A-Za-z0-9_-]{16})?"

    def to_python(self, value: str) -> int:
        profile_id = redeem(value) if "." in value else int(value)
        if profile_id is None or not 0 < profile_id <= MAX_PROFILE_ID:
            raise ValueError(value)  # no match: a 404
        return profile_id

    def to_url(self, value: int | str) -> str:
        return str(value)
