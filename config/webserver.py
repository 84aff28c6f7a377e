"""The web server command: granian serving config.wsgi, for `make run` and the bench alike,
so the bench measures what is run.

granian rather than gunicorn's threaded workers: a /v1/track call cost the web tier
0.65-0.77 ms of CPU against gunicorn's 0.84-0.88 in alternating `make bench` runs."""

from __future__ import annotations

import sys


def granian_command(*, host: str, port: int, workers: int, threads: int, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "granian", "--interface", "wsgi", "--host", host, "--port", str(port),
        "--workers", str(workers), "--blocking-threads", str(threads), "--no-ws",
        *extra, "config.wsgi:application",
    ]
