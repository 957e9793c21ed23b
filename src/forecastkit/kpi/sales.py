"""Sales KPIs: win rate, conversion by stage, deal size, velocity, coverage, weighted and new pipeline.

Each function takes a CRM snapshot, ``period`` and ``by`` (see below) and returns a
tidy frame with one row per group and period: the ``by`` columns, ``period`` (a
label such as ``2026-Q4``, or ``all``), then the KPI columns.

``period``: ``None`` = the whole history (``period == "all"``); a fiscal period such
as ``"2026-Q4"`` = that period only; a frequency (``"month"``, ``"quarter"``,
``"half"``, ``"year"``) = one row per period. ``by``: ``None`` (company), ``"owner"``,
``"team"``, ``"business_unit"``, ``"segment"``, ``"source"``, ``"product"`` or a list.

Which date puts a deal in a period (stated once here, in each docstring too):

* win rate, deal size, velocity: the date the deal closed (``closed_at``);
* conversion and new pipeline: the date the deal was created (a cohort);
* weighted pipeline and coverage: the deal's expected close date.

Forecast accuracy is not here: it is :func:`forecastkit.forecast.accuracy.forecast_accuracy`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import deal_progress, stages_reached
from forecastkit.errors import ParameterError
from forecastkit.kpi._common import (
    ALL,
    By,
    _assign_period,
    _by_list,
    _current_period,
    _days,
    _finish,
    _group,
    _merge,
    _period_list,
    _resolve_period,
    _safe_div,
    _target_amounts,
    _with_groups,
)
from forecastkit.periods import Freq, Period, parse_period
from forecastkit.playbook import LOST, WON

__all__ = [
    "win_rate",
    "conversion",
    "deal_size",
    "velocity",
    "pipeline_coverage",
    "weighted_pipeline",
    "new_pipeline",
    "historical_stage_win_rates",
    "win_probabilities",
]

PeriodArg = str | Period | Freq | None
ByArg = By | Sequence[By] | None
ProbabilitiesArg = Literal["history", "crm"] | pd.Series | pd.DataFrame
# stage win rates per snapshot (a snapshot's tables never change): dashboards call it once per rep
_RATES: weakref.WeakKeyDictionary[CRM, tuple[tuple[int, float], pd.Series]] = weakref.WeakKeyDictionary()


def _closed(crm: CRM, by: list[str]) -> pd.DataFrame:
    o = crm.opportunities
    c = o[o["status"].isin((WON, LOST))]
    c = _with_groups(c, crm, by, table="opportunities")
    when = c["closed_at"].fillna(c["close_date"])
    return c.assign(_closed_at=when)


def win_rate(crm: CRM, period: PeriodArg = None, by: ByArg = None) -> pd.DataFrame:
    """Deals won / deals closed (won + lost), over the deals closed in each period.

    A deal belongs to the period of its ``closed_at`` date (``close_date`` when
    ``closed_at`` is empty). The interval is Wilson's 95% score interval.

    Returns
    -------
    DataFrame
        ``<by>..., period, won, lost, closed, win_rate, win_rate_low, win_rate_high,
        won_amount, closed_amount, value_win_rate`` (won amount / closed amount).
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    c = _closed(crm, b)
    c = _assign_period(c, c["_closed_at"], spec, crm.playbook)
    is_won = c["status"] == WON
    c = c.assign(_won=is_won.astype(int), _lost=(~is_won).astype(int), _won_amt=c["amount"].where(is_won, 0.0))
    g = _group(c, b).agg(
        won=("_won", "sum"), lost=("_lost", "sum"), won_amount=("_won_amt", "sum"), closed_amount=("amount", "sum")
    )
    g["closed"] = g["won"] + g["lost"]
    g["win_rate"] = _safe_div(g["won"], g["closed"])
    lo, hi = proportion_confint(g["won"].to_numpy(), np.maximum(g["closed"].to_numpy(), 1), alpha=0.05, method="wilson")
    g["win_rate_low"] = np.where(g["closed"] > 0, lo, np.nan)
    g["win_rate_high"] = np.where(g["closed"] > 0, hi, np.nan)
    g["value_win_rate"] = _safe_div(g["won_amount"], g["closed_amount"])
    cols = [
        "won",
        "lost",
        "closed",
        "win_rate",
        "win_rate_low",
        "win_rate_high",
        "won_amount",
        "closed_amount",
        "value_win_rate",
    ]
    return _finish(g, b, cols)


