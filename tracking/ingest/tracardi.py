"""Tracardi's tracker payload (``POST /track``) to messages, and the answer its tracker reads.

The payload (see ../shared/seeds/tracardi-integration.txt)::

    {"source": {"id": <write key>}, "session": {"id": ...}, "profile": {"id": ...},
     "context": {...}, "properties": {...}, "options": {...},
     "events": [{"type", "properties", "options", "context", "time", "tags"}, ...]}

Mapping choices:
- every event becomes one track message under the payload's session; the events of one
  payload belong to one person, so a new session's first event makes the profile and
  the others follow it (the core recovers a session's person within a batch too);
- ``profile.id`` is our profile id as returned earlier (digits, as a number or a string);
  any other id (a Tracardi UUID from before the switch) is an unknown profile id, which
  is not an error: a new profile is made, or the session's profile recovered, and its id
  returned for the client to keep (``schema.clean_profile_id``; junk such as
  ``"undefined"`` is refused);
- an event's context sits over the payload's (event keys win), and likewise its
  properties over the payload's ``properties``; options (payload's, then event's) and
  tags are kept in the event context under ``options`` and ``tags``. Footprint has no
  ephemeral events: ``saveEvent: false`` is recorded, not obeyed (segments and workflows
  work from stored events);
- ``time.create`` (or ``time.insert``), when given, is the event's time: ISO 8601 / RFC
  3339 (``schema.iso_datetime`` adds ``z``, 24:00 and leap seconds to what
  ``fromisoformat`` reads), or a Unix time in seconds or milliseconds, as Tracardi's
  models read it; ``tags`` may be any list, as in Tracardi.

A payload is all or nothing, as in Tracardi: any invalid part refuses the whole request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tracking import jsontext
from tracking.ingest import profile_tokens
from tracking.ingest.schema import (
    MAX_EVENT_NAME_LENGTH,
    Kind,
    Message,
    MessageError,
    clean_id,
    clean_profile_id,
    client_profile_id,
    iso_datetime,
)
from tracking.ingest.wire import RequestRejected, check_storable

MAX_BODY_BYTES = 500 * 1024
MAX_EVENTS = 2500
UNAUTHORIZED = "Unauthorized Access"

# Shared validation names Segment's fields; these are Tracardi's.
FIELD_NAMES = {"sessionId": "session.id", "event": "type"}


@dataclass(slots=True)
class TrackerPayload:
    write_key: str
    session_id: str
    profile_id: int | None  # ours, when the client sent one we could have issued
    messages: list[Message]


def decode(raw: bytes) -> dict[str, Any]:
    """The JSON body; 413 past the size limit, 400 when it is not a JSON object."""
    if len(raw) > MAX_BODY_BYTES:
        raise RequestRejected(413, "payload_too_large", f"The body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    if not raw.strip():
        raise RequestRejected(400, "invalid_json", "The request body is empty")
    try:
        payload = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise RequestRejected(400, "invalid_json", f"The body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(payload, dict):
        raise RequestRejected(400, "invalid_json", "The body must be a JSON object (the tracker payload)")
    if jsontext.too_deep(payload, raw):
        raise RequestRejected(400, "invalid_json", f"The body nests objects and lists more than {jsontext.MAX_DEPTH} deep")
    return payload


def write_key(payload: Any) -> str | None:
    """``source.id``: the write key (Tracardi's event source)."""
    source = payload.get("source") if isinstance(payload, dict) else None
    key = source.get("id") if isinstance(source, dict) else None
    return (key.strip() or None) if isinstance(key, str) else None


def unauthorized(key: str | None) -> RequestRejected:
    reason = "is not a valid write key" if key else "is required"
    return RequestRejected.unauthorized("source.id", reason, message=f"{UNAUTHORIZED}: source.id {reason}")


def parse(payload: Any, *, request_context: dict[str, Any] | None = None) -> TrackerPayload:
    """The payload's events as messages; raises RequestRejected (400) naming the bad field.

    ``request_context`` (ip, userAgent: what the server saw) fills keys the payload's
    own context lacks."""
    try:
        return _parse(payload, request_context or {})
    except MessageError as exc:
        raise RequestRejected.invalid(exc.field, exc.reason) from None


def _parse(payload: Any, request_context: dict[str, Any]) -> TrackerPayload:
    if not isinstance(payload, dict):
        raise MessageError("body", "must be a JSON object (the tracker payload)")
    key = write_key(payload)
    if key is None:
        raise MessageError("source.id", "is required")
    session = _object(payload.get("session"), "session", required=True)
    session_id = clean_id(session.get("id"), "session.id", required=True)
    assert session_id is not None
    profile = _object(payload.get("profile"), "profile")
    try:
        profile_id = clean_profile_id(client_profile_id(profile.get("id")))
    except MessageError as exc:
        raise MessageError("profile.id", exc.reason) from None
    context = {**request_context, **_object(payload.get("context"), "context")}
    properties = _object(payload.get("properties"), "properties")
    options = _object(payload.get("options"), "options")
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise MessageError("events", "is required: a list of at least one event")
    if len(events) > MAX_EVENTS:
        raise MessageError("events", f"holds at most {MAX_EVENTS} events; this one has {len(events)}")
    check_storable(context, "context")
    check_storable(properties, "properties")
    messages = [
        _event(item, index, session_id, profile_id, context, properties, options)
        for index, item in enumerate(events)
    ]
    return TrackerPayload(write_key=key, session_id=session_id, profile_id=profile_id, messages=messages)


def _event(item, index, session_id, profile_id, context, properties, options) -> Message:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise MessageError(where, "must be an object")
    event_type = item.get("type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise MessageError(f"{where}.type", "is required and must be a non-empty string")
    if len(event_type.strip()) > MAX_EVENT_NAME_LENGTH:
        raise MessageError(f"{where}.type", f"is longer than {MAX_EVENT_NAME_LENGTH} characters")
    own_properties = _object(item.get("properties"), f"{where}.properties")
    own_context = _object(item.get("context"), f"{where}.context")
    own_options = _object(item.get("options"), f"{where}.options")
    check_storable(own_properties, f"{where}.properties")
    check_storable(own_context, f"{where}.context")
    check_storable(own_options, f"{where}.options")
    event_context = {**context, **own_context}
    if options or own_options:
        event_context["options"] = {**options, **own_options}
    tags = item.get("tags")
    if tags is not None:
        if not isinstance(tags, list):
            raise MessageError(f"{where}.tags", "must be a list")
        check_storable(tags, f"{where}.tags")
        event_context["tags"] = tags
    return Message(
        kind=Kind.TRACK,
        profile_id=profile_id,
        session_id=session_id,
        event=event_type.strip(),
        properties={**properties, **own_properties},
        context=event_context,
        timestamp=_event_time(item.get("time"), f"{where}.time"),
        index=index,
    )


def _event_time(value: Any, where: str) -> datetime | None:
    times = _object(value, where)
    for name in ("create", "insert"):
        raw = times.get(name)
        if raw is None:
            continue
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            moment = _from_epoch(raw, f"{where}.{name}")
        elif not isinstance(raw, str):
            raise MessageError(f"{where}.{name}", "must be a date-time string or a Unix time")
        else:
            try:
                moment = iso_datetime(raw.strip())
            except ValueError:
                raise MessageError(f"{where}.{name}", f"{raw[:40]!r} is not a date-time") from None
        if not 1970 <= moment.year <= 2999:
            raise MessageError(f"{where}.{name}", f"year {moment.year} is out of range")
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


def _from_epoch(value: int | float, where: str) -> datetime:
    """A Unix time as Tracardi's models (pydantic) read one: seconds, or milliseconds
    when the number is too large to be seconds."""
    try:
        # Inside: an integer past a float's range overflows in the division already.
        seconds = value / 1000 if abs(value) > 2e10 else value
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise MessageError(where, f"{value!r} is not a Unix time") from None


def _object(value: Any, name: str, *, required: bool = False) -> dict[str, Any]:
    if value is None:
        if required:
            raise MessageError(name, "is required")
        return {}
    if not isinstance(value, dict):
        raise MessageError(name, "must be an object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def answer(profile_id: int, session_id: str) -> dict[str, Any]:
    """What Tracardi's tracker reads: ``profile.id`` to keep (it saves it and sends it
    back; a string, as Tracardi's are), and ``ux`` (widgets to mount; none here)."""
    return {
        "profile": {"id": profile_tokens.issue(profile_id)},
        "session": {"id": session_id},
        "ux": [],
        "response": {},
    }


def error_body(error: RequestRejected) -> dict[str, Any]:
    """Footprint's error shape plus ``detail``, which Tracardi's tracker logs."""
    return {**error.body(), "detail": error.message}
