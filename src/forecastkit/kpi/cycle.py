"""Sales cycle length that does not lie: closed-only figures beside censoring-aware ones.

The median cycle of *closed* deals only is biased low when many deals are still
open: the long deals are exactly the ones that have not closed yet. Here every
deal counts. Its cycle is ``closed_at - created_at`` when it closed; an open deal
is *censored* at the snapshot date (we know its cycle is at least its age). Then

* Kaplan-Meier (lifelines ``KaplanMeierFitter``) estimates the share of deals still
  open ``t`` days after creation, and its median is the censoring-aware median
  cycle, with a 95% interval (lifelines' convention: the first day the share still
  open falls *below* one half);
* Aalen-Johansen (lifelines ``AalenJohansenFitter``) treats won and lost as
  competing outcomes: the cumulative incidence of *won* by day ``t`` is the share of
  deals won within ``t`` days (it levels off at the eventual win rate).

Deals are grouped by creation cohort (the period of ``created_at``) so that the
closed-only and censoring-aware figures of a row describe the same deals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from lifelines import AalenJohansenFitter, KaplanMeierFitter
from lifelines.utils import median_survival_times

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import _distinct_sorted
from forecastkit.errors import ParameterError
from forecastkit.kpi._common import By, _assign_period, _by_list, _days, _resolve_period, _with_groups
from forecastkit.periods import Freq, Period
from forecastkit.playbook import LOST, WON

__all__ = ["cycle_data", "sales_cycle", "cycle_survival"]

_EVENT = {WON: 1, LOST: 2}


def cycle_data(crm: CRM, by: By | Sequence[By] | None = None) -> pd.DataFrame:
    """One row per deal: its cycle (or age, if open) in days and whether it closed.

    Returns
    -------
    DataFrame
        ``opportunity_id, <by>..., created_at, status, days`` (created -> closed,
        or created -> snapshot date for open deals), ``closed`` (bool),
        ``event`` (0 open / censored, 1 won, 2 lost).
    """
    b = _by_list(by)
    o = _with_groups(crm.opportunities, crm, b, table="opportunities")
    end = o["closed_at"].fillna(o["close_date"]).where(o["status"] != "open", crm.as_of_date)
    days = _days(o["created_at"], end).clip(lower=0)
    out = o[["opportunity_id", *b, "created_at", "status"]].copy()
    out["days"] = days.to_numpy()
    out["event"] = o["status"].map(_EVENT).fillna(0).astype(int).to_numpy()
    out["closed"] = out["event"] > 0
    return out.reset_index(drop=True)


def _km(days: np.ndarray, closed: np.ndarray, alpha: float) -> tuple[float, float, float]:
    if len(days) == 0 or not closed.any():
        return np.nan, np.nan, np.nan
    kmf = KaplanMeierFitter(alpha=alpha).fit(days, closed)
    med = float(kmf.median_survival_time_)
    ci = median_survival_times(kmf.confidence_interval_)
    lo, hi = (float(v) for v in np.asarray(ci, dtype=float).ravel()[:2])
    return med, lo, hi


def sales_cycle(
    crm: CRM, period: str | Period | Freq | None = None, by: By | Sequence[By] | None = None, *, alpha: float = 0.05
) -> pd.DataFrame:
    """Sales cycle in days: closed-only figures and the censoring-aware Kaplan-Meier median.

    Parameters
    ----------
    crm : CRM
    period : None, period or frequency
        Creation cohort(s); ``None`` = every deal.
    by : group column(s), optional
    alpha : float
        1 - confidence level of the Kaplan-Meier median interval (0.05 -> 95%).

    Returns
    -------
    DataFrame
        ``<by>..., period, deals, closed, open, share_open, closed_median_days,
        closed_mean_days, won_median_days`` (closed deals only: biased low when many
        are open), ``km_median_days, km_median_low, km_median_high`` (Kaplan-Meier
        over all deals, open ones censored at the snapshot date; ``inf`` when fewer
        than half of the deals have closed), ``median_bias_days``
        (closed-only median minus Kaplan-Meier median).
    """
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha={alpha!r} must be between 0 and 1 (0.05 gives a 95% interval)")
    b = _by_list(by)
    d = cycle_data(crm, b)
    d = _assign_period(d, d["created_at"], _resolve_period(period, crm.playbook), crm.playbook)
    rows = []
    for key, g in d.groupby([*b, "_pcode", "period"], dropna=False, sort=True, observed=True):
        days, closed = g["days"].to_numpy(), g["closed"].to_numpy()
        med, lo, hi = _km(days, closed, alpha)
        cd = days[closed]
        wd = days[g["event"].to_numpy() == 1]
        rec = dict(zip([*b, "_pcode", "period"], key, strict=True))
        rec.update(
            deals=len(g),
            closed=int(closed.sum()),
            open=int((~closed).sum()),
            closed_median_days=float(np.median(cd)) if len(cd) else np.nan,
            closed_mean_days=float(cd.mean()) if len(cd) else np.nan,
            won_median_days=float(np.median(wd)) if len(wd) else np.nan,
            km_median_days=med,
            km_median_low=lo,
            km_median_high=hi,
        )
        rows.append(rec)
    cols = [
        "deals",
        "closed",
        "open",
        "share_open",
        "closed_median_days",
        "closed_mean_days",
        "won_median_days",
        "km_median_days",
        "km_median_low",
        "km_median_high",
        "median_bias_days",
    ]
    if not rows:
        return pd.DataFrame(columns=[*b, "period", *cols])
    out = pd.DataFrame(rows)
    out["share_open"] = out["open"] / out["deals"]
    out["median_bias_days"] = out["closed_median_days"] - out["km_median_days"]
    return out[[*b, "period", *cols]]


def cycle_survival(
    crm: CRM,
    by: By | Sequence[By] | None = None,
    period: str | Period | Freq | None = None,
    *,
    alpha: float = 0.05,
    seed: int = 0,
    curves: Sequence[str] = ("still_open", "won", "lost"),
    intervals: bool = True,
) -> pd.DataFrame:
    """The curves behind the cycle: Kaplan-Meier share still open, and cumulative incidence of won and lost.

    Aalen-Johansen needs distinct event times; lifelines breaks ties by jittering
    them by a tiny amount (seeded by ``seed``, so results are reproducible).

    Returns
    -------
    DataFrame
        ``<by>..., period, curve`` (``still_open``: Kaplan-Meier survival; ``won`` and
        ``lost``: Aalen-Johansen cumulative incidence), ``days, estimate, lower, upper``.
        ``curves`` picks which curves to compute; ``intervals=False`` skips the
        confidence intervals (``lower``/``upper`` NaN), which is much faster: the won and
        lost curves of every group are then computed in one pass (:func:`_aalen_johansen`,
        the same numbers as lifelines' fitter per group).
    """
    b = _by_list(by)
    d = cycle_data(crm, b)
    d = _assign_period(d, d["created_at"], _resolve_period(period, crm.playbook), crm.playbook)
    if not intervals and "still_open" not in curves:
        return _incidence_curves(d, b, curves, seed)
    parts = []
    for key, g in d.groupby([*b, "_pcode", "period"], dropna=False, sort=True, observed=True):
        if not g["closed"].any():
            continue
        days, event = g["days"].to_numpy(dtype=float), g["event"].to_numpy()
        found = []
        if "still_open" in curves:
            kmf = KaplanMeierFitter(alpha=alpha).fit(days, event > 0)
            ci = kmf.confidence_interval_survival_function_
            found.append(("still_open", kmf.survival_function_.iloc[:, 0], ci.iloc[:, 0], ci.iloc[:, 1]))
        for name, code in _EVENT.items():
            if name not in curves or not (event == code).any():
                continue
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Tied event times")
                ajf = AalenJohansenFitter(alpha=alpha, seed=seed, calculate_variance=intervals)
                ajf.fit(days, event, event_of_interest=code)
            est = ajf.cumulative_density_.iloc[:, 0]
            if intervals:
                aci = ajf.confidence_interval_.reindex(est.index)
                lo, hi = aci.iloc[:, 0], aci.iloc[:, 1]
            else:
                lo = hi = pd.Series(np.nan, index=est.index)
            found.append((name, est, lo, hi))
        head = dict(zip([*b, "_pcode", "period"], key, strict=True))
        for name, est, lo, hi in found:
            f = pd.DataFrame(
                {
                    "curve": name,
                    "days": est.index.to_numpy(dtype=float),
                    "estimate": est.to_numpy(),
                    "lower": lo.to_numpy(),
                    "upper": hi.to_numpy(),
                }
            )
            for k, v in head.items():
                f[k] = v
            parts.append(f)
    cols = [*b, "period", "curve", "days", "estimate", "lower", "upper"]
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


def _incidence_curves(d: pd.DataFrame, b: list[str], curves: Sequence[str], seed: int) -> pd.DataFrame:
    """The won / lost cumulative incidence curves (no intervals) of every group of ``d`` at once.

    The rows (group by group, curves in ``won, lost`` order, days ascending) and values of
    the lifelines loop of :func:`cycle_survival`, one :func:`_aalen_johansen` pass per curve.
    """
    cols = [*b, "period", "curve", "days", "estimate", "lower", "upper"]
    keys = [*b, "_pcode", "period"]
    grouped = d.groupby(keys, dropna=False, sort=True, observed=True)
    code = grouped.ngroup().to_numpy()
    order = np.argsort(code, kind="stable")  # rows of a group together, in their order
    group = code[order]
    days = d["days"].to_numpy(dtype=float)[order]
    event = d["event"].to_numpy()[order]
    n_groups = int(code.max()) + 1 if len(code) else 0
    closed = np.bincount(group[event > 0], minlength=n_groups) > 0
    found = []
    for rank, (name, ev_code) in enumerate(_EVENT.items()):
        if name not in curves:
            continue
        has = np.bincount(group[event == ev_code], minlength=n_groups) > 0
        keep = closed & has
        if not keep.any():
            continue
        rows = keep[group]
        g, t, est = _aalen_johansen(days[rows], event[rows], group[rows], ev_code, seed=seed)
        found.append((np.full(len(g), rank), g, t, est))
    if not found:
        return pd.DataFrame(columns=cols)
    rank, g, t, est = (np.concatenate(x) for x in zip(*found, strict=True))
    o = np.lexsort((rank, g))  # group by group, then the curves in order, days ascending (stable)
    rank, g, t, est = rank[o], g[o], t[o], est[o]
    heads = grouped.size().index
    out = {}
    for i, k in enumerate(keys):
        if k == "_pcode":
            continue
        level = heads.get_level_values(i) if isinstance(heads, pd.MultiIndex) else heads
        out[k] = pd.Series(np.asarray(list(level), dtype=object)[g]).infer_objects()
    names = np.asarray(list(_EVENT), dtype=object)
    out["curve"] = pd.Series(names[rank], dtype=object)
    out["days"] = t
    out["estimate"] = est
    out["lower"] = np.nan
    out["upper"] = np.nan
    return pd.DataFrame(out)[cols]


def _tied_groups(t: np.ndarray, event: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Groups where two events of different types share a time (lifelines' ``_check_for_duplicates``)."""
    ev = np.flatnonzero(event != 0)
    if len(ev) < 2:
        return np.array([], dtype=group.dtype)
    g, tt, e = group[ev], t[ev], event[ev]
    order = np.lexsort((e, tt, g))
    g, tt, e = g[order], tt[order], e[order]
    same_t = (g[1:] == g[:-1]) & (tt[1:] == tt[:-1])
    same_te = same_t & (e[1:] == e[:-1])
    dup_t = np.zeros(len(g), dtype=bool)
    dup_te = np.zeros(len(g), dtype=bool)
    dup_t[1:] |= same_t
    dup_t[:-1] |= same_t
    dup_te[1:] |= same_te
    dup_te[:-1] |= same_te
    return _distinct_sorted(g[dup_t & ~dup_te])


def _aalen_johansen(
    days: np.ndarray, event: np.ndarray, group: np.ndarray, code: int, *, seed: int | None, jitter_level: float = 0.0001
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aalen-Johansen cumulative incidence of event ``code`` for many groups in one pass.

    The same numbers as one lifelines ``AalenJohansenFitter(seed=seed, calculate_variance=False)``
    fit per group on the group's rows in their order: ``days`` (duration), ``event`` (0 censored,
    else the event type), ``group`` (an integer per row, rows of a group contiguous). Lifelines'
    steps are followed one by one so that the floats are the same: ties between event types
    are broken by jittering every event time of the group by ``uniform(-1, 1) x jitter_level``
    drawn after seeding ``seed`` (again until no tie is left); the event table runs from the
    entry time ``min(0, first duration)`` over every distinct duration; the overall Kaplan-Meier
    survival is ``exp(cumsum(log(n - d) - log(n)))``; the incidence adds ``d_code / n x S(t-)``
    from the second row on (its first row is 0).

    Returns
    -------
    tuple of arrays
        One element per row of the groups' event tables, ordered by group then time:
        ``group, event_at, estimate``.
    """
    t = np.asarray(days, dtype=float).copy()
    event = np.asarray(event)
    group = np.asarray(group)
    n = len(t)
    is_event = event != 0
    # jitter: lifelines draws one uniform per event row of a tied group, after seeding, each round
    tied = _tied_groups(t, event, group)
    if len(tied):
        ev = np.flatnonzero(is_event)
        starts = np.searchsorted(group[ev], group[ev], side="left")
        rank = np.arange(len(ev)) - starts  # the event's position among its group's events
        shift = np.random.RandomState(seed).uniform(low=-1, high=1, size=int(rank.max()) + 1) * jitter_level
        while len(tied):
            hit = np.isin(group[ev], tied)
            rows = ev[hit]
            t[rows] = t[rows] + shift[rank[hit]]
            tied = np.intersect1d(tied, _tied_groups(t, event, group))
    # event table: every distinct (group, time), plus each group's entry row at min(0, first time)
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True])
    first, size = bounds[:-1], np.diff(bounds)
    entry = np.minimum(0.0, np.minimum.reduceat(t, first)) if n else np.array([])
    g_all = np.concatenate([group, group[first]])
    t_all = np.concatenate([t, entry])
    removed = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(len(first), dtype=np.int64)])
    observed = np.concatenate([is_event.astype(np.int64), np.zeros(len(first), dtype=np.int64)])
    of_code = np.concatenate([(event == code).astype(np.int64), np.zeros(len(first), dtype=np.int64)])
    order = np.lexsort((t_all, g_all))
    g_all, t_all = g_all[order], t_all[order]
    new = np.r_[True, (g_all[1:] != g_all[:-1]) | (t_all[1:] != t_all[:-1])]
    row = np.cumsum(new) - 1
    n_rows = int(row[-1]) + 1 if len(row) else 0
    g_row, t_row = g_all[new], t_all[new]
    d = np.bincount(row, weights=observed[order], minlength=n_rows).astype(np.int64)
    d_code = np.bincount(row, weights=of_code[order], minlength=n_rows).astype(np.int64)
    r = np.bincount(row, weights=removed[order], minlength=n_rows).astype(np.int64)
    gb = np.flatnonzero(np.r_[True, g_row[1:] != g_row[:-1], True])
    n_g = np.repeat(size, np.diff(gb))
    removed_before = np.zeros(n_rows, dtype=np.int64)
    cif = np.empty(n_rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        for a, b in zip(gb[:-1], gb[1:], strict=True):
            removed_before[a + 1 : b] = np.cumsum(r[a : b - 1])
        at_risk = n_g - removed_before
        log_s = np.log(at_risk - d) - np.log(at_risk)
        for a, b in zip(gb[:-1], gb[1:], strict=True):
            s = np.exp(np.cumsum(log_s[a:b]))
            term = np.empty(b - a)
            term[0] = 0.0
            term[1:] = d_code[a + 1 : b] / at_risk[a + 1 : b] * s[:-1]
            c = np.cumsum(term)
            c[0] = 0.0
            cif[a:b] = c
    return g_row, t_row, cif
