"""Raptor's server-side tracking call (../shared/seeds/raptor-server-side-tracking.txt)
end to end: the document's URLs, with its placeholders filled in, sent to a live server
(only the host and the customer id change), then the people, identities and events read
back through the management API."""

from __future__ import annotations

import base64
import struct
import uuid

import pytest

from tests.contract.live import events, identities, stored_counts
from tests.contract.seed_examples import RAPTOR_ITEM_CLICK as ITEM_CLICK_URL
from tests.contract.seed_examples import RAPTOR_TRACKING as TRACKING_URL
from tracking.ingest import raptor

pytestmark = pytest.mark.django_db(transaction=True)

MAPPING = {"p1": "event_type", "p2": "product_id", "p3": "category_id", "p7": "user_id"}
EMAIL = "unicorn@example.com"


@pytest.fixture
def mapped_site(site):
    site.raptor_mapping = MAPPING
    site.save()
    return site


def fill(url: str, customer: str, *, root: bool = False, **values: str) -> str:
    """The document's URL as a site would send it, placeholders replaced: its tracking
    host becomes ours at /t/ (or, for a tracking host of its own, at the root)."""
    path = url.split("t.raptorsmartadvisor.com", 1)[1]
    path = (path if root else "/t" + path).replace("[customerid]", customer)
    for name, value in values.items():
        path = path.replace(f"[{name}]", value)
    assert "[" not in path, path
    return path


def ids(**extra: str) -> dict[str, str]:
    return {
        "cookieId": str(uuid.uuid4()),
        "sessionId": str(uuid.uuid4()),
        "base64UserId": base64.b64encode(EMAIL.encode()).decode(),
        **extra,
    }


def is_transparent_pixel(body: bytes) -> bool:
    width, height = struct.unpack("<HH", body[6:10])
    transparent_flag = body[body.index(b"\x21\xf9\x04") + 3] & 1
    return body[:6] == b"GIF89a" and (width, height) == (1, 1) and transparent_flag == 1 and body.endswith(b";")


def test_the_tracking_url_records_the_event_and_answers_a_transparent_pixel(live, mapped_site):
    values = ids(p1="productview", p2="12345", p999="summer-sale")
    reply = live.get(fill(TRACKING_URL, mapped_site.primary_write_key().key, **values))

    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "image/gif"
    assert is_transparent_pixel(reply.body)
    assert "no-cache" in reply.headers["cache-control"] and "no-store" in reply.headers["cache-control"]
    person = live.person_by(values["cookieId"])
    assert person["is_identified"] is True
    assert identities(person) == {("cookie", values["cookieId"]), ("user", EMAIL)}
    assert live.person_by(EMAIL)["id"] == person["id"]
    [viewed] = events(person)
    assert viewed["type"] == "productview"
    # p2 is mapped to product_id; p999 has no mapping and keeps its name.
    assert viewed["properties"] == {"product_id": "12345", "p999": "summer-sale"}
    assert person["session_count"] == 1


def test_the_item_click_example_keeps_the_recommendation_module(live, mapped_site):
    values = ids(p999="x", GetSimilarItems="GetSimilarItems")
    reply = live.get(fill(ITEM_CLICK_URL, mapped_site.primary_write_key().key, **values))

    assert reply.status == 200, reply.text
    [click] = events(live.person_by(values["cookieId"]))
    assert click["type"] == "itemclick"
    assert click["properties"] == {"product_id": "12345", "p999": "x"}
    assert click["context"]["recommendation_module"] == "GetSimilarItems"


def test_the_customer_id_may_be_the_site_id(live, mapped_site):
    values = ids(p1="visit", p2="1", p999="y")
    reply = live.get(fill(TRACKING_URL, str(mapped_site.pk), **values))
    assert reply.status == 200, reply.text
    assert events(live.person_by(values["cookieId"]))[0]["type"] == "visit"


def test_a_tracking_host_of_its_own_takes_raptors_urls_unchanged(live, mapped_site):
    values = ids(p1="visit", p2="1", p999="y")
    reply = live.get(fill(TRACKING_URL, mapped_site.primary_write_key().key, root=True, **values))
    assert reply.status == 200, reply.text
    assert reply.headers["content-type"] == "image/gif"
    assert events(live.person_by(values["cookieId"]))[0]["type"] == "visit"


