"""Every identity rule of DESIGN "People and identity", one test each, through the real
ingestion service on PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from profiles.models import Company, CompanyMembership, Identity, Profile, ProfileMerge
from tests.messages import (
    alias,
    event_by_message,
    events_of,
    group,
    identify,
    ingest,
    live,
    profile_of,
    set_properties,
    track,
)
from tracking import keys
from tracking.ingest.schema import RequestRejected
from tracking.models import Event, MessageDedupe, Session

pytestmark = pytest.mark.django_db

ANON = Identity.Kind.ANONYMOUS


def _live_profiles(site):
    return Profile.objects.filter(site=site, merged_into__isnull=True)


def event_by_message_type(site, type_):
    return Event.objects.get(site=site, type=type_)


# -- identify ------------------------------------------------------------------------------


def test_it_marks_the_anonymous_profile_identified_on_first_identify(site):
    ingest(site, track("Product Viewed", anon="a-1"), track("Product Added", anon="a-1"))
    anonymous = profile_of(site, "a-1", ANON)
    assert not anonymous.is_identified

    result = ingest(site, identify("u-1", anon="a-1", traits={"email": "ann@example.com"}))

    person = profile_of(site, "u-1")
    assert person.pk == anonymous.pk == result.profile_ids[0]
    assert person.is_identified
    assert person.properties == {"email": "ann@example.com"}
    assert [e.type for e in events_of(site, person)] == ["Product Viewed", "Product Added", "identify"]
    assert not ProfileMerge.objects.filter(site=site).exists()  # nothing moved
    assert _live_profiles(site).count() == 1


def test_it_merges_an_anonymous_profile_into_a_known_user(site):
    ingest(site, identify("u-1", anon="a-old", traits={"plan": "pro", "name": "Ann"}))
    known = profile_of(site, "u-1")
    # Ann on a new device, browsing anonymously before logging in.
    ingest(
        site,
        track("Product Viewed", anon="a-new"),
        set_properties({"plan": "free", "color": "red"}, anon="a-new"),
        group("acme", anon="a-new", traits={"name": "Acme"}),
    )
    anonymous = profile_of(site, "a-new", ANON)
    assert anonymous.pk != known.pk
    anonymous_sessions = set(Session.objects.filter(profile=anonymous).values_list("pk", flat=True))
    assert anonymous_sessions

    result = ingest(site, identify("u-1", anon="a-new"), actor="write key wk_test")

    assert result.profile_ids[0] == known.pk
    known.refresh_from_db()
    anonymous.refresh_from_db()
    assert anonymous.merged_into_id == known.pk
    assert not events_of(site, anonymous, include_visits=True)
    assert {e.type for e in events_of(site, known)} >= {"Product Viewed", "set-properties", "group"}
    assert set(Session.objects.filter(profile=known).values_list("pk", flat=True)) >= anonymous_sessions
    assert list(CompanyMembership.objects.filter(company__key="acme").values_list("profile_id", flat=True)) == [
        known.pk
    ]
    # The target's properties win; the anonymous profile's new keys are kept.
    assert known.properties == {"plan": "pro", "name": "Ann", "color": "red"}
    assert profile_of(site, "a-new", ANON).pk == known.pk

    merge = ProfileMerge.objects.get(site=site)
    assert (merge.source_id, merge.target_id) == (anonymous.pk, known.pk)
    assert merge.reason == ProfileMerge.Reason.IDENTIFY
    assert merge.identities == {"userId": "u-1", "anonymousId": "a-new"}
    assert merge.actor == "write key wk_test"
    assert merge.repointed_at is not None  # an anonymous history moves in the ingest itself


def test_it_switches_without_merging_when_the_anonymous_id_is_already_identified(site):
    ingest(site, identify("u-ann", anon="a-shared", traits={"name": "Ann"}))
    ann = profile_of(site, "u-ann")

    # Bob logs in on Ann's browser: the device's anonymous id already names Ann.
    result = ingest(site, identify("u-bob", anon="a-shared", traits={"name": "Bob"}))
    ingest(site, track("Order Completed", user="u-bob", anon="a-shared"))

    bob = profile_of(site, "u-bob")
    assert result.profile_ids[0] == bob.pk != ann.pk
    assert not ProfileMerge.objects.filter(site=site).exists()
    ann.refresh_from_db()
    assert ann.merged_into_id is None and ann.properties == {"name": "Ann"}
    assert bob.properties == {"name": "Bob"}
    assert [e.type for e in events_of(site, bob)] == ["identify", "Order Completed"]
    assert [e.type for e in events_of(site, ann)] == ["identify"]


def test_it_merges_only_on_identify_not_on_a_track_naming_both_ids(site):
    """DESIGN merges an anonymous history on identify. A track that carries a known
    userId and an anonymousId of another (anonymous) profile is that user's event, but
    does not merge the anonymous history: the identify call is the merge signal
    (PostHog's $identify, Segment's identify)."""
    ingest(site, identify("u-1", anon="a-1"))
    ingest(site, track("Viewed", anon="a-2"))
    ingest(site, track("Clicked", user="u-1", anon="a-2"))
    assert [e.type for e in events_of(site, profile_of(site, "u-1"))] == ["identify", "Clicked"]
    assert [e.type for e in events_of(site, profile_of(site, "a-2", ANON))] == ["Viewed"]


# -- alias ---------------------------------------------------------------------------------------


def test_it_merges_irreversibly_on_alias(site):
    ingest(site, identify("u-dest", traits={"tier": "gold"}))
    ingest(site, track("Viewed", anon="a-src"), set_properties({"tier": "none", "x": 1}, anon="a-src"))
    dest, src = profile_of(site, "u-dest"), profile_of(site, "a-src", ANON)

    result = ingest(site, alias("a-src", "u-dest"), actor="write key wk_1")

    assert result.accepted == [0] and result.profile_ids[0] == dest.pk
    src.refresh_from_db()
    dest.refresh_from_db()
    assert src.merged_into_id == dest.pk
    assert dest.properties == {"tier": "gold", "x": 1}
    merge = ProfileMerge.objects.get(site=site)
    assert merge.reason == ProfileMerge.Reason.ALIAS
    assert merge.identities == {"userId": "u-dest", "previousId": "a-src"}
    assert merge.actor == "write key wk_1"

    # Afterwards, data under either id lands on dest — there is no way back.
    later = ingest(site, track("After", anon="a-src"), track("After", user="u-dest"), identify("u-dest", anon="a-src"))
    assert set(later.profile_ids.values()) == {dest.pk}
    assert _live_profiles(site).count() == 1
    assert {e.profile_id for e in Event.objects.filter(site=site)} == {dest.pk}


def test_it_makes_an_unknown_previous_id_name_the_destination(site):
    """alias(previousId, userId) with a previousId the server never saw: Segment users
    (Mixpanel-style aliasing) expect later data under that id, as an anonymousId or as a
    userId, to land on userId's person."""
    ingest(site, identify("u-dest"))
    dest = profile_of(site, "u-dest")

    ingest(site, alias("legacy-42", "u-dest"))
    result = ingest(site, track("A", anon="legacy-42"), track("B", user="legacy-42"))

    assert set(result.profile_ids.values()) == {dest.pk}
    assert _live_profiles(site).count() == 1


