"""Where a bench phase's CPU went, by part: the web workers, the drain (Celery),
PostgreSQL, the load clients and the rest of the machine, in cores (CPU seconds over
wall seconds).

On a 2-core machine every part shares the cores, so a throughput figure alone does not
say what to make cheaper; this does ("web 1.1 cores, PostgreSQL 0.44, clients 0.16" is
what pointed at the web tier for /v1/track)."""

from __future__ import annotations

import os
import time

import psutil


def _cpu_seconds() -> dict[int, tuple[float, str]]:
    """pid -> (CPU seconds so far, process name) for every process we may read."""
    found = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is not None:
            found[proc.pid] = (times.user + times.system, proc.info["name"] or "")
    return found


def _reaped_by_postmasters() -> float | None:
    """CPU seconds of the PostgreSQL processes that have ended and been reaped: their
    postmaster's children times (a backend's CPU leaves with it otherwise). None when
    no postmaster can be read (PostgreSQL on another machine)."""
    total, found = 0.0, False
    for proc in psutil.process_iter(["name", "ppid"]):
        if not (proc.info["name"] or "").startswith("postgres"):
            continue
        try:
            parent = psutil.Process(proc.info["ppid"]).name() if proc.info["ppid"] else ""
            if parent.startswith("postgres"):
                continue  # a backend or helper, not the postmaster
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.children_user + times.children_system
        found = True
    return total if found else None


def _descendants(pid: int | None) -> set[int]:
    if not pid:
        return set()
    try:
        root = psutil.Process(pid)
        return {pid, *(child.pid for child in root.children(recursive=True))}
    except psutil.Error:
        return set()


class CpuMeter:
    """``start()`` when the clients begin, ``stop()`` once they are done and reaped (they
    are this process's children, so their CPU is read from ``os.times``)."""

    def __init__(self, *, web_pid: int | None, drain_pid: int | None):
        self.roots = {"web": web_pid, "drain": drain_pid}
        self.before: dict[int, tuple[float, str]] = {}
        self.children_before = 0.0
        self.started = 0.0
        self.machine_before = 0.0
        self.reaped_before: float | None = None
        self.reads_postgresql = False

    def start(self) -> None:
        self.machine_before = _machine_busy()
        self.reaped_before = _reaped_by_postmasters()
        self.before = _cpu_seconds()
        times = os.times()
        self.children_before = times.children_user + times.children_system
        self.started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Cores used by each part since ``start``. PostgreSQL's includes its processes
        that ended meanwhile (a drain's connection is closed and reopened once older than
        ``CONN_MAX_AGE``): what their postmaster reaped, less what they had spent before
        ``start``. ``unattributed`` is what the machine as a whole spent beyond the parts:
        other processes that ended before ``stop`` take their CPU time with them."""
        machine = _machine_busy() - self.machine_before
        after = _cpu_seconds()
        reaped = _reaped_by_postmasters()
        seconds = time.monotonic() - self.started
        if seconds <= 0:
            return {}
        times = os.times()
        used = {"web": 0.0, "drain": 0.0, "postgresql": 0.0, "clients": 0.0, "other": 0.0}
        used["clients"] = times.children_user + times.children_system - self.children_before
        members = {role: _descendants(root) for role, root in self.roots.items()}
        for pid, (cpu, name) in after.items():
            spent = cpu - self.before[pid][0] if pid in self.before else cpu
            if spent <= 0:
                continue
            part = next((role for role, pids in members.items() if pid in pids), None)
            if part is None:
                part = "postgresql" if name.startswith("postgres") else "other"
            used[part] += spent
        self.reads_postgresql = reaped is not None and self.reaped_before is not None
        if self.reads_postgresql:
            gone = sum(
                cpu for pid, (cpu, name) in self.before.items() if pid not in after and name.startswith("postgres")
            )
            used["postgresql"] += max(0.0, reaped - self.reaped_before - gone)
        used["unattributed"] = max(0.0, machine - sum(used.values()))
        return {part: round(value / seconds, 2) for part, value in used.items()}


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent, all cores, anything but idle."""
    times = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user time already.
    idle = {"idle", "iowait", "guest", "guest_nice"}
    return sum(value for name, value in times.items() if name not in idle)
