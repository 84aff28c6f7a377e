"""What the compatible wire formats (Tracardi, Tracktor, Raptor) share: the error a whole
request is refused with, query-string parsing, Unix times, and the checks that keep
values storable. Pure functions; nothing here touches a request or the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from tracking.ingest.schema import FieldError, MessageError, RequestRejected

# A Raptor call may carry p1..p999 besides its ids; Django's own limit (1,000) is too low.
MAX_QUERY_FIELDS = 1100
MAX_QUERY_BYTES = 64 * 1024
# Unix times past this are taken as milliseconds (JavaScript's Date.now()).
MILLISECONDS_FROM = 10**11
MIN_YEAR, MAX_YEAR = 1970, 2999

Params = Mapping[str, list[str]]


def rename_fields(errors: list[FieldError], names: Mapping[str, str]) -> list[FieldError]:
    """Errors from the shared validation name Segment's fields (``userId``, ``event``);
    a format's adapter renames them to its own wire names (``id``, ``action``).
    A dotted field is renamed by its first part (``properties.price`` → ``data.price``)."""
    renamed = []
    for error in errors:
        head, dot, rest = error.field.partition(".")
        field = names.get(error.field) or (names[head] + dot + rest if head in names else error.field)
        renamed.append(FieldError(error.index, field, error.reason))
    return renamed


def parse_query(query_string: str) -> dict[str, list[str]]:
    """A query string to name -> values, decoded as strict UTF-8 (400 otherwise)."""
    if len(query_string) > MAX_QUERY_BYTES:
        raise RequestRejected(414, "query_too_long", f"The query string is longer than {MAX_QUERY_BYTES} bytes")
    try:
        pairs = parse_qsl(
            query_string,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise RequestRejected(400, "invalid", "The query string is not valid UTF-8 once decoded") from None
    except ValueError:
        raise RequestRejected(400, "invalid", f"The query string has more than {MAX_QUERY_FIELDS} parameters") from None
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def one(params: Params, name: str, *, strip: bool = True) -> str | None:
    """A parameter's value, trimmed; ``None`` when absent or empty; 400 when repeated."""
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise RequestRejected.invalid(name, "is given more than once")
    value = values[0].strip() if strip else values[0]
    if "\x00" in value:
        raise RequestRejected.invalid(name, "contains a NUL character, which cannot be stored")
    return value or None


def unix_time(value: str, name: str) -> datetime:
    """Unix time in seconds (decimals allowed); values past 10^11 are milliseconds."""
    try:
        number = float(value)
    except ValueError:
        raise RequestRejected.invalid(name, f"{value[:32]!r} is not a Unix timestamp") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RequestRejected.invalid(name, f"{value[:32]!r} is not a Unix timestamp")
    if abs(number) >= MILLISECONDS_FROM:
        number /= 1000
    try:
        moment = datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        moment = None
    if moment is None or not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise RequestRejected.invalid(name, f"{value[:32]!r} is out of range ({MIN_YEAR}-{MAX_YEAR})")
    return moment


def check_storable(value: Any, name: str) -> None:
    """PostgreSQL's jsonb refuses NUL characters and unpaired surrogates."""
    if isinstance(value, str):
        if "\x00" in value:
            raise MessageError(name, "contains a NUL character, which cannot be stored")
        try:
            value.encode()
        except UnicodeEncodeError:
            raise MessageError(name, "contains an unpaired surrogate, which cannot be stored") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, name)
            check_storable(item, f"{name}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_storable(item, f"{name}[{i}]")
    elif isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise MessageError(name, "NaN and Infinity are not JSON values")
