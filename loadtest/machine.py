"""How busy the machine was with work that is not ours, during one measurement.

The bench shares 2 cores with whatever else runs (other test suites, builds). Every figure is
reported with ``others_cores``: the CPU time that processes outside the bench's own process tree
used during the measurement, divided by its wall time (0.5 = half a core taken by others). The
embedded PostgreSQL the bench starts is registered as ours (it daemonizes, so it is no descendant);
a server named by STAGEDOOR_BENCH_DATABASE_URL counts as others. Processes that start and end
inside the window are not seen; it is an indicator, not an accounting.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

# Servers the bench started that are not its descendants (the embedded PostgreSQL daemonizes):
# their process trees count as ours, not as "others".
OWN_ROOTS: set[int] = set()


def register_own(pid: int) -> None:
    OWN_ROOTS.add(pid)


def postmaster_pid(data_dir: Path) -> int | None:
    """The PID of the PostgreSQL server running on ``data_dir`` (first line of postmaster.pid)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def is_ours(proc: psutil.Process, me: int) -> bool:
    """``proc`` is ``me``, a descendant of it, or of a server registered with ``register_own``."""
    roots = OWN_ROOTS | {me}
    try:
        return proc.pid in roots or any(parent.pid in roots for parent in proc.parents())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _others_cpu_s(me: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for proc in psutil.process_iter():
        if is_ours(proc, me):
            continue
        try:
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        out[proc.pid] = times.user + times.system
    return out


class OthersLoad:
    """``with OthersLoad() as load: ...`` then ``load.cores``."""

    def __init__(self) -> None:
        self.me = os.getpid()
        self.cores: float | None = None
        self._start: dict[int, float] = {}
        self._t0 = 0.0

    def __enter__(self) -> OthersLoad:
        self._start = _others_cpu_s(self.me)
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.monotonic() - self._t0
        end = _others_cpu_s(self.me)
        used = sum(max(0.0, cpu - self._start[pid]) for pid, cpu in end.items() if pid in self._start)
        self.cores = round(used / elapsed, 2) if elapsed > 0 else None
