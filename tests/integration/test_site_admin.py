import json
import re
from io import StringIO
from unittest import mock

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from tests.factories import SiteFactory
from tracking import keys, services
from tracking.models import InboxBatch, SecretKey, Site

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
    # Again, with a live key beside the revoked one: the message counts what it did.
    fresh = services.write_key_issue(site=site)
    page = admin_client.post(
        reverse("admin:tracking_writekey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk, fresh.pk]},
        follow=True,
    ).content.decode()
    assert "Revoked 1 write key(s). 1 already revoked." in page


def _secret_key(admin_client, site) -> tuple[str, SecretKey]:
    page = admin_client.post(reverse("admin:tracking_site_issue_secret_key", args=[site.pk])).content.decode()
    return re.search(r'id="secret-key"[^>]*>(sk_[^<]+)<', page).group(1), SecretKey.objects.get(site=site)


def _api(secret: str, path: str = "/api/v1/sites", scheme: str = "Bearer"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    return client.get(path)


def test_an_issued_key_stays_with_its_site_and_a_revocation_cannot_be_edited_away(admin_client, site, other_site):
    secret, record = _secret_key(admin_client, site)
    record.revoke()
    # The change form once let an operator clear revoked_at or move the key to another site.
    admin_client.post(reverse("admin:tracking_secretkey_change", args=[record.pk]),
                      {"site": other_site.pk, "label": "moved", "revoked_at_0": "", "revoked_at_1": ""})
    record.refresh_from_db()
    assert (record.site_id, record.label) == (site.pk, "moved") and record.revoked_at is not None
    assert _api(secret).status_code == 401

    write_key = site.write_keys.get()
    write_key.revoke()
    admin_client.post(reverse("admin:tracking_writekey_change", args=[write_key.pk]),
                      {"site": other_site.pk, "label": "moved", "expires_at_0": "", "expires_at_1": "",
                       "revoked_at_0": "", "revoked_at_1": ""})
    write_key.refresh_from_db()
    assert write_key.site_id == site.pk and write_key.revoked_at is not None
    page = admin_client.get(reverse("admin:tracking_site_change", args=[site.pk])).content.decode()
    assert 'name="write_keys-0-revoked_at' not in page and 'name="secret_keys-0-revoked_at' not in page


def test_key_buttons_refuse_staff_without_the_permission_with_a_403(client, site, django_user_model):
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_site"))
    client.force_login(staff)
    response = client.post(reverse("admin:tracking_site_issue_secret_key", args=[site.pk]))
    assert response.status_code == 403
    assert not SecretKey.objects.filter(site=site).exists()


@pytest.mark.parametrize(
    ("codenames", "superuser", "shown"),
    [
        (["view_site"], False, False),
        (["view_site", "change_site"], False, True),
        ([], True, True),
    ],
)
def test_only_staff_who_may_change_the_site_see_its_signing_secret(
    client, site, django_user_model, codenames, superuser, shown
):
    # Whoever has it can sign any user id: it is a credential, like a secret key.
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True, is_superuser=superuser)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)

    response = client.get(reverse("admin:tracking_site_change", args=[site.pk]))

    assert response.status_code == 200
    text = response.content.decode()
    assert (site.signing_secret in text) is shown
    assert ("Regenerate signing secret" in text) is shown
    if not shown:
        assert "Shown to those who may change the site." in text


