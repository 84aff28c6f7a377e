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
    return ((pid * 2654435761) % 2**32 // 2**16) % count


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


# --- the same lanes as a plain reference: pairs, a separate best-id pass -------------------

RANK = {"anonymous": 0, "cookie": 1, "email": 2, "external": 3, "user": 4, "profile": 5, "session": 6}


def reference_lanes(messages, count, known):
    """Components of messages sharing any id (a breadth-first walk); each takes the lane
    of its best id by (rank, kind, key): its profile's when known, else the id's own."""
    if count <= 1:
        return [0] * len(messages)

    def ids(m):
        found = [("user", m.user_id)] if m.user_id else []
        found += [("anonymous", m.anonymous_id)] if m.anonymous_id else []
        found += list(m.identities)
        found += [("profile", str(m.profile_id))] if m.profile_id else []
        found += [("session", m.session_id)] if m.session_id else []
        return found

    own = [set(ids(m)) for m in messages]
    component = list(range(len(messages)))
    changed = True
    while changed:
        changed = False
        for i in range(len(messages)):
            for j in range(len(messages)):
                if own[i] & own[j] and component[j] > component[i]:
                    component[j] = component[i]
                    changed = True
    out = []
    for i in range(len(messages)):
        members = set().union(*(own[j] for j in range(len(messages)) if component[j] == component[i]))
        if not members:
            out.append(0)
            continue
        _, kind, key = min((RANK.get(kind, 4), kind, key) for kind, key in members)
        pid = int(key) if kind == "profile" else known.get((kind, key), (0, False))[0]
        out.append(known_person_lane(pid, count) if pid > 0 else zlib.crc32(f"{kind}:{key}".encode()) % count)
    return out


def test_profiles_spread_over_the_lanes_even_when_their_ids_do_not():
    # Profile ids with structure (every other one, or the bench's 7 of every 20) must not
    # pile into some lanes, as they would by the id modulo the lanes.
    for ids in ([2 * i for i in range(1, 401)], [i for i in range(1, 1201) if i % 20 < 7]):
        known = {("user", f"u-{i}"): (pid, True) for i, pid in enumerate(ids)}
        for count in (2, 4):
            counts = [0] * count
            for lane in lanes([track(user=f"u-{i}") for i in range(len(ids))], count, known):
                counts[lane] += 1
            assert max(counts) - min(counts) <= len(ids) // 10, counts


@st.composite
def requests_with_everything(draw):
    out = []
    for index in range(draw(st.integers(1, 14))):
        identities = draw(st.lists(st.tuples(st.sampled_from(["email", "cookie", "external", "anonymous", "user"]),
                                             st.sampled_from(["x1", "x2", "a-1", "u-1"])), max_size=2))
        out.append(Message(
            kind=Kind.TRACK, index=index,
            user_id=draw(users), anonymous_id=draw(ids),
            identities=identities,
            profile_id=draw(st.none() | st.integers(1, 4)),
            session_id=draw(st.none() | st.sampled_from(["s-1", "s-2"])),
        ))
    known = draw(st.dictionaries(
        st.tuples(st.sampled_from(["user", "anonymous", "email"]), st.sampled_from(["u-0", "u-1", "a-1", "a-2", "x1"])),
        st.tuples(st.integers(1, 50), st.booleans()),
    ))
    return out, known


@given(requests_with_everything(), st.integers(1, 7))
def test_lanes_match_the_reference(request, count):
    messages, known = request
    assert lanes(messages, count, known) == reference_lanes(messages, count, known)
