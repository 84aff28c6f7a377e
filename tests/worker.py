"""A real Celery worker process for integration tests, on its own queue against the
test database and the configured broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]


def worker_database_url() -> str:
    db = connection.settings_dict
    if str(db["HOST"]).startswith("/"):
        return f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgresql://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, process: subprocess.Popen, queue: str, log: Path):
        self.process = process
        self.queue = queue  # never steal work from another worker: send tasks here
        self.log = log

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            assert self.process.poll() is None, self.log.read_text()
            time.sleep(0.2)
        raise AssertionError(f"timed out; worker log:\n{self.log.read_text()}")


@contextmanager
def celery_worker(tmp_path: Path, *, app: str = "config") -> Iterator[Worker]:
    """Start ``celery -A app worker`` on a fresh queue; the test must use
    ``django_db(transaction=True)`` so the worker sees committed rows."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = {**os.environ, "DATABASE_URL": worker_database_url(), "CELERY_BROKER_URL": settings.CELERY_BROKER_URL}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "--pool", "solo", "-Q", queue,
         "--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )
    try:
        yield Worker(process, queue, log)
    finally:
        process.terminate()
        process.wait(timeout=30)
