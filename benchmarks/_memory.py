"""Resident-memory readings shared by the benchmark scripts and the child process of ``_measure.py``.

Linux ``/proc/self/status`` values in GB (NaN elsewhere); :func:`reset_peak` resets
``VmHWM`` through ``/proc/self/clear_refs`` so a step's own peak can be measured.
Standard library only: the measuring child imports it before any setup.
"""

from __future__ import annotations

import os
import resource
import threading
import time

__all__ = ["status", "current_gb", "peak_gb", "reset_peak", "tree_gb", "machine_used_gb", "TreePeak"]


def status(key: str) -> float:
    """``key`` (e.g. ``"VmHWM"``, ``"VmRSS"``) of ``/proc/self/status`` in GB; NaN when unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return float("nan")


def current_gb() -> float:
    """Resident memory now (GB; NaN off Linux)."""
    return status("VmRSS")


def peak_gb() -> float:
    """Peak resident memory (GB): ``VmHWM`` since the last :func:`reset_peak` on Linux, else the process peak."""
    v = status("VmHWM")
    return v if v == v else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak() -> bool:
    """Reset the peak-RSS counter (Linux: write 5 to /proc/self/clear_refs); False when that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux ``/proc``; children started by each main thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return out


def _rss_gb(pid: int) -> float:
    """Resident memory of one process (GB, ``/proc/<pid>/statm``); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**3
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_gb(pid: int | None = None) -> float:
    """Resident memory of a process and all its descendants now (GB, sum of RSS; NaN off Linux).

    An upper bound of what the machine holds for the whole tree (a papermill kernel, forked
    workers...): pages shared by forked processes and shared libraries are counted once per
    process. (The exact split, PSS from ``smaps_rollup``, costs ~0.1 s per read on a 7 GB
    process: too slow to sample every second.)
    """
    pid = os.getpid() if pid is None else pid
    if not os.path.exists(f"/proc/{pid}/statm"):
        return float("nan")
    return sum(_rss_gb(p) for p in _descendants(pid))


def machine_used_gb() -> float:
    """Memory in use on the whole machine now (GB): ``MemTotal - MemAvailable`` (NaN off Linux).

    Unlike a sum of RSS it counts a page shared by forked processes once, and leaves out the
    page cache (files read); other programs running at the same time are in it too.
    """
    try:
        with open("/proc/meminfo") as f:
            kv = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.split()[1].isdigit()}
        return (kv["MemTotal"] - kv["MemAvailable"]) / 1024**2
    except (OSError, KeyError, IndexError):
        return float("nan")


class TreePeak:
    """Samples :func:`tree_gb` of this process every ``every`` seconds in a thread; ``.peak`` is the largest."""

    def __init__(self, every: float = 1.0) -> None:
        self.every, self.peak, self.cpu = every, tree_gb(), 0.0
        self.machine_peak = machine_used_gb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            v = tree_gb()
            if v > self.peak:
                self.peak = v
            m = machine_used_gb()
            if m > self.machine_peak:
                self.machine_peak = m
        self.cpu = time.thread_time()  # what the sampling cost (it is in the measured CPU seconds)

    def stop(self) -> float:
        """Stop sampling; the peak in GB (NaN off Linux)."""
        self._stop.set()
        self._thread.join()
        return self.peak
