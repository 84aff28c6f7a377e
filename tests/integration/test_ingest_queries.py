"""The ingestion service at scale against real PostgreSQL: a fixed number of queries
whatever the batch size, dedupe under retries and concurrency, monthly partitions."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles.models import Identity, Profile
from tests.messages import (
    alias,
    event_by_message,
    group,
    identify,
    ingest,
    page,
    set_properties,
    track,
)
from tracking.models import Event
from tracking.partitions import DEFAULT, ensure_event_partitions, month_start, partition_name

# -- query counts --------------------------------------------------------------------------------------


def _queries(site, messages) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        result = ingest(site, *messages)
    assert not result.errors, result.errors
    assert len(result.accepted) == len(messages)
    return [" ".join(q["sql"].split())[:110] for q in captured.captured_queries]


def _assert_no_more(q500: list[str], q1: list[str]) -> None:
    assert len(q500) <= len(q1), "\n".join(["batch of 500:", *q500, "", "batch of 1:", *q1])


@pytest.fixture
def people(site):
    """600 known people mid-visit (identified, with an anonymous id and an open
    session) and 600 anonymous visitors with a history."""
    ingest(site, *[identify(f"u{i}", anon=f"ua{i}", traits={"n": i}) for i in range(600)])
    ingest(site, *[track("Landing", user=f"u{i}", anon=f"ua{i}") for i in range(600)])
    ingest(site, *[track("Landing", anon=f"a{i}") for i in range(600)])
    return site


@pytest.mark.django_db
def test_it_uses_no_more_queries_for_500_tracks_than_for_1(people):
    site = people
    q1 = _queries(site, [track(user="u0", anon="ua0")])
    q500 = _queries(
        site,
        [
            (page if i % 3 else track)(user=f"u{i}", anon=f"ua{i}", properties={"i": i})
            if i % 5
            else track("Scroll", anon=f"a{i}")
            for i in range(1, 501)
        ],
    )
    _assert_no_more(q500, q1)


@pytest.mark.django_db
def test_it_uses_no_more_queries_for_500_identifies_than_for_1(people):
    """Each identify merges an anonymous history (with events and a session) into a
    known person and sets traits."""
    site = people
    q1 = _queries(site, [identify("u0", anon="a0", traits={"plan": "pro"})])
    q500 = _queries(site, [identify(f"u{i}", anon=f"a{i}", traits={"plan": "pro", "n": None}) for i in range(1, 501)])
    _assert_no_more(q500, q1)
    assert Profile.objects.filter(site=site, merged_into__isnull=False).count() == 501


@pytest.mark.django_db
def test_it_uses_no_more_queries_for_500_new_people_than_for_1(site):
    q1 = _queries(site, [track(anon="new-0", session_id="s-0")])
    q500 = _queries(site, [track(anon=f"new-{i}", session_id=f"s-{i}") for i in range(1, 501)])
    _assert_no_more(q500, q1)
    q1 = _queries(site, [identify("new-user-0", anon="new-anon-0", traits={"a": 1})])
    q500 = _queries(site, [identify(f"new-user-{i}", anon=f"new-anon-{i}", traits={"a": 1}) for i in range(1, 501)])
    _assert_no_more(q500, q1)
    assert Profile.objects.filter(site=site).count() == 1002


def _mix(i: int):
    """The bench's mix (70% known people, 20% anonymous, 10% identify) plus every other
    kind of call."""
    shape = i % 20
    if shape < 13:
        return track("Product Viewed", user=f"u{i}", anon=f"ua{i}", properties={"sku": i})
    if shape == 13:
        return set_properties({"plan": "pro", "n": None}, user=f"u{i}")
    if shape < 17:
        return track("Product Viewed", anon=f"a{i}")
    if shape == 17:
        return identify(f"u{i}", anon=f"a{i}", traits={"email": f"{i}@example.com"})  # merge
    if shape == 18:
        return group(f"company-{i % 7}", user=f"u{i}", traits={"name": f"Company {i % 7}"})
    return alias(f"a{i}", f"u{i}")  # an anonymous history into a known person


@pytest.mark.django_db
def test_it_uses_no_more_queries_for_500_mixed_calls_than_for_one_of_each(people):
    """A single message cannot do every kind of work (merge, group, new session…), so
    the mixed batch of 500 is held to a batch of one message of each shape in it: the
    query count depends on the kinds of work, never on the number of messages."""
    site = people
    q_each = _queries(site, [_mix(i) for i in range(580, 600)])
    q500 = _queries(site, [_mix(i) for i in range(0, 500)])
    _assert_no_more(q500, q_each)


def _updates_of_events(queries: list[str]) -> list[str]:
    return [q for q in queries if "UPDATE tracking_event " in q]


@pytest.mark.django_db
def test_late_events_move_every_visits_visited_site_in_one_statement_and_only_then(people):
    """Each late event (an offline queue) moves the start of its person's open visit, so
    its visited-site: one UPDATE for the batch, whatever the number of visits; a batch
    that moves no visit's start issues none."""
    site = people
    early = timezone.now() - timedelta(minutes=5)
    q_on_time = _queries(site, [track("Scroll", user=f"u{i}", anon=f"ua{i}") for i in range(1, 501)])
    assert _updates_of_events(q_on_time) == []
    q1 = _queries(site, [track("Offline", user="u0", anon="ua0", timestamp=early)])
    q500 = _queries(site, [track("Offline", user=f"u{i}", anon=f"ua{i}", timestamp=early) for i in range(1, 501)])
    assert len(_updates_of_events(q1)) == len(_updates_of_events(q500)) == 1, "\n".join(q500)
    _assert_no_more(q500, q1)
    assert len(q1) == len(_queries(site, [track("Offline", user="u0", anon="ua0", timestamp=early)])) + 1
    moved = Event.objects.filter(site=site, type="visited-site", profile__identities__key__in=["u0", "u1", "u500"])
    assert {e.occurred_at for e in moved} == {early}


