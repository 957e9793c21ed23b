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
        confidence intervals (``lower``/``upper`` NaN), which is much faster.
    """
    b = _by_list(by)
    d = cycle_data(crm, b)
    d = _assign_period(d, d["created_at"], _resolve_period(period, crm.playbook), crm.playbook)
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
