"""`make run`: migrate, bootstrap, then run web + Celery worker + beat until Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from config import embedded, webserver


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    return f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"


class Command(BaseCommand):
    help = "Run Footprint: web (granian), a Celery worker and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 2)))
        parser.add_argument("--no-demo", action="store_true", help="skip the demo data")

    def handle(self, *args, port: int, host: str, web_workers: int, no_demo: bool, **options):
        running = embedded.running_serve()
        if running is not None:
            raise CommandError(f"Footprint is running already (pid {running}); `make stop` stops it.")
        embedded.DATA_DIR.mkdir(parents=True, exist_ok=True)
        embedded.serve_pidfile().write_text(str(os.getpid()))
        try:
            self._serve(port=port, host=host, web_workers=web_workers, no_demo=no_demo)
        finally:
            embedded.serve_pidfile().unlink(missing_ok=True)

    def _serve(self, *, port: int, host: str, web_workers: int, no_demo: bool) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("bootstrap")
        if not no_demo:
            call_command("load_demo", if_empty=True)
        call_command("collectstatic", interactive=False, verbosity=0)

        env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1"}
        python = sys.executable
        # Celery sets the root logger's level from --loglevel, over settings.LOGGING's.
        log_level = os.environ.get("LOG_LEVEL", "INFO")
        commands = {
            "web": webserver.granian_command(
                host=host, port=port, workers=web_workers, threads=int(os.environ.get("WEB_THREADS", 4)),
                extra=["--access-log", "--workers-kill-timeout", "5s"],
            ),
            "worker": [
                python, "-m", "celery", "-A", "config", "worker",
                "--loglevel", log_level, "--concurrency", str(os.environ.get("CELERY_CONCURRENCY", 3)),
            ],
            "beat": [
                python, "-m", "celery", "-A", "config", "beat", "--loglevel", log_level,
                "--schedule", str(embedded.DATA_DIR / "celerybeat-schedule"),
                "--pidfile", "",
            ],
        }
        processes = {
            name: subprocess.Popen(cmd, env=env, start_new_session=True) for name, cmd in commands.items()
        }
        url = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
        self.stdout.write(
            self.style.SUCCESS(
                "\nFootprint is running.\n"
                f"  Marketer UI  {url}/app/\n"
                f"  Admin        {url}/admin/\n"
                f"  API docs     {url}/api/docs/\n"
                f"  Health       {url}/healthz\n"
                f"  Login        {os.environ.get('FOOTPRINT_ADMIN_USER', 'admin')} / "
                f"{os.environ.get('FOOTPRINT_ADMIN_PASSWORD', 'admin')}\n"
                "Press Ctrl-C (or run `make stop`) to stop.\n"
            )
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        # Ctrl-C, `make stop` and a closed terminal all stop everything (the children run
        # in sessions of their own, so only this process hears them).
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop)
        try:
            while not stopping:
                for name, proc in processes.items():
                    if proc.poll() is not None:
                        self.stderr.write(f"{name} exited with {proc.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            self.stdout.write("Stopping web, worker and beat…")
            for proc in processes.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for proc in processes.values():
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            if not os.environ.get("DATABASE_URL"):
                from django.db import connections

                connections.close_all()
                embedded.stop()
                self.stdout.write("Stopped the embedded PostgreSQL.")
