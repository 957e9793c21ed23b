"""Keep a backtest for the next scheduled run: past checkpoints do not change when newer data arrives.

A backtest re-forecasts completed periods from what was known at each checkpoint
(``crm.as_of(d)``); nothing after ``d`` reaches a forecast (tested by falsifying the future).
So every forecast in a backtest is a function of the company *as known at its latest
checkpoint*, and next week's run, with a week more data, would recompute the very same
numbers. This module stores a backtest in a folder and hands it back when nothing it
depends on changed. The actuals are the exception: they are read from the full snapshot
(a deal corrected after the period can change them), so they are always recomputed, with
the errors and the coverage that follow from them.

A stored backtest is reused only when all of these are equal (its file name is a digest
of them):

* the company as known at the latest checkpoint: every table and column the methods read
  (the backtest's lean copy, not trimmed), rewound with ``as_of`` to that date, compared
  row by row through :func:`pandas.util.hash_pandas_object` with column names and dtypes;
* the playbook (stages, default probabilities, fiscal calendar, categories...);
* the arguments: periods, checkpoints and their dates, methods, seed, draws, refit mode,
  run-rate periods;
* the code: forecastkit's source files and the versions of numpy, pandas, scipy and
  scikit-learn.

A change to anything known at or before the latest checkpoint (a backdated correction, a
new playbook, an upgrade) computes the backtest again. Checking the key costs one rewind
and one pass of hashing (about 2 % of the backtest on the benchmark companies). The
``oracle`` method (``truth=``) is never stored. Files are written under a temporary name and
renamed, so two runs at once never read a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError

__all__ = ["cached_backtest", "backtest_key"]

#: Stored backtests kept per folder (the oldest are removed beyond this).
KEEP = 16


def backtest_key(crm: CRM, plan: Sequence[tuple[Any, Any, pd.Timestamp]], params: dict[str, Any]) -> str:
    """Digest of everything a backtest's forecasts depend on (see the module docstring)."""
    from forecastkit.forecast.backtest import _lean_source

    last_d = max(d for _, _, d in plan)
    known = _lean_source(crm, params["methods"]).as_of(last_d)
    h = hashlib.sha256()
    h.update(_code_digest().encode())
    h.update(repr(crm.playbook).encode())
    h.update(json.dumps(params, sort_keys=True, default=str).encode())
    h.update(json.dumps([(per.label, str(cp), str(d)) for per, cp, d in plan]).encode())
    for name in sorted(known.tables):
        df = known.tables[name]
        h.update(f"|{name}|{len(df)}|".encode())
        h.update(json.dumps([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
        if len(df):
            h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def cached_backtest(
    crm: CRM,
    cache: str | os.PathLike[str],
    *,
    periods: Any,
    checkpoints: Sequence[str | int],
    methods: Sequence[str],
    seed: int,
    truth: Any,
    n_sims: int,
    refit: str,
    n_periods: int,
    n_jobs: int | None,
) -> pd.DataFrame:
    """:func:`~forecastkit.forecast.backtest.backtest` with its forecasts kept in ``cache`` for the next run.

    The arguments are :func:`backtest`'s (which passes them all). Returns the same frame as
    ``backtest(crm, ...)``; ``attrs["cache"]`` says ``"reused"`` or ``"stored"`` (``"off"`` with
    ``truth=``, never stored). ``n_jobs`` (the worker processes) is not part of the key: it
    does not change the results.
    """
    from forecastkit.forecast.backtest import _periods, _score, backtest, checkpoint_date

    # what a stored backtest depends on besides the data, the playbook and the plan (periods, checkpoints, dates)
    params = {"methods": list(dict.fromkeys(methods)), "seed": seed, "n_sims": n_sims, "refit": refit}
    params["n_periods"] = n_periods
    kwargs = {**params, "checkpoints": checkpoints, "n_jobs": n_jobs}
    if truth is not None:
        out = backtest(crm, periods, truth=truth, **kwargs)
        out.attrs["cache"] = "off"
        return out
    folder = Path(cache).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ParameterError(f"backtest cache {str(folder)!r} is a file; give a folder")
    pers = _periods(crm, periods)
    plan = [(per, cp, checkpoint_date(per, cp)) for per in pers for cp in checkpoints]
    key = backtest_key(crm, plan, params)
    path = folder / f"backtest-{key[:40]}.parquet"
    stored = _read(path)
    if stored is not None:
        _touch(path)
        out = _score(stored, crm, pers)
        out.attrs["fits"] = {"win_model": 0, "slip_model": 0}
        out.attrs["cache"] = "reused"
        return out
    out = backtest(crm, pers, **kwargs)
    _write(out, path)
    out.attrs["cache"] = "stored"
    return out


# --------------------------------------------------------------------------- helpers
@lru_cache(maxsize=1)
def _code_digest() -> str:
    import scipy
    import sklearn

    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    for mod in (np, pd, scipy, sklearn):
        h.update(f"{mod.__name__}={mod.__version__}".encode())
    return h.hexdigest()


def _read(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a damaged or foreign file is not trusted: the backtest is computed again
        return None


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # the newest used files survive the clean-up in _write
        os.utime(path)


def _write(out: pd.DataFrame, path: Path) -> None:
    """Store ``out`` as ``path`` (atomic rename), then keep only the :data:`KEEP` newest backtests."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".backtest-", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            frame = out.copy()
            frame.attrs = {}
            frame.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        old = sorted(path.parent.glob("backtest-*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
        for p in old[KEEP:]:
            p.unlink(missing_ok=True)
    except OSError:  # a read-only or full disk costs the next run time, never this run's result
        pass
