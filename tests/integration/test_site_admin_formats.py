"""The site admin's Raptor mapping editor and its "How to call each format" panel."""

from __future__ import annotations

import html

import pytest
from django.urls import reverse

from tracking import keys

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


def change_form(site, **extra):
    data = {
        "name": site.name, "time_zone": "UTC", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60,
        "allowed_origins": "[]", "auto_event_rules": "[]",
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    }
    return data | extra


def test_it_shows_how_to_call_each_format_with_the_sites_keys(admin_client, site):
    page = html.unescape(admin_client.get(reverse("admin:tracking_site_change", args=[site.pk])).content.decode())
    key = site.primary_write_key().key

    assert "How to call each format" in page
    for title in ("Segment HTTP API", "Tracardi", "Tracktor.io", "Raptor"):
        assert f"<h3>{title}</h3>" in page
    assert f"curl -u '{key}:'" in page
    assert f'"id": "{key}"' in page  # Tracardi's source.id
    assert f"/track?sid={key}&" in page
    assert f"sign={keys.sign_identity(site.signing_secret, 'unicorn')}" in page
    assert f"/t/{key}.rsa?p1=itemclick" in page
    assert f"/t/{site.pk}.rsa?" in page


def test_the_raptor_mapping_is_edited_as_rows(admin_client, site):
    page = admin_client.get(reverse("admin:tracking_site_change", args=[site.pk])).content.decode()
    # An empty mapping offers the defaults as rows to edit.
    assert 'name="raptor_mapping-param" value="p1"' in page
    assert 'name="raptor_mapping-field" value="event_type"' in page

    response = admin_client.post(
        reverse("admin:tracking_site_change", args=[site.pk]),
        change_form(
            site,
            **{
                "raptor_mapping-param": ["p1", "P2", "p7", ""],
                "raptor_mapping-field": ["event_type", "product_id", "user_id", ""],
            },
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    site.refresh_from_db()
    assert site.raptor_mapping == {"p1": "event_type", "p2": "product_id", "p7": "user_id"}
    page = admin_client.get(reverse("admin:tracking_site_change", args=[site.pk])).content.decode()
    assert 'name="raptor_mapping-param" value="p2"' in page
    assert 'name="raptor_mapping-field" value="product_id"' in page


@pytest.mark.parametrize(
    ("params", "fields", "error"),
    [
        (["p1", "p1000"], ["event_type", "price"], "p1000: is not a Raptor parameter"),
        (["p1", "p1"], ["event_type", "price"], "p1: is mapped twice"),
        (["p2"], ["product_id"], "event_type: one parameter must map to event_type"),
        (["p1", "p2"], ["event_type", "event_type"], "p2: maps to event_type, as p1 does"),
        (["p1", "p2"], ["event_type", "has space"], "p2: must map to a field name"),
        (["p1", "p2"], ["event_type", ""], "p2: say what it means"),
    ],
)
def test_a_bad_mapping_is_refused_with_the_row_named(admin_client, site, params, fields, error):
    response = admin_client.post(
        reverse("admin:tracking_site_change", args=[site.pk]),
        change_form(site, **{"raptor_mapping-param": params, "raptor_mapping-field": fields}),
    )
    assert response.status_code == 200
    assert error in html.unescape(response.content.decode())
    site.refresh_from_db()
    assert site.raptor_mapping == {}


def test_json_is_still_accepted(admin_client, site):
    response = admin_client.post(
        reverse("admin:tracking_site_change", args=[site.pk]),
        change_form(site, raptor_mapping='{"p3": "event_type", "p4": "category_id"}'),
    )
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.raptor_mapping == {"p3": "event_type", "p4": "category_id"}
