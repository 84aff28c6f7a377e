"""The ingestion inbox (tracking.inbox): Segment requests are answered once queued and
stored by a drain, exactly once, with the profile ids the answer promised."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.db import OperationalError, connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from profiles.models import Identity, Profile, ProfileMerge
from tests.answers import with_stored_ids
from tests.messages import group as group_message
from tests.messages import identify as identify_message
from tests.messages import ingest
from tests.messages import track as track_message
from tests.worker import celery_worker
from tracking import inbox, keys
from tracking import services as tracking_services
from tracking.models import Event, InboxBatch, MessageDedupe
from tracking.tasks import drain_inbox_task, message_ids_prune, prune_message_dedupe_task

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("queued")]



def post(site, path, body, *, key=None, **headers):
    key = key or site.primary_write_key().key
    auth = base64.b64encode(f"{key}:".encode()).decode()
    response = Client().post(
        path, data=json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Basic {auth}", **headers,
    )
    answer = with_stored_ids(response.json())
    response.json = lambda: answer  # these tests compare the answer's profiles with the database's
    return response


def batch(*messages):
    return {"batch": list(messages)}


def track(event="Product Viewed", n=0, **who):
    return {"type": "track", "event": event, "messageId": f"t-{event}-{n}-{sorted(who.items())}", **who}


def drain_all():
    return inbox.drain(idle_seconds=0)


def test_a_request_is_answered_once_queued_and_stored_by_the_drain(site):
    response = post(site, "/v1/batch", batch(track(anonymousId="a-1"), track("Signed Up", anonymousId="a-1")))

    assert response.status_code == 200, response.content
    assert InboxBatch.objects.count() == 1
    assert not Event.objects.filter(site=site).exists()

    stats = drain_all()

    assert (stats.rows, stats.messages) == (1, 2)
    assert not InboxBatch.objects.exists()
    profile = Identity.objects.get(site=site, key="a-1").profile
    assert response.json()["profile_ids"] == [profile.pk]  # the reserved id became the profile's
    stored = Event.objects.filter(site=site, profile=profile).values_list("type", flat=True)
    assert sorted(stored) == ["Product Viewed", "Signed Up", "visited-site"]


def test_known_people_are_answered_with_their_profile(site):
    known = ingest(site, identify_message("u-1", anon="a-1")).profile_ids[0]

    response = post(site, "/v1/track", {"event": "Order Completed", "userId": "u-1", "messageId": "m1"})

    assert response.json()["profile_id"] == known
    drain_all()
    assert Event.objects.filter(site=site, profile_id=known, type="Order Completed").count() == 1


def test_a_first_identify_keeps_the_anonymous_profile_it_promised(site):
    visitor = post(site, "/v1/track", track(anonymousId="a-9")).json()["profile_id"]
    drain_all()

    signed_in = post(site, "/v1/identify", {"userId": "u-9", "anonymousId": "a-9", "traits": {"plan": "pro"}})
    drain_all()

    assert signed_in.json()["profile_id"] == visitor
    assert Identity.objects.get(site=site, kind="user", key="u-9").profile_id == visitor
    assert Profile.objects.get(pk=visitor).properties == {"plan": "pro"}


def test_someone_else_signing_in_on_an_identified_browser_is_promised_a_new_profile(site):
    first = ingest(site, identify_message("u-10", anon="a-10")).profile_ids[0]

    switched = post(site, "/v1/identify", {"userId": "u-11", "anonymousId": "a-10", "messageId": "s1"})
    drain_all()

    promised = switched.json()["profile_id"]
    assert promised != first  # a switch, not a merge: the browser's profile is identified
    assert Identity.objects.get(site=site, kind="user", key="u-11").profile_id == promised
    assert Identity.objects.get(site=site, kind="user", key="u-10").profile_id == first


def test_promises_in_one_request_follow_the_rules_message_by_message(site):
    known = ingest(site, identify_message("u-12", anon="a-12")).profile_ids[0]
    visitor = post(site, "/v1/track", track(anonymousId="a-13")).json()["profile_id"]
    drain_all()

    answer = post(site, "/v1/batch", batch(
        track(n=1, anonymousId="a-13"),  # the visitor
        {"type": "identify", "userId": "u-13", "anonymousId": "a-13", "messageId": "i13"},  # signs in: kept
        track(n=2, userId="u-13"),  # now known by the user id promised above
        track(n=3, anonymousId="a-12"),  # an identified person's browser
        {"type": "identify", "userId": "u-14", "anonymousId": "a-12", "messageId": "i14"},  # switch
    )).json()
    drain_all()

    # Each distinct profile once, in message order: the visitor (kept on sign-in and then
    # named by the user id), the identified person, and a new person for the switch.
    assert len(answer["profile_ids"]) == 3
    first, second, new = answer["profile_ids"]
    assert (first, second) == (visitor, known) and new not in (known, visitor)
    stored = {i.key: i.profile_id for i in Identity.objects.filter(site=site, kind="user")}
    assert stored["u-13"] == visitor and stored["u-14"] == new


def test_a_persons_calls_sent_with_the_old_and_the_new_key_of_a_rotation_stay_in_order(site, settings):
    settings.INGEST_DRAINS = 1
    old = site.primary_write_key().key
    new = tracking_services.write_key_issue(site=site, label="rotated").key  # both active
    ingest(site, *(track_message(anon=f"a-{n}") for n in range(3)))  # three visits, then sign-ins
    for n, (key, plan) in enumerate([(new, "free"), (old, "pro"), (new, "basic")]):
        body = {"userId": "u-1", "anonymousId": f"a-{n}", "traits": {"plan": plan}, "messageId": f"m{n}"}
        assert post(site, "/v1/identify", body, key=key).status_code == 200
    assert InboxBatch.objects.count() == 3
    drain_all()
    person = Identity.objects.get(site=site, kind="user", key="u-1").profile
    assert person.properties["plan"] == "basic"  # the last call wins, as sent
    # Each merge names the key whose call made it.
    assert sorted(ProfileMerge.objects.filter(site=site).values_list("actor", flat=True)) == sorted(
        [f"write key {new}", f"write key {old}"]
    )


def test_a_retry_before_the_drain_is_stored_once(site):
    body = batch(track(n=1, anonymousId="a-2"), track(n=2, userId="u-2"))
    first = post(site, "/v1/batch", body)
    retry = post(site, "/v1/batch", body, HTTP_X_RETRY_COUNT="1")

    assert first.status_code == retry.status_code == 200
    assert InboxBatch.objects.count() == 2
    drain_all()

    assert Event.objects.filter(site=site, type="Product Viewed").count() == 2
    assert MessageDedupe.objects.filter(site=site).count() == 2
    people = {Identity.objects.get(site=site, key=k).profile_id for k in ("a-2", "u-2")}
    assert set(first.json()["profile_ids"]) == people


def test_a_full_inbox_answers_429_with_retry_after_and_queues_nothing(site, settings):
    settings.INGEST_MAX_BACKLOG = 3
    assert post(site, "/v1/batch", batch(*(track(n=i, anonymousId="a-3") for i in range(4)))).status_code == 200
    inbox._backlog.update(checked=0.0)

    response = post(site, "/v1/track", track(anonymousId="a-4"))

    assert response.status_code == 429
    assert response["Retry-After"] == "5"
    assert response.json()["code"] == "too_many_requests"
    assert InboxBatch.objects.count() == 1
    drain_all()
    inbox._backlog.update(checked=0.0)
    assert post(site, "/v1/track", track(anonymousId="a-4")).status_code == 200


def test_a_bad_signature_is_refused_before_anything_is_queued(site):
    site.only_signed_data = True
    site.save()

    unsigned = post(site, "/v1/track", track(userId="u-5"))
    signed = post(site, "/v1/track", track(userId="u-5", signature=keys.sign_identity(site.signing_secret, "u-5")))

    assert unsigned.status_code == 401
    assert signed.status_code == 200
    assert InboxBatch.objects.count() == 1


def test_an_alias_is_stored_at_once_so_a_refusal_can_be_answered(site):
    ingest(site, identify_message("u-a"), identify_message("u-b"))

    response = post(site, "/v1/alias", {"previousId": "u-a", "userId": "u-b"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "previousId"
    assert not InboxBatch.objects.exists()


def test_an_alias_is_stored_after_the_calls_queued_before_it(site):
    """A visitor signs in (queued), then the site aliases their anonymous id to a new
    user id: one person, as when each call is stored before its answer. The alias was
    stored first: it made a new person of a-7, and the identify then another for u-a."""
    post(site, "/v1/identify", {"userId": "u-a", "anonymousId": "a-7", "messageId": "i-7"})

    response = post(site, "/v1/alias", {"previousId": "a-7", "userId": "u-b", "messageId": "al-7"})
    drain_all()

    assert response.status_code == 200, response.content
    [person] = Profile.objects.filter(site=site, merged_into__isnull=True)
    assert set(Identity.objects.filter(profile=person).values_list("kind", "key")) == {
        ("user", "u-a"), ("user", "u-b"), ("anonymous", "a-7"),
    }
    assert response.json()["profile_ids"] == [person.pk]


def test_a_row_that_fails_is_set_aside_and_the_rest_are_stored(site):
    post(site, "/v1/track", track(anonymousId="a-6"))
    InboxBatch.objects.create(site=site, received_at="2026-01-01T00:00:00Z", actor="test", message_count=1, messages="[[")
    post(site, "/v1/track", track("Signed Up", anonymousId="a-6"))

    stats = drain_all()

    assert (stats.rows, stats.failed_rows) == (2, 1)
    bad = InboxBatch.objects.get()
    assert bad.failed_at is not None and "JSONDecodeError" in bad.last_error
    assert Event.objects.filter(site=site, type__in=["Product Viewed", "Signed Up"]).count() == 2
    assert inbox.retry_failed([bad.pk]) == 1
    assert InboxBatch.objects.get().failed_at is None


@pytest.mark.django_db(transaction=True)
def test_a_drain_skips_rows_another_drain_holds(site):
    post(site, "/v1/track", track(anonymousId="a-7"))
    post(site, "/v1/track", track("Signed Up", anonymousId="a-8"))
    first, second = InboxBatch.objects.order_by("id").values_list("id", flat=True)
    held, release = threading.Event(), threading.Event()

    def hold():
        with connections["default"].cursor() as cursor:  # a connection of this thread
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM tracking_inboxbatch WHERE id = %s FOR UPDATE", [first])
            held.set()
            release.wait(10)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    other = threading.Thread(target=hold)
    other.start()
    held.wait(10)
    try:
        stats = inbox.drain(idle_seconds=0)
    finally:
        release.set()
        other.join()

    assert stats.rows == 1
    assert list(InboxBatch.objects.values_list("id", flat=True)) == [first]
    assert Event.objects.filter(site=site, type="Signed Up").count() == 1
    assert connection.in_atomic_block is False


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drains_what_the_web_queued(site, tmp_path):
    with celery_worker(tmp_path) as worker:
        to_worker = lambda: drain_inbox_task.apply_async(queue=worker.queue)  # noqa: E731
        with mock.patch.object(drain_inbox_task, "delay", side_effect=to_worker):
            inbox._wake["at"] = 0.0
            response = post(site, "/v1/batch", batch(*(track(n=i, anonymousId=f"w-{i}") for i in range(50))))
        assert response.status_code == 200
        worker.wait_for(lambda: not InboxBatch.objects.exists())
    promised = set(response.json()["profile_ids"])
    stored = set(Event.objects.filter(site=site, type="Product Viewed").values_list("profile_id", flat=True))
    assert stored == promised and len(stored) == 50


@pytest.mark.django_db(transaction=True)
def test_no_more_drains_run_than_the_setting_allows(site, settings):
    settings.INGEST_DRAINS = 1
    post(site, "/v1/track", track(anonymousId="a-10"))
    with connections["default"].cursor():
        pass
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", [inbox.DRAIN_LOCK])
        assert inbox.drain(idle_seconds=0).rows == 0  # the one slot is taken: nothing drained
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, 0)", [inbox.DRAIN_LOCK])
        assert inbox.drain(idle_seconds=0).rows == 1
    finally:
        other.close()


def test_failed_rows_are_listed_in_the_admin_and_queued_again(site, admin_client):
    bad = InboxBatch.objects.create(
        site=site, received_at="2026-01-01T00:00:00Z", actor="test", message_count=1, messages="[[",
    )
    drain_all()
    bad.refresh_from_db()
    assert bad.failed_at is not None

    listing = admin_client.get("/admin/tracking/inboxbatch/?state=failed")
    assert listing.status_code == 200 and f">{bad.pk}<" in listing.content.decode()
    admin_client.post(
        "/admin/tracking/inboxbatch/", {"action": "retry", "_selected_action": [bad.pk]}, follow=True
    )
    bad.refresh_from_db()
    assert bad.failed_at is None and bad.attempts == 1


def test_values_orjson_refuses_are_queued_and_stored_as_sent(site):
    huge = 2**70  # JSON and jsonb take it; orjson does not
    body = track(anonymousId="a-11", properties={"points": huge, "note": "tab\there \\ back"})

    assert post(site, "/v1/track", body).status_code == 200
    drain_all()

    event = Event.objects.get(site=site, type="Product Viewed")
    assert event.properties == {"points": huge, "note": "tab\there \\ back"}


def test_a_drain_vacuums_the_inbox_as_it_goes(site, monkeypatch):
    # Stored rows are deleted: under load their dead versions slowed the claim and
    # backlog queries until a VACUUM (autovacuum comes at most once a minute).
    monkeypatch.setattr(inbox, "VACUUM_SECONDS", 0.0)
    calls = []
    monkeypatch.setattr(inbox, "vacuum", lambda: calls.append(1))
    post(site, "/v1/track", track(anonymousId="a-v"))

    stats = drain_all()

    assert stats.rows == 1
    assert calls, "a drain that stored rows vacuumed the inbox"


@pytest.mark.django_db(transaction=True)
def test_vacuum_runs_outside_a_transaction_and_is_skipped_inside_one(site):
    from django.db import transaction

    post(site, "/v1/track", track(anonymousId="a-w"))
    drain_all()
    inbox.vacuum()  # autocommit: runs (VACUUM refuses to run in a transaction block)
    with transaction.atomic():
        inbox.vacuum()  # skipped, not an error
    assert InboxBatch.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_vacuum_never_truncates_the_inbox(site):
    # Truncating takes an ACCESS EXCLUSIVE lock: every request's INSERT would wait on it.
    for n in range(40):
        post(site, "/v1/track", track(anonymousId=f"a-t{n}"))
    drain_all()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size('tracking_inboxbatch')")
        size = cursor.fetchone()[0]
        inbox.vacuum()
        cursor.execute("SELECT pg_relation_size('tracking_inboxbatch')")
        assert size > 0 and cursor.fetchone()[0] == size
        cursor.execute("VACUUM tracking_inboxbatch")  # autovacuum reads the same setting
        cursor.execute("SELECT pg_relation_size('tracking_inboxbatch')")
        assert cursor.fetchone()[0] == size
    assert InboxBatch.objects.count() == 0


def test_hot_statements_are_prepared_once_per_connection(site):
    from django.db import IntegrityError

    from tracking import db

    sql = "SELECT count(*) FROM tracking_inboxbatch WHERE site_id = %s"
    for _ in range(3):
        assert db.execute(sql, [site.pk]) == [(0,)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans + custom_plans FROM pg_prepared_statements WHERE statement LIKE %s",
            ["SELECT count(*) FROM tracking_inboxbatch WHERE site_id = $1%"],
        )
        assert cursor.fetchall() == [(3,)]  # prepared once, run three times
    with pytest.raises(IntegrityError):  # Django's exceptions, as from connection.cursor()
        db.execute("INSERT INTO tracking_inboxbatch (id) VALUES (NULL)", [])


def test_queued_text_is_compressed_with_lz4_where_the_server_has_it(site):
    import importlib

    migration = importlib.import_module("tracking.migrations.0008_inbox_lz4")
    with connection.cursor() as cursor:
        lz4 = migration.has_lz4(cursor)
        cursor.execute(
            "SELECT attstorage, attcompression FROM pg_attribute"
            " WHERE attrelid = 'tracking_inboxbatch'::regclass AND attname = 'messages'"
        )
        storage, compression = cursor.fetchone()
    assert (storage, compression) == (("m", "l") if lz4 else ("e", ""))

    many = [
        {"type": "track", "event": "Product Viewed", "anonymousId": "a-lz4", "messageId": f"lz4-{i}",
         "properties": {"sku": f"SKU-{i}", "note": "x" * 200}}
        for i in range(100)
    ]
    assert post(site, "/v1/batch", batch(*many)).status_code == 200
    drain_all()
    assert Event.objects.filter(site=site, profile__identities__key="a-lz4").count() == 101  # + visited-site


def test_with_two_drains_a_request_is_queued_per_lane_and_each_drain_stores_its_own(site, settings):
    settings.INGEST_DRAINS = 2
    people = [f"lane-{i}" for i in range(40)]
    expected = inbox.lanes([track_message(anon=p) for p in people], 2)
    response = post(site, "/v1/batch", batch(*(track(n=i, anonymousId=p) for i, p in enumerate(people))))
    assert response.status_code == 200, response.content
    promised = dict(zip(people, response.json()["profile_ids"], strict=True))

    rows = {row.lane: row for row in InboxBatch.objects.all()}
    assert set(rows) == {0, 1}
    assert [rows[0].message_count, rows[1].message_count] == [expected.count(0), expected.count(1)]
    assert inbox.drain_chunk(1)[:2] == (1, expected.count(1))  # lane 1's drain: its row only
    assert list(InboxBatch.objects.values_list("lane", flat=True)) == [0]
    assert inbox.drain_chunk(0)[:2] == (1, expected.count(0))
    stored = dict(
        Identity.objects.filter(site=site, key__in=people).values_list("key", "profile_id")
    )
    assert stored == promised  # each lane's row made the profiles the answer promised
    assert Event.objects.filter(site=site, type="Product Viewed").count() == 40


def test_postgresql_and_python_agree_on_a_profiles_lane():
    ids = [1, 2, 3, 7, 20, 65_535, 65_536, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 5, 2**53 + 1, 2**63 - 1]
    sql = inbox._PROFILE_LANE_SQL.format(id="i", count="c")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT i, c, ({sql})::int FROM unnest(%s::bigint[]) AS i, unnest(%s::int[]) AS c", [ids, [2, 3, 4, 8]]
        )
        rows = cursor.fetchall()
    assert len(rows) == len(ids) * 4
    assert all(lane == inbox.profile_lane(i, c) for i, c, lane in rows)


def test_a_new_visitors_calls_stay_in_one_lane_across_their_first_storage(site, settings):
    settings.INGEST_DRAINS = 4
    visitors = [f"first-{i}" for i in range(24)]
    first = post(site, "/v1/batch", batch(*(track(n=i, anonymousId=v) for i, v in enumerate(visitors))))
    promised = dict(zip(visitors, first.json()["profile_ids"], strict=True))
    lane_of = {m[2]: row.lane for row in InboxBatch.objects.all() for m in json.loads(row.messages)}
    assert len(set(lane_of.values())) > 1
    # The id reserved for each new visitor is in the lane their calls were queued in.
    assert {v: inbox.profile_lane(promised[v], 4) for v in visitors} == {v: lane_of[v] for v in visitors}
    drain_all()
    assert dict(Identity.objects.filter(site=site, key__in=visitors).values_list("key", "profile_id")) == promised
    # Known now: their next calls go to their profile's lane, the same one.
    for i, v in enumerate(visitors):
        assert post(site, "/v1/track", track(n=100 + i, anonymousId=v)).status_code == 200
    later = {json.loads(row.messages)[0][2]: row.lane for row in InboxBatch.objects.all()}
    assert later == {v: lane_of[v] for v in visitors}


def test_once_a_visitor_is_merged_all_their_calls_and_the_persons_share_one_lane(site, settings):
    settings.INGEST_DRAINS = 8
    person = ingest(site, identify_message("u-merged", anon="laptop-1")).profile_ids[0]
    person_lane = inbox.lanes([track_message(user="u-merged")], 8, {("user", "u-merged"): (person, True)})[0]
    phone = next(f"phone-{i}" for i in range(100) if inbox.lanes([track_message(anon=f"phone-{i}")], 8)[0] != person_lane)
    assert post(site, "/v1/track", track(anonymousId=phone)).status_code == 200
    # The phone's visitor signs in: queued in the visitor's lane with the visitor's calls,
    # not in the person's (the answer's promise is not taken for what the server knows).
    phone_lane = InboxBatch.objects.get().lane
    signed_in = {"type": "identify", "userId": "u-merged", "anonymousId": phone, "messageId": "i-merged"}
    assert post(site, "/v1/identify", signed_in).status_code == 200
    assert list(InboxBatch.objects.values_list("lane", flat=True)) == [phone_lane, phone_lane]
    drain_all()
    assert Identity.objects.get(site=site, key=phone).profile_id == person

    # Stored: the phone's id names the person now, so all their calls share the person's lane.
    calls = [track(n=1, userId="u-merged"), track(n=2, anonymousId=phone), track(n=3, anonymousId="laptop-1")]
    for call in calls:
        assert post(site, "/v1/track", call).status_code == 200
    assert list(InboxBatch.objects.values_list("lane", flat=True)) == [person_lane] * 3


def test_a_visitor_their_identify_and_their_events_stay_in_one_lane_in_order(site, settings):
    settings.INGEST_DRAINS = 4
    known = ingest(site, identify_message("u-lane", anon="d-lane")).profile_ids[0]
    visitor_lane = inbox.lanes([track_message(anon="v-lane")], 4)[0]
    other = next(
        name for name in (f"other-{i}" for i in range(100))
        if inbox.lanes([track_message(anon=name)], 4)[0] != visitor_lane
    )
    response = post(
        site, "/v1/batch",
        batch(
            track(n=1, anonymousId="v-lane"),
            track(n=2, anonymousId=other),
            {"type": "identify", "userId": "u-lane", "anonymousId": "v-lane", "messageId": "i-lane"},
            track("Signed Up", n=3, anonymousId="v-lane"),
        ),
    )
    assert response.status_code == 200, response.content
    assert known in response.json()["profile_ids"]
    rows = {row.lane: [m[2] for m in json.loads(row.messages)] for row in InboxBatch.objects.all()}
    # The visitor's three calls are one row, in request order; the other visitor's apart.
    assert rows[visitor_lane] == ["v-lane", "v-lane", "v-lane"]
    assert [other] in rows.values() and len(rows) == 2
    for lane in reversed(range(4)):  # the other lane first: order across lanes is free
        while inbox.drain_chunk(lane)[0]:
            pass
    assert not InboxBatch.objects.exists()
    visitor_events = Event.objects.filter(site=site, profile_id=known).exclude(type="visited-site")
    assert sorted(visitor_events.values_list("type", flat=True)) == [
        "Product Viewed", "Signed Up", "identify", "identify"
    ]  # the first identify, the visitor's event before and after theirs, merged in
    assert Identity.objects.get(site=site, key="v-lane").profile_id == known


def test_rows_queued_under_more_drains_are_drained_by_fewer(site, settings):
    settings.INGEST_DRAINS = 4
    people = [f"more-{i}" for i in range(12)]
    post(site, "/v1/batch", batch(*(track(n=i, anonymousId=p) for i, p in enumerate(people))))
    assert InboxBatch.objects.filter(lane__gte=2).exists()
    settings.INGEST_DRAINS = 2
    while inbox.drain_chunk(1)[0] or inbox.drain_chunk(0)[0]:
        pass
    assert not InboxBatch.objects.exists()
    assert Event.objects.filter(site=site, type="Product Viewed").count() == 12


@pytest.mark.django_db(transaction=True)
def test_a_request_split_over_lanes_is_queued_whole_or_not_at_all(site, settings):
    settings.INGEST_DRAINS = 2
    people = [f"whole-{i}" for i in range(20)]
    body = batch(*(track(n=i, anonymousId=p) for i, p in enumerate(people)))
    with mock.patch.object(inbox, "_insert", wraps=inbox._insert) as insert:
        assert post(site, "/v1/batch", body).status_code == 200
    assert insert.call_count == 1 and len(insert.call_args.args[1]) == 2  # both lanes, one statement
    InboxBatch.objects.all().delete()

    # The second lane's row fails: the first is not kept either.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION refuse_lane_one() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'the database went away'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER refuse_lane_one BEFORE INSERT ON tracking_inboxbatch"
            " FOR EACH ROW WHEN (NEW.lane = 1) EXECUTE FUNCTION refuse_lane_one()"
        )
    try:
        with pytest.raises(Exception, match="the database went away"):
            post(site, "/v1/batch", body)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_lane_one ON tracking_inboxbatch")
            cursor.execute("DROP FUNCTION refuse_lane_one()")
    assert not InboxBatch.objects.exists()


def queue_in_two_lanes(site, settings, prefix: str) -> None:
    """Two drains; a batch of 20 visitors queued as one row in each lane."""
    settings.INGEST_DRAINS = 2
    people = [f"{prefix}-{i}" for i in range(20)]
    post(site, "/v1/batch", batch(*(track(n=i, anonymousId=p) for i, p in enumerate(people))))
    assert set(InboxBatch.objects.values_list("lane", flat=True)) == {0, 1}


@pytest.mark.django_db(transaction=True)
def test_one_running_drain_stores_every_lane_whose_drain_is_not_running(site, settings):
    queue_in_two_lanes(site, settings, "turn")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # lane 1's drain is running elsewhere
            cursor.execute("SELECT pg_advisory_lock(%s, 1)", [inbox.DRAIN_LOCK])
        inbox.drain(idle_seconds=0)
        assert list(InboxBatch.objects.values_list("lane", flat=True)) == [1]  # left to it
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, 1)", [inbox.DRAIN_LOCK])
        inbox.drain(idle_seconds=0)  # the only drain now: it takes lane 1 in turn
        assert not InboxBatch.objects.exists()
    finally:
        other.close()
    assert Event.objects.filter(site=site, type="Product Viewed").count() == 20


@contextlib.contextmanager
def a_chunk_holding_lane(lane: int, *, drain_slot: int | None = None):
    """Another drain (running in ``drain_slot``) stores a chunk that holds ``lane`` until
    the block calls the function it is given, or ends."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            if drain_slot is not None:
                cursor.execute("SELECT pg_advisory_lock(%s, %s)", [inbox.DRAIN_LOCK, drain_slot])
            cursor.execute("BEGIN")
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [inbox.LANE_LOCK, lane])
        yield lambda: other.cursor().execute("COMMIT")
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_drain_starts_for_a_lane_another_drain_borrowed_and_takes_it_over_after_that_chunk(site, settings):
    queue_in_two_lanes(site, settings, "borrowed")
    # Drain 0 runs and is storing a chunk with lane 1 borrowed (lane 1 has no drain).
    with a_chunk_holding_lane(1, drain_slot=0) as end_chunk:
        helper = threading.Thread(target=lambda: (inbox.drain(idle_seconds=0), connections["default"].close()))
        helper.start()
        helper.join(0.5)
        # A drain started: slot 1 was free (borrowing does not take it), and it waits for
        # the borrowed chunk to end before it claims lane 1.
        assert helper.is_alive()
        assert set(InboxBatch.objects.values_list("lane", flat=True)) == {0, 1}
        end_chunk()
        helper.join(10)
        assert not helper.is_alive()
        assert list(InboxBatch.objects.values_list("lane", flat=True)) == [0]  # lane 0 is drain 0's


