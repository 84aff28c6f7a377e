"""Tracktor.io's HTTP API (``GET /set``, ``GET /track``, ``GET /alias``) to a message.

Parameters (see ../shared/seeds/tracktor-docs.txt): ``sid`` the write key, ``ts`` Unix
time, ``id`` the person, ``sign`` HMAC-SHA256 of ``id`` (secure mode), ``data`` the
properties (``/set``) or the event's data (``/track``), ``action`` the event name,
``srcid``/``destid``/``destsign`` for an alias.

Mapping choices:
- an ``id`` starting with ``a-`` is the tracker's anonymous id; any other is the site's
  user id, and ``sign`` its signature;
- ``data`` arrives url-encoded, as JSON or, in Tracktor's own examples, as a JavaScript
  object literal (``{billing_plan:'Gold'}``): both are read by a JSON5 parser. It must be
  an object; in ``/set`` a key set to ``null`` deletes the property;
- ``ts`` is the client's clock when it made the call, which for this API is also when it
  sent it, so it is both the message's ``timestamp`` and its ``sent_at``: the core's skew
  correction (receivedAt - (sentAt - timestamp)) then stores the event at the server's
  time, whatever the client's clock says. Milliseconds (past 10^11) are accepted too;
- Tracktor's examples send every call to ``/track``: its alias example with ``srcid``/
  ``destid`` and no ``action`` (an alias), its set-properties example with ``id`` and
  ``data`` and no ``action`` (a set). ``/track`` reads them so: ``srcid``/``destid``
  make an alias, else ``action`` an event, else ``data`` alone sets properties;
- the e-commerce calls arrive as ``/track`` actions (``setCart``, ``cancelCart``,
  ``purchaseCart``; case, ``-``, ``_`` and spaces ignored) with the cart as ``data``:
  they become cart messages (``set-cart``, ``cancel-cart``, ``purchase-cart``);
- the API has no message id, so a call's id is a digest of its endpoint and parameters
  (``retry_id``): a client or proxy that retries a call sends the same URL, and the core's
  dedupe stores it once. ``ts`` is in every URL, so two calls share an id only when the
  same person sends the same action with the same data in the same second (the same
  millisecond, with a millisecond ``ts``), which is taken as a retry.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import json5

from tracking.ingest.schema import CART_REQUIRED, Kind, Message, MessageError, clean_id
from tracking.ingest.wire import Params, RequestRejected, check_storable, one, unix_time

ENDPOINTS = ("set", "track", "alias")
ANONYMOUS_PREFIX = "a-"
CART_ACTIONS = {"setcart": "set-cart", "cancelcart": "cancel-cart", "purchasecart": "purchase-cart"}
_SQUASH = re.compile(r"[\s_-]+")

# Shared validation names Segment's fields; these are Tracktor's.
FIELD_NAMES = {
    "userId": "id",
    "anonymousId": "id",
    "signature": "sign",
    "event": "action",
    "properties": "data",
    "traits": "data",
}
ALIAS_FIELD_NAMES = {"userId": "destid", "previousId": "srcid", "signature": "destsign"}


def write_key(params: Params) -> str | None:
    return one(params, "sid")


def unauthorized(key: str | None) -> RequestRejected:
    reason = "is not a valid write key" if key else "is required: the application token (write key)"
    return RequestRejected.unauthorized("sid", reason)


def field_names(message: Message) -> dict[str, str]:
    return ALIAS_FIELD_NAMES if message.kind is Kind.ALIAS else FIELD_NAMES


def parse(endpoint: str, params: Params, *, request_context: dict[str, Any] | None = None) -> Message:
    """The call as one message; raises RequestRejected (400) naming the bad parameter."""
    if endpoint not in ENDPOINTS:
        raise ValueError(f"unknown Tracktor endpoint {endpoint!r}")
    try:
        message = _parse(endpoint, params)
    except MessageError as exc:
        raise RequestRejected.invalid(exc.field, exc.reason) from None
    message.context = dict(request_context or {})
    message.message_id = retry_id(endpoint, params)
    return message


def retry_id(endpoint: str, params: Params) -> str:
    """The same for the same call sent again: the endpoint (``/set`` and ``/track`` read
    the same parameters alike, but a retry repeats its URL) and every parameter, in
    name order, values in the order sent."""
    canonical = json.dumps([endpoint, sorted(params.items())], ensure_ascii=False)
    return "tracktor-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _parse(endpoint: str, params: Params) -> Message:
    raw_ts = one(params, "ts")
    if raw_ts is None:
        raise MessageError("ts", "is required: the current Unix time")
    moment = unix_time(raw_ts, "ts")
    srcid, destid, action = one(params, "srcid"), one(params, "destid"), one(params, "action")
    if endpoint == "alias" or (endpoint == "track" and (srcid or destid)):
        if endpoint == "track" and action:
            raise MessageError("action", "cannot be combined with srcid/destid (an alias takes no action)")
        message = _alias(params, srcid, destid)
    elif endpoint == "set" or ("action" not in params and one(params, "data") is not None):
        message = Message(kind=Kind.SET, traits=_data(params, required=True))
        _person(message, params)
    else:
        message = _track(params, action)
        _person(message, params)
    message.timestamp = message.sent_at = moment
    return message


def _person(message: Message, params: Params) -> None:
    person = clean_id(one(params, "id"), "id", required=True)
    assert person is not None
    if person.startswith(ANONYMOUS_PREFIX):
        message.anonymous_id = person  # a signature of an anonymous id proves nothing
    else:
        message.user_id = person
        message.signature = one(params, "sign")


def _track(params: Params, action: str | None) -> Message:
    if action is None:
        raise MessageError("action", "is required: the name of the tracked event (or data, to set properties)")
    cart_action = CART_ACTIONS.get(_SQUASH.sub("", action).lower())
    if cart_action is None:
        return Message(kind=Kind.TRACK, event=action, properties=_data(params, required=False))
    # The cart itself is checked by the shared validation (``schema.validate``), as
    # every format's; its errors name ``properties``, which FIELD_NAMES makes ``data``.
    return Message(kind=Kind.CART, event=cart_action, properties=_data(params, required=cart_action in CART_REQUIRED))


def _alias(params: Params, srcid: str | None, destid: str | None) -> Message:
    source = clean_id(srcid, "srcid", required=True)
    dest = clean_id(destid, "destid", required=True)
    assert source is not None and dest is not None
    if dest.startswith(ANONYMOUS_PREFIX):
        raise MessageError("destid", "must name an identified person, not an anonymous id (a-…)")
    if source == dest:
        raise MessageError("destid", "must differ from srcid")
    return Message(kind=Kind.ALIAS, previous_id=source, user_id=dest, signature=one(params, "destsign"))


def _data(params: Params, *, required: bool) -> dict[str, Any]:
    raw = one(params, "data")
    if raw is None:
        if required:
            raise MessageError("data", "is required: a JSON object, e.g. {billing_plan:'Gold'}")
        return {}
    try:
        value = json5.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise MessageError(
            "data", f"is not a JSON object or JavaScript object literal: {str(exc)[:200]}"
        ) from None
    if not isinstance(value, dict):
        raise MessageError("data", "must be an object, e.g. {billing_plan:'Gold'}")
    check_storable(value, "data")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")
