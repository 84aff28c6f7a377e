"""Every marketer page renders for people made by the real pipeline (demo traffic), not
only for hand-built fixtures: demo people carry every shape of context and property."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from profiles.models import Profile
from tests.conftest import PASSWORD
from tracking.management.commands.bootstrap import DEMO_SITE_NAME
from tracking.models import Membership, Site

pytestmark = pytest.mark.django_db


def test_every_page_renders_for_demo_people(client, django_user_model):
    call_command("load_demo", people=25, days=20, seed=7, verbosity=0)
    site = Site.objects.get(name=DEMO_SITE_NAME)
    user = django_user_model.objects.create_user("viewer", password=PASSWORD)
    Membership.objects.create(user=user, site=site, role=Membership.Role.ADMIN)
    client.login(username="viewer", password=PASSWORD)
    for name in ("people", "live", "segments", "funnels", "metrics", "campaigns", "settings"):
        assert client.get(reverse(f"app:{name}", args=[site.pk])).status_code == 200, name
    people = Profile.objects.filter(site=site, merged_into__isnull=True)
    assert people.count() >= 25
    for profile in people:
        response = client.get(reverse("app:person", args=[site.pk, profile.pk]))
        assert response.status_code == 200, profile.pk
