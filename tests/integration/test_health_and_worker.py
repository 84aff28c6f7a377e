"""/healthz and a real Celery worker process against the configured broker."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection

from tracking.models import Heartbeat
from tracking.tasks import heartbeat_task

ROOT = Path(__file__).resolve().parents[2]


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


def _test_database_url() -> str:
    db = connection.settings_dict
    if str(db["HOST"]).startswith("/"):
        return f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task(tmp_path):
    queue = f"test-{uuid.uuid4().hex[:8]}"  # never steal work from another worker
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo",
         "-Q", queue, "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT,
    )
    try:
        heartbeat_task.apply_async(kwargs={"name": queue}, queue=queue)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not Heartbeat.objects.filter(name=queue).exists():
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.3)
        assert Heartbeat.objects.filter(name=queue).exists(), (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
