"""Identity resolution for a whole batch: which profile each message belongs to.

The rules (DESIGN "People and identity"):
- a message with a user id belongs to that user's profile (made when new);
- identify(user, anonymous): an anonymous current profile is merged into the user's
  (its properties lose to the user's); an already identified one is left alone (switch);
  the first identify of an anonymous profile just marks it identified (nothing moves);
- alias(previous, user): previous's profile is merged into the user's, irreversibly;
  two identified people need the secret key or a signature of the user id;
- a profile id the server does not know makes a new profile; a known session with no
  other id recovers its profile;
- traits shallow-merge into properties, a null deleting the key.

``resolve_batch`` loads everything the batch names in a fixed number of queries, plays
the messages in order against that in-memory state (a union-find over profiles gives
"after all merges of the batch"), then writes profiles, identities, merges and
properties in bulk. The caller holds the transaction; the profiles it touches are
locked (in id order, so concurrent batches cannot deadlock) until it commits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from profiles.models import Company, CompanyMembership, Identity, Profile, ProfileMerge
from tracking import db, jsontext, keys
from tracking.ingest.schema import FieldError, Kind, Message
from tracking.models import Site
from tracking.signals import profiles_merged

ANONYMOUS = Identity.Kind.ANONYMOUS.value
USER = Identity.Kind.USER.value
COOKIE = Identity.Kind.COOKIE.value


def identifies(m: Message) -> bool:
    """Whether a message naming a user merges the anonymous profile its other ids name
    into them: an identify; or a Raptor call, whose ``ruid`` beside the device's cookie id
    is how Raptor says the person on that device made themselves known (it has no
    identify call, and converging the cookie's history with the user is its purpose).
    A track naming both ids (Segment) does not merge."""
    return m.kind is Kind.IDENTIFY or any(kind == COOKIE for kind, _ in m.identities)


class ConcurrentChange(Exception):
    """Another transaction created or merged something this batch relied on: retry."""


@dataclass(slots=True)
class _Profile:
    id: int  # the database id, or a negative placeholder for a profile made by this batch
    identified: bool
    properties: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    new: bool = False
    changed: bool = False
    touched: bool = False  # a message of the batch landed on it or merged into it
    # The last_seen stored before this batch, the latest of it and of the profiles merged
    # into it (None: nothing stored). No session of theirs ended after it.
    stored_last_seen: datetime | None = None
    # Property -> the stamp (``stamp``) of the call that last set or deleted it.
    stamps: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class _Merge:
    source: int
    target: int
    reason: str
    identities: dict[str, Any]
    source_identified: bool
    actor: str  # who sent the message that merged them
    new: bool = False  # the source was made by this batch: nothing of it is stored yet


@dataclass
class Resolution:
    profile_ids: dict[int, int] = field(default_factory=dict)  # message index -> profile id
    errors: list[FieldError] = field(default_factory=list)
    merges: list[tuple[int, int]] = field(default_factory=list)  # (source, target) written
    repoint_later: bool = False  # a merged history is large: a task moves its events
    new_profile_ids: list[int] = field(default_factory=list)
    # Indexes of messages left for later: they need a profile another transaction holds
    # (``defer_busy``), or share an id or a profile with a message that does.
    deferred: list[int] = field(default_factory=list)
    # Profile id -> its last_seen before this batch (None: nothing stored before), for
    # every profile a message landed on: none of its sessions ended later.
    stored_last_seen: dict[int, datetime | None] = field(default_factory=dict)


def apply_traits(
    properties: dict[str, Any],
    traits: dict[str, Any],
    stamps: dict[str, list[int]] | None = None,
    stamp: list[int] | None = None,
) -> bool:
    """Shallow merge; a null value deletes the key. Returns whether anything changed.

    With ``stamps`` (key -> stamp of its last write) and the call's ``stamp``: a key
    whose last write is newer than the call is left as it is, and the keys the call
    writes take its stamp. So a person's properties end as their calls' arrival order
    says, in whichever order they are stored: the inbox stores a person's calls out of
    that order when they were queued in two lanes (their userId's, and a new browser's
    anonymous id's with their sign-in there) before they were known to be one person."""
    changed = False
    for key, value in traits.items():
        if stamps is not None and stamp is not None:
            last = stamps.get(key)
            if last is not None and last > stamp:
                continue  # a newer call wrote it already
            if last != stamp:
                stamps[key] = stamp
                changed = True
        if value is None:
            if key in properties:
                del properties[key]
                changed = True
        elif properties.get(key, _MISSING) != value:
            properties[key] = value
            changed = True
    return changed


_MISSING = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def stamp(m: Message) -> list[int] | None:
    """When a call's properties were written, in the order immediate mode stores calls:
    [its request's arrival, in microseconds since the epoch; its place in the request]
    (a list: that is how it comes back from JSON). None when the arrival is unknown."""
    if m.received_at is None:
        return None
    return [(m.received_at - _EPOCH) // _MICROSECOND, m.index if m.position is None else m.position]


class _Batch:
    def __init__(self, site: Site, *, privileged: bool, actor: str, actors: Mapping[int, str] | None = None):
        self.site = site
        self.privileged = privileged
        self.actor = actor
        self.actors = actors or {}  # message index -> its sender, where they differ
        self.profiles: dict[int, _Profile] = {}
        self.parent: dict[int, int] = {}
        self.ident: dict[tuple[str, str], int] = {}
        self.new_identities: dict[tuple[str, str], int] = {}
        self.identity_since: dict[tuple[str, str], datetime] = {}  # when the call naming it arrived
        self.merges: list[_Merge] = []
        self.session_profiles: dict[str, int] = {}
        self.companies: dict[str, Company] = {}
        self.company_changes: set[str] = set()
        self.company_members: set[tuple[str, int]] = set()
        self._next_placeholder = -1
        self.reserved: dict[int, int] = {}  # placeholder -> reserved database id
        self.reserved_used: set[int] = set()
        self.promised: dict[int, int] = {}  # reserved id a queued answer promised -> profile
        self.busy: set[int] = set()  # profiles another transaction holds (load(skip_locked=True))
        self.busy_companies: set[str] = set()  # company keys another transaction holds (likewise)
        # (identities, client sessions) as read, before the ids naming busy profiles went
        self.named_busy: tuple[dict[tuple[str, str], int], dict[str, int]] = ({}, {})

    # -- loading ---------------------------------------------------------------

    def load(self, messages: Sequence[Message], session_profiles: dict[str, int], *, skip_locked: bool = False) -> None:
        """Read and lock every profile the messages name. With ``skip_locked``, profiles
        another transaction holds are not waited for but listed in ``busy``, and the ids
        that name them are left out (their messages must be left for later)."""
        keys_wanted: set[str] = set()
        profile_ids: set[int] = set()
        for m in messages:
            keys_wanted.update(k for k in (m.user_id, m.anonymous_id, m.previous_id) if k)
            keys_wanted.update(key for _, key in m.identities)
            if m.profile_id:
                profile_ids.add(m.profile_id)
        if keys_wanted:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT kind, key, profile_id FROM profiles_identity WHERE site_id = %s AND key = ANY(%s::text[])",
                    [self.site.pk, db.text_array(keys_wanted)],
                )
                rows = cursor.fetchall()
            for kind, key, profile_id in rows:
                self.ident[(kind, key)] = profile_id
                profile_ids.add(profile_id)
        self.session_profiles = dict(session_profiles)
        profile_ids.update(session_profiles.values())
        if profile_ids:
            self._lock_profiles(profile_ids, skip_locked=skip_locked)
        if self.busy:
            self.named_busy = (dict(self.ident), dict(self.session_profiles))
        # Identities and sessions may point at a profile merged since they were read.
        for mapping in (self.ident, self.session_profiles):
            for k, pid in list(mapping.items()):
                if pid in self.busy or self.find(pid) in self.busy:
                    del mapping[k]
                    continue
                if pid not in self.profiles:
                    raise ConcurrentChange(f"profile {pid} vanished")
                mapping[k] = self.find(pid)
        group_keys = {m.group_id for m in messages if m.kind is Kind.GROUP and m.group_id}
        if group_keys:
            companies = Company.objects.filter(site=self.site, key__in=group_keys)
            self.companies = {
                c.key: c for c in companies.order_by("id").select_for_update(skip_locked=skip_locked)
            }
            for company in self.companies.values():
                # Null: stored before stamps were kept; when each key was written is
                # unknown, so any call may write it (as for a profile's).
                if company.property_stamps is None:
                    company.property_stamps = {}
            missing = group_keys - set(self.companies)
            if skip_locked and missing:
                # Held by another transaction (another drain's chunk with a group call of
                # the same company), or not made yet: only the held ones wait.
                self.busy_companies = set(
                    Company.objects.filter(site=self.site, key__in=missing).values_list("key", flat=True)
                )

    def _lock_profiles(self, ids: Iterable[int], *, skip_locked: bool = False) -> None:
        ids = sorted(set(ids))
        # Tombstones point one hop to their live profile (merges flatten chains), so
        # loading ids and then the targets not among them is enough. Targets are rare
        # (identities move with a merge; only client sessions and old profile ids name
        # tombstones): one id list read in id order, not "id = ANY(ARRAY(ids UNION their
        # targets))", which read every profile twice to find them (a third of this step).
        rows = self._select_for_update(ids, skip_locked=skip_locked)
        loaded = {row[0] for row in rows}
        targets = sorted({row[5] for row in rows if row[5] is not None} - loaded)
        if targets:
            rows += self._select_for_update(targets, skip_locked=skip_locked)
        for pid, identified, properties, first_seen, last_seen, merged_into, stamps in rows:
            # Django loads jsonb as text from raw cursors (JSONField decodes it itself).
            self.profiles[pid] = _Profile(
                pid, identified, jsontext.loads(properties), first_seen, last_seen, stored_last_seen=last_seen,
                stamps=jsontext.loads(stamps) if stamps is not None else {},
            )
            if merged_into is not None:
                self.parent[pid] = merged_into
        if skip_locked:
            self._find_busy(ids)
        for pid, target in self.parent.items():
            if target not in self.profiles and target not in self.busy:
                raise ConcurrentChange(f"profile {pid} was merged into {target} meanwhile")

    def _select_for_update(self, ids: list[int], *, skip_locked: bool) -> list[tuple]:
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT id, is_identified, properties, first_seen, last_seen, merged_into_id, property_stamps
                FROM profiles_profile WHERE site_id = %s AND id = ANY(%s::bigint[])
                ORDER BY id FOR UPDATE
                """ + (" SKIP LOCKED" if skip_locked else ""),
                [self.site.pk, db.int_array(ids)],
            )
            return cursor.fetchall()

    def _find_busy(self, ids: list[int]) -> None:
        """After a SKIP LOCKED read: which of the profiles asked for (or their merge
        targets) exist but were skipped, because another transaction holds them."""
        self.busy.update(t for t in self.parent.values() if t not in self.profiles)
        missing = [pid for pid in ids if pid not in self.profiles]
        if not missing:
            return
        with connection.cursor() as cursor:
            # Not locked: only to tell a held profile from one that does not exist (a
            # profile id the server never made, which is no reason to wait).
            cursor.execute(
                "SELECT id, merged_into_id FROM profiles_profile WHERE site_id = %s AND id = ANY(%s::bigint[])",
                [self.site.pk, db.int_array(missing)],
            )
            for pid, merged_into in cursor.fetchall():
                self.busy.add(pid)
                if merged_into is not None:
                    self.busy.add(merged_into)

    # -- in-memory state -----------------------------------------------------------

    def find(self, pid: int) -> int:
        root = pid
        while root in self.parent:
            root = self.parent[root]
        while pid != root:  # path compression
            self.parent[pid], pid = root, self.parent[pid]
        return root

    def lookup(self, kind: str, key: str | None) -> int | None:
        if not key:
            return None
        pid = self.ident.get((kind, key))
        return self.find(pid) if pid is not None else None

    def create(self, m: Message, *, identified: bool) -> int:
        pid = self._next_placeholder
        self._next_placeholder -= 1
        self.profiles[pid] = _Profile(pid, identified, {}, m.occurred_at, m.occurred_at, new=True)
        reserved = m.reserved_profile_id
        if reserved is not None and reserved > 0 and reserved not in self.reserved_used:
            # A queued request promised this id to its sender (tracking.inbox).
            self.reserved[pid] = reserved
            self.reserved_used.add(reserved)
        return pid

    def link(self, kind: str, key: str, pid: int) -> None:
        if (kind, key) not in self.ident:
            self.ident[(kind, key)] = pid
            self.new_identities[(kind, key)] = pid

    def merge(self, source: int, target: int, reason: str, m: Message) -> None:
        source, target = self.find(source), self.find(target)
        if source == target:
            return
        src, dst = self.profiles[source], self.profiles[target]
        dst.touched = True
        merged = {**src.properties, **dst.properties}  # what the target has wins
        # Each key keeps the stamp of the write whose value it kept (a key neither has:
        # the latest deletion's).
        stamps = {**src.stamps, **dst.stamps}
        for key in src.properties.keys() - dst.properties.keys():
            if key in src.stamps:
                stamps[key] = src.stamps[key]
            else:
                stamps.pop(key, None)
        for key in dst.properties.keys() - dst.stamps.keys():
            stamps.pop(key, None)  # written before stamps were kept
        for key in (src.stamps.keys() & dst.stamps.keys()) - merged.keys():
            stamps[key] = max(src.stamps[key], dst.stamps[key])
        if merged != dst.properties or stamps != dst.stamps:
            dst.properties = merged
            dst.stamps = stamps
            dst.changed = True
        dst.first_seen = _min(dst.first_seen, src.first_seen)
        dst.last_seen = _max(dst.last_seen, src.last_seen)
        dst.stored_last_seen = _max(dst.stored_last_seen, src.stored_last_seen)
        self.parent[source] = target
        # Every merge is recorded (DESIGN), a profile made by this batch's earlier
        # messages too: whether a visitor's first calls and their sign-in are stored
        # apart or together (one request, or a drain's chunk of many) must not decide
        # whether there is a record, nor whether the properties the person's own lost to
        # the target's are kept (on the tombstone, as for a profile stored before).
        ids = {k: v for k, v in (("userId", m.user_id), ("anonymousId", m.anonymous_id),
                                 ("previousId", m.previous_id)) if v}
        self.merges.append(
            _Merge(source, target, reason, ids, src.identified, self.actors.get(m.index, self.actor), new=src.new)
        )

    def identify(self, pid: int) -> None:
        p = self.profiles[pid]
        if not p.identified:
            p.identified = True
            p.changed = True

    # -- the rules -------------------------------------------------------------------

    def current_profile(self, m: Message) -> int | None:
        """The profile a message's non-user ids point at (anonymous, ours, session, others)."""
        pid = self.lookup(ANONYMOUS, m.anonymous_id)
        if pid is None and m.profile_id and m.profile_id in self.profiles:
            pid = self.find(m.profile_id)
        if pid is None:
            for kind, key in m.identities:
                pid = self.lookup(kind, key)
                if pid is not None:
                    break
        if pid is None and m.session_id and m.session_id in self.session_profiles:
            pid = self.find(self.session_profiles[m.session_id])
        return pid

    def resolve(self, m: Message) -> int:
        known = len(self.new_identities)
        pid = self._resolve(m)
        if m.received_at is not None and len(self.new_identities) > known:
            # An id is known since the call that named it arrived (a queued call is
            # stored later; the demo's calls arrive over 90 days).
            for key in itertools.islice(self.new_identities, known, None):
                self.identity_since[key] = m.received_at
        if m.session_id:
            # Later messages of the batch that name only this client session recover the
            # same person (a Tracardi request is many events under one new session).
            self.session_profiles[m.session_id] = pid
        return pid

    def _resolve(self, m: Message) -> int:
        current = self.current_profile(m)
        if m.kind is Kind.ALIAS:
            return self.alias(m)
        if m.user_id:
            pid = self.lookup(USER, m.user_id)
            if pid is None:
                also = self.also_known_as(m)
                if also is not None:
                    pid = also  # the call says this new user id is that user's too
                elif current is not None and not self.profiles[current].identified:
                    pid = current  # first identification: nothing moves
                else:
                    pid = self.create(m, identified=True)
                self.link(USER, m.user_id, pid)
            self.identify(pid)
            if current is not None and current != pid and not self.profiles[current].identified:
                if identifies(m):
                    self.merge(current, pid, ProfileMerge.Reason.IDENTIFY, m)
            # An identified current profile is another person on this device: switch.
        elif current is not None:
            pid = current
        else:
            pid = self.create(m, identified=False)
        if m.anonymous_id:
            self.link(ANONYMOUS, m.anonymous_id, self.find(pid))
        for kind, key in m.identities:
            self.link(kind, key, self.find(pid))
        return self.find(pid)

    def also_known_as(self, m: Message) -> int | None:
        """The profile of a known user id the message names beside its userId (Raptor's
        mapped user id next to ``ruid``: two ids of one person)."""
        for kind, key in m.identities:
            if kind == USER and (pid := self.lookup(USER, key)) is not None:
                return pid
        return None

    def alias(self, m: Message) -> int:
        assert m.previous_id and m.user_id
        target = self.lookup(USER, m.user_id)
        source = self.lookup(USER, m.previous_id) or self.lookup(ANONYMOUS, m.previous_id)
        if source is None:
            # Unknown previous id: it names the user's profile from now on, whether it
            # comes back as an anonymous id or as a user id (Tracktor's srcid is one).
            pid = target if target is not None else self.current_profile(m)
            if pid is None:
                pid = self.create(m, identified=True)
            self.link(USER, m.user_id, pid)
            self.link(ANONYMOUS, m.previous_id, pid)
            self.link(USER, m.previous_id, pid)
            self.identify(pid)
            return self.find(pid)
        if target is None:
            self.link(USER, m.user_id, source)
            self.identify(source)
            return self.find(source)
        if source != target and self.profiles[source].identified and self.profiles[target].identified:
            signed = keys.check_identity_signature(self.site.signing_secret, m.user_id, m.signature)
            if not (self.privileged or signed):
                raise _Refused(
                    "previousId",
                    "merging two identified people needs the secret key or a signature of userId",
                )
        self.merge(source, target, ProfileMerge.Reason.ALIAS, m)
        return self.find(target)

    def apply(self, m: Message, pid: int) -> None:
        p = self.profiles[pid]
        p.touched = True
        p.first_seen = _min(p.first_seen, m.occurred_at)
        p.last_seen = _max(p.last_seen, m.occurred_at)
        if m.kind in (Kind.IDENTIFY, Kind.SET) and m.traits:
            if apply_traits(p.properties, m.traits, p.stamps, stamp(m)):
                p.changed = True
        if m.kind is Kind.GROUP and m.group_id:
            company = self.companies.get(m.group_id)
            if company is None:
                company = self.companies[m.group_id] = Company(
                    site=self.site, key=m.group_id, properties={}, property_stamps={}
                )
            # Stamped like a person's: the company's people may be in two lanes, whose
            # group calls are stored out of arrival order at times.
            if m.traits and apply_traits(company.properties, m.traits, company.property_stamps, stamp(m)):
                self.company_changes.add(m.group_id)
            if company.pk is None:
                self.company_changes.add(m.group_id)
            self.company_members.add((m.group_id, pid))

    # -- writing ---------------------------------------------------------------------------

    def write(self) -> dict[int, int]:
        """Write everything; returns placeholder -> database id for new profiles."""
        real: dict[int, int] = {}  # placeholder -> database id
        new = [p for p in self.profiles.values() if p.new and self.find(p.id) == p.id]
        if new:
            ids = _insert_profiles(
                self.site.pk,
                [
                    {
                        "id": self.reserved.get(p.id),
                        "properties": p.properties,
                        "stamps": p.stamps or None,
                        "identified": p.identified,
                        "first_seen": p.first_seen,
                        "last_seen": p.last_seen,
                    }
                    for p in new
                ],
            )
            real = dict(zip((p.id for p in new), ids, strict=True))

        def db_id(pid: int) -> int:
            root = self.find(pid)
            return real.get(root, root)

        self._db_id = db_id
        # Profiles made and merged within the batch: tombstones of their person, as if
        # stored before the merge, so their merge records name a profile (its reserved
        # id where a queued answer promised one). A second statement only when there are
        # any; their events, identities and sessions are written on the person already.
        merged_new = [m for m in self.merges if m.new]
        if merged_new:
            ids = _insert_profiles(
                self.site.pk,
                [
                    {
                        "id": self.reserved.get(m.source),
                        "properties": self.profiles[m.source].properties,
                        "stamps": self.profiles[m.source].stamps or None,
                        "identified": self.profiles[m.source].identified,
                        "first_seen": self.profiles[m.source].first_seen,
                        "last_seen": self.profiles[m.source].last_seen,
                        "merged_into": db_id(m.target),
                    }
                    for m in merged_new
                ],
            )
            for m, pid in zip(merged_new, ids, strict=True):
                m.source = pid
            created = {*real.values(), *ids}
        else:
            created = set(real.values())
        self._write_promised(db_id, created)
        self._write_identities(db_id)
        self._write_merges(db_id)
        self._write_profiles()
        self._write_companies(db_id)
        return real

    def _write_promised(self, db_id, created: set[int]) -> None:
        """A queued request's answer promised a reserved id to someone who turned out to
        be known by the time it was stored (a second request of a new visitor, queued
        before the first was stored) or who was merged within the batch: the id becomes
        a tombstone of the profile they are, so it resolves as the answer said."""
        tombstones = []
        for rid, pid in self.promised.items():
            if rid not in created:
                person = self.profiles[self.find(pid)]
                tombstones.append(
                    {
                        "id": rid, "properties": {}, "identified": False, "merged_into": db_id(pid),
                        "first_seen": person.first_seen, "last_seen": person.last_seen,
                    }
                )
        if tombstones:
            _insert_profiles(self.site.pk, tombstones)

    def _write_identities(self, db_id) -> None:
        if not self.new_identities:
            return
        kinds, keys_, pids, since = [], [], [], []
        for (kind, key), pid in self.new_identities.items():
            kinds.append(kind)
            keys_.append(key)
            pids.append(db_id(pid))
            since.append(self.identity_since.get((kind, key)))
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO profiles_identity (site_id, kind, key, profile_id, created_at)
                SELECT %s, k.kind, k.key, k.profile_id, coalesce(k.since, now())
                FROM unnest(%s::varchar[], %s::varchar[], %s::bigint[], %s::timestamptz[])
                    AS k(kind, key, profile_id, since)
                ON CONFLICT (site_id, kind, key) DO NOTHING
                RETURNING 1
                """,
                [self.site.pk, db.text_array(kinds), db.text_array(keys_), db.int_array(pids), since],
            )
            if len(cursor.fetchall()) != len(kinds):
                raise ConcurrentChange("an identity was created by a concurrent request")

    def _write_merges(self, db_id) -> None:
        if not self.merges:
            return
        sources = [m.source for m in self.merges]
        targets = [db_id(m.target) for m in self.merges]
        site_id = self.site.pk
        # What a profile stored before the batch had moves to its person; one made by
        # the batch has nothing stored to move (its tombstone points at them already).
        stored = [(s, t, m) for s, t, m in zip(sources, targets, self.merges, strict=True) if not m.new]
        if stored:
            self._move(site_id, stored)
        now = _now()
        records = [
            {
                "source": m.source, "target": target, "reason": m.reason, "identities": m.identities,
                "actor": m.actor, "repointed_at": None if m.source_identified and not m.new else now,
            }
            for m, target in zip(self.merges, targets, strict=True)
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO profiles_profilemerge
                    (site_id, source_id, target_id, reason, identities, actor, merged_at, repointed_at)
                SELECT %s, v.source, v.target, v.reason, v.identities, v.actor, %s, v.repointed_at
                FROM jsonb_to_recordset(%s::jsonb) AS v(
                    source bigint, target bigint, reason varchar, identities jsonb, actor varchar,
                    repointed_at timestamptz)
                """,
                [site_id, now, _json(records)],
            )
        profiles_merged.send(sender=Profile, site=self.site, pairs=list(zip(sources, targets, strict=True)))

    def _move(self, site_id: int, stored: list[tuple[int, int, _Merge]]) -> None:
        """Move what the stored ``(source, target, merge)`` profiles had to their target."""
        sources = [s for s, _, _ in stored]
        targets = [t for _, t, _ in stored]
        with connection.cursor() as cursor:
            mapping = "unnest(%s::bigint[], %s::bigint[]) AS m(src, dst)"
            pairs = [db.int_array(sources), db.int_array(targets)]
            cursor.execute(
                f"UPDATE profiles_identity i SET profile_id = m.dst FROM {mapping} WHERE i.profile_id = m.src",
                pairs,
            )
            cursor.execute(
                f"""UPDATE profiles_profile p SET merged_into_id = m.dst FROM {mapping}
                    WHERE p.site_id = %s AND (p.id = m.src OR p.merged_into_id = m.src)""",
                [*pairs, site_id],
            )
            cursor.execute(
                f"UPDATE tracking_session s SET profile_id = m.dst FROM {mapping} WHERE s.profile_id = m.src",
                pairs,
            )
            cursor.execute(
                f"""DELETE FROM profiles_companymembership c USING {mapping}
                    WHERE c.profile_id = m.src AND EXISTS (
                        SELECT 1 FROM profiles_companymembership t
                        WHERE t.profile_id = m.dst AND t.company_id = c.company_id)""",
                pairs,
            )
            cursor.execute(
                f"UPDATE profiles_companymembership c SET profile_id = m.dst FROM {mapping} WHERE c.profile_id = m.src",
                pairs,
            )
            # Anonymous histories are small: move them now. Two identified histories may
            # be large: a background task moves them in batches (ProfileMerge.repointed_at).
            small = [(s, t) for s, t, m in stored if not m.source_identified]
            if small:
                cursor.execute(
                    f"""UPDATE tracking_event e SET profile_id = m.dst FROM {mapping}
                        WHERE e.site_id = %s AND e.profile_id = m.src""",
                    [db.int_array(s for s, _ in small), db.int_array(t for _, t in small), site_id],
                )

    def _write_profiles(self) -> None:
        # Only profiles a message landed on: one loaded for a message left for later,
        # or through an id no message used in the end, is not rewritten as it was.
        changed = [
            p for p in self.profiles.values()
            if p.touched and not p.new and self.find(p.id) == p.id
        ]
        if not changed:
            return
        # One JSON document rather than a jsonb[] parameter, which the client quotes
        # element by element (a regex per quote character: the costliest step here).
        rows = [
            {
                "id": p.id,
                "properties": p.properties if p.changed else None,
                "stamps": (p.stamps or None) if p.changed else None,
                "changed": p.changed,
                "identified": p.identified,
                "first_seen": p.first_seen,
                "last_seen": p.last_seen,
            }
            for p in changed
        ]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE profiles_profile p SET
                    properties = CASE WHEN v.changed THEN v.properties ELSE p.properties END,
                    property_stamps = CASE WHEN v.changed THEN v.stamps ELSE p.property_stamps END,
                    is_identified = p.is_identified OR v.identified,
                    first_seen = LEAST(p.first_seen, v.first_seen),
                    last_seen = GREATEST(p.last_seen, v.last_seen)
                FROM jsonb_to_recordset(%s::jsonb) AS v(
                    id bigint, properties jsonb, stamps jsonb, changed boolean, identified boolean,
                    first_seen timestamptz, last_seen timestamptz)
                WHERE p.id = v.id
                """,
                [_json(rows)],
            )

    def _write_companies(self, db_id) -> None:
        if not self.company_members:
            return
        to_save = [self.companies[k] for k in sorted(self.company_changes)]
        if to_save:
            self._save_companies(to_save)
        CompanyMembership.objects.bulk_create(
            [
                CompanyMembership(company_id=self.companies[key].pk, profile_id=db_id(pid))
                for key, pid in sorted(self.company_members)
            ],
            ignore_conflicts=True,
        )

    def _save_companies(self, companies: list[Company]) -> None:
        """Update the companies the batch loaded (it holds them locked) and insert the
        new ones, in one statement. A company that did not exist when the batch was
        loaded may have been made since by another transaction (a group call of another
        of its people, in another lane): ConcurrentChange, and the retry loads it and
        applies the calls by their stamps (an upsert wrote this batch's traits over all
        of that transaction's)."""
        rows = [
            {"id": c.pk, "key": c.key, "properties": c.properties, "stamps": c.property_stamps or None}
            for c in companies
        ]
        new = [c for c in companies if c.pk is None]
        with connection.cursor() as cursor:
            cursor.execute(
                """
                WITH v AS (
                    SELECT * FROM jsonb_to_recordset(%s::jsonb)
                        AS v(id bigint, key varchar, properties jsonb, stamps jsonb)
                ), updated AS (
                    UPDATE profiles_company c
                    SET properties = v.properties, property_stamps = v.stamps, updated_at = now()
                    FROM v WHERE c.id = v.id
                )
                INSERT INTO profiles_company (site_id, key, properties, property_stamps, created_at, updated_at)
                SELECT %s, v.key, v.properties, v.stamps, now(), now() FROM v WHERE v.id IS NULL
                ON CONFLICT (site_id, key) DO NOTHING
                RETURNING key, id
                """,
                [_json(rows), self.site.pk],
            )
            made = dict(cursor.fetchall())
        if len(made) != len(new):
            raise ConcurrentChange("a company was created by a concurrent request")
        for company in new:
            company.pk = made[company.key]


class _Refused(Exception):
    def __init__(self, field_name: str, reason: str):
        self.field = field_name
        self.reason = reason


def resolve_batch(
    site: Site,
    messages: Sequence[Message],
    *,
    session_profiles: dict[str, int] | None = None,
    privileged: bool = False,
    actor: str = "write key",
    actors: Mapping[int, str] | None = None,
    defer_busy: bool = False,
) -> Resolution:
    """Resolve, merge and write the identities and properties of ``messages`` (in order).

    Must run inside a transaction (the caller's); raises ConcurrentChange when a
    concurrent request got in the way, and the caller retries the transaction.
    ``session_profiles`` maps the client session ids of the batch to their profiles.
    Merge records name ``actor`` as who merged, or the message's sender in ``actors``
    (message index -> sender) where a batch holds several senders' messages.

    ``defer_busy`` (the inbox drain): rather than wait for a profile another
    transaction holds (another drain's chunk, for as long as that chunk takes), leave
    its messages for later (``Resolution.deferred``), with every message that shares an
    id or a profile with them, so a person's messages keep their order.
    """
    batch = _Batch(site, privileged=privileged, actor=actor, actors=actors)
    batch.load(messages, session_profiles or {}, skip_locked=defer_busy)
    resolution = Resolution()
    if batch.busy or batch.busy_companies:
        deferred = held_back(
            messages, batch.busy, *batch.named_busy, batch.parent, busy_companies=batch.busy_companies
        )
        resolution.deferred = [m.index for m in messages if m.index in deferred]
        messages = [m for m in messages if m.index not in deferred]
    placed: list[tuple[int, int]] = []
    for m in messages:
        try:
            pid = batch.resolve(m)
        except _Refused as refused:
            resolution.errors.append(FieldError(m.index, refused.field, refused.reason))
            continue
        batch.apply(m, pid)
        placed.append((m.index, pid))
        if m.reserved_profile_id is not None and m.reserved_profile_id > 0:
            batch.promised.setdefault(m.reserved_profile_id, pid)
    real = batch.write()
    resolution.profile_ids = {index: batch._db_id(pid) for index, pid in placed}
    resolution.stored_last_seen = {
        batch._db_id(pid): batch.profiles[batch.find(pid)].stored_last_seen for _, pid in placed
    }
    resolution.merges = [(m.source, batch._db_id(m.target)) for m in batch.merges]
    resolution.repoint_later = any(m.source_identified and not m.new for m in batch.merges)
    resolution.new_profile_ids = sorted(real.values())
    return resolution


def held_back(
    messages: Sequence[Message],
    busy: set[int],
    ident: dict[tuple[str, str], int],
    session_profiles: dict[str, int],
    parent: dict[int, int],
    *,
    busy_companies: set[str] | frozenset[str] = frozenset(),
) -> set[int]:
    """Indexes of the messages that must wait for the ``busy`` profiles and the
    ``busy_companies`` (keys): those whose ids name a busy profile, the group calls of a
    busy company, and, transitively, every message sharing an id, a session, a profile
    id, a profile or a company with one of them. Whatever is left touches nothing they
    touch, so storing it first changes no outcome. Conservative: ids are joined by key
    whatever their kind. (``ident`` and ``session_profiles`` as loaded, before the busy
    ids were left out of them.)"""
    root: dict[str, str] = {}  # a union-find over ids, sessions and profiles (tracking.db)
    nodes: list[list[str]] = []
    for m in messages:
        own = [f"k:{key}" for key in (m.user_id, m.anonymous_id, m.previous_id) if key]
        own += [f"k:{key}" for _, key in m.identities]
        own += [f"p:{pid}" for pid in (m.profile_id, m.reserved_profile_id) if pid and pid > 0]
        if m.session_id:
            own.append(f"s:{m.session_id}")
        if m.kind is Kind.GROUP and m.group_id:
            own.append(f"g:{m.group_id}")
        for other in own[1:]:
            db.union(root, own[0], other)
        nodes.append(own)
    for (_, key), pid in ident.items():
        db.union(root, f"k:{key}", f"p:{pid}")
    for session_id, pid in session_profiles.items():
        db.union(root, f"s:{session_id}", f"p:{pid}")
    for child, target in parent.items():
        db.union(root, f"p:{child}", f"p:{target}")
    held = {db.find(root, f"p:{pid}") for pid in busy}
    held.update(db.find(root, f"g:{key}") for key in busy_companies)
    return {m.index for m, own in zip(messages, nodes, strict=True) if own and db.find(root, own[0]) in held}


def profiles_of_messages(site: Site, messages: Sequence[Message]) -> dict[int, int]:
    """Read-only: the profile each message names now (user id first, then anonymous id,
    other identities, our own id). For retried messages, which are not stored again but
    whose sender still wants the profile id back. One query for the identities, one for
    profile ids given without any known identity."""
    keys_wanted = {k for m in messages for k in (m.user_id, m.anonymous_id) if k}
    keys_wanted.update(key for m in messages for _, key in m.identities)
    known: dict[tuple[str, str], int] = {}
    if keys_wanted:
        rows = Identity.objects.filter(site=site, key__in=keys_wanted).values_list("kind", "key", "profile_id")
        known = {(kind, key): pid for kind, key, pid in rows}
    found: dict[int, int] = {}
    by_own_id: dict[int, int] = {}
    for m in messages:
        candidates = [(USER, m.user_id), (ANONYMOUS, m.anonymous_id), *m.identities]
        pid = next((known[c] for c in candidates if c[1] and c in known), None)
        if pid is not None:
            found[m.index] = pid
        elif m.profile_id:
            by_own_id[m.index] = m.profile_id
    if by_own_id:
        live = dict(
            Profile.objects.filter(site=site, pk__in=set(by_own_id.values())).values_list("pk", "merged_into_id")
        )
        for index, pid in by_own_id.items():
            if pid in live:
                found[index] = live[pid] or pid
    return found


def profiles_of_retries(site: Site, messages: Sequence[Message]) -> dict[int, int]:
    """``profiles_of_messages`` for retried messages that are not stored again, keeping
    the promises of a queued answer: a retry queued while the message it repeats was
    still queued was promised an id reserved for a new person (``tracking.inbox``), which
    becomes a tombstone of the profile the message names, so it resolves as the answer
    said (the id was no profile at all, and a client that kept it named nobody)."""
    found = profiles_of_messages(site, messages)
    promised = {
        m.reserved_profile_id: found[m.index]
        for m in messages
        if m.reserved_profile_id is not None and m.reserved_profile_id > 0 and m.index in found
    }
    if promised:
        taken = set(Profile.objects.filter(pk__in=list(promised)).values_list("pk", flat=True))
        people = {p.pk: p for p in Profile.objects.filter(site=site, pk__in=set(promised.values()))}
        tombstones = [
            {
                "id": rid, "properties": {}, "identified": False, "merged_into": pid,
                "first_seen": people[pid].first_seen, "last_seen": people[pid].last_seen,
            }
            for rid, pid in promised.items()
            if rid not in taken and pid in people
        ]
        if tombstones:
            _insert_profiles(site.pk, tombstones)
    return found


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def _json(value: Any) -> str:
    return jsontext.dumps(value)


def _insert_profiles(site_id: int, rows: list[dict[str, Any]]) -> list[int]:
    """Insert profiles (keys: id or None for the next of the sequence, properties,
    identified, first_seen, last_seen, optionally stamps and merged_into); returns their ids in
    order. One JSON document, not the ORM's bulk_create: building a model and preparing
    each field of each row was a twentieth of the inbox drain's Python (py-spy)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO profiles_profile
                (id, site_id, properties, property_stamps, is_identified, first_seen, last_seen, merged_into_id)
            SELECT coalesce(v.id, nextval(s.seq)), %s, v.properties, v.stamps, v.identified,
                   v.first_seen, v.last_seen, v.merged_into
            FROM ROWS FROM (jsonb_to_recordset(%s::jsonb) AS (
                    id bigint, properties jsonb, stamps jsonb, identified boolean, first_seen timestamptz,
                    last_seen timestamptz, merged_into bigint)) WITH ORDINALITY
                 AS v(id, properties, stamps, identified, first_seen, last_seen, merged_into, n),
                 (SELECT pg_get_serial_sequence('profiles_profile', 'id')::regclass AS seq OFFSET 0) s
            ORDER BY v.n
            RETURNING id
            """,
            [site_id, _json(rows)],
        )
        return [row[0] for row in cursor.fetchall()]


def _now():
    from django.utils import timezone

    return timezone.now()