@pytest.mark.parametrize("model", ["writekey", "secretkey"])
def test_staff_who_may_only_view_keys_cannot_revoke_them(client, site, django_user_model, model):
    # Revoking every write key stops a site's tracking: it needs the change permission.
    secret = services.secret_key_issue(site=site)
    key = {"writekey": site.write_keys.get(), "secretkey": secret.record}[model]
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename=f"view_{model}"))
    client.force_login(staff)
    changelist = reverse(f"admin:tracking_{model}_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is None


def test_the_site_list_counts_active_keys_in_one_query(admin_client, site, django_assert_max_num_queries):
    shops = [SiteFactory(name=f"Shop {n}") for n in range(10)]
    services.write_key_issue(site=shops[0], label="second")
    shops[1].write_keys.get().revoke()
    with django_assert_max_num_queries(8):  # as many with 11 sites as with 1 (it was one more per site)
        page = admin_client.get(reverse("admin:tracking_site_changelist")).content.decode()
    counts = re.findall(r'class="field-active_write_keys">(\d+)<', page)
    assert sorted(counts) == sorted(["2", "0"] + ["1"] * 9)


def test_a_users_memberships_pick_sites_by_id(admin_client, django_user_model):
    user = django_user_model.objects.create_user("member")
    page = admin_client.get(reverse("admin:auth_user_change", args=[user.pk])).content.decode()
    assert 'name="site_memberships-0-site"' in page and 'select name="site_memberships-0-site"' not in page


def test_the_api_takes_any_case_of_bearer_and_answers_json_404s(admin_client, site):
    secret, _ = _secret_key(admin_client, site)
    assert _api(secret, scheme="bearer").status_code == 200
    for path in ("/api/v1/people/null%2Cnull", "/api/v1/nothing"):
        response = _api(secret, path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json"
        assert response.json() == {"code": "not_found", "message": "Not found."}


def test_the_api_docs_load_swagger_ui_from_footprint_not_a_cdn(admin_client):
    page = admin_client.get("/api/docs/").content.decode()
    assert "swagger-ui-bundle.js" in page and "/static/drf_spectacular_sidecar/" in page
    assert "cdn.jsdelivr.net" not in page  # a self-hosted install may have no internet


def test_admin_refuses_an_unknown_time_zone(admin_client, site):
    """The site's time zone renders every date of the people pages: a name zoneinfo does
    not know, saved in the admin, made each of them a 500."""
    data = {
        "name": site.name, "time_zone": "Mars/Olympus", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60,
        "allowed_origins": "[]", "raptor_mapping": "{}", "auto_event_rules": "[]",
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    }
    response = admin_client.post(reverse("admin:tracking_site_change", args=[site.pk]), data)
    assert response.status_code == 200 and "Unknown time zone" in response.content.decode()
    site.refresh_from_db()
    assert site.time_zone == "UTC"
    response = admin_client.post(reverse("admin:tracking_site_change", args=[site.pk]), {**data, "time_zone": " Europe/Berlin "})
    assert response.status_code == 302, response.content.decode()[:2000]
    site.refresh_from_db()
    assert site.time_zone == "Europe/Berlin"


@pytest.mark.parametrize("may_change", [False, True])
def test_only_staff_who_may_change_the_inbox_queue_failed_requests_again(client, site, django_user_model, may_change):
    row = InboxBatch.objects.create(
        site=site, received_at=timezone.now(), actor="write key", message_count=1, messages="[]",
        failed_at=timezone.now(), last_error="boom",
    )
    staff = django_user_model.objects.create_user("operator", password="pw", is_staff=True)
    codenames = ["view_inboxbatch", "change_inboxbatch"] if may_change else ["view_inboxbatch"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(staff)
    changelist = reverse("admin:tracking_inboxbatch_changelist")
    page = client.get(changelist).content.decode()
    assert ('value="retry"' in page) is may_change
    with mock.patch("tracking.inbox.wake_drain"):
        client.post(changelist, {"action": "retry", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert (row.failed_at is None) is may_change


@pytest.mark.parametrize(
    ("value", "saved"),
    [
        ('["https://Shop.Example/", "https://shop.example"]', ["https://shop.example"]),
        ('"https://shop.example"', None),  # a string, not a list: each letter would be an origin
        ('["https://shop.example/store"]', None),
    ],
)
def test_admin_checks_allowed_origins_as_the_settings_page_does(admin_client, site, value, saved):
    response = admin_client.post(reverse("admin:tracking_site_change", args=[site.pk]), {
        "name": site.name, "time_zone": "UTC", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60,
        "allowed_origins": value, "raptor_mapping": "{}", "auto_event_rules": "[]",
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    })
    site.refresh_from_db()
    if saved is None:
        assert response.status_code == 200
        assert "allowed_origins" in response.context["adminform"].form.errors
        assert site.allowed_origins == []
    else:
        assert response.status_code == 302
        assert site.allowed_origins == saved


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ('[{"kind": "page", "match": "pricing", "event": "Pricing Viewed"}]', "Rule 1: Start the pattern with /"),
        ('[{"kind": "page", "match": "/a", "event": "A"}, {"kind": "click", "match": "button {x}", "event": "B"}]',
         "Rule 2: A CSS selector cannot contain {"),
        ('[{"kind": "hover", "match": "a", "event": "A"}]', "Rule 1: kind must be one of page, click."),
        ('[{"kind": "page", "match": "/a"}]', 'Rule 1: give exactly "kind", "match" and "event".'),
        ('{"kind": "page", "match": "/a", "event": "A"}', "Enter a list of rules"),
    ],
)
def test_admin_refuses_auto_event_rules_the_tracker_could_not_use(admin_client, site, value, error):
    # A rule the Settings page would refuse never fires (a page pattern without its
    # leading /) or is dropped from the tracker config without a word.
    response = admin_client.post(reverse("admin:tracking_site_change", args=[site.pk]), {
        "name": site.name, "time_zone": "UTC", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60,
        "allowed_origins": "[]", "raptor_mapping": "{}", "auto_event_rules": value,
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    })
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["auto_event_rules"]
    assert message.startswith(error)
    site.refresh_from_db()
    assert site.auto_event_rules == []


def test_admin_saves_good_auto_event_rules_trimmed(admin_client, site):
    response = admin_client.post(reverse("admin:tracking_site_change", args=[site.pk]), {
        "name": site.name, "time_zone": "UTC", "session_timeout_minutes": 20,
        "anonymous_retention_days": 60, "cart_abandon_minutes": 60, "allowed_origins": "[]", "raptor_mapping": "{}",
        "auto_event_rules": '[{"kind": "click", "match": " button.buy ", "event": " Buy "}]',
        "write_keys-TOTAL_FORMS": 0, "write_keys-INITIAL_FORMS": 0,
        "secret_keys-TOTAL_FORMS": 0, "secret_keys-INITIAL_FORMS": 0,
        "memberships-TOTAL_FORMS": 0, "memberships-INITIAL_FORMS": 0,
    })
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.auto_event_rules == [{"kind": "click", "match": "button.buy", "event": "Buy"}]
