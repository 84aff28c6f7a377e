"""`make bench`: synthetic data, the COPY ceiling, and HTTP ingestion against a real server.

    python manage.py bench                                  # quick: 100k people / 1M events if none yet
    python manage.py bench --generate --people 1000000 --events 10000000
    python manage.py bench --duration 600 --phases batch    # the 10-minute memory run

Writes bench/results/ingest.json and ingest.md and prints the table (see
tracking/benchmarks/). Use a database of its own (DATABASE_URL=…/footprint_bench): the
generator reserves id ranges and the HTTP phases load it hard.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone
from tqdm import tqdm

from tracking import services
from tracking.benchmarks import http, profiling, report, synthetic
from tracking.benchmarks.client import Traffic
from tracking.models import Site

BENCH_SITE_NAME = "Bench"
PHASES = ("batch", "track", "paced", "store")


class Command(BaseCommand):
    help = "Synthetic data, COPY ceiling and HTTP ingestion bench; writes bench/results/ingest.{json,md}."

    def add_arguments(self, parser):
        data = parser.add_argument_group("data")
        data.add_argument("--generate", action="store_true", help="(re)generate the bench site's data")
        data.add_argument("--people", type=int, default=100_000)
        data.add_argument("--events", type=int, default=1_000_000)
        data.add_argument("--days", type=int, default=90)
        data.add_argument("--seed", type=int, default=1)
        data.add_argument("--no-vacuum", action="store_true", help="skip VACUUM ANALYZE after generating")
        runs = parser.add_argument_group("measurements")
        runs.add_argument("--copy-rows", type=int, default=200_000, help="rows for the COPY ceiling")
        runs.add_argument("--in-process-batches", type=int, default=100, help="batches of 100 for the in-process run")
        runs.add_argument("--profile", action="store_true", help="pyinstrument the in-process run")
        runs.add_argument("--py-spy", action="store_true", help="py-spy the web workers in the batch and track phases")
        runs.add_argument("--skip-http", action="store_true")
        runs.add_argument("--phases", default=",".join(PHASES), help="HTTP phases: batch,track,paced,store")
        runs.add_argument("--duration", type=float, default=30.0, help="seconds per HTTP phase")
        runs.add_argument("--server", choices=("granian", "gunicorn"), default="granian")
        runs.add_argument("--workers", type=int, default=os.cpu_count() or 2)
        runs.add_argument("--threads", type=int, default=4, help="threads per web worker (gunicorn gthread, granian blocking threads)")
        runs.add_argument(
            "--drains", type=int, default=settings.INGEST_DRAINS,
            help="Celery tasks storing the inbox (INGEST_DRAINS; the worker runs one process more)",
        )
        runs.add_argument("--batch-clients", type=int, default=8)
        runs.add_argument("--track-clients", type=int, default=8)
        runs.add_argument("--keep", action="store_true", help="keep what the runs stored (default: removed)")
        runs.add_argument("--no-migrate", action="store_true")
        runs.add_argument("--results", default=str(Path(settings.BASE_DIR) / "bench" / "results"))

    def handle(self, *args, **o):
        if not o["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        site = Site.objects.filter(name=BENCH_SITE_NAME).order_by("id").first()
        if site is None:
            site, _ = services.site_create(name=BENCH_SITE_NAME)
        write_key = site.primary_write_key() or services.write_key_issue(site=site, label="bench")
        results: dict = {"started_at": datetime.now(UTC).isoformat(), "machine": _machine()}

        people = _bench_people(site)
        if o["generate"] or people == 0:
            results["dataset"] = self._generate(site, o)
            people = o["people"]
        else:
            results["dataset"] = _dataset(site, people)
            self.stdout.write(f"Using the bench site's data: {people:,} people (--generate to make new).")

        self.stdout.write(f"COPY ceiling: {o['copy_rows']:,} events into tracking_event …")
        text, rows = synthetic.copy_rows(site, rows=o["copy_rows"])
        results["copy_ceiling"] = {"rows": rows, "rows_per_s": round(synthetic.copy_ceiling(text, rows), 1)}
        del text

        if o["in_process_batches"]:
            results["in_process"] = self._in_process(site, people, o)

        if not o["skip_http"]:
            results["http"] = self._http(site, write_key.key, people, o)

        results["finished_at"] = datetime.now(UTC).isoformat()
        json_path, md_path = report.write(results, Path(o["results"]))
        self.stdout.write("")
        self.stdout.write(report.text_table(results))
        self.stdout.write(f"\nWrote {json_path} and {md_path}.")

    # -- data ------------------------------------------------------------------------------

    def _generate(self, site: Site, o) -> dict:
        if _bench_people(site) or site.profiles.exists():
            self.stdout.write("Removing the bench site's previous data …")
            synthetic.wipe(site)
        self.stdout.write(f"Generating {o['people']:,} people and {o['events']:,} events over {o['days']} days …")
        bars: dict[str, tqdm] = {}

        def progress(stage: str, done: int, total: int) -> None:
            bar = bars.get(stage)
            if bar is None:
                for other in bars.values():
                    other.close()
                bar = bars[stage] = tqdm(total=total, desc=stage, unit="rows", unit_scale=True, disable=None)
            bar.update(done)

        generated = synthetic.generate(
            site, people=o["people"], events=o["events"], days=o["days"], seed=o["seed"],
            progress=progress, vacuum=not o["no_vacuum"],
        )
        for bar in bars.values():
            bar.close()
        seconds = {stage: round(s, 2) for stage, s in generated.seconds.items()}
        self.stdout.write(f"Generated in {sum(seconds.values()):.0f} s: {seconds}")
        return {
            "site_id": site.pk,
            "people": generated.people,
            "identified": generated.identified,
            "sessions": generated.sessions,
            "events": generated.events,
            "days": o["days"],
            "generated": {
                "seconds": seconds,
                "events_rows_per_s": round(generated.rows_per_second("events", generated.events), 1),
            },
        }

    # -- in-process ------------------------------------------------------------------------

    def _in_process(self, site: Site, people: int, o) -> dict:
        """Segment parsing and the ingestion core in this process: no HTTP, no server."""
        from tracking.ingest import segment
        from tracking.ingest.core import ingest_batch

        batches, size = o["in_process_batches"], 100
        self.stdout.write(f"In-process: {batches} batches of {size} through parse + ingest_batch …")
        run_id = http.new_run_id()
        traffic = Traffic(people=people, prefix=f"{run_id}-inproc", seed=o["seed"])
        bodies = [traffic.batch_body(size) for _ in range(batches)]
        since, first_new = timezone.now(), _next_profile_id()
        profiler = None
        if o["profile"]:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        accepted = 0
        tick = time.perf_counter()
        for raw in bodies:
            parsed = segment.parse_request(segment.decode_body(raw), endpoint="batch", client_ip="127.0.0.1")
            result = ingest_batch(site, parsed.messages, received_at=timezone.now())
            accepted += len(result.accepted)
        elapsed = time.perf_counter() - tick
        out = {
            "batches": batches,
            "batch_size": size,
            "events_accepted": accepted,
            "seconds": round(elapsed, 3),
            "events_per_s": round(accepted / elapsed, 1),
        }
        if profiler is not None:
            profiler.stop()
            path = Path(o["results"]) / "profile-in-process.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(profiler.output_text(unicode=True, color=False))
            out["profile"] = str(path)
        if not o["keep"]:
            http.cleanup_run(site.pk, since, first_new)
        return out

    # -- HTTP -----------------------------------------------------------------------------

    def _http(self, site: Site, write_key: str, people: int, o) -> dict:
        phases = [p.strip() for p in o["phases"].split(",") if p.strip()]
        unknown = set(phases) - set(PHASES)
        if unknown:
            raise CommandError(f"unknown phases {sorted(unknown)}; use {','.join(PHASES)}")
        duration = o["duration"]
        run_id = http.new_run_id()
        out: dict = {
            "server": o["server"],
            "workers": o["workers"],
            "threads": o["threads"],
            "drains": o["drains"],
            "duration_s": duration,
            "run_id": run_id,
            "write_key_cache_seconds": int(os.environ.get("WRITE_KEY_CACHE_SECONDS", "30")),
        }
        since, first_new = timezone.now(), _next_profile_id()
        rss, load_seconds = 0.0, 0.0
        connection.close()  # the server and clients get their own connections
        server = http.Server(kind=o["server"], workers=o["workers"], threads=o["threads"], drains=o["drains"])
        self.stdout.write(f"Starting {o['server']} with {o['workers']} workers on port {server.port} …")

        def settle() -> None:
            # Every phase starts with dead rows vacuumed and dirty pages written out, the
            # earlier phase's included (http.WRITTEN_TABLES says why).
            self.stdout.write("Vacuuming the tables an ingest writes, then a checkpoint …")
            http.settle_written_tables()
            connection.close()

        try:
            with server:
                server.warm()
                common = {"write_key": write_key, "people": people, "run_id": run_id, "duration": duration, "seed": o["seed"]}
                if "batch" in phases:
                    settle()
                    self.stdout.write(f"/v1/batch of 100 for {duration:.0f} s with {o['batch_clients']} clients …")
                    spy = self._spy(server, "batch", duration, o)
                    batch = http.run_load(server, mode="batch", processes=o["batch_clients"], batch_size=100, **common)
                    out["exactly_once"] = _stored(site, run_id, "batch", since, batch)
                    out["batch"] = batch.summary()
                    if spy:
                        out["batch"]["profile"] = self._spy_report(spy, "batch", o)
                    rss, load_seconds = max(rss, batch.rss_max_mb), load_seconds + batch.duration
                track_rate = None
                if "track" in phases:
                    settle()
                    self.stdout.write(f"/v1/track single events for {duration:.0f} s with {o['track_clients']} clients …")
                    spy = self._spy(server, "track", duration, o)
                    track = http.run_load(server, mode="track", processes=o["track_clients"], **common)
                    exactly_once = _stored(site, run_id, "track", since, track)
                    out["track_max"] = {**track.summary(), "exactly_once": exactly_once}
                    if spy:
                        out["track_max"]["profile"] = self._spy_report(spy, "track", o)
                    track_rate = track.requests_per_second
                    rss, load_seconds = max(rss, track.rss_max_mb), load_seconds + track.duration
                if "paced" in phases:
                    target = report.TARGETS["track_requests_per_s"]
                    # Half the measured maximum, as the issue words it; when the maximum
                    # misses its target, also half the target, so the gap shows in latency.
                    # Each with message ids of its own (the label), so the second's are
                    # not duplicates of the first's.
                    rates = {"track_paced": ("paced", (track_rate or target) / 2)}
                    if track_rate is not None and track_rate < target:
                        rates["track_paced_at_target"] = ("target", target / 2)
                    for key, (label, rate) in rates.items():
                        settle()
                        self.stdout.write(f"/v1/track paced at {rate:,.0f} req/s for {duration:.0f} s …")
                        paced = http.run_load(server, mode="paced", label=label, processes=4, rate=rate, **common)
                        exactly_once = _stored(site, run_id, label, since, paced)
                        out[key] = {**paced.summary(), "rate_target": round(rate, 1), "exactly_once": exactly_once}
                        rss, load_seconds = max(rss, paced.rss_max_mb), load_seconds + paced.duration
                if "store" in phases:
                    # The two halves apart: the web tier filling the inbox with no drain
                    # running, then the drains alone storing it.
                    settle()
                    server.stop_worker()
                    self.stdout.write(f"/v1/batch of 100 for {duration:.0f} s with no drain running …")
                    fill = http.run_load(
                        server, mode="batch", label="store", processes=o["batch_clients"], batch_size=100,
                        drain=False, **common,
                    )
                    connection.close()
                    self.stdout.write("The drains alone, storing what was queued …")
                    stored_alone = http.store_alone(server)
                    exactly_once = _stored(site, run_id, "store", since, fill)
                    out["web_alone"] = {**fill.summary(), "exactly_once": exactly_once}
                    out["store_alone"] = stored_alone
                    rss, load_seconds = max(rss, fill.rss_max_mb), load_seconds + fill.duration
        finally:
            if not o["keep"]:
                self.stdout.write("Removing what the HTTP runs stored …")
                http.cleanup_run(site.pk, since, first_new)
        out["worker_rss_max_mb"] = round(rss, 1)
        out["worker_rss_load_s"] = round(load_seconds, 1)  # the issue's memory target is for 600 s
        return out


    def _spy(self, server: http.Server, name: str, duration: float, o) -> list | None:
        if not o["py_spy"]:
            return None
        # The clients start about two seconds after run_load is called; py-spy covers
        # the run (idle samples before the first request are reported apart).
        return profiling.record(server.worker_pids(), duration + 2, Path(o["results"]), name)

    def _spy_report(self, spy: list, name: str, o) -> dict:
        for proc, _ in spy:
            proc.wait(timeout=120)
        split, text = profiling.summarize([path for _, path in spy])
        path = Path(o["results"]) / f"profile-http-{name}.txt"
        path.write_text(text + "\n")
        self.stdout.write(text)
        return {"split_percent": split, "summary": str(path), "raw": [str(p) for _, p in spy]}


def _stored(site: Site, run_id: str, label: str, since, result: http.LoadResult) -> dict:
    """What a phase stored, counted by its message ids (the inbox being empty says only
    that nothing is left to store): sets the result's stored events."""
    stored, distinct = http.stored_events(site.pk, f"{run_id}-{label}", since)
    connection.close()
    result.events_stored = distinct
    return {
        "accepted": result.events_accepted,
        "stored": stored,
        "distinct": distinct,
        "ok": result.events_accepted == stored == distinct,
    }


def _bench_people(site: Site) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM profiles_identity WHERE site_id = %s AND kind = 'anonymous' AND key LIKE 'bench-a%%'",
            [site.pk],
        )
        return cursor.fetchone()[0]


def _dataset(site: Site, people: int) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tracking_event WHERE site_id = %s", [site.pk])
        events = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM tracking_session WHERE site_id = %s", [site.pk])
        sessions = cursor.fetchone()[0]
    return {"site_id": site.pk, "people": people, "events": events, "sessions": sessions}


def _next_profile_id() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM profiles_profile")
        return cursor.fetchone()[0]


def _machine() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        values = {}
        for name in (
            "shared_buffers", "work_mem", "random_page_cost", "synchronous_commit", "max_wal_size",
            "wal_compression",  # pglz cost the session insert 7x its time (full-page images)
        ):
            cursor.execute(f"SHOW {name}")
            values[name] = cursor.fetchone()[0]
    return {
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgres": version,
        "postgres_settings": values,
        "database": "embedded" if not os.environ.get("DATABASE_URL") else settings.DATABASES["default"]["NAME"],
    }