def test_it_refuses_to_alias_two_identified_people_with_a_write_key(site):
    ingest(site, identify("u-ann", traits={"name": "Ann"}), identify("u-bob", traits={"name": "Bob"}))
    ann, bob = profile_of(site, "u-ann"), profile_of(site, "u-bob")
    refused = alias("u-ann", "u-bob", message_id="alias-1")

    result = ingest(site, track("Before", anon="a-1"), refused, track("After", user="u-ann", message_id="after"))

    assert [e.as_dict() for e in result.errors] == [
        {
            "index": 1,
            "field": "previousId",
            "reason": "merging two identified people needs the secret key or a signature of userId",
        }
    ]
    assert 1 not in result.accepted and 1 not in result.profile_ids
    assert not Event.objects.filter(site=site, type="alias").exists()
    assert not ProfileMerge.objects.filter(site=site).exists()
    assert profile_of(site, "u-ann").pk == ann.pk != bob.pk
    assert event_by_message(site, "after").profile_id == ann.pk


def test_it_lets_a_refused_alias_be_retried_with_the_same_message_id(site):
    """A refused message was not accepted, so its messageId is not used up: the client
    may send it again, signed or with the secret key, and it is stored then."""
    ingest(site, identify("u-ann"), identify("u-bob"))
    first = ingest(site, alias("u-ann", "u-bob", message_id="alias-1"))
    assert first.errors and not first.accepted
    assert not MessageDedupe.objects.filter(site=site, message_id="alias-1").exists()

    again = ingest(site, alias("u-ann", "u-bob", message_id="alias-1"), privileged=True, actor="secret key")

    assert again.accepted == [0] and not again.duplicates
    assert event_by_message(site, "alias-1").type == "alias"