@pytest.mark.django_db(transaction=True)
def test_a_chunk_borrows_no_lane_another_chunk_holds(site, settings):
    queue_in_two_lanes(site, settings, "held-lane")
    with a_chunk_holding_lane(1) as end_chunk:
        assert inbox.drain_chunk([0, 1])[0] == 1  # its own lane only
        assert list(InboxBatch.objects.values_list("lane", flat=True)) == [1]
        end_chunk()
        assert inbox.drain_chunk([0, 1])[0] == 1
        assert not InboxBatch.objects.exists()


class held_profile:
    """Another transaction holds profile ``pid`` (as a drain storing its chunk would)
    until the block ends."""

    LOCK = "SELECT 1 FROM profiles_profile WHERE id = %s FOR UPDATE"

    def __init__(self, pid: int | str):
        self.pid = pid
        self.held, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold)

    def _hold(self):
        with connections["default"].cursor() as cursor:  # a connection of this thread
            cursor.execute("BEGIN")
            cursor.execute(self.LOCK, [self.pid])
            self.held.set()
            self.release.wait(20)
            cursor.execute("ROLLBACK")
        connections["default"].close()

    def __enter__(self):
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join()


@pytest.mark.django_db(transaction=True)
def test_a_drain_leaves_a_held_persons_messages_queued_and_stores_the_rest(site, settings):
    settings.INGEST_DRAINS = 1  # one row to look at
    busy = ingest(site, identify_message("u-busy", anon="d-busy")).profile_ids[0]
    free = ingest(site, identify_message("u-free", anon="d-free")).profile_ids[0]
    response = post(
        site, "/v1/batch",
        batch(
            track("Product Viewed", n=1, userId="u-busy"),
            track("Product Viewed", n=2, userId="u-free"),
            # The visitor signs in as the held person: their earlier and later calls wait
            # with the identify, so the merge still comes between them.
            track("Product Viewed", n=3, anonymousId="v-busy"),
            {"type": "identify", "userId": "u-busy", "anonymousId": "v-busy", "messageId": "i-busy"},
            track("Signed Up", n=4, anonymousId="v-busy"),
            track("Product Viewed", n=5, anonymousId="v-alone"),
        ),
    )
    assert response.status_code == 200, response.content
    row = InboxBatch.objects.get()

    with held_profile(busy):
        assert inbox.drain_chunk() == (1, 2, 0)  # no wait: two messages stored, the row kept
        kept = InboxBatch.objects.get()
        assert kept.pk == row.pk and kept.message_count == 4
        assert [m[-2] for m in json.loads(kept.messages)] == [0, 2, 3, 4]  # their indexes in the request
        assert Event.objects.filter(site=site, profile_id=free, type="Product Viewed").count() == 1
        assert not Event.objects.filter(site=site, profile_id=busy).exclude(type="identify").exists()
        assert not Identity.objects.filter(site=site, key="v-busy").exists()
        # Nothing of the kept messages is claimed: they are stored when they come round.
        assert not MessageDedupe.objects.filter(message_id="i-busy").exists()

    stats = drain_all()

    assert (stats.rows, stats.messages) == (1, 4)
    assert not InboxBatch.objects.exists()
    assert Identity.objects.get(site=site, key="v-busy").profile_id == busy
    viewed = Event.objects.filter(site=site, type="Product Viewed", message_id__startswith="t-")
    assert viewed.count() == 4  # each message once, none twice
    assert sorted(viewed.values_list("profile_id", flat=True)) == sorted(
        [busy, free, busy, Identity.objects.get(site=site, key="v-alone").profile_id]
    )
    assert Event.objects.filter(site=site, profile_id=busy, type="Signed Up").count() == 1
    # The answer's promises held: the visitor's reserved id is the profile made for them
    # and merged into the person; the lone visitor's is theirs.
    first_busy, first_free, visitor, alone = response.json()["profile_ids"]
    assert (first_busy, first_free) == (busy, free)
    assert Profile.objects.get(pk=visitor).merged_into_id == busy
    assert alone == Identity.objects.get(site=site, key="v-alone").profile_id


