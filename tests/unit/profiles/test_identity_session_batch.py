"""Within one batch, a message that names only a client session belongs to the person an
earlier message of that session resolved to (a Tracardi payload is many events under one
new session, with no id at all)."""

from __future__ import annotations

import pytest

from profiles.models import Profile
from tests.messages import identify, ingest, track
from tracking.models import Session

pytestmark = pytest.mark.django_db


def test_events_of_a_new_session_with_no_ids_make_one_person(site):
    result = ingest(site, track("a", session_id="s-1"), track("b", session_id="s-1"), track("c", session_id="s-1"))
    assert len(set(result.profile_ids.values())) == 1
    assert Profile.objects.filter(site=site).count() == 1
    assert Session.objects.filter(site=site).count() == 1


def test_different_new_sessions_stay_different_people(site):
    result = ingest(site, track("a", session_id="s-1"), track("b", session_id="s-2"))
    assert len(set(result.profile_ids.values())) == 2


def test_a_session_follows_the_latest_person_named_in_it(site):
    result = ingest(
        site,
        track("a", anon="a-1", session_id="s-1"),
        identify("u-1", anon="a-1", session_id="s-1"),
        track("b", session_id="s-1"),
    )
    assert result.profile_ids[2] == result.profile_ids[1]
    assert Profile.objects.get(pk=result.profile_ids[2]).is_identified
