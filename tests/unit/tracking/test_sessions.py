"""Sessions (visits) and event time, DESIGN "Events and sessions". Time is controlled by
each message's ``timestamp``; nothing sleeps."""

from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import SiteFactory
from tests.messages import event_by_message, identify, ingest, set_properties, track
from tracking.ingest.core import event_time
from tracking.ingest.schema import Kind, Message
from tracking.models import Event, Session

pytestmark = pytest.mark.django_db

MIN = timedelta(minutes=1)


@pytest.fixture
def t0():
    return timezone.now().replace(microsecond=0) - timedelta(hours=6)


def _sessions(site):
    return list(Session.objects.filter(site=site).order_by("started_at"))


def _visits(site):
    return list(Event.objects.filter(site=site, type="visited-site").order_by("occurred_at"))


def test_it_starts_a_session_with_a_visited_site_event(site, t0):
    ingest(site, track("Product Viewed", anon="a-1", timestamp=t0, message_id="e1",
                       context={"page": {"url": "https://shop.example/x"}, "referrer": "https://news.example"}))

    [session] = _sessions(site)
    [visit] = _visits(site)
    event = event_by_message(site, "e1")
    assert event.session_id == visit.session_id == session.pk
    assert visit.occurred_at == event.occurred_at == session.started_at == session.last_event_at == t0
    assert visit.profile_id == event.profile_id == session.profile_id
    assert visit.message_id is None
    assert session.event_count == 2  # the visit and the event
    assert session.context == {"page": {"url": "https://shop.example/x"}, "referrer": "https://news.example"}


def test_it_reuses_the_session_for_activity_within_the_timeout(site, t0):
    # Each gap is under 20 minutes, the whole visit is not: inactivity is what counts.
    ingest(site, track("a", anon="a-1", timestamp=t0), track("b", anon="a-1", timestamp=t0 + 19 * MIN))
    ingest(site, track("c", anon="a-1", timestamp=t0 + 38 * MIN))
    ingest(site, track("d", anon="a-1", timestamp=t0 + 57 * MIN))

    [session] = _sessions(site)
    assert len(_visits(site)) == 1
    assert session.started_at == t0 and session.last_event_at == t0 + 57 * MIN
    assert session.event_count == 5
    assert set(Event.objects.filter(site=site).values_list("session_id", flat=True)) == {session.pk}


@pytest.mark.parametrize("one_batch", [True, False], ids=["one batch", "two batches"])
def test_it_starts_a_new_session_after_the_sites_timeout(site, t0, one_batch):
    site.session_timeout_minutes = 5
    site.save()
    first = track("a", anon="a-1", timestamp=t0, message_id="a")
    late = track("b", anon="a-1", timestamp=t0 + 5 * MIN + timedelta(seconds=1), message_id="b")
    if one_batch:
        ingest(site, first, late)
    else:
        ingest(site, first)
        ingest(site, late)

    old, new = _sessions(site)
    assert event_by_message(site, "a").session_id == old.pk
    assert event_by_message(site, "b").session_id == new.pk
    assert [v.session_id for v in _visits(site)] == [old.pk, new.pk]
    assert [v.occurred_at for v in _visits(site)] == [t0, t0 + 5 * MIN + timedelta(seconds=1)]


def test_it_updates_the_session_it_leaves_in_the_same_batch(site, t0):
    """One batch continues the open visit, then the person goes quiet and comes back:
    the first visit's last activity and count must include the events it got."""
    ingest(site, track("a", anon="a-1", timestamp=t0))
    ingest(
        site,
        track("b", anon="a-1", timestamp=t0 + 10 * MIN),
        track("c", anon="a-1", timestamp=t0 + 15 * MIN),
        track("d", anon="a-1", timestamp=t0 + 2 * 60 * MIN),
    )
    old, new = _sessions(site)
    assert (old.last_event_at, old.event_count) == (t0 + 15 * MIN, 4)
    assert (new.started_at, new.event_count) == (t0 + 2 * 60 * MIN, 2)


def test_it_starts_a_new_session_when_the_client_says_so(site, t0):
    ingest(site, track("a", anon="a-1", timestamp=t0))
    ingest(site, track("b", anon="a-1", timestamp=t0 + MIN, new_session=True, message_id="b"))

    old, new = _sessions(site)
    assert event_by_message(site, "b").session_id == new.pk
    assert len(_visits(site)) == 2