# -- dedupe ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_stores_a_retried_batch_once(site):
    now = timezone.now()
    first = ingest(site, track("a", anon="a-1", message_id="m1"), identify("u-1", anon="a-1", message_id="m2"))
    # The client retries with a fresh sentAt and its clock moved: same ids, stored once.
    again = ingest(
        site,
        track("a", anon="a-1", message_id="m1", timestamp=now + timedelta(hours=2)),
        identify("u-1", anon="a-1", message_id="m2", traits={"late": True}),
        track("b", anon="a-1", message_id="m3"),
    )
    assert first.accepted == [0, 1]
    assert (again.accepted, again.duplicates) == ([2], [0, 1])
    assert Event.objects.filter(site=site, message_id="m1").count() == 1
    assert Event.objects.filter(site=site, message_id="m2").count() == 1
    assert Profile.objects.get(site=site).properties == {}  # the duplicate's traits were not applied


@pytest.mark.django_db
def test_it_stores_a_message_repeated_inside_one_batch_once(site):
    result = ingest(site, track("a", anon="a-1", message_id="m1"), track("a", anon="a-1", message_id="m1"))
    assert (result.accepted, result.duplicates) == ([0], [1])
    assert Event.objects.filter(site=site, message_id="m1").count() == 1


@pytest.mark.django_db
def test_it_dedupes_per_site(site, other_site):
    ingest(site, track(anon="a-1", message_id="same"))
    result = ingest(other_site, track(anon="a-1", message_id="same"))
    assert result.accepted == [0]
    assert Event.objects.filter(message_id="same").count() == 2


