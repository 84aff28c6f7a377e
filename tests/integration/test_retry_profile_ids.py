"""A retried message is stored once, and its sender still gets the profile id back."""

import pytest

from tests.messages import identify, ingest, track
from tracking.models import Event

pytestmark = pytest.mark.django_db


def test_it_returns_the_profile_id_of_a_retried_message(site):
    first = ingest(site, track(anon="a-retry1", message_id="r-1"))
    retry = ingest(site, track(anon="a-retry1", message_id="r-1"))
    assert retry.duplicates == [0] and retry.accepted == []
    assert retry.profile_ids == first.profile_ids
    assert Event.objects.filter(message_id="r-1").count() == 1


def test_it_returns_the_merged_person_for_a_retry_after_identify(site):
    ingest(site, track(anon="a-retry2", message_id="r-2"))
    merged = ingest(site, identify("u-retry", anon="a-retry2"))
    mixed = ingest(site, track(anon="a-retry2", message_id="r-2"), track(user="u-retry"))
    assert mixed.duplicates == [0] and mixed.accepted == [1]
    assert mixed.profile_ids[0] == mixed.profile_ids[1] == merged.profile_ids[0]
