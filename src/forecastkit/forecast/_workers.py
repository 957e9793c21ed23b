"""Run independent tasks in forked worker processes and hand back what a serial run would.

Used by :func:`~forecastkit.forecast.backtest.backtest` to forecast its periods on several
CPU cores. The worker processes are started with the *fork* method, so they inherit the
task and its inputs (the company, the shared training rows) instead of receiving a pickled
copy: only the task's index goes to a worker and only its result comes back.

What the caller sees does not depend on the number of workers:

* results come back in the order of the tasks;
* the warnings a task shows (under the warning filters the worker inherited from the
  parent) are recorded in the worker and shown again in the parent, task by task in the
  tasks' order, with their category, message and the line that warned (a warning the
  filters turn into an error is raised in the worker, as an exception of the task);
* an exception raised by a task reaches the caller with its type and message (the worker's
  traceback is chained as its cause), after the warnings of the tasks before it and of the
  task itself; the tasks after it are cancelled.

Where fork is not available (Windows) or not safe (macOS, where system libraries may not
survive a fork), or inside a daemon process (which may not start children), the tasks
run one after the other in the calling process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import numbers
import os
import pickle
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from forecastkit.errors import ParameterError

__all__ = ["ENV", "usable_cpus", "available_memory", "fork_available", "n_workers", "run_tasks"]

#: Environment variable that sets the number of worker processes when ``n_jobs`` is not given.
ENV = "FORECASTKIT_JOBS"

#: The task and its items while a forked pool runs (inherited by the workers at fork time).
_JOB: tuple[Callable[[Any], Any], Sequence[Any], int] | None = None
#: One pool at a time per process (threads calling :func:`run_tasks` together wait for each other).
_LOCK = threading.Lock()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the system has one, else the CPU count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def fork_available() -> bool:
    """Whether worker processes can be forked here: not on Windows nor macOS, nor from a daemon process."""
    return (
        sys.platform != "darwin"
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )


def available_memory() -> int | None:
    """Bytes of memory available to new processes (``MemAvailable`` of ``/proc/meminfo``), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def n_workers(n_jobs: Any, n_tasks: int, size: int, min_size: int, worker_bytes: int = 0) -> int:
    """How many processes run ``n_tasks`` tasks (1 = serially, in the calling process).

    ``n_jobs`` if given, else the environment variable :data:`ENV` if set, else automatic:
    the usable CPUs when ``size >= min_size`` (1 below: starting processes does not pay for
    small inputs), and no more workers than the available memory holds at ``worker_bytes``
    each. Never more than the tasks, and 1 where fork is not available.
    """
    if n_jobs is None:
        env = os.environ.get(ENV, "").strip()
        if env:
            n_jobs = _whole(int(env) if env.isdigit() else env, f"the environment variable {ENV}={env!r}")
        else:
            n_jobs = usable_cpus() if size >= min_size else 1
            free = available_memory() if worker_bytes > 0 else None
            if free is not None:
                n_jobs = min(n_jobs, free // worker_bytes)
    else:
        n_jobs = _whole(n_jobs, f"n_jobs={n_jobs!r}")
    if n_jobs > 1 and not fork_available():
        return 1
    return max(1, min(n_jobs, n_tasks))


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{what} is not a number of processes; give a whole number >= 1 (1 = serial) or None")
    return int(value)


def run_tasks(task: Callable[[Any], Any], items: Sequence[Any], workers: int, order: Sequence[int] | None = None):
    """``[task(x) for x in items]``, on ``workers`` forked processes when ``workers > 1``.

    ``order`` is the order the tasks are handed to the workers (e.g. the longest first, so no
    worker is left alone with a long task at the end); the results keep the items' order.
    """
    if workers <= 1 or len(items) <= 1 or not fork_available():
        return [task(x) for x in items]
    with _LOCK:
        return _run_forked(task, items, workers, order)


def _run_forked(task: Callable[[Any], Any], items: Sequence[Any], workers: int, order: Sequence[int] | None) -> list:
    global _JOB
    _JOB = (task, items, max(1, usable_cpus() // workers))  # inherited by the workers, forked at the first submit
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        futures = {i: pool.submit(_run_one, i) for i in (range(len(items)) if order is None else order)}
        out = []
        for i in range(len(items)):
            result, shown, error = futures[i].result()
            _warn_again(shown)
            if error is not None:
                exc, tb = error
                raise exc from _WorkerTraceback(tb)
            out.append(result)
        return out
    finally:
        _JOB = None
        pool.shutdown(wait=True, cancel_futures=True)


class _WorkerTraceback(Exception):
    """The traceback of an exception raised in a worker process (chained as the exception's cause)."""

    def __str__(self) -> str:
        return f"\n\nin the worker process:\n{self.args[0]}"


def _run_one(i: int) -> tuple[Any, list[tuple[type[Warning], str, str, int]], tuple[BaseException, str] | None]:
    """Worker side: run task ``i``; return its result, the warnings it showed and its exception (or None).

    Its BLAS and OpenMP libraries use the worker's share of the CPUs (with their default, a
    thread per CPU in every worker, the threads of the workers wait for each other: 38 s instead
    of 55 s wall at 100k deals with 2 workers on 2 CPUs, the same CPU seconds and results). The
    warning filters are the parent's (inherited at fork time) and are not touched, so a
    warning is shown, ignored, shown once or raised as an error exactly as in a serial run; the
    shown ones are recorded instead of printed.
    """
    assert _JOB is not None, "the task must be set before the workers are forked"
    task, items, threads = _JOB
    result, error, shown = None, None, []

    def record(message, category, filename, lineno, file=None, line=None):
        shown.append((category, str(message), filename, lineno))

    previous, warnings.showwarning = warnings.showwarning, record
    try:
        with _thread_limit(threads):
            result = task(items[i])
    except Exception as exc:
        error = (_portable(exc), traceback.format_exc())
    finally:
        warnings.showwarning = previous
    return result, shown, error


def _thread_limit(threads: int):
    """Limit the BLAS and OpenMP threads of a worker (the workers share the CPUs; same results, measured)."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives the trip to the parent process, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def _warn_again(shown: Sequence[tuple[type[Warning], str, str, int]]) -> None:
    """Show warnings shown in a worker again in this process, as from the module and line that raised them.

    They passed the worker's filters (this process's, inherited at fork time), so they are
    shown as they are, through the same hook as ``warnings.warn`` (a ``catch_warnings(record=True)``
    block records them), without being filtered a second time.
    """
    show = getattr(warnings, "_showwarnmsg", None)
    for category, message, filename, lineno in shown:
        if show is None:  # pragma: no cover - Python without the hook: filtered again
            warnings.warn_explicit(message, category, filename, lineno, registry=None)
        else:
            show(warnings.WarningMessage(_warning(category, message), category, filename, lineno))


def _warning(category: type[Warning], message: str) -> Warning:
    try:
        return category(message)
    except Exception:  # a warning class with other arguments: its message as a plain warning
        return UserWarning(f"{category.__name__}: {message}")