def test_one_cookie_is_one_person_who_is_identified_when_ruid_arrives(live, mapped_site):
    key, cookie, session = mapped_site.primary_write_key().key, str(uuid.uuid4()), str(uuid.uuid4())
    first = live.get(f"/t/{key}.rsa?p1=visit&coid={cookie}&sid={session}")
    assert first.status == 200, first.text
    assert live.person_by(cookie)["is_identified"] is False

    ruid = base64.b64encode(b"dave@example.com").decode()
    live.get(f"/t/{key}.rsa?p1=basket&p2=777&coid={cookie}&sid={session}&ruid={ruid}")

    dave = live.person_by("dave@example.com")
    assert dave["id"] == live.person_by(cookie)["id"]
    assert dave["is_identified"] is True
    assert [e["type"] for e in events(dave)] == ["visit", "basket"]
    assert dave["session_count"] == 1


def test_a_signed_in_shopper_who_gets_a_ruid_stays_one_person(live, mapped_site):
    key = mapped_site.primary_write_key().key
    assert live.get(f"/t/{key}.rsa?p1=visit&p7=login-7&coid=c-7&sid=s-7").status == 200
    ruid = base64.b64encode(b"dave@example.com").decode()
    assert live.get(f"/t/{key}.rsa?p1=buy&p7=login-7&coid=c-7&sid=s-7&ruid={ruid}").status == 200

    # ruid is the user id and the mapped one a second user id of the same person.
    dave = live.person_by("dave@example.com")
    assert dave["id"] == live.person_by("login-7")["id"] == live.person_by("c-7")["id"]
    assert identities(dave) == {("cookie", "c-7"), ("user", "login-7"), ("user", "dave@example.com")}
    assert [e["type"] for e in events(dave)] == ["visit", "buy"]


def test_a_cookies_history_joins_a_known_user_when_their_ruid_arrives(live, mapped_site):
    key = mapped_site.primary_write_key().key
    ruid = base64.b64encode(b"erin@example.com").decode()
    # Erin is known from another device; on this one she browses before signing up.
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c-desk&sid=s-desk&ruid={ruid}").status == 200
    assert live.get(f"/t/{key}.rsa?p1=visit&p2=9&coid=c-phone&sid=s-phone").status == 200
    assert live.get(f"/t/{key}.rsa?p1=basket&p2=9&coid=c-phone&sid=s-phone&ruid={ruid}").status == 200

    erin = live.person_by("erin@example.com")
    assert live.person_by("c-phone")["id"] == live.person_by("c-desk")["id"] == erin["id"]
    assert [e["type"] for e in events(erin)] == ["visit", "visit", "basket"]


def test_a_cookie_of_someone_else_is_not_merged_into_a_ruid(live, mapped_site):
    key = mapped_site.primary_write_key().key
    ann, bob = (base64.b64encode(e).decode() for e in (b"ann@example.com", b"bob@example.com"))
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c-shared&sid=s-1&ruid={ann}").status == 200
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c-bob&sid=s-2&ruid={bob}").status == 200
    # Bob signs in on Ann's computer: a switch, not a merge of two people.
    assert live.get(f"/t/{key}.rsa?p1=basket&coid=c-shared&sid=s-3&ruid={bob}").status == 200
    assert live.person_by("ann@example.com")["id"] != live.person_by("bob@example.com")["id"]
    assert live.person_by("c-shared")["id"] == live.person_by("ann@example.com")["id"]


def test_all_999_parameters_are_taken(live, mapped_site):
    params = "&".join(f"p{n}=v{n}" for n in range(1, 1000))
    reply = live.get(f"/t/{mapped_site.primary_write_key().key}.rsa?{params}&coid=c-all&sid=s-all")
    assert reply.status == 200, reply.text
    [event] = events(live.person_by("c-all"))
    assert event["type"] == "v1"
    assert len(event["properties"]) == 997  # p1 is the event type, p7 the user id
    assert (event["properties"]["product_id"], event["properties"]["p999"]) == ("v2", "v999")


def test_reaid_and_xuid_are_external_identities(live, mapped_site):
    key = mapped_site.primary_write_key().key
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c-1&sid=s-1&reaid=REA-42&ruid={base64.b64encode(b'u1').decode()}").status == 200
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c-2&sid=s-2&xuid=HL-7").status == 200

    assert identities(live.person_by("REA-42")) == {("cookie", "c-1"), ("external", "REA-42"), ("user", "u1")}
    assert identities(live.person_by("HL-7")) == {("cookie", "c-2"), ("external", "HL-7")}


def test_a_site_without_a_mapping_reads_p1_as_event_type_and_p7_as_user_id(live, site):
    assert site.raptor_mapping == {}
    key = site.primary_write_key().key
    reply = live.get(f"/t/{key}.rsa?p1=visit&p2=12345&p7=customer-9&coid=c-9&sid=s-9")
    assert reply.status == 200, reply.text
    person = live.person_by("customer-9")
    assert identities(person) == {("cookie", "c-9"), ("user", "customer-9")}
    assert events(person)[0]["properties"] == {"p2": "12345"}
    assert raptor.DEFAULT_MAPPING == {"p1": "event_type", "p7": "user_id"}


