"""Win/loss features taken at the moment a deal left a stage - never from its final state.

For a chosen stage ``at``, :func:`stage_exit_features` gives one row per deal that
reached ``at`` (the shared counting rule of
:func:`forecastkit.data.timeline.stages_reached`) and has left it by the snapshot
date. The exit time is when the deal moved on (to a later stage, won or lost); a
deal that jumped past ``at`` left it at the jump. Every feature is what the CRM
showed **strictly before** that instant, with the rules of ``crm.as_of`` applied per
deal (vectorised instead of one ``as_of`` per deal):

* opportunity fields (qualification fields, competitor, discount, owner...) take the
  value they had then: the current value, unless ``field_history`` shows a change at
  or after the exit, in which case the ``old_value`` of the first such change; fields
  that never appear in ``field_history`` keep their current value;
* the amount is that of the last ``history`` row before the exit;
* close-date pushes count ``history`` rows before the exit;
* activities count those done before the exit.

:data:`FEATURES` is the registry of what may be asked for. :data:`LEAKING_COLUMNS`
lists columns only known once a deal closes (final stage-change count, total days to
close, loss reason, close date...): asking for one raises
:class:`~forecastkit.errors.LeakageError` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.schema import ACTIVITY_TYPES, REPORT_BOXES, TABLES
from forecastkit.data.timeline import stage_spells, stages_reached
from forecastkit.data.validate import coerce_column
from forecastkit.errors import LeakageError, ParameterError
from forecastkit.playbook import LOST, Playbook

__all__ = [
    "Feature",
    "FEATURES",
    "DEFAULT_FEATURES",
    "PROCESS_FEATURES",
    "PRESETS",
    "LEAKING_COLUMNS",
    "HIGH_DISCOUNT",
    "check_features",
    "stage_exits",
    "stage_exit_features",
]

#: Discount (share of list price) from which a deal is in the ``>=15%`` discount band.
HIGH_DISCOUNT = 0.15
_MISSING = "(missing)"
_DAY_S = 86400.0


@dataclass(frozen=True)
class Feature:
    """One stage-exit feature.

    ``kind`` is ``"categorical"`` (text levels, compared with a reference level) or
    ``"numeric"``; a numeric feature's odds ratio is per ``unit`` (its value divided by
    ``scale``).
    """

    name: str
    kind: Literal["numeric", "categorical"]
    description: str
    scale: float = 1.0
    unit: str = ""


def _known(field: str) -> Feature:
    return Feature(f"{field}_known", "numeric", f"'{field}' is filled (1/0)", 1.0, "known vs unknown")


_F = [
    Feature("segment", "categorical", "customer segment"),
    Feature("source", "categorical", "lead source"),
    Feature("product", "categorical", "main product"),
    Feature("owner", "categorical", "the deal's owner at the exit"),
    Feature("team", "categorical", "the owner's team at the exit"),
    Feature("deal_size_band", "categorical", "amount at the exit, in company-wide quartile bands (q1 smallest)"),
    Feature("log2_amount", "numeric", "log2 of the amount at the exit", 1.0, "per doubling of the amount"),
    Feature("competitor_present", "numeric", "a competitor is named (1/0)", 1.0, "present vs absent"),
    Feature("discount_band", "categorical", "discount: none, <15% or >=15% of list price"),
    Feature("discount", "numeric", "discount granted (share of list price; empty = 0)", 0.1, "per 10 points"),
    *(
        _known(f)
        for f in (
            "budget",
            "decision_maker",
            "need",
            "timing",
            "metrics",
            "decision_criteria",
            "decision_process",
            "pain",
            "champion",
        )
    ),
    Feature("qualification_completeness", "numeric", "share of BANT/MEDDIC fields filled", 0.1, "per 10 points"),
    Feature("activities", "numeric", "activities done on the deal before the exit", 5.0, "per 5 activities"),
    *(Feature(f"{t}s", "numeric", f"{t} activities done before the exit", 5.0, f"per 5 {t}s") for t in ACTIVITY_TYPES),
    Feature(
        "meeting_share",
        "numeric",
        "share of visits and meetings among activities done (0 if none)",
        0.1,
        "per 10 points",
    ),
    Feature(
        "report_completeness",
        "numeric",
        "share of the five report boxes filled on visits/meetings done (0 if none)",
        0.1,
        "per 10 points",
    ),
    Feature("days_in_stage", "numeric", "days spent in the stage until the exit", 30.0, "per 30 days"),
    Feature("deal_age_days", "numeric", "days from creation to the exit", 30.0, "per 30 days"),
    Feature(
        "close_date_pushes", "numeric", "times the expected close date moved later before the exit", 1.0, "per push"
    ),
]

#: The feature registry: name -> :class:`Feature`. Only these can be requested.
FEATURES: dict[str, Feature] = {f.name: f for f in _F}

#: Default features of :func:`~forecastkit.winloss.drivers.drivers` (preset ``"attributes"``): what the deal *is*
#: when it leaves the stage. Left out: ``qualification_completeness`` (the mean of the ``*_known`` flags, so
#: collinear with them), ``team`` (determined by the owner), ``log2_amount``/``discount`` (banded versions
#: included).
DEFAULT_FEATURES: tuple[str, ...] = (
    "segment",
    "source",
    "product",
    "owner",
    "deal_size_band",
    "competitor_present",
    "discount_band",
    "budget_known",
    "decision_maker_known",
    "need_known",
    "timing_known",
    "metrics_known",
    "decision_criteria_known",
    "decision_process_known",
    "pain_known",
    "champion_known",
)

#: How the deal has been worked so far (preset ``"process"``). Opt-in: these are partly *consequences* of
#: the outcome (a deal about to be lost stalls in its stage and gets fewer activities), so adjusting for
#: them changes the meaning of the attribute odds ratios (e.g. slow enterprise deals look no worse once
#: days in stage are held fixed).
PROCESS_FEATURES: tuple[str, ...] = (
    "activities",
    "meeting_share",
    "report_completeness",
    "days_in_stage",
    "close_date_pushes",
)

#: Named feature sets accepted by ``features=``.
PRESETS: dict[str, tuple[str, ...]] = {
    "attributes": DEFAULT_FEATURES,
    "process": PROCESS_FEATURES,
    "attributes+process": DEFAULT_FEATURES + PROCESS_FEATURES,
}

#: Columns known only once a deal has closed: name -> why. Asking for one raises LeakageError.
LEAKING_COLUMNS: dict[str, str] = {
    "loss_reason": "a loss reason is typed in when the deal is lost, so it encodes the outcome",
    "closed_at": "the close timestamp exists only once the deal is won or lost",
    "close_date": "once a deal is closed its close_date is the actual close date, known only at close",
    "status": "won/lost status is the outcome itself",
    "stage": "the deal's current stage is won or lost for every closed deal",
    "forecast_category": "a closed deal's category is 'closed' or 'omitted', set at close",
    "probability": "the CRM probability of a closed deal is 1 or 0",
    "won": "the outcome itself",
    "lost": "the outcome itself",
    "outcome": "the outcome itself",
    "final_stage": "the last stage is known only at close",
    "max_stage": "the furthest stage reached is known only at close",
    "stage_changes": "the final count of stage changes is known only at close",
    "n_stage_changes": "the final count of stage changes is known only at close",
    "stages_reached": "the final count of stages reached is known only at close",
    "cycle_days": "total days from creation to close are known only at close",
    "days_to_close": "total days to close are known only at close",
    "total_days": "total days to close are known only at close",
    "amount_at_close": "the amount at close is known only at close",
    "final_amount": "the amount at close is known only at close",
    "total_pushes": "the final count of close-date pushes is known only at close",
    "total_activities": "activities after the stage exit are counted in the deal's final total",
}


def check_features(features: Sequence[str] | str | None) -> list[str]:
    """Validate requested feature names; return them as a list.

    ``None`` gives :data:`DEFAULT_FEATURES`; a preset name of :data:`PRESETS` (``"attributes"``,
    ``"process"``, ``"attributes+process"``) gives that set.

    Raises
    ------
    LeakageError
        A name is only known once the deal closes (see :data:`LEAKING_COLUMNS`).
    ParameterError
        A name is not in :data:`FEATURES`, or the list is empty.
    """
    if features is None:
        features = DEFAULT_FEATURES
    elif isinstance(features, str):
        features = PRESETS.get(features, (features,))
    names = list(features)
    leaks = [n for n in names if n in LEAKING_COLUMNS]
    if leaks:
        why = "; ".join(f"{n!r}: {LEAKING_COLUMNS[n]}" for n in leaks)
        raise LeakageError(
            f"feature(s) {leaks} leak the outcome: they are only known once a deal closes ({why}). A win/loss "
            "driver must be known when the deal left the chosen stage, before the outcome; remove them "
            f"(allowed features: {', '.join(FEATURES)})"
        )
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ParameterError(f"unknown feature(s) {unknown}; registered features: {', '.join(FEATURES)}")
    if not names:
        raise ParameterError("features is empty; pass None for the default features")
    if len(set(names)) != len(names):
        raise ParameterError(f"features {names} name a feature twice")
    return names


def _check_stage(at: str, pb: Playbook) -> int:
    if at not in pb.stage_names:
        raise ParameterError(f"at={at!r} is not an open stage of the playbook; use one of {', '.join(pb.stage_names)}")
    return pb.stage_names.index(at)


def stage_exits(crm: CRM, at: str) -> pd.DataFrame:
    """When each deal that reached stage ``at`` left it.

    Parameters
    ----------
    crm : CRM
    at : str
        An open stage of the playbook.

    Returns
    -------
    DataFrame
        ``opportunity_id, entered_at`` (when the deal first got to ``at`` or past it),
        ``exited_at`` (when it moved on, was won or lost; the same instant for a deal that
        jumped past ``at``), ``days_in_stage``, ``next_stage``, one row per deal that
        reached ``at`` and has left it (deals still in ``at`` are left out).
    """
    k = _check_stage(at, crm.playbook)
    spells = stage_spells(crm)
    reached = stages_reached(crm, spells)
    ids = reached.loc[reached["stage_order"] == k, "opportunity_id"].unique()
    sp = spells[spells["opportunity_id"].isin(ids) & (spells["stage"] != LOST) & (spells["stage_order"] >= k)]
    arrive = sp.groupby("opportunity_id", sort=False).head(1)
    past = (arrive["stage_order"] > k).to_numpy()
    entered = arrive["entered_at"].to_numpy()
    exited = np.where(past, entered, arrive["exited_at"].to_numpy())
    nxt = np.where(past, arrive["stage"].to_numpy(dtype=object), arrive["next_stage"].to_numpy(dtype=object))
    out = pd.DataFrame(
        {
            "opportunity_id": arrive["opportunity_id"].to_numpy(),
            "entered_at": pd.to_datetime(entered),
            "exited_at": pd.to_datetime(exited),
            "next_stage": pd.array(nxt, dtype="string"),
        }
    )
    out = out[out["exited_at"].notna()].reset_index(drop=True)
    out["days_in_stage"] = (out["exited_at"] - out["entered_at"]).dt.total_seconds().to_numpy() / _DAY_S
    return out[["opportunity_id", "entered_at", "exited_at", "days_in_stage", "next_stage"]]


def stage_exit_features(crm: CRM, at: str, features: Sequence[str] | str | None = None) -> pd.DataFrame:
    """Features of every deal that left stage ``at``, as known just before it left.

    Parameters
    ----------
    crm : CRM
    at : str
        An open stage of the playbook.
    features : list of str, optional
        Names from :data:`FEATURES` (default :data:`DEFAULT_FEATURES`).

    Returns
    -------
    DataFrame
        ``opportunity_id, exited_at`` then one column per requested feature; categorical
        features are strings (``"(missing)"`` when empty), numeric ones floats.

    Raises
    ------
    LeakageError
        A requested feature is only known at close.
    """
    names = check_features(features)
    ex = stage_exits(crm, at)
    ids = ex["opportunity_id"].to_numpy()
    cut = ex["exited_at"]
    need = set(names)
    cols: dict[str, object] = {"opportunity_id": ids, "exited_at": cut.to_numpy()}
    o = crm.opportunities.set_index("opportunity_id")
    fields = [f for f in ("segment", "source", "product", "owner", "team") if f in need]
    fields += [n[: -len("_known")] for n in names if n.endswith("_known")]
    if need & {"competitor_present"}:
        fields.append("competitor")
    if need & {"discount_band", "discount"}:
        fields.append("discount")
    if "qualification_completeness" in need:
        fields += [f for f in crm.playbook.qualification_fields if f in o.columns]
    fields = list(dict.fromkeys(fields))
    vals = _fields_at(crm, ids, cut, fields) if fields else pd.DataFrame(index=range(len(ids)))
    for c in ("segment", "source", "product", "owner", "team"):
        if c in need:
            cols[c] = vals[c].astype("string").fillna(_MISSING).to_numpy(dtype=object)
    for n in names:
        if n.endswith("_known"):
            cols[n] = vals[n[: -len("_known")]].notna().to_numpy(float)
    if "competitor_present" in need:
        cols["competitor_present"] = vals["competitor"].notna().to_numpy(float)
    if need & {"discount_band", "discount"}:
        disc = vals["discount"].astype(float).fillna(0.0).to_numpy()
        cols["discount"] = disc
        band = np.where(
            disc >= HIGH_DISCOUNT - 1e-9, f">={HIGH_DISCOUNT:.0%}", np.where(disc > 0, f"<{HIGH_DISCOUNT:.0%}", "none")
        )
        cols["discount_band"] = band.astype(object)
    if "qualification_completeness" in need:
        q = [f for f in crm.playbook.qualification_fields if f in vals]
        cols["qualification_completeness"] = vals[q].notna().mean(axis=1).to_numpy(float) if q else np.nan
    if need & {"deal_size_band", "log2_amount"}:
        amt = _amount_at(crm, ex)
        cols["log2_amount"] = np.log2(np.clip(amt, 1.0, None))
        cols["deal_size_band"] = _bands(amt)
    if need & {"activities", "meeting_share", "report_completeness"} or any(f"{t}s" in need for t in ACTIVITY_TYPES):
        cols.update(_activity_counts(crm, ex))
    if "days_in_stage" in need:
        cols["days_in_stage"] = ex["days_in_stage"].to_numpy(float)
    if "deal_age_days" in need:
        created = o["created_at"].reindex(ids)
        cols["deal_age_days"] = ((cut.to_numpy() - created.to_numpy()) / np.timedelta64(1, "s")) / _DAY_S
    if "close_date_pushes" in need:
        cols["close_date_pushes"] = _pushes_before(crm, ex)
    return pd.DataFrame({k: cols[k] for k in ["opportunity_id", "exited_at", *names]})


# --------------------------------------------------------------------------- helpers
def _fields_at(crm: CRM, ids: np.ndarray, cut: pd.Series, fields: list[str]) -> pd.DataFrame:
    """Opportunity ``fields`` of deals ``ids`` as they were just before each deal's ``cut`` time."""
    o = crm.opportunities.set_index("opportunity_id")
    out = o.reindex(ids)[fields].reset_index(drop=True)
    fh = crm.field_history
    fh = fh[fh["field"].isin(fields) & fh["opportunity_id"].isin(ids)]
    if fh.empty:
        return out
    pos = pd.Series(np.arange(len(ids)), index=ids)
    row = pos.reindex(fh["opportunity_id"].to_numpy()).to_numpy()
    later = fh[(fh["changed_at"].to_numpy() >= cut.to_numpy()[row])]
    later = later.sort_values(["opportunity_id", "changed_at"], kind="stable")
    first = later.groupby(["opportunity_id", "field"], sort=False).head(1)
    for field, grp in first.groupby("field", sort=False):
        kind = TABLES["opportunities"].column(str(field)).kind
        v, _ = coerce_column(grp["old_value"].reset_index(drop=True), kind)
        col = out[field].copy()
        col.iloc[pos.reindex(grp["opportunity_id"].to_numpy()).to_numpy()] = v.to_numpy()
        out[field] = col
    return out


