"""The admin's "How to call each format" examples are ready to use: each one, copied as
shown, works against a live server."""

from __future__ import annotations

import base64
import json
import re

import pytest

from tests.contract.live import events, identities
from tracking.format_examples import SAMPLE_ANONYMOUS, SAMPLE_COOKIE, SAMPLE_USER, format_examples

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=[False, True], ids=["open", "only-signed"])
def examples(request, live, site):
    site.only_signed_data = request.param
    site.raptor_mapping = {"p1": "event_type", "p2": "product_id", "p7": "user_id"}
    site.save()
    return {e.title: e for e in format_examples(site, base_url=live.base_url)}


def calls(code: str) -> list[str]:
    """The example's lines to send: comments and blank lines are for people."""
    return [line for line in code.splitlines() if line and not line.startswith("#")]


def test_the_segment_example_works(live, examples):
    code = examples["Segment HTTP API"].code
    key = re.search(r"curl -u '([^:]+):'", code).group(1)
    body = re.search(r"-d '(.+)'", code).group(1)
    url = code.split()[-1]
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    reply = live.request("POST", url, body=body.encode(), headers={"Authorization": auth, "Content-Type": "application/json"})
    assert reply.status == 200, reply.text
    assert events(live.person_by(SAMPLE_USER))[0]["type"] == "Order Completed"


def test_the_tracardi_example_works(live, examples):
    head, body = examples["Tracardi"].code.split("\n\n", 1)
    url = head.splitlines()[0].removeprefix("POST ")
    reply = live.post_json(url, json.loads(body))
    assert reply.status == 200, reply.text
    assert events(live.person(reply.json()["profile"]["id"]))[0]["type"] == "page-view"


def test_the_tracktor_examples_work_in_order(live, examples):
    for url in calls(examples["Tracktor.io"].code):
        reply = live.get(url)
        assert reply.status == 200, (url, reply.text)
    person = live.person_by(SAMPLE_USER)
    assert person["properties"] == {"billing_plan": "Gold"}
    assert identities(person) == {("user", SAMPLE_USER), ("anonymous", SAMPLE_ANONYMOUS)}
    assert [e["type"] for e in events(person)] == [
        "set-properties", "rated item", "Visited pricing", "alias", "set-cart",
    ]


def test_the_raptor_examples_work(live, examples, site):
    urls = calls(examples["Raptor"].code)
    assert len(urls) == 2
    for url in urls:
        reply = live.get(url)
        assert reply.status == 200, (url, reply.text)
        assert reply.headers["content-type"] == "image/gif"
    clicks = events(live.person_by(SAMPLE_COOKIE))
    assert [c["type"] for c in clicks] == ["itemclick", "itemclick"]
    assert live.person_by(SAMPLE_COOKIE)["is_identified"] is not site.only_signed_data
    assert clicks[0]["properties"] == {"product_id": "12345"}
    assert clicks[0]["context"]["recommendation_module"] == "GetSimilarItems"
