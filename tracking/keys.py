"""Key material: generation, hashing, lookup and identity signatures.

Write keys are public (they sit in every page) and stored as they are. Secret keys
are shown once and stored as a SHA-256 digest: they are 256-bit random strings,
so a plain digest is as safe as a slow hash and costs nothing per request. Their
first characters (the prefix) are stored in clear to find the candidate row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

WRITE_KEY_PREFIX = "wk_"
SECRET_KEY_PREFIX = "sk_"
LOOKUP_LENGTH = 8
# The signed person parameters a letter's links carry; the JS tracker identifies the
# person with them on landing and removes them from the address bar.
LETTER_ID_PARAM = "fp_id"
LETTER_SIGNATURE_PARAM = "fp_sig"


def new_write_key() -> str:
    return WRITE_KEY_PREFIX + secrets.token_urlsafe(24)


def new_secret_key() -> tuple[str, str, str]:
    """Return (full key, lookup prefix, digest)."""
    lookup = secrets.token_hex(LOOKUP_LENGTH // 2)
    key = f"{SECRET_KEY_PREFIX}{lookup}_{secrets.token_urlsafe(32)}"
    return key, lookup, digest(key)


def lookup_of(key: str) -> str | None:
    if not key.startswith(SECRET_KEY_PREFIX):
        return None
    lookup = key[len(SECRET_KEY_PREFIX) : len(SECRET_KEY_PREFIX) + LOOKUP_LENGTH]
    return lookup if len(lookup) == LOOKUP_LENGTH else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_signing_secret() -> str:
    return secrets.token_hex(32)


def sign_identity(secret: str, identity: str) -> str:
    """HMAC-SHA256(secret, identity) as lowercase hex: what a site's backend computes."""
    return hmac.new(secret.encode(), identity.encode(), hashlib.sha256).hexdigest()


def check_identity_signature(secret: str, identity: str, signature: str | None) -> bool:
    if not signature or not signature.isascii():  # compare_digest refuses other text
        return False
    return hmac.compare_digest(sign_identity(secret, identity), signature.strip().lower())


def add_identity_params(url: str, identity: str, secret: str) -> str:
    """``url`` with the signed person parameters (``fp_id``, ``fp_sig``) added, replacing
    any already there; other parameters and the fragment are kept."""
    parts = urlsplit(url)
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if name not in (LETTER_ID_PARAM, LETTER_SIGNATURE_PARAM)
    ]
    query += [(LETTER_ID_PARAM, identity), (LETTER_SIGNATURE_PARAM, sign_identity(secret, identity))]
    return urlunsplit(parts._replace(query=urlencode(query)))
