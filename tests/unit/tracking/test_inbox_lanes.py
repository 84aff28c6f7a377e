"""tracking.inbox.lanes: which drain lane each queued message goes to. Messages that share
an id within a request share a lane (the identity rules must see them in order), a
person keeps their lane from request to request, and every process agrees."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from tests.messages import identify, track
from tracking.inbox import lanes
from tracking.ingest.schema import Kind, Message


def test_one_drain_means_one_lane():
    messages = [track(anon=f"a-{i}") for i in range(20)]
    assert lanes(messages, 1) == [0] * 20


def test_a_visitor_their_identify_and_their_later_events_share_a_lane_across_requests():
    lane = lanes([track(anon="visitor-1")], 8)[0]
    assert lanes([identify("user-1", anon="visitor-1")], 8) == [lane]
    assert lanes([track(user="user-1", anon="visitor-1")], 8) == [lane]
    # A request mixing them keeps them together, whatever order they come in.
    mixed = [track(user="user-1"), identify("user-1", anon="visitor-1"), track(anon="visitor-1")]
    assert lanes(mixed, 8) == [lane] * 3


def known_person_lane(pid: int, count: int) -> int:
    return zlib.crc32(f"profile:{pid}".encode()) % count


def test_a_known_persons_calls_share_their_profiles_lane_whichever_id_they_carry():
    # The visitor "visitor-1" was merged into user-1's profile 42: both ids name it now.
    known = {("user", "user-1"): (42, True), ("anonymous", "visitor-1"): (42, True), ("anonymous", "laptop"): (42, True)}
    calls = [track(user="user-1"), track(anon="visitor-1"), track(user="user-1", anon="laptop"), identify("user-1", anon="visitor-1")]
    lane = known_person_lane(42, 16)
    assert [lanes([call], 16, known) for call in calls] == [[lane]] * 4
    assert lanes(calls, 16, known) == [lane] * 4


def test_a_new_visitors_identify_stays_in_the_visitors_lane_until_they_are_stored():
    # user-1 is known, the visitor is not: the merge goes where the visitor's own queued
    # calls go (their anonymous id's lane), not to user-1's profile's lane.
    known = {("user", "user-1"): (42, True)}
    lane = lanes([track(anon="visitor-9")], 64, known)[0]
    assert lane == zlib.crc32(b"anonymous:visitor-9") % 64
    assert lanes([identify("user-1", anon="visitor-9")], 64, known) == [lane]
    assert lanes([track(user="user-1")], 64, known) == [known_person_lane(42, 64)]


def test_profiles_spread_over_the_lanes_even_when_their_ids_do_not():
    # Profile ids with structure (every other one, say) must not pile into one lane.
    known = {("user", f"u-{i}"): (2 * i, True) for i in range(1, 401)}
    counts = [0] * 4
    for lane in lanes([track(user=f"u-{i}") for i in range(1, 401)], 4, known):
        counts[lane] += 1
    assert all(60 <= c <= 140 for c in counts), counts


def test_people_spread_over_the_lanes():
    counts = [0] * 4
    for lane in lanes([track(anon=f"a-{i}") for i in range(400)], 4):
        counts[lane] += 1
    assert all(60 <= c <= 140 for c in counts), counts


def test_lanes_are_the_same_in_every_process():
    # crc32 of the ranked id (the anonymous id first), not Python's hash(), which is
    # salted per process: web processes and drains must agree.
    got = lanes([track(user="u-9", anon="visitor-1"), track(user="u-8")], 1024)
    assert got == [zlib.crc32(b"anonymous:visitor-1") % 1024, zlib.crc32(b"user:u-8") % 1024]


ids = st.sampled_from([f"a-{i}" for i in range(6)] + [None])
users = st.sampled_from([f"u-{i}" for i in range(4)] + [None])


@st.composite
def requests(draw):
    out = []
    for index in range(draw(st.integers(1, 12))):
        anon, user = draw(ids), draw(users)
        kind = draw(st.sampled_from([Kind.TRACK, Kind.IDENTIFY]))
        if kind is Kind.IDENTIFY and user is None:
            kind = Kind.TRACK
        out.append(Message(kind=kind, user_id=user, anonymous_id=anon, index=index))
    return out


@given(requests(), st.integers(2, 5))
def test_messages_sharing_an_id_share_a_lane(messages, count):
    got = lanes(messages, count)
    assert all(0 <= lane < count for lane in got)
    for i, a in enumerate(messages):
        for j, b in enumerate(messages):
            shared = {a.user_id, a.anonymous_id} & {b.user_id, b.anonymous_id} - {None}
            if shared:
                assert got[i] == got[j]