def test_it_follows_client_session_ids(site, t0):
    ingest(site, track("a", anon="a-1", session_id="s-1", timestamp=t0, message_id="a"))
    ingest(site, track("b", anon="a-1", session_id="s-2", timestamp=t0 + MIN, message_id="b"))
    ingest(site, track("c", anon="a-1", session_id="s-1", timestamp=t0 + 2 * MIN, message_id="c"))

    sessions = {s.external_id: s for s in _sessions(site)}
    assert set(sessions) == {"s-1", "s-2"}
    assert event_by_message(site, "a").session_id == event_by_message(site, "c").session_id == sessions["s-1"].pk
    assert event_by_message(site, "b").session_id == sessions["s-2"].pk
    assert len(_visits(site)) == 2


def test_it_does_not_start_a_visit_on_identify_alone(site, t0):
    ingest(site, identify("u-1", timestamp=t0, message_id="i"), set_properties({"x": 1}, user="u-1", timestamp=t0))
    assert not _sessions(site) and not _visits(site)
    assert event_by_message(site, "i").session_id is None

    # An identify during a visit joins it.
    ingest(site, track("a", user="u-1", timestamp=t0 + MIN))
    ingest(site, identify("u-1", timestamp=t0 + 2 * MIN, message_id="i2"))
    [session] = _sessions(site)
    assert event_by_message(site, "i2").session_id == session.pk
    assert len(_visits(site)) == 1


def test_it_joins_a_late_event_to_the_visit_it_belongs_to(site, t0):
    ingest(site, track("b", anon="a-1", timestamp=t0 + 10 * MIN))
    ingest(site, track("a", anon="a-1", timestamp=t0 + 2 * MIN, message_id="late"))  # offline queue
    [session] = _sessions(site)
    assert event_by_message(site, "late").session_id == session.pk
    assert session.started_at == t0 + 2 * MIN


@pytest.mark.parametrize("one_batch", [True, False], ids=["one batch", "two batches"])
def test_a_late_event_before_the_visit_moves_its_visited_site_to_the_new_start(site, t0, one_batch):
    """The first event of a visit produces its visited-site. A late event (an offline
    queue) earlier than a stored visit's start, within the timeout, joins the visit and
    is its first event now: the visited-site moves with the start."""
    first = track("b", anon="a-1", timestamp=t0 + 10 * MIN, message_id="b")
    late = track("a", anon="a-1", timestamp=t0 + 2 * MIN, message_id="late")
    if one_batch:
        ingest(site, first, late)
    else:
        ingest(site, first)
        ingest(site, late)

    [session] = _sessions(site)
    [visit] = _visits(site)
    assert visit.session_id == event_by_message(site, "late").session_id == session.pk
    assert visit.occurred_at == session.started_at == t0 + 2 * MIN


def test_late_events_move_the_visited_site_of_each_visit_whose_start_they_move(site, t0):
    """One batch moves the starts of two people's visits (one of them by two events),
    joins another's without moving it, and leaves a person's earlier visit alone."""
    ingest(site, track("x", anon="a-1", timestamp=t0, message_id="a-old"))
    ingest(
        site,
        track("x", anon="a-1", timestamp=t0 + 60 * MIN, message_id="a"),
        track("x", anon="a-2", timestamp=t0 + 60 * MIN, message_id="b"),
        track("x", anon="a-3", timestamp=t0 + 60 * MIN, message_id="c"),
    )
    ingest(
        site,
        track("x", anon="a-1", timestamp=t0 + 45 * MIN, message_id="a-late"),  # 35 min after the old visit
        track("x", anon="a-2", timestamp=t0 + 50 * MIN, message_id="b-late"),
        track("x", anon="a-2", timestamp=t0 + 42 * MIN, message_id="b-later"),
        track("x", anon="a-3", timestamp=t0 + 61 * MIN, message_id="c-more"),
    )

    def visit_of(message_id):
        return Event.objects.get(session_id=event_by_message(site, message_id).session_id, type="visited-site")

    assert visit_of("a-old").occurred_at == t0
    assert visit_of("a").occurred_at == t0 + 45 * MIN
    assert visit_of("b").occurred_at == t0 + 42 * MIN
    assert visit_of("c").occurred_at == t0 + 60 * MIN
    for session in _sessions(site):
        assert Event.objects.get(session_id=session.pk, type="visited-site").occurred_at == session.started_at
    assert len(_sessions(site)) == len(_visits(site)) == 4


def test_a_late_event_in_a_batch_does_not_end_the_current_visit(site, t0):
    now = t0 + 60 * MIN
    ingest(site, track("a", anon="a-1", timestamp=now - 5 * MIN, message_id="a"))
    ingest(
        site,
        track("old", anon="a-1", timestamp=now - timedelta(days=3), message_id="old"),  # offline queue
        track("b", anon="a-1", timestamp=now, message_id="b"),
    )
    assert event_by_message(site, "b").session_id == event_by_message(site, "a").session_id
    assert event_by_message(site, "old").session_id != event_by_message(site, "a").session_id
    assert len(_sessions(site)) == len(_visits(site)) == 2


