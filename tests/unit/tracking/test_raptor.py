"""The Raptor adapter: p1..p999 and ids to one message, and the mapping's rules."""

from __future__ import annotations

import base64

import pytest

from tracking.ingest import raptor
from tracking.ingest.schema import Kind, MessageError
from tracking.ingest.wire import RequestRejected, parse_query

MAPPING = {"p1": "event_type", "p2": "product_id", "p3": "category_id", "p7": "user_id"}


def b64(text: str, *, urlsafe: bool = False) -> str:
    raw = text.encode()
    return (base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)).decode()


def parse(query: str, mapping=MAPPING, **kw):
    return raptor.parse(parse_query(query), mapping, **kw)


def refused(query: str, field: str, mapping=MAPPING) -> RequestRejected:
    with pytest.raises(RequestRejected) as caught:
        parse(query, mapping)
    assert caught.value.status == 400
    assert caught.value.errors[0].field == field, caught.value.errors
    return caught.value


def test_mapped_parameters_become_fields_and_the_rest_keep_their_names():
    message = parse(
        f"p1=itemclick&p2=12345&p3=&p999=summer&coid=c-1&sid=s-1&ruid={b64('unicorn@example.com')}"
        "&am=GetSimilarItems&_=1712",
        request_context={"ip": "10.0.0.1"},
    )
    assert (message.kind, message.event) == (Kind.TRACK, "itemclick")
    assert message.user_id == "unicorn@example.com"
    assert message.session_id == "s-1"
    assert message.identities == [("cookie", "c-1")]
    # p3 is empty (absent); p999 has no mapping.
    assert message.properties == {"product_id": "12345", "p999": "summer"}
    assert message.context == {"ip": "10.0.0.1", "recommendation_module": "GetSimilarItems", "params": {"_": "1712"}}


def test_without_a_mapping_p1_is_the_event_type_and_p7_the_user_id():
    message = parse("p1=visit&p2=x&p7=customer-9&coid=c&sid=s", mapping={})
    assert (message.event, message.user_id, message.properties) == ("visit", "customer-9", {"p2": "x"})


def test_reaid_and_xuid_are_external_identities():
    assert parse("p1=v&coid=c&sid=s&reaid=R-1").identities == [("cookie", "c"), ("external", "R-1")]
    assert parse("p1=v&coid=c&sid=s&xuid=HL-1").identities == [("cookie", "c"), ("external", "HL-1")]


def test_a_mapped_user_id_that_differs_from_ruid_is_kept_as_a_second_user_identity():
    message = parse(f"p1=v&p7=login-7&coid=c&sid=s&ruid={b64('dave@example.com')}")
    assert message.user_id == "dave@example.com"
    assert ("user", "login-7") in message.identities
    same = parse(f"p1=v&p7=dave@example.com&coid=c&sid=s&ruid={b64('dave@example.com')}")
    assert same.identities == [("cookie", "c")]


@pytest.mark.parametrize(
    "encoded",
    [
        b64("jens+shop@example.com"),
        b64("jens+shop@example.com", urlsafe=True),
        b64("jens+shop@example.com").rstrip("="),
    ],
)
def test_ruid_is_base64_in_any_common_spelling(encoded):
    assert raptor.decode_ruid(encoded) == "jens+shop@example.com"


def test_a_plus_that_arrived_as_a_space_is_put_back():
    encoded = b64("??>")  # "Pz8+": has a '+'
    assert "+" in encoded
    assert parse(f"p1=v&coid=c&sid=s&ruid={encoded}").user_id == "??>"  # '+' unescaped: a space


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("p1=v&coid=c&sid=s&ruid=*", "ruid"),
        ("p1=v&coid=c&sid=s&ruid=abcde", "ruid"),
        (f"p1=v&coid=c&sid=s&ruid={base64.b64encode(bytes([255, 254])).decode()}", "ruid"),
        (f"p1=v&coid=c&sid=s&ruid={b64('undefined')}", "ruid"),
        (f"p1=v&coid=c&sid=s&ruid={b64('a' + chr(0) + 'b')}", "ruid"),
        ("p1=v&coid=c&sid=s&xuid=H&reaid=R", "xuid"),
        (f"p1=v&coid=c&sid=s&xuid=H&ruid={b64('u')}", "xuid"),
        ("p2=x&coid=c&sid=s", "p1"),
        ("p1=v&sid=s", "coid"),
        ("p1=v&coid=c", "sid"),
        ("p1=v&coid=null&sid=s", "coid"),
        ("p1=v&coid=c&sid=s&p7=undefined", "p7"),
        ("p1=v&p1=w&coid=c&sid=s", "p1"),
        ("p1=v&coid=c&sid=s&am=a&am=b", "am"),
        # Other parameters are kept in the context: a NUL there made the COPY fail (500).
        ("p1=v&coid=c&sid=s&cb=%00", "cb"),
        ("p1=v&coid=c&sid=s&cb=1&cb=a%00", "cb"),
        ("p1=v&coid=c&sid=s&c%00b=1", "query string"),
    ],
)
def test_it_refuses_bad_parameters_naming_them(query, field):
    refused(query, field)


def test_a_missing_event_names_the_parameter_the_site_mapped_to_it():
    refused("p1=x&coid=c&sid=s", "p4", mapping={"p4": "event_type"})
    error = refused("p1=x&coid=c&sid=s", "event_type", mapping={"p2": "product_id"})
    assert "no parameter is mapped to event_type" in error.message


def test_clean_mapping_normalises_and_sorts_by_number():
    assert raptor.clean_mapping({"P10": " price ", "p2": "product_id", "p1": "event_type"}) == {
        "p1": "event_type", "p2": "product_id", "p10": "price",
    }
    assert raptor.clean_mapping({}) == {}
    assert raptor.clean_mapping(None) == {}


@pytest.mark.parametrize(
    ("mapping", "field"),
    [
        (["p1"], "raptor_mapping"),
        ({"p0": "event_type"}, "p0"),
        ({"p1000": "event_type"}, "p1000"),
        ({"q1": "event_type"}, "q1"),
        ({"p1": "event_type", "P1": "price"}, "p1"),
        ({"p1": "event_type", "p2": "bad name"}, "p2"),
        ({"p1": "event_type", "p2": 5}, "p2"),
        ({"p1": "event_type", "p2": "event_type"}, "p2"),
        ({"p2": "product_id"}, "event_type"),
    ],
)
def test_clean_mapping_refuses_naming_the_parameter(mapping, field):
    with pytest.raises(MessageError) as caught:
        raptor.clean_mapping(mapping)
    assert caught.value.field == field


def test_a_stored_mapping_is_used_as_it_is_skipping_what_names_no_parameter():
    assert raptor.effective_mapping({"p1": "event_type", "x": "y", "p2": 3, "P3": "price"}) == {
        "p1": "event_type", "p3": "price",
    }
    assert raptor.effective_mapping(None) == raptor.DEFAULT_MAPPING
    assert raptor.effective_mapping([]) == raptor.DEFAULT_MAPPING
