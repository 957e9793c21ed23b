"""Backtests: forecast past periods at fixed checkpoints and compare with what was booked.

For each past period and checkpoint, the pipeline is rebuilt with ``crm.as_of(d)``
and every method forecasts the period from that snapshot alone (leakage-free by
construction: nothing after ``d`` reaches a method). The actual is the amount of the
deals won with ``closed_at`` in the period, read from the full snapshot.

Checkpoints: ``"weekN"`` is the end of the first day of the N-th week of the period
(``start + 7 (N - 1)`` days: ``week1`` is the period's first day, ``week13`` the first
day of its last full week); an integer is a number of days after the start.

Methods (each forecasts total period bookings = won so far + still to come):

``crm``
    CRM default probabilities x amount of the open deals dated in the period (the
    weighted pipeline of Salesforce / HubSpot; typed-in probability where present).
``stage``
    historical stage win rates (:func:`~forecastkit.probability.stages.stage_probabilities`)
    x slip model x amount, plus not-yet-created deals.
``model``
    the calibrated :class:`~forecastkit.probability.model.WinModel` x slip model x amount,
    plus not-yet-created deals (:func:`~forecastkit.forecast.forecast.forecast`'s default).
``commit``, ``best_case``
    the reps' own forecast as the CRM rolls it up from their categories (Salesforce's
    Commit and Best Case forecast amounts; the ``rep`` view of
    :func:`~forecastkit.forecast.forecast.forecast`'s summary): won so far + the open deals
    dated in the period that the rep marked commit (best case adds those marked best case).
``call_commit``, ``call_best_case``
    the sum of the reps' latest calls (``forecast_calls``) submitted by the checkpoint - the
    numbers they typed in, which may add deals not yet in the CRM or override it.
``run_rate``
    won so far + the average, over the last 4 completed periods, of what was booked
    from the same point of the period to its end.
``oracle`` (only with ``truth=``)
    the generator's true ``P(won by the period end)`` per open deal
    (``truth.p_win_by``) x amount, plus the same not-yet-created deals term: the best a
    pipeline method can do.

``crm``, ``stage``, ``model`` and ``oracle`` also give P10 / P50 / P90 (seeded Monte Carlo).

Fitting (each model is fitted once and reused, never refitted per method):

* ``refit="period"`` (default) fits the win model and the slip model once per period,
  on the snapshot of its first checkpoint, and reuses them at the later checkpoints
  (still leakage-free: models fitted on older data); ``refit="checkpoint"`` fits them
  once per checkpoint (then each forecast equals ``forecast(crm.as_of(d),
  method="model")``, about 3 s more per checkpoint on the sample);
* the slip model's ``p_in_period`` is computed once per checkpoint (with the open
  deals' pushes, days in stage and segments as that snapshot knows them) and shared by
  ``stage`` and ``model``; the not-yet-created deals term too;
* the win model's training rows (:func:`~forecastkit.probability.features.training_rows`)
  and the slip model's rows are computed once for the whole backtest from the full
  snapshot and filtered, per fit, to the rows the checkpoint's snapshot knows.

The returned frame's ``attrs["fits"]`` counts the fits: ``{"win_model": ..., "slip_model": ...}``.

Periods in parallel (``n_jobs``): the periods are independent (each fits its own models),
so they are forecast in worker processes, one period per task, and the parent assembles the
rows in the plan's order. The frame, ``attrs["fits"]``, the warnings (shown again in the
serial order) and the errors (same type and message) are the serial run's
(:mod:`~forecastkit.forecast._workers`). The workers are forked, so they share the company
and the training rows computed once above instead of receiving copies; where fork is not
available (Windows) or not safe (macOS) the periods run one after the other.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecastkit._text import text_is
from forecastkit.data import timeline
from forecastkit.data.crm import CRM, _activities_before
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError, PeriodError
from forecastkit.forecast._workers import n_workers, run_tasks
from forecastkit.forecast.categories import rollup
from forecastkit.forecast.forecast import (
    _WIN_SPAN_DAYS,
    _WIN_STEP_DAYS,
    _rep_category,
    _win_dates,
    fit_win_model,
    win_probabilities,
)
from forecastkit.forecast.montecarlo import NewDeals, new_deal_run_rate, simulate_bookings, summarise
from forecastkit.forecast.slips import (
    SlipModel,
    _first_positions,
    _known_rows,
    _open_deal_state,
    _p_in_period_of,
    _segments,
    _slip_deals,
    slip_rows,
)
from forecastkit.periods import Period, parse_period, period_of
from forecastkit.playbook import CLOSED_STAGES

__all__ = ["backtest", "checkpoint_date", "past_periods", "METHODS", "BACKTEST_COLUMNS"]

#: Methods compared by default (``oracle`` is added when ``truth`` is given).
METHODS = ("crm", "stage", "model", "commit", "best_case", "call_commit", "call_best_case", "run_rate")
_ALL = (*METHODS, "oracle")
_DISTRIBUTION = ("crm", "stage", "model", "oracle")
#: Companies with fewer deals are backtested serially by default. Forking costs milliseconds while a
#: period costs seconds even for small companies (measured with 2 workers, CPU s serial -> parallel:
#: 1.75k deals 10.0 -> 9.1, 10k 20.5 -> 21.0, 100k 47.1 -> 50.1): the workers pay at every size tried.
_MIN_PARALLEL_DEALS = 1_000
#: Memory a worker may need per deal, to bound the automatic number of workers by the available memory
#: (measured, total PSS of the parallel run over the serial one with 2 workers: +0.41 GB at 100k deals,
#: about 2 kB a deal per worker; +2.0 GB at 1M, about 1 kB; doubled for safety).
_WORKER_BYTES_PER_DEAL = 4_000
#: Columns of the backtest frame.
BACKTEST_COLUMNS = (
    "period",
    "checkpoint",
    "as_of",
    "method",
    "forecast",
    "actual",
    "closed_won",
    "p10",
    "p50",
    "p90",
    "error",
    "abs_pct_error",
    "covered",
    "note",
)


def checkpoint_date(period: Period, checkpoint: str | int) -> pd.Timestamp:
    """The as-of date of a checkpoint: ``"weekN"`` = start + 7 (N - 1) days; an int = start + that many days.

    Examples
    --------
    >>> from forecastkit.periods import parse_period
    >>> str(checkpoint_date(parse_period("2026-Q1"), "week4").date())
    '2026-01-22'
    """
    if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool):
        days = int(checkpoint)
    else:
        m = re.fullmatch(r"week(\d+)", str(checkpoint).strip().lower())
        if not m or int(m[1]) < 1:
            raise ParameterError(
                f"checkpoint {checkpoint!r} is not understood; use 'week1', 'week4'... or days after the start"
            )
        days = 7 * (int(m[1]) - 1)
    d = period.start + pd.Timedelta(days=days)
    if not (days >= 0 and d < period.end):
        raise ParameterError(
            f"checkpoint {checkpoint!r} falls outside {period.label} ({period.start.date()} to {period.last_day.date()})"
        )
    return d


def past_periods(crm: CRM, n: int = 8, freq: str = "quarter") -> list[Period]:
    """The last ``n`` periods that ended by the snapshot date and start at least a year after the first deal."""
    o = crm.opportunities
    if o.empty:
        return []
    first = o["created_at"].min()
    p = period_of(crm.as_of_date, freq, crm.playbook).shift(-1, crm.playbook)  # type: ignore[arg-type]
    out = []
    while len(out) < n and p.start >= first + pd.Timedelta(days=365):
        out.append(p)
        p = p.shift(-1, crm.playbook)
    return out[::-1]


def _periods(crm: CRM, periods: Sequence[str | Period] | int | None) -> list[Period]:
    if periods is None or isinstance(periods, int):
        out = past_periods(crm, 8 if periods is None else periods)
        if not out:
            raise InsufficientDataError(
                f"no past quarter to backtest: the data must cover at least a year before a completed quarter "
                f"(snapshot {crm.as_of_date.date()}); pass periods=[...] explicitly"
            )
        return out
    first = crm.opportunities["created_at"].min()
    out = []
    for p in periods:
        per = parse_period(p, crm.playbook)
        if per.end > crm.as_of_date + pd.Timedelta(days=1):
            raise PeriodError(
                f"period {per.label} has not ended by the snapshot date {crm.as_of_date.date()}: its bookings are not "
                "known yet; backtest completed periods only (use forecast() for the current one)"
            )
        if pd.isna(first) or per.end <= first:
            raise PeriodError(
                f"period {per.label} ends before the first deal in the data "
                f"({'none' if pd.isna(first) else first.date()}): nothing to backtest"
            )
        out.append(per)
    return out


def backtest(
    crm: CRM,
    periods: Sequence[str | Period] | int | None = None,
    checkpoints: Sequence[str | int] = ("week1", "week4", "week8", "week13"),
    methods: Sequence[str] = METHODS,
    seed: int = 0,
    *,
    truth: Any = None,
    n_sims: int = 4_000,
    refit: Literal["period", "checkpoint"] = "period",
    n_periods: int = 4,
    cache: str | os.PathLike[str] | None = None,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Forecast past periods at each checkpoint with each method, and compare with the actual.

    Parameters
    ----------
    crm : CRM
        The full snapshot (actuals are read from it; forecasts only from ``crm.as_of(d)``).
    periods : list of str, int or None
        Completed periods (``["2025-Q1", ...]``), or how many of the last completed
        quarters (default 8, starting at least a year after the first deal).
    checkpoints : list of str or int
        ``"weekN"`` or days after the period start (see the module docstring).
    methods : list of str
        Among ``crm, stage, model, commit, best_case, call_commit, call_best_case, run_rate``
        (``oracle`` needs ``truth``).
    seed : int
        Seed of the Monte Carlo draws.
    truth : GroundTruth, optional
        The sample generator's ground truth; adds the ``oracle`` method.
    n_sims : int
        Monte Carlo draws per forecast.
    refit : {"period", "checkpoint"}
        When the win model and the slip model are refitted.
    n_periods : int
        Completed periods averaged by the run-rate terms.
    cache : folder, optional
        Keep the backtest in this folder and reuse it in the next run while nothing known
        at the latest checkpoint changed (:mod:`~forecastkit.forecast.backtest_cache`); the
        actuals are always recomputed. ``attrs["cache"]`` says ``"reused"`` or ``"stored"``.
    n_jobs : int, optional
        Worker processes forecasting the periods in parallel; the results do not depend on it
        (see the module docstring). ``1``: serially, in this process. ``None`` (default): the
        environment variable ``FORECASTKIT_JOBS`` when set (``FORECASTKIT_JOBS=1`` pins a
        scheduled job or a CI run to one process), else one process per usable CPU, at most
        one per period and no more than the available memory holds (serially for companies
        under 1,000 deals). Each worker adds its own working memory (with 2 workers, total
        peak 0.98 -> 1.39 GB at 100k deals, 7.1 -> 9.1 GB at 1M); on a machine short of
        memory, set ``FORECASTKIT_JOBS=1``.

    Returns
    -------
    DataFrame
        One row per (period, checkpoint, method): ``period, checkpoint, as_of, method,
        forecast, actual, closed_won`` (won by the checkpoint), ``p10, p50, p90`` (NaN for
        methods without a distribution), ``error`` (forecast - actual), ``abs_pct_error``
        (``|error| / actual``; NaN when actual = 0), ``covered`` (``p10 <= actual <= p90``;
        NA without interval), ``note``. ``attrs["fits"]``: how many times the win model
        and the slip model were fitted (see the module docstring).
    """
    n_workers(n_jobs, 1, 0, 0)  # a bad n_jobs or FORECASTKIT_JOBS is refused before any work
    if cache is not None:
        from forecastkit.forecast.backtest_cache import cached_backtest

        kw = {"periods": periods, "checkpoints": checkpoints, "methods": methods, "seed": seed, "truth": truth}
        return cached_backtest(crm, cache, **kw, n_sims=n_sims, refit=refit, n_periods=n_periods, n_jobs=n_jobs)
    methods = list(dict.fromkeys(methods))
    if truth is not None and "oracle" not in methods:
        methods.append("oracle")
    bad = [m for m in methods if m not in _ALL]
    if bad:
        raise ParameterError(f"unknown method(s) {bad}; allowed: {', '.join(_ALL)}")
    if "oracle" in methods and truth is None:
        raise ParameterError("method 'oracle' needs truth= (the sample generator's GroundTruth)")
    if refit not in ("period", "checkpoint"):
        raise ParameterError(f"refit must be 'period' or 'checkpoint', got {refit!r}")
    pers = _periods(crm, periods)
    plan = [(per, cp, checkpoint_date(per, cp)) for per in pers for cp in checkpoints]
    groups = _by_period(plan)
    deals = len(crm.opportunities)
    workers = n_workers(n_jobs, len(groups), deals, _MIN_PARALLEL_DEALS, _WORKER_BYTES_PER_DEAL * deals)
    # shared, leak-safe caches computed once from the full snapshot and filtered per checkpoint
    first_d = min(d for _, _, d in plan)
    last_d = max(d for _, _, d in plan)
    slip_cache = (
        slip_rows(
            crm,
            "quarter" if pers[0].freq == "quarter" else pers[0].freq,
            lookback=f"{(crm.as_of_date - first_d).days + 1095}D",
            until=last_d,
        )
        if _needs_slips(methods)
        else None
    )
    win_cache = _win_rows(crm, first_d, last_d) if "model" in methods else None
    rewind = _Rewinder(crm, methods, slip_cache, first_d)

    def forecast_period(items: list[tuple[Period, str | int, pd.Timestamp]]) -> tuple[list[dict], dict[str, int]]:
        """The rows of one period's checkpoints (its models are fitted at the first and reused)."""
        models: dict[str, Any] = {}
        slip_models: dict[str, tuple[SlipModel, list[str]]] = {}
        fits = {"win_model": 0, "slip_model": 0}
        rows = []
        for per, cp, d in items:
            # each checkpoint starts with the warning filters "changed": a warning shown once per
            # place ("default") shows again at the next checkpoint, whatever the methods run
            with warnings.catch_warnings():
                pass
            snap, pos = rewind.at(d)
            key = per.label if refit == "period" else f"{per.label}@{d.date()}"
            ctx = _Context(snap, per, slip_cache, n_periods, pos, slip_models, key)
            cw = float(_won_amount(snap, per))
            common = {"period": per.label, "checkpoint": str(cp), "as_of": d, "closed_won": cw}
            for m in methods:
                res = _one(
                    m,
                    ctx,
                    cw,
                    crm=crm,
                    per=per,
                    d=d,
                    truth=truth,
                    win_cache=win_cache,
                    models=models,
                    refit=refit,
                    seed=seed,
                    n_sims=n_sims,
                    fits=fits,
                )
                rows.append({**common, "method": m, **res})
            fits["slip_model"] += ctx.slip_fits
        return rows, fits

    if workers > 1:  # built once here and shared by the forked workers (copy-on-write), not once per worker
        rewind.lean._rewind_plan()
    # the latest periods hold the most deals: handed out first, so that no worker finishes alone
    done = run_tasks(forecast_period, groups, workers, order=range(len(groups) - 1, -1, -1))
    rows = [row for period_rows, _ in done for row in period_rows]
    fits = {k: sum(f[k] for _, f in done) for k in ("win_model", "slip_model")}
    out = _score(pd.DataFrame(rows), crm, pers)
    out.attrs["fits"] = fits
    return out


