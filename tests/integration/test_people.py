"""People selectors and services on PostgreSQL: search, paging, merged ids, timelines,
the live feed, export and the right to be forgotten."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from profiles import selectors, services
from profiles.models import Company, CompanyMembership, Identity, Profile, ProfileMerge
from tests.people import company, event, events, merge, person, session
from tracking.keyset import Cursor, InvalidCursor, keyset_page
from tracking.models import Event, Session
from tracking.signals import profiles_forgotten

pytestmark = pytest.mark.django_db


def ids_of(people):
    return [p.pk for p in people]


def search(site, q, **kw):
    return ids_of(selectors.people_page(site=site, q=q, **kw).items)


# --- search ---------------------------------------------------------------------------


def test_it_finds_people_by_any_identity_key_prefix_in_any_case(site):
    bob = person(site, "user:Bob-42", "anonymous:a-xyz")
    ann = person(site, "user:ann", "email:Ann@Example.com")
    assert search(site, "bob") == [bob.pk]
    assert search(site, "BOB-4") == [bob.pk]
    assert search(site, "a-x") == [bob.pk]
    assert search(site, "ann@ex") == [ann.pk]
    assert search(site, "nobody") == []


def test_it_treats_like_wildcards_in_the_query_as_text(site):
    under = person(site, "user:a_b")
    person(site, "user:axb")
    assert search(site, "a_") == [under.pk]
    assert search(site, "%") == []


def test_it_finds_people_by_email_property_prefix(site):
    eve = person(site, "user:1001", properties={"email": "Eve@Shop.example"})
    person(site, "user:1002", properties={"email": "mallory@shop.example"})
    assert search(site, "eve@shop") == [eve.pk]


def test_it_finds_people_by_a_property_value(site):
    pro = person(site, "user:p", properties={"plan": "pro", "age": 30, "address": {"city": "Berlin"}})
    free = person(site, "user:f", properties={"plan": "free", "age": "30"})
    assert search(site, "plan=pro") == [pro.pk]
    assert sorted(search(site, "age=30")) == sorted([pro.pk, free.pk])
    assert search(site, "address.city = Berlin") == [pro.pk]
    assert search(site, "plan=enterprise") == []


def test_it_finds_a_person_by_profile_id(site):
    someone = person(site, "anonymous:a-1")
    assert search(site, str(someone.pk)) == [someone.pk]


def test_it_lists_live_people_of_the_site_only(site, other_site):
    live = person(site, "user:live")
    gone = person(site, "anonymous:a-gone")
    merge(gone, live)
    person(other_site, "user:live")
    assert search(site, "") == [live.pk]
    assert search(site, "a-gone") == [live.pk]  # the identity moved to the live profile
    assert search(site, str(gone.pk)) == []  # tombstones are not people


def test_it_pages_people_by_last_seen_both_ways_without_gaps(site):
    now = timezone.now()
    crowd = [person(site, f"user:u{i}", last_seen=now - timedelta(minutes=i % 4)) for i in range(11)]
    expected = [p.pk for p in sorted(crowd, key=lambda p: (p.last_seen, p.pk), reverse=True)]

    first = selectors.people_page(site=site, limit=4)
    second = selectors.people_page(site=site, limit=4, cursor=first.next)
    third = selectors.people_page(site=site, limit=4, cursor=second.next)
    assert ids_of(first.items) + ids_of(second.items) + ids_of(third.items) == expected
    assert first.previous is None and third.next is None

    back = selectors.people_page(site=site, limit=4, cursor=third.previous)
    assert ids_of(back.items) == ids_of(second.items)
    assert back.next is not None and back.previous is not None
    start = selectors.people_page(site=site, limit=4, cursor=back.previous)
    assert ids_of(start.items) == ids_of(first.items) and start.previous is None


def test_it_sorts_people_by_first_seen(site):
    now = timezone.now()
    old = person(site, "user:old", first_seen=now - timedelta(days=50), last_seen=now)
    new = person(site, "user:new", first_seen=now - timedelta(days=1), last_seen=now - timedelta(days=1))
    assert search(site, "", sort="first_seen") == [old.pk, new.pk]
    assert search(site, "", sort="-first_seen") == [new.pk, old.pk]
    assert search(site, "", sort="-last_seen") == [old.pk, new.pk]
    assert search(site, "", sort="last_seen") == [new.pk, old.pk]


def test_free_text_search_finds_the_same_people_however_many_match(site, other_site):
    # Few matches are found by their ids, many by testing rows along the sort's index
    # (profiles.selectors.people_queryset); a small cap makes every query take both
    # paths, and each must give what a plain reading of the rule gives, in order.
    now = timezone.now()
    specs = [
        (("user:ann-1",), {"email": "Ann@Example.com"}),
        (("anonymous:a-1", "anonymous:a-2"), {"email": "anna@shop.example"}),
        (("user:Bob", "email:annex@work.example"), {}),
        (("user:ann-2", "user:ann-3", "anonymous:ann-4"), {}),  # three matching identities
        (("user:carl",), {"email": "carl@annual.example"}),
        (("anonymous:a-3",), {}),
    ]
    people = [
        person(site, *ids, properties=props, last_seen=now - timedelta(minutes=n), first_seen=now - timedelta(days=n))
        for n, (ids, props) in enumerate(specs)
    ]
    gone = person(site, properties={"email": "ann.old@example.com"})
    merge(gone, people[0])
    person(other_site, "user:ann-9", properties={"email": "ann@other.example"})

    def reference(q):
        q = q.lower()
        keys = {p.pk: [i.key.lower() for i in p.identities.all()] for p in people}
        return [
            p.pk
            for p in people
            if str(p.properties.get("email", "")).lower().startswith(q)
            or any(key.startswith(q) for key in keys[p.pk])
            or str(p.pk) == q
        ]

    for q in ["ann", "ANN-", "a", "a-", "bob", "carl@", str(people[5].pk), str(gone.pk), "zzz", "%"]:
        expected = reference(q)  # people are in last-seen order, newest first
        for cap in (0, 1, 2, 3, 100):
            found = selectors.people_queryset(site=site, q=q, cap=cap).order_by("-last_seen", "-id")
            assert ids_of(found) == expected, (q, cap)
            oldest_first = selectors.people_queryset(site=site, q=q, cap=cap).order_by("first_seen", "id")
            assert ids_of(oldest_first) == expected[::-1], (q, cap)
            assert selectors.people_count(site=site, q=q, cap=cap) == (min(len(expected), cap), len(expected) > cap)
            # Paging one person at a time with the keyset cursor, as the list does.
            seen, page = [], keyset_page(
                selectors.people_queryset(site=site, q=q, cap=cap), field="last_seen", descending=True, cursor=None, limit=1
            )
            while True:
                seen += ids_of(page.items)
                if page.next is None:
                    break
                page = keyset_page(
                    selectors.people_queryset(site=site, q=q, cap=cap),
                    field="last_seen", descending=True, cursor=page.next, limit=1,
                )
            assert seen == expected, (q, cap)


def test_it_counts_matches_up_to_a_cap(site):
    for i in range(5):
        person(site, f"user:c{i}")
    assert selectors.people_count(site=site) == (5, False)
    assert selectors.people_count(site=site, cap=3) == (3, True)
    assert selectors.people_count(site=site, q="c1") == (1, False)


def test_it_rejects_cursors_it_did_not_issue():
    with pytest.raises(InvalidCursor):
        Cursor.decode("bm9wZQ")
    cursor = Cursor(timezone.now(), 7, backwards=True)
    assert Cursor.decode(cursor.encode()) == cursor


# --- one person -----------------------------------------------------------------------


def test_it_resolves_a_merged_profile_id_to_the_live_profile(site, other_site):
    first, second, live = person(site, "anonymous:a-1"), person(site, "anonymous:a-2"), person(site, "user:u")
    merge(first, second)
    merge(second, live)
    assert selectors.profile_get(site=site, profile_id=first.pk) == live
    assert selectors.profile_get(site=site, profile_id=second.pk) == live
    assert selectors.profile_get(site=site, profile_id=live.pk) == live
    assert selectors.profile_get(site=other_site, profile_id=live.pk) is None
    assert selectors.profile_get(site=site, profile_id=10**12) is None
    assert selectors.profile_merged_ids(profile=live) == [live.pk, *sorted([first.pk, second.pk])]


def test_it_finds_a_person_by_identity_key(site, other_site):
    both = person(site, "user:shared@example.com")
    other = person(site, "email:shared@example.com", "cookie:c-1")
    person(other_site, "user:c-1")
    assert selectors.profile_by_identity(site=site, key="shared@example.com") == both  # user wins
    assert selectors.profile_by_identity(site=site, key="shared@example.com", kind="email") == other
    assert selectors.profile_by_identity(site=site, key="c-1") == other
    assert selectors.profile_by_identity(site=site, key=str(other.pk), kind="profile") == other
    assert selectors.profile_by_identity(site=site, key="missing") is None


def test_it_reads_the_timeline_newest_first_in_keyset_pages(site):
    who = person(site, "user:t")
    start = timezone.now() - timedelta(days=70)  # crosses monthly partitions
    made = events(who, 25, start=start, step=timedelta(days=3))
    tie = event(who, "tie", at=made[-1].occurred_at)  # same time: the id breaks the tie
    expected = [tie.id] + [e.id for e in reversed(made)]

    seen, cursor = [], None
    while True:
        page = selectors.person_events_page(site=site, profile_ids=[who.pk], cursor=cursor, limit=7)
        seen += [e.id for e in page.items]
        if not page.next:
            break
        cursor = page.next
    assert seen == expected


def test_it_shows_events_of_merges_not_yet_repointed(site):
    live, big = person(site, "user:a"), person(site, "user:b")
    now = timezone.now()
    mine = event(live, "mine", at=now - timedelta(minutes=2))
    theirs = event(big, "theirs", at=now - timedelta(minutes=1))
    merge(big, live, repointed=False)
    detail = selectors.person_detail(site=site, profile=live)
    assert [e.id for e in detail.events.items] == [theirs.id, mine.id]
    assert detail.event_count == 2
    page = selectors.person_events_page(
        site=site, profile_ids=detail.event_profile_ids, cursor=None, limit=1
    )
    assert [e.id for e in page.items] == [theirs.id]
    rest = selectors.person_events_page(
        site=site, profile_ids=detail.event_profile_ids, cursor=page.next, limit=1
    )
    assert [e.id for e in rest.items] == [mine.id] and rest.next is None


@pytest.mark.django_db(transaction=True)
def test_a_timeline_read_while_the_repoint_commits_shows_every_event_once(site):
    """The background re-point commits a batch while a page of the timeline is read:
    the page shows each event once (it read the live id, then the tombstone's after
    the batch had moved its rows to the live id, and lost them)."""
    live, big = person(site, "user:a"), person(site, "user:b")
    now = timezone.now()
    made = [event(live if i % 2 else big, f"e{i}", at=now - timedelta(minutes=10 - i)) for i in range(6)]
    merge(big, live, repointed=False)
    ids = selectors.profile_event_ids(profile=live)
    assert ids == [live.pk, big.pk]

    reads = []

    def repoint_after_the_first_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "tracking_event" in sql and not reads:
            reads.append(sql)
            worker = threading.Thread(target=_repoint_in_own_connection, args=(site.pk,))
            worker.start()
            worker.join(30)
        return result

    with connection.execute_wrapper(repoint_after_the_first_read):
        page = selectors.person_events_page(site=site, profile_ids=ids, limit=50)

    assert reads and not Event.objects.filter(profile_id=big.pk).exists()  # the batch ran mid-read
    assert [e.id for e in page.items] == [e.id for e in reversed(made)]


def _repoint_in_own_connection(site_id):
    from profiles.maintenance import merged_events_repoint

    try:
        merged_events_repoint(site_id=site_id)
    finally:
        connections.close_all()


def test_it_gathers_a_persons_detail(site):
    who = person(site, "user:d", "anonymous:a-d", properties={"name": "Dee", "plan": "pro"})
    old = person(site, "anonymous:a-old")
    merge(old, who)
    company(who, "acme", name="Acme")
    s = session(who, landing_page="https://shop.example/")
    event(who, "page-view", session=s)
    detail = selectors.person_detail(site=site, profile=who)
    assert {(i.kind, i.key) for i in detail.identities} == {
        ("user", "d"), ("anonymous", "a-d"), ("anonymous", "a-old")
    }
    assert [c.key for c in detail.companies] == ["acme"]
    assert detail.sessions == [s] and detail.session_count == 1
    assert detail.event_count == 1
    assert detail.profile_ids == [who.pk, old.pk]


def test_it_reads_a_person_in_a_fixed_number_of_queries(site, django_assert_max_num_queries):
    who = person(site, "user:q")
    events(who, 120, start=timezone.now() - timedelta(days=5), step=timedelta(minutes=7))
    with django_assert_max_num_queries(8):
        selectors.person_detail(site=site, profile=who)


# --- live feed ------------------------------------------------------------------------


def test_it_lists_the_newest_events_of_the_site_by_arrival(site, other_site):
    who = person(site, "user:l")
    now = timezone.now()
    late = event(who, "late-arrival", at=now - timedelta(days=40), received_at=now - timedelta(seconds=5))
    fresh = event(who, "fresh", at=now - timedelta(seconds=30), received_at=now - timedelta(seconds=30))
    event(who, "stale", at=now - timedelta(days=3))  # outside the window
    event(person(other_site, "user:l"), "elsewhere")
    rows = selectors.live_events(site=site, hours=24, limit=10).items
    assert [r.event.id for r in rows] == [late.id, fresh.id]
    assert rows[0].profile == who


def test_the_live_feed_reads_the_narrowest_recent_window_that_holds_a_page(site, django_assert_num_queries):
    who = person(site, "user:busy")
    now = timezone.now()
    ago = [timedelta(milliseconds=300), timedelta(seconds=5), timedelta(seconds=40), timedelta(minutes=30)]
    made = [event(who, f"e{n}", at=now - a, received_at=now - a) for n, a in enumerate(ago)]
    # A page within the last second: one events query (and one for the people).
    with django_assert_num_queries(2):
        assert [r.event.id for r in selectors.live_events(site=site, limit=1).items] == [made[0].id]
    # Wider windows until a page is full, newest first, nothing older than needed.
    assert [r.event.id for r in selectors.live_events(site=site, limit=3).items] == [e.id for e in made[:3]]
    # A quiet site falls back to the whole span asked for.
    assert [r.event.id for r in selectors.live_events(site=site, limit=10).items] == [e.id for e in made]
    assert [r.event.id for r in selectors.live_events(site=site, hours=0.25, limit=10).items] == [e.id for e in made[:3]]


def test_the_live_feed_filters_by_type_and_pages_back_through_older_arrivals(site):
    who = person(site, "user:pager")
    now = timezone.now()
    made = [event(who, "order-completed" if n % 2 else "page-view", at=now - timedelta(minutes=n),
                  received_at=now - timedelta(minutes=n)) for n in range(7)]
    first = selectors.live_events(site=site, limit=3)
    assert [r.event.id for r in first.items] == [e.id for e in made[:3]]
    second = selectors.live_events(site=site, limit=3, before=first.next)
    assert [r.event.id for r in second.items] == [e.id for e in made[3:6]]
    third = selectors.live_events(site=site, limit=3, before=second.next)
    assert [r.event.id for r in third.items] == [made[6].id] and third.next is None
    orders = selectors.live_events(site=site, limit=10, type_prefix="order")
    assert [r.event.id for r in orders.items] == [made[1].id, made[3].id, made[5].id]
    # In any case: "order" finds "Order Completed" too.
    shouted = event(who, "Order Completed", at=now, received_at=now)
    assert selectors.live_events(site=site, limit=10, type_prefix="order").items[0].event.id == shouted.id


# --- export and forget -----------------------------------------------------------------


@pytest.fixture
def full_person(site):
    who = person(site, "user:gdpr", "email:gdpr@example.com", properties={"email": "gdpr@example.com", "plan": "pro"})
    anon = person(site, "anonymous:a-gdpr")
    pending = person(site, "user:gdpr-old")
    event(anon, "before-login", at=timezone.now() - timedelta(days=2))
    merge(anon, who)
    event(pending, "old-account", at=timezone.now() - timedelta(days=1))
    merge(pending, who, repointed=False)
    company(who, "acme", name="Acme")
    s = session(who)
    event(who, "order-completed", session=s, properties={"total": 20})
    return who, anon, pending


def test_it_exports_everything_about_a_person(site, full_person):
    who, anon, pending = full_person
    data = services.profile_export(site=site, profile=who)
    assert data["id"] == who.pk and data["site_id"] == site.pk
    assert data["properties"] == {"email": "gdpr@example.com", "plan": "pro"}
    assert sorted(data["merged_profile_ids"]) == sorted([anon.pk, pending.pk])
    assert {(i["kind"], i["key"]) for i in data["identities"]} == {
        ("user", "gdpr"), ("email", "gdpr@example.com"), ("anonymous", "a-gdpr"), ("user", "gdpr-old")
    }
    assert [c["key"] for c in data["companies"]] == ["acme"]
    assert len(data["sessions"]) == 1
    assert [e["type"] for e in data["events"]] == ["before-login", "old-account", "order-completed"]
    assert data["events"][2]["properties"] == {"total": 20}
    assert {m["source_id"] for m in data["merges"]} == {anon.pk, pending.pk}


@pytest.mark.django_db(transaction=True)
def test_a_person_merged_into_another_while_being_forgotten_is_forgotten_whole(site):
    """The erase waits for the profile's lock while an alias merges the person into
    another: what it then erases is the person they are now, not the tombstone alone
    (which left their user id, sessions and properties on the other profile)."""
    from unittest import mock

    from tests.messages import alias, identify, ingest, profile_of, track
    from tracking import sessions as sessions_module

    ingest(site, identify("u-gone", traits={"email": "gone@example.com"}), track("Viewed", user="u-gone"))
    ingest(site, identify("u-other"))
    gone = profile_of(site, "u-gone")
    inside = threading.Event()
    real_assign = sessions_module.assign_sessions

    def slow_assign(*args, **kwargs):
        inside.set()  # both profiles locked by the alias, not committed yet
        time.sleep(1)
        return real_assign(*args, **kwargs)

    errors = []

    def merge_them():
        try:
            ingest(site, alias("u-gone", "u-other"), privileged=True)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    with mock.patch("tracking.ingest.core.assign_sessions", side_effect=slow_assign):
        merging = threading.Thread(target=merge_them)
        merging.start()
        assert inside.wait(10)
        services.profile_forget(site=site, profile=gone)
        merging.join(30)

    assert not errors
    assert not Identity.objects.filter(site=site, key="u-gone").exists()
    assert not Profile.objects.filter(site=site, properties__email="gone@example.com").exists()
    assert not Event.objects.filter(site=site).exists()
    assert not Session.objects.filter(site=site).exists()


def test_it_forgets_a_person_and_nothing_else(site, other_site, full_person):
    who, anon, pending = full_person
    neighbour = person(site, "user:neighbour")
    company(neighbour, "acme")
    event(neighbour, "page-view", session=session(neighbour))
    stranger = person(other_site, "user:gdpr")
    event(stranger, "page-view")

    forgotten = []
    handler = lambda **kw: forgotten.append(kw)  # noqa: E731
    profiles_forgotten.connect(handler)
    try:
        counts = services.profile_forget(site=site, profile=who)
    finally:
        profiles_forgotten.disconnect(handler)

    # Higher layers (segments, campaigns) hear of it, to delete their rows of the person.
    assert [(f["site_id"], sorted(f["profile_ids"])) for f in forgotten] == [(site.pk, sorted([who.pk, anon.pk, pending.pk]))]
    assert counts["events"] == 3 and counts["profiles"] == 3 and counts["sessions"] == 1
    ids = [who.pk, anon.pk, pending.pk]
    assert not Profile.objects.filter(pk__in=ids).exists()
    assert not Event.objects.filter(profile_id__in=ids).exists()
    assert not Identity.objects.filter(profile_id__in=ids).exists()
    assert not Session.objects.filter(profile_id__in=ids).exists()
    assert not CompanyMembership.objects.filter(profile_id__in=ids).exists()
    assert not ProfileMerge.objects.filter(target_id=who.pk).exists()
    # Everybody else is untouched.
    assert Event.objects.filter(profile_id=neighbour.pk).count() == 1
    assert Event.objects.filter(profile_id=stranger.pk).count() == 1
    assert Identity.objects.filter(profile=neighbour).count() == 1
    assert Identity.objects.filter(profile=stranger).count() == 1
    assert Session.objects.filter(profile=neighbour).count() == 1
    assert Company.objects.get(site=site, key="acme").members.get() == neighbour


def test_an_export_holds_the_properties_a_merged_away_profile_kept(site):
    """A merge keeps the target's value of a property both had; the source's stays on its
    tombstone (personal data held about the person), so the export must hold it too."""
    from tests.messages import alias, identify, ingest, profile_of

    ingest(site, identify("u-old", traits={"email": "old@example.com", "phone": "555"}))
    ingest(site, identify("u-new", traits={"email": "new@example.com"}))
    old = profile_of(site, "u-old")
    ingest(site, alias("u-old", "u-new"), privileged=True)
    who = profile_of(site, "u-new")
    assert Profile.objects.get(pk=old.pk).properties["email"] == "old@example.com"

    data = services.profile_export(site=site, profile=who)

    assert data["properties"] == {"email": "new@example.com", "phone": "555"}
    assert [(p["id"], p["properties"]) for p in data["merged_profiles"]] == [
        (old.pk, {"email": "old@example.com", "phone": "555"})
    ]
