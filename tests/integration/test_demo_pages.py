"""Every marketer page renders for people made by the real pipeline (demo traffic), not
only for hand-built fixtures: demo people carry every shape of context and property."""

import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db.models import F, Max, Min
from django.urls import reverse
from django.utils import timezone

from profiles.models import Profile, ProfileMerge
from profiles.selectors import live_events
from tests.conftest import PASSWORD
from tracking.management.commands.bootstrap import DEMO_SITE_NAME
from tracking.models import Event, Membership, Site

pytestmark = pytest.mark.django_db


def test_every_page_renders_for_demo_people(client, django_user_model):
    call_command("load_demo", people=25, days=20, seed=7, verbosity=0)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    Membership.objects.create(user=user, site=site, role=Membership.Role.ADMIN)
    client.force_login(user)
    for name in ("people", "live", "segments", "funnels", "metrics", "campaigns", "settings"):
        assert client.get(reverse(f"app:{name}", args=[site.pk])).status_code == 200, name
    people = Profile.objects.filter(site=site, merged_into__isnull=True)
    assert people.count() >= 25
    for profile in people:
        response = client.get(reverse("app:person", args=[site.pk, profile.pk]))
        assert response.status_code == 200, profile.pk


def test_demo_calls_arrive_when_made_and_logins_on_new_devices_merge(client, django_user_model):
    """Live events shows the last day's shopping, not three months "received now"; a
    shopper logging in on a device they browsed anonymously merges it, recorded as from a
    real tracker (not inside one batch, where the anonymous profile is never stored)."""
    call_command("load_demo", people=300, days=30, seed=7, verbosity=0)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    events = Event.objects.filter(site=site)
    assert events.count() > 5000
    delay = F("received_at") - F("occurred_at")
    delays = events.aggregate(low=Min(delay), high=Max(delay))
    assert timedelta(0) <= delays["low"] and delays["high"] < timedelta(seconds=1)

    live = live_events(site=site, limit=50).items
    assert len(live) == 50
    assert all(item.event.occurred_at > timezone.now() - timedelta(hours=25) for item in live)

    merge = ProfileMerge.objects.filter(site=site, reason=ProfileMerge.Reason.IDENTIFY).first()
    assert merge is not None
    assert Profile.objects.get(pk=merge.source_id).merged_into_id == merge.target_id
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    Membership.objects.create(user=user, site=site, role=Membership.Role.ADMIN)
    client.force_login(user)
    page = client.get(reverse("app:person", args=[site.pk, merge.target_id]))
    # "Merged from profile 158." or, when the shopper merged more devices, "profiles 17, 158."
    merged_from = re.search(r"Merged from profiles? ([0-9, ]+)\.", page.content.decode())
    assert merged_from and str(merge.source_id) in merged_from.group(1).split(", ")


def test_a_second_demo_load_without_if_empty_adds_nothing():
    """The same seed sends the same message ids: the dedupe stores them once."""
    call_command("load_demo", people=30, days=10, seed=7, verbosity=0)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    counts = Event.objects.filter(site=site).count(), Profile.objects.filter(site=site).count()
    call_command("load_demo", people=30, days=10, seed=7, verbosity=0)
    assert (Event.objects.filter(site=site).count(), Profile.objects.filter(site=site).count()) == counts
