"""The Segment HTTP tracking API: request bodies to ``Message`` lists, and back to responses.

What Segment's own libraries send (analytics-python, analytics-node, analytics.js) is
accepted as it is: JSON as ``application/json`` or ``text/plain`` (optionally gzipped),
the write key as the HTTP Basic user or ``writeKey`` in the body, a batch of up to 2,500
messages in 500 KB, 32 KB a message. Footprint adds ``signature``, ``sessionId`` and
``profileId`` (top level, or the first two in ``context``).

Mapping choices that are not obvious from the wire:
- page/screen ``name`` and ``category`` become the properties ``name`` and ``category``;
- ``integrations`` is kept in ``context["integrations"]``;
- an ``identify`` without ``userId`` (analytics.js sends one when only traits are given)
  sets the anonymous person's traits: it becomes a ``Kind.SET`` message;
- a batch's ``context`` sits under each message's own (message keys win), and its
  ``sentAt`` is each message's ``sentAt`` unless the message has one;
- a message with no ``timestamp`` but an ``originalTimestamp`` (Segment's name for the
  client's time in what it stores and exports) is timed by that.

The module holds no business logic: it parses, hands the valid messages to
``tracking.ingest.core.ingest_batch`` and shapes the answer.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from tracking import jsontext
from tracking.ingest import profile_tokens
from tracking.ingest.schema import (
    FieldError,
    Kind,
    Message,
    MessageError,
    RequestRejected,
    clean_id,
    client_profile_id,
    error_order,
    iso_datetime,
    validate,
)

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID_LENGTH = 255
# Dates outside these years are client bugs (epoch mix-ups, uninitialised clocks), and
# skew arithmetic on them would overflow ``datetime``.
MIN_YEAR, MAX_YEAR = 1900, 2999

# The path segment after /v1/ names the call; the browser library uses the first letter.
ENDPOINTS: dict[str, Kind | None] = {
    "batch": None,
    "b": None,
    "import": None,  # the batch path of analytics-ruby, analytics-java and Analytics.NET
    "track": Kind.TRACK,
    "t": Kind.TRACK,
    "identify": Kind.IDENTIFY,
    "i": Kind.IDENTIFY,
    "page": Kind.PAGE,
    "p": Kind.PAGE,
    "screen": Kind.SCREEN,
    "s": Kind.SCREEN,
    "group": Kind.GROUP,
    "g": Kind.GROUP,
    "alias": Kind.ALIAS,
    "a": Kind.ALIAS,
}
TYPES = {
    "track": Kind.TRACK,
    "identify": Kind.IDENTIFY,
    "page": Kind.PAGE,
    "screen": Kind.SCREEN,
    "group": Kind.GROUP,
    "alias": Kind.ALIAS,
}

# Field name used when a problem concerns a message as a whole (size, shape).
WHOLE_MESSAGE = "message"


@dataclass(slots=True)
class ParsedRequest:
    """A request's valid messages and the errors of its invalid ones (by index)."""

    messages: list[Message]
    errors: list[FieldError]
    total: int  # messages in the request, valid or not
    is_batch: bool


@dataclass(slots=True)
class Body:
    payload: dict[str, Any]
    size: int  # bytes, once inflated
    # The text has an escape that may decode to what PostgreSQL cannot store (NUL, a
    # lone surrogate); only then are the messages' strings walked to find it.
    has_risky_escape: bool


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any] = field(default_factory=dict)


# --- the request as a whole ---------------------------------------------------------