class held_company(held_profile):
    """Another transaction holds the company of key ``pid`` until the block ends."""

    LOCK = "SELECT 1 FROM profiles_company WHERE key = %s FOR UPDATE"


@pytest.mark.django_db(transaction=True)
def test_a_drain_leaves_the_group_calls_of_a_held_company_queued(site, settings):
    settings.INGEST_DRAINS = 1  # one row to look at
    from profiles.models import Company, CompanyMembership

    ingest(site, group_message("acme", user="u-first", traits={"plan": "free"}))
    response = post(
        site, "/v1/batch",
        batch(
            {"type": "group", "groupId": "acme", "userId": "u-g1", "traits": {"plan": "pro"}, "messageId": "g-1"},
            track("Product Viewed", n=1, userId="u-g1"),  # after the group call: waits with it
            {"type": "group", "groupId": "globex", "userId": "u-g2", "messageId": "g-2"},
            track("Product Viewed", n=2, userId="u-g3"),
        ),
    )
    assert response.status_code == 200, response.content

    with held_company("acme"):
        started = time.monotonic()
        assert inbox.drain_chunk() == (1, 2, 0)  # no wait: two messages stored, the row kept
        assert time.monotonic() - started < 5
        kept = InboxBatch.objects.get()
        assert [m[-2] for m in json.loads(kept.messages)] == [0, 1]
        assert set(Company.objects.values_list("key", flat=True)) == {"acme", "globex"}
        assert Company.objects.get(key="acme").properties == {"plan": "free"}

    assert drain_all().messages == 2
    assert not InboxBatch.objects.exists()
    assert Company.objects.get(key="acme").properties == {"plan": "pro"}
    members = CompanyMembership.objects.filter(company__key="acme").values_list("profile_id", flat=True)
    g1 = Identity.objects.get(site=site, key="u-g1").profile_id
    assert g1 in set(members)
    assert Event.objects.filter(site=site, profile_id=g1, type="Product Viewed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_chunk_of_only_held_people_stores_nothing_and_keeps_every_row_whole(site, settings):
    settings.INGEST_DRAINS = 1  # both rows in the lane drain_chunk() stores
    busy = ingest(site, identify_message("u-all-busy", anon="d-all-busy")).profile_ids[0]
    post(site, "/v1/track", track(n=1, userId="u-all-busy"))
    post(site, "/v1/track", track("Signed Up", n=2, anonymousId="d-all-busy"))
    before = list(InboxBatch.objects.order_by("id").values_list("id", "message_count", "messages"))

    with held_profile(busy):
        assert inbox.drain_chunk() == (2, 0, 0)

    assert list(InboxBatch.objects.order_by("id").values_list("id", "message_count", "messages")) == before
    assert not Event.objects.filter(site=site, profile_id=busy).exclude(type__in=["identify", "visited-site"]).exists()
    drain_all()
    assert not InboxBatch.objects.exists()
    assert Event.objects.filter(site=site, profile_id=busy, type__in=["Product Viewed", "Signed Up"]).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_only_drain_stores_every_lane_in_one_chunk(site, settings):
    queue_in_two_lanes(site, settings, "one")

    with mock.patch.object(inbox, "_store_rows", wraps=inbox._store_rows) as store_rows:
        stats = inbox.drain(idle_seconds=0)

    assert (stats.rows, stats.messages) == (2, 20)
    assert store_rows.call_count == 1  # one transaction for both lanes, as with one lane
    assert sorted(len(call.args[0]) for call in store_rows.call_args_list) == [2]


@pytest.mark.django_db(transaction=True)
def test_a_helper_drain_stops_after_a_small_chunk_and_leaves_the_rest_to_drain_zero(site, settings):
    queue_in_two_lanes(site, settings, "helper")
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:  # drain 0 is running elsewhere
            cursor.execute("SELECT pg_advisory_lock(%s, 0)", [inbox.DRAIN_LOCK])
        started = time.monotonic()
        stats = inbox.drain(idle_seconds=5)  # takes slot 1: a helper
        # It stored its lane's small chunk and stopped, without waiting 5 s for more.
        assert time.monotonic() - started < 3
        assert stats.rows == 1
        assert list(InboxBatch.objects.values_list("lane", flat=True)) == [0]
    finally:
        other.close()


def test_a_retry_set_aside_and_queued_again_after_the_dedupe_horizon_is_stored_once(site):
    body = {"type": "track", "event": "Order Completed", "anonymousId": "a-1", "messageId": "order-42"}
    assert post(site, "/v1/track", body).status_code == 200  # the answer was lost on the way back
    drain_all()
    assert post(site, "/v1/track", body).status_code == 200  # the client's retry
    with mock.patch.object(inbox, "_store_rows", side_effect=OperationalError("server closed the connection")):
        assert drain_all().failed_rows == 1  # set aside
    row = InboxBatch.objects.get()

    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(days=8)):
        assert prune_message_dedupe_task() == 0  # the set-aside retry still needs the id
    assert inbox.retry_failed([row.pk]) == 1  # an admin queues it again, days later
    drain_all()
    assert Event.objects.filter(site=site, message_id="order-42").count() == 1

    with mock.patch("django.utils.timezone.now", return_value=timezone.now() + timedelta(days=8)):
        assert prune_message_dedupe_task() == 1  # nothing queued: the usual horizon


