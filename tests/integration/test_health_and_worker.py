"""/healthz and a real Celery worker process against the configured broker."""

from unittest import mock

import pytest

from tests.worker import celery_worker
from tracking.models import Heartbeat
from tracking.tasks import heartbeat_task


@pytest.mark.django_db
def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] is True
    assert "ok" in body["broker"] and "worker" in body


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_is_down(client):
    from django.db.utils import OperationalError

    with mock.patch("tracking.views.connection.cursor", side_effect=OperationalError("down")):
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False, "error": "OperationalError"}


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task(tmp_path):
    with celery_worker(tmp_path) as worker:
        heartbeat_task.apply_async(kwargs={"name": worker.queue}, queue=worker.queue)
        worker.wait_for(lambda: Heartbeat.objects.filter(name=worker.queue).exists())


def test_it_serves_an_icon_for_every_page(client, marketer):
    from django.contrib.staticfiles import finders

    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert response["Location"] == "/static/app/favicon.svg"
    assert finders.find("app/favicon.svg")
    client.force_login(marketer)
    page = client.get("/app/", follow=True)
    assert b'<link rel="icon" href="/static/app/favicon.svg"' in page.content


def test_hsts_is_sent_over_https_once_configured(settings):
    from django.test import Client

    assert "Strict-Transport-Security" not in Client().get("/favicon.ico", secure=True)  # off by default
    settings.SECURE_HSTS_SECONDS = 31_536_000
    client = Client()  # the middleware reads its settings once, when the first request loads it
    assert client.get("/favicon.ico", secure=True)["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/favicon.ico")  # never over plain HTTP


@pytest.mark.django_db
def test_healthz_answers_head_for_uptime_monitors(client):
    # UptimeRobot and others check with HEAD by default: 405 would read as down.
    assert client.head("/healthz").status_code == 200
    from django.db.utils import OperationalError

    with mock.patch("tracking.views.connection.cursor", side_effect=OperationalError("down")):
        assert client.head("/healthz").status_code == 503