def test_a_refused_call_retried_signed_in_the_same_batch_is_stored_once(site):
    ingest(site, identify("u-x"), identify("u-y"))
    signature = keys.sign_identity(site.signing_secret, "u-y")
    result = ingest(
        site,
        alias("u-x", "u-y", message_id="dup"),
        alias("u-x", "u-y", message_id="dup", signature=signature),
        alias("u-x", "u-y", message_id="dup", signature=signature),  # and once more
    )
    assert [e.index for e in result.errors] == [0]
    assert (result.accepted, result.duplicates) == ([1], [2])
    assert ProfileMerge.objects.filter(site=site).count() == 1
    assert Event.objects.filter(site=site, message_id="dup").count() == 1


def test_a_refused_call_repeated_in_the_same_batch_names_no_profile_in_the_answer(site):
    # The repeat was answered as a retry, with the profile its ids name now (u-y's),
    # though nothing of it was stored and its first copy named none.
    ingest(site, identify("u-x"), identify("u-y"))
    result = ingest(
        site,
        track("Viewed", anon="a-1", message_id="t"),
        alias("u-x", "u-y", message_id="dup"),
        alias("u-x", "u-y", message_id="dup"),
    )
    assert sorted(e.index for e in result.errors) == [1, 2]
    assert (result.accepted, result.duplicates) == ([0], [])
    assert result.profile_ids == {0: profile_of(site, "a-1", Identity.Kind.ANONYMOUS).pk}


@pytest.mark.parametrize("how", ["secret key", "signature"])
def test_it_aliases_two_identified_people_with_the_secret_key_or_a_signature(site, how):
    ingest(
        site,
        identify("u-ann", traits={"name": "Ann", "city": "Oslo"}),
        track("Ann's", user="u-ann"),
        identify("u-bob", traits={"name": "Bob"}),
    )
    ann, bob = profile_of(site, "u-ann"), profile_of(site, "u-bob")
    if how == "secret key":
        result = ingest(site, alias("u-ann", "u-bob"), privileged=True, actor="secret key sk_x")
    else:
        signature = keys.sign_identity(site.signing_secret, "u-bob")
        result = ingest(site, alias("u-ann", "u-bob", signature=signature))

    assert not result.errors and result.profile_ids[0] == bob.pk
    ann.refresh_from_db()
    bob.refresh_from_db()
    assert ann.merged_into_id == bob.pk
    assert bob.properties == {"name": "Bob", "city": "Oslo"}
    merge = ProfileMerge.objects.get(site=site)
    assert merge.repointed_at is None  # two identified histories: moved in the background
    assert live(event_by_message_type(site, "Ann's").profile_id) == bob.pk
    assert profile_of(site, "u-ann").pk == bob.pk



def test_it_refuses_an_alias_signed_for_the_wrong_id(site):
    ingest(site, identify("u-ann"), identify("u-bob"))
    with pytest.raises(RequestRejected) as rejected:
        ingest(site, alias("u-ann", "u-bob", signature=keys.sign_identity(site.signing_secret, "u-ann")))
    assert rejected.value.status == 401
    assert not ProfileMerge.objects.filter(site=site).exists()


