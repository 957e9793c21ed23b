"""The period forecast: commit and best case (reps' and model's), the bookings distribution,
the per-deal table, the target and the reps' latest calls.

``forecast(crm, period="2026-Q4")`` works as of ``crm.as_of_date`` (rewind with
``crm.as_of(d)`` first for another date); the period must contain that date.

Per open deal, the probability of being booked in the period is
``p_win x p_in_period``:

* ``method="model"`` (default): ``p_win`` from the calibrated
  :class:`~forecastkit.probability.model.WinModel` fitted on the snapshot (training
  as-of dates on a fixed 30-day grid ending at least 180 days before the snapshot
  date, two years of them); ``p_in_period`` from the slip model
  (:mod:`~forecastkit.forecast.slips`); plus the not-yet-created deals
  (:func:`~forecastkit.forecast.montecarlo.new_deal_run_rate`).
* ``method="stage"``: ``p_win`` = the stage's historical win rate
  (:func:`~forecastkit.probability.stages.stage_probabilities`, last 730 days), same slips
  and new deals.
* ``method="crm"``: what a CRM's weighted pipeline shows: the typed-in probability (the
  playbook's stage default when empty) for deals whose close date falls in the period,
  0 for the others, no new deals.

The distribution is simulated once, per owner (the rows of the calls table), and the
company (or scope) total is the sum over owners plus a column for what belongs to no
listed owner; the calls' company row is therefore the same draws as the distribution.
Up to 2,000 live deals (``exact_limit`` of
:func:`~forecastkit.forecast.montecarlo.simulate_bookings`) this is draw for draw the
ungrouped simulation (data/sample: identical figures); beyond, each owner's sum of the
remaining small deals is drawn from a gamma with its mean and variance
(:func:`~forecastkit.forecast.montecarlo.simulate_bookings`): on the 100k benchmark
company the simulated expected bookings are 8,968,705 against the exact 8,968,079
(0.13 standard errors).

Documented zeros: an empty pipeline, or a snapshot before any deal, gives zero
bookings to come (a note says why); a period without a ``bookings`` target gives NaN
quota, gap, coverage and probability of reaching it (a note names the missing target).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError, PeriodError
from forecastkit.forecast.categories import model_category, rollup
from forecastkit.forecast.montecarlo import NewDeals, new_deal_run_rate, simulate_bookings, summarise
from forecastkit.forecast.slips import SlipModel, p_in_period
from forecastkit.periods import Period, parse_period

__all__ = ["Forecast", "forecast", "Method", "fit_win_model", "win_probabilities", "DEAL_COLUMNS"]

Method = Literal["model", "stage", "crm"]
_METHODS = ("model", "stage", "crm")
_EPOCH = pd.Timestamp("2000-01-03")
_WIN_SETTLE_DAYS = 180
_WIN_SPAN_DAYS = 720
_WIN_STEP_DAYS = 30
#: Columns of :attr:`Forecast.deals`.
DEAL_COLUMNS = (
    "opportunity_id",
    "name",
    "owner",
    "team",
    "stage",
    "amount",
    "close_date",
    "rep_category",
    "model_category",
    "p_win",
    "p_in_period",
    "p_win_in_period",
    "expected_amount",
    "pushes",
    "days_to_close",
    "in_period",
    "disagree",
)


@dataclass(frozen=True)
class Forecast:
    """The forecast of one period as of one date (see :func:`forecast` for the columns).

    Attributes
    ----------
    period : Period
    as_of : Timestamp
    method : str
    summary : DataFrame
        One row per view (``rep``, ``model``): ``view, closed_won, commit, best_case,
        pipeline, omitted, deals``. Cumulative: best case includes commit (Salesforce).
    distribution : DataFrame
        One row: ``closed_won, open_expected, new_deals_expected, expected, p10, p50,
        p90, std, n_sims, seed``.
    deals : DataFrame
        One row per open deal in scope, largest expected amount first (:data:`DEAL_COLUMNS`).
    target : DataFrame
        One row: ``quota, closed_won, remaining_quota, expected, gap, qualified_pipeline,
        coverage, coverage_remaining, p_reach_quota``.
    calls : DataFrame
        ``level`` (owner / team / company), ``name, team, submitted_at, call_commit,
        call_best_case, closed_won, rep_commit, rep_best_case, expected, p10, p90,
        call_minus_expected``.
    notes : tuple of str
        Fallbacks and documented zeros.
    model : WinModel or None
        The win model behind ``p_win`` (given or fitted; None for ``stage`` and ``crm``, or
        when the model could not be fitted and stage probabilities were used).
    """

    period: Period
    as_of: pd.Timestamp
    method: str
    summary: pd.DataFrame
    distribution: pd.DataFrame
    deals: pd.DataFrame
    target: pd.DataFrame
    calls: pd.DataFrame
    notes: tuple[str, ...] = field(default=())
    model: object = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        """The headline in one row: ``period, as_of, method, closed_won, rep_commit, rep_best_case,
        model_commit, model_best_case, expected, p10, p50, p90, quota, gap, coverage, p_reach_quota``."""
        s = self.summary.set_index("view")
        d = self.distribution.iloc[0]
        t = self.target.iloc[0]
        return pd.DataFrame(
            [
                {
                    "period": self.period.label,
                    "as_of": self.as_of,
                    "method": self.method,
                    "closed_won": d["closed_won"],
                    "rep_commit": s.loc["rep", "commit"],
                    "rep_best_case": s.loc["rep", "best_case"],
                    "model_commit": s.loc["model", "commit"],
                    "model_best_case": s.loc["model", "best_case"],
                    "expected": d["expected"],
                    "p10": d["p10"],
                    "p50": d["p50"],
                    "p90": d["p90"],
                    "quota": t["quota"],
                    "gap": t["gap"],
                    "coverage": t["coverage"],
                    "p_reach_quota": t["p_reach_quota"],
                }
            ]
        )

    def _repr_html_(self) -> str:
        head = f"<p><b>Forecast {self.period.label}</b> as of {self.as_of.date()} (method: {self.method})</p>"
        notes = "".join(f"<li>{n}</li>" for n in self.notes)
        parts = [
            head,
            self.summary.to_html(index=False, float_format="{:,.0f}".format),
            self.distribution.to_html(index=False, float_format="{:,.0f}".format),
            self.target.to_html(index=False, float_format="{:,.2f}".format),
        ]
        if notes:
            parts.append(f"<ul>{notes}</ul>")
        return "".join(parts)


# --------------------------------------------------------------------------- probabilities
def _win_dates(as_of: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Training as-of dates of the win model: a fixed 30-day grid (the same whatever the snapshot)."""
    last = as_of - pd.Timedelta(days=_WIN_SETTLE_DAYS)
    k = int(np.floor((last - _EPOCH).days / _WIN_STEP_DAYS))
    end = _EPOCH + pd.Timedelta(days=k * _WIN_STEP_DAYS)
    return end - pd.Timedelta(days=_WIN_SPAN_DAYS), end


