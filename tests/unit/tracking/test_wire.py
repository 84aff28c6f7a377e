"""What the compatible formats share: query strings, Unix times, storable values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tracking.ingest.schema import FieldError, MessageError
from tracking.ingest.wire import (
    MAX_QUERY_FIELDS,
    RequestRejected,
    check_storable,
    one,
    parse_query,
    rename_fields,
    unix_time,
)


def test_parse_query_keeps_repeats_blanks_and_decodes_utf8():
    assert parse_query("a=1&a=2&b=&c=%C3%A9t%C3%A9+x") == {"a": ["1", "2"], "b": [""], "c": ["été x"]}


def test_parse_query_refuses_bytes_that_are_not_utf8_and_floods():
    with pytest.raises(RequestRejected) as caught:
        parse_query("a=%FF")
    assert caught.value.status == 400
    assert parse_query("&".join(f"p{i}=x" for i in range(1, 1000)) + "&coid=c")["coid"] == ["c"]
    with pytest.raises(RequestRejected):
        parse_query("&".join(f"x{i}=1" for i in range(MAX_QUERY_FIELDS + 1)))


def test_one_trims_treats_empty_as_absent_and_refuses_repeats_and_nul():
    assert one({"a": [" x "]}, "a") == "x"
    assert one({"a": [" x "]}, "a", strip=False) == " x "
    assert one({"a": [""]}, "a") is None
    assert one({}, "a") is None
    for params in ({"a": ["1", "2"]}, {"a": ["x\x00"]}):
        with pytest.raises(RequestRejected) as caught:
            one(params, "a")
        assert caught.value.errors[0].field == "a"


def test_unix_time_reads_seconds_fractions_and_milliseconds():
    moment = datetime(2015, 4, 16, 12, 14, 34, tzinfo=UTC)
    assert unix_time("1429186474", "ts") == moment
    assert unix_time("1429186474000", "ts") == moment
    assert unix_time("1429186474.25", "ts") == moment.replace(microsecond=250000)
    for bad in ("", "x", "inf", "nan", "-1", "99999999999999999999"):
        with pytest.raises(RequestRejected):
            unix_time(bad, "ts")


def test_rename_fields_maps_whole_names_and_dotted_heads():
    errors = [FieldError(0, "userId", "r"), FieldError(0, "properties.price", "r"), FieldError(None, "other", "r")]
    assert [e.field for e in rename_fields(errors, {"userId": "id", "properties": "data"})] == [
        "id", "data.price", "other",
    ]


@pytest.mark.parametrize(
    ("value", "field"),
    [("a\x00", "x"), ({"k": ["ok", "\ud800"]}, "x.k[1]"), ({"k": float("nan")}, "x.k"), ({"k\x00": 1}, "x")],
)
def test_check_storable_names_what_postgresql_would_refuse(value, field):
    with pytest.raises(MessageError) as caught:
        check_storable(value, "x")
    assert caught.value.field == field