def test_the_documents_p7_is_the_user_id_whatever_the_case_of_the_parameter_names(live, site):
    # "if the user is logged in, set the UserId parameter (P7)": a site that wrote P7 (or
    # P1) as the document spells it is read as one that wrote p7.
    key = site.primary_write_key().key
    reply = live.get(f"/t/{key}.rsa?P1=visit&P2=12345&P7=customer-7&COID=c-7&SID=s-7")
    assert reply.status == 200, reply.text
    person = live.person_by("customer-7")
    assert identities(person) == {("cookie", "c-7"), ("user", "customer-7")}
    [visit] = events(person)
    assert (visit["type"], visit["properties"]) == ("visit", {"p2": "12345"})
    assert "params" not in visit["context"]
    # Both spellings at once are the same parameter given twice.
    before = stored_counts()
    twice = live.get(f"/t/{key}.rsa?p1=visit&P1=basket&coid=c-7&sid=s-7")
    assert twice.status == 400 and twice.json()["errors"][0]["field"] == "p1"
    assert stored_counts() == before


# --- refusals: a 400 (or 401) naming the parameter, nothing stored --------------------


def test_a_call_with_a_mapped_message_id_is_stored_once_however_often_it_is_retried(live, mapped_site):
    mapped_site.raptor_mapping = {**MAPPING, "p9": "message_id"}
    mapped_site.save()
    key = mapped_site.primary_write_key().key
    cookie = str(uuid.uuid4())
    for query in ("p1=basket&p2=1&p9=call-1", "p1=basket&p2=1&p9=call-1", "p1=basket&p2=1&p9=call-2"):
        reply = live.get(f"/t/{key}.rsa?{query}&coid={cookie}&sid=s-1")
        assert reply.status == 200, reply.text
    person = live.person_by(cookie)
    assert [(e["type"], e["properties"]) for e in events(person)] == [("basket", {"product_id": "1"})] * 2
    too_long = live.get(f"/t/{key}.rsa?p1=basket&p9={'x' * 256}&coid={cookie}&sid=s-1")
    assert too_long.status == 400 and too_long.json()["errors"][0]["field"] == "p9"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("p1=visit&coid=c&sid=s&ruid=not*base64", "ruid"),
        ("p1=visit&coid=c&sid=s&ruid=%2F%2F8%3D", "ruid"),  # base64 of bytes that are not UTF-8
        ("p1=visit&coid=c&sid=s&xuid=HL-1&reaid=R-1", "xuid"),
        ("p1=visit&coid=c&sid=s&xuid=HL-1&ruid=dTE%3D", "xuid"),
        ("p2=12345&coid=c&sid=s", "p1"),
        ("p1=&coid=c&sid=s", "p1"),
        ("p1=visit&sid=s", "coid"),
        ("p1=visit&coid=c", "sid"),
        ("p1=visit&coid=undefined&sid=s", "coid"),
        ("p1=visit&p1=basket&coid=c&sid=s", "p1"),
    ],
)
def test_it_refuses_bad_calls_naming_the_parameter(live, mapped_site, query, field):
    before = stored_counts()
    reply = live.get(f"/t/{mapped_site.primary_write_key().key}.rsa?{query}")
    assert reply.status == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["errors"][0]["field"] == field
    assert reply.json()["message"].startswith(field)
    assert stored_counts() == before


def test_an_unknown_site_or_key_is_refused(live, mapped_site):
    before = stored_counts()
    mapped_site.write_keys.get().revoke()
    for customer in ("wk_nobody", "999999", mapped_site.write_keys.get().key, str(mapped_site.pk)):
        reply = live.get(f"/t/{customer}.rsa?p1=visit&coid=c&sid=s")
        assert reply.status == 401, (customer, reply.text)
        assert reply.json()["errors"][0]["field"] == "customerid"
    assert stored_counts() == before


def test_secure_mode_refuses_an_unsigned_ruid(live, mapped_site):
    mapped_site.only_signed_data = True
    mapped_site.save()
    before = stored_counts()
    key = mapped_site.primary_write_key().key
    reply = live.get(f"/t/{key}.rsa?p1=visit&coid=c&sid=s&ruid={base64.b64encode(b'u1').decode()}")
    assert reply.status == 401
    assert reply.json()["errors"][0]["field"] == "ruid"
    assert stored_counts() == before
    assert live.get(f"/t/{key}.rsa?p1=visit&coid=c&sid=s").status == 200  # anonymous is fine
