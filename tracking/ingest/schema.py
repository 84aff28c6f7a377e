"""The internal message types every wire format is parsed into, and their validation.

Adapters (Segment, Tracardi, Tracktor, Raptor, the JS tracker) turn requests into a
list of ``Message``; ``tracking.ingest.core.ingest_batch`` takes it from there. Nothing
here touches the database.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from tracking import jsontext
from tracking.ingest import profile_tokens
from tracking.ingest.profile_tokens import MAX_PROFILE_ID

MAX_ID_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 320

# Ids that never identify or merge anyone (compared case-insensitively, trimmed).
JUNK_IDS = frozenset(
    {
        "",
        "null",
        "undefined",
        "anonymous",
        "guest",
        "0",
        "-1",
        "[object object]",
        "nan",
        "none",
        "true",
        "false",
    }
)


class Kind(enum.StrEnum):
    IDENTIFY = "identify"
    TRACK = "track"
    PAGE = "page"
    SCREEN = "screen"
    GROUP = "group"
    ALIAS = "alias"
    SET = "set"  # set person properties (Tracktor /set, tracker setProperties)
    CART = "cart"  # event is one of CART_ACTIONS, properties the cart


CART_ACTIONS = ("set-cart", "cancel-cart", "purchase-cart")
# Cart calls that must carry the cart (a cancel may come without one).
CART_REQUIRED = ("set-cart", "purchase-cart")

# Event types the pipeline stores for non-track messages.
EVENT_TYPE = {
    Kind.IDENTIFY: "identify",
    Kind.PAGE: "page-view",
    Kind.SCREEN: "screen-view",
    Kind.GROUP: "group",
    Kind.ALIAS: "alias",
    Kind.SET: "set-properties",
}
VISITED_SITE = "visited-site"


@dataclass(slots=True)
class FieldError:
    """One bad field of one message: ``index`` is the message's place in the request."""

    index: int | None
    field: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        body = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            body = {"index": self.index, **body}
        return body


def error_order(error: FieldError) -> tuple[int, int]:
    """Request-level errors first, then by message index."""
    return (0, 0) if error.index is None else (1, error.index)


class RequestRejected(Exception):
    """The request as a whole is refused (by any wire format or the core); nothing of it
    is stored. Views answer ``status`` with ``body()``."""

    def __init__(self, status: int, code: str, message: str, errors: list[FieldError] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []

    @classmethod
    def invalid(cls, field: str, reason: str, *, index: int | None = None) -> RequestRejected:
        return cls(400, "invalid", f"{field}: {reason}", [FieldError(index, field, reason)])

    @classmethod
    def unauthorized(cls, field: str, reason: str, *, message: str | None = None) -> RequestRejected:
        return cls(401, "unauthorized", message or f"{field}: {reason}", [FieldError(None, field, reason)])

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            body["errors"] = [error.as_dict() for error in sorted(self.errors, key=error_order)]
        return body


class MessageError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(slots=True)
class Message:
    """One call: identify, track, page, screen, group, alias, set or a cart call.

    Identity: ``user_id`` (the site's id for a person), ``anonymous_id`` (the tracker's),
    ``profile_id`` (ours, as returned to clients earlier), ``session_id`` (the client's
    session id; a known session with no other id recovers its profile), and any further
    ``identities`` as (kind, key) pairs (cookie, email, external).
    """

    kind: Kind
    user_id: str | None = None
    anonymous_id: str | None = None
    profile_id: int | str | None = None  # validate() leaves an int, or None when unknowable
    session_id: str | None = None
    new_session: bool = False
    identities: list[tuple[str, str]] = field(default_factory=list)
    event: str | None = None  # track: the event name; cart: one of CART_ACTIONS
    properties: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)  # person (or group) properties to set
    context: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None  # the client's time of the call
    sent_at: datetime | None = None  # the client's time when it sent the request
    message_id: str | None = None
    group_id: str | None = None  # group: the company key
    previous_id: str | None = None  # alias: the id merged away (dest is user_id)
    signature: str | None = None  # HMAC-SHA256(signing secret, user_id), hex
    previous_signature: str | None = None  # alias: signature of previous_id (unused unless both identified)
    index: int = 0  # place in the request, for error reports
    occurred_at: datetime | None = None  # set by the core: the client's time, skew-corrected
    received_at: datetime | None = None  # when the request arrived (the core's default: now)
    # Queued messages of a person not known yet: the profile id the answer promised,
    # taken from the profiles' sequence; the profile made for them gets it.
    reserved_profile_id: int | None = None
    # Its place in its request where ``index`` numbers a drain's chunk of many requests.
    position: int | None = None

    def event_properties(self) -> dict[str, Any]:
        """What the stored event carries: identify and set calls keep their traits, so
        the history of a property can be counted."""
        if self.kind in (Kind.IDENTIFY, Kind.SET):
            return self.traits
        if self.kind is Kind.GROUP:
            return {"group_id": self.group_id, **self.traits}
        if self.kind is Kind.ALIAS:
            return {"previous_id": self.previous_id}
        return self.properties

    def event_type(self) -> str:
        if self.kind in (Kind.TRACK, Kind.CART):
            return self.event or ""
        return EVENT_TYPE[self.kind]


