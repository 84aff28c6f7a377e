"""`make run` knows when it runs already, and `make stop` stops a running one
(config/embedded.py, tracking/management/commands/serve.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from config import embedded


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(embedded, "DATA_DIR", tmp_path)
    return tmp_path


@pytest.fixture
def fake_serve(data_dir):
    """A process whose command line says serve, as `manage.py serve`'s does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "serve"])
    # Popen returns as the child execs, before the kernel has set its new command line:
    # /proc/<pid>/cmdline reads empty for a moment (most of the time, on this machine).
    deadline = time.monotonic() + 10
    while not Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    embedded.serve_pidfile().write_text(str(proc.pid))
    yield proc
    proc.kill()
    proc.wait()


def test_a_running_serve_is_found_and_stopped(fake_serve):
    assert embedded.running_serve() == fake_serve.pid
    assert embedded.stop_serve(timeout=10) is True
    assert fake_serve.wait(timeout=5) is not None
    assert embedded.running_serve() is None
    assert embedded.stop_serve() is False


def test_a_stale_pid_file_names_no_serve(data_dir):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        embedded.serve_pidfile().write_text(str(other.pid))  # a reused pid: not ours
        assert embedded.running_serve() is None
        assert embedded.stop_serve() is False and other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_second_make_run_refuses_to_start(fake_serve):
    with pytest.raises(CommandError, match=f"running already \\(pid {fake_serve.pid}\\)"):
        call_command("serve", "--no-demo")


class ExitedProcess:
    """What `make run` starts, as a process that has exited already: the serve loop
    notices at once and stops."""

    returncode = 0

    def poll(self):
        return 0

    def wait(self, timeout=None):
        return 0


def test_make_run_starts_the_worker_and_beat_at_log_level(data_dir, monkeypatch):
    from tracking.management.commands import serve

    started = []
    monkeypatch.setattr(serve, "call_command", lambda *args, **kwargs: None)
    monkeypatch.setattr(serve.subprocess, "Popen", lambda cmd, **kwargs: started.append(cmd) or ExitedProcess())
    monkeypatch.setattr(serve.signal, "signal", lambda *args: None)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    call_command("serve", "--no-demo", stdout=io.StringIO(), stderr=io.StringIO())
    celery = [cmd for cmd in started if "celery" in cmd]
    assert [cmd[cmd.index("--loglevel") + 1] for cmd in celery] == ["WARNING", "WARNING"]