def _by_period(
    plan: list[tuple[Period, str | int, pd.Timestamp]],
) -> list[list[tuple[Period, str | int, pd.Timestamp]]]:
    """The plan's checkpoints grouped by period, in the plan's order (one group when a period comes back later)."""
    groups: dict[str, list] = {}
    for item in plan:
        groups.setdefault(item[0].label, []).append(item)
    out = list(groups.values())
    if [item for g in out for item in g] != plan:  # e.g. periods=["2025-Q1", "2025-Q2", "2025-Q1"]
        return [plan]
    return out


def _score(out: pd.DataFrame, crm: CRM, pers: Sequence[Period]) -> pd.DataFrame:
    """Add each period's actual (read from the full snapshot), the errors and the coverage to forecast rows."""
    o = crm.opportunities
    won = np.flatnonzero(text_is(o["status"], "won"))
    closed_at, amount = o["closed_at"].iloc[won], o["amount"].iloc[won]
    actuals = {
        per.label: float(amount[per.contains(closed_at).fillna(False).to_numpy(dtype=bool)].sum()) for per in pers
    }
    out = out.assign(actual=out["period"].map(actuals).astype(float))
    out["error"] = out["forecast"] - out["actual"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["abs_pct_error"] = np.where(out["actual"] > 0, out["error"].abs() / out["actual"], np.nan)
    has = out["p10"].notna()
    covered = pd.array([pd.NA] * len(out), dtype="boolean")
    covered[has.to_numpy()] = (
        (out.loc[has, "p10"] <= out.loc[has, "actual"]) & (out.loc[has, "actual"] <= out.loc[has, "p90"])
    ).to_numpy()
    out["covered"] = covered
    return out[list(BACKTEST_COLUMNS)]


# --------------------------------------------------------------------------- helpers
def _needs_slips(methods: Sequence[str]) -> bool:
    return bool({"stage", "model"} & set(methods))


def _win_rows(crm: CRM, first_d: pd.Timestamp, last_d: pd.Timestamp) -> pd.DataFrame | None:
    from forecastkit.probability.features import training_rows

    start, _ = _win_dates(first_d)
    _, end = _win_dates(last_d)
    first = crm.opportunities["created_at"].min()
    lo = first
    if pd.isna(lo) or end < lo:
        return None
    n = int((end - max(start, lo)).days // _WIN_STEP_DAYS)
    start = end - pd.Timedelta(days=_WIN_STEP_DAYS * n)
    assert _WIN_SPAN_DAYS % _WIN_STEP_DAYS == 0
    return training_rows(crm, start, end, f"{_WIN_STEP_DAYS}D")


def _won_rows(snap: CRM) -> np.ndarray:
    """Rows of the won deals in ``snap.opportunities``, found once per snapshot (the checkpoint's methods share them)."""
    return snap._cached(("won_rows",), lambda: np.flatnonzero(text_is(snap.opportunities["status"], "won")))


def _won_amount(snap: CRM, per: Period) -> float:
    """Amount of the deals won with ``closed_at`` in ``per``."""
    o = snap.opportunities
    won = _won_rows(snap)
    inside = per.contains(o["closed_at"].iloc[won]).fillna(False).to_numpy(dtype=bool)
    return float(o["amount"].iloc[won[inside]].sum())


#: Tables the methods read (besides ``opportunities``, ``history`` and ``field_history``), by method.
_TABLES_READ = {"model": ("activities",), "call_commit": ("forecast_calls",), "call_best_case": ("forecast_calls",)}


def _closed_throughout(crm: CRM, cutoff: pd.Timestamp, history_rows: np.ndarray | None = None) -> np.ndarray:
    """Mask of the opportunities closed in every snapshot ``crm.as_of(d)`` with ``d + 1 day >= cutoff``.

    As ``CRM.as_of`` rewinds them: a deal with history takes the stage of its last
    history row dated before the cutoff, so a deal whose history rows all lie before
    ``cutoff`` and end in a closed stage stays closed; a deal without history keeps its
    closed stage unless it closed at or after the cutoff. (Ids must be unique.)
    ``history_rows``: each history row's opportunities row (-1: none), when known.
    """
    o, h = crm.opportunities, crm.history
    n = len(o)
    pos = _first_positions(o["opportunity_id"], h["opportunity_id"]) if history_rows is None else history_rows
    known = pos >= 0
    hp, rows = pos[known], np.flatnonzero(known)
    has = np.bincount(hp, minlength=n) > 0
    late = (h["changed_at"].to_numpy(dtype="datetime64[ns]") >= cutoff.to_datetime64())[known]
    later = np.bincount(hp[late], minlength=n) > 0
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, hp, rows)  # each deal's last history row, in the table's order
    stage = np.asarray(h["stage"], dtype=object)
    last_closed = np.zeros(n, dtype=bool)
    last_closed[has] = pd.Series(stage[last[has]]).isin(CLOSED_STAGES).to_numpy(dtype=bool)
    closed_now = o["stage"].isin(CLOSED_STAGES).to_numpy(dtype=bool, na_value=False)
    closed_late = (o["closed_at"] >= cutoff).to_numpy(dtype=bool, na_value=False)
    return np.where(has, last_closed & ~later, closed_now & ~closed_late)


def _lean_source(
    crm: CRM, methods: Sequence[str], first: pd.Timestamp | None = None, history_rows: np.ndarray | None = None
) -> CRM:
    """The company with only the tables and columns the backtest's methods read, ready to rewind.

    ``_lean_source(crm, methods).as_of(d)`` gives every method the same input as
    ``crm.as_of(d)``: opportunities keep the columns the win model's features, the slip
    model, the roll-ups and the rewind read (the win model's training source keeps the
    same ones), field history the fields among them, activities (only for ``model``) those
    done on a deal, with their dates, and without the deals closed at every checkpoint from
    ``first`` on (:func:`_closed_throughout`: the features read the activities of open deals
    only); forecast calls only for the ``call_*`` methods. The other tables (accounts,
    contacts, orders...) are not rewound at all. ``history_rows``: each history row's
    opportunities row (-1: none), when the caller has them (distinct ids).
    """
    from forecastkit.probability.features import _DEAL_COLUMNS, _REWIND_COLUMNS

    o = crm.opportunities
    tables = {}
    wanted = {t for m in methods for t in _TABLES_READ.get(m, ())}
    if "activities" in wanted and crm.has("activities"):
        a = crm.activities
        keep = (a["opportunity_id"].notna() & a["done_at"].notna()).to_numpy(dtype=bool)
        ids = o["opportunity_id"]
        if first is not None and (history_rows is not None or pd.Index(np.asarray(ids, dtype=object)).is_unique):
            closed = _closed_throughout(crm, first + pd.Timedelta(days=1), history_rows)
            keep &= ~a["opportunity_id"].isin(ids[closed]).to_numpy(dtype=bool)
        tables["activities"] = a.loc[keep, ["opportunity_id", "created_at", "due_at", "done_at"]].reset_index(drop=True)
    if "forecast_calls" in wanted and crm.has("forecast_calls"):
        tables["forecast_calls"] = crm.forecast_calls
    return crm._rewind_source([*_DEAL_COLUMNS, *crm.playbook.qualification_fields, *_REWIND_COLUMNS], **tables)


class _Positions:
    """Where a checkpoint's snapshot rows sit in the full snapshot (for look-ups without ids).

    ``opps``: full-snapshot row of each of the snapshot's opportunities; ``history_codes``:
    full-snapshot opportunity row of each of the snapshot's history rows (``n`` when the
    deal is unknown); ``n``: the full snapshot's number of opportunities.
    """

    def __init__(self, opps: np.ndarray, history_codes: np.ndarray, n: int) -> None:
        self.opps, self.history_codes, self.n = opps, history_codes, n


class _Rewinder:
    """Rewinds a lean copy of the company (:func:`_lean_source`) to each checkpoint.

    ``CRM.as_of`` keeps the rows known at the cutoff in their order, so each snapshot
    row is found in the full snapshot by its position: the per-checkpoint slip-model
    inputs (pushes, days in stage, segments) are then computed without hashing ids
    again, and each snapshot holds the opportunities row of its history and activity
    rows (``CRM._rows_of_deals``' cache, read by the win model's features). Only when
    the opportunity ids are unique and a segment column exists (otherwise the positions
    are None and the slip model looks ids up as usual). The ids are hashed once (one
    index looked up for history, slip-model rows and activities).

    Each snapshot is cut to what the methods read (:meth:`at`): no field history, and with
    positions the activities of its open deals only. The lean copy's deals are only read, so
    when they are in creation order its rewinds share their first rows instead of copying them
    (``read_only_rewinds``, :func:`~forecastkit.data.crm._head`).
    """

    def __init__(self, crm: CRM, methods: Sequence[str], slip_cache: pd.DataFrame | None, first: pd.Timestamp) -> None:
        o = crm.opportunities
        keys = pd.Index(np.asarray(o["opportunity_id"], dtype=object))  # (its hash table is built once)
        unique = bool(keys.is_unique)
        hpos = _first_positions(keys, crm.history["opportunity_id"]) if unique else None
        self.lean = _lean_source(crm, methods, first, hpos)
        self.lean._cached(("read_only_rewinds",), lambda: True)  # (the methods only read the snapshots)
        o = self.lean.opportunities  # (the same rows and ids, the same history)
        self.n = len(o)
        self.by_position = unique and "segment" in o and _needs_slips(methods)
        if not self.by_position:
            return
        self.created = o["created_at"].to_numpy(dtype="datetime64[ns]")
        self.ids_known = not o["opportunity_id"].isna().any()  # (then the history positions match by id)
        h = self.lean.history
        self.history_codes = np.where(hpos < 0, self.n, hpos)
        self.changed = h["changed_at"].to_numpy(dtype="datetime64[ns]")
        # each history row's stage order, read once: a snapshot's rows are those dated before its cutoff
        self.stage_order = timeline._stage_order_codes(h["stage"], crm.playbook)
        if slip_cache is not None:  # the deal row of each slip-model row, for the segment as a snapshot knows it
            slip_cache["_row"] = _first_positions(keys, slip_cache["opportunity_id"])
        self.act_pos = self.act_known = None
        if self.lean.has("activities"):  # each activity's deal row, for the activity features
            a = self.lean.activities
            self.act_pos = _first_positions(keys, a["opportunity_id"])
            self.act_known = a["created_at"].fillna(a["due_at"]).to_numpy(dtype="datetime64[ns]")
            # the activities grouped by deal (table order within a deal): deal i's are act_by_deal[b[i]:b[i + 1]]
            on_deal = np.flatnonzero(self.act_pos >= 0)
            self.act_by_deal = on_deal[np.argsort(self.act_pos[on_deal], kind="stable")]
            self.act_bounds = np.append(0, np.cumsum(np.bincount(self.act_pos[on_deal], minlength=self.n)))

    def at(self, d: pd.Timestamp) -> tuple[CRM, _Positions | None]:
        """The lean company as known at the end of day ``d``, and where its rows sit in the full snapshot.

        The snapshot holds no field history (the methods read none: it only serves to rewind
        the deals). With positions, its activities are cut here, and only those of its open
        deals are kept (the only ones the win model's features read): a tenth of the rows.
        """
        day = pd.Timestamp(d).normalize()
        if day > self.lean.as_of_date:  # (as_of's error)
            return self.lean.as_of(d), None
        if not self.by_position:
            return self.lean._as_of(day, skip=("field_history",)), None
        cut_acts = self.act_pos is not None
        snap = self.lean._as_of(day, skip=("field_history", "activities") if cut_acts else ("field_history",))
        cutoff = (day + pd.Timedelta(days=1)).to_datetime64()
        opps = np.flatnonzero(self.created < cutoff)  # as CRM.as_of: opportunities created before the cutoff
        known = self.changed < cutoff  # history rows dated before it
        hist = self.history_codes[known]
        if len(opps) != len(snap.opportunities) or len(hist) != len(snap.history):  # pragma: no cover - defensive
            return self.lean._as_of(day, skip=("field_history",)), None
        row = np.full(self.n + 1, -1, dtype=np.int64)
        row[opps] = np.arange(len(opps))  # full-snapshot row -> snapshot row (n, an unknown deal: -1)
        if self.ids_known:  # each history row's deal row, for the win model's features and the stage reach
            snap._cached(("deal_pos", "history"), lambda: row[hist])
        snap._cached(("stage_order", "history"), lambda: self.stage_order[known])  # (stage_probabilities)
        if cut_acts:  # as CRM.as_of: activities known (created, else due) before the cutoff, of the open deals
            keep = self._open_deals_activities(opps[snap._open_mask()], cutoff)
            snap._put_table("activities", _activities_before(self.lean.activities, keep, pd.Timestamp(cutoff)))
            snap._cached(("deal_pos", "activities"), lambda: row[self.act_pos[keep]])
        return snap, _Positions(opps, hist, self.n)

    def _open_deals_activities(self, deals: np.ndarray, cutoff: np.datetime64) -> np.ndarray:
        """Rows of the lean activities of ``deals`` (full-snapshot rows) known before ``cutoff``, in table order.

        Read deal by deal (:attr:`act_by_deal`): a few open deals' rows instead of a pass over all.
        """
        lo, n = self.act_bounds[deals], np.diff(self.act_bounds)[deals]
        first = np.cumsum(n) - n  # where each deal's rows start among the picked ones
        picked = self.act_by_deal[np.repeat(lo - first, n) + np.arange(int(n.sum()))]
        return np.sort(picked[self.act_known[picked] < cutoff])


class _Context:
    """Per-checkpoint pieces shared by the methods (computed on first use).

    ``is_open``: mask of the snapshot's open opportunities, once per checkpoint (the rewind
    knows it without comparing text: a million statuses cost tens of milliseconds).
    """

    def __init__(
        self,
        snap: CRM,
        per: Period,
        slip_cache: pd.DataFrame | None,
        n_periods: int,
        pos: _Positions | None = None,
        slip_models: dict[str, tuple[SlipModel, list[str]]] | None = None,
        key: str = "",
    ) -> None:
        self.snap, self.per, self.slip_cache, self.n_periods, self.pos = snap, per, slip_cache, n_periods, pos
        self.slip_models = {} if slip_models is None else slip_models
        self.key = key
        self.is_open = snap._open_mask()
        self._p_in: np.ndarray | None = None
        self._new: NewDeals | None = None
        self._open: pd.DataFrame | None = None
        self.notes: list[str] = []
        self.slip_fits = 0

    def slip_model(self) -> SlipModel:
        """The slip model of this checkpoint's key (period or checkpoint), fitted on first use."""
        if self.key not in self.slip_models:
            snap, pos, rows = self.snap, self.pos, self.slip_cache
            model = SlipModel(self.per.freq)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FallbackWarning)
                if pos is None or rows is None:
                    sm = model.fit(snap, rows=rows)
                else:  # what the snapshot knows, with segments read by row position
                    rows = rows[_known_rows(rows, snap.as_of_date, model.lookback)]
                    seg = np.full(pos.n + 1, pd.NA, dtype=object)
                    seg[pos.opps] = np.asarray(snap.opportunities["segment"], dtype=object)
                    r = rows["_row"].to_numpy()
                    rows = rows.assign(segment=pd.array(seg[np.where(r < 0, pos.n, r)], dtype="string"))
                    sm = model.fit(snap, rows=rows, known=True)
            self.slip_fits += 1
            self.slip_models[self.key] = (sm, [str(w.message).split(";")[0] for w in caught])
        sm, notes = self.slip_models[self.key]
        self.notes += notes
        return sm

    @property
    def p_in(self) -> np.ndarray:
        if self._p_in is None:
            snap, pos = self.snap, self.pos
            o = self.open_deals
            sm = self.slip_model()
            if pos is None:
                state = _open_deal_state(snap, o)
                segment = _segments(snap, o["opportunity_id"]).to_numpy()
            else:
                state = _open_deal_state(snap, o, codes=(pos.history_codes, pos.opps[self.is_open], pos.n + 1))
                segment = pd.array(o["segment"], dtype="string").to_numpy()
            deals = _slip_deals(o, state, segment)
            self._p_in = _p_in_period_of(deals, snap, self.per, model=sm)["p_in_period"].to_numpy(float)
        return self._p_in

    @property
    def open_deals(self) -> pd.DataFrame:
        """``snap.open_deals``, filtered once per checkpoint."""
        if self._open is None:
            self._open = self.snap.opportunities[self.is_open]
        return self._open

    @property
    def new(self) -> NewDeals:
        if self._new is None:
            self._new = new_deal_run_rate(self.snap, self.per, n_periods=self.n_periods)
        return self._new


