"""tracking.jsontext reads and writes JSON exactly as the standard library does, only
faster: orjson where it agrees, the standard library where it would not."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracking import jsontext

# JSON values as a client may send them: integers far past 64 bits, floats, any text.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@given(json_values)
def test_reads_what_the_standard_library_reads(value):
    text = json.dumps(value)
    assert jsontext.loads(text) == json.loads(text)
    assert jsontext.loads(text.encode()) == json.loads(text.encode())


@given(json_values)
def test_round_trips(value):
    assert jsontext.loads(jsontext.dumps(value)) == json.loads(json.dumps(value))


@pytest.mark.parametrize(
    "text",
    [
        "18446744073709551616",  # 2**64: orjson would read a float
        "-9223372036854775809",
        '{"id": 123456789012345678901234567890}',
        "[1, 9223372036854775807]",  # 19 digits that fit: either reader is exact
    ],
)
def test_integers_past_64_bits_stay_exact(text):
    value = jsontext.loads(text)
    assert value == json.loads(text)
    assert "." not in json.dumps(value) and "e" not in json.dumps(value)


def test_what_orjson_refuses_is_read_by_the_standard_library_with_its_options():
    assert jsontext.loads('"\\ud800"') == "\ud800"  # an unpaired surrogate
    with pytest.raises(ValueError, match="NaN"):
        jsontext.loads("[NaN]", parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads("{not json")


def test_queued_json_text_is_read_by_orjson(monkeypatch):
    # RawJSON (a str subclass, the inbox's queued properties and context) once fell back
    # to the standard library on every read: orjson refuses str subclasses.
    def refuse(*args, **kwargs):
        raise AssertionError("read by the standard library")

    monkeypatch.setattr(jsontext.json, "loads", refuse)
    assert jsontext.parsed(jsontext.RawJSON('{"page": {"path": "/p/1"}, "ip": "198.51.100.7"}')) == {
        "page": {"path": "/p/1"},
        "ip": "198.51.100.7",
    }
    assert jsontext.loads(jsontext.RawJSON("[1, 2]")) == [1, 2]


def test_too_deep_walks_only_what_orjson_cannot_write():
    assert not jsontext.too_deep({"a": [1] * 1000}, b"{" + b"[" * 1000)  # brackets, no depth
    deep = nested_value(255)
    assert jsontext.too_deep(deep, b"{" * 255)
    assert not jsontext.too_deep(nested_value(254), b"{" * 254)
    assert jsontext.too_deep({"big": 2**70, "deep": deep}, b"{" * 256)  # orjson refuses the integer
    assert not jsontext.too_deep({"big": 2**70, "deep": nested_value(253)}, b"{" * 256)


def nested_value(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value