# -- properties ------------------------------------------------------------------------------


def test_it_deletes_a_property_set_to_null_and_keeps_the_others(site):
    values = {
        "name": "Ann",
        "age": 31,
        "score": 4.5,
        "vip": True,
        "tags": ["a", "b"],
        "address": {"city": "Oslo", "zip": None},
        "empty": "",
        "zero": 0,
    }
    ingest(site, identify("u-1", traits=values))
    assert profile_of(site, "u-1").properties == values

    ingest(site, set_properties({"age": None, "tags": ["c"], "missing": None}, user="u-1"))

    expected = {**values, "tags": ["c"]}
    del expected["age"]
    assert profile_of(site, "u-1").properties == expected


def test_it_shallow_merges_nested_objects(site):
    ingest(site, identify("u-1", traits={"address": {"city": "Oslo", "zip": "0150"}}))
    ingest(site, set_properties({"address": {"city": "Bergen"}}, user="u-1"))
    assert profile_of(site, "u-1").properties == {"address": {"city": "Bergen"}}


# -- junk ids --------------------------------------------------------------------------------

JUNK = ["", "   ", "null", "NULL", "undefined", "Undefined", "anonymous", "ANONYMOUS", "guest", "Guest",
        "0", "-1", "[object Object]", "[OBJECT OBJECT]", "NaN", "nan", "none", "None", "true", "TRUE",
        "false", "False", 0, -1, float("nan")]
FIELDS = {
    "userId": lambda junk: identify(junk),
    "anonymousId": lambda junk: track(anon=junk),
    "previousId": lambda junk: alias(junk, "u-1"),
    "groupId": lambda junk: group(junk, user="u-1"),
    "sessionId": lambda junk: track(anon="a-1", session_id=junk),
    "profileId": lambda junk: track(profile_id=junk),
    "email": lambda junk: track(anon="a-2", identities=[("email", junk)]),
}


@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_it_rejects_junk_ids(site, field, junk):
    result = ingest(site, track("ok", anon="a-ok"), FIELDS[field](junk))

    assert result.accepted == [0]
    assert len(result.errors) == 1
    error = result.errors[0].as_dict()
    assert error["index"] == 1 and error["field"] == field
    assert "not a usable id" in error["reason"] or "is required" in error["reason"]
    assert Event.objects.filter(site=site).exclude(type="visited-site").count() == 1
    assert not Identity.objects.filter(site=site).exclude(key="a-ok").exists()
    assert not Company.objects.filter(site=site).exists()


def test_it_never_merges_through_a_junk_id(site):
    ingest(site, identify("u-ann"), identify("u-bob"))
    result = ingest(site, identify("u-ann", anon="undefined"), identify("u-bob", anon="undefined"))
    assert {e.field for e in result.errors} == {"anonymousId"}
    assert not ProfileMerge.objects.filter(site=site).exists()
    assert _live_profiles(site).count() == 2


# -- profile ids and sessions -----------------------------------------------------------------


def test_it_makes_a_new_profile_for_an_unknown_profile_id(site, other_site):
    ingest(other_site, track(anon="a-elsewhere"))
    elsewhere = Profile.objects.get(site=other_site)
    result = ingest(site, track(profile_id=987_654_321), track(profile_id=elsewhere.pk))

    made = Profile.objects.filter(site=site).order_by("pk")
    assert len(made) == 2  # another site's profile is unknown here too
    assert sorted(result.profile_ids.values()) == [p.pk for p in made]
    assert elsewhere.pk not in result.profile_ids.values()
    # The returned id works from then on.
    again = ingest(site, track(profile_id=result.profile_ids[0]))
    assert again.profile_ids[0] == result.profile_ids[0]