def _amount_at(crm: CRM, ex: pd.DataFrame) -> np.ndarray:
    """Amount from the last history row strictly before the exit (the current amount without history)."""
    h = crm.history[["opportunity_id", "changed_at", "amount"]]
    h = h[h["opportunity_id"].isin(ex["opportunity_id"])].sort_values("changed_at", kind="stable")
    h = h.assign(opportunity_id=h["opportunity_id"].astype(object))
    left = ex[["opportunity_id", "exited_at"]].reset_index().sort_values("exited_at", kind="stable")
    left["opportunity_id"] = left["opportunity_id"].astype(object)
    m = pd.merge_asof(
        left,
        h,
        left_on="exited_at",
        right_on="changed_at",
        by="opportunity_id",
        allow_exact_matches=False,
        direction="backward",
    )
    amt = m.set_index("index")["amount"].reindex(ex.index).to_numpy(float)
    cur = crm.opportunities.set_index("opportunity_id")["amount"].reindex(ex["opportunity_id"]).to_numpy(float)
    return np.where(np.isnan(amt), cur, amt)


def _bands(amount: np.ndarray) -> np.ndarray:
    """Quartile bands ``q1`` (smallest) to ``q4`` of ``amount`` (fewer bands when values tie)."""
    if len(amount) == 0:
        return np.array([], dtype=object)
    edges = np.unique(np.quantile(amount, [0.25, 0.5, 0.75]))
    idx = np.searchsorted(edges, amount, side="right")
    return np.array([f"q{i + 1}" for i in idx], dtype=object)


