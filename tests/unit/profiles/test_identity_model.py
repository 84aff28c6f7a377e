"""Property-based check of identity resolution against a reference model.

Hypothesis draws sequences of identify / alias / track / set calls over a small pool of
user ids and anonymous ids, cuts them into batches at random places and sends them
through the real ingestion service. ``Model`` below plays the same calls one by one with
DESIGN's rules in plain Python; afterwards every stored event must belong to the person
the model predicts (compared as partitions: which events share a person, since the
ids differ) and each person must have the model's properties.

The rules the model follows (DESIGN "People and identity"):
- a user id names its person; the first message naming a new user id from an anonymous
  profile makes that profile the user's (nothing moves);
- identify(user, anonymous) merges an anonymous profile into the user's (the user's
  properties win); when the anonymous id already belongs to another identified person
  the call just switches to the user;
- alias(previous, user) merges previous's person into user's, irreversibly; two
  identified people need the secret key (or a signature), else the call is refused and
  nothing of it is stored; an unknown previous id names user's person from then on;
- a new anonymous id sent with any call joins that call's person;
- traits shallow-merge, null deleting the key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from profiles.maintenance import merged_events_repoint
from profiles.models import Identity, Profile
from tests.factories import SiteFactory
from tests.messages import alias, identify, ingest, set_properties, track
from tracking.models import Event

USERS = ["u1", "u2", "u3"]
ANONS = ["a1", "a2", "a3", "a4"]
VALUES = [None, 0, 1, "x", True, [1, 2], {"n": 1}]
TRAITS = st.dictionaries(st.sampled_from(["k1", "k2", "k3"]), st.sampled_from(VALUES), max_size=3)


# -- the reference model --------------------------------------------------------------------------


@dataclass
class Person:
    identified: bool
    properties: dict[str, Any] = field(default_factory=dict)


class Model:
    def __init__(self):
        self.people: dict[int, Person] = {}
        self.parent: dict[int, int] = {}
        self.users: dict[str, int] = {}
        self.anons: dict[str, int] = {}
        self._ids = itertools.count(1)

    def root(self, pid: int) -> int:
        while pid in self.parent:
            pid = self.parent[pid]
        return pid

    def new(self, identified: bool) -> int:
        pid = next(self._ids)
        self.people[pid] = Person(identified)
        return pid

    def user(self, key: str | None) -> int | None:
        return self.root(self.users[key]) if key in self.users else None

    def anon(self, key: str | None) -> int | None:
        return self.root(self.anons[key]) if key in self.anons else None

    def merge(self, source: int, target: int) -> None:
        if source == target:
            return
        src, dst = self.people[source], self.people[target]
        dst.properties = {**src.properties, **dst.properties}
        self.parent[source] = target

    def play(self, op: dict) -> int | None:
        """The person a call lands on, or None when it is refused."""
        kind, user, anon = op["kind"], op.get("user"), op.get("anon")
        if kind == "alias":
            return self._alias(op)
        current = self.anon(anon)
        if user is not None:
            pid = self.user(user)
            if pid is None:
                pid = current if current is not None and not self.people[current].identified else self.new(True)
                self.users[user] = pid
            self.people[pid].identified = True
            if kind == "identify" and current not in (None, pid) and not self.people[current].identified:
                self.merge(current, pid)
        else:
            pid = current if current is not None else self.new(False)
        if anon is not None and anon not in self.anons:
            self.anons[anon] = pid
        if kind in ("identify", "set"):
            props = self.people[pid].properties
            for key, value in op["traits"].items():
                if value is None:
                    props.pop(key, None)
                else:
                    props[key] = value
        return pid

    def _alias(self, op: dict) -> int | None:
        previous, user = op["previous"], op["user"]
        target = self.user(user)
        source = self.user(previous) or self.anon(previous)
        if source is None:
            pid = target if target is not None else self.new(True)
            self.users.setdefault(user, pid)
            self.users.setdefault(previous, pid)
            self.anons.setdefault(previous, pid)
        elif target is None:
            pid = source
            self.users[user] = pid
        else:
            both_identified = self.people[source].identified and self.people[target].identified
            if source != target and both_identified and not op["privileged"]:
                return None
            self.merge(source, target)
            pid = target
        self.people[pid].identified = True
        return pid


# -- drawing calls ------------------------------------------------------------------------------------


@st.composite
def calls(draw):
    kind = draw(st.sampled_from(["track", "track", "identify", "set", "alias"]))
    if kind == "identify":
        return {"kind": kind, "user": draw(st.sampled_from(USERS)),
                "anon": draw(st.none() | st.sampled_from(ANONS)), "traits": draw(TRAITS)}
    if kind == "alias":
        return {"kind": kind, "previous": draw(st.sampled_from(USERS + ANONS + ["legacy"])),
                "user": draw(st.sampled_from(USERS)), "privileged": draw(st.booleans())}
    user = draw(st.none() | st.sampled_from(USERS))
    anon = draw(st.sampled_from(ANONS) if user is None else st.none() | st.sampled_from(ANONS))
    op = {"kind": kind, "user": user, "anon": anon}
    if kind == "set":
        op["traits"] = draw(TRAITS)
    return op


def to_message(op: dict, n: int, at):
    common = {"message_id": f"m{n}", "timestamp": at}
    if op["kind"] == "track":
        return track(f"e{n}", user=op["user"], anon=op["anon"], **common)
    if op["kind"] == "identify":
        return identify(op["user"], anon=op["anon"], traits=dict(op["traits"]), **common)
    if op["kind"] == "set":
        return set_properties(dict(op["traits"]), user=op["user"], anon=op["anon"], **common)
    return alias(op["previous"], op["user"], **common)


def send(site, ops: list[dict], cuts: list[bool]) -> list[int]:
    """Send the calls in batches (a batch ends where ``cuts`` says); returns the indexes
    of refused calls."""
    start = timezone.now() - timedelta(hours=1)
    refused: list[int] = []
    batch: list[tuple[int, dict]] = []

    def flush():
        if not batch:
            return
        by_privilege = {op.get("privileged", False) for _, op in batch}
        # The secret key covers a whole request: keep privileged aliases in their own.
        for privileged in sorted(by_privilege):
            part = [(n, op) for n, op in batch if op.get("privileged", False) == privileged]
            messages = [to_message(op, n, start + timedelta(seconds=n)) for n, op in part]
            result = ingest(site, *messages, privileged=privileged)
            refused.extend(part[e.index][0] for e in result.errors)
        batch.clear()

    for n, op in enumerate(ops):
        if op.get("privileged") and batch and not batch[-1][1].get("privileged"):
            flush()  # keep the order of calls across a change of key
        elif not op.get("privileged") and batch and batch[-1][1].get("privileged"):
            flush()
        batch.append((n, op))
        if cuts[n]:
            flush()
    flush()
    return sorted(refused)


# -- the property -------------------------------------------------------------------------------------


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_it_attaches_every_event_to_the_person_the_model_predicts(data):
    ops = data.draw(st.lists(calls(), min_size=1, max_size=30), label="calls")
    cuts = data.draw(st.lists(st.booleans(), min_size=len(ops), max_size=len(ops)), label="batch ends")
    site = SiteFactory()

    model = Model()
    predicted = {n: model.play(op) for n, op in enumerate(ops)}
    refused = send(site, ops, cuts)

    assert refused == sorted(n for n, pid in predicted.items() if pid is None)
    stored = {
        int(m[1:]): profile_id
        for m, profile_id in Event.objects.filter(site=site, message_id__isnull=False).values_list(
            "message_id", "profile_id"
        )
    }
    assert sorted(stored) == sorted(n for n, pid in predicted.items() if pid is not None)

    tombstones = dict(
        Profile.objects.filter(site=site, merged_into__isnull=False).values_list("pk", "merged_into_id")
    )

    def check(actual_of):
        person_of = {n: model.root(predicted[n]) for n in stored}
        profile_of = {n: actual_of(n) for n in stored}
        # The same partition: a bijection between model people and live profiles.
        pairs = set(zip(person_of.values(), profile_of.values(), strict=True))
        assert len(pairs) == len(set(person_of.values())) == len(set(profile_of.values())), (
            f"model {person_of} vs db {profile_of}"
        )
        return dict(pairs)

    # Before the background re-point, queries resolve merged ids through the tombstones.
    person_to_profile = check(lambda n: tombstones.get(stored[n], stored[n]))
    merged_events_repoint(site_id=site.pk)
    assert check(lambda n: Event.objects.get(site=site, message_id=f"m{n}").profile_id) == person_to_profile

    profiles = {p.pk: p for p in Profile.objects.filter(site=site, merged_into__isnull=True)}
    assert set(profiles) == set(person_to_profile.values())
    for person, profile_id in person_to_profile.items():
        assert profiles[profile_id].properties == model.people[person].properties
        assert profiles[profile_id].is_identified == model.people[person].identified

    for kind, keys in ((Identity.Kind.USER, model.users), (Identity.Kind.ANONYMOUS, model.anons)):
        actual = dict(Identity.objects.filter(site=site, kind=kind).values_list("key", "profile_id"))
        assert actual == {key: person_to_profile[model.root(pid)] for key, pid in keys.items()}
