"""Resident-memory readings shared by the benchmark scripts and the child process of ``_measure.py``.

Linux ``/proc/self/status`` values in GB (NaN elsewhere); :func:`reset_peak` resets
``VmHWM`` through ``/proc/self/clear_refs`` so a step's own peak can be measured.
Standard library only: the measuring child imports it before any setup.
"""

from __future__ import annotations

import resource

__all__ = ["status", "current_gb", "peak_gb", "reset_peak"]


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