def decode_body(raw: bytes, *, content_encoding: str = "") -> Body:
    """The JSON object of a request body; gzip/deflate bodies are inflated first.

    Raises ``RequestRejected``: 413 past the batch limit (also once inflated), 415 for an
    unknown encoding, 400 for anything that is not one JSON object.
    """
    if len(raw) > MAX_BATCH_BYTES:
        raise too_large(len(raw))
    encoding = content_encoding.strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        raw = _inflate(raw, gzip=encoding != "deflate")
    elif encoding not in ("", "identity"):
        raise RequestRejected(
            415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not supported"
        )
    if not raw.strip():
        raise RequestRejected(400, "invalid_json", "The request body is empty")
    if b"\x00" in raw[:4]:
        # UTF-16 or UTF-32 (the standard library would read it): the scan for escapes
        # PostgreSQL cannot store (_RISKY_ESCAPE) reads UTF-8 bytes.
        raise RequestRejected(400, "invalid_json", "The body must be JSON in UTF-8")
    try:
        payload = jsontext.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        # UnicodeDecodeError is a ValueError too.
        raise RequestRejected(
            400, "invalid_json", f"The body is not valid JSON: {_short(exc)}"
        ) from None
    if not isinstance(payload, dict):
        raise RequestRejected(400, "invalid_json", "The body must be a JSON object")
    if jsontext.too_deep(payload, raw):
        raise RequestRejected(
            400, "invalid_json", f"The body nests objects and lists more than {jsontext.MAX_DEPTH} deep"
        )
    return Body(
        payload=payload, size=len(raw), has_risky_escape=_RISKY_ESCAPE.search(raw) is not None
    )


_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def too_large(size: int) -> RequestRejected:
    return RequestRejected(
        413,
        "payload_too_large",
        f"The request body is {size} bytes; the limit is {MAX_BATCH_BYTES}",
    )


def _inflate(raw: bytes, *, gzip: bool) -> bytes:
    """The inflated body, whole. HTTP's deflate is the zlib format (RFC 9110), but some
    clients send the bare deflate stream under that name: one without a zlib header
    (its check bits, RFC 1950) is read as that."""
    if gzip:
        wbits = 31
    else:
        wbits = 15 if len(raw) >= 2 and raw[0] & 0x0F == 8 and (raw[0] << 8 | raw[1]) % 31 == 0 else -15
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        body = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    except zlib.error:
        raise RequestRejected(
            400, "invalid_json", "The compressed body cannot be inflated"
        ) from None
    if len(body) > MAX_BATCH_BYTES or inflater.unconsumed_tail:
        raise too_large(len(body))
    if not inflater.eof:  # cut short: what arrived is not what was sent
        raise RequestRejected(400, "invalid_json", "The compressed body ends before its end")
    return body


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON and PostgreSQL's jsonb refuses them.
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    # JSON allows 1e400; a double cannot hold it, and infinity would be written as null.
    value = float(text)
    if value in (_INFINITY, -_INFINITY):
        raise ValueError(f"{text[:32]} is too large a number")
    return value


_INFINITY = float("inf")


def _short(exc: BaseException) -> str:
    return str(exc)[:200] or exc.__class__.__name__


def write_key_from(authorization: str | None, payload: dict[str, Any]) -> str | None:
    """The write key: the HTTP Basic user (password ignored), else ``writeKey`` in the body."""
    if authorization:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "basic" and credentials:
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user = decoded.partition(":")[0].strip()
            if user:
                return user
    key = payload.get("writeKey")
    if isinstance(key, str) and key.strip():
        return key.strip()
    return None


def is_strict(query_value: str | None, header_value: str | None) -> bool:
    return any(
        (value or "").strip().lower() in ("1", "true", "yes")
        for value in (query_value, header_value)
    )


# --- messages ------------------------------------------------------------------------


