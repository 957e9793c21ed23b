"""The backtest's periods on several processes (``n_jobs``): the very same frame, fits, warnings and errors.

Worker processes are forked (:mod:`forecastkit.forecast._workers`), so a monkeypatched
function of the backtest module is inherited by them: the tests use that to make a
period warn or fail inside a worker.
"""

from __future__ import annotations

import multiprocessing
import sys
import warnings

import pandas as pd
import pytest

from forecastkit.data.sample import generate
from forecastkit.errors import ForecastkitWarning, ParameterError, PeriodError
from forecastkit.forecast import _workers
from forecastkit.forecast import backtest as bt_module
from forecastkit.forecast.backtest import backtest

pytestmark = [
    pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning"),
    pytest.mark.skipif(not _workers.fork_available(), reason="worker processes are forked"),
]

#: A cheap plan (no model is fitted): three quarters, two checkpoints.
CHEAP = {"periods": ["2025-Q4", "2026-Q1", "2026-Q2"], "checkpoints": ("week1", "week8"), "methods": ("run_rate",)}


@pytest.fixture(scope="module")
def baseline():
    return generate("baseline", seed=0)


@pytest.fixture
def pools(monkeypatch):
    """The worker pools started during the test (a list, one entry per pool)."""
    started = []
    real = _workers.ProcessPoolExecutor

    def spy(*args, **kwargs):
        started.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(_workers, "ProcessPoolExecutor", spy)
    monkeypatch.delenv(_workers.ENV, raising=False)
    return started


def _warning_run_rate(real):
    """``_run_rate`` that warns twice per checkpoint: once with the period and once the same message each time."""

    def run_rate(snap, per, n_periods, cw):
        warnings.warn(f"run rate of {per.label} at {snap.as_of_date.date()}", ForecastkitWarning, stacklevel=1)
        warnings.warn("every checkpoint says this", UserWarning, stacklevel=1)
        return real(snap, per, n_periods, cw)

    return run_rate


