"""Tracking answers name profiles by token (``tracking.ingest.profile_tokens``); tests that
compare them with the database read them back as ids, and a token that does not redeem
fails the test."""

from __future__ import annotations

from typing import Any

from tracking.ingest.profile_tokens import redeem


def stored_id(token: str) -> int:
    profile_id = redeem(token)
    assert profile_id is not None, f"{token!r} is not a profile id token we issued"
    return profile_id


def with_stored_ids(body: Any) -> Any:
    """``body`` with its ``profile_id`` and ``profile_ids`` as the database's ids."""
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if isinstance(body.get("profile_ids"), list):
        body["profile_ids"] = [stored_id(token) for token in body["profile_ids"]]
    if isinstance(body.get("profile_id"), str):
        body["profile_id"] = stored_id(body["profile_id"])
    return body
