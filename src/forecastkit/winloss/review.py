"""The win/loss review sheet: one row per recently closed deal, for a review meeting.

For each deal: its stage timeline (days in each stage), close-date pushes, the
activities done on it, the completeness of its visit/meeting reports (the five boxes:
context, discovery, proofs, risks, dated next step) and the **win probability the
history gave it in each stage** - so a coach sees where a lost deal was already lost.

The probability in a stage is taken when the deal left it, from what was known
before the reviewed deals closed (``crm.as_of(day before the first reviewed close)``):

* default: :func:`forecastkit.probability.stage_age_probabilities` - the share of
  deals won among those that had sat in that stage at least as long (a deal stalling
  in discovery sees its probability fall);
* ``model=`` a fitted :class:`forecastkit.WinModel`: the model's calibrated
  probability on the last day the deal was in the stage (one ``crm.as_of`` per
  distinct date, so slower).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.schema import ACTIVITY_TYPES, REPORT_BOXES
from forecastkit.data.timeline import close_date_pushes, stage_spells
from forecastkit.errors import FallbackWarning, ParameterError
from forecastkit.kpi._common import _days
from forecastkit.playbook import LOST, WON

__all__ = ["win_loss_review"]

_DAY = pd.Timedelta(days=1)


def win_loss_review(
    crm: CRM,
    deals: Sequence[str] | None = None,
    *,
    n: int = 20,
    owner: str | None = None,
    model: Any = None,
) -> pd.DataFrame:
    """One row per closed deal: timeline, pushes, activities, report completeness, probability per stage.

    Parameters
    ----------
    crm : CRM
    deals : list of str, optional
        Opportunity ids to review (closed ones; open ids raise). Default: the ``n`` most
        recently closed deals (of ``owner`` when given).
    n : int
        Deals reviewed by default.
    owner : str, optional
        Restrict the default selection to this owner.
    model : WinModel, optional
        A fitted :class:`forecastkit.WinModel` to score each stage; default: stage x age
        win rates from history (see the module docstring).

    Returns
    -------
    DataFrame
        ``opportunity_id, name, owner, status, amount, created_at, closed_at,
        cycle_days`` (0 for a deal closed on the day it was created, as in
        :func:`~forecastkit.kpi.cycle.cycle_data`), ``loss_reason, timeline``
        (e.g. ``"qualification 12d > discovery 40d > lost"``), ``days_<stage>`` per open stage (NaN if not visited),
        ``last_stage`` (the open stage it was won or lost from), ``pushes, days_pushed,
        activities`` (done), ``activity_mix`` (e.g. ``"call 4, email 3"``),
        ``days_since_activity`` (at close), ``reports`` (visit/meeting reports),
        ``report_completeness`` (share of the five boxes filled over them, NaN
        without report), ``missing_boxes`` (boxes most often empty), ``p_<stage>``
        per open stage (win probability when the deal left it), ``lost_from`` (for lost
        deals, the first stage the deal left with less than half the stage's typical win
        probability - where it was already lost; empty if none), ordered by close date,
        latest first.

    Raises
    ------
    ParameterError
        An id is unknown or not closed.
    """
    pb = crm.playbook
    o = crm.opportunities
    closed = o[o["status"].isin((WON, LOST))]
    if deals is None:
        sel = closed if owner is None else closed[closed["owner"] == owner]
        sel = sel.assign(_c=sel["closed_at"].fillna(sel["close_date"])).sort_values("_c", ascending=False)
        sel = sel.head(int(n)).drop(columns="_c")
    else:
        ids = [deals] if isinstance(deals, str) else list(deals)
        unknown = [i for i in ids if i not in set(o["opportunity_id"])]
        if unknown:
            raise ParameterError(f"deals {unknown[:5]} are not in this CRM snapshot; pass opportunity_id values")
        still_open = [i for i in ids if i not in set(closed["opportunity_id"])]
        if still_open:
            raise ParameterError(
                f"deals {still_open[:5]} are still open on {crm.as_of_date.date()}: the win/loss review is for closed "
                "deals (use forecastkit.hygiene.review for open ones)"
            )
        sel = closed.set_index("opportunity_id").loc[ids].reset_index()
    sel = sel.reset_index(drop=True)
    ids = sel["opportunity_id"].to_numpy()
    when = sel["closed_at"].fillna(sel["close_date"])
    out = pd.DataFrame(
        {
            "opportunity_id": ids,
            "name": sel["name"].to_numpy(),
            "owner": sel["owner"].to_numpy(),
            "status": sel["status"].to_numpy(),
            "amount": sel["amount"].to_numpy(float),
            "created_at": sel["created_at"].to_numpy(),
            "closed_at": when.to_numpy(),
            # (a deal closed on the day it was created, before the hour it was created at: 0 days, as in cycle_data)
            "cycle_days": _days(sel["created_at"], when).clip(lower=0).to_numpy(),
            "loss_reason": sel["loss_reason"].to_numpy(),
        }
    )
    sp = stage_spells(crm)
    sp = sp[sp["opportunity_id"].isin(ids)]
    out = out.join(_timeline(sp, ids, pb.stage_names))
    pushes = close_date_pushes(crm).set_index("opportunity_id").reindex(ids)
    out["pushes"] = pushes["pushes"].fillna(0).astype(int).to_numpy()
    out["days_pushed"] = pushes["days_pushed"].fillna(0).to_numpy(float)
    out = out.join(_activities(crm, ids, when.to_numpy()))
    probs, typical = _probabilities(crm, sp, ids, when, model)
    out = out.join(probs)
    lost_from = []
    for _, r in out.iterrows():
        hit = [s for s in pb.stage_names if pd.notna(r[f"p_{s}"]) and r[f"p_{s}"] < 0.5 * typical.get(s, np.nan)]
        lost_from.append(hit[0] if hit and r["status"] == LOST else "")
    out["lost_from"] = lost_from
    return out.sort_values("closed_at", ascending=False, kind="stable").reset_index(drop=True)


def _timeline(sp: pd.DataFrame, ids: np.ndarray, stages: Sequence[str]) -> pd.DataFrame:
    days = sp[sp["stage"].isin(stages)].groupby(["opportunity_id", "stage"])["days_in_stage"].sum().unstack()
    days = days.reindex(index=ids, columns=list(stages))
    text, last = [], []
    for i in ids:
        s = sp[sp["opportunity_id"] == i]
        parts = [
            f"{st} {d:.0f}d" if st in stages else str(st) for st, d in zip(s["stage"], s["days_in_stage"], strict=True)
        ]
        text.append(" > ".join(parts))
        opens = s[s["stage"].isin(stages)]
        last.append(opens["stage"].iloc[-1] if len(opens) else "")
    res = pd.DataFrame({"timeline": text}, index=range(len(ids)))
    for st in stages:
        res[f"days_{st}"] = days[st].to_numpy(float)
    res["last_stage"] = last
    return res


def _activities(crm: CRM, ids: np.ndarray, closed_at: np.ndarray) -> pd.DataFrame:
    res = pd.DataFrame(index=range(len(ids)))
    if not crm.has("activities"):
        for c in ("activities", "days_since_activity", "reports", "report_completeness"):
            res[c] = np.nan
        res["activity_mix"] = ""
        res["missing_boxes"] = ""
        return res
    a = crm.activities
    a = a[a["opportunity_id"].isin(ids) & a["done_at"].notna()]
    counts = a.groupby([a["opportunity_id"].astype(object), a["type"].astype(object)]).size().unstack(fill_value=0)
    counts = counts.reindex(index=ids, columns=list(ACTIVITY_TYPES), fill_value=0)
    res["activities"] = counts.sum(axis=1).to_numpy(int)
    res["activity_mix"] = [", ".join(f"{t} {int(v)}" for t, v in row.items() if v > 0) for _, row in counts.iterrows()]
    last = a.groupby("opportunity_id")["done_at"].max().reindex(ids)
    res["days_since_activity"] = ((closed_at - last.to_numpy()) / np.timedelta64(1, "D")).astype(float)
    rep = a[a["type"].isin(("visit", "meeting")) & a[list(REPORT_BOXES)].notna().any(axis=1)]
    boxes = rep[list(REPORT_BOXES)].astype("float64").fillna(0.0)
    g = boxes.groupby(rep["opportunity_id"].to_numpy())
    res["reports"] = g.size().reindex(ids).fillna(0).astype(int).to_numpy()
    res["report_completeness"] = g.mean().mean(axis=1).reindex(ids).to_numpy(float)
    share = g.mean().reindex(ids)
    res["missing_boxes"] = [
        ", ".join(b[len("report_") :] for b in REPORT_BOXES if pd.notna(row[b]) and row[b] < 0.5)
        for _, row in share.iterrows()
    ]
    return res


def _probabilities(
    crm: CRM, sp: pd.DataFrame, ids: np.ndarray, when: pd.Series, model: Any
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Win probability per deal and stage at the exit, and each stage's typical (all-deal) probability."""
    pb = crm.playbook
    first_close = when.min()
    cutoff = (first_close - _DAY).normalize() if pd.notna(first_close) else crm.as_of_date
    past = crm.as_of(min(cutoff, crm.as_of_date))
    visits = sp[sp["stage"].isin(pb.stage_names)].drop_duplicates(["opportunity_id", "stage"], keep="first")
    res = pd.DataFrame(index=range(len(ids)), columns=[f"p_{s}" for s in pb.stage_names], dtype=float)
    pos = pd.Series(np.arange(len(ids)), index=ids)
    from forecastkit.probability import stage_age_probabilities, stage_probabilities

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        base_tab = stage_probabilities(past)
    typical = {str(k): float(v) for k, v in base_tab.set_index("stage")["p_win"].items()}
    if model is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FallbackWarning)
            tab = stage_age_probabilities(past)
        for r in visits.itertuples():
            t = tab[
                (tab["stage"] == r.stage) & (tab["age_from"] <= r.days_in_stage) & (r.days_in_stage < tab["age_to"])
            ]
            if len(t):
                res.iloc[pos[r.opportunity_id], pb.stage_names.index(r.stage)] = float(t["p_win"].iloc[0])
    else:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model, "pipeline_")
        end = visits["exited_at"].fillna(visits["entered_at"]) - _DAY
        day = pd.concat([end, visits["entered_at"]], axis=1).max(axis=1).dt.normalize()
        for d, grp in visits.assign(_d=day.to_numpy()).groupby("_d"):
            p = model.predict_proba(crm.as_of(min(d, crm.as_of_date))).set_index("opportunity_id")["p_win"]
            for r in grp.itertuples():
                if r.opportunity_id in p.index:
                    res.iloc[pos[r.opportunity_id], pb.stage_names.index(r.stage)] = float(p[r.opportunity_id])
    return res, typical