def parse_request(body: Body, *, endpoint: str, client_ip: str | None) -> ParsedRequest:
    """Split a decoded body into messages. ``endpoint`` is the path after /v1/.

    A batch-level problem (no list, too many messages, a bad shared ``context`` or
    ``sentAt``) rejects the request; a message-level one is a ``FieldError`` for it.
    """
    if endpoint not in ENDPOINTS:
        raise RequestRejected(404, "not_found", f"Unknown endpoint /v1/{endpoint}")
    kind = ENDPOINTS[endpoint]
    payload = body.payload
    if kind is not None:
        items: list[Any] = [payload]
        shared_context: dict[str, Any] = {}
        shared_sent_at = None
        shared_integrations: dict[str, Any] = {}
    else:
        items = _batch_items(payload)
        shared_context, shared_sent_at, shared_integrations = _batch_shared(
            payload, check_storable=body.has_risky_escape
        )

    # A message can only pass 32 KB if the body does; measuring each one costs a dump.
    measure = body.size > MAX_MESSAGE_BYTES
    messages: list[Message] = []
    errors: list[FieldError] = []
    for index, item in enumerate(items):
        try:
            if body.has_risky_escape:
                _check_storable(item)
            if measure:
                _check_size(item)
            message = parse_message(
                item,
                kind=kind,
                shared_context=shared_context,
                shared_sent_at=shared_sent_at,
                shared_integrations=shared_integrations,
                client_ip=client_ip,
            )
            message.index = index
            validate(message)
        except MessageError as exc:
            errors.append(FieldError(index=index, field=exc.field, reason=exc.reason))
            continue
        messages.append(message)
    return ParsedRequest(messages=messages, errors=errors, total=len(items), is_batch=kind is None)


def _batch_items(payload: dict[str, Any]) -> list[Any]:
    items = payload.get("batch")
    if not isinstance(items, list):
        raise RequestRejected(
            400,
            "invalid",
            "batch must be a list of messages",
            [FieldError(index=None, field="batch", reason="must be a list of messages")],
        )
    if not items:
        raise RequestRejected(
            400,
            "invalid",
            "batch is empty",
            [FieldError(index=None, field="batch", reason="is empty")],
        )
    if len(items) > MAX_BATCH_MESSAGES:
        raise RequestRejected(
            413,
            "too_many_messages",
            f"A batch holds at most {MAX_BATCH_MESSAGES} messages; this one has {len(items)}",
        )
    return items


def _batch_shared(
    payload: dict[str, Any], *, check_storable: bool
) -> tuple[dict[str, Any], datetime | None, dict[str, Any]]:
    """A batch's own ``context``, ``sentAt`` and ``integrations``, which every message
    shares (``integrations`` merged with each message's own: the message's keys win)."""
    try:
        context = _object(payload.get("context"), "context")
        integrations = _object(payload.get("integrations"), "integrations")
        if check_storable:
            _check_storable({"context": context, "integrations": integrations})
        sent_at = parse_datetime(payload.get("sentAt"), "sentAt")
    except MessageError as exc:
        raise RequestRejected(
            400,
            "invalid",
            f"{exc.field}: {exc.reason}",
            [FieldError(index=None, field=exc.field, reason=exc.reason)],
        ) from None
    return context, sent_at, integrations


def _check_size(item: Any) -> None:
    size = len(jsontext.dumps_bytes(item))
    if size > MAX_MESSAGE_BYTES:
        raise MessageError(
            WHOLE_MESSAGE, f"message too large: {size} bytes, the limit is {MAX_MESSAGE_BYTES}"
        )


def _check_storable(item: Any) -> None:
    if not isinstance(item, dict):
        return
    for key, value in item.items():
        if not _storable(key) or not _storable(value):
            raise MessageError(
                key if key and _storable(key) else WHOLE_MESSAGE,  # an empty key names nothing
                "contains a NUL character or an unpaired surrogate, which cannot be stored",
            )


def _storable(value: Any) -> bool:
    if isinstance(value, str):
        if "\x00" in value:
            return False
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_storable(key) and _storable(item) for key, item in value.items())
    if isinstance(value, list):
        return all(_storable(item) for item in value)
    return True


