"""Log-in attempts are rate limited (django-axes): after LOGIN_FAILURE_LIMIT failures for
one username from one address, that pair is locked out for LOGIN_LOCKOUT_MINUTES, on the
marketer app's login page and the Django admin's alike; a success resets the count."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

APP_LOGIN = "/app/login/"
ADMIN_LOGIN = "/admin/login/"
LOCKED = "Too many failed log-in attempts"


def attempt(client, path, username, password, ip="203.0.113.7", **extra):
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def fail(client, path, username, times, ip="203.0.113.7", **extra):
    """``times`` failed attempts: the form again with its error, the limit's a lock-out."""
    for n in range(1, times + 1):
        response = attempt(client, path, username, "wrong", ip, **extra)
        assert response.status_code == (429 if n == settings.AXES_FAILURE_LIMIT else 200), (n, response.status_code)


def test_the_defaults_are_five_failures_and_fifteen_minutes():
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)


@pytest.mark.parametrize("path", [APP_LOGIN, ADMIN_LOGIN])
def test_the_fifth_failure_locks_the_username_out_with_a_message_on_the_login_page(make_user, path):
    user = make_user(is_staff=True)
    client = Client()
    fail(client, path, user.username, 4)

    response = attempt(client, path, user.username, "wrong")

    assert response.status_code == 429
    text = response.content.decode()
    assert LOCKED in text and "15 minutes" in text
    assert 'name="password"' in text  # the login page, not a bare error
    # Even the right password is refused while locked out.
    response = attempt(client, path, user.username, PASSWORD)
    assert response.status_code == 429 and LOCKED in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_lock_is_for_that_username_from_that_address(make_user):
    user, other = make_user(), make_user()
    fail(Client(), APP_LOGIN, user.username, 5)

    assert attempt(Client(), APP_LOGIN, other.username, PASSWORD).status_code == 302
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD, ip="198.51.100.9").status_code == 302
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 429


def test_the_lock_ends_after_the_cool_off(make_user):
    user = make_user()
    fail(Client(), APP_LOGIN, user.username, 5)
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 429

    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count(make_user):
    user = make_user()
    fail(Client(), APP_LOGIN, user.username, 4)
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 302

    fail(Client(), APP_LOGIN, user.username, 4)  # four more: not five in a row

    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 302


def test_a_forwarded_address_is_ignored_unless_proxies_are_configured(make_user, settings):
    """X-Forwarded-For is whatever the client wrote: with no TRUSTED_PROXY_HOPS, changing
    it does not escape the lock; behind one configured proxy, it names the client."""
    user = make_user()
    for n in range(5):
        attempt(Client(), APP_LOGIN, user.username, "wrong", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429

    settings.TRUSTED_PROXY_HOPS = 1
    assert attempt(Client(), APP_LOGIN, user.username, PASSWORD, HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 302


def test_the_log_keeps_failures_and_not_each_successful_login(make_user, caplog):
    user = make_user()
    with caplog.at_level(logging.INFO):
        fail(Client(), APP_LOGIN, user.username, 1)
        assert attempt(Client(), APP_LOGIN, user.username, PASSWORD).status_code == 302
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("axes")]
    assert lines and all(level >= logging.WARNING for level, _ in lines), lines
    assert any("failure" in text.lower() for _, text in lines), lines
