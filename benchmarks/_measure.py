"""Run one benchmark step in a fresh Python process and measure it.

A step is two snippets of Python: ``setup`` (not timed, e.g. loading the data) and
``code`` (timed). The child process reports, as JSON on its last output line:

``seconds``        wall-clock seconds of ``code``
``cpu_seconds``    user + system CPU seconds of ``code``, its own and its finished
                   child processes' (a papermill kernel counts)
``system_seconds`` the part of ``cpu_seconds`` spent in the kernel (page faults, reading files);
                   the rest is user time, the code's own work
``peak_gb``        peak resident memory of the process over its whole life (Linux
                   ``VmHWM``; setup included: that is what the machine must hold), or of
                   its largest child process if larger
``step_peak_gb``   peak resident memory reached during ``code`` alone (``VmHWM`` is reset
                   after the setup through ``/proc/self/clear_refs``)
``tree_peak_gb``   peak memory of the process and all its descendants together during
                   ``code`` (sum of RSS, an upper bound: pages shared by forked workers count
                   once per process; sampled every second by a thread whose CPU,
                   ``sampler_cpu_seconds``, is taken out of ``cpu_seconds``): what the machine held when
                   a kernel or worker processes ran alongside
``machine_peak_gb`` peak of the memory in use on the machine (``MemTotal - MemAvailable``)
                   during ``code``, minus its value when the process started: what the step
                   added to the machine, setup included, with pages shared by forked workers
                   counted once (exact on an idle machine; other programs' memory is in it)
``rss_before_gb``  resident memory when ``code`` started
``result``         whatever ``code`` stored in the variable ``result`` (JSON-able)
``skipped``        a note when ``code`` raised :class:`SkipStep` (e.g. a module not there yet)
``error``          the exception when ``code`` failed

With ``profile=path`` the timed code runs under :mod:`cProfile` and the stats are
dumped to ``path`` (``python -m pstats path`` to read them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

__all__ = ["run_step", "machine"]

_MARK = "@@MEASURE@@"

_TEMPLATE = r'''
import gc, json, os, resource, sys, time, traceback

class SkipStep(Exception):
    """Raised by a step that cannot run (yet)."""

sys.path.insert(0, {here!r})
from _memory import TreePeak, machine_used_gb, reset_peak, status as _status
_used0 = machine_used_gb()  # before the setup: the step's data counts in what it adds

def _cpu():
    """(user + system, system) CPU seconds of this process and its finished children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime, s.ru_stime + c.ru_stime

result = None
out = {{}}
{setup}
gc.collect()
peak_setup = _status("VmHWM")
_reset = reset_peak()
out["rss_before_gb"] = _status("VmRSS")
_profile = {profile!r}
if _profile:
    import cProfile
    _prof = cProfile.Profile()
_tree = TreePeak()
(_c0, _s0), _t0 = _cpu(), time.perf_counter()
try:
    if _profile:
        _prof.enable()
    exec(compile({code!r}, "<step>", "exec"))
except SkipStep as e:
    out["skipped"] = str(e)
except Exception as e:  # noqa: BLE001 - reported, not hidden
    out["error"] = f"{{type(e).__name__}}: {{e}}"
    out["traceback"] = traceback.format_exc()[-3000:]
finally:
    if _profile:
        _prof.disable()
        _prof.dump_stats(_profile)
out["seconds"] = time.perf_counter() - _t0
_c1, _s1 = _cpu()
out["cpu_seconds"] = _c1 - _c0
out["system_seconds"] = _s1 - _s0
out["tree_peak_gb"] = _tree.stop()
out["sampler_cpu_seconds"] = _tree.cpu
out["machine_peak_gb"] = _tree.machine_peak - _used0
out["cpu_seconds"] -= _tree.cpu  # the memory sampling is not the step's work
step_peak = _status("VmHWM")
out["step_peak_gb"] = step_peak if _reset else float("nan")
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
out["peak_gb"] = max(peak_setup, step_peak, children)
out["result"] = result
{teardown}
print({mark!r} + json.dumps(out, default=str))
'''


def run_step(
    code: str,
    setup: str = "",
    *,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    profile: str | os.PathLike[str] | None = None,
    python: str = sys.executable,
    teardown: str = "",
) -> dict:
    """Run ``setup`` then time ``code`` in a fresh interpreter; return the measures (see module doc).

    ``teardown`` runs after the measures are taken (e.g. to save what ``code`` built).

    A crash of the child (killed for memory, timeout) is returned as ``error``.
    """
    src = _TEMPLATE.format(
        setup=textwrap.dedent(setup),
        code=textwrap.dedent(code),
        teardown=textwrap.dedent(teardown),
        profile=str(profile) if profile else "",
        mark=_MARK,
        here=str(Path(__file__).resolve().parent),
    )
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([python, "-c", src], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s", "seconds": time.perf_counter() - t0}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    tail = (proc.stderr or proc.stdout)[-2000:]
    return {"error": f"process exited with code {proc.returncode}: {tail}", "seconds": time.perf_counter() - t0}


def machine() -> dict:
    """nproc, memory, CPU model and load average, for the results table."""
    info = {"nproc": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        cpu = Path("/proc/cpuinfo").read_text()
        models = [ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("model name")]
        info["cpu"] = models[0] if models else "unknown"
        mhz = [ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("cpu MHz")]
        if mhz:
            info["cpu_mhz"] = mhz[0]
    except OSError:
        info["cpu"] = "unknown"
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()
        kv = {ln.split(":")[0]: int(ln.split()[1]) for ln in mem if ln.split()[1].isdigit()}
        info["mem_total_gb"] = round(kv["MemTotal"] / 1024**2, 1)
        info["mem_available_gb"] = round(kv["MemAvailable"] / 1024**2, 1)
    except (OSError, KeyError):
        pass
    info["loadavg"] = tuple(round(x, 2) for x in os.getloadavg())
    return info