def test_it_treats_a_non_numeric_profile_id_as_unknown(site):
    """Our profile ids are numbers; a string id no server of ours issued (a Tracardi
    UUID kept by a client) is unknown, which is not an error: a new profile."""
    result = ingest(site, track(profile_id="4b1e0c8e-61c3-4b6e-a2a1-7ad8d8c7b0f1"))
    assert result.accepted == [0]
    assert Profile.objects.filter(site=site, pk=result.profile_ids[0]).exists()


def test_it_recovers_the_profile_of_a_known_session(site):
    first = ingest(site, track("Landing", anon="a-1", session_id="s-1"))
    pid = first.profile_ids[0]

    # Tracardi lost the profile id but still sends its session.
    result = ingest(site, track("Next", session_id="s-1"))

    assert result.profile_ids[0] == pid
    assert Profile.objects.filter(site=site).count() == 1
    landing, nxt = (event_by_message_type(site, t) for t in ("Landing", "Next"))
    assert landing.session_id == nxt.session_id


def test_it_resolves_a_merged_profile_id_to_the_live_profile(site):
    old = ingest(site, track(anon="a-1")).profile_ids[0]
    ingest(site, identify("u-1", traits={"x": 1}))
    ingest(site, identify("u-1", anon="a-1"))
    person = profile_of(site, "u-1")
    assert Profile.objects.get(pk=old).merged_into_id == person.pk

    result = ingest(site, track("Later", profile_id=old), set_properties({"y": 2}, profile_id=old))

    assert set(result.profile_ids.values()) == {person.pk}
    person.refresh_from_db()
    assert person.properties == {"x": 1, "y": 2}


def test_it_resolves_tombstones_through_chains_of_merges(site):
    first = ingest(site, track(anon="a-1")).profile_ids[0]
    ingest(site, identify("u-1", anon="a-1"))  # a-1's profile becomes u-1's
    ingest(site, identify("u-2"))
    ingest(site, alias("u-1", "u-2"), privileged=True)
    ingest(site, identify("u-3"))
    ingest(site, alias("u-2", "u-3"), privileged=True)

    u3 = profile_of(site, "u-3")
    assert live(first) == u3.pk
    assert ingest(site, track(profile_id=first)).profile_ids[0] == u3.pk


# -- secure mode --------------------------------------------------------------------------------


def test_it_rejects_a_bad_signature(site):
    with pytest.raises(RequestRejected) as rejected:
        ingest(site, track(anon="a-1"), identify("u-1", signature="00" * 32))
    assert rejected.value.status == 401
    assert rejected.value.errors[0].as_dict() == {"index": 1, "field": "signature", "reason": "does not match userId"}
    assert not Event.objects.filter(site=site).exists()
    assert not Profile.objects.filter(site=site).exists()


def test_it_rejects_unsigned_identified_traffic_when_only_signed_data(site):
    site.only_signed_data = True
    site.save()
    with pytest.raises(RequestRejected) as rejected:
        ingest(site, track(anon="a-1"), track("Viewed", user="u-1"))
    assert rejected.value.status == 401
    assert rejected.value.code == "unsigned"
    assert not Event.objects.filter(site=site).exists()
    assert not MessageDedupe.objects.filter(site=site).exists()


def test_it_accepts_signed_and_anonymous_traffic_when_only_signed_data(site):
    site.only_signed_data = True
    site.save()
    signature = keys.sign_identity(site.signing_secret, "u-1")
    result = ingest(
        site,
        track(anon="a-1"),
        identify("u-1", anon="a-1", signature=signature),
        track("Viewed", user="u-1", signature=signature.upper()),
    )
    assert result.accepted == [0, 1, 2]
    assert len(set(result.profile_ids.values())) == 1


@pytest.fixture
def signed_person(site):
    """A secure-mode site and a person who signed in on a-1 with the cookie c-1, known by
    their email too."""
    site.only_signed_data = True
    site.save()
    signature = keys.sign_identity(site.signing_secret, "u-1")
    ids = [("cookie", "c-1"), ("email", "ann@example.com")]
    ingest(site, track(anon="a-1"), identify("u-1", anon="a-1", signature=signature, identities=ids))
    return profile_of(site, "u-1")