def _dedupe_rows(site, ages_days: list[float]) -> None:
    now = timezone.now()
    MessageDedupe.objects.bulk_create(
        MessageDedupe(site=site, message_id=f"m-{n}", first_seen=now - timedelta(days=age))
        for n, age in enumerate(ages_days)
    )


def test_the_dedupe_prune_deletes_every_id_past_the_horizon_oldest_first_in_batches(site):
    # 25 ids past the 7 days, in batches of 4 (seven of them), 3 within: one run takes
    # them all (the old prune stopped after 20 batches a run, one run every 6 hours).
    _dedupe_rows(site, [8 + n / 10 for n in range(25)] + [6.9, 1, 0])
    with CaptureQueriesContext(connection) as queries:
        assert message_ids_prune(batch=4) == (25, True)
    deletes = [q["sql"] for q in queries if "DELETE FROM tracking_messagededupe" in q["sql"]]
    assert len(deletes) == 7
    assert sorted(MessageDedupe.objects.values_list("message_id", flat=True)) == ["m-25", "m-26", "m-27"]


def test_a_dedupe_prune_out_of_time_hands_on_to_a_fresh_task(site):
    _dedupe_rows(site, [8, 9, 10, 11, 12])
    with mock.patch.object(prune_message_dedupe_task, "delay") as delay:
        assert prune_message_dedupe_task(batch=2, seconds=0) == 2  # the oldest two
        delay.assert_called_once_with(batch=2, seconds=0, again=9)
        assert sorted(MessageDedupe.objects.values_list("message_id", flat=True)) == ["m-0", "m-1", "m-2"]
        delay.reset_mock()
        assert prune_message_dedupe_task(batch=2, seconds=0, again=0) == 2
        delay.assert_not_called()  # beat's next run takes over
        assert prune_message_dedupe_task(batch=2) == 1
        delay.assert_not_called()
    assert not MessageDedupe.objects.exists()