def conversion(crm: CRM, period: PeriodArg = None, by: ByArg = None) -> pd.DataFrame:
    """Conversion by stage: reached stage k -> reached k+1, and reached k -> won.

    Deals are counted by creation cohort (the period of ``created_at``) with the
    shared counting rule of :func:`forecastkit.data.timeline.stages_reached`. A deal
    still open in stage k has not decided yet whether it moves on: it is left out
    of the next-stage denominator and counted in ``undecided``; open deals are left
    out of the to-won rate (``won / (won + lost)``). For the last open stage, "k+1"
    is won.

    Returns
    -------
    DataFrame
        ``<by>..., period, stage, stage_order, reached, advanced, undecided,
        conversion_next`` (advanced / (reached - undecided)), ``won, lost,
        conversion_won`` (won / (won + lost)).
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    reached = stages_reached(crm)
    prog = deal_progress(crm).set_index("opportunity_id")
    o = _with_groups(crm.opportunities, crm, b, table="opportunities").set_index("opportunity_id")
    r = reached.join(o[[*b, "created_at"]], on="opportunity_id")
    r["_max"] = r["opportunity_id"].map(prog["max_order"]).to_numpy()
    r = _assign_period(r, r["created_at"], spec, crm.playbook)
    is_open = r["status"] == "open"
    r = r.assign(
        _adv=(r["_max"] > r["stage_order"]).astype(int),
        _und=(is_open & (r["_max"] <= r["stage_order"])).astype(int),
        _won=(r["status"] == WON).astype(int),
        _lost=(r["status"] == LOST).astype(int),
        _one=1,
    )
    keys = [*b, "_pcode", "period", "stage_order", "stage"]
    g = r.groupby(keys, dropna=False, sort=True, observed=True).agg(
        reached=("_one", "sum"),
        advanced=("_adv", "sum"),
        undecided=("_und", "sum"),
        won=("_won", "sum"),
        lost=("_lost", "sum"),
    )
    g["conversion_next"] = _safe_div(g["advanced"], g["reached"] - g["undecided"])
    g["conversion_won"] = _safe_div(g["won"], g["won"] + g["lost"])
    g = g.reset_index().sort_values([*b, "_pcode", "stage_order"], kind="stable")
    cols = [
        "stage",
        "stage_order",
        "reached",
        "advanced",
        "undecided",
        "conversion_next",
        "won",
        "lost",
        "conversion_won",
    ]
    out = g[[*b, "period", *cols]].reset_index(drop=True)
    out["stage_order"] = out["stage_order"].astype(int)
    return out


def deal_size(crm: CRM, period: PeriodArg = None, by: ByArg = None) -> pd.DataFrame:
    """Average deal size: won amount / number of won deals, over deals won in the period.

    Returns
    -------
    DataFrame
        ``<by>..., period, won_deals, won_amount, avg_deal_size, median_deal_size``.
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    c = _closed(crm, b)
    w = c[c["status"] == WON]
    w = _assign_period(w, w["_closed_at"], spec, crm.playbook)
    g = _group(w, b)["amount"].agg(won_deals="count", won_amount="sum", median_deal_size="median")
    g["avg_deal_size"] = _safe_div(g["won_amount"], g["won_deals"])
    return _finish(g, b, ["won_deals", "won_amount", "avg_deal_size", "median_deal_size"])