def parse_message(
    item: Any,
    *,
    kind: Kind | None = None,
    shared_context: dict[str, Any] | None = None,
    shared_sent_at: datetime | None = None,
    shared_integrations: dict[str, Any] | None = None,
    client_ip: str | None = None,
) -> Message:
    """One Segment message to a ``Message``; raises ``MessageError`` naming the wire field.

    ``kind`` comes from the endpoint for single calls (the body's ``type`` is then
    ignored, as Segment does) and from ``type`` in a batch.
    """
    if not isinstance(item, dict):
        raise MessageError(WHOLE_MESSAGE, "must be a JSON object")
    if kind is None:
        kind = _kind(item.get("type"))

    own_context = _object(item.get("context"), "context")
    context = {**(shared_context or {}), **own_context}
    integrations = item.get("integrations")
    if integrations is not None or shared_integrations:
        context["integrations"] = {**(shared_integrations or {}), **_object(integrations, "integrations")}
    if not context.get("ip") and client_ip and _sent_by_the_person(context):
        context["ip"] = client_ip
    # Footprint's extras may travel in context (where libraries let callers add fields);
    # they are credentials and routing, not context, so they are not stored there.
    signature = _text(_pop_extra(item, context, "signature"), "signature")
    session_id = clean_id(_pop_extra(item, context, "sessionId"), "sessionId")

    message = Message(
        kind=kind,
        user_id=clean_id(item.get("userId"), "userId"),
        anonymous_id=clean_id(item.get("anonymousId"), "anonymousId"),
        # validate() cleans it: junk is an error, an id we did not issue is unknown.
        profile_id=client_profile_id(item.get("profileId")),
        session_id=session_id,
        context=context,
        timestamp=(
            parse_datetime(item.get("timestamp"), "timestamp")
            if item.get("timestamp") is not None
            # Segment's stored form of the client's time (exports, some SDKs' queues).
            else parse_datetime(item.get("originalTimestamp"), "originalTimestamp")
        ),
        sent_at=parse_datetime(item.get("sentAt"), "sentAt") or shared_sent_at,
        message_id=_message_id(item.get("messageId")),
        signature=signature,
    )
    _KIND_FIELDS[kind](message, item)
    return message


def _track(message: Message, item: dict[str, Any]) -> None:
    event = item.get("event")
    if event is not None and not isinstance(event, str):
        raise MessageError("event", "must be a string")
    message.event = event
    # The JS tracker's setCart / cancelCart / purchaseCart are track events named after
    # the cart actions, the cart as properties: ``validate`` makes them cart calls.
    message.properties = _object(item.get("properties"), "properties")


def _identify(message: Message, item: dict[str, Any]) -> None:
    message.traits = _object(item.get("traits"), "traits")
    if message.user_id is None:
        message.kind = Kind.SET


def _page(message: Message, item: dict[str, Any]) -> None:
    properties = _object(item.get("properties"), "properties")
    for name in ("name", "category"):
        value = item.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise MessageError(name, "must be a string")
        properties = {**properties, name: value}
    message.properties = properties


def _group(message: Message, item: dict[str, Any]) -> None:
    message.group_id = clean_id(item.get("groupId"), "groupId")
    message.traits = _object(item.get("traits"), "traits")


def _alias(message: Message, item: dict[str, Any]) -> None:
    message.previous_id = clean_id(item.get("previousId"), "previousId")
    message.previous_signature = _text(item.get("previousSignature"), "previousSignature")


_KIND_FIELDS: dict[Kind, Callable[[Message, dict[str, Any]], None]] = {
    Kind.TRACK: _track,
    Kind.IDENTIFY: _identify,
    Kind.PAGE: _page,
    Kind.SCREEN: _page,
    Kind.GROUP: _group,
    Kind.ALIAS: _alias,
}


def _kind(value: Any) -> Kind:
    if value is None:
        raise MessageError("type", "is required")
    if not isinstance(value, str) or value.strip().lower() not in TYPES:
        raise MessageError("type", f"must be one of {', '.join(TYPES)}")
    return TYPES[value.strip().lower()]


# Segment's server-side libraries, by the context.library.name they send. Their calls come
# from the site's own servers, so the caller's address is not the person's: Segment fills
# context.ip for client-side calls only, or where a call says ``context.direct: true``.
SERVER_LIBRARIES = frozenset({
    "analytics-python", "analytics-ruby", "analytics-go", "analytics-java", "analytics-php",
    "analytics-node", "@segment/analytics-node", "analytics.net",
})


