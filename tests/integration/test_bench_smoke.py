"""`make bench` and `make run`'s demo data at a tiny size, so the commands cannot rot.

Not timed, no performance assertions: the bench's figures come from `make bench` on a
real machine. What is checked is that the generated data is consistent (profiles,
identities, sessions and events agree), that bench traffic goes through the real parser
and ingestion core, and that the bench leaves the data as it found it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection

from profiles.models import Identity, Profile
from tracking.benchmarks import synthetic, vocabulary
from tracking.benchmarks.client import Traffic
from tracking.demo import demo_traffic
from tracking.ingest import segment
from tracking.management.commands.bench import BENCH_SITE_NAME
from tracking.management.commands.bootstrap import DEMO_SITE_NAME
from tracking.models import Event, Session, Site

# The bench uses VACUUM and its own transactions, and the events table is not flushed
# by Django between tests (it is unmanaged), so each test removes its own events.
pytestmark = pytest.mark.django_db(transaction=True)


def _scalar(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_it_generates_consistent_data_and_measures_in_process(tmp_path):
    try:
        call_command(
            "bench", generate=True, people=200, events=2000, days=30, copy_rows=500,
            in_process_batches=3, skip_http=True, no_migrate=True, results=str(tmp_path),
        )
        site = Site.objects.get(name=BENCH_SITE_NAME)
        results = json.loads((tmp_path / "ingest.json").read_text())
        assert (tmp_path / "ingest.md").read_text().startswith("# Ingestion bench")

        identified = sum(vocabulary.is_identified(i) for i in range(200))
        assert results["dataset"]["people"] == 200
        assert results["dataset"]["identified"] == identified
        assert Profile.objects.filter(site=site).count() == 200
        assert Identity.objects.filter(site=site, kind="user").count() == identified
        assert Identity.objects.filter(site=site, kind="anonymous").count() == 200
        # The in-process run's events were removed again: only the generated ones remain.
        assert Event.objects.filter(site=site).count() == 2000
        assert Event.objects.filter(site=site, type="visited-site").count() == Session.objects.filter(site=site).count()
        assert _scalar("SELECT sum(event_count) FROM tracking_session WHERE site_id = %s", [site.pk]) == 2000
        assert len(set(Event.objects.filter(site=site).values_list("type", flat=True))) <= 20
        # Every event belongs to a profile of the site, inside the profile's first/last seen,
        # and to a session of that profile.
        assert _scalar(
            """
            SELECT count(*) FROM tracking_event e
            JOIN profiles_profile p ON p.id = e.profile_id AND p.site_id = e.site_id
            JOIN tracking_session s ON s.id = e.session_id AND s.profile_id = e.profile_id
            WHERE e.site_id = %s AND e.occurred_at BETWEEN p.first_seen AND p.last_seen
            """,
            [site.pk],
        ) == 2000
        assert results["copy_ceiling"]["rows"] == 500 and results["copy_ceiling"]["rows_per_s"] > 0
        assert results["in_process"]["events_accepted"] == 300

        # A second run reuses the data.
        call_command(
            "bench", copy_rows=100, in_process_batches=1, skip_http=True, no_migrate=True, results=str(tmp_path)
        )
        assert json.loads((tmp_path / "ingest.json").read_text())["dataset"]["people"] == 200
        assert Event.objects.filter(site=site).count() == 2000
    finally:
        for site in Site.objects.filter(name=BENCH_SITE_NAME):
            synthetic.wipe(site)


def test_bench_traffic_is_valid_segment_batches_with_the_promised_mix():
    traffic = Traffic(people=1000, prefix="t", seed=3)
    messages = []
    for _ in range(20):
        body = segment.decode_body(traffic.batch_body(100))
        parsed = segment.parse_request(body, endpoint="batch", client_ip="127.0.0.1")
        assert parsed.errors == []
        messages += parsed.messages
    identifies = [m for m in messages if m.kind.value == "identify"]
    known = [m for m in messages if m.kind.value != "identify" and m.user_id]
    assert 0.05 < len(identifies) / len(messages) < 0.15
    assert 0.62 < len(known) / len(messages) < 0.78
    assert len({m.message_id for m in messages}) == len(messages)
    single = json.loads(traffic.track_body())
    assert single["type"] == "track" and single["messageId"]


def test_demo_traffic_is_deterministic_and_in_time_order():
    now = datetime(2026, 3, 1, tzinfo=UTC)
    first = [[(m.kind, m.event, m.timestamp, m.message_id) for m in p] for p in demo_traffic(seed=5, people=40, days=30, now=now)]
    again = [[(m.kind, m.event, m.timestamp, m.message_id) for m in p] for p in demo_traffic(seed=5, people=40, days=30, now=now)]
    assert first == again
    for person in first:
        times = [t for _, _, t, _ in person]
        assert times == sorted(times) and all(t < now for t in times)


def test_load_demo_fills_the_demo_site_once():
    try:
        call_command("load_demo", people=40, days=20)
        site = Site.objects.get(name=DEMO_SITE_NAME)
        count = Event.objects.filter(site=site).count()
        types = set(Event.objects.filter(site=site).values_list("type", flat=True))
        assert {"page-view", "Product Viewed", "visited-site"} <= types
        assert Profile.objects.filter(site=site, merged_into__isnull=True).exists()
        call_command("load_demo", if_empty=True, people=40, days=20)
        assert Event.objects.filter(site=site).count() == count
    finally:
        for site in Site.objects.filter(name=DEMO_SITE_NAME):
            synthetic.wipe(site)


def test_the_cpu_meter_splits_cpu_by_part():
    import subprocess
    import sys
    import time

    from tracking.benchmarks.cpu import CpuMeter

    spin = "import time\nt = time.time()\nwhile time.time() - t < {}: pass"
    web = subprocess.Popen([sys.executable, "-c", spin.format(2.0)])
    try:
        meter = CpuMeter(web_pid=web.pid, drain_pid=None)
        meter.start()
        subprocess.run([sys.executable, "-c", spin.format(0.6)], check=True)  # a load client
        time.sleep(0.3)
        cores = meter.stop()
    finally:
        web.kill()
        web.wait()
    assert set(cores) == {"web", "drain", "postgresql", "clients", "other", "unattributed"}
    assert cores["web"] > 0.2  # it spun the whole time (on a busy machine, part of a core)
    assert cores["clients"] > 0.1
    assert cores["drain"] == 0.0


def test_the_cpu_meter_counts_a_postgresql_backend_that_ended_within_the_phase():
    """A drain's connection is closed and reopened when it is older than CONN_MAX_AGE,
    so a phase's backends may end before it does; their CPU is PostgreSQL's (reaped by
    the postmaster), not unattributed."""
    import time

    import psycopg
    from django.db import connection

    from tracking.benchmarks.cpu import CpuMeter

    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    meter = CpuMeter(web_pid=None, drain_pid=None)
    meter.start()
    with psycopg.connect(**params) as short_lived:  # its backend begins and ends in the phase
        short_lived.execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
    time.sleep(0.3)  # the postmaster reaps it
    cores = meter.stop()
    if not meter.reads_postgresql:
        pytest.skip("PostgreSQL runs where this process cannot read it")
    assert cores["postgresql"] > cores["unattributed"]
    assert cores["postgresql"] > 0.1


def test_settling_between_phases_vacuums_and_checkpoints():
    from tracking.benchmarks import http

    before = http.server_counters()
    assert http.settle_written_tables()
    after = http.server_counters()
    assert set(before) == {"checkpoints", "checkpoint_mb", "wal_mb", "wal_full_page_images"}
    assert after["checkpoints"] >= before["checkpoints"] + 1  # the CHECKPOINT, finished
    assert after["wal_mb"] >= before["wal_mb"] and after["wal_full_page_images"] >= before["wal_full_page_images"]


def test_the_bench_goes_on_where_it_may_not_checkpoint():
    import uuid

    from tracking.benchmarks import http

    role = f"bench_no_checkpoint_{uuid.uuid4().hex[:8]}"  # roles are cluster-wide
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role}")
        cursor.execute(f"SET ROLE {role}")
        try:
            assert http.settle_written_tables() is False  # VACUUM skips what it does not own
        finally:
            cursor.execute("RESET ROLE")
            cursor.execute(f"DROP ROLE {role}")


class _FakeServer:
    def __init__(self, **kwargs):
        self.port = 1
        self.events: list[str] = []

    def stop_worker(self):
        self.events.append("worker stopped")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def warm(self):
        pass


def _run_http_phases(
    monkeypatch, *, track_rps: float, stored=None, phases: str = "batch,track,paced"
) -> tuple[dict, list[dict]]:
    """The bench command's HTTP phases with the server and clients faked: returns what
    it reports and the arguments of each load run."""
    from tracking.benchmarks import http
    from tracking.management.commands.bench import Command

    calls: list[dict] = []

    def run_load(server, **kwargs):
        calls.append({**kwargs, "worker": list(server.events)})
        duration = kwargs["duration"]
        requests = int(track_rps * duration) if kwargs["mode"] != "batch" else 100
        events = requests * (kwargs.get("batch_size") or 1)
        return http.LoadResult(
            mode=kwargs["mode"], processes=kwargs["processes"], duration=duration, requests=requests,
            events_sent=events, events_accepted=events, latencies=[5.0] * 10, statuses={"200": requests},
            started_at=1000.0, drained_at=1000.0 + duration + 1.0, rss_max_mb=90.0,
        )

    monkeypatch.setattr(http, "Server", _FakeServer)
    monkeypatch.setattr(http, "run_load", run_load)
    monkeypatch.setattr(http, "settle_written_tables", lambda: True)
    monkeypatch.setattr(http, "cleanup_run", lambda *args: None)
    monkeypatch.setattr(
        http, "store_alone",
        lambda server: {"queued": 200, "timed_messages": 150, "seconds": 0.01, "messages_per_s": 15_000.0,
                        "cpu_cores": {"web": 0.0, "drain": 0.6, "postgresql": 1.3, "clients": 0.0, "other": 0.1},
                        "busy_cores": 2.0, "cpu_us_per_message": {"drain": 40.0, "postgresql": 86.7, "other": 6.7}},
    )
    counts = stored or (lambda prefix: (0, 0))
    monkeypatch.setattr(http, "stored_events", lambda site_id, prefix, since: counts(prefix))
    site = Site(pk=1, name=BENCH_SITE_NAME)
    options = {
        "phases": phases, "duration": 10.0, "server": "granian", "workers": 2, "threads": 4,
        "drains": 2, "seed": 1, "batch_clients": 2, "track_clients": 2, "keep": False, "py_spy": False,
        "results": "/nonexistent",
    }
    out = Command()._http(site, "key", 1000, options)
    return out, calls


def test_every_http_phase_sends_message_ids_of_its_own(monkeypatch):
    # Below the /v1/track target both paced phases run; with the same message ids the
    # second one's were duplicates of the first's, answered but not stored again.
    out, calls = _run_http_phases(monkeypatch, track_rps=1000.0)
    assert {"track_paced", "track_paced_at_target"} <= set(out)
    prefixes = [f"{call['run_id']}-{call.get('label', call['mode'])}-" for call in calls]
    assert len(calls) == 4
    for n, prefix in enumerate(prefixes):
        assert not any(other.startswith(prefix) for m, other in enumerate(prefixes) if m != n), prefixes


def test_what_each_http_phase_stored_is_counted_not_assumed(monkeypatch):
    from tracking.benchmarks import report

    # The track phase's answers said 10,000 events; the database holds 6,000 of them
    # (e.g. inbox rows the drain set aside as failed: the inbox is empty all the same).
    def counts(prefix):
        return (6000, 6000) if "-track" in prefix else (10_000, 10_000)

    out, _ = _run_http_phases(monkeypatch, track_rps=1000.0, stored=counts)
    track = out["track_max"]
    assert track["events_accepted"] == 10_000
    assert track["exactly_once"] == {"accepted": 10_000, "stored": 6000, "distinct": 6000, "ok": False}
    assert track["stored_per_s"] == round(6000 / 11.0, 1)  # stored rows over first request..drained
    assert out["exactly_once"]["ok"] is True  # the batch phase: 100 requests of 100, all stored
    assert out["track_paced"]["exactly_once"]["ok"] is True
    rows = {row.measure: row for row in report.rows({"http": out})}
    assert rows["/v1/track max accepted = stored (by messageId)"].met == "**no**"
    assert rows["/v1/track at half the max accepted = stored (by messageId)"].met == "yes"


def test_a_phase_that_stored_nothing_reports_nothing_stored(monkeypatch):
    from tracking.benchmarks import report

    out, _ = _run_http_phases(monkeypatch, track_rps=2000.0, stored=lambda prefix: (0, 0))
    assert out["batch"]["stored_per_s"] == 0 and out["track_max"]["stored_per_s"] == 0
    rows = report.rows({"http": out})
    batch = next(row for row in rows if row.measure.startswith("/v1/batch of 100"))
    track = next(row for row in rows if row.measure.startswith("/v1/track single events"))
    assert batch.value == "0 events/s"
    assert track.value == "2,000 req/s / 0 events/s" and track.met == "**no**"


def test_the_worker_memory_is_reported_with_the_seconds_of_load_it_covers(monkeypatch):
    out, calls = _run_http_phases(monkeypatch, track_rps=1000.0)
    assert len(calls) == 4 and out["worker_rss_max_mb"] == 90.0
    assert out["worker_rss_load_s"] == 40.0  # four phases of 10 s


def test_the_store_phase_times_the_two_halves_apart(monkeypatch):
    """The web tier fills the inbox with the worker stopped (nothing waits for a drain),
    then the drains alone store it: its own message ids, counted in the database."""
    from tracking.benchmarks import report

    out, calls = _run_http_phases(
        monkeypatch, track_rps=1000.0, phases="batch,store", stored=lambda prefix: (10_000, 10_000)
    )
    fill = calls[-1]
    assert fill["label"] == "store" and fill["mode"] == "batch" and fill["drain"] is False
    assert fill["worker"] == ["worker stopped"]  # stopped before the clients ran
    assert calls[0]["worker"] == [] and calls[0].get("drain", True)  # the batch phase drains as usual
    assert out["store_alone"]["messages_per_s"] == 15_000.0
    assert out["web_alone"]["exactly_once"]["accepted"] == 10_000
    rows = {row.measure.split(":")[0]: row for row in report.rows({"http": out, "copy_ceiling": {"rows_per_s": 75_000}})}
    store = rows["the store step alone"]
    assert store.value == "15,000 messages/s; drain 40 µs, postgresql 87 µs, other 7 µs"
    assert (store.vs_copy, store.met) == ("0.20×", "**no**")  # 30,000 cannot pass this ceiling
    assert rows["the web tier alone"].value == "1,000 events/s"
    assert rows["/v1/batch with no drain running accepted = stored (by messageId)"].met == "yes"


def test_the_store_step_is_timed_from_its_first_chunk(monkeypatch):
    """The worker's start-up is left out: the clock starts when the inbox first shrinks,
    and only what is stored from then on counts."""
    from tracking.benchmarks import http

    left = iter([1000, 1000, 1000, 900, 400, 0])
    monkeypatch.setattr(http, "queued_messages", lambda: next(left))
    clock = [100.0]
    monkeypatch.setattr(http.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(http.time, "sleep", lambda seconds: clock.__setitem__(0, clock[0] + seconds))

    class Meter:
        def __init__(self, **kwargs):
            self.roots = kwargs

        def start(self):
            pass

        def stop(self):
            return {"web": 0.0, "drain": 0.5, "postgresql": 1.4, "clients": 0.0, "other": 0.05}

    class Worker:
        pid = 2

        def poll(self):
            return None

    class Server:
        process, drains = None, 2
        started = 0

        def start_worker(self):
            self.started += 1
            self.worker = Worker()

    queued = []
    monkeypatch.setattr(http.cpu, "CpuMeter", Meter)
    monkeypatch.setattr("tracking.tasks.drain_inbox_task.delay", lambda: queued.append(1))
    server = Server()
    result = http.store_alone(server)
    assert server.started == 1 and len(queued) == 2
    assert result["queued"] == 1000 and result["timed_messages"] == 900
    assert result["busy_cores"] == 1.95
    assert result["seconds"] == 0.5  # two polls of 0.25 s after the first shrink
    assert result["messages_per_s"] == 1800.0
    assert result["cpu_us_per_message"]["postgresql"] == round(1.4 * 0.5 / 900 * 1e6, 1)
    assert "web" not in result["cpu_us_per_message"]  # parts that used nothing are left out
