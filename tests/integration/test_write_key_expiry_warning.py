"""A site whose every active write key expires within 24 hours (a rotation's grace, or
an expiry set for rotation) stops tracking when they do: the site's admin page and the
marketer Settings page say so, as they do when no active key is left."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import MembershipFactory
from tracking import services
from tracking.models import Membership, WriteKey

pytestmark = pytest.mark.django_db

EXPIRING = "Every active write key of this site expires within 24 hours"
NONE_LEFT = "This site has no active write key"


def pages(client, admin_client, site):
    """The text of the marketer Settings page and of the site's admin page."""
    member = MembershipFactory(site=site, role=Membership.Role.VIEWER).user
    client.force_login(member)
    settings_page = client.get(reverse("app:settings", args=[site.pk]))
    admin_page = admin_client.get(reverse("admin:tracking_site_change", args=[site.pk]))
    assert settings_page.status_code == admin_page.status_code == 200
    return settings_page.content.decode(), admin_page.content.decode()


def test_both_pages_warn_when_the_only_active_key_expires_within_a_day(client, admin_client, site):
    site.write_keys.update(expires_at=timezone.now() + timedelta(hours=5))

    for text in pages(client, admin_client, site):
        assert EXPIRING in text
        assert "issue a new one" in text


def test_both_pages_warn_after_a_rotation_until_the_new_key_is_there(client, admin_client, site):
    # A rotation leaves the new key without an expiry: no warning then.
    services.write_key_rotate(site=site)
    for text in pages(client, admin_client, site):
        assert EXPIRING not in text and NONE_LEFT not in text

    WriteKey.objects.filter(site=site, expires_at__isnull=True).update(expires_at=timezone.now() + timedelta(hours=23))
    for text in pages(client, admin_client, site):
        assert EXPIRING in text


def test_both_pages_warn_when_no_active_key_is_left(client, admin_client, site):
    site.write_keys.update(revoked_at=timezone.now())

    for text in pages(client, admin_client, site):
        assert NONE_LEFT in text


@pytest.mark.parametrize("expires_in", [None, timedelta(hours=25), timedelta(days=30)])
def test_no_warning_while_a_key_outlives_the_next_day(client, admin_client, site, expires_in):
    expires_at = timezone.now() + expires_in if expires_in else None
    site.write_keys.update(expires_at=expires_at)
    services.write_key_issue(site=site)  # another key expiring soon does not matter
    WriteKey.objects.filter(site=site).exclude(pk=site.write_keys.order_by("pk").first().pk).update(
        expires_at=timezone.now() + timedelta(hours=1)
    )

    for text in pages(client, admin_client, site):
        assert EXPIRING not in text and NONE_LEFT not in text
