"""What the JS tracker relies on server-side: its config endpoint, how its file is served
(versioned, long-cached, old versions redirected), the snippets, and the Settings form
that edits auto-event rules."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tracking import tracker
from tracking.models import Membership
from tracking.snippet import drop_ins, tracker_snippet

pytestmark = pytest.mark.django_db

RULES = [
    {"kind": "page", "match": "/pricing*", "event": "Pricing Viewed"},
    {"kind": "click", "match": "button.buy", "event": "Buy Clicked"},
    {"kind": "hover", "match": "x", "event": "Unknown kinds are skipped"},
]


def test_it_serves_the_tracker_config_to_any_origin(client, site):
    site.auto_event_rules = RULES
    site.session_timeout_minutes = 45
    site.respect_do_not_track = True
    site.save()
    key = site.primary_write_key().key
    response = client.get(f"/v1/tracker-config/{key}", HTTP_ORIGIN="https://shop.example")
    assert response.status_code == 200
    assert response.json() == {
        "sessionTimeout": 45 * 60,
        "respectDoNotTrack": True,
        "pageRules": [{"match": "/pricing*", "event": "Pricing Viewed"}],
        "clickRules": [{"match": "button.buy", "event": "Buy Clicked"}],
    }
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cache-Control"] == "public, max-age=60"


def test_it_answers_404_for_an_unknown_or_revoked_write_key(client, site):
    assert client.get("/v1/tracker-config/wk_nope").status_code == 404
    write_key = site.primary_write_key()
    write_key.revoke()
    response = client.get(f"/v1/tracker-config/{write_key.key}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_it_serves_the_versioned_tracker_for_a_year_and_the_plain_one_briefly(client):
    script = tracker.current_script()
    assert script.built, "run `make install` (npm run build:tracker)"
    versioned = client.get(f"/static/{script.path}")
    assert versioned.status_code == 200
    assert versioned["Cache-Control"] == "max-age=315360000, public, immutable"
    body = b"".join(versioned.streaming_content)
    plain = client.get("/static/footprint.js")
    assert plain["Cache-Control"] == "max-age=60, public"
    assert b"".join(plain.streaming_content) == body  # the minified build shadows the source


def test_it_redirects_old_versions_and_key_urls_to_the_current_tracker(client, site):
    current = tracker.script_url()
    response = client.get("/static/tracker/0123456789ab/footprint.js")
    assert (response.status_code, response["Location"]) == (302, current)
    key = site.primary_write_key().key
    response = client.get(f"/tracker/{key}.js")  # Tracktor's snippet: token in the URL
    assert (response.status_code, response["Location"]) == (302, current)
    assert response["Cache-Control"] == "public, max-age=300"


def test_the_snippets_load_the_versioned_tracker_with_the_write_key(site):
    key = site.primary_write_key().key
    snippet = tracker_snippet(site, base_url="https://fp.example/")
    url = tracker.script_url("https://fp.example")
    assert re.search(r"/static/tracker/[0-9a-f]{12}/footprint\.js$", url)
    assert f'"{url}","{key}","https://fp.example"' in snippet
    assert "footprint.js" in snippet
    carma = drop_ins(site, base_url="https://fp.example")
    assert carma.carma_tag == (
        f'<script id="carma-tracking" type="text/javascript" data-server="" data-url="https://fp.example/v1" '
        f'data-token="{key}" src="{url}"></script>'
    )
    assert carma.tracktor_url_prefix == "https://fp.example/scripts/"


def settings_post(site, **changes):
    data = {
        "name": site.name,
        "time_zone": "UTC",
        "session_timeout_minutes": 20,
        "anonymous_retention_days": 60,
        "cart_abandon_minutes": 60,
        "allowed_origins": "",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
    }
    data.update(changes)
    return data


def rule_fields(index, kind, match, event, delete=False):
    fields = {f"rules-{index}-kind": kind, f"rules-{index}-match": match, f"rules-{index}-event": event}
    if delete:
        fields[f"rules-{index}-DELETE"] = "on"
    return fields


@pytest.fixture
def site_admin_client(client, marketer):
    Membership.objects.filter(user=marketer).update(role="admin")
    client.force_login(marketer)
    return client


def test_settings_save_rules_in_order_without_the_deleted_ones(site_admin_client, site):
    url = reverse("app:settings", args=[site.pk])
    data = settings_post(
        site,
        **{"rules-TOTAL_FORMS": "3", "respect_do_not_track": "on"},
        **rule_fields(0, "page", " /pricing* ", "Pricing Viewed"),
        **rule_fields(1, "click", "a.gone", "Gone", delete=True),
        **rule_fields(2, "click", "button.buy", " Buy Clicked "),
    )
    response = site_admin_client.post(url, data)
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.auto_event_rules == [
        {"kind": "page", "match": "/pricing*", "event": "Pricing Viewed"},
        {"kind": "click", "match": "button.buy", "event": "Buy Clicked"},
    ]
    assert site.respect_do_not_track is True


def test_settings_name_the_bad_rule_field_and_save_nothing(site_admin_client, site):
    url = reverse("app:settings", args=[site.pk])
    data = settings_post(
        site,
        name="Renamed",
        **{"rules-TOTAL_FORMS": "2"},
        **rule_fields(0, "click", "button {x}", "Clicked"),
        **rule_fields(1, "page", "/ok", ""),
    )
    response = site_admin_client.post(url, data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "A CSS selector cannot contain {, }, ; or &lt;." in html
    assert "This field is required." in html
    site.refresh_from_db()
    assert (site.name, site.auto_event_rules) == ("Site A", [])


def test_a_settings_post_without_the_rules_editor_keeps_the_rules(site_admin_client, site):
    site.auto_event_rules = RULES[:1]
    site.save()
    data = settings_post(site, name="Renamed")
    del data["rules-TOTAL_FORMS"], data["rules-INITIAL_FORMS"]
    assert site_admin_client.post(reverse("app:settings", args=[site.pk]), data).status_code == 302
    site.refresh_from_db()
    assert (site.name, site.auto_event_rules) == ("Renamed", RULES[:1])


def test_the_script_addresses_of_tracktor_and_carma_serve_the_tracker(client, site):
    # A page moving from Tracktor or Carma changes only the host of its script address.
    key = site.primary_write_key().key
    current = tracker.script_url()
    for path in (f"/scripts/{key}.js", "/carma-scripts/tracking.min.js", "/tracking.min.js", f"/tracker/{key}.js"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == current
    assert drop_ins(site, base_url="https://fp.example").carma_src == "https://fp.example/carma-scripts/tracking.min.js"


def test_the_script_addresses_and_the_config_answer_head_as_get(client, site):
    # Uptime monitors and link checkers ask with HEAD (RFC 9110: a server supports GET and
    # HEAD); the answer is GET's, without the body.
    key = site.primary_write_key().key
    paths = [
        f"/tracker/{key}.js", f"/scripts/{key}.js", "/carma-scripts/tracking.min.js",
        "/static/tracker/0123456789ab/footprint.js", f"/v1/tracker-config/{key}", "/favicon.ico",
    ]
    for path in paths:
        got, head = client.get(path), client.head(path)
        assert (head.status_code, head.get("Location")) == (got.status_code, got.get("Location")), path
        assert head.content == b"", path


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_the_tracker_is_served_compressed_to_browsers_that_accept_it(client, encoding):
    # The 6 KB budget is of the gzipped file as served: the build writes compressed copies
    # beside the minified tracker, and whitenoise picks the one the browser accepts.
    url = tracker.script_url()
    response = client.get(url, HTTP_ACCEPT_ENCODING=f"{encoding}, deflate")
    assert response.status_code == 200
    assert response["Content-Encoding"] == encoding
    assert int(response["Content-Length"]) < 6 * 1024
    assert client.get(url).get("Content-Encoding") is None  # and plain to those that do not


def test_settings_store_allowed_origins_as_browsers_send_them(site_admin_client, client, site):
    # Browsers send Origin in lower case, the host in punycode, without a default port:
    # an origin written any other way would refuse the shop's own pages.
    origins = "https://Shop.Example/\nhttps://bücher.example\nhttp://localhost:8000\nhttps://shop.example:443\n"
    response = site_admin_client.post(reverse("app:settings", args=[site.pk]), settings_post(site, allowed_origins=origins))
    assert response.status_code == 302
    site.refresh_from_db()
    assert site.allowed_origins == ["https://shop.example", "https://xn--bcher-kva.example", "http://localhost:8000"]

    key = site.primary_write_key().key
    body = {"writeKey": key, "batch": [{"type": "track", "event": "Seen", "anonymousId": "a-origins-1"}]}
    for origin, status in [("https://xn--bcher-kva.example", 200), ("https://shop.example", 200), ("https://evil.example", 403)]:
        answer = client.post("/v1/batch", body, content_type="application/json", HTTP_ORIGIN=origin)
        assert answer.status_code == status, origin
        assert answer["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("https://shop.example/store", "has a path or query"),
        ("https://shop.example?utm=1", "has a path or query"),
        ("https://*.shop.example", "no wildcards"),
        ("https://shop.example, https://b.example", "put each origin on a line of its own"),
        ("shop.example", "is not an origin (http:// or https://…)"),
        ("https://shop.example:99999", "is not an origin"),
        ("https://shop..example", "host name that is not valid"),
    ],
)
def test_settings_refuse_an_origin_no_browser_sends_naming_the_field(site_admin_client, site, line, reason):
    response = site_admin_client.post(
        reverse("app:settings", args=[site.pk]), settings_post(site, name="Renamed", allowed_origins=line)
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["allowed_origins"]
    assert reason in errors["allowed_origins"][0]
    site.refresh_from_db()
    assert (site.name, site.allowed_origins) == ("Site A", [])


def test_a_refused_settings_post_leaves_the_site_name_shown_as_saved(site_admin_client, site):
    # The heading and the site switcher name the site as it is, not as the refused form
    # would have renamed it (which reads as if the new name had been saved).
    response = site_admin_client.post(
        reverse("app:settings", args=[site.pk]), settings_post(site, name="Renamed", session_timeout_minutes=0)
    )
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["session_timeout_minutes"]
    assert response.context["current_site"].name == "Site A"
    assert [s.name for s in response.context["user_sites"]] == ["Site A"]
    html = response.content.decode()
    assert '<small class="muted">Site A</small>' in html
    assert 'value="Renamed"' in html  # what was typed stays in the field, to correct


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("session_timeout_minutes", -1, "greater than or equal to 1."),
        ("session_timeout_minutes", 0, "greater than or equal to 1."),
        ("session_timeout_minutes", 10**20, "less than or equal to 1440."),
        ("anonymous_retention_days", -5, "greater than or equal to 1."),
        ("anonymous_retention_days", 3651, "less than or equal to 3650."),
        ("cart_abandon_minutes", -1, "greater than or equal to 1."),
        ("cart_abandon_minutes", "", "This field is required."),
    ],
)
def test_settings_name_the_real_bounds_of_each_number(site_admin_client, site, field, value, error):
    response = site_admin_client.post(reverse("app:settings", args=[site.pk]), settings_post(site, **{field: value}))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field]
    assert len(errors[field]) == 1 and errors[field][0].endswith(error)


def test_settings_number_inputs_carry_the_bounds_the_server_checks(site_admin_client, site):
    html = site_admin_client.get(reverse("app:settings", args=[site.pk])).content.decode()
    assert 'name="session_timeout_minutes" value="20" min="1" max="1440"' in html
    assert 'name="anonymous_retention_days" value="60" min="1" max="3650"' in html
    assert 'name="cart_abandon_minutes" value="60" min="1" max="43200"' in html


def test_a_settings_save_is_in_the_sites_admin_history_with_who_and_what(site_admin_client, admin_client, site, marketer):
    site.auto_event_rules = RULES[:1]
    site.save()
    data = settings_post(
        site, name="Renamed", session_timeout_minutes=45,
        **{"rules-TOTAL_FORMS": "0", "rules-INITIAL_FORMS": "1"},
    )
    assert site_admin_client.post(reverse("app:settings", args=[site.pk]), data).status_code == 302
    # A save that changes nothing is not history.
    again = settings_post(site, name="Renamed", session_timeout_minutes=45)
    assert site_admin_client.post(reverse("app:settings", args=[site.pk]), again).status_code == 302

    html = admin_client.get(reverse("admin:tracking_site_history", args=[site.pk])).content.decode()
    assert html.count(marketer.username) == 1
    assert "Changed Name, Session timeout (minutes) and Auto-event rules." in html