@pytest.mark.parametrize(
    ("ids", "named"),
    [
        ({"anon": "a-new", "profile_id": "person"}, "profileId"),
        ({"identities": [("email", "ann@example.com")]}, "the email id"),
    ],
)
def test_only_signed_data_refuses_other_ids_naming_an_identified_person(site, signed_person, ids, named):
    if ids.get("profile_id") == "person":
        ids["profile_id"] = signed_person.pk  # small numbers: anyone could guess them
    before = Event.objects.filter(site=site).count()
    with pytest.raises(RequestRejected) as rejected:
        ingest(site, track(anon="a-2"), track("Viewed", **ids))
    assert (rejected.value.status, rejected.value.code) == (401, "unsigned")
    assert rejected.value.errors[0].as_dict() == {
        "index": 1, "field": "signature", "reason": f"is required on this site: {named} names an identified person",
    }
    assert Event.objects.filter(site=site).count() == before


def test_only_signed_data_follows_a_merged_profile_id_to_its_person(site, signed_person):
    visitor = ingest(site, track(anon="a-9")).profile_ids[0]
    signature = keys.sign_identity(site.signing_secret, "u-1")
    ingest(site, identify("u-1", anon="a-9", signature=signature))  # the visitor merges into u-1
    with pytest.raises(RequestRejected):
        ingest(site, track(profile_id=visitor, anon="a-10"))


def test_only_signed_data_lets_anonymous_people_and_signed_calls_through(site, signed_person):
    visitor = ingest(site, track(anon="a-2")).profile_ids[0]
    signature = keys.sign_identity(site.signing_secret, "u-1")
    result = ingest(
        site,
        track(anon="a-2", profile_id=visitor),  # an anonymous person's own ids
        track(profile_id=987_654_321, anon="a-3"),  # an unknown profile id: a new person
        track("Viewed", user="u-1", anon="a-1", signature=signature),
        # The ids of the device the person signed in on: made up at random, kept there.
        track("Viewed", anon="a-1"),
        track("Viewed", identities=[("cookie", "c-1")]),
    )
    assert result.accepted == [0, 1, 2, 3, 4]
    assert {result.profile_ids[i] for i in (2, 3, 4)} == {signed_person.pk}


def test_it_skips_signature_checks_for_privileged_callers(site):
    site.only_signed_data = True
    site.save()
    result = ingest(site, identify("u-1"), privileged=True)
    assert result.accepted == [0]


# -- companies and stored calls ------------------------------------------------------------------


def test_it_attaches_people_to_companies_on_group(site):
    ingest(site, identify("u-1", traits={"name": "Ann"}))
    ingest(site, group("acme", user="u-1", traits={"name": "Acme", "employees": 40}))
    ingest(site, group("acme", anon="a-2", traits={"employees": 42, "plan": None}))

    company = Company.objects.get(site=site, key="acme")
    assert company.properties == {"name": "Acme", "employees": 42}
    assert set(company.members.values_list("pk", flat=True)) == {
        profile_of(site, "u-1").pk,
        profile_of(site, "a-2", ANON).pk,
    }
    assert profile_of(site, "u-1").properties == {"name": "Ann"}  # group traits are the company's
    assert not Company.objects.filter(site=site).exclude(key="acme").exists()


def test_it_stores_identify_and_set_calls_as_events(site):
    ingest(
        site,
        identify("u-1", traits={"plan": "free"}, message_id="i-1"),
        set_properties({"plan": "pro", "seats": None}, user="u-1", message_id="s-1"),
    )
    identify_event = event_by_message(site, "i-1")
    set_event = event_by_message(site, "s-1")
    assert (identify_event.type, identify_event.properties) == ("identify", {"plan": "free"})
    assert (set_event.type, set_event.properties) == ("set-properties", {"plan": "pro", "seats": None})
    # They describe the person, so they do not open a visit.
    assert identify_event.session_id is None and not Event.objects.filter(type="visited-site").exists()


