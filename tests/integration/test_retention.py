"""Anonymous-history retention and background re-pointing of merged histories."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connections
from django.utils import timezone

from profiles.maintenance import anonymous_profiles_purge, merged_events_repoint
from profiles.models import CompanyMembership, Identity, Profile, ProfileMerge
from profiles.tasks import purge_anonymous_profiles_task
from tests.messages import alias, group, identify, ingest, profile_of, track
from tracking import inbox
from tracking import sessions as sessions_module
from tracking.models import Event, Session
from tracking.signals import profiles_forgotten
from tracking.tasks import drain_inbox_task

ANON = Identity.Kind.ANONYMOUS


def _ago(days: float):
    return timezone.now() - timedelta(days=days)


def _visitor(site, anon: str, days_ago: float, events: int = 2) -> Profile:
    """A visitor whose calls came ``days_ago`` (sent then, and received then)."""
    sent = [track(f"e{i}", anon=anon, timestamp=_ago(days_ago) + timedelta(minutes=i)) for i in range(events)]
    ingest(site, *sent, received_at=_ago(days_ago) + timedelta(minutes=events))
    return profile_of(site, anon, ANON)


def _everything_of(profile_id: int) -> tuple[int, int, int]:
    return (
        Event.objects.filter(profile_id=profile_id).count(),
        Session.objects.filter(profile_id=profile_id).count(),
        Identity.objects.filter(profile_id=profile_id).count(),
    )


@pytest.mark.django_db
def test_it_purges_idle_anonymous_profiles_with_their_history(site):
    forgotten = []
    handler = lambda **kw: forgotten.append(kw)  # noqa: E731
    profiles_forgotten.connect(handler)
    try:
        idle = _visitor(site, "a-idle", days_ago=61)
        ingest(site, group("acme", anon="a-idle", timestamp=_ago(61)), received_at=_ago(61))
        recent = _visitor(site, "a-recent", days_ago=59)
        ingest(site, identify("u-old", anon="a-known", timestamp=_ago(400)))
        known = profile_of(site, "u-old")
        assert _everything_of(idle.pk)[0] > 0 and CompanyMembership.objects.filter(profile=idle).exists()

        assert anonymous_profiles_purge() == 1
    finally:
        profiles_forgotten.disconnect(handler)

    assert not Profile.objects.filter(pk=idle.pk).exists()
    assert _everything_of(idle.pk) == (0, 0, 0)
    assert not CompanyMembership.objects.filter(profile_id=idle.pk).exists()
    assert Profile.objects.filter(pk__in=[recent.pk, known.pk]).count() == 2  # recent, and identified
    assert _everything_of(recent.pk)[0] == 3  # two events and the visit
    assert forgotten == [{"signal": profiles_forgotten, "sender": Profile, "site_id": site.pk, "profile_ids": [idle.pk]}]


@pytest.mark.django_db
def test_a_visitor_whose_clock_is_months_behind_is_kept_until_idle_since_arrival(site):
    # A device clock set back (a reset phone, no sentAt to correct it): the events are
    # dated 90 days ago, but they arrived just now. The visitor is not idle.
    ingest(site, track("Viewed", anon="a-clock", timestamp=_ago(90)))
    visitor = profile_of(site, "a-clock", ANON)
    assert visitor.last_seen < _ago(89)

    assert anonymous_profiles_purge() == 0
    assert _everything_of(visitor.pk)[0] == 2  # the event and the visit
    assert anonymous_profiles_purge(now=timezone.now() + timedelta(days=59)) == 0
    assert anonymous_profiles_purge(now=timezone.now() + timedelta(days=61)) == 1
    assert not Profile.objects.filter(pk=visitor.pk).exists()


@pytest.mark.django_db
def test_it_keeps_an_anonymous_history_merged_into_an_identified_person(site):
    ingest(site, track(anon="a-1", timestamp=_ago(90)))
    ingest(site, identify("u-1", anon="a-1", timestamp=_ago(89)))  # first identify: the same profile
    ingest(site, track(anon="a-2", timestamp=_ago(90)))
    ingest(site, identify("u-1", anon="a-2", timestamp=_ago(88)))  # merged into u-1

    assert anonymous_profiles_purge() == 0
    person = profile_of(site, "u-1")
    assert Event.objects.filter(profile=person).exclude(type="visited-site").count() == 4


@pytest.mark.django_db
def test_it_follows_each_sites_retention(site, other_site):
    other_site.anonymous_retention_days = 7
    other_site.save()
    here = _visitor(site, "a-1", days_ago=10)
    there = _visitor(other_site, "a-1", days_ago=10)

    assert anonymous_profiles_purge() == 1
    assert Profile.objects.filter(pk=here.pk).exists()
    assert not Profile.objects.filter(pk=there.pk).exists()


@pytest.mark.django_db
def test_it_purges_in_bounded_batches(site):
    idle = [_visitor(site, f"a-{i}", days_ago=100 + i, events=1) for i in range(5)]

    assert anonymous_profiles_purge(batch=2, max_batches=1) == 2
    # The longest idle go first.
    assert set(Profile.objects.filter(site=site).values_list("pk", flat=True)) == {p.pk for p in idle[:3]}
    assert purge_anonymous_profiles_task(batch=2, max_batches=5) == 3
    assert not Profile.objects.filter(site=site).exists()
    assert not Event.objects.filter(site=site).exists()


@pytest.mark.django_db(transaction=True)
def test_it_spares_a_profile_an_ingest_is_writing_to(site):
    """An idle visitor comes back while the purge runs: the ingest holds the profile's
    lock, so the purge skips it rather than deleting it under the new events."""
    idle = _visitor(site, "a-back", days_ago=90, events=1)
    inside = threading.Event()
    real_assign = sessions_module.assign_sessions

    def slow_assign(*args, **kwargs):
        inside.set()  # identities resolved and the profile locked; events not yet written
        time.sleep(1)
        return real_assign(*args, **kwargs)

    errors = []

    def come_back():
        try:
            ingest(site, track("Back", anon="a-back"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with mock.patch("tracking.ingest.core.assign_sessions", side_effect=slow_assign):
        visitor = threading.Thread(target=come_back)
        visitor.start()
        assert inside.wait(10)
        purged = anonymous_profiles_purge()
        visitor.join(30)

    assert not errors
    assert purged == 0
    assert Profile.objects.filter(pk=idle.pk).exists()
    assert Event.objects.filter(profile_id=idle.pk, type="Back").exists()
    assert not Event.objects.filter(site=site).exclude(profile_id__in=Profile.objects.values("pk")).exists()


@pytest.mark.django_db(transaction=True)
def test_it_lets_an_ingest_that_arrives_mid_purge_start_afresh(site):
    """The purge got the lock first: the ingest waits, finds the profile gone, retries
    and stores the visitor's new event under a new anonymous profile."""
    idle = _visitor(site, "a-back", days_ago=90, events=1)
    from profiles import maintenance

    real_delete = maintenance.profiles_delete
    deleting = threading.Event()

    def slow_delete(**kwargs):
        deleting.set()
        time.sleep(1)
        return real_delete(**kwargs)

    errors, results = [], []

    def come_back():
        try:
            assert deleting.wait(10)
            results.append(ingest(site, track("Back", anon="a-back")))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    visitor = threading.Thread(target=come_back)
    visitor.start()
    with mock.patch.object(maintenance, "profiles_delete", side_effect=slow_delete):
        assert anonymous_profiles_purge() == 1
    visitor.join(30)

    assert not errors and results[0].accepted == [0]
    fresh = profile_of(site, "a-back", ANON)
    assert fresh.pk != idle.pk and not Profile.objects.filter(pk=idle.pk).exists()
    assert list(Event.objects.filter(site=site).exclude(type="visited-site").values_list("profile_id", "type")) == [
        (fresh.pk, "Back")
    ]