def _in_threads(*jobs, timeout: float = 60):
    """Run each job in its own thread (own database connection), started together."""
    barrier = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job):
        try:
            barrier.wait()
            job()
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_it_stores_each_message_once_when_retries_race(site):
    ids = [f"m{i}" for i in range(200)]

    def send(order):
        # Overlapping, in opposite orders: the dedupe claims can deadlock, and the
        # core retries the loser's whole transaction.
        ingest(site, *[track("t", anon=f"a-{int(mid[1:]) % 20}", message_id=mid) for mid in order])

    _in_threads(lambda: send(ids), lambda: send(ids[::-1]), lambda: send(ids[50:150]))

    assert Event.objects.filter(site=site).exclude(type="visited-site").count() == 200
    assert Event.objects.filter(site=site, message_id__isnull=False).values("message_id").distinct().count() == 200
    assert Profile.objects.filter(site=site).count() == 20


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_person_when_two_requests_name_them_at_once(site):
    """Two concurrent first requests of one new person (different messages): the loser
    of the identity insert retries and lands on the winner's profile."""
    _in_threads(
        lambda: ingest(site, *[track(f"t{i}", anon="a-new") for i in range(20)], identify("u-new", anon="a-new")),
        lambda: ingest(site, *[track(f"x{i}", user="u-new") for i in range(20)]),
    )
    profiles = Profile.objects.filter(site=site, merged_into__isnull=True)
    assert profiles.count() == 1
    assert set(Identity.objects.filter(site=site).values_list("profile_id", flat=True)) == {profiles.get().pk}
    assert Event.objects.filter(site=site).exclude(type="visited-site").count() == 41
    assert {e.profile_id for e in Event.objects.filter(site=site)} == {profiles.get().pk}


# -- partitions -----------------------------------------------------------------------------------------


def _partition_of(event_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM tracking_event WHERE id = %s", [event_id])
        return cursor.fetchone()[0]


def _month(at: datetime) -> str:
    return partition_name(date(at.year, at.month, 1))


@pytest.mark.django_db
def test_it_puts_events_in_their_months_partition(site):
    now = timezone.now()
    last_month = (now.replace(day=1) - timedelta(days=1)).replace(hour=12)
    ingest(
        site,
        track(anon="a-1", message_id="now"),
        track(anon="a-1", message_id="late", timestamp=last_month),  # an offline queue
        track(anon="a-1", message_id="ancient", timestamp=datetime(1999, 1, 15, tzinfo=UTC)),
        track(anon="a-1", message_id="future", timestamp=datetime(2300, 1, 1, tzinfo=UTC)),
    )
    assert _partition_of(event_by_message(site, "now").pk) == _month(now)
    assert _partition_of(event_by_message(site, "late").pk) == _month(last_month)
    assert _partition_of(event_by_message(site, "ancient").pk) == DEFAULT
    # A time after arrival is a clock running ahead: the event is dated when it arrived.
    assert _partition_of(event_by_message(site, "future").pk) == _month(event_by_message(site, "future").received_at)


@pytest.mark.django_db
def test_a_late_event_moves_a_visits_visited_site_into_the_previous_months_partition(site):
    """A visit that started just after midnight on the 1st; a late event five minutes
    before midnight joins it: its visited-site moves to the previous month's partition
    (PostgreSQL moves a row whose partition key an UPDATE changes)."""
    month = month_start(timezone.now().date(), -1)
    start = datetime(month.year, month.month, month.day, 0, 5, tzinfo=UTC)
    ensure_event_partitions(months_back=2, months_ahead=0)
    ingest(site, track(anon="a-1", message_id="first", timestamp=start))
    [visit] = Event.objects.filter(site=site, type="visited-site")
    assert _partition_of(visit.pk) == _month(start)

    ingest(site, track(anon="a-1", message_id="late", timestamp=start - timedelta(minutes=10)))

    late = event_by_message(site, "late")
    [moved] = Event.objects.filter(site=site, type="visited-site")
    assert (moved.pk, moved.session_id) == (visit.pk, visit.session_id)
    assert moved.occurred_at == late.occurred_at == start - timedelta(minutes=10)
    assert _partition_of(moved.pk) == _month(late.occurred_at) != _month(start)


@pytest.mark.django_db
def test_it_moves_rows_out_of_the_default_partition_when_their_month_is_made(site):
    ingest(
        site,
        track(anon="a-1", message_id="jan", timestamp=datetime(1999, 1, 15, tzinfo=UTC)),
        track(anon="a-1", message_id="jan-end", timestamp=datetime(1999, 1, 31, 23, 59, 59, tzinfo=UTC)),
        track(anon="a-1", message_id="feb", timestamp=datetime(1999, 2, 1, tzinfo=UTC)),
    )
    jan = event_by_message(site, "jan")

    created = ensure_event_partitions(months_back=0, months_ahead=0, today=date(1999, 1, 20))

    assert created == ["tracking_event_1999_01"]
    assert _partition_of(jan.pk) == "tracking_event_1999_01"
    assert _partition_of(event_by_message(site, "jan-end").pk) == "tracking_event_1999_01"
    assert _partition_of(event_by_message(site, "feb").pk) == DEFAULT
    moved = event_by_message(site, "jan")
    assert (moved.profile_id, moved.occurred_at, moved.properties) == (jan.profile_id, jan.occurred_at, jan.properties)
    # New events of that month now go straight to it, and running again changes nothing.
    ingest(site, track(anon="a-1", message_id="jan-2", timestamp=datetime(1999, 1, 2, tzinfo=UTC)))
    assert _partition_of(event_by_message(site, "jan-2").pk) == "tracking_event_1999_01"
    assert ensure_event_partitions(months_back=0, months_ahead=0, today=date(1999, 1, 20)) == []


@pytest.mark.django_db
def test_it_keeps_partitions_ahead_of_time(site):
    ensure_event_partitions(months_back=1, months_ahead=3)
    today = timezone.now().date()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'tracking_event'"
        )
        have = {row[0] for row in cursor.fetchall()}

    assert {partition_name(month_start(today, k)) for k in range(-1, 4)} <= have
    assert DEFAULT in have