def test_it_keeps_first_and_last_seen_over_merges(site):
    now = timezone.now()
    ingest(site, track(anon="a-1", timestamp=now - timedelta(days=3)))
    ingest(site, identify("u-1", timestamp=now - timedelta(days=1)))
    ingest(site, identify("u-1", anon="a-1", timestamp=now))
    person = profile_of(site, "u-1")
    assert person.first_seen == now - timedelta(days=3)
    assert person.last_seen == now


def test_it_keeps_one_membership_when_both_merged_profiles_were_in_the_company(site):
    ingest(site, group("acme", user="u-1"), group("acme", anon="a-1"), group("globex", anon="a-1"))
    ingest(site, identify("u-1", anon="a-1"))
    person = profile_of(site, "u-1")
    assert sorted(CompanyMembership.objects.values_list("company__key", "profile_id")) == [
        ("acme", person.pk),
        ("globex", person.pk),
    ]


def test_it_rolls_back_a_strict_batch_when_an_identity_rule_refuses_a_message(site):
    ingest(site, identify("u-ann"), identify("u-bob"))
    events_before = Event.objects.count()
    with pytest.raises(RequestRejected) as rejected:
        ingest(site, track("a", anon="a-1", message_id="t"), alias("u-ann", "u-bob", message_id="x"), strict=True)
    assert rejected.value.status == 400
    assert [e.as_dict()["field"] for e in rejected.value.errors] == ["previousId"]
    assert Event.objects.count() == events_before
    assert not MessageDedupe.objects.filter(site=site, message_id__in=["t", "x"]).exists()


def test_it_resolves_people_by_their_other_identities(site):
    ingest(site, identify("u-1", identities=[("email", "ann@example.com")]))
    result = ingest(site, track("Opened letter", identities=[("email", " ann@example.com ")]))
    assert result.profile_ids[0] == profile_of(site, "u-1").pk


def test_a_new_user_id_sent_beside_a_known_one_names_the_same_person(site):
    # Raptor: ruid is the user id, the mapped user id a second one of the same person.
    ingest(site, track("visit", user="login-7", identities=[("cookie", "c-1")]))
    login = profile_of(site, "login-7")
    result = ingest(site, track("buy", user="dave@example.com", identities=[("cookie", "c-1"), ("user", "login-7")]))
    assert result.profile_ids[0] == profile_of(site, "dave@example.com").pk == login.pk
    assert not ProfileMerge.objects.filter(site=site).exists()


def test_a_known_user_id_is_not_merged_with_another_known_one_sent_beside_it(site):
    # Two identified people are merged only by a privileged or signed alias.
    ingest(site, identify("u-ann"), identify("u-bob"))
    result = ingest(site, track("buy", user="u-bob", identities=[("user", "u-ann")]))
    assert result.profile_ids[0] == profile_of(site, "u-bob").pk != profile_of(site, "u-ann").pk
    assert not ProfileMerge.objects.filter(site=site).exists()


def test_it_handles_identify_and_merge_of_new_people_inside_one_batch(site):
    result = ingest(
        site,
        track("Browse", anon="a-1"),
        set_properties({"color": "red", "plan": "free"}, anon="a-1"),
        identify("u-1", traits={"plan": "pro"}),  # u-1 is new: made, identified
        identify("u-1", anon="a-1"),  # a-1 (new, anonymous) merges into u-1
        track("Buy", anon="a-1"),
    )
    person = profile_of(site, "u-1")
    assert set(result.profile_ids.values()) == {person.pk}
    assert person.properties == {"plan": "pro", "color": "red"}
    assert _live_profiles(site).count() == 1
    # Every merge is recorded, of a profile made by the same batch too (as if its calls
    # had come in an earlier request): its tombstone keeps the value that lost.
    merge = ProfileMerge.objects.get(site=site)
    assert (merge.target_id, merge.reason, merge.identities) == (
        person.pk, ProfileMerge.Reason.IDENTIFY, {"userId": "u-1", "anonymousId": "a-1"}
    )
    assert merge.repointed_at is not None  # nothing of it was stored under its own id
    visitor = Profile.objects.get(pk=merge.source_id)
    assert (visitor.merged_into_id, visitor.properties) == (person.pk, {"color": "red", "plan": "free"})
    assert not Event.objects.filter(profile_id=visitor.pk).exists()


