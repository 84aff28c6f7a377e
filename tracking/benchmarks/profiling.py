"""py-spy on the web workers during an HTTP phase, and where their time went.

``record(pids, seconds, out_dir, name)`` samples every worker (wall clock, idle
included, so time spent waiting for PostgreSQL shows); ``summarize(files)`` splits the
samples into waiting on PostgreSQL, client-side SQL quoting, request parsing, the
ingestion's own Python (the inbox's accept step or the core), Django and the web server,
and lists the hottest frames.
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
from pathlib import Path

CATEGORIES = (
    "waiting on PostgreSQL (server work, commit, locks)",
    "psycopg: building SQL text from parameters",
    "parsing: JSON and Segment messages",
    "ingestion: Python",
    "ingestion: Django ORM",
    "write key lookup",
    "Django and web server request handling",
    "idle (no request)",
)


def py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")


def record(pids: list[int], seconds: float, out_dir: Path, name: str) -> list[tuple[subprocess.Popen, Path]]:
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install -e '.[dev]')")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for pid in pids:
        path = out_dir / f"py-spy-{name}-{pid}.txt.tmp"  # raw samples: not kept in git
        proc = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))), "--rate", "200",
             "--idle", "--nonblocking", "--format", "raw", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        started.append((proc, path))
    return started


def _category(frames: list[str]) -> str:
    stack = ";".join(frames)
    leaf = frames[-1]
    # A request: gunicorn's handle_request, or Django's WSGI entry (config/wsgi.py) under
    # granian, whose own request handling is Rust and does not show.
    if "handle_request" not in stack and "config/wsgi.py" not in stack and "segment_views" not in stack:
        return CATEGORIES[7]
    if "Connection.wait" in leaf or "_execute_send" in leaf or "copy_end" in leaf or "copy_to" in leaf:
        return CATEGORIES[0]
    if "site_for_write_key" in stack:
        return CATEGORIES[5]
    if "psycopg/_queries.py" in stack or "psycopg/types" in stack or "psycopg/adapt.py" in stack:
        return CATEGORIES[1]
    if "decode_body" in stack or "parse_request" in stack:
        return CATEGORIES[2]
    if "ingest_batch" in stack or "tracking/inbox.py" in stack:
        return CATEGORIES[4] if "django/db/models" in stack else CATEGORIES[3]
    return CATEGORIES[6]


def summarize(files: list[Path], top: int = 20) -> tuple[dict[str, float], str]:
    shares: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for path in files:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            frames = stack.split(";")
            category = _category(frames)
            shares[category] += n
            total += n
            if category != CATEGORIES[7]:
                leaves[frames[-1]] += n
    if not total:
        return {}, "no samples"
    busy = total - shares[CATEGORIES[7]]
    split = {c: round(100 * shares[c] / busy, 1) for c in CATEGORIES[:7] if busy}
    lines = [f"{total} samples, {busy} while serving requests; share of request time:"]
    lines += [f"  {share:5.1f}%  {category}" for category, share in split.items()]
    lines.append("hottest frames (self time, share of request time):")
    lines += [f"  {100 * n / busy:5.1f}%  {frame}" for frame, n in leaves.most_common(top)]
    return split, "\n".join(lines)
