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

WRITE_KEY_PREFIX = "wk_"
SECRET_KEY_PREFIX = "sk_"
LOOKUP_LENGTH = 8


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
    if not signature:
        return False
    return hmac.compare_digest(sign_identity(secret, identity), signature.strip().lower())
