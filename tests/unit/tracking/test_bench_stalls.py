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
