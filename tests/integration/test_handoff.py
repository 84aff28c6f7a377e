"""Durable real-time hand-off (DESIGN "The pipeline", step 3): every handler takes effect
exactly once per event, whatever the broker, the worker or a handler does."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import IntegrityError, connections
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from tests.integration import handoff_probe
from tests.messages import identify, ingest, set_properties, track
from tests.worker import celery_worker
from tracking import handoff
from tracking.models import Event, HandlerReceipt, PendingWork
from tracking.tasks import process_pending_work_task, sweep_pending_work_task


@pytest.fixture
def effects_table(db):
    handoff_probe.create_table()
    yield
    handoff_probe.drop_table()


@pytest.fixture
def probe(effects_table):
    handoff.register(handoff_probe.NAME, handoff_probe.record)
    yield handoff_probe
    handoff.unregister(handoff_probe.NAME)


@pytest.fixture
def no_broker():
    """Enqueueing fails as it does when the broker is unreachable."""
    with mock.patch.object(process_pending_work_task, "delay", side_effect=BrokerDown("connection refused")) as delay:
        yield delay


def _stored_events(site) -> list[tuple[int, int, str]]:
    return sorted(Event.objects.filter(site=site).values_list("id", "profile_id", "type"))


def _age(work: PendingWork, minutes: int = 5) -> None:
    """Make work old enough for the sweep (it leaves a minute for the task to run)."""
    PendingWork.objects.filter(pk=work.pk).update(created_at=timezone.now() - timedelta(minutes=minutes))


@pytest.mark.django_db
def test_it_records_the_work_and_enqueues_it_on_commit(site, probe, django_capture_on_commit_callbacks):
    with mock.patch.object(process_pending_work_task, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            result = ingest(site, track("a", anon="a-1"), identify("u-1", anon="a-1"))
    work = PendingWork.objects.get(site=site)
    assert sorted(work.event_ids) == sorted(result.event_ids) == [e[0] for e in _stored_events(site)]
    assert work.profile_ids == [result.profile_ids[0]]
    assert work.completed_at is None
    delay.assert_called_once_with(work.pk)


@pytest.mark.django_db
def test_it_takes_effect_once_per_event_when_delivered_twice(site, probe, no_broker):
    ingest(site, track("a", anon="a-1"), track("b", anon="a-2"), set_properties({"x": 1}, anon="a-1"))
    work = PendingWork.objects.get(site=site)

    assert handoff.process(work.pk) is True
    assert handoff.process(work.pk) is True
    process_pending_work_task.apply(args=[work.pk])  # a redelivered task, run as a worker would

    assert probe.effects() == _stored_events(site)
    assert HandlerReceipt.objects.filter(work=work).count() == 1
    work.refresh_from_db()
    assert work.completed_at is not None and work.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_it_takes_effect_once_when_delivered_concurrently(site, probe, no_broker):
    ingest(site, *[track(f"e{i}", anon=f"a-{i % 3}") for i in range(10)])
    work = PendingWork.objects.get(site=site)
    entered = threading.Event()

    def slow_record(w, events):
        entered.set()
        time.sleep(0.5)  # the rival delivery arrives while this one holds its claim
        handoff_probe.record(w, events)

    results = []

    def deliver():
        try:
            results.append(handoff.process(work.pk))
        finally:
            connections.close_all()

    with mock.patch.dict(handoff._handlers, {handoff_probe.NAME: slow_record}):
        first = threading.Thread(target=deliver)
        first.start()
        assert entered.wait(10)
        second = threading.Thread(target=deliver)
        second.start()
        first.join(30)
        second.join(30)

    assert results == [True, True]
    assert probe.effects() == _stored_events(site)
    assert HandlerReceipt.objects.filter(work=work).count() == 1


@pytest.mark.django_db
def test_it_leaves_failed_work_for_the_sweep(site, probe, no_broker):
    calls = []

    def flaky(work, events):
        calls.append(work.pk)
        if len(calls) == 1:
            raise RuntimeError("the segment service is down")
        handoff_probe.record(work, events, handler="flaky")

    handoff.register("flaky", flaky)
    try:
        ingest(site, track("a", anon="a-1"), track("b", anon="a-1"))
        work = PendingWork.objects.get(site=site)

        assert handoff.process(work.pk) is False
        work.refresh_from_db()
        assert work.completed_at is None
        assert probe.effects("flaky") == []
        # The handler that succeeded is receipted and not run again.
        assert list(HandlerReceipt.objects.filter(work=work).values_list("handler", flat=True)) == [probe.NAME]

        assert handoff.stale_work() == []  # too fresh: its own task may still be running
        _age(work)
        assert sweep_pending_work_task() == 1

        work.refresh_from_db()
        assert work.completed_at is not None and work.attempts == 2
        assert probe.effects("flaky") == probe.effects() == _stored_events(site)
        assert sweep_pending_work_task() == 0
    finally:
        handoff.unregister("flaky")


@pytest.mark.django_db
def test_it_retries_a_handler_that_fails_with_an_integrity_error(site, probe, no_broker):
    """A handler's own constraint violation is a failure like any other, not a sign
    that a rival delivery already took the work."""
    calls = []

    def clashing(work, events):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("duplicate key value violates unique constraint")
        handoff_probe.record(work, events, handler="clashing")

    handoff.register("clashing", clashing)
    try:
        ingest(site, track("a", anon="a-1"))
        work = PendingWork.objects.get(site=site)
        assert handoff.process(work.pk) is False
        work.refresh_from_db()
        assert work.completed_at is None
        _age(work)
        sweep_pending_work_task()
        assert probe.effects("clashing") == _stored_events(site)
    finally:
        handoff.unregister("clashing")


@pytest.mark.django_db
def test_it_survives_a_broker_outage(site, probe, no_broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest(site, track("a", anon="a-1"), track("b", anon="a-2"))
    assert result.accepted == [0, 1]  # the ingest succeeds
    assert no_broker.called
    work = PendingWork.objects.get(site=site)
    assert work.completed_at is None and probe.effects() == []

    _age(work)
    sweep_pending_work_task()

    assert probe.effects() == _stored_events(site)
    work.refresh_from_db()
    assert work.completed_at is not None


@pytest.mark.django_db
def test_it_hands_over_events_that_a_merge_moved_before_the_work_ran(site, probe, no_broker):
    """The tracker sends a track, then the identify at login; the identify's merge may
    commit before the track's work runs. The handler still gets every event, under the
    person it belongs to now."""
    ingest(site, identify("u-1"))
    ingest(site, track("Viewed", anon="a-1"))
    ingest(site, identify("u-1", anon="a-1"))

    for work in PendingWork.objects.filter(site=site).order_by("pk"):
        handoff.process(work.pk)

    assert probe.effects() == _stored_events(site)
    assert {profile for _, profile, _ in probe.effects()} == {Event.objects.get(type="Viewed").profile_id}


@pytest.mark.django_db
def test_it_hands_over_events_of_a_merged_person_under_them_before_the_background_repoint(site, probe, no_broker):
    """Two identified people merged by an alias: their events move in background batches
    (DESIGN "Performance"), so a handler that runs first still finds them under the id
    merged away. It is given the person they belong to now, not a tombstone."""
    from profiles.models import ProfileMerge
    from tests.messages import alias, profile_of

    ingest(site, identify("u-keep"))
    ingest(site, identify("u-old"), track("Viewed", user="u-old"))
    ingest(site, alias("u-old", "u-keep"), privileged=True)
    assert ProfileMerge.objects.get(site=site).repointed_at is None  # not moved yet

    for work in PendingWork.objects.filter(site=site).order_by("pk"):
        handoff.process(work.pk)

    person = profile_of(site, "u-keep")
    assert {event_id for event_id, _, _ in probe.effects()} == {e[0] for e in _stored_events(site)}
    assert {profile for _, profile, _ in probe.effects()} == {person.pk}


@pytest.mark.django_db
def test_it_records_no_work_without_handlers(site):
    ingest(site, track(anon="a-1"))
    assert not PendingWork.objects.exists()


# -- a real worker -----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_processes_pending_work_end_to_end(site, probe, tmp_path):
    with celery_worker(tmp_path, app="tests.integration.handoff_worker") as worker:
        to_worker = lambda work_id: process_pending_work_task.apply_async((work_id,), queue=worker.queue)  # noqa: E731

        # On commit the ingest enqueues the task; the worker runs the handler.
        with mock.patch.object(process_pending_work_task, "delay", side_effect=to_worker):
            ingest(site, track("a", anon="a-1"), identify("u-1", anon="a-1"), track("b", user="u-1"))
        work = PendingWork.objects.get(site=site)
        worker.wait_for(lambda: PendingWork.objects.filter(pk=work.pk, completed_at__isnull=False).exists())
        assert probe.effects() == _stored_events(site)

        # The broker is down for the next ingest: the sweep, run by the worker, catches up.
        with mock.patch.object(process_pending_work_task, "delay", side_effect=BrokerDown("down")):
            ingest(site, track("c", user="u-1"))
        late = PendingWork.objects.exclude(pk=work.pk).get(site=site)
        _age(late)
        sweep_pending_work_task.apply_async(queue=worker.queue)
        worker.wait_for(lambda: PendingWork.objects.filter(pk=late.pk, completed_at__isnull=False).exists())

    assert probe.effects() == _stored_events(site)  # every event, once
    assert HandlerReceipt.objects.filter(work__site=site).count() == 2


@pytest.mark.django_db
def test_it_backs_off_work_that_keeps_failing(site, probe, no_broker):
    ingest(site, track("a", anon="a-1"))
    work = PendingWork.objects.get(site=site)
    PendingWork.objects.filter(pk=work.pk).update(attempts=5)  # next try after 32 minutes
    _age(work, minutes=20)
    assert handoff.stale_work() == []
    _age(work, minutes=40)
    assert handoff.stale_work() == [work.pk]


@pytest.mark.django_db
def test_a_visited_site_moved_earlier_is_still_handed_off_by_the_work_that_recorded_it(site, probe, no_broker):
    """The work keeps its events by id and a time range (which prunes partitions). A
    late event moves a visit's start, and its visited-site with it, before the range
    of the work that recorded the visit while that work still waits: it still finds it."""
    t0 = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    ingest(site, track("a", anon="a-1", timestamp=t0))
    first = PendingWork.objects.get(site=site)
    ingest(site, track("late", anon="a-1", timestamp=t0 - timedelta(minutes=5)))
    assert Event.objects.get(site=site, type="visited-site").occurred_at == t0 - timedelta(minutes=5)

    assert handoff.process(first.pk) is True
    assert sorted(e[2] for e in probe.effects()) == ["a", "visited-site"]
    for work in PendingWork.objects.filter(completed_at__isnull=True):
        assert handoff.process(work.pk) is True
    assert probe.effects() == _stored_events(site)