def _waiting_on_a_lock(timeout: float = 20) -> None:
    """Until some other backend of this database waits for a lock."""
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.05)
    raise AssertionError("nothing waited for a lock")


@pytest.fixture
def month_1998_03():
    """A partition the test makes (committed: the test runs outside a transaction),
    dropped again so other tests find the default partition as usual."""
    name = partition_name(date(1998, 3, 1))
    yield name
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {name}")


def _second_waits_for_first(first, second, *, timeout: float = 30) -> None:
    """Run ``first`` in a transaction (own connection) that stays open until ``second``,
    run in another thread after it, waits for a lock; then let both finish, and raise
    what either raised."""
    held, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold():
        try:
            with transaction.atomic():
                first()
                held.set()
                release.wait(timeout)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            held.set()
            connections.close_all()

    def then():
        try:
            second()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(timeout)
    waiter = threading.Thread(target=then)
    waiter.start()
    try:
        _waiting_on_a_lock()
    finally:
        release.set()
        holder.join(timeout)
        waiter.join(timeout)
    assert not errors, errors


def _make_march_1998() -> list[str]:
    return ensure_event_partitions(months_back=0, months_ahead=0, today=date(1998, 3, 20))


def _ingest_late(site) -> None:
    ingest(site, track(anon="a-1", message_id="late", timestamp=datetime(1998, 3, 10, tzinfo=UTC)))


@pytest.mark.django_db(transaction=True)
def test_it_makes_a_month_while_an_ingest_writes_its_rows_to_the_default_partition(site, month_1998_03):
    """An ingest still writing a row of the month to the default partition when beat
    moved the month's rows out made the attach fail ("partition constraint for default
    partition would be violated"), every run while such traffic went on."""
    _second_waits_for_first(lambda: _ingest_late(site), _make_march_1998)
    assert _partition_of(event_by_message(site, "late").pk) == month_1998_03


@pytest.mark.django_db(transaction=True)
def test_two_beats_make_the_same_month_at_once(site, month_1998_03):
    """Two beats (or a beat and a migration) making the same month: the second failed
    on the name the first had just taken, and made none of the months after it."""
    results: list[list[str]] = []
    _second_waits_for_first(lambda: results.append(_make_march_1998()), lambda: results.append(_make_march_1998()))
    assert sorted(results) == [[], [month_1998_03]]


@pytest.mark.django_db(transaction=True)
def test_an_event_waiting_while_its_month_is_made_lands_in_it(site, month_1998_03):
    """An ingest routing a row to the default partition while beat made its month waits
    for it, and then PostgreSQL refuses the row there ("violates partition constraint"):
    a 500 for an immediate request, a failed chunk for the drain. It is retried, and
    lands in the new month."""
    _second_waits_for_first(_make_march_1998, lambda: _ingest_late(site))
    assert _partition_of(event_by_message(site, "late").pk) == month_1998_03