def test_a_late_event_joins_the_earlier_visit_it_belongs_to_not_only_the_latest(site, t0):
    """Two stored visits; a late event (a batch the client retried after later ones went
    through) five minutes after the first visit's last event joins that visit: the
    person was not inactive for longer than the timeout before it. Only the latest
    visit was looked up, so the event opened a third visit with its own visited-site."""
    ingest(site, track("a", anon="a-1", timestamp=t0, message_id="a"),
           track("a2", anon="a-1", timestamp=t0 + 10 * MIN, message_id="a2"))
    ingest(site, track("b", anon="a-1", timestamp=t0 + 40 * MIN, message_id="b"),
           track("b2", anon="a-1", timestamp=t0 + 50 * MIN, message_id="b2"))
    ingest(site, track("late", anon="a-1", timestamp=t0 + 15 * MIN, message_id="late"))

    first, second = _sessions(site)
    assert event_by_message(site, "late").session_id == event_by_message(site, "a").session_id == first.pk
    assert event_by_message(site, "b").session_id == second.pk
    assert len(_visits(site)) == 2
    assert first.last_event_at == t0 + 15 * MIN and first.event_count == 4  # visit, a, a2, late


@st.composite
def timelines(draw):
    """A person's in-order events (minutes apart) with late events (an offline queue, from
    before the first of them) arriving among them, cut into batches."""
    gaps = draw(st.lists(st.integers(0, 45), min_size=1, max_size=8))
    late = draw(st.lists(st.integers(25, 24 * 60), max_size=4))  # minutes before the first
    arrivals = [("in", sum(gaps[: i + 1])) for i in range(len(gaps))]
    for minutes in late:
        arrivals.insert(draw(st.integers(0, len(arrivals))), ("late", -minutes))
    cuts = draw(st.sets(st.integers(1, len(arrivals) - 1), max_size=len(arrivals) - 1)) if len(arrivals) > 1 else set()
    return gaps, arrivals, sorted(cuts)


@given(timeline=timelines())
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_late_events_never_split_the_visits_of_the_events_in_order(timeline):
    """Reference: events in time order share a visit exactly when the gap between them is
    within the timeout (20 minutes, inclusive), however they are cut into batches and
    whatever late events (too old to join any of their visits) arrive among them."""
    gaps, arrivals, cuts = timeline
    site = SiteFactory()
    t0 = timezone.now().replace(microsecond=0) - timedelta(days=2)
    messages = [
        track(kind, anon="a-1", timestamp=t0 + minutes * MIN, message_id=f"{kind}{n}")
        for n, (kind, minutes) in enumerate(arrivals)
    ]
    for start, end in zip([0, *cuts], [*cuts, len(messages)], strict=True):
        ingest(site, *messages[start:end])

    in_order = [m.message_id for m in messages if m.message_id.startswith("in")]
    sessions = [event_by_message(site, message_id).session_id for message_id in in_order]
    expected, visit = [], 0
    for i, gap in enumerate(gaps):
        visit += i > 0 and gap > 20
        expected.append(visit)
    assert partition(sessions) == partition(expected)
    late_sessions = {e.session_id for e in Event.objects.filter(site=site, type="late")}
    assert not late_sessions & set(sessions)


def partition(labels):
    """Which positions share a label, whatever the labels are."""
    first: dict = {}
    return [first.setdefault(label, i) for i, label in enumerate(labels)]


def test_it_keeps_sessions_per_person(site, t0):
    ingest(site, track("a", anon="a-1", timestamp=t0), track("a", anon="a-2", timestamp=t0))
    assert len(_sessions(site)) == 2 and len(_visits(site)) == 2


def test_it_moves_sessions_with_a_merge(site, t0):
    ingest(site, identify("u-1", timestamp=t0))
    ingest(site, track("a", anon="a-1", timestamp=t0))
    ingest(site, identify("u-1", anon="a-1", timestamp=t0 + MIN), track("b", user="u-1", timestamp=t0 + 2 * MIN))
    [session] = _sessions(site)
    assert session.event_count == 4  # visit, a, identify, b
    assert set(Event.objects.filter(site=site).exclude(session=None).values_list("profile_id", flat=True)) == {
        session.profile_id
    }