def test_a_time_with_an_offset_postgresql_does_not_take_is_stored_in_utc(site):
    """ISO 8601 (and Python) allow offsets up to ±23:59, PostgreSQL's time input only to
    ±15:59: such a timestamp was answered 200, then failed the drain's session insert
    and its request was set aside (a 500 in immediate mode). Times are kept in UTC."""
    sent = {**track(anonymousId="a-7"), "timestamp": "2026-01-01T12:00:00+23:59"}
    assert post(site, "/v1/batch", batch(sent)).status_code == 200

    stats = drain_all()

    assert stats.failed_rows == 0 and not InboxBatch.objects.exists()
    event = Event.objects.get(site=site, type="Product Viewed")
    assert event.occurred_at == datetime(2025, 12, 31, 12, 1, tzinfo=UTC)


def test_a_time_with_a_far_offset_is_stored_in_immediate_mode_too(site, settings):
    settings.INGEST_MODE = "immediate"
    sent = {**track(anonymousId="a-8"), "timestamp": "2026-01-01T12:00:00-20:00"}

    assert post(site, "/v1/batch", batch(sent)).status_code == 200

    assert Event.objects.get(site=site, type="Product Viewed").occurred_at == datetime(2026, 1, 2, 8, tzinfo=UTC)


@pytest.mark.django_db(transaction=True)
def test_a_company_made_meanwhile_by_another_transaction_keeps_its_traits(site):
    # Two people of a new company in two lanes: each drain finds no company and makes
    # it. The second's insert waits for the first to commit; it then wrote its traits
    # over all of the first's (an upsert). Now it starts again and applies its call to
    # the company as stored, by the stamps.
    from profiles.models import Company

    now = timezone.now()
    made, go = threading.Event(), threading.Event()

    def other_drain():
        with connections["default"].cursor() as cursor:  # a connection of this thread
            cursor.execute("BEGIN")
            cursor.execute(
                """INSERT INTO profiles_company (site_id, key, properties, property_stamps, created_at, updated_at)
                   VALUES (%s, 'acme', '{"plan": "pro", "size": 3}', %s, now(), now())""",
                [site.pk, json.dumps({"plan": [stamp_of(now), 0], "size": [stamp_of(now), 0]})],
            )
            made.set()
            go.wait(20)
            cursor.execute("COMMIT")
        connections["default"].close()

    thread = threading.Thread(target=other_drain)
    thread.start()
    assert made.wait(10)
    threading.Timer(0.5, go.set).start()  # commits while this ingest waits on its insert
    ingest(
        site, group_message("acme", user="u-2", traits={"plan": "free", "seats": 9}),
        received_at=now - timedelta(seconds=1),
    )
    thread.join()
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "pro", "size": 3, "seats": 9}


def stamp_of(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