# -- merged histories ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_repoints_a_merged_identified_history_in_batches(site, django_capture_on_commit_callbacks):
    ingest(site, identify("u-src"), *[track(f"e{i}", user="u-src") for i in range(5)])
    ingest(site, identify("u-dest"))
    src, dest = profile_of(site, "u-src"), profile_of(site, "u-dest")
    src_events = Event.objects.filter(profile=src).count()
    dest_events = Event.objects.filter(profile=dest).count()

    with mock.patch("profiles.tasks.repoint_merged_events_task.delay") as delay:
        with django_capture_on_commit_callbacks(execute=True):
            ingest(site, alias("u-src", "u-dest"), privileged=True)
    delay.assert_called_once_with(site.pk)  # large histories move in the background
    merge = ProfileMerge.objects.get(site=site)
    assert merge.repointed_at is None
    assert Event.objects.filter(profile=src).count() == src_events  # not moved yet

    assert merged_events_repoint(site_id=site.pk, batch=2, max_batches=1) == 2
    merge.refresh_from_db()
    assert merge.repointed_at is None  # bounded: more to do on the next run

    assert merged_events_repoint(site_id=site.pk, batch=2) == src_events - 2
    merge.refresh_from_db()
    assert merge.repointed_at is not None
    assert not Event.objects.filter(profile=src).exists()
    assert Event.objects.filter(profile=dest).count() == dest_events + src_events + 1  # and the alias
    assert merged_events_repoint(site_id=site.pk) == 0


