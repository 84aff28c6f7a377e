"""Bench results: ``bench/results/ingest.json`` and ``ingest.md``, and the table printed.

Every throughput is shown beside PostgreSQL's own COPY into the same indexed events
table, measured in the same run, as a ratio; targets come from issue 3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TARGETS = {
    "batch_events_per_s": 30_000,
    "track_requests_per_s": 1_500,
    "track_paced_p99_ms": 50,
    "worker_rss_mb": 250,
    "worker_rss_load_s": 600,  # "through a 10-minute run"
}


PHASE_LABELS = (
    ("batch", "/v1/batch"),
    ("track_max", "/v1/track max"),
    ("track_paced", "/v1/track at half the max"),
    ("track_paced_at_target", "/v1/track at half the target"),
    ("web_alone", "/v1/batch with no drain running"),
)


@dataclass
class Row:
    measure: str
    value: str
    vs_copy: str = ""
    target: str = ""
    met: str = ""


def _n(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}{unit}"


def _ratio(value: float | None, copy: float | None) -> str:
    if not value or not copy:
        return ""
    ratio = value / copy
    return f"{ratio:.3f}×" if ratio < 0.1 else f"{ratio:.2f}×"


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


def rows(results: dict) -> list[Row]:
    copy = (results.get("copy_ceiling") or {}).get("rows_per_s")
    out = [Row("PostgreSQL COPY into tracking_event (indexed), same run", _n(copy, " rows/s"), "1.00×" if copy else "")]
    generated = results.get("dataset", {}).get("generated")
    if generated and generated.get("events_rows_per_s"):
        rate = generated["events_rows_per_s"]
        out.append(Row("generator: Python rows + COPY of events", _n(rate, " rows/s"), _ratio(rate, copy)))
    inproc = results.get("in_process")
    if inproc:
        rate = inproc["events_per_s"]
        out.append(
            Row(
                f"in-process Segment parse + ingest_batch (1 process, batches of {inproc['batch_size']})",
                _n(rate, " events/s"),
                _ratio(rate, copy),
            )
        )
    http = results.get("http") or {}
    batch = http.get("batch")
    if batch:
        rate = batch["stored_per_s"]
        target = TARGETS["batch_events_per_s"]
        out.append(
            Row(
                f"/v1/batch of 100, mixed identities ({batch['processes']} clients): stored "
                "(first request until the last accepted event is stored)",
                _n(rate, " events/s"),
                _ratio(rate, copy),
                f"≥ {target:,} events/s",
                _met(rate >= target),
            )
        )
        accepted = batch["events_per_s"]
        out.append(
            Row(
                f"/v1/batch answered (accepted into the inbox); stored {_n(batch.get('drain_lag_s'), ' s', 1)} "
                "after the clients stopped",
                _n(accepted, " events/s"),
                _ratio(accepted, copy),
            )
        )
        out.append(Row("/v1/batch latency p50 / p99", f"{_n(batch['p50_ms'], ' ms', 1)} / {_n(batch['p99_ms'], ' ms', 1)}"))
    exactly = http.get("exactly_once")
    if exactly:
        out.append(_exactly_once("/v1/batch", exactly))
    track = http.get("track_max")
    if track:
        rate = track["requests_per_s"]
        stored = track["stored_per_s"]
        target = TARGETS["track_requests_per_s"]
        out.append(
            Row(
                f"/v1/track single events, max ({track['processes']} clients): answered / stored per s "
                f"(stored {_n(track.get('drain_lag_s'), ' s', 1)} after the clients stopped)",
                f"{_n(rate, ' req/s')} / {_n(stored, ' events/s')}",
                _ratio(min(rate, stored), copy),
                f"≥ {target:,} req/s",
                _met(min(rate, stored) >= target),
            )
        )
    for key, label in PHASE_LABELS[1:]:
        exactly = (http.get(key) or {}).get("exactly_once")
        if exactly:
            out.append(_exactly_once(label, exactly))
    paced = http.get("track_paced")
    if paced:
        target = TARGETS["track_paced_p99_ms"]
        p99 = paced["p99_ms"]
        out.append(
            Row(
                f"/v1/track at half the max ({paced['rate_target']:,.0f} req/s offered, {paced['requests_per_s']:,.0f} done) p50 / p99",
                f"{_n(paced['p50_ms'], ' ms', 1)} / {_n(p99, ' ms', 1)}",
                "",
                f"p99 < {target} ms",
                _met(p99 is not None and p99 < target and paced["failed"] == 0),
            )
        )
    overload = http.get("track_paced_at_target")
    if overload:
        out.append(
            Row(
                f"/v1/track paced at half the target ({overload['rate_target']:,.0f} req/s offered, "
                f"{overload['requests_per_s']:,.0f} done) p50 / p99",
                f"{_n(overload['p50_ms'], ' ms', 1)} / {_n(overload['p99_ms'], ' ms', 1)}",
                "",
                f"p99 < {TARGETS['track_paced_p99_ms']} ms",
                _met(
                    overload["p99_ms"] is not None and overload["p99_ms"] < TARGETS["track_paced_p99_ms"]
                    and overload["failed"] == 0
                ),
            )
        )
    for key, label in PHASE_LABELS:
        phase = http.get(key)
        if phase:
            failures, ok = _failures(phase)
            out.append(Row(f"{label}: failed requests, events not accepted, failed clients", failures, "", "none", _met(ok)))
    for key, label in (("track_paced", "/v1/track at half the max"), ("track_paced_at_target", "/v1/track at half the target")):
        phase = http.get(key) or {}
        if phase.get("slow") is not None:
            out.append(Row(f"{label}: requests over {phase['slow']['over_ms']:.0f} ms; PostgreSQL checkpoints meanwhile", _stalls(phase)))
    for key, label in (("batch", "/v1/batch"), ("track_max", "/v1/track max")):
        phase = http.get(key) or {}
        cores = phase.get("cpu_cores")
        if cores:
            split = ", ".join(f"{part} {value:.2f}" for part, value in cores.items())
            out.append(Row(f"{label}: CPU by part while the clients sent (cores)", split))
        if phase.get("postgres") and phase.get("events_accepted"):
            out.append(Row(f"{label}: PostgreSQL WAL per stored event (until stored)", _wal(phase)))
    out += _halves(http, copy)
    rss = http.get("worker_rss_max_mb")
    if rss:
        target, through = TARGETS["worker_rss_mb"], TARGETS["worker_rss_load_s"]
        # Under the limit in a shorter run says nothing of ten minutes (--duration 600).
        load = http.get("worker_rss_load_s")
        met = _met(False) if rss >= target else _met(True) if (load or 0) >= through else (
            f"not shown: {load:,.0f} s of load" if load is not None else "not shown"
        )
        out.append(
            Row(
                f"web worker max RSS over the run ({http.get('duration_s', 0):.0f} s a phase"
                + (f", {load:,.0f} s of load)" if load is not None else ")"),
                _n(rss, " MB", 1),
                "",
                f"< {target} MB through {through} s of load",
                met,
            )
        )
    return out


def _halves(http: dict, copy: float | None) -> list[Row]:
    """The ``store`` phase: the web tier with no drain running, then the drains alone."""
    out = []
    web = http.get("web_alone")
    if web:
        cores = ", ".join(f"{part} {value:.2f}" for part, value in (web.get("cpu_cores") or {}).items())
        out.append(
            Row(
                f"the web tier alone: /v1/batch answered with no drain running ({web['processes']} clients); CPU by part (cores)",
                _n(web["events_per_s"], " events/s") + (f"; {cores}" if cores else ""),
                _ratio(web["events_per_s"], copy),
            )
        )
    alone = http.get("store_alone")
    if alone:
        per = alone["cpu_us_per_message"]
        split = ", ".join(f"{part} {value:,.0f} µs" for part, value in per.items() if part != "clients")
        target = TARGETS["batch_events_per_s"]
        out.append(
            Row(
                f"the store step alone: {_n(alone['timed_messages'])} queued messages stored by the drains with "
                f"nothing else running ({alone['busy_cores']:.2f} cores busy); CPU per message by part",
                f"{_n(alone['messages_per_s'], ' messages/s')}; {split}",
                _ratio(alone["messages_per_s"], copy),
                f"ceiling of /v1/batch ≥ {target:,}",
                _met((alone["messages_per_s"] or 0) >= target),
            )
        )
    return out


def _exactly_once(label: str, exactly: dict) -> Row:
    return Row(
        f"{label} accepted = stored (by messageId)",
        f"{exactly['accepted']:,} accepted, {exactly['stored']:,} stored, {exactly['distinct']:,} distinct",
        "",
        "equal",
        _met(exactly["ok"]),
    )


def _failures(phase: dict) -> tuple[str, bool]:
    """Requests answered with an error status or not at all, events the answers did not
    accept, and client processes that died: (the words, whether there were none)."""
    statuses = phase.get("statuses") or {}
    attempts = phase["requests"] + statuses.get("error", 0)  # "error": no answer
    other = {status: n for status, n in statuses.items() if status != "200"}
    text = f"{phase['failed']:,} of {attempts:,} requests failed"
    if other:
        text += f" ({', '.join(f'{status}: {n:,}' for status, n in other.items())})"
    refused = phase["events_sent"] - phase["events_accepted"]
    text += f"; {refused:,} of {phase['events_sent']:,} events not accepted"
    clients = phase.get("clients_failed", len(phase.get("client_errors") or ()))
    if clients:
        text += f"; {clients} of {phase['processes']} client processes failed ({phase['client_errors'][0]})"
    return text, phase["failed"] == 0 and refused == 0 and clients == 0


def _checkpoints(counters: dict) -> str:
    return f"checkpoints: {counters['checkpoints']} finished, {counters['checkpoint_mb']:,} MB written"


def _wal(phase: dict) -> str:
    counters, events = phase["postgres"], phase["events_accepted"]
    return (
        f"{counters['wal_mb'] * 1024 / events:,.1f} KB, {counters['wal_full_page_images'] / events:,.2f} full-page images "
        f"({counters['wal_mb']:,} MB in all; {_checkpoints(counters)})"
    )


def _stalls(phase: dict) -> str:
    slow, counters = phase["slow"], phase.get("postgres") or {}
    text = f"{slow['requests']:,} in {slow['seconds_with_any']} s of {phase['duration_s']:.0f}"
    if slow["worst_seconds"]:
        worst = slow["worst_seconds"][0]
        text += f" (most in second {worst['second']}: {worst['requests']:,}, up to {worst['max_ms']:,.0f} ms)"
    if counters:
        text += f"; {_checkpoints(counters)}"
    return text


def markdown(results: dict) -> str:
    lines = [
        "# Ingestion bench",
        "",
        f"Run {results.get('finished_at', '')} on {results['machine']['cores']} cores, "
        f"{results['machine']['memory_gb']} GB; PostgreSQL {results['machine']['postgres']} "
        f"({', '.join(f'{k} {v}' for k, v in results['machine']['postgres_settings'].items())}).",
    ]
    dataset = results.get("dataset") or {}
    if dataset:
        lines.append(
            f"Data: site {dataset.get('site_id')}: {dataset.get('people', 0):,} people, "
            f"{dataset.get('events', 0):,} events, {dataset.get('sessions', 0):,} sessions."
        )
    http = results.get("http") or {}
    if http:
        lines.append(
            f"Server: {http.get('server')} with {http.get('workers')} workers on {results['machine']['cores']} cores "
            f"(WRITE_KEY_CACHE_SECONDS={http.get('write_key_cache_seconds')}), {http.get('drains', 1)} "
            f"drain{'s' if http.get('drains', 1) != 1 else ''}; clients on the same machine; "
            f"{http.get('duration_s', 0):.0f} s a phase."
        )
    lines += ["", "| measure | value | vs COPY | target | met |", "|---|---|---|---|---|"]
    for row in rows(results):
        lines.append(f"| {row.measure} | {row.value} | {row.vs_copy} | {row.target} | {row.met} |")
    return "\n".join(lines) + "\n"


def text_table(results: dict) -> str:
    table = rows(results)
    headers = ("measure", "value", "vs COPY", "target", "met")
    cells = [headers] + [(r.measure, r.value, r.vs_copy, r.target, r.met.replace("*", "")) for r in table]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write(results: dict, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "ingest.json", directory / "ingest.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
