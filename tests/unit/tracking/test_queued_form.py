"""The inbox's queued form of a message (tracking.ingest.schema ``to_wire``/``from_wire``):
properties and context travel as JSON text and reach the events table unchanged, without
the drain parsing them (``jsontext.RawJSON``)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from tests.unit.tracking.test_jsontext import json_values
from tracking import jsontext
from tracking.ingest.core import json_text
from tracking.ingest.schema import WIRE_FIELDS, Kind, Message, from_wire, to_wire
from tracking.sessions import _landing

objects = st.dictionaries(st.text(max_size=8), json_values, max_size=6)
NOW = datetime(2026, 11, 28, tzinfo=UTC)


def queued(message: Message) -> Message:
    """Through the inbox row and back, as the web side writes it and a drain reads it."""
    text = jsontext.dumps([to_wire(message)])
    return from_wire(jsontext.loads(text)[0], received_at=NOW)


@given(objects, objects, objects)
def test_properties_and_context_come_back_as_their_json_text(properties, context, traits):
    m = Message(kind=Kind.TRACK, event="e", anonymous_id="a-1", properties=properties,
                context=context, traits=traits, occurred_at=NOW)
    back = queued(m)
    assert type(back.properties) is jsontext.RawJSON and type(back.context) is jsontext.RawJSON
    assert jsontext.parsed(back.properties) == jsontext.loads(jsontext.dumps(properties))
    assert jsontext.parsed(back.context) == jsontext.loads(jsontext.dumps(context))
    assert back.traits == jsontext.loads(jsontext.dumps(traits))  # read by the identity rules
    # What COPY writes is what it wrote for the objects themselves.
    assert json_text(back.properties) == json_text(properties)
    assert json_text(back.context) == json_text(context)
    # Queued again (a retried chunk is not re-queued, but nothing may be double-encoded).
    assert queued(back).properties == back.properties


def test_rows_queued_before_the_text_form_are_still_read():
    values = to_wire(Message(kind=Kind.PAGE, anonymous_id="a-1", occurred_at=NOW))
    field = WIRE_FIELDS.index
    values[field("properties")] = {"title": "Shop"}
    values[field("context")] = {"page": {"url": "https://shop.example/"}}
    values[field("occurred_at")] = NOW.isoformat()
    old = from_wire(jsontext.loads(jsontext.dumps(values)), received_at=NOW)
    assert old.properties == {"title": "Shop"}
    assert json_text(old.properties) == '{"title":"Shop"}'
    assert _landing(old.context) == {"page": {"url": "https://shop.example/"}}


def test_a_new_session_reads_its_landing_page_from_the_text():
    context = {"page": {"url": "https://shop.example/"}, "ip": "10.0.0.1", "library": {"name": "x"}}
    raw = queued(Message(kind=Kind.TRACK, event="e", anonymous_id="a-1", context=context, occurred_at=NOW)).context
    assert _landing(raw) == {"page": {"url": "https://shop.example/"}, "ip": "10.0.0.1"}
