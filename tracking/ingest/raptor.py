"""Raptor's server-side tracking call (``GET /t/<site>.rsa?p1=…``) to a message.

Parameters (see ../shared/seeds/raptor-server-side-tracking.txt): ``p1``…``p999`` carry
the site's data, and what each means differs from site to site: the site's Raptor
mapping (edited in the admin) names them, e.g. ``{"p1": "event_type", "p2": "product_id"}``.
Three names are special: ``event_type`` (the event's name, required), ``user_id``
(the site's user id, Raptor's P7) and ``message_id`` (a unique id of the call, which a
site that can send one maps: a retried call is then stored once, as a Segment
``messageId`` is; Raptor's URL has no such id of its own, so without it a retry is
indistinguishable from a second view); any other name is the event property it becomes.
A site without a mapping gets ``DEFAULT_MAPPING``.

- ``coid`` (cookie id) is a cookie identity, ``sid`` the client session, both required;
- ``ruid`` is the user id in base64 (standard or URL-safe, padding optional; a ``+``
  that arrived as a space is put back): invalid base64 is a 400 naming ``ruid``. When
  both ``ruid`` and the mapped user id are given and differ, ``ruid`` is the user id and
  the other is kept as a second user identity of the same person;
- ``reaid`` and ``xuid`` are external identities; ``xuid`` never comes with ``reaid`` or
  ``ruid`` (Raptor: HeyLoyalty only);
- ``am`` (the recommendation module of an item click) is kept in the event context as
  ``recommendation_module``;
- parameter names are read in any case (``P7`` is ``p7``: the document's spelling);
- unmapped ``pN`` are kept as properties named ``pN``; empty values count as absent;
  other parameters (cache busters and the like) are kept in ``context["params"]``.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from profiles.models import Identity
from tracking.ingest.schema import Kind, Message, MessageError, clean_id
from tracking.ingest.wire import Params, RequestRejected, check_storable, one

EVENT_TYPE = "event_type"
USER_ID = "user_id"
MESSAGE_ID = "message_id"
MAX_MESSAGE_ID_LENGTH = 255
DEFAULT_MAPPING = {"p1": EVENT_TYPE, "p7": USER_ID}
# Names a mapping commonly uses, offered by the admin's editor.
SUGGESTED_TARGETS = (
    EVENT_TYPE,
    USER_ID,
    MESSAGE_ID,
    "product_id",
    "product_name",
    "category_id",
    "category_path",
    "price",
    "currency",
    "quantity",
    "order_id",
    "content_id",
    "language",
)
PARAM = re.compile(r"^p([1-9][0-9]{0,2})$")
TARGET = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
ID_PARAMS = frozenset({"coid", "sid", "ruid", "reaid", "xuid", "am"})
RECOMMENDATION_MODULE = "recommendation_module"
# Shared validation names Segment's fields; these are Raptor's (it has no signature: in
# secure mode its user id is refused as unsigned).
FIELD_NAMES = {"userId": "ruid", "signature": "ruid", "sessionId": "sid", "event": "event_type", "cookie": "coid"}


def clean_mapping(raw: Any) -> dict[str, str]:
    """A mapping as the admin saves it: ``{"pN": target}`` with N in 1..999, targets
    field names, no target twice, and exactly one ``event_type`` unless empty (which
    means ``DEFAULT_MAPPING``). Raises MessageError naming the bad parameter."""
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise MessageError("raptor_mapping", 'must be an object such as {"p1": "event_type"}')
    cleaned: dict[str, str] = {}
    param_of: dict[str, str] = {}
    for param, target in raw.items():
        name = str(param).strip().lower()
        if not PARAM.match(name):
            raise MessageError(str(param), "is not a Raptor parameter (p1 to p999)")
        if name in cleaned:
            raise MessageError(name, "is mapped twice")
        if not isinstance(target, str) or not TARGET.match(target.strip()):
            raise MessageError(name, "must map to a field name (a letter or _, then letters, digits, _ . -)")
        target = target.strip()
        if target in param_of:
            raise MessageError(name, f"maps to {target}, as {param_of[target]} does")
        cleaned[name] = target
        param_of[target] = name
    if cleaned and EVENT_TYPE not in param_of:
        raise MessageError(EVENT_TYPE, "one parameter must map to event_type")
    return dict(sorted(cleaned.items(), key=lambda item: int(item[0][1:])))


def effective_mapping(site_mapping: Any) -> dict[str, str]:
    """The site's mapping, or the default when it has none. A stored mapping is used
    as it is (entries that name no pN parameter are skipped, never fatal)."""
    if not isinstance(site_mapping, dict) or not site_mapping:
        return dict(DEFAULT_MAPPING)
    return {
        str(param).strip().lower(): str(target).strip()
        for param, target in site_mapping.items()
        if PARAM.match(str(param).strip().lower()) and isinstance(target, str) and target.strip()
    }


def parse(params: Params, site_mapping: Any, *, request_context: dict[str, Any] | None = None) -> Message:
    """The call as one track message; raises RequestRejected (400) naming the bad parameter."""
    try:
        return _parse(_lower_names(params), effective_mapping(site_mapping), dict(request_context or {}))
    except MessageError as exc:
        raise RequestRejected.invalid(exc.field, exc.reason) from None


def _lower_names(params: Params) -> dict[str, list[str]]:
    """Raptor's parameters in any case (its document says "the UserId parameter (P7)"):
    ``P7`` is ``p7``, ``COID`` is ``coid``; both spellings at once are one parameter given
    twice. Other parameters keep their names."""
    named: dict[str, list[str]] = {}
    for name, values in params.items():
        lower = name.lower()
        key = lower if PARAM.match(lower) or lower in ID_PARAMS else name
        named.setdefault(key, []).extend(values)
    return named


def _parse(params: Params, mapping: dict[str, str], context: dict[str, Any]) -> Message:
    event: str | None = None
    mapped_user: str | None = None
    message_id: str | None = None
    properties: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, values in params.items():
        if name in ID_PARAMS:
            continue
        if not PARAM.match(name):
            check_storable(name, "query string")  # a parameter's name
            for value in values:
                check_storable(value, name)
            extra[name] = values[0] if len(values) == 1 else values
            continue
        value = one(params, name)
        if value is None:
            continue
        target = mapping.get(name)
        if target == EVENT_TYPE:
            event = value
        elif target == USER_ID:
            mapped_user = clean_id(value, name)
        elif target == MESSAGE_ID:
            if len(value) > MAX_MESSAGE_ID_LENGTH:
                raise MessageError(name, f"is longer than {MAX_MESSAGE_ID_LENGTH} characters (the message id)")
            message_id = value
        else:
            properties[target or name] = value
    if event is None:
        raise _missing_event(mapping)

    cookie = clean_id(one(params, "coid"), "coid", required=True)
    session = clean_id(one(params, "sid"), "sid", required=True)
    assert cookie is not None and session is not None
    reaid = clean_id(one(params, "reaid"), "reaid")
    xuid = clean_id(one(params, "xuid"), "xuid")
    ruid_raw = one(params, "ruid", strip=False)  # a trailing '+' may have become a space
    if xuid and (reaid or ruid_raw):
        raise MessageError("xuid", "cannot be combined with reaid or ruid (xuid is for HeyLoyalty clients only)")
    ruid = decode_ruid(ruid_raw) if ruid_raw else None

    identities: list[tuple[str, str]] = [(Identity.Kind.COOKIE.value, cookie)]
    for key in (reaid, xuid):
        if key:
            identities.append((Identity.Kind.EXTERNAL.value, key))
    user = ruid or mapped_user
    if ruid and mapped_user and mapped_user != ruid:
        identities.append((Identity.Kind.USER.value, mapped_user))

    module = one(params, "am")
    if module:
        context[RECOMMENDATION_MODULE] = module
    if extra:
        context["params"] = extra
    return Message(
        kind=Kind.TRACK,
        event=event,
        user_id=user,
        session_id=session,
        identities=identities,
        properties=properties,
        context=context,
        message_id=message_id,
    )


def decode_ruid(raw: str) -> str:
    """Raptor's user id: base64 of the id (often an email address)."""
    text = raw.replace(" ", "+").strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MessageError("ruid", "is not base64 of a user id (UTF-8 text)") from None
    if "\x00" in decoded:
        raise MessageError("ruid", "decodes to text with a NUL character")
    user = clean_id(decoded, "ruid")
    if user is None:
        raise MessageError("ruid", "decodes to an empty user id")
    return user


def _missing_event(mapping: dict[str, str]) -> MessageError:
    params = [param for param, target in mapping.items() if target == EVENT_TYPE]
    if not params:
        return MessageError(EVENT_TYPE, "no parameter is mapped to event_type in this site's Raptor mapping")
    return MessageError(params[0], f"is required: the event type ({EVENT_TYPE})")