def _positions(ids: np.ndarray, values: pd.Series) -> np.ndarray:
    """Row of each of ``values`` among the (unique) deal ``ids``; -1 when it is not one of them."""
    return pd.Index(ids).get_indexer(values.to_numpy(dtype=object))


def _activity_counts(crm: CRM, ex: pd.DataFrame) -> dict[str, np.ndarray]:
    """Activities done strictly before each deal left the stage: counts per type, mix, report completeness."""
    ids = ex["opportunity_id"].to_numpy()
    n, n_types = len(ids), len(ACTIVITY_TYPES)
    a = crm.activities
    pos = _positions(ids, a["opportunity_id"])
    keep = pos >= 0
    done = a["done_at"].to_numpy()
    keep[keep] = done[keep] < ex["exited_at"].to_numpy()[pos[keep]]  # not done (NaT) compares False
    rows = np.flatnonzero(keep)
    p = pos[rows]
    kind = pd.Index(list(ACTIVITY_TYPES)).get_indexer(a["type"].to_numpy(dtype=object)[rows])
    ok = kind >= 0
    counts = np.bincount(p[ok] * n_types + kind[ok], minlength=n * n_types).reshape(n, n_types).astype(float)
    out = {f"{t}s": counts[:, j] for j, t in enumerate(ACTIVITY_TYPES)}
    total = counts.sum(axis=1)
    out["activities"] = total
    meet = out["visits"] + out["meetings"]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["meeting_share"] = np.where(total > 0, meet / total, 0.0)
    is_report = np.isin(kind, (ACTIVITY_TYPES.index("visit"), ACTIVITY_TYPES.index("meeting")))
    if is_report.any():
        boxes = a[list(REPORT_BOXES)].iloc[rows[is_report]]
        filled = boxes.astype("float64").fillna(0.0).mean(axis=1).to_numpy()
        s = np.bincount(p[is_report], weights=filled, minlength=n)
        c = np.bincount(p[is_report], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            rc = np.where(c > 0, s / np.maximum(c, 1), 0.0)
    else:
        rc = np.zeros(n)
    out["report_completeness"] = rc
    return out


def _pushes_before(crm: CRM, ex: pd.DataFrame) -> np.ndarray:
    """Close-date pushes (a later close date than the previous history row) recorded before the exit."""
    ids = ex["opportunity_id"].to_numpy()
    h = crm.history
    pos = _positions(ids, h["opportunity_id"])
    rows = np.flatnonzero(pos >= 0)
    p = pos[rows]
    changed = h["changed_at"].to_numpy()[rows]
    close = h["close_date"].to_numpy()[rows]
    order = np.lexsort((changed, p))  # per deal, in time order (stable: ties keep the table's order)
    p, changed, close = p[order], changed[order], close[order]
    push = np.zeros(len(p), dtype=bool)
    push[1:] = (p[1:] == p[:-1]) & (close[1:] > close[:-1])  # NaT compares False
    before = changed < ex["exited_at"].to_numpy()[p]
    return np.bincount(p[push & before], minlength=len(ids)).astype(float)
