"""profiles.identity.held_back: which messages of a drain's chunk wait for profiles
another transaction holds. A message waits when one of its ids names a held profile, and
so does every message linked to it by a shared id, session, profile id or profile: what
is stored now must touch nothing a waiting message touches, or the person's calls would
be played out of order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from profiles.identity import held_back
from tests.messages import group, identify, set_properties, track
from tracking.ingest.schema import Message


def numbered(*messages: Message) -> list[Message]:
    for index, m in enumerate(messages):
        m.index = index
    return list(messages)


def test_only_the_messages_of_a_held_profile_wait():
    messages = numbered(track(user="u-held"), track(user="u-free"), track(anon="a-new"))
    ident = {("user", "u-held"): 1, ("user", "u-free"): 2}
    assert held_back(messages, {1}, ident, {}, {}) == {0}


def test_a_visitor_signing_in_as_a_held_person_waits_with_the_visitors_later_calls():
    # The identify merges a-v into profile 1; the track after it must not be stored first.
    messages = numbered(identify("u-held", anon="a-v"), track(anon="a-v"), track(anon="a-other"))
    ident = {("user", "u-held"): 1, ("anonymous", "a-v"): 7}
    assert held_back(messages, {1}, ident, {}, {}) == {0, 1}


def test_calls_under_another_id_of_the_held_profile_wait_too():
    # u-held and its device a-laptop name one profile: a set under either must keep its
    # place, or an older trait could overwrite a newer one.
    messages = numbered(set_properties({"plan": "pro"}, user="u-held"), set_properties({"plan": "free"}, anon="a-laptop"))
    ident = {("user", "u-held"): 1, ("anonymous", "a-laptop"): 1}
    assert held_back(messages, {1}, ident, {}, {}) == {0, 1}


def test_a_message_linked_to_a_held_profile_through_another_profile_waits():
    # Message 0 touches profiles 1 (held) and 2; message 1 touches profile 2 only.
    messages = numbered(identify("u-held", anon="a-2"), track(user="u-two"))
    ident = {("user", "u-held"): 1, ("anonymous", "a-2"): 2, ("user", "u-two"): 2}
    assert held_back(messages, {1}, ident, {}, {}) == {0, 1}


def test_a_merged_profile_waits_for_its_held_target():
    messages = numbered(track(anon="a-old"), track(anon="a-free"))
    ident = {("anonymous", "a-old"): 5, ("anonymous", "a-free"): 6}
    assert held_back(messages, {9}, ident, {}, {5: 9}) == {0}


def test_sessions_profile_ids_and_reserved_ids_link_messages():
    a = track(anon="a-1", session_id="s-1")
    b = track(session_id="s-1")  # recovers the session's person
    c = track(profile_id=1)
    d = track(anon="a-new", reserved_profile_id=40)
    e = track(anon="a-newer", reserved_profile_id=40)
    messages = numbered(a, b, c, d, e)
    assert held_back(messages, {1}, {}, {"s-1": 1}, {}) == {0, 1, 2}
    assert held_back(messages, {40}, {}, {}, {}) == {3, 4}


def test_group_calls_of_a_held_company_wait_with_what_their_people_do_next():
    messages = numbered(
        group("acme", user="u-1"), track(user="u-1"), group("other", user="u-2"), group("acme", anon="a-3"),
        track(user="u-4"),
    )
    ident = {("user", "u-1"): 1, ("user", "u-2"): 2, ("user", "u-4"): 4}
    assert held_back(messages, set(), ident, {}, {}, busy_companies={"acme"}) == {0, 1, 3}


def test_nothing_waits_when_nothing_is_held():
    messages = numbered(track(user="u-1"), identify("u-1", anon="a-1"))
    assert held_back(messages, set(), {("user", "u-1"): 1}, {}, {}) == set()


# --- against a reference: a breadth-first walk over messages that share anything --------

KEYS = [f"k{i}" for i in range(8)]
PIDS = list(range(1, 7))
COMPANIES = ["c1", "c2"]


@st.composite
def chunks(draw):
    messages = []
    for _ in range(draw(st.integers(1, 12))):
        user = draw(st.none() | st.sampled_from(KEYS))
        anon = draw(st.none() | st.sampled_from(KEYS))
        session = draw(st.none() | st.sampled_from(["s1", "s2"]))
        profile = draw(st.none() | st.sampled_from(PIDS))
        company = draw(st.none() | st.sampled_from(COMPANIES))
        if company:
            messages.append(group(company, user=user, anon=anon, session_id=session, profile_id=profile))
        else:
            messages.append(track(user=user, anon=anon, session_id=session, profile_id=profile))
    ident = draw(st.dictionaries(st.tuples(st.sampled_from(["user", "anonymous"]), st.sampled_from(KEYS)), st.sampled_from(PIDS)))
    sessions = draw(st.dictionaries(st.sampled_from(["s1", "s2"]), st.sampled_from(PIDS)))
    parent = draw(st.dictionaries(st.sampled_from(PIDS), st.sampled_from(PIDS)).map(lambda d: {k: v for k, v in d.items() if k != v}))
    busy = draw(st.sets(st.sampled_from(PIDS), max_size=2))
    busy_companies = draw(st.sets(st.sampled_from(COMPANIES), max_size=1))
    return numbered(*messages), ident, sessions, parent, busy, busy_companies


def reference(messages, ident, sessions, parent, busy, busy_companies=frozenset()):
    """Things each message touches; a message waits when what it can reach (through
    shared things, any number of hops) includes a held profile."""

    def touches(m):
        found = {("key", k) for k in (m.user_id, m.anonymous_id) if k}
        if m.profile_id:
            found.add(("profile", m.profile_id))
        if m.session_id:
            found.add(("session", m.session_id))
        if m.group_id:
            found.add(("company", m.group_id))
        return found

    edges = [{("key", key), ("profile", pid)} for (_, key), pid in ident.items()]
    edges += [{("session", s), ("profile", pid)} for s, pid in sessions.items()]
    edges += [{("profile", a), ("profile", b)} for a, b in parent.items()]
    edges += [touches(m) for m in messages]
    reached = {("profile", pid) for pid in busy} | {("company", key) for key in busy_companies}
    grew = True
    while grew:
        grew = False
        for edge in edges:
            if edge & reached and not edge <= reached:
                reached |= edge
                grew = True
    return {m.index for m in messages if touches(m) & reached}


@given(chunks())
def test_held_back_waits_exactly_for_what_the_reference_reaches(chunk):
    messages, ident, sessions, parent, busy, busy_companies = chunk
    assert held_back(messages, busy, ident, sessions, parent, busy_companies=busy_companies) == reference(
        messages, ident, sessions, parent, busy, busy_companies
    )
