"""Group commit (tracking.ingest.coalesce): concurrent requests of one worker share an
``ingest_batch`` call, and each still gets its own answer."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request

import pytest
from django.db import connection

from tests.messages import identify, track
from tracking.ingest import coalesce
from tracking.ingest.coalesce import Coalescer
from tracking.ingest.core import ingest_batch
from tracking.ingest.schema import RequestRejected
from tracking.models import Event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def calls(monkeypatch, settings):
    """Long window, so the threads of a test surely meet; records every ingest_batch call."""
    settings.INGEST_COALESCE_MS = 2000
    seen: list[tuple[int, bool]] = []

    def spy(site, messages, **kw):
        seen.append((len(messages), kw.get("strict", False)))
        return ingest_batch(site, messages, **kw)

    monkeypatch.setattr(coalesce, "ingest_batch", spy)
    return seen


def concurrently(coalescer: Coalescer, site, requests: list[dict]) -> list:
    """Each request (``messages``, optional ``strict``) from its own thread, all at once;
    the answers (IngestResult or the exception) in request order."""
    answers: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def run(i: int, request: dict) -> None:
        try:
            messages = request["messages"]
            for index, m in enumerate(messages):
                m.index = index
            with coalescer.arriving():
                barrier.wait()
                answers[i] = coalescer.ingest(
                    site, messages, actor="write key test", strict=request.get("strict", False)
                )
        except BaseException as exc:
            answers[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def test_concurrent_requests_share_one_call_and_get_their_own_answers(site, calls):
    requests = [
        [track(user="u-a"), track(anon="a-a")],
        [track(user="u-b")],
        [track(user="u-c"), track(user="u-c"), track(anon="a-c")],
    ]
    answers = concurrently(Coalescer(), site, [{"messages": r} for r in requests])
    assert calls == [(6, False)]
    a, b, c = answers
    assert a.accepted == [0, 1] and b.accepted == [0] and c.accepted == [0, 1, 2]
    assert a.errors == b.errors == c.errors == []
    assert c.profile_ids[0] == c.profile_ids[1]
    assert len({a.profile_ids[0], a.profile_ids[1], b.profile_ids[0], c.profile_ids[0], c.profile_ids[2]}) == 5
    # Every message stored under the profile its own request was told, indexes restored.
    stored = dict(Event.objects.filter(site=site, message_id__isnull=False).values_list("message_id", "profile_id"))
    assert len(stored) == 6
    for messages, answer in zip(requests, answers, strict=True):
        assert [m.index for m in messages] == list(range(len(messages)))
        assert {i: stored[m.message_id] for i, m in enumerate(messages)} == answer.profile_ids


def test_an_invalid_message_in_one_request_does_not_affect_another(site, calls):
    bad = track(user="u-x")
    bad.event = ""  # invalid: a track needs an event name
    answers = concurrently(
        Coalescer(),
        site,
        [{"messages": [track(user="u-x"), bad]}, {"messages": [track(user="u-y")]}],
    )
    first, second = answers
    assert calls == [(3, False)]
    assert first.accepted == [0] and [(e.index, e.field) for e in first.errors] == [(1, "event")]
    assert second.accepted == [0] and second.errors == []
    assert set(second.profile_ids) == {0}


def test_a_strict_request_runs_alone(site, calls):
    bad = track(user="u-s")
    bad.event = ""
    answers = concurrently(
        Coalescer(),
        site,
        [{"messages": [track(user="u-s"), bad], "strict": True}, {"messages": [track(user="u-t")]}],
    )
    strict, other = answers
    assert isinstance(strict, RequestRejected) and strict.status == 400
    assert other.accepted == [0]
    assert (2, True) in calls and (1, False) in calls
    assert not Event.objects.filter(site=site, profile__identities__key="u-s").exists()


def test_a_refused_signature_does_not_reject_the_others(site, calls):
    site.only_signed_data = True
    site.save(update_fields=["only_signed_data"])
    answers = concurrently(
        Coalescer(),
        site,
        [
            {"messages": [track(user="u-unsigned")]},
            {"messages": [track(anon="a-1")]},
            {"messages": [track(anon="a-2")]},
        ],
    )
    refused, one, two = answers
    assert isinstance(refused, RequestRejected) and refused.status == 401
    assert one.accepted == [0] and two.accepted == [0]
    assert (2, False) in calls  # the two others still shared a call


def test_when_the_combined_call_fails_each_request_runs_alone(site, monkeypatch, settings):
    settings.INGEST_COALESCE_MS = 2000
    seen: list[int] = []

    def flaky(s, messages, **kw):
        seen.append(len(messages))
        if len(messages) > 1:
            raise RuntimeError("the combined call failed")
        return ingest_batch(s, messages, **kw)

    monkeypatch.setattr(coalesce, "ingest_batch", flaky)
    answers = concurrently(
        Coalescer(), site, [{"messages": [track(user="u-f1")]}, {"messages": [track(user="u-f2")]}]
    )
    assert seen == [2, 1, 1]
    assert [a.accepted for a in answers] == [[0], [0]]
    assert answers[0].profile_ids[0] != answers[1].profile_ids[0]


def test_concurrent_retries_are_stored_exactly_once(site, calls):
    def retry() -> list:
        return [track(anon="a-retry", message_id="dup-1"), identify("u-retry", message_id="dup-2")]

    answers = concurrently(Coalescer(), site, [{"messages": retry()} for _ in range(4)])
    assert all(not isinstance(a, BaseException) for a in answers), answers
    for index in (0, 1):
        assert sum(index in a.accepted for a in answers) == 1
        assert sum(index in a.duplicates for a in answers) == 3
        assert len({a.profile_ids[index] for a in answers}) == 1
    assert Event.objects.filter(site=site, message_id__in=["dup-1", "dup-2"]).count() == 2
    # And once more, now that they are stored: all duplicates, same profiles.
    again = concurrently(Coalescer(), site, [{"messages": retry()} for _ in range(3)])
    assert all(a.duplicates == [0, 1] and a.accepted == [] for a in again)
    assert {a.profile_ids[0] for a in again} == {answers[0].profile_ids[0]}
    assert Event.objects.filter(site=site, message_id__in=["dup-1", "dup-2"]).count() == 2


def test_with_the_window_at_zero_every_request_is_its_own_call(site, calls, settings):
    settings.INGEST_COALESCE_MS = 0
    answers = concurrently(
        Coalescer(), site, [{"messages": [track(user=f"u-z{i}")]} for i in range(3)]
    )
    assert calls == [(1, False)] * 3
    assert [a.accepted for a in answers] == [[0], [0], [0]]


def test_a_lone_request_does_not_wait(site, calls):
    coalescer = Coalescer()
    with coalescer.arriving():
        result = coalescer.ingest(site, [track(user="u-lone")], actor="write key test")
    assert result.accepted == [0] and calls == [(1, False)]


def test_concurrent_http_requests_each_get_their_own_answer(live_server, site, settings):
    settings.INGEST_COALESCE_MS = 50
    key = site.primary_write_key().key
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    answers: list = [None] * 6
    barrier = threading.Barrier(6)

    def post(i: int) -> None:
        batch = [{"type": "track", "event": "Viewed", "userId": f"u-http-{i}", "messageId": f"h-{i}"}]
        if i % 2:
            batch.append({"type": "track", "userId": f"u-http-{i}"})  # no event: invalid
        request = urllib.request.Request(
            f"{live_server.url}/v1/batch",
            data=json.dumps({"batch": batch}).encode(),
            headers={"Content-Type": "application/json", "Authorization": auth},
        )
        barrier.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers[i] = (response.status, json.load(response))
        except urllib.error.HTTPError as exc:
            answers[i] = (exc.code, json.load(exc))

    threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    profiles = set()
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        assert len(body["profile_ids"]) == 1
        profiles.add(body["profile_ids"][0])
        assert [(e["index"], e["field"]) for e in body["errors"]] == ([(1, "event")] if i % 2 else [])
    assert len(profiles) == 6
    stored = dict(Event.objects.filter(site=site, message_id__startswith="h-").values_list("message_id", "profile_id"))
    assert {stored[f"h-{i}"] for i in range(6)} == profiles
