"""JSON text for the hot paths (request bodies, COPY rows, bulk-write documents, the
inbox), with orjson where it gives the same result as the standard library and the
standard library where it would not:

- written with orjson, except what orjson refuses (integers past 64 bits, which JSON and
  PostgreSQL's jsonb accept);
- read with orjson unless the text holds a run of 19 digits or more (orjson reads an
  integer past 64 bits as a float, which would change it), or orjson refuses the text
  (NaN, an unpaired surrogate…): then the standard library reads it, with its own rules
  and errors.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# 18 digits always fit 64 bits; 19 may not. Digits inside strings count too (then the
# standard library reads the text: slower, never wrong). Every digit becomes "0" and a
# run of 19 is found with bytes.find: a regex scan cost 25 times as much.
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_RUN = b"0" * 19


def _has_long_number(data: bytes) -> bool:
    return data.translate(_DIGITS_AS_ZERO).find(_LONG_RUN) >= 0


class RawJSON(str):
    """JSON text kept as text: a message's properties and context in the inbox's queued
    form. The drain only stores them (COPY takes the text as it is) and reads the few it
    needs (``parsed``): parsing every one into dicts and writing them again was 9% of
    the drain's instructions a message (callgrind)."""

    __slots__ = ()


def parsed(value: Any) -> Any:
    """The value itself, read from its text if it is ``RawJSON``."""
    return loads(value) if type(value) is RawJSON else value


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, default=str)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


# Objects and lists within each other: as deep as orjson writes. Deeper values fall back
# to the standard library, which runs out of stack near 1,000 levels (a RecursionError
# after the request was accepted), so request bodies are held to this.
MAX_DEPTH = 254


def too_deep(value: Any, text: bytes) -> bool:
    """Whether ``value``, read from ``text``, nests objects and lists past ``MAX_DEPTH``.
    A text with fewer brackets cannot; orjson writes (in C) any value that does not,
    unless it holds an integer past 64 bits: only then is the value walked."""
    if text.count(b"{") + text.count(b"[") <= MAX_DEPTH:
        return False
    try:
        orjson.dumps(value)
    except TypeError:
        return _depth_past(value, MAX_DEPTH)
    return False


def _depth_past(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def loads(text: str | bytes, **stdlib_options: Any) -> Any:
    """Like ``json.loads(text, **stdlib_options)``; the options (``parse_constant``…)
    apply where the standard library reads the text."""
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    if not _has_long_number(data):
        try:
            # The bytes, not ``text``: orjson refuses str subclasses (``RawJSON``), and
            # every queued context the drain read went through that refusal and then
            # the standard library.
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text, **stdlib_options)
