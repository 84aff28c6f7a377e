"""HTTP ingestion against the real server: start it, drive it, watch it, check the database.

The server is granian (WSGI, what ``make run`` serves with) or gunicorn (gthread), one
worker per core by default, run on a free local port against the same database as the bench command. Clients are
separate processes (``client``), started together and stopped on the same clock. Web
worker memory is sampled with psutil while the clients run.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings
from django.db import DatabaseError, connection

from config import webserver
from tracking import db
from tracking.benchmarks import client, cpu

BASE_DIR = Path(settings.BASE_DIR)
log = logging.getLogger(__name__)


def database_url() -> str:
    """The URL the server should use: the bench command's own database."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    db = settings.DATABASES["default"]
    return f"postgresql://{db['USER']}@/{db['NAME']}?host={db['HOST']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A web server process group serving config.wsgi on 127.0.0.1:<port>."""

    kind: str = "granian"  # or "gunicorn"
    workers: int = 2
    threads: int = 1  # granian's blocking threads; gunicorn: >1 runs gthread workers
    port: int = field(default_factory=free_port)
    drains: int = 1  # Celery worker processes storing what the server queued
    process: subprocess.Popen | None = None
    worker: subprocess.Popen | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # the processes' environment, set by start()

    def command(self) -> list[str]:
        app = "config.wsgi:application"
        if self.kind == "granian":
            return webserver.granian_command(
                host="127.0.0.1", port=self.port, workers=self.workers, threads=self.threads,
                extra=["--backlog", "2048", "--log-level", "warning"],
            )
        return [
            sys.executable, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers), "--threads", str(self.threads), "--backlog", "2048",
            "--log-level", "warning", "--graceful-timeout", "5",
        ]

    def worker_command(self) -> list[str]:
        return [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "prefork",
            "--concurrency", str(self.drains + 1), "--loglevel", "WARNING",
            "--without-heartbeat", "--without-mingle", "--without-gossip",
        ]

    def start(self, *, timeout: float = 60.0) -> None:
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DATABASE_CONN_MAX_AGE": "600",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "PYTHONUNBUFFERED": "1",
            # What the README recommends for production (each tracking request looks its
            # write key up; uncached, that lookup was a quarter of a /v1/track request).
            "WRITE_KEY_CACHE_SECONDS": os.environ.get("WRITE_KEY_CACHE_SECONDS", "30"),
            "INGEST_MODE": "queued",
            "DATABASE_CONN_HEALTH_CHECKS": os.environ.get("DATABASE_CONN_HEALTH_CHECKS", "false"),
            "INGEST_DRAINS": str(self.drains),
        }
        log_dir = BASE_DIR / "bench" / "results"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"server-{self.kind}.log.tmp"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=BASE_DIR, env=self.env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
            )
        self.start_worker()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.process.returncode}; see {self.log_path}")
            try:
                status, _ = client.Connection("127.0.0.1", self.port, timeout=5).request(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                if status == 200 and len(self.worker_pids()) >= self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.kind} did not answer on port {self.port} within {timeout:.0f}s")

    def warm(self, requests: int = 20) -> None:
        """Make every worker load Django and open its database connection."""
        for _ in range(requests):
            client.Connection("127.0.0.1", self.port).request(
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        try:
            return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def start_worker(self) -> None:
        """The Celery worker whose drains store what the server queues (appending to its log)."""
        with (BASE_DIR / "bench" / "results" / "worker.log.tmp").open("ab") as log:
            self.worker = subprocess.Popen(
                self.worker_command(), cwd=BASE_DIR, env=self.env, start_new_session=True,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def stop_worker(self) -> None:
        _terminate(self.worker)

    def stop(self) -> None:
        for process in (self.process, self.worker):
            _terminate(process)

    def wait_drained(self, timeout: float = 600.0) -> float:
        """Wait until the inbox is empty (every accepted request stored); returns the
        wall-clock time (time.time()) when it was seen empty."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                # One probe of the key, not a count: under load the count walked every
                # queued and dead row 20 times a second (4 ms each, pg_stat_statements),
                # 7% of a core taken from the drain it was waiting for.
                cursor.execute("SELECT 1 FROM tracking_inboxbatch WHERE failed_at IS NULL ORDER BY id LIMIT 1")
                if cursor.fetchone() is None:
                    return time.time()
            if self.worker is not None and self.worker.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {self.worker.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"the inbox was not drained within {timeout:.0f}s")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _terminate(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class RssSampler(threading.Thread):
    """Largest resident set of any one web worker, sampled every ``interval`` seconds."""

    def __init__(self, server: Server, interval: float = 0.5):
        super().__init__(daemon=True)
        self.server = server
        self.interval = interval
        self.max_mb = 0.0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            for pid in self.server.worker_pids():
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.max_mb = max(self.max_mb, rss)
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.max_mb


@dataclass
class LoadResult:
    mode: str
    processes: int
    duration: float
    requests: int = 0
    events_sent: int = 0
    events_accepted: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    slow: list[tuple[float, float]] = field(default_factory=list)  # (s into the run, ms) ≥ client.SLOW_MS
    postgres: dict[str, int] = field(default_factory=dict)  # server_counters() over the run and its drain
    errors: list[str] = field(default_factory=list)
    rss_max_mb: float = 0.0
    started_at: float = 0.0  # wall clock (time.time()) when the clients started
    drained_at: float = 0.0  # wall clock when everything accepted was stored
    cpu_cores: dict[str, float] = field(default_factory=dict)  # by part, while the clients sent
    events_stored: int | None = None  # distinct message ids of the run found in the events table

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration if self.duration else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events_accepted / self.duration if self.duration else 0.0

    def percentile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        if len(self.latencies) == 1:
            return self.latencies[0]
        return statistics.quantiles(self.latencies, n=1000, method="inclusive")[int(q * 1000) - 1]

    @property
    def stored_per_second(self) -> float:
        """Stored events (counted in the database when known, else the accepted ones) over
        the time from the first request until the inbox was drained."""
        span = self.drained_at - self.started_at
        stored = self.events_accepted if self.events_stored is None else self.events_stored
        return stored / span if self.drained_at and span > 0 else 0.0

    def summary(self) -> dict:
        return {
            "stored_per_s": round(self.stored_per_second, 1),
            "drain_lag_s": round(self.drained_at - self.started_at - self.duration, 2) if self.drained_at else None,
            "mode": self.mode,
            "started_at": round(self.started_at, 3),  # Unix time: to find a slow second in logs
            "processes": self.processes,
            "duration_s": round(self.duration, 2),
            "requests": self.requests,
            "requests_per_s": round(self.requests_per_second, 1),
            "events_sent": self.events_sent,
            "events_accepted": self.events_accepted,
            "events_stored": self.events_stored,
            "events_per_s": round(self.events_per_second, 1),
            "failed": self.failed,
            "statuses": self.statuses,
            "p50_ms": _round(self.percentile(0.5)),
            "p99_ms": _round(self.percentile(0.99)),
            "max_ms": _round(max(self.latencies) if self.latencies else None),
            "worker_rss_max_mb": round(self.rss_max_mb, 1),
            "cpu_cores": self.cpu_cores,
            "slow": slow_summary(self.slow),
            "postgres": self.postgres,
            "failure_samples": self.samples[:5],
            "clients_failed": len(self.errors),
            "client_errors": self.errors[:5],
        }


def slow_summary(slow: list[tuple[float, float]], top: int = 3) -> dict:
    """Requests at or over the latency target, and the seconds of the run where most of
    them were sent: a stall (a checkpoint's sync, a lock) shows as one or two such seconds,
    an overloaded server as slow requests spread over the whole run."""
    by_second: dict[int, list[float]] = {}
    for at, ms in slow:
        by_second.setdefault(int(at), []).append(ms)
    worst = sorted(by_second.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    return {
        "over_ms": client.SLOW_MS,
        "requests": len(slow),
        "seconds_with_any": len(by_second),
        "worst_seconds": [{"second": second, "requests": len(ms), "max_ms": max(ms)} for second, ms in worst],
    }


def server_counters() -> dict[str, int]:
    """PostgreSQL's running totals: checkpoints and the MB of buffers they wrote
    (pg_stat_bgwriter up to PostgreSQL 16, pg_stat_checkpointer from 17), and the WAL
    written, with its full-page images (pg_stat_wal, PostgreSQL 14 and later)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        if cursor.fetchone()[0] >= 170000:
            view, count, buffers = "pg_stat_checkpointer", "num_timed + num_requested", "buffers_written"
        else:
            view, count, buffers = "pg_stat_bgwriter", "checkpoints_timed + checkpoints_req", "buffers_checkpoint"
        cursor.execute(
            f"SELECT {count}, {buffers} * current_setting('block_size')::bigint / 1048576, "
            f"w.wal_bytes / 1048576, w.wal_fpi FROM {view}, pg_stat_wal w"
        )
        checkpoints, checkpoint_mb, wal_mb, fpi = cursor.fetchone()
    return {"checkpoints": checkpoints, "checkpoint_mb": int(checkpoint_mb), "wal_mb": int(wal_mb), "wal_full_page_images": fpi}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run_load(
    server: Server,
    *,
    write_key: str,
    people: int,
    run_id: str,
    mode: str,
    processes: int,
    duration: float,
    batch_size: int = 0,
    rate: float = 0.0,
    seed: int = 1,
    label: str = "",
    drain: bool = True,
) -> LoadResult:
    """Run ``processes`` client processes for ``duration`` seconds; ``rate`` (requests/s in
    all) paces them open-loop, 0 runs them closed-loop. Message ids start with
    ``<run_id>-<label>-`` (``label`` defaults to ``mode``): each phase of a run needs a
    label of its own, or its messages are duplicates of an earlier phase's, answered but
    not stored again. With ``drain`` false (no worker running) it returns without
    waiting for the inbox to be drained."""
    start_at = time.time() + 1.0 + 0.1 * processes  # the clients need a moment to start
    specs = [
        {
            "host": "127.0.0.1",
            "port": server.port,
            "write_key": write_key,
            "people": people,
            "prefix": f"{run_id}-{label or mode}-{n}",
            "seed": seed * 1000 + n,
            "batch_size": batch_size,
            "rate": rate / processes if rate else 0.0,
            "start_at": start_at,
            "duration": duration,
        }
        for n in range(processes)
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tracking.benchmarks.client"],
            cwd=BASE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in specs
    ]
    for proc, spec in zip(procs, specs, strict=True):
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        proc.stdin = None  # communicate() must not flush it again
    sampler = RssSampler(server)
    sampler.start()
    meter = cpu.CpuMeter(
        web_pid=server.process.pid if server.process else None,
        drain_pid=server.worker.pid if server.worker else None,
    )
    before = server_counters()
    time.sleep(max(0.0, start_at - time.time()))
    meter.start()
    collected = []
    for proc in procs:
        out, err = proc.communicate(timeout=duration + 120)
        try:
            collected.append(json.loads(out))
        except ValueError:
            collected.append({"error": f"client exited with {proc.returncode}: {err.decode()[-500:]}"})
    result = LoadResult(mode=mode, processes=processes, duration=duration, started_at=start_at)
    result.cpu_cores = meter.stop()
    if drain:
        result.drained_at = server.wait_drained()
    after = server_counters()
    result.postgres = {key: after[key] - before[key] for key in after}
    result.rss_max_mb = sampler.stop()
    elapsed = []
    for stats in collected:
        if "error" in stats:
            result.errors.append(stats["error"])
            continue
        result.requests += stats["requests"]
        result.events_sent += stats["events_sent"]
        result.events_accepted += stats["events_accepted"]
        result.failed += stats["failed"]
        result.samples += stats["samples"]
        result.latencies += stats["latencies"]
        result.slow += [tuple(pair) for pair in stats.get("slow", ())]
        elapsed.append(stats["elapsed"])
        for status, count in stats["statuses"].items():
            result.statuses[status] = result.statuses.get(status, 0) + count
    if elapsed:
        result.duration = max(elapsed)
    if result.errors and not elapsed:
        raise RuntimeError(f"every client failed: {result.errors[0]}")
    return result


def queued_messages() -> int:
    """Messages waiting in the inbox (a sum over its rows: a few thousand in a bench)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(message_count), 0) FROM tracking_inboxbatch WHERE failed_at IS NULL")
        return int(cursor.fetchone()[0])


def store_alone(server: Server, *, poll: float = 0.25, timeout: float = 900.0) -> dict:
    """The store step with nothing else running: start the worker on an inbox the server
    filled while it was stopped, and time the drains from the first stored chunk (the
    worker's start-up left out) until the inbox is empty, with the CPU each part used.

    The ceiling of the pipeline's second half: whatever the web tier does, stored events
    per second cannot pass this on the same machine."""
    initial = queued_messages()
    server.start_worker()
    from tracking.tasks import drain_inbox_task  # Django is set up by now

    for _ in range(server.drains):  # besides the wake-ups the server queued meanwhile
        drain_inbox_task.delay()
    deadline = time.monotonic() + timeout
    meter = cpu.CpuMeter(web_pid=server.process.pid if server.process else None, drain_pid=server.worker.pid)
    left = initial
    while left == initial:  # until the first chunk is stored
        if time.monotonic() > deadline or server.worker.poll() is not None:
            raise RuntimeError("the drains stored nothing")
        time.sleep(poll / 5)
        left = queued_messages()
    meter.start()
    began, measured = time.monotonic(), left  # what is stored from here on is timed
    while left:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the inbox was not drained within {timeout:.0f}s")
        if server.worker.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with {server.worker.returncode}")
        time.sleep(poll)
        left = queued_messages()
    seconds = time.monotonic() - began
    cores = meter.stop()
    busy = sum(cores.values())  # the machine's, whichever part spent it
    return {
        "queued": initial,
        "timed_messages": measured,
        "seconds": round(seconds, 2),
        "messages_per_s": round(measured / seconds, 1) if seconds else None,
        "cpu_cores": cores,
        "busy_cores": round(busy, 2),
        # CPU time per stored message, by part: what the store step costs on this machine.
        "cpu_us_per_message": {
            part: round(value * seconds / measured * 1e6, 1) for part, value in cores.items() if value
        } if measured else {},
    }


def new_run_id() -> str:
    return f"bench{uuid.uuid4().hex[:10]}"


def stored_events(site_id: int, prefix: str, since) -> tuple[int, int]:
    """(rows, distinct message ids) stored for messages whose id starts with ``prefix``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*), count(DISTINCT message_id) FROM tracking_event
            WHERE site_id = %s AND occurred_at >= %s AND message_id LIKE %s
            """,
            [site_id, since, prefix.replace("_", r"\_") + "-%"],
        )
        return cursor.fetchone()


def cleanup_run(site_id: int, since, first_new_profile: int) -> None:
    """Remove what a bench run stored, so repeated runs leave the generated data as it was
    (profiles it updated keep their new last_seen and traits)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM tracking_event WHERE site_id = %s AND occurred_at >= %s AND received_at >= %s",
            [site_id, since, since],
        )
        cursor.execute("DELETE FROM tracking_messagededupe WHERE site_id = %s AND first_seen >= %s", [site_id, since])
        cursor.execute("DELETE FROM tracking_pendingwork WHERE site_id = %s AND created_at >= %s", [site_id, since])
        cursor.execute("DELETE FROM tracking_session WHERE site_id = %s AND started_at >= %s", [site_id, since])
        cursor.execute("DELETE FROM profiles_profilemerge WHERE site_id = %s AND merged_at >= %s", [site_id, since])
        cursor.execute(
            "DELETE FROM profiles_identity WHERE site_id = %s AND (created_at >= %s OR profile_id >= %s)",
            [site_id, since, first_new_profile],
        )
        cursor.execute(
            "DELETE FROM tracking_session WHERE site_id = %s AND profile_id >= %s", [site_id, first_new_profile]
        )
        cursor.execute("DELETE FROM profiles_profile WHERE site_id = %s AND id >= %s", [site_id, first_new_profile])
    settle_written_tables()


# What an ingest writes (and a cleanup deletes). Settled before the HTTP phases, between
# them and after the cleanup, so one phase's leftovers are not paid for in the next:
# - VACUUM: otherwise autovacuum clears one run's or phase's dead rows during the next one
#   and its CPU lands in that one's figures (/v1/track varied 1,170-1,590 req/s from run
#   to run on the same code before this);
# - CHECKPOINT: the batch phase leaves gigabytes of dirty pages and WAL past max_wal_size's
#   trigger, so a checkpoint ran through the paced phases; its writes slowed the WAL
#   flush every /v1/track commit waits for (sampled: commits waiting on WALSync/WALWrite
#   at the moment the checkpointer wrote), 100 requests over 50 ms in one second.
#   Checkpoints a phase's own writes cause still land in it; the report shows them.
WRITTEN_TABLES = (
    "profiles_profile", "profiles_identity", "profiles_profilemerge", "tracking_session",
    "tracking_event", "tracking_messagededupe", "tracking_pendingwork", "tracking_inboxbatch",
)


def settle_written_tables() -> bool:
    """VACUUM (ANALYZE) and CHECKPOINT; returns whether the checkpoint ran. CHECKPOINT
    needs a superuser or the pg_checkpoint role: without either, the bench goes on and
    the report's checkpoint counts show what ran during each phase."""
    db.vacuum(WRITTEN_TABLES, options="ANALYZE")
    try:
        with connection.cursor() as cursor:
            cursor.execute("CHECKPOINT")
    except DatabaseError as exc:
        log.warning("no CHECKPOINT between bench phases: %s", exc)
        return False
    return True