# The queued form of a validated message (``tracking.inbox``): its fields in this order,
# dates as ISO 8601. ``timestamp`` and ``sent_at`` are folded into ``occurred_at`` first.
WIRE_FIELDS = (
    "kind", "user_id", "anonymous_id", "profile_id", "session_id", "new_session", "identities",
    "event", "properties", "traits", "context", "occurred_at", "message_id", "group_id",
    "previous_id", "signature", "previous_signature", "index", "reserved_profile_id",
)
_OCCURRED_AT = WIRE_FIELDS.index("occurred_at")
_KIND = WIRE_FIELDS.index("kind")
_IDENTITIES = WIRE_FIELDS.index("identities")
WIRE_INDEX = WIRE_FIELDS.index("index")  # a queued message's index in its request
_KINDS = {kind.value: kind for kind in Kind}  # Kind(value) is an enum lookup: slower
# Message's fields in its own order, as places in the queued form (-1: not queued, None).
_MESSAGE_ORDER = tuple(WIRE_FIELDS.index(f.name) if f.name in WIRE_FIELDS else -1 for f in fields(Message))
_RECEIVED_AT = [f.name for f in fields(Message)].index("received_at")


# Properties and context travel as JSON text within the queued form (one string each),
# and come back as ``jsontext.RawJSON``: the drain stores them without parsing them.
_RAW = (WIRE_FIELDS.index("properties"), WIRE_FIELDS.index("context"))


def to_wire(message: Message) -> list[Any]:
    values = [getattr(message, name) for name in WIRE_FIELDS]
    for i in _RAW:
        if type(values[i]) is not jsontext.RawJSON:
            values[i] = jsontext.dumps(values[i])
    return values


def from_wire(values: list[Any], *, received_at: datetime) -> Message:
    values = list(values)
    for i in _RAW:
        if isinstance(values[i], str):  # rows queued before this form hold objects
            values[i] = jsontext.RawJSON(values[i])
    values[_KIND] = _KINDS[values[_KIND]]
    values[_OCCURRED_AT] = datetime.fromisoformat(values[_OCCURRED_AT])
    values[_IDENTITIES] = [tuple(pair) for pair in values[_IDENTITIES]]
    values.append(None)  # what _MESSAGE_ORDER takes for fields the queued form lacks
    args = [values[i] for i in _MESSAGE_ORDER]
    args[_RECEIVED_AT] = received_at
    # Positional: keywords (``Message(**dict(zip(...)))``) made this a fifth of the
    # drain's Python time (py-spy), 3.8 µs a message against 2.6.
    return Message(*args)


def is_junk_id(value: str) -> bool:
    return value.strip().lower() in JUNK_IDS


_LONGEST_JUNK = max(map(len, JUNK_IDS))