def _sent_by_the_person(context: dict[str, Any]) -> bool:
    """Whether the caller's address may stand for the person's (``context.ip``)."""
    if context.get("direct") is True:
        return True
    library = context.get("library")
    name = library.get("name") if isinstance(library, dict) else None
    return not (isinstance(name, str) and name.lower() in SERVER_LIBRARIES)


def _object(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(name, "must be an object")
    return value


def _text(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(name, "must be a string")
    return value.strip() or None


def _pop_extra(item: dict[str, Any], context: dict[str, Any], name: str) -> Any:
    in_context = context.pop(name, None)
    value = item.get(name)
    return value if value is not None else in_context


def _message_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise MessageError("messageId", "must be a string")
    text = str(value).strip()
    if len(text) > MAX_MESSAGE_ID_LENGTH:
        raise MessageError("messageId", f"is longer than {MAX_MESSAGE_ID_LENGTH} characters")
    return text or None


def parse_datetime(value: Any, name: str) -> datetime | None:
    """An ISO 8601 / RFC 3339 date-time as an aware datetime (no offset means UTC);
    ``schema.iso_datetime`` also reads what ``fromisoformat`` refuses (``z``, 24:00, :60)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise MessageError(name, "must be an ISO 8601 date-time string")
    try:
        parsed = iso_datetime(value.strip())
    except ValueError:
        raise MessageError(name, f"{value[:64]!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not MIN_YEAR <= parsed.year <= MAX_YEAR:
        raise MessageError(name, f"year {parsed.year} is out of range ({MIN_YEAR}-{MAX_YEAR})")
    return parsed


# --- answers -------------------------------------------------------------------------


class IngestOutcome(Protocol):
    """What ``tracking.ingest.core.IngestResult`` offers (kept structural: no import)."""

    accepted: list[int]
    duplicates: list[int]
    errors: list[FieldError]
    profile_ids: dict[int, int]


def refuse_invalid(parsed: ParsedRequest, *, strict: bool) -> None:
    """Refuse before ingestion: strict mode with an invalid message, or none valid."""
    if parsed.errors and (strict or not parsed.messages):
        raise RequestRejected(400, "invalid", _summary(parsed.errors, parsed), parsed.errors)


def answer(parsed: ParsedRequest, outcome: IngestOutcome) -> Answer:
    """The response to an ingested request: 200 unless no message was stored or seen.

    ``profile_ids`` lists each distinct profile once, in message order; single calls
    also get ``profile_id``; batches list every invalid message under ``errors``.
    """
    errors = sorted([*parsed.errors, *outcome.errors], key=error_order)
    if not outcome.accepted and not outcome.duplicates:
        raise RequestRejected(400, "invalid", _summary(errors, parsed), errors)
    distinct = dict.fromkeys(outcome.profile_ids[i] for i in sorted(outcome.profile_ids))
    tokens = {pid: profile_tokens.issue(pid) for pid in distinct}
    body: dict[str, Any] = {"success": True, "profile_ids": list(tokens.values())}
    if parsed.is_batch:
        body["errors"] = [error.as_dict() for error in errors]
    else:
        body["profile_id"] = tokens.get(outcome.profile_ids.get(0))
    return Answer(status=200, body=body)


def _summary(errors: list[FieldError], parsed: ParsedRequest) -> str:
    """One line for libraries that log only ``message``: the count and the first error."""
    if not errors:
        return "No message was stored"
    first = f"{errors[0].field}: {errors[0].reason}"
    if not parsed.is_batch:
        return first
    invalid = len({error.index for error in errors})
    return f"{invalid} of {parsed.total} messages are invalid; message {errors[0].index}: {first}"


# --- the settings document analytics.js loads first ------------------------------------


def settings_document(write_key: str, *, host: str, secure: bool) -> dict[str, Any]:
    """What cdn.segment.com serves at /v1/projects/<writeKey>/settings, pointing here.

    Only the Segment.io integration is listed, so the library loads no destination
    code from Segment's CDN, and its own telemetry is off (sample rate 0).
    """
    api_host = f"{host}/v1"
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": "https" if secure else "http",
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["browser"]},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
        "autoInstrumentationSettings": {"sampleRate": 0},
    }