def fit_win_model(crm: CRM, rows: pd.DataFrame | None = None, **params: object):
    """Fit the calibrated :class:`WinModel` used by ``method="model"`` on ``crm``.

    Training as-of dates: every 30 days on a fixed grid, the last one at least 180 days
    before the snapshot date, over 720 days. ``rows`` may be :func:`training_rows` of a
    later snapshot covering those dates: only the rows ``crm`` knows (as-of dates in its
    window, deals closed by its date) are used, which gives the same model as
    recomputing them from ``crm``.

    Raises
    ------
    InsufficientDataError
        Too little history (see :class:`WinModel`).
    """
    from forecastkit.probability.features import training_rows
    from forecastkit.probability.model import WinModel

    start, end = _win_dates(crm.as_of_date)
    first = crm.opportunities["created_at"].min()
    if pd.isna(first) or end < first:
        raise InsufficientDataError(
            f"the win model needs history ending {_WIN_SETTLE_DAYS} days before the snapshot "
            f"({crm.as_of_date.date()}); the CRM starts {'nowhere' if pd.isna(first) else first.date()}"
        )
    start = max(start, end - pd.Timedelta(days=_WIN_STEP_DAYS * int((end - first).days // _WIN_STEP_DAYS)))
    model = WinModel(freq=f"{_WIN_STEP_DAYS}D", **params)  # type: ignore[arg-type]
    if rows is None:
        rows = training_rows(crm, start, end, model.freq, features=model.features)
    else:
        rows = rows[_known_training_rows(crm, rows, start, end)].reset_index(drop=True)
    # one BLAS thread: small matrix products, which oversubscribed threads make many times slower
    with threadpool_limits(limits=1, user_api="blas"):
        return model.fit_rows(rows)


def _known_training_rows(crm: CRM, rows: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    """Mask of the training rows of a later snapshot that ``crm`` knows: as-of dates in ``start..end``, deals
    closed in ``crm`` (``status != "open"``, a missing text status not).

    ``rows["opportunity_id"].isin(closed ids)``, the closed mask being the snapshot's
    (``CRM.closed_deals``' own, computed once per snapshot). When the rows' distinct ids are few
    against the snapshot's deals (the training sample of a large company) and the deals' ids are
    distinct texts in order (validated snapshots), each distinct row id is found by a binary
    search instead of hashing every closed deal's id (measured: 0.4 s a fit at 1M deals).
    """
    from forecastkit.data.timeline import _strictly_increasing, _text_values

    o = crm.opportunities
    closed = crm._closed_mask()
    when = ((rows["as_of"] >= start) & (rows["as_of"] <= end)).to_numpy(dtype=bool)
    ids = rows["opportunity_id"]
    deal_ids = _text_values(o["opportunity_id"])
    if 0 < len(ids) < len(deal_ids):
        codes, uniques = pd.factorize(_text_values(ids))
        uniques = np.asarray(uniques, dtype=object)
        if (
            20 * len(uniques) < len(deal_ids)  # (a search costs about 20 comparisons, a hash look-up one)
            and (codes >= 0).all()
            and all(isinstance(v, str) for v in uniques)
            and _strictly_increasing(deal_ids)
        ):  # each distinct row id found by a binary search among the deals' ids (in order, distinct)
            at = np.minimum(np.searchsorted(deal_ids, uniques), len(deal_ids) - 1)
            known = (deal_ids[at] == uniques) & closed[at]
            return when & known[codes]
    return when & ids.isin(o["opportunity_id"][closed]).to_numpy(dtype=bool)


def win_probabilities(crm: CRM, method: Method, *, model: object = None, notes: list[str] | None = None) -> np.ndarray:
    """``p_win`` of every deal of ``crm.open_deals`` (in that order) for ``method``.

    ``method="model"`` falls back to ``"stage"`` (with a :class:`FallbackWarning`) when
    the history is too short to fit the win model. ``model``: a fitted win model, None to
    fit one on ``crm``, or the :class:`InsufficientDataError` a fit on ``crm`` already raised.
    """
    o = crm.open_deals
    if len(o) == 0:
        return np.zeros(0)
    if method == "crm":
        typed = o["probability"].astype(float)
        stages = o["stage"].dropna().unique()  # one playbook look-up per distinct stage, not per deal
        default = o["stage"].map({s: crm.playbook.crm_probability(s) for s in stages}).astype(float)
        return typed.fillna(default).fillna(0.0).to_numpy(float)
    if method == "model":
        try:
            if isinstance(model, InsufficientDataError):  # the caller's fit failed: fall back without a second try
                raise model
            m = model if model is not None else fit_win_model(crm)
            with threadpool_limits(limits=1, user_api="blas"):
                p = m.predict_proba(crm)  # type: ignore[attr-defined]
            return p["p_win"].to_numpy(float)
        except InsufficientDataError as exc:
            exc.__traceback__ = None  # the caller may keep the error: no reference cycle through this frame
            msg = f"win model not fitted ({exc}); using historical stage probabilities instead"
            warnings.warn(msg, FallbackWarning, stacklevel=3)
            if notes is not None:
                notes.append(msg)
    from forecastkit.probability.stages import stage_probabilities

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FallbackWarning)
        table = stage_probabilities(crm)
    for w in caught:
        if notes is not None:
            notes.append(str(w.message))
        warnings.warn(w.message, w.category, stacklevel=3)
    p = o["stage"].map(table.set_index("stage")["p_win"]).astype(float)
    return p.fillna(0.0).to_numpy(float)


# --------------------------------------------------------------------------- public
def forecast(
    crm: CRM,
    period: str | Period | None = None,
    method: Method = "model",
    seed: int = 0,
    owner: str | None = None,
    team: str | None = None,
    *,
    n_sims: int = 10_000,
    model: object = None,
    slip_model: SlipModel | None = None,
    n_periods: int = 4,
) -> Forecast:
    """Forecast the bookings of ``period`` as of the snapshot date.

    Parameters
    ----------
    crm : CRM
        The snapshot (``crm.as_of(d)`` to forecast as of an earlier date ``d``).
    period : str or Period, optional
        Fiscal period in the playbook's calendar (``"2026-Q4"``); it must contain the
        snapshot date. Default: the fiscal quarter of the snapshot date.
    method : {"model", "stage", "crm"}
        Where ``p_win`` comes from (see the module docstring).
    seed : int
        Seed of the Monte Carlo draws (same seed, same numbers).
    owner, team : str, optional
        Restrict to one rep's or one team's deals, target and calls (probabilities are
        still learned from the whole company).
    n_sims : int
        Monte Carlo draws.
    model : WinModel, optional
        A win model already fitted on this snapshot or an earlier one (skips fitting).
    slip_model : SlipModel, optional
        A fitted slip model (skips fitting).
    n_periods : int
        Completed periods averaged for the not-yet-created deals.

    Returns
    -------
    Forecast
        ``summary`` (view, closed_won, commit, best_case, pipeline, omitted, deals),
        ``distribution`` (closed_won, open_expected, new_deals_expected, expected, p10, p50,
        p90, std, n_sims, seed), ``deals`` (opportunity_id, name, owner, team, stage, amount,
        close_date, rep_category, model_category, p_win, p_in_period, p_win_in_period,
        expected_amount, pushes, days_to_close, in_period, disagree), ``target`` (quota,
        closed_won, remaining_quota, expected, gap, qualified_pipeline, coverage,
        coverage_remaining, p_reach_quota), ``calls`` (see :class:`Forecast`), ``notes``.

    Raises
    ------
    PeriodError
        The period does not contain the snapshot date.
    ParameterError
        Unknown method, owner or team.
    """
    if method not in _METHODS:
        raise ParameterError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")
    pb = crm.playbook
    per = _check_period(crm, period)
    scope = _scope_mask(crm, owner, team)
    notes: list[str] = []
    o = crm.opportunities
    open_all = crm.open_deals
    if len(o) == 0:
        notes.append(f"no deal was created by {crm.as_of_date.date()}: every figure is zero")
    not_fitted: InsufficientDataError | None = None
    if method == "model" and model is None and len(open_all):
        try:  # fitted here to be recorded on the Forecast; a failure falls back in win_probabilities
            model = fit_win_model(crm)
        except InsufficientDataError as exc:
            # handed on, so that the fit is not tried a second time; without its traceback, whose
            # frames hold the snapshot (kept here, it would keep them alive in a reference cycle)
            not_fitted = exc.with_traceback(None)
    # probabilities on the whole company, then the scope
    table = open_deal_table(
        crm,
        per,
        method,
        open_all,
        model=model if not_fitted is None else not_fitted,
        slip_model=slip_model,
        notes=notes,
    )
    in_scope = scope.reindex(open_all.index).to_numpy(dtype=bool) if len(open_all) else np.zeros(0, bool)
    deals = table[in_scope].reset_index(drop=True)
    if len(deals) == 0:
        notes.append("no open deal in scope: the pipeline adds nothing to come")
    sub = o[scope.to_numpy(dtype=bool)]
    won = _won_in_period(sub, per)
    closed_won = float(won["amount"].sum())
    new = NewDeals.none() if method == "crm" else new_deal_run_rate(crm, per, n_periods=n_periods, deals=sub)
    if method != "crm" and not new.periods:
        notes.append("no completed past period in the data: deals not yet created count as zero")
    # distribution: one simulation per owner (deals without an owner in a group of their own); the
    # scope's total is the sum over owners, so the calls table's owner, team and company rows add up to it
    fc, names = _latest_calls(crm, per, deals, won, owner, team)
    sims = _simulate_by_owner(deals, sub, new, names, seed=seed, n_sims=n_sims)
    totals = sims.sum(axis=1)
    quota, qnote = _quota(crm, per, owner, team)
    if qnote:
        notes.append(qnote)
    stats_ = summarise(totals, closed_won, quota)
    distribution = pd.DataFrame(
        [
            {
                "closed_won": closed_won,
                "open_expected": float(deals["expected_amount"].sum()),
                "new_deals_expected": new.expected,
                "expected": stats_["expected"],
                "p10": stats_["p10"],
                "p50": stats_["p50"],
                "p90": stats_["p90"],
                "std": stats_["std"],
                "n_sims": n_sims,
                "seed": seed,
            }
        ]
    )
    summary = _summary(deals, closed_won, pb)
    target = _target(deals, closed_won, quota, stats_, pb)
    calls = _calls(crm, deals, won, fc, names, sims[:, : len(names)], owner, team)
    deals = deals[(deals["in_period"]) | (deals["p_win_in_period"] >= pb.pipeline_threshold)]
    deals = deals.sort_values(["expected_amount", "opportunity_id"], ascending=[False, True], kind="stable")
    return Forecast(
        per,
        crm.as_of_date,
        method,
        summary,
        distribution,
        deals.reset_index(drop=True),
        target,
        calls,
        tuple(dict.fromkeys(notes)),
        model if method == "model" else None,
    )


def open_deal_table(
    crm: CRM,
    per: Period,
    method: Method,
    open_all: pd.DataFrame | None = None,
    *,
    model: object = None,
    slip_model: SlipModel | None = None,
    notes: list[str] | None = None,
) -> pd.DataFrame:
    """Every open deal of the company with its probabilities for ``per``, in ``crm.open_deals``' order.

    The forecast's deal table before it is cut to a scope and to the deals worth showing:
    ``p_win`` (:func:`win_probabilities` of ``method``), the slip model's ``p_in_period``
    and pushes (for ``"crm"``: dated in the period or not), then ``_deal_table``'s columns.
    The slip model's fallback warnings are shown and added to ``notes``, like the win model's.
    ``open_all``: ``crm.open_deals`` when the caller already has it.
    """
    notes = [] if notes is None else notes
    open_all = crm.open_deals if open_all is None else open_all
    p_win = win_probabilities(crm, method, model=model, notes=notes)
    if method == "crm":
        p_in = (per.contains(open_all["close_date"]).fillna(False)).to_numpy(dtype=float)
        pushes = _pushes(crm, open_all)
    elif len(open_all):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FallbackWarning)
            sm = slip_model if slip_model is not None else SlipModel(per.freq).fit(crm)
        for w in caught:
            notes.append(str(w.message))
            warnings.warn(w.message, w.category, stacklevel=3)
        slips = p_in_period(crm, per, model=sm)
        p_in, pushes = slips["p_in_period"].to_numpy(float), slips["pushes"].to_numpy(int)
    else:
        p_in, pushes = np.zeros(0), np.zeros(0, dtype=int)
    return _deal_table(crm, per, open_all, p_win, p_in, pushes)


# --------------------------------------------------------------------------- pieces
def _check_period(crm: CRM, period: str | Period | None) -> Period:
    from forecastkit.periods import period_of

    d = crm.as_of_date
    if period is None:
        return period_of(d, "quarter", crm.playbook)
    per = parse_period(period, crm.playbook)
    if not (per.start <= d < per.end):
        here = period_of(d, per.freq, crm.playbook).label
        if per.end <= d:
            how = (
                f"it ended before the snapshot date {d.date()}: compare forecasts and actuals with "
                f"fk.backtest(crm, periods=['{per.label}']) or rewind with crm.as_of('<date in {per.label}>')"
            )
        else:
            how = (
                f"it starts after the snapshot date {d.date()}: a forecast covers the period holding the "
                f"snapshot date ({here}); load data up to a date inside {per.label}"
            )
        raise PeriodError(f"period {per.label} ({per.start.date()} to {per.last_day.date()}) cannot be forecast: {how}")
    return per


def _scope_mask(crm: CRM, owner: str | None, team: str | None) -> pd.Series:
    o = crm.opportunities
    mask = pd.Series(True, index=o.index)
    for col, val in (("owner", owner), ("team", team)):
        if val is None:
            continue
        known = set(o[col].dropna().astype(str)) | (
            set(crm.reps[col].dropna().astype(str)) if col in crm.reps else set()
        )
        if val not in known:
            few = ", ".join(sorted(known)[:8]) or "none"
            raise ParameterError(f"{col}={val!r} is not in the data; known {col}s include: {few}")
        mask &= (o[col] == val).fillna(False).astype(bool)
    return mask


def _pushes(crm: CRM, open_deals: pd.DataFrame) -> np.ndarray:
    """Close-date pushes of each open deal (as :func:`~forecastkit.data.timeline.close_date_pushes`)."""
    from forecastkit.forecast.slips import _open_deal_state

    return _open_deal_state(crm, open_deals, days=False)["pushes"].to_numpy(int)


def _rep_category(cat: pd.Series) -> np.ndarray:
    """The rep's category of an open deal: empty counts as pipeline, "closed" on an open deal as commit."""
    c = cat.astype(object).where(cat.notna(), "pipeline")
    return c.replace({"closed": "commit"}).to_numpy(dtype=object)


def _deal_table(
    crm: CRM, per: Period, o: pd.DataFrame, p_win: np.ndarray, p_in: np.ndarray, pushes: np.ndarray
) -> pd.DataFrame:
    p = p_win * p_in
    d = pd.DataFrame(
        {
            "opportunity_id": o["opportunity_id"].to_numpy(),
            "name": o["name"].to_numpy(),
            "owner": o["owner"].to_numpy(),
            "team": o["team"].to_numpy(),
            "stage": o["stage"].to_numpy(),
            "amount": o["amount"].to_numpy(float),
            "close_date": o["close_date"].to_numpy(),
            "rep_category": _rep_category(o["forecast_category"]),
            "model_category": model_category(p, crm.playbook),
            "p_win": p_win,
            "p_in_period": p_in,
            "p_win_in_period": p,
            "expected_amount": o["amount"].to_numpy(float) * p,
            "pushes": pushes.astype(int),
            "days_to_close": ((o["close_date"] - crm.as_of_date).dt.days).to_numpy(dtype=float),
            "in_period": per.contains(o["close_date"]).fillna(False).to_numpy(dtype=bool),
        }
    )
    d["disagree"] = (d["rep_category"] != d["model_category"]).to_numpy()
    return d


def _won_in_period(o: pd.DataFrame, per: Period) -> pd.DataFrame:
    """Deals of ``o`` won with ``closed_at`` inside the period."""
    mask = (o["status"] == "won").fillna(False).to_numpy(dtype=bool) & per.contains(o["closed_at"]).fillna(
        False
    ).to_numpy(dtype=bool)
    return o[mask]


def _summary(deals: pd.DataFrame, closed_won: float, pb) -> pd.DataFrame:
    rep = deals[deals["in_period"]]
    mod = deals[deals["in_period"] | (deals["p_win_in_period"] >= pb.pipeline_threshold)]
    rows = [
        {"view": "rep", **rollup(closed_won, rep["amount"], rep["rep_category"]), "deals": len(rep)},
        {"view": "model", **rollup(closed_won, mod["amount"], mod["model_category"]), "deals": len(mod)},
    ]
    return pd.DataFrame(rows)


def _quota(crm: CRM, per: Period, owner: str | None, team: str | None) -> tuple[float, str | None]:
    """The ``bookings`` target of the scope for the period (NaN and a note when there is none)."""
    who = f"owner {owner!r}" if owner else f"team {team!r}" if team else "the company"
    if not crm.has("targets"):
        return np.nan, f"no targets table: quota, gap, coverage and P(reach quota) are NaN for {who}"
    t = crm.targets
    t = t[(t["metric"] == "bookings").fillna(False).to_numpy(dtype=bool)]
    months = [f"{m:%Y-%m}" for m in pd.date_range(per.start, per.last_day, freq="MS")]

    def pick(rows: pd.DataFrame) -> float:
        exact = rows[(rows["period"] == per.label).fillna(False).to_numpy(dtype=bool)]
        if len(exact):
            return float(exact["amount"].sum())
        monthly = rows[rows["period"].isin(months).fillna(False).to_numpy(dtype=bool)]
        if len(monthly) and set(monthly["period"]) == set(months):
            return float(monthly["amount"].sum())
        return np.nan

    rep_rows = t[t["owner"].notna().to_numpy(dtype=bool)]
    team_rows = t[t["owner"].isna().to_numpy(dtype=bool) & t["team"].notna().to_numpy(dtype=bool)]
    comp_rows = t[t["owner"].isna().to_numpy(dtype=bool) & t["team"].isna().to_numpy(dtype=bool)]
    if owner:
        q = pick(rep_rows[(rep_rows["owner"] == owner).to_numpy(dtype=bool)])
    elif team:
        q = pick(team_rows[(team_rows["team"] == team).to_numpy(dtype=bool)])
        if np.isnan(q):
            members = _team_of(crm)
            names = [r for r, tm in members.items() if tm == team]
            q = pick(rep_rows[rep_rows["owner"].isin(names).to_numpy(dtype=bool)])
    else:
        q = pick(comp_rows)
        if np.isnan(q):
            q = pick(team_rows)
        if np.isnan(q):
            q = pick(rep_rows)
    if np.isnan(q):
        return q, (
            f"no 'bookings' target for {per.label} for {who} in the targets table: quota, gap, coverage "
            "and P(reach quota) are NaN"
        )
    return q, None


def _team_of(crm: CRM) -> dict[str, str]:
    """owner -> team, from the reps table, else the owner's most frequent team on deals."""
    out: dict[str, str] = {}
    o = crm.opportunities.dropna(subset=["owner", "team"])
    if len(o):
        n = o.groupby(["owner", "team"], sort=True).size().sort_values(ascending=False, kind="stable")
        top = n[~n.index.get_level_values("owner").duplicated()]
        out.update(
            dict(
                zip(
                    top.index.get_level_values("owner").astype(str),
                    top.index.get_level_values("team").astype(str),
                    strict=True,
                )
            )
        )
    r = crm.reps.dropna(subset=["owner", "team"])
    out.update(dict(zip(r["owner"].astype(str), r["team"].astype(str), strict=True)))
    return out


def _target(deals: pd.DataFrame, closed_won: float, quota: float, stats_: dict, pb) -> pd.DataFrame:
    qualified_from = 1 if len(pb.stages) > 1 else 0
    order = deals["stage"].map({s: i for i, s in enumerate(pb.stage_names)})
    qp = float(deals.loc[deals["in_period"] & (order >= qualified_from), "amount"].sum())
    remaining = max(quota - closed_won, 0.0) if np.isfinite(quota) else np.nan
    return pd.DataFrame(
        [
            {
                "quota": quota,
                "closed_won": closed_won,
                "remaining_quota": remaining,
                "expected": stats_["expected"],
                "gap": quota - stats_["expected"],
                "qualified_pipeline": qp,
                "coverage": qp / quota if np.isfinite(quota) and quota > 0 else np.nan,
                "coverage_remaining": qp / remaining if np.isfinite(remaining) and remaining > 0 else np.nan,
                "p_reach_quota": stats_["p_reach_quota"],
            }
        ]
    )


_CALL_COLUMNS = [
    "level",
    "name",
    "team",
    "submitted_at",
    "call_commit",
    "call_best_case",
    "closed_won",
    "rep_commit",
    "rep_best_case",
    "expected",
    "p10",
    "p90",
    "call_minus_expected",
]


def _latest_calls(
    crm: CRM, per: Period, deals: pd.DataFrame, won: pd.DataFrame, owner: str | None, team: str | None
) -> tuple[pd.DataFrame, list[str]]:
    """The latest call per rep for the period (in scope) and the owners listed in the calls table."""
    fc = crm.forecast_calls
    fc = fc[(fc["period"] == per.label).fillna(False).to_numpy(dtype=bool)]
    fc = fc.sort_values("submitted_at", kind="stable").groupby("owner", sort=False).tail(1)
    if owner:
        fc = fc[(fc["owner"] == owner).to_numpy(dtype=bool)]
    if team:
        fc = fc[fc["owner"].map(_team_of(crm)).eq(team).to_numpy(dtype=bool)]
    names = sorted(
        set(fc["owner"].astype(str)) | set(deals["owner"].dropna().astype(str)) | set(won["owner"].dropna().astype(str))
    )
    return fc, names


def _simulate_by_owner(
    deals: pd.DataFrame, sub: pd.DataFrame, new: NewDeals, names: list[str], *, seed: int, n_sims: int
) -> np.ndarray:
    """Simulated bookings to come per owner: shape ``(n_sims, len(names) + 1)`` or ``(n_sims, len(names))``.

    Column ``j < len(names)`` is owner ``names[j]``; a last column, only when there are any,
    holds the deals (and not-yet-created deals) whose owner is not in ``names`` (no owner),
    else the shape is ``(n_sims, len(names))``. The not-yet-created
    deals term is split by the owner of the deals behind its pooled amounts
    (:func:`simulate_bookings` with ``new_groups``): a sum of independent compound Poisson
    terms with the same total rate and pool, so the row sums have the distribution of the
    ungrouped simulation.
    """
    code = {n: i for i, n in enumerate(names)}
    other = len(names)
    g = deals["owner"].map(code).fillna(other).astype(int).to_numpy()
    if new.rows is not None and len(new.rows) == len(new.amounts):
        new_codes = sub["owner"].iloc[new.rows].map(code).fillna(other).astype(int).to_numpy()
    else:  # pooled amounts without their deals: all in the last column
        new_codes = np.full(len(new.amounts), other, dtype=np.int64)
    return simulate_bookings(
        deals["amount"].to_numpy(float),
        deals["p_win_in_period"].to_numpy(float),
        new,
        n_sims=n_sims,
        seed=seed,
        groups=g,
        n_groups=other + int((g == other).any() or (new_codes == other).any()),
        new_groups=new_codes,
    )


def _calls(
    crm: CRM,
    deals: pd.DataFrame,
    won: pd.DataFrame,
    fc: pd.DataFrame,
    names: list[str],
    sims: np.ndarray,
    owner: str | None,
    team: str | None,
) -> pd.DataFrame:
    """Latest call per rep for the period next to the model, per rep, team and for the scope.

    ``sims`` are the simulated bookings to come per owner of ``names`` (:func:`_simulate_by_owner`).
    """
    if not names:
        return pd.DataFrame(columns=_CALL_COLUMNS)
    teams = _team_of(crm)
    cw = won.groupby("owner")["amount"].sum().reindex(names).fillna(0.0).to_numpy()
    total = sims + cw[None, :]
    q10, q90 = np.quantile(total, [0.1, 0.9], axis=0)  # one partial sort for both
    rep_in = deals[deals["in_period"]]
    cat_sum = rep_in.groupby(["owner", "rep_category"])["amount"].sum().unstack(fill_value=0.0)
    cat_sum = cat_sum.reindex(index=names, columns=["commit", "best_case"], fill_value=0.0)
    call = fc.set_index("owner")
    rows = pd.DataFrame(
        {
            "level": "owner",
            "name": names,
            "team": [teams.get(n) for n in names],
            "submitted_at": call["submitted_at"].reindex(names).to_numpy(),
            "call_commit": call["commit"].reindex(names).to_numpy(float),
            "call_best_case": call["best_case"].reindex(names).to_numpy(float),
            "closed_won": cw,
            "rep_commit": cw + cat_sum["commit"].to_numpy(),
            "rep_best_case": cw + cat_sum["commit"].to_numpy() + cat_sum["best_case"].to_numpy(),
            "expected": total.mean(axis=0),
            "p10": q10,
            "p90": q90,
        }
    )
    # teams and the whole scope: sums of the calls, quantiles of the summed draws; each sum is
    # numpy's over the scope's reps in order (what Series.sum gives), read from arrays once
    tcode = rows["team"].fillna("(no team)").to_numpy(dtype=object)
    levels = [("team", t, tcode == t) for t in sorted(set(tcode))] if not (owner or team) else []
    levels.append(("company" if not (owner or team) else "scope", owner or team or "all", np.ones(len(names), bool)))
    col = {
        c: rows[c].to_numpy(float)
        for c in ("call_commit", "call_best_case", "closed_won", "rep_commit", "rep_best_case")
    }
    called = ~np.isnan(col["call_commit"])
    sub_at = rows["submitted_at"].to_numpy(dtype="datetime64[ns]")
    agg = []
    for lev, name, m in levels:
        tot = total[:, m].sum(axis=1)
        q = np.quantile(tot, [0.1, 0.9])
        any_call = bool(called[m].any())
        at = sub_at[m]
        at = at[~np.isnat(at)]
        agg.append(
            {
                "level": lev,
                "name": name,
                "team": name if lev == "team" else None,
                "submitted_at": at.max() if len(at) else np.datetime64("NaT", "ns"),
                "call_commit": np.nansum(col["call_commit"][m]) if any_call else np.nan,
                "call_best_case": np.nansum(col["call_best_case"][m]) if any_call else np.nan,
                "closed_won": col["closed_won"][m].sum(),
                "rep_commit": col["rep_commit"][m].sum(),
                "rep_best_case": col["rep_best_case"][m].sum(),
                "expected": tot.mean(),
                "p10": q[0],
                "p90": q[1],
            }
        )
    out = [rows, pd.DataFrame(agg)]
    res = pd.concat(out, ignore_index=True)
    res["call_minus_expected"] = res["call_commit"] - res["expected"]
    return res[_CALL_COLUMNS]