def test_it_keeps_sites_apart(site, other_site):
    ingest(site, identify("u-1", anon="a-1"))
    ingest(other_site, identify("u-1", anon="a-1"))
    assert profile_of(site, "u-1").pk != profile_of(other_site, "u-1").pk


def test_an_id_is_known_since_the_call_that_named_it_arrived(site):
    # A queued call stored later, or the demo's calls spread over 90 days: "since" is
    # when the call arrived, not when its row was written.
    arrived = timezone.now() - timedelta(days=30)
    ingest(site, track(anon="a-1"), received_at=arrived)
    ingest(site, identify(user="u-1", anon="a-1"))
    since = dict(Identity.objects.filter(site=site).values_list("key", "created_at"))
    assert since["a-1"] == arrived
    assert timezone.now() - since["u-1"] < timedelta(minutes=1)


def test_a_call_that_arrived_before_the_last_write_of_a_property_does_not_overwrite_it(site):
    # The inbox can store a person's calls out of arrival order (two lanes): each
    # property ends as the latest call to arrive left it, a deletion included.
    now = timezone.now()
    ingest(site, identify("u-1", traits={"plan": "pro", "coupon": None}), received_at=now)
    ingest(site, identify("u-1", traits={"plan": "free", "coupon": "X", "color": "red"}), received_at=now - timedelta(hours=1))
    assert profile_of(site, "u-1").properties == {"plan": "pro", "color": "red"}
    ingest(site, identify("u-1", traits={"plan": "team"}), received_at=now + timedelta(seconds=1))
    assert profile_of(site, "u-1").properties == {"plan": "team", "color": "red"}


def test_a_group_call_that_arrived_before_the_last_write_of_a_company_trait_does_not_overwrite_it(site):
    # Two people of one company are queued in two lanes, and a company is shared by
    # them: their group calls can be stored out of arrival order. Each of the company's
    # traits ends as the latest call to arrive left it, a deletion included.
    now = timezone.now()
    ingest(site, group("acme", user="u-1", traits={"plan": "pro", "coupon": None}), received_at=now)
    ingest(
        site,
        group("acme", user="u-2", traits={"plan": "free", "coupon": "X", "size": 40}),
        received_at=now - timedelta(hours=1),
    )
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "pro", "size": 40}
    ingest(site, group("acme", user="u-3", traits={"plan": "team"}), received_at=now + timedelta(seconds=1))
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "team", "size": 40}


def test_group_calls_of_one_company_in_one_batch_write_in_their_order(site):
    now = timezone.now()
    ingest(
        site,
        group("acme", user="u-1", traits={"plan": "free", "size": 40}),
        group("acme", user="u-2", traits={"plan": "pro", "size": None}),
        received_at=now,
    )
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "pro"}
    # A later call of an earlier request (its place is higher) is still older.
    ingest(
        site,
        group("acme", user="u-3", traits={"noise": 1}),
        group("acme", user="u-3", traits={"plan": "free", "size": 1}),
        received_at=now - timedelta(seconds=1),
    )
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "pro", "noise": 1}


def test_company_traits_written_before_stamps_were_kept_are_overwritten_by_any_call(site):
    # A company stored with no stamps: when its traits were written is unknown, so any
    # call writes over them, and from then on its own stamp counts.
    Company.objects.create(site=site, key="acme", properties={"plan": "old", "size": 3})
    now = timezone.now()
    ingest(site, group("acme", user="u-1", traits={"plan": "pro"}), received_at=now - timedelta(days=30))
    ingest(site, group("acme", user="u-2", traits={"plan": "free"}), received_at=now - timedelta(days=31))
    assert Company.objects.get(site=site, key="acme").properties == {"plan": "pro", "size": 3}