def velocity(crm: CRM, period: PeriodArg = None, by: ByArg = None) -> pd.DataFrame:
    """Sales velocity: (# opportunities x win rate x average deal size) / cycle days = revenue per day.

    * ``opportunities``: deals open at the end of the period (at the snapshot date
      for ``period=None`` or a period not over yet);
    * ``win_rate`` and ``avg_deal_size``: deals closed / won in the period;
    * ``cycle_days``: mean days from creation to close of the deals won in the period
      (the textbook formula; see :func:`forecastkit.kpi.cycle.sales_cycle` for
      censoring-aware cycle figures).

    Returns
    -------
    DataFrame
        ``<by>..., period, opportunities, win_rate, avg_deal_size, cycle_days, velocity_per_day``.
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    c = _closed(crm, b)
    c = c.assign(_cycle=_days(c["created_at"], c["_closed_at"]))
    c = _assign_period(c, c["_closed_at"], spec, crm.playbook)
    is_won = c["status"] == WON
    c = c.assign(_won=is_won.astype(int), _won_amt=c["amount"].where(is_won), _won_cycle=c["_cycle"].where(is_won))
    g = _group(c, b).agg(
        closed=("_won", "size"),
        won=("_won", "sum"),
        avg_deal_size=("_won_amt", "mean"),
        cycle_days=("_won_cycle", "mean"),
    )
    g["win_rate"] = _safe_div(g["won"], g["closed"])
    g = g.reset_index()
    # open deals at the end of each period
    o = _with_groups(crm.opportunities, crm, b, table="opportunities")
    cutoff_snap = crm.as_of_date + pd.Timedelta(days=1)
    if spec.mode == "all":
        ends = {ALL: cutoff_snap}
    else:
        ends = {}
        for lab in g["period"].unique():
            ends[lab] = min(parse_period(lab, crm.playbook).end, cutoff_snap)
    counts = []
    closed_at = o["closed_at"].where(o["status"] != "open")
    for lab, cut in ends.items():
        is_open_then = (o["created_at"] < cut) & ~(closed_at < cut)
        n = o[is_open_then].groupby(b, dropna=False).size() if b else pd.Series([int(is_open_then.sum())])
        n = n.rename("opportunities").reset_index()
        n["period"] = lab
        counts.append(n.drop(columns=["index"], errors="ignore"))
    n = pd.concat(counts, ignore_index=True) if counts else pd.DataFrame(columns=[*b, "period", "opportunities"])
    g = _merge(g, n, on=[*b, "period"], how="left")
    g["opportunities"] = g["opportunities"].fillna(0).astype(int)
    g["velocity_per_day"] = _safe_div(g["opportunities"] * g["win_rate"] * g["avg_deal_size"], g["cycle_days"])
    g = g.set_index([*b, "_pcode", "period"])
    return _finish(g, b, ["opportunities", "win_rate", "avg_deal_size", "cycle_days", "velocity_per_day"])


# ---------------------------------------------------------------- probabilities
def historical_stage_win_rates(crm: CRM, lookback: str | None = "730D") -> pd.Series:
    """P(won | reached stage) recalibrated to history: ``p_win`` of :func:`forecastkit.stage_probabilities`.

    One implementation of the stage win rate serves every KPI: this is the recalibrated
    table's ``p_win`` (closed deals of the last ``lookback`` days, shrunk with a Beta prior;
    with too few closed deals, toward the CRM probabilities, with a ``FallbackWarning``).

    Returns
    -------
    Series
        Indexed by stage name (open stages in playbook order), named ``p_win``.
    """
    from forecastkit.probability.stages import stage_probabilities

    key = (id(crm), lookback)
    cached = _RATES.get(crm)
    if cached is not None and cached[0] == key:
        return cached[1].copy()
    t = stage_probabilities(crm, lookback=lookback)
    p = t.set_index("stage")["p_win"].reindex(list(crm.playbook.stage_names)).rename("p_win").rename_axis("stage")
    _RATES[crm] = (key, p)
    return p.copy()


def win_probabilities(
    crm: CRM, probabilities: ProbabilitiesArg = "history", deals: pd.DataFrame | None = None
) -> pd.Series:
    """Win probability of each open deal, aligned on ``deals`` (default: the open deals).

    ``"history"``: :func:`historical_stage_win_rates` of the deal's stage; ``"crm"``: the
    typed-in probability, else the playbook's stage default; a Series indexed by
    ``opportunity_id``, or a frame with ``opportunity_id`` and ``p_win`` (e.g. from a
    fitted win model). Deals missing from a given Series fall back to ``"history"``.
    """
    d = crm.open_deals if deals is None else deals
    pb = crm.playbook
    hist = d["stage"].map(historical_stage_win_rates(crm)).astype(float)
    if isinstance(probabilities, str):
        if probabilities == "history":
            return hist.fillna(0.0)
        if probabilities == "crm":
            default = d["stage"].map({s: pb.crm_probability(s) for s in pb.all_stage_names}).astype(float)
            return d["probability"].astype(float).fillna(default).fillna(0.0)
        raise ParameterError(
            f"probabilities={probabilities!r}: use 'history', 'crm', or a Series of p_win by opportunity_id"
        )
    if isinstance(probabilities, pd.DataFrame):
        if not {"opportunity_id", "p_win"} <= set(probabilities):
            raise ParameterError("probabilities frame needs columns 'opportunity_id' and 'p_win'")
        probabilities = probabilities.set_index("opportunity_id")["p_win"]
    given = d["opportunity_id"].map(probabilities).astype(float)
    return given.fillna(hist).fillna(0.0)


def weighted_pipeline(
    crm: CRM, period: PeriodArg = None, by: ByArg = None, probabilities: ProbabilitiesArg = "history"
) -> pd.DataFrame:
    """Sum over open deals of amount x win probability, per period of the expected close date.

    ``probabilities`` defaults to the stage win rates recalibrated to history
    (:func:`historical_stage_win_rates`), not the theoretical CRM values;
    ``crm_weighted_pipeline`` shows the CRM-probability figure beside it.

    Returns
    -------
    DataFrame
        ``<by>..., period, open_deals, pipeline, weighted_pipeline, crm_weighted_pipeline``.
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    o = _with_groups(crm.open_deals, crm, b, table="opportunities")
    o = o.assign(
        _w=o["amount"] * win_probabilities(crm, probabilities, o), _crm=o["amount"] * win_probabilities(crm, "crm", o)
    )
    o = _assign_period(o, o["close_date"], spec, crm.playbook)
    g = _group(o, b).agg(
        open_deals=("amount", "size"),
        pipeline=("amount", "sum"),
        weighted_pipeline=("_w", "sum"),
        crm_weighted_pipeline=("_crm", "sum"),
    )
    return _finish(g, b, ["open_deals", "pipeline", "weighted_pipeline", "crm_weighted_pipeline"])