@pytest.mark.django_db
def test_it_repoints_to_the_target_of_a_later_merge(site):
    ingest(site, identify("u-1"), track("one", user="u-1"))
    ingest(site, identify("u-2"), track("two", user="u-2"))
    ingest(site, identify("u-3"))
    ingest(site, alias("u-1", "u-2"), privileged=True)
    ingest(site, alias("u-2", "u-3"), privileged=True)

    merged_events_repoint(site_id=site.pk)

    u3 = profile_of(site, "u-3")
    assert set(Event.objects.filter(site=site).values_list("profile_id", flat=True)) == {u3.pk}
    assert not ProfileMerge.objects.filter(site=site, repointed_at__isnull=True).exists()


@pytest.mark.django_db
def test_a_visitor_whose_return_is_still_queued_is_not_purged(site, settings):
    idle = _visitor(site, "a-back", days_ago=61)
    settings.INGEST_MODE = "queued"
    settings.INGEST_MAX_BACKLOG = 0
    with mock.patch.object(drain_inbox_task, "delay"):
        answer = inbox.submit(site, [track("Product Viewed", anon="a-back", index=0)], received_at=timezone.now(), actor="write key")
        assert answer.profile_ids == {0: idle.pk}  # the answer promised the old profile

        assert anonymous_profiles_purge() == 0  # the queued call was stored first: active again
        assert profile_of(site, "a-back", "anonymous").pk == idle.pk
        with mock.patch.object(inbox, "store_queued", return_value=False):
            assert anonymous_profiles_purge(now=timezone.now() + timedelta(days=90)) == 0  # a backlog: next run


@pytest.mark.django_db(transaction=True)
def test_two_overlapping_repoint_runs_leave_no_event_on_a_tombstone_of_a_chain_merge(site):
    """u-1 is merged into u-2, then u-2 into u-3 while a run re-points u-1's events:
    the run the second merge enqueues overlaps it. Every event ends on u-3 (a run that
    had read u-2 as the target overwrote the other run's move with u-2 after that run
    had re-pointed u-2 and marked both merges done: events hidden on a tombstone)."""
    ingest(site, identify("u-1"), track("one", user="u-1"), track("two", user="u-1"))
    ingest(site, identify("u-2"), track("three", user="u-2"))
    ingest(site, identify("u-3"))
    ingest(site, alias("u-1", "u-2"), privileged=True)
    t_before, t_go, t_commit, r_paused, r_go = (threading.Event() for _ in range(5))
    t_pid, errors = [], []

    def gate(before=None, go=None, after=None, go_after=None):
        seen = []

        def wrapper(execute, sql, params, many, context):
            first = sql.lstrip().startswith("UPDATE tracking_event") and not seen
            if first:
                seen.append(sql)
                if before:
                    before.set()
                    assert go.wait(10)
            result = execute(sql, params, many, context)
            if first and after:
                after.set()
                assert go_after.wait(10)
            return result

        return wrapper

    def run(name, wrapper, **kwargs):
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                if name == "t":
                    t_pid.append(cursor.fetchone()[0])
            with connections["default"].execute_wrapper(wrapper):
                merged_events_repoint(site_id=site.pk, **kwargs)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((name, exc))
        finally:
            connections.close_all()

    first = threading.Thread(target=run, args=("t", gate(before=t_before, go=t_go, after=threading.Event(), go_after=t_commit)), kwargs={"batch": 1})
    first.start()
    assert t_before.wait(10)  # the first run is about to move u-1's events to u-2
    ingest(site, alias("u-2", "u-3"), privileged=True)
    second = threading.Thread(target=run, args=("r", gate(after=r_paused, go_after=r_go)))
    second.start()
    deadline = time.monotonic() + 10
    while not r_paused.is_set() and second.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    t_go.set()
    if r_paused.is_set():
        # The second run holds u-1's rows (moved to u-3, not committed): the first run's
        # move waits for them, then writes u-2 over them.
        while time.monotonic() < deadline and not _waits_on_a_lock(t_pid[0]):
            time.sleep(0.02)
        r_go.set()
    second.join(30)
    t_commit.set()
    first.join(30)
    assert not errors

    merged_events_repoint(site_id=site.pk)  # the next run (the beat's)

    u3 = profile_of(site, "u-3")
    assert set(Event.objects.filter(site=site).values_list("profile_id", flat=True)) == {u3.pk}
    assert not ProfileMerge.objects.filter(site=site, repointed_at__isnull=True).exists()


def _waits_on_a_lock(pid: int) -> bool:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"