def _dist(ctx: _Context, p: np.ndarray, new: NewDeals, cw: float, seed: int, n_sims: int, note: str = "") -> dict:
    a = ctx.open_deals["amount"].to_numpy(float)
    tot = simulate_bookings(a, p, new, n_sims=n_sims, seed=seed)
    s = summarise(tot, cw)
    expected = cw + float((a * p).sum()) + new.expected  # exact mean (the draws' mean has sampling noise)
    return {
        "forecast": expected,
        "p10": s["p10"],
        "p50": s["p50"],
        "p90": s["p90"],
        "note": "; ".join(dict.fromkeys([*ctx.notes, note] if note else ctx.notes)),
    }


def _one(
    m: str,
    ctx: _Context,
    cw: float,
    *,
    crm: CRM,
    per: Period,
    d: pd.Timestamp,
    truth: Any,
    win_cache: pd.DataFrame | None,
    models: dict,
    refit: str,
    seed: int,
    n_sims: int,
    fits: dict[str, int],
) -> dict:
    snap = ctx.snap
    nan = {"forecast": np.nan, "p10": np.nan, "p50": np.nan, "p90": np.nan, "note": ""}
    if m == "crm":
        p = win_probabilities(snap, "crm")
        p = p * per.contains(ctx.open_deals["close_date"]).fillna(False).to_numpy(dtype=float)
        return _dist(ctx, p, NewDeals.none(), cw, seed, n_sims)
    if m == "stage":
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always", FallbackWarning)
            p = win_probabilities(snap, "stage")
        return _dist(ctx, p * ctx.p_in, ctx.new, cw, seed, n_sims)
    if m == "model":
        key = per.label if refit == "period" else f"{per.label}@{d.date()}"
        note = ""
        if key not in models:  # fitted once per period (or checkpoint), then reused
            fits["win_model"] += 1
            try:
                models[key] = fit_win_model(snap, rows=win_cache)
            except InsufficientDataError as exc:
                models[key] = None
                note = f"win model not fitted ({str(exc).split(':')[0]}); stage probabilities used"
        model = models[key]
        if model is None:
            note = note or "win model not fitted; stage probabilities used"
            with warnings.catch_warnings(record=True):
                warnings.simplefilter("always", FallbackWarning)
                p = win_probabilities(snap, "stage")
        else:
            p = win_probabilities(snap, "model", model=model)
        return _dist(ctx, p * ctx.p_in, ctx.new, cw, seed, n_sims, note)
    if m == "oracle":
        o = ctx.open_deals
        if len(o) == 0:
            return _dist(ctx, np.zeros(0), ctx.new, cw, seed, n_sims)
        p = np.nan_to_num(truth.p_win_by(o["opportunity_id"].to_numpy(object), d + pd.Timedelta(days=1), per.last_day))
        return _dist(ctx, p, ctx.new, cw, seed, n_sims)
    if m in ("commit", "best_case"):
        o = ctx.open_deals
        dated = per.contains(o["close_date"]).fillna(False).to_numpy(dtype=bool)
        r = rollup(cw, o["amount"].to_numpy(float)[dated], _rep_category(o["forecast_category"])[dated])
        note = "" if o["forecast_category"].notna().any() else "no open deal has a forecast category: nothing rolls up"
        return {**nan, "forecast": r[m], "note": note if len(o) else ""}
    if m in ("call_commit", "call_best_case"):
        m = m.removeprefix("call_")
        fc = snap.forecast_calls
        fc = fc[(fc["period"] == per.label).fillna(False).to_numpy(dtype=bool)]
        if fc.empty:
            return {**nan, "note": f"no forecast call for {per.label} submitted by {d.date()}"}
        last = fc.sort_values("submitted_at", kind="stable").groupby("owner", sort=False).tail(1)
        return {**nan, "forecast": float(last[m].sum())}
    if m == "run_rate":
        return {**nan, **_run_rate(snap, per, ctx.n_periods, cw)}
    raise ParameterError(f"unknown method {m!r}")  # pragma: no cover - checked upstream


def _run_rate(snap: CRM, per: Period, n_periods: int, cw: float) -> dict:
    """Won so far + mean of what past periods booked from the same point to their end."""
    o = snap.opportunities
    won = _won_rows(snap)
    closed_at, amount = o["closed_at"].iloc[won], o["amount"].iloc[won]
    elapsed = snap.as_of_date + pd.Timedelta(days=1) - per.start
    first = o["created_at"].min()
    vals, p = [], per
    for _ in range(n_periods):
        p = p.shift(-1, snap.playbook)
        if pd.isna(first) or p.start < first.normalize():
            break
        rest = (closed_at >= p.start + elapsed) & (closed_at < p.end)
        vals.append(float(amount[rest.fillna(False).to_numpy(dtype=bool)].sum()))
    if not vals:
        return {"forecast": cw, "note": "no completed past period: run-rate adds zero"}
    return {"forecast": cw + float(np.mean(vals))}