def test_a_visit_merged_into_a_person_seen_long_ago_goes_on(site, t0):
    """The person's own last_seen is hours old, the visitor merged into them is active:
    the visit continues (the latest-session lookup is spared only when every profile
    merged into the person was quiet for longer than the timeout)."""
    ingest(site, identify("u-1", timestamp=t0 - 3 * 60 * MIN))
    ingest(site, track("a", anon="a-1", timestamp=t0, message_id="a"))
    ingest(site, identify("u-1", anon="a-1", timestamp=t0 + MIN), track("b", user="u-1", timestamp=t0 + 2 * MIN, message_id="b"))

    [session] = _sessions(site)
    assert event_by_message(site, "a").session_id == event_by_message(site, "b").session_id == session.pk
    assert session.event_count == 4  # visit, a, identify, b


@pytest.mark.parametrize(("gap", "continues"), [(5 * MIN, True), (5 * MIN + timedelta(microseconds=1), False)])
def test_the_timeout_is_inclusive_across_batches(site, t0, gap, continues):
    site.session_timeout_minutes = 5
    site.save()
    ingest(site, track("a", anon="a-1", timestamp=t0))
    ingest(site, track("b", anon="a-1", timestamp=t0 + gap))
    assert len(_sessions(site)) == (1 if continues else 2)


def test_the_latest_session_is_looked_up_only_for_people_active_within_the_timeout(site, t0, monkeypatch):
    from tracking import sessions

    asked: list[list[int]] = []
    real = sessions._joinable_sessions

    def recording(by_profile, timeout):
        asked.append(sorted(by_profile))
        return real(by_profile, timeout)

    monkeypatch.setattr(sessions, "_joinable_sessions", recording)
    ingest(site, track("a", anon="a-1", timestamp=t0, message_id="a"), track("a", anon="a-2", timestamp=t0))
    ingest(site, track("b", anon="a-1", timestamp=t0 + 10 * MIN), track("b", anon="a-2", timestamp=t0 + 3 * 60 * MIN))

    active = event_by_message(site, "a").profile_id
    assert asked == [[], [active]]  # new people have none; a-2 came back after 3 hours
    assert len(_sessions(site)) == 3


# -- event time ----------------------------------------------------------------------------------


def test_it_corrects_client_clock_skew_with_sent_at():
    received = timezone.now()
    # The client's clock is 1 hour fast; it sent 30 seconds after the call.
    timestamp = received + timedelta(hours=1) - timedelta(seconds=30)
    sent_at = received + timedelta(hours=1)
    m = Message(kind=Kind.TRACK, timestamp=timestamp, sent_at=sent_at)
    assert event_time(m, received) == received - timedelta(seconds=30)


def test_it_takes_the_client_time_without_sent_at():
    received = timezone.now()
    m = Message(kind=Kind.TRACK, timestamp=received - timedelta(days=2))
    assert event_time(m, received) == received - timedelta(days=2)


def test_it_never_dates_an_event_after_it_arrived():
    received = timezone.now()
    # A clock running ahead with no sentAt to correct it; a timestamp after sentAt.
    assert event_time(Message(kind=Kind.TRACK, timestamp=received + timedelta(hours=3)), received) == received
    ahead = Message(kind=Kind.TRACK, timestamp=received + timedelta(minutes=5), sent_at=received)
    assert event_time(ahead, received) == received


def test_an_event_from_a_clock_running_ahead_does_not_stretch_the_visit(site, t0):
    received = t0 + 60 * MIN
    ingest(site, track("a", anon="a-1", timestamp=t0 + 5 * 60 * MIN, message_id="ahead"), received_at=received)
    ingest(site, track("b", anon="a-1", timestamp=t0 + 4 * 60 * MIN, message_id="later"), received_at=t0 + 4 * 60 * MIN)
    assert event_by_message(site, "ahead").occurred_at == received
    assert len(_sessions(site)) == 2  # three hours apart, not one visit


def test_it_takes_the_server_time_without_client_times():
    received = timezone.now()
    assert event_time(Message(kind=Kind.TRACK), received) == received
    assert event_time(Message(kind=Kind.TRACK, sent_at=received + timedelta(hours=3)), received) == received


def test_it_stores_the_corrected_time(site):
    received = timezone.now().replace(microsecond=0)
    skewed = track(
        anon="a-1",
        timestamp=received + timedelta(minutes=10),
        sent_at=received + timedelta(minutes=10, seconds=5),
        message_id="skewed",
    )
    ingest(site, skewed, track(anon="a-1", message_id="plain"), received_at=received)

    event = event_by_message(site, "skewed")
    assert event.occurred_at == received - timedelta(seconds=5)
    assert event.received_at == received
    assert event_by_message(site, "plain").occurred_at == received