def _shown(action: str, **kw) -> tuple[pd.DataFrame, list[tuple[type, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter(action)
        globals().pop("__warningregistry__", None)  # "default" shows a line's warning once per registry
        warnings.onceregistry.clear()  # "once": once per process
        out = backtest(**kw)
    return out, [(w.category, str(w.message)) for w in caught]


# --------------------------------------------------------------------------- same results
def test_parallel_backtest_equals_the_serial_one_exactly_with_the_oracle(baseline, pools):
    kw = {"periods": ["2025-Q4", "2026-Q1", "2026-Q2"], "checkpoints": ("week1", "week8"), "truth": baseline.truth}
    serial = backtest(baseline.crm, n_jobs=1, **kw)
    assert pools == []
    parallel = backtest(baseline.crm, n_jobs=2, **kw)
    assert len(pools) == 1  # one pool of two workers
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
    assert parallel.attrs["fits"] == serial.attrs["fits"] == {"win_model": 3, "slip_model": 3}
    assert set(parallel["method"]) == {*bt_module.METHODS, "oracle"}


def test_a_period_given_twice_apart_is_backtested_serially_with_its_models_shared(baseline, pools):
    kw = {"periods": ["2025-Q4", "2026-Q1", "2025-Q4"], "checkpoints": ("week4",), "methods": ("model", "run_rate")}
    serial = backtest(baseline.crm, n_jobs=1, **kw)
    parallel = backtest(baseline.crm, n_jobs=2, **kw)
    assert pools == []  # the rows' order needs the periods in the plan's order
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)
    assert parallel.attrs["fits"] == {"win_model": 2, "slip_model": 2}


def test_n_jobs_does_not_change_the_stored_backtests_key(baseline, pools, tmp_path):
    kw = {**CHEAP, "cache": tmp_path}
    stored = backtest(baseline.crm, n_jobs=2, **kw)
    reused = backtest(baseline.crm, n_jobs=1, **kw)
    assert (stored.attrs["cache"], reused.attrs["cache"]) == ("stored", "reused")
    assert len(pools) == 1
    pd.testing.assert_frame_equal(reused, stored, check_exact=True)


# --------------------------------------------------------------------------- warnings and errors
@pytest.mark.parametrize("action", ["always", "default", "once"])
def test_warnings_raised_in_the_workers_are_raised_again_in_the_serial_order(baseline, pools, monkeypatch, action):
    monkeypatch.setattr(bt_module, "_run_rate", _warning_run_rate(bt_module._run_rate))
    serial, serial_warnings = _shown(action, crm=baseline.crm, n_jobs=1, **CHEAP)
    parallel, parallel_warnings = _shown(action, crm=baseline.crm, n_jobs=2, **CHEAP)
    assert len(pools) == 1
    assert parallel_warnings == serial_warnings
    said = [m for c, m in serial_warnings if c is ForecastkitWarning]
    assert said == [
        "run rate of 2025-Q4 at 2025-10-01",
        "run rate of 2025-Q4 at 2025-11-19",
        "run rate of 2026-Q1 at 2026-01-01",
        "run rate of 2026-Q1 at 2026-02-19",
        "run rate of 2026-Q2 at 2026-04-01",
        "run rate of 2026-Q2 at 2026-05-20",
    ]
    repeated = [m for c, m in serial_warnings if c is UserWarning]
    # "default" and "once" show it again whenever the filters changed in between (the backtest's own
    # catch_warnings blocks change them at every checkpoint): the workers do the same
    assert repeated == ["every checkpoint says this"] * 6
    pd.testing.assert_frame_equal(parallel, serial, check_exact=True)


def test_a_warning_the_filters_make_an_error_is_raised_as_in_the_serial_run(baseline, pools, monkeypatch):
    monkeypatch.setattr(bt_module, "_run_rate", _warning_run_rate(bt_module._run_rate))
    for n_jobs in (1, 2):
        with warnings.catch_warnings(), pytest.raises(ForecastkitWarning) as info:
            warnings.simplefilter("error", ForecastkitWarning)
            backtest(baseline.crm, n_jobs=n_jobs, **CHEAP)
        assert str(info.value) == "run rate of 2025-Q4 at 2025-10-01"
    assert len(pools) == 1


class _NeedsTwoArguments(Exception):
    """An exception that cannot be rebuilt from its message (pickle calls ``__init__(message)``)."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} in {where}")


@pytest.mark.parametrize(
    ("error", "raised", "message"),
    [
        (PeriodError("2026-Q1 broke"), PeriodError, "2026-Q1 broke"),
        (ValueError("not a ForecastkitError"), ValueError, "not a ForecastkitError"),
        (_NeedsTwoArguments("bad", "2026-Q1"), RuntimeError, "_NeedsTwoArguments: bad in 2026-Q1"),
    ],
)
def test_an_error_raised_in_a_worker_reaches_the_caller_after_the_warnings_before_it(
    baseline, pools, monkeypatch, error, raised, message
):
    warn = _warning_run_rate(bt_module._run_rate)

    def failing(snap, per, n_periods, cw):
        out = warn(snap, per, n_periods, cw)
        if per.label == "2026-Q1":
            raise error
        return out

    monkeypatch.setattr(bt_module, "_run_rate", failing)
    for n_jobs in (1, 2):
        with warnings.catch_warnings(record=True) as caught, pytest.raises(Exception) as info:
            warnings.simplefilter("always")
            backtest(baseline.crm, n_jobs=n_jobs, **CHEAP)
        said = [str(w.message) for w in caught if w.category is ForecastkitWarning]
        # the serial run stops at 2026-Q1's first checkpoint; a worker stops there too
        assert said == ["run rate of 2025-Q4 at 2025-10-01", "run rate of 2025-Q4 at 2025-11-19"] + [
            "run rate of 2026-Q1 at 2026-01-01"
        ]
        if n_jobs == 1:
            assert info.type is type(error)
        else:
            assert info.type is raised
            assert str(info.value) == message
            assert "in the worker process" in str(info.value.__cause__)
    assert len(pools) == 1


# --------------------------------------------------------------------------- how many processes
@pytest.mark.parametrize(
    ("n_jobs", "message"),
    [
        (0, "n_jobs=0 is not a number of processes; give a whole number >= 1 (1 = serial) or None"),
        (-1, "n_jobs=-1 is not a number of processes; give a whole number >= 1 (1 = serial) or None"),
        ("2", "n_jobs='2' is not a number of processes; give a whole number >= 1 (1 = serial) or None"),
        (1.5, "n_jobs=1.5 is not a number of processes; give a whole number >= 1 (1 = serial) or None"),
        (True, "n_jobs=True is not a number of processes; give a whole number >= 1 (1 = serial) or None"),
    ],
)
def test_a_bad_n_jobs_is_refused_before_any_work(baseline, pools, n_jobs, message):
    with pytest.raises(ParameterError) as info:
        backtest(baseline.crm, n_jobs=n_jobs, **CHEAP)
    assert str(info.value) == message


@pytest.mark.parametrize("value", ["two", "0", "-2", "1.5"])
def test_a_bad_environment_variable_is_refused_with_its_name(baseline, pools, monkeypatch, value):
    monkeypatch.setenv("FORECASTKIT_JOBS", value)
    with pytest.raises(ParameterError) as info:
        backtest(baseline.crm, **CHEAP)
    assert str(info.value) == (
        f"the environment variable FORECASTKIT_JOBS={value!r} is not a number of processes; "
        "give a whole number >= 1 (1 = serial) or None"
    )


def test_the_environment_variable_sets_the_processes_unless_n_jobs_is_given(baseline, pools, monkeypatch):
    monkeypatch.setenv("FORECASTKIT_JOBS", "2")
    backtest(baseline.crm, **CHEAP)
    assert pools == [(2,)]
    backtest(baseline.crm, n_jobs=1, **CHEAP)
    monkeypatch.setenv("FORECASTKIT_JOBS", " 1 ")
    backtest(baseline.crm, **CHEAP)
    assert pools == [(2,)]
    backtest(baseline.crm, n_jobs=2, **CHEAP)
    assert pools == [(2,), (2,)]


def test_the_automatic_number_of_processes(monkeypatch):
    monkeypatch.delenv("FORECASTKIT_JOBS", raising=False)
    monkeypatch.setattr(_workers, "usable_cpus", lambda: 4)
    assert _workers.n_workers(None, 8, 20_000, 20_000) == 4  # the usable CPUs
    assert _workers.n_workers(None, 3, 20_000, 20_000) == 3  # never more than the periods
    assert _workers.n_workers(None, 8, 19_999, 20_000) == 1  # small companies: serial
    assert _workers.n_workers(8, 8, 10, 20_000) == 8  # given: used as is
    monkeypatch.setattr(_workers, "available_memory", lambda: 3 * 10**9)
    assert _workers.n_workers(None, 8, 20_000, 20_000, 10**9) == 3  # as many as the memory holds
    assert _workers.n_workers(None, 8, 20_000, 20_000, 2 * 10**9) == 1
    assert _workers.n_workers(2, 8, 20_000, 20_000, 2 * 10**9) == 2  # given: used as is
    monkeypatch.setattr(_workers, "available_memory", lambda: None)
    assert _workers.n_workers(None, 8, 20_000, 20_000, 10**12) == 4  # memory unknown: no bound
    monkeypatch.setenv("FORECASTKIT_JOBS", "3")
    assert _workers.n_workers(None, 8, 10, 20_000) == 3
    assert _workers.n_workers(1, 8, 10, 20_000) == 1
    assert _workers.usable_cpus() >= 1
    assert _workers.available_memory() is None or _workers.available_memory() > 0


def test_without_fork_the_backtest_runs_serially(baseline, pools, monkeypatch):
    serial = backtest(baseline.crm, n_jobs=1, **CHEAP)
    monkeypatch.setattr(_workers, "fork_available", lambda: False)
    assert _workers.n_workers(2, 8, 10**6, 1) == 1
    out = backtest(baseline.crm, n_jobs=2, **CHEAP)
    assert pools == []
    pd.testing.assert_frame_equal(out, serial, check_exact=True)


@pytest.mark.parametrize(
    "setting",
    [
        ("platform", "darwin"),  # fork is offered on macOS but not safe with its system libraries
        ("methods", ["spawn"]),  # Windows
        ("daemon", True),  # a daemon process may not start children
    ],
)
def test_fork_is_not_used_on_macos_windows_or_in_a_daemon(monkeypatch, setting):
    what, value = setting
    if what == "platform":
        monkeypatch.setattr(sys, "platform", value)
    elif what == "methods":
        monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: value)
    else:
        monkeypatch.setattr(multiprocessing.current_process(), "daemon", value)
    assert _workers.fork_available() is False
