import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from tracking import keys, services
from tracking.models import SecretKey, Site

pytestmark = pytest.mark.django_db


def test_create_site_prints_working_keys_as_json():
    out = StringIO()
    call_command("create_site", "Shop", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert set(data) == {"id", "name", "write_key", "secret_key", "signing_secret"}
    site = Site.objects.get(pk=data["id"])
    assert site.name == "Shop" and site.signing_secret == data["signing_secret"]
    assert services.site_for_write_key(data["write_key"]) == site
    assert services.site_for_secret_key(data["secret_key"]) == site
    assert not SecretKey.objects.filter(digest=data["secret_key"]).exists()


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


def test_admin_issues_rotates_and_shows_the_secret_once(admin_client, site):
    change = reverse("admin:tracking_site_change", args=[site.pk])
    page = admin_client.get(change).content.decode()
    assert site.primary_write_key().key in page  # snippet carries the key
    assert "footprint.js" in page

    admin_client.post(reverse("admin:tracking_site_issue_write_key", args=[site.pk]))
    assert site.write_keys.active().count() == 2
    admin_client.post(reverse("admin:tracking_site_rotate_write_keys", args=[site.pk]))
    assert site.write_keys.filter(expires_at__isnull=True).count() == 1

    response = admin_client.post(reverse("admin:tracking_site_issue_secret_key", args=[site.pk]))
    shown = response.content.decode()
    record = SecretKey.objects.get(site=site)
    key = shown.split('id="secret-key"')[1].split(">")[1].split("<")[0]
    assert keys.digest(key) == record.digest
    assert key not in admin_client.get(change).content.decode()  # never shown again

    before = site.signing_secret
    admin_client.post(reverse("admin:tracking_site_regenerate_signing_secret", args=[site.pk]))
    site.refresh_from_db()
    assert site.signing_secret != before


def test_admin_key_buttons_refuse_get(admin_client, site):
    response = admin_client.get(reverse("admin:tracking_site_issue_write_key", args=[site.pk]))
    assert response.status_code == 405
    assert site.write_keys.count() == 1


def test_admin_gives_a_new_site_a_write_key(admin_client):
    response = admin_client.post(reverse("admin:tracking_site_add"), {
        "name": "Fresh", "time_zone": "UTC", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60,
        "allowed_origins": "[]", "raptor_mapping": "{}", "auto_event_rules": "[]",
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Site.objects.get(name="Fresh").write_keys.active().count() == 1


def test_admin_revokes_keys_in_bulk(admin_client, site):
    key = site.write_keys.get()
    secret = services.secret_key_issue(site=site)
    response = admin_client.post(
        reverse("admin:tracking_writekey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )
    assert response.status_code == 302
    admin_client.post(
        reverse("admin:tracking_secretkey_changelist"),
        {"action": "revoke", "_selected_action": [secret.record.pk]},
    )
    assert services.site_for_write_key(key.key) is None
    assert services.site_for_secret_key(secret.key) is None
