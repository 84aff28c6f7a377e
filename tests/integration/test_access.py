"""A user or key of site A never sees site B: UI pages and management API."""

import pytest
from django.urls import reverse

from tests.factories import MembershipFactory
from tracking import services
from tracking.models import Membership, Site

pytestmark = pytest.mark.django_db


def test_it_lists_only_member_sites_for_a_user(site, other_site, make_user):
    user = make_user()
    MembershipFactory(user=user, site=site)
    assert list(Site.objects.for_user(user)) == [site]


def test_it_lists_every_site_for_a_superuser(site, other_site, make_user):
    admin = make_user(is_superuser=True, is_staff=True)
    assert set(Site.objects.for_user(admin)) == {site, other_site}


def test_it_keeps_memberships_unique(site, marketer):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=marketer, site=site, role="admin")


@pytest.mark.parametrize("name", ["people", "segments", "funnels", "metrics", "campaigns", "settings"])
def test_it_serves_own_site_pages_and_404s_other_sites(client, site, other_site, marketer, name):
    client.force_login(marketer)
    assert client.get(reverse(f"app:{name}", args=[site.pk])).status_code == 200
    assert client.get(reverse(f"app:{name}", args=[other_site.pk])).status_code == 404


def test_it_sends_anonymous_visitors_to_login(client, site):
    response = client.get(reverse("app:people", args=[site.pk]))
    assert response.status_code == 302 and reverse("app:login") in response["Location"]


def test_a_wrong_password_keeps_the_username_and_where_to_go(client, marketer):
    response = client.post(
        reverse("app:login"), {"username": marketer.username, "password": "wrong", "next": "/app/s/1/live/"}
    )
    assert response.status_code == 200
    assert b"didn't match" in response.content
    assert f'id="id_username" value="{marketer.username}"'.encode() in response.content  # not typed again
    assert b'name="next" value="/app/s/1/live/"' in response.content


def test_it_redirects_home_to_the_first_site(client, site, marketer):
    client.force_login(marketer)
    response = client.get(reverse("app:home"))
    assert response["Location"] == reverse("app:people", args=[site.pk])


def test_it_lets_only_site_admins_change_settings(client, site, marketer):
    client.force_login(marketer)  # editor
    url = reverse("app:settings", args=[site.pk])
    client.post(url, {"name": "Hacked", "time_zone": "UTC", "session_timeout_minutes": 5,
                      "anonymous_retention_days": 60, "cart_abandon_minutes": 60})
    site.refresh_from_db()
    assert site.name == "Site A"
    Membership.objects.filter(user=marketer).update(role="admin")
    response = client.post(url, {"name": "Renamed", "time_zone": "Europe/Berlin", "session_timeout_minutes": 5,
                                 "anonymous_retention_days": 30, "cart_abandon_minutes": 90,
                                 "allowed_origins": "https://shop.example\n"})
    assert response.status_code == 302
    site.refresh_from_db()
    assert (site.name, site.time_zone, site.session_timeout_minutes) == ("Renamed", "Europe/Berlin", 5)
    assert site.allowed_origins == ["https://shop.example"]


def test_it_names_the_bad_field_in_settings(client, site, marketer):
    Membership.objects.filter(user=marketer).update(role="admin")
    client.force_login(marketer)
    response = client.post(reverse("app:settings", args=[site.pk]), {
        "name": "X", "time_zone": "Mars/Olympus", "session_timeout_minutes": 5,
        "anonymous_retention_days": 30, "cart_abandon_minutes": 90})
    assert response.status_code == 200
    assert "Unknown time zone" in response.content.decode()


def test_it_scopes_the_api_to_the_secret_key_site(api_client, site, other_site, secret_key):
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret_key}")
    response = api_client.get("/api/v1/sites")
    assert response.status_code == 200
    assert [s["id"] for s in response.json()["results"]] == [site.pk]
    assert api_client.get(f"/api/v1/sites/{site.pk}").status_code == 200
    assert api_client.get(f"/api/v1/sites/{other_site.pk}").status_code == 404


def test_it_scopes_the_api_to_the_user_memberships(api_client, site, other_site, marketer):
    api_client.force_authenticate(marketer)
    assert [s["id"] for s in api_client.get("/api/v1/sites").json()["results"]] == [site.pk]
    assert api_client.get(f"/api/v1/sites/{other_site.pk}").status_code == 404


def test_it_rejects_bad_and_revoked_secret_keys_with_the_error_shape(api_client, site, other_site):
    issued = services.secret_key_issue(site=site)
    api_client.credentials(HTTP_AUTHORIZATION="Bearer sk_deadbeef_nope")
    response = api_client.get("/api/v1/sites")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    issued.record.revoke()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.key}")
    assert api_client.get("/api/v1/sites").status_code == 401
    api_client.credentials()
    assert api_client.get("/api/v1/sites").status_code in (401, 403)


@pytest.mark.parametrize("role", ["viewer", "editor"])
def test_a_viewer_or_editor_post_changes_no_setting_nor_rule(client, site, marketer, role):
    Membership.objects.filter(user=marketer).update(role=role)
    client.force_login(marketer)
    url = reverse("app:settings", args=[site.pk])
    response = client.post(url, {
        "name": "Hacked", "time_zone": "UTC", "session_timeout_minutes": 1, "anonymous_retention_days": 1,
        "cart_abandon_minutes": 1, "allowed_origins": "https://evil.example", "respect_do_not_track": "on",
        "rules-TOTAL_FORMS": "1", "rules-INITIAL_FORMS": "0",
        "rules-0-kind": "click", "rules-0-match": "body", "rules-0-event": "Everything",
    }, follow=True)
    assert response.redirect_chain == [(url, 302)]
    assert "Only site admins can change settings." in response.content.decode()
    site.refresh_from_db()
    assert (site.name, site.session_timeout_minutes, site.allowed_origins, site.auto_event_rules) == ("Site A", 20, [], [])
    assert site.respect_do_not_track is False