def pipeline_coverage(
    crm: CRM, period: PeriodArg = None, by: ByArg = None, *, qualified_from: str | None = None
) -> pd.DataFrame:
    """Pipeline coverage: qualified open pipeline expected to close in the period / quota.

    Qualified = open in ``qualified_from`` or a later stage (default: the playbook's
    second stage, i.e. past the first). The quota is the ``bookings`` target of the
    period (owner targets for ``by="owner"``; team targets, else the sum of the reps',
    for teams, business units and the company; days-prorated when the target period
    differs). ``period=None`` means the fiscal quarter holding the snapshot date; a
    frequency means every period from the current one to the last expected close date.
    ``coverage_remaining`` divides by the quota still to reach (quota - won so far).
    Grouping by segment, source or product gives no quota (NaN coverage).

    Returns
    -------
    DataFrame
        ``<by>..., period, open_deals, pipeline, quota, won, remaining_quota, coverage,
        coverage_remaining``.
    """
    b = _by_list(by)
    pb = crm.playbook
    spec = _resolve_period(period, pb)
    if spec.mode == "all":
        spec = _resolve_period(_current_period(crm), pb)
    first = qualified_from or (pb.stage_names[1] if len(pb.stages) > 1 else pb.stage_names[0])
    k = pb.stage_order(first)
    o = _with_groups(crm.open_deals, crm, b, table="opportunities")
    order = o["stage"].map({s: i for i, s in enumerate(pb.stage_names)})
    o = o[order >= k]
    last_close = o["close_date"].max() if len(o) else crm.as_of_date
    periods = _period_list(spec, crm.as_of_date, max(last_close, crm.as_of_date), pb) or []
    o = _assign_period(o, o["close_date"], spec, pb)
    o = o[o["period"].isin([p.label for p in periods])]
    pipe = _group(o, b).agg(open_deals=("amount", "size"), pipeline=("amount", "sum")).reset_index()
    c = _closed(crm, b)
    c = c[c["status"] == WON]
    c = _assign_period(c, c["_closed_at"], spec, pb)
    won = _group(c, b)["amount"].sum().rename("won").reset_index()
    # every (group, period) with either pipeline or wins, periods in range
    keys = [*b, "_pcode", "period"]
    out = _merge(pipe, won, on=keys, how="outer")
    out = out[out["period"].isin([p.label for p in periods])]
    level = b[0] if len(b) == 1 and b[0] in ("owner", "team", "business_unit") else (None if not b else "_none")
    tg = _target_amounts(crm, "bookings", periods, level) if level != "_none" else None
    if tg is not None and len(tg):
        out = out.merge(tg.rename(columns={"target": "quota"}), on=[*b, "period"], how="outer")
        code = {p.label: i for i, p in enumerate(periods)}
        out["_pcode"] = out["period"].map(code) if spec.mode != "one" else 0
    else:
        out["quota"] = np.nan
    for col in ("open_deals", "pipeline", "won"):
        out[col] = out[col].fillna(0)
    out["open_deals"] = out["open_deals"].astype(int)
    out["remaining_quota"] = (out["quota"] - out["won"]).clip(lower=0)
    out["coverage"] = _safe_div(out["pipeline"], out["quota"])
    out["coverage_remaining"] = _safe_div(out["pipeline"], out["remaining_quota"])
    out = out.set_index(keys)
    return _finish(
        out, b, ["open_deals", "pipeline", "quota", "won", "remaining_quota", "coverage", "coverage_remaining"]
    )


def new_pipeline(crm: CRM, period: PeriodArg = None, by: ByArg = None) -> pd.DataFrame:
    """New pipeline created: deals created in the period (whatever became of them since).

    Returns
    -------
    DataFrame
        ``<by>..., period, new_deals, new_amount, avg_new_amount``.
    """
    b = _by_list(by)
    spec = _resolve_period(period, crm.playbook)
    o = _with_groups(crm.opportunities, crm, b, table="opportunities")
    o = _assign_period(o, o["created_at"], spec, crm.playbook)
    g = _group(o, b)["amount"].agg(new_deals="size", new_amount="sum")
    g["avg_new_amount"] = _safe_div(g["new_amount"], g["new_deals"])
    return _finish(g, b, ["new_deals", "new_amount", "avg_new_amount"])