def clean_id(value: Any, field_name: str, *, required: bool = False) -> str | None:
    """An id as a trimmed string; numbers are accepted (Segment allows them)."""
    if (
        type(value) is str
        and value.isascii()
        and value[:1] > " "  # not empty, nothing for strip() to take (ASCII spaces are ≤ " ")
        and value[-1] > " "
        and len(value) <= MAX_ID_LENGTH
        and "\x00" not in value
        and (len(value) > _LONGEST_JUNK or value.lower() not in JUNK_IDS)
    ):
        # Already clean, as nearly every id is (and as every id is the second time:
        # the parsers clean ids and ``validate`` checks them again): 4.8 calls a
        # message, a tenth of the web's Python for a batch (cProfile on bench batches).
        return value
    if value is None:
        if required:
            raise MessageError(field_name, "is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageError(field_name, "must be a string")
    text = str(value).strip() if not isinstance(value, float) else repr(value)
    if is_junk_id(text):
        raise MessageError(field_name, f"{text!r} is not a usable id")
    if len(text) > MAX_ID_LENGTH:
        raise MessageError(field_name, f"is longer than {MAX_ID_LENGTH} characters")
    if not storable_text(text):
        raise MessageError(field_name, UNSTORABLE)
    return text


UNSTORABLE = "contains a NUL character or an unpaired surrogate, which cannot be stored"


def storable_text(text: str) -> bool:
    """Whether PostgreSQL can store the text: no NUL, no lone surrogate (ASCII is the
    common case and needs no encoding to tell)."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# A date, "T", then an extended-format clock whose hour may be 24 and second 60; what
# follows the clock must be an offset (fromisoformat checks it).
_CLOCK = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt ])(\d\d):(\d\d)(?::(\d\d)([.,]\d+)?)?((?:Z|[+-].*)?)",
    re.ASCII | re.DOTALL,
)
_DAY_SECONDS = 24 * 3600


def iso_datetime(text: str) -> datetime:
    """An ISO 8601 / RFC 3339 date-time, naive when it has no offset; ``ValueError`` when
    it is none. ``datetime.fromisoformat`` first (the common case costs nothing more),
    then ``isoformat_fallback`` for what it refuses. Segment and Tracardi read their times here."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return isoformat_fallback(text)


def isoformat_fallback(text: str) -> datetime:
    """What ``datetime.fromisoformat`` (3.11) refuses but RFC 3339 and ISO 8601 allow:
    a lower-case ``z``, ``24:00`` (midnight at the end of the day: 00:00 of the next) and a
    leap second ``23:59:60`` (UTC; read as 23:59:59.999999 of that minute, so the order
    of times is kept); ``iso_datetime`` calls it only when ``datetime.fromisoformat``
    raised. Raises ``ValueError`` when
    the text is none of these either (``24:01``, ``23:60``, ``23:59:61``, ``12:00:60Z``)."""
    if text[-1:] == "z" and "0" <= text[-2:-1] <= "9":  # after a time's last digit only
        text = text[:-1] + "Z"
    clock = _CLOCK.fullmatch(text)
    if clock is None:
        return datetime.fromisoformat(text)
    date, hour, minute, second, fraction, offset = clock.groups()
    if hour == "24":
        if minute != "00" or second not in (None, "00") or (fraction and fraction[1:].strip("0")):
            raise ValueError(f"{text!r}: 24 is an hour only as 24:00, the end of the day")
        try:
            return datetime.fromisoformat(f"{date}00:00{offset}") + timedelta(days=1)
        except OverflowError:
            raise ValueError(f"{text!r} is past the last representable day") from None
    if second == "60":
        moment = datetime.fromisoformat(f"{date}{hour}:{minute}:59.999999{offset}")
        shift = moment.utcoffset()
        clock_seconds = int(hour) * 3600 + int(minute) * 60 + 59
        if shift is None or shift.microseconds == 0:
            utc = clock_seconds - (shift.days * _DAY_SECONDS + shift.seconds if shift else 0)
            if utc % _DAY_SECONDS == _DAY_SECONDS - 1:  # 23:59:59 in UTC
                return moment
        raise ValueError(f"{text!r}: a leap second comes only after 23:59:59 UTC")
    return datetime.fromisoformat(text)


def client_profile_id(value: Any) -> Any:
    """A profile id as a client sent it, for ``Message.profile_id``: a number becomes its
    text. Only an int there is trusted (ours, or redeemed from a token by
    ``clean_profile_id``); a client's number is no proof: it could be guessed."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def clean_profile_id(value: Any) -> int | None:
    """Our own profile id as a client kept it: a token we issued (``profile_tokens``).
    Junk is an error; any other id we did not issue (a bare number, a Tracardi UUID, a
    wrong tag) is simply unknown, which is not an error: the message then gets a new
    profile (DESIGN "People and identity"). An int is one already redeemed or given by
    the server's own code, and is kept."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_PROFILE_ID:
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MessageError("profileId", "must be a string or a number")
    text = (repr(value) if isinstance(value, float) else str(value)).strip()
    if is_junk_id(text) or text.startswith("-"):
        raise MessageError("profileId", f"{text!r} is not a usable id")
    if len(text) > MAX_ID_LENGTH:
        raise MessageError("profileId", f"is longer than {MAX_ID_LENGTH} characters")
    return profile_tokens.redeem(text)


def validate(message: Message) -> None:
    """Check what every message needs, whatever its wire format; raises MessageError."""
    kind = message.kind
    for name in ("user_id", "anonymous_id", "group_id", "previous_id", "session_id"):
        value = getattr(message, name)
        if value is not None:
            setattr(message, name, clean_id(value, _WIRE_NAMES[name]))
    names_a_profile = message.profile_id is not None
    message.profile_id = clean_profile_id(message.profile_id)
    message.identities = [(kind_name, clean_id(key, kind_name, required=True)) for kind_name, key in message.identities]
    if not (message.user_id or message.anonymous_id or names_a_profile or message.session_id or message.identities):
        raise MessageError("userId", "userId or anonymousId is required")
    if kind in (Kind.TRACK, Kind.CART):
        if not message.event or not isinstance(message.event, str) or not message.event.strip():
            raise MessageError("event", "is required")
        message.event = message.event.strip()
        if len(message.event) > MAX_EVENT_NAME_LENGTH:
            raise MessageError("event", f"is longer than {MAX_EVENT_NAME_LENGTH} characters")
        if not storable_text(message.event):
            raise MessageError("event", UNSTORABLE)
        if kind is Kind.TRACK and message.event in CART_ACTIONS:
            # An event named after a cart action is a cart call whatever the format
            # (the JS tracker's setCart travels as a Segment track): stored alike, it
            # must hold a cart alike.
            kind = message.kind = Kind.CART
        if kind is Kind.CART and message.event not in CART_ACTIONS:
            raise MessageError("event", f"must be one of {', '.join(CART_ACTIONS)}")
    if kind is Kind.IDENTIFY and not message.user_id:
        raise MessageError("userId", "is required to identify")
    if kind is Kind.GROUP and not message.group_id:
        raise MessageError("groupId", "is required")
    if kind is Kind.ALIAS:
        if not message.previous_id:
            raise MessageError("previousId", "is required")
        if not message.user_id:
            raise MessageError("userId", "is required")
    for name in ("properties", "traits", "context"):
        if not isinstance(getattr(message, name), dict):
            raise MessageError(name, "must be an object")
    if kind is Kind.CART and (message.properties or message.event in CART_REQUIRED):
        check_cart(message.properties, "properties")
    if kind in (Kind.IDENTIFY, Kind.SET):
        _check_email_trait(message.traits.get("email"))


def _check_email_trait(email: Any) -> None:
    """The person's ``email`` property is indexed (people search): past the index's
    entry limit PostgreSQL refuses the profile's row. An address has at most 320
    characters (RFC 5321: 64 + @ + 255)."""
    if email is None:
        return
    size = len(email) if isinstance(email, str) else len(jsontext.dumps(email))
    if size > MAX_EMAIL_LENGTH:
        raise MessageError("traits.email", f"is longer than {MAX_EMAIL_LENGTH} characters")


def _wire_name(attr: str) -> str:
    head, *rest = attr.split("_")
    return head + "".join(part.capitalize() for part in rest)


_WIRE_NAMES = {name: _wire_name(name) for name in ("user_id", "anonymous_id", "group_id", "previous_id", "session_id")}


def check_cart(cart: Any, field_name: str = "cart") -> None:
    """The cart object of a cart call (DESIGN "Carts"; Tracktor's e-commerce extension),
    checked by ``validate`` for every wire format:
    ``totalprice`` a number, ``products`` a list of objects with a ``name`` and a numeric
    ``price`` and an optional positive integer ``count``; any other keys are kept.
    Raises MessageError naming the offending field under ``field_name``."""
    if not isinstance(cart, dict):
        raise MessageError(field_name, "must be a cart object")
    if not _is_number(cart.get("totalprice")):
        raise MessageError(f"{field_name}.totalprice", "is required and must be a number")
    products = cart.get("products")
    if not isinstance(products, list):
        raise MessageError(f"{field_name}.products", "is required and must be a list")
    for i, product in enumerate(products):
        where = f"{field_name}.products[{i}]"
        if not isinstance(product, dict):
            raise MessageError(where, "must be an object")
        if not isinstance(product.get("name"), str) or not product["name"].strip():
            raise MessageError(f"{where}.name", "is required and must be a string")
        if not _is_number(product.get("price")):
            raise MessageError(f"{where}.price", "is required and must be a number")
        count = product.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise MessageError(f"{where}.count", "must be a positive integer")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
