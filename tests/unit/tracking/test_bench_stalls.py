"""How the bench reports slow requests: a stall shows as a few seconds holding most of
them, next to the checkpoints PostgreSQL finished meanwhile."""

from __future__ import annotations

from tracking.benchmarks import report
from tracking.benchmarks.http import slow_summary


def test_slow_requests_are_grouped_by_the_second_they_were_sent_in():
    slow = [(3.2, 80.0), (12.05, 310.5), (12.4, 120.0), (12.9, 55.0), (3.9, 61.0), (29.99, 50.0)]
    summary = slow_summary(slow, top=2)
    assert summary["requests"] == 6
    assert summary["seconds_with_any"] == 3
    assert summary["worst_seconds"] == [
        {"second": 12, "requests": 3, "max_ms": 310.5},
        {"second": 3, "requests": 2, "max_ms": 80.0},
    ]


def test_no_slow_request_reports_none():
    assert slow_summary([]) == {"over_ms": 50.0, "requests": 0, "seconds_with_any": 0, "worst_seconds": []}


def test_the_markdown_row_names_the_worst_second_and_the_checkpoints():
    phase = {
        "duration_s": 30.0,
        "slow": slow_summary([(12.05, 310.5), (12.4, 120.0), (3.2, 80.0)]),
        "postgres": {"checkpoints": 1, "checkpoint_mb": 1612, "wal_mb": 40, "wal_full_page_images": 900},
    }
    assert report._stalls(phase) == (
        "3 in 2 s of 30 (most in second 12: 2, up to 310 ms); checkpoints: 1 finished, 1,612 MB written"
    )
    calm = {"duration_s": 30.0, "slow": slow_summary([])}
    assert report._stalls(calm) == "0 in 0 s of 30"


def test_wal_is_reported_per_stored_event():
    phase = {
        "events_accepted": 500_000,
        "postgres": {"checkpoints": 0, "checkpoint_mb": 212, "wal_mb": 2_000, "wal_full_page_images": 150_000},
    }
    assert report._wal(phase) == (
        "4.1 KB, 0.30 full-page images (2,000 MB in all; checkpoints: 0 finished, 212 MB written)"
    )


def _phase(**overrides) -> dict:
    phase = {
        "processes": 8, "duration_s": 30.0, "requests": 400, "requests_per_s": 13.3, "events_sent": 40_000,
        "events_accepted": 40_000, "events_per_s": 1333.0, "stored_per_s": 1300.0, "drain_lag_s": 0.5,
        "failed": 0, "statuses": {"200": 400}, "p50_ms": 5.0, "p99_ms": 9.0, "client_errors": [],
        "rate_target": 750.0,
    }
    return {**phase, **overrides}


def test_failed_requests_refused_events_and_dead_clients_are_in_the_table():
    failing = _phase(
        requests=408, failed=12, statuses={"200": 398, "429": 10, "error": 2},
        events_sent=40_800, events_accepted=39_700, client_errors=["ConnectionRefusedError: [Errno 111]"],
        clients_failed=1,
    )
    rows = {row.measure: row for row in report.rows({"http": {"batch": failing, "track_max": _phase()}})}
    batch = rows["/v1/batch: failed requests, events not accepted, failed clients"]
    assert batch.value == (
        "12 of 410 requests failed (429: 10, error: 2); 1,100 of 40,800 events not accepted; "
        "1 of 8 client processes failed (ConnectionRefusedError: [Errno 111])"
    )
    assert (batch.target, batch.met) == ("none", "**no**")
    track = rows["/v1/track max: failed requests, events not accepted, failed clients"]
    assert (track.value, track.met) == ("0 of 400 requests failed; 0 of 40,000 events not accepted", "yes")


def test_the_paced_run_at_half_the_target_is_not_met_with_failed_requests():
    http = {"track_paced_at_target": _phase(p99_ms=9.0, failed=3, statuses={"200": 397, "503": 3})}
    row = next(row for row in report.rows({"http": http}) if "paced at half the target" in row.measure)
    assert row.met == "**no**"


def _rss_row(http: dict) -> report.Row:
    return next(row for row in report.rows({"http": http}) if row.measure.startswith("web worker max RSS"))


def test_the_memory_target_is_met_only_through_ten_minutes_of_load():
    # The target is < 250 MB through a 10-minute run: a default run (30 s a
    # phase) shows the figure but does not claim the target.
    short = _rss_row({"duration_s": 30.0, "worker_rss_max_mb": 96.8, "worker_rss_load_s": 120.0})
    assert short.value == "96.8 MB"
    assert short.target == "< 250 MB through 600 s of load"
    assert short.met == "not shown: 120 s of load"
    assert "120 s of load" in short.measure
    assert _rss_row({"duration_s": 600.0, "worker_rss_max_mb": 96.8, "worker_rss_load_s": 600.2}).met == "yes"
    assert _rss_row({"duration_s": 30.0, "worker_rss_max_mb": 260.0, "worker_rss_load_s": 120.0}).met == "**no**"
    # Results written before the load time was recorded do not claim it either.
    assert _rss_row({"duration_s": 30.0, "worker_rss_max_mb": 96.8}).met != "yes"
