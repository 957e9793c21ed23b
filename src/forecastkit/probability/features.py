"""Point-in-time deal features and training rows, leak-proof by construction.

Every feature is computed by :func:`point_in_time_features` from **one snapshot
only** - ``crm.as_of(d)`` - for the deals open in it; nothing else is passed in,
so nothing learned after ``d`` can reach a feature. The registry :data:`FEATURES`
lists what may be asked for; :data:`FORBIDDEN_FEATURES` lists the columns that are
only known once a deal closes (loss reason, close timestamp, status, final stage,
cycle length...): asking for one raises :class:`~forecastkit.errors.LeakageError`.

:func:`training_rows` builds the ``(deal, as-of date)`` rows at regular dates, with
the label ``won`` (1 won, 0 lost) read from the full snapshot; rows of deals still
open in the full snapshot have no label and are dropped (their count is in
``rows.attrs["unlabelled"]``).
"""

from __future__ import annotations

import weakref
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit._text import text_is
from forecastkit.data import timeline
from forecastkit.data.crm import CRM
from forecastkit.data.timeline import close_date_pushes, current_stage_age, qualification_completeness
from forecastkit.errors import InsufficientDataError, LeakageError, ParameterError

__all__ = [
    "Feature",
    "FEATURES",
    "FORBIDDEN_FEATURES",
    "as_of_dates",
    "DEFAULT_FEATURES",
    "check_features",
    "point_in_time_features",
    "training_rows",
    "training_sample",
    "MAX_TRAINING_DEALS",
]

_MISSING = "(missing)"
_OWNER_PRIOR = 10.0  # pseudo-deals at the company rate in the owner's win rate
_OWNER_WINDOW = pd.Timedelta(days=730)
_ACTIVITY_WINDOW = pd.Timedelta(days=30)

#: Default cap on the deals :func:`training_rows` rewinds (see :func:`training_sample`).
MAX_TRAINING_DEALS = 30_000


@dataclass(frozen=True)
class Feature:
    """One point-in-time feature: its name, kind and what it measures at the as-of date."""

    name: str
    kind: Literal["numeric", "categorical"]
    description: str


_F = [
    Feature("stage", "categorical", "current stage"),
    Feature("stage_order", "numeric", "position of the current stage in the pipeline (0 = first)"),
    Feature("days_in_stage", "numeric", "days since the deal entered its current stage"),
    Feature("deal_age_days", "numeric", "days since the deal was created"),
    Feature("stage_age_ratio", "numeric", "days in the current stage over the stage's age cap (playbook)"),
    Feature("log_amount", "numeric", "log(1 + amount)"),
    Feature("amount_change", "numeric", "log of the amount now over the amount at creation (history)"),
    Feature("close_date_pushes", "numeric", "times the expected close date moved later so far"),
    Feature("days_pushed", "numeric", "total days the expected close date moved later so far"),
    Feature("days_to_close_date", "numeric", "expected close date minus the as-of date, in days (negative = overdue)"),
    Feature("segment", "categorical", "customer segment"),
    Feature("source", "categorical", "lead source"),
    Feature("product", "categorical", "main product"),
    Feature(
        "forecast_category", "categorical", "the rep's forecast category (from history rows at or before the date)"
    ),
    Feature("qualification_completeness", "numeric", "share of BANT/MEDDIC fields filled"),
    Feature("champion_known", "numeric", "a champion is named (1/0)"),
    Feature("decision_maker_known", "numeric", "the decision maker is named (1/0)"),
    Feature("budget_known", "numeric", "a budget is given (1/0)"),
    Feature("competitor_present", "numeric", "a competitor is named (1/0)"),
    Feature("discount", "numeric", "discount granted so far (share of list price)"),
    Feature("activities_30d", "numeric", "activities done on the deal in the last 30 days"),
    Feature("days_since_activity", "numeric", "days since the last activity done on the deal (deal age if none)"),
    Feature(
        "owner_win_rate",
        "numeric",
        "owner's win rate over deals closed in the previous 730 days, shrunk toward the company's (10 deals)",
    ),
    Feature("owner_open_deals", "numeric", "open deals of the owner past the first stage (work in progress)"),
]
#: The feature registry: name -> :class:`Feature`. Only these can be requested.
FEATURES: dict[str, Feature] = {f.name: f for f in _F}
#: Every registered feature, the default of :class:`~forecastkit.probability.model.WinModel`.
DEFAULT_FEATURES: tuple[str, ...] = tuple(FEATURES)

#: Known only once a deal closes: name -> why. Requesting one raises LeakageError.
FORBIDDEN_FEATURES: dict[str, str] = {
    "loss_reason": "a loss reason is entered when the deal is lost",
    "closed_at": "the close timestamp exists only once the deal is won or lost",
    "status": "won/lost status is the label itself",
    "is_won": "derived from the final status",
    "is_lost": "derived from the final status",
    "won": "the label itself",
    "lost": "derived from the final status",
    "outcome": "the label itself",
    "final_stage": "the last stage is known only at close",
    "max_stage": "the furthest stage reached is known only at close",
    "stages_reached": "the final count of stages reached is known only at close",
    "n_stages": "the final count of stages is known only at close",
    "cycle_days": "creation-to-close days are known only at close",
    "days_to_close": "the actual days to close are known only at close",
    "actual_close_date": "the actual close date is known only at close",
    "final_amount": "the amount at close is known only at close",
    "order_amount": "orders follow a won deal",
}


def check_features(features: Sequence[str] | None) -> list[str]:
    """Validate requested feature names; return them as a list (default: every registered feature).

    Raises
    ------
    LeakageError
        A requested name is only known at close (see :data:`FORBIDDEN_FEATURES`).
    ParameterError
        A requested name is not in the registry.
    """
    names = list(DEFAULT_FEATURES if features is None else ([features] if isinstance(features, str) else features))
    leaks = [n for n in names if n in FORBIDDEN_FEATURES]
    if leaks:
        why = "; ".join(f"{n!r}: {FORBIDDEN_FEATURES[n]}" for n in leaks)
        raise LeakageError(
            f"feature(s) {leaks} are only known once a deal closes ({why}); using them would leak the outcome "
            "into the win model. Remove them: features are computed from the as-of snapshot only"
        )
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise ParameterError(f"unknown feature(s) {unknown}; registered features: {', '.join(FEATURES)}")
    if not names:
        raise ParameterError("features is empty; pass None for every registered feature")
    return names


def point_in_time_features(snapshot: CRM, features: Sequence[str] | None = None) -> pd.DataFrame:
    """Features of the deals open in ``snapshot``, computed from that snapshot alone.

    Parameters
    ----------
    snapshot : CRM
        Typically ``crm.as_of(d)``: what was known at the end of day ``d``.
    features : list of str, optional
        Names from :data:`FEATURES` (default: all of them).

    Returns
    -------
    DataFrame
        ``opportunity_id`` then one column per requested feature (see :data:`FEATURES`),
        one row per open deal; categorical features are strings (``"(missing)"`` when empty).
    """
    names = check_features(features)
    pb = snapshot.playbook
    o, open_rows = _open_deal_columns(snapshot, rows=True)
    d = snapshot.as_of_date
    ids = o["opportunity_id"]
    cols: dict[str, object] = {"opportunity_id": ids.to_numpy()}
    need = set(names)
    compact = _open_compact(snapshot, o, open_rows)  # open deals only, renumbered 0..n-1: same timeline, much faster
    h = compact.history
    if need & {"days_in_stage", "deal_age_days", "days_since_activity", "stage_age_ratio"}:
        spells, last = timeline._spells_and_last(compact)  # (compact: every deal open, in o's order)
        if last is None:
            age = current_stage_age(compact, spells)  # aligned with o
        else:  # each deal's last spell already known: no look-up of the deals among the spells
            age = timeline._current_stage_age(compact.opportunities, spells, d, last)
        cols["days_in_stage"] = age["days_in_stage"].fillna(age["deal_age_days"]).to_numpy(float)
        cols["deal_age_days"] = age["deal_age_days"].to_numpy(float)
    if "stage_age_ratio" in need:
        caps = {st.name: float(st.age_cap_days) for st in pb.stages}
        cap = o["stage"].map(caps).astype(float).to_numpy()
        cols["stage_age_ratio"] = cols["days_in_stage"] / cap
    if "stage" in need:
        cols["stage"] = _text(o["stage"])
    if "stage_order" in need:
        order = {s: i for i, s in enumerate(pb.stage_names)}
        cols["stage_order"] = o["stage"].map(order).astype(float).to_numpy()
    if "log_amount" in need:
        cols["log_amount"] = np.log1p(o["amount"].clip(lower=0).to_numpy(float))
    if "amount_change" in need:
        a0 = _first_valid(h["opportunity_id"].to_numpy(), h["amount"].to_numpy(float), len(o))
        with np.errstate(divide="ignore", invalid="ignore"):
            ch = np.log1p(o["amount"].to_numpy(float)) - np.log1p(a0)
        cols["amount_change"] = np.nan_to_num(ch, nan=0.0)
    if need & {"close_date_pushes", "days_pushed"}:
        if h["close_date"].dtype == "datetime64[ns]":
            n_pushes, days_pushed = _pushes_of_numbers(
                h["opportunity_id"].to_numpy(), h["close_date"].to_numpy(), len(o)
            )
            cols["close_date_pushes"], cols["days_pushed"] = n_pushes, days_pushed
        else:
            pushes = close_date_pushes(compact).set_index("opportunity_id").reindex(np.arange(len(o)))
            cols["close_date_pushes"] = pushes["pushes"].fillna(0).to_numpy(float)
            cols["days_pushed"] = pushes["days_pushed"].fillna(0).to_numpy(float)
    if "days_to_close_date" in need:
        cols["days_to_close_date"] = ((o["close_date"] - d).dt.total_seconds() / 86400.0).to_numpy(float)
    for c in ("segment", "source", "product"):
        if c in need:
            cols[c] = _text(o[c])
    if "forecast_category" in need:
        # from the snapshot's history only: a deal's current category ("closed", "omitted") is set at
        # close, and a rewound snapshot keeps it where history rows carry no category
        fc = np.asarray(h["forecast_category"].to_numpy(), dtype=object)
        at = _last_valid_row(h["opportunity_id"].to_numpy(), ~pd.isna(fc), len(o))
        last_fc = np.where(at >= 0, fc[np.maximum(at, 0)], None) if len(fc) else np.full(len(o), None, dtype=object)
        cols["forecast_category"] = _text(pd.Series(last_fc, dtype=object))
    if "qualification_completeness" in need:
        cols["qualification_completeness"] = qualification_completeness(o, pb).to_numpy(float)
    for name, col in (
        ("champion_known", "champion"),
        ("decision_maker_known", "decision_maker"),
        ("budget_known", "budget"),
        ("competitor_present", "competitor"),
    ):
        if name in need:
            cols[name] = o[col].notna().to_numpy(float)
    if "discount" in need:
        cols["discount"] = o["discount"].fillna(0.0).to_numpy(float)
    if need & {"activities_30d", "days_since_activity"}:
        recent, last = _activity_features(snapshot, ids, open_rows)
        cols["activities_30d"] = recent
        cols["days_since_activity"] = np.where(np.isnan(last), cols["deal_age_days"], last)
    if "owner_win_rate" in need:
        cols["owner_win_rate"] = _owner_win_rate(snapshot, o["owner"], open_rows)
    if "owner_open_deals" in need:
        active = ~text_is(o["stage"], pb.stage_names[0] if pb.stage_names else "")  # (missing stage: active)
        wip = o.loc[active, "owner"].value_counts()
        cols["owner_open_deals"] = o["owner"].map(wip).fillna(0).to_numpy(float)
    return pd.DataFrame({k: cols[k] for k in ["opportunity_id", *names]})


def training_rows(
    crm: CRM,
    start: object = None,
    end: object = None,
    freq: str = "30D",
    *,
    settle: str | pd.Timedelta = "180D",
    features: Sequence[str] | None = None,
    censored: Literal["drop", "estimate"] = "drop",
    max_deals: int | None = MAX_TRAINING_DEALS,
    sample_seed: int = 0,
) -> pd.DataFrame:
    """Labelled ``(deal, as-of date)`` rows: features from ``crm.as_of(d)``, label from ``crm``.

    Parameters
    ----------
    crm : CRM
        The full snapshot (labels are read from it; features never are).
    start, end : date, optional
        First and last as-of dates. Default ``end`` = snapshot date - ``settle``
        (so that most deals open then have closed by the snapshot date) and
        ``start`` = ``end`` - 730 days (not before 60 days after the first deal).
    freq : str
        Spacing of the as-of dates (pandas frequency, e.g. ``"30D"``, ``"MS"``).
    settle : str or Timedelta
        Gap kept between the last as-of date and the snapshot date by default.
    features : list of str, optional
        Feature names (default all; forbidden ones raise :class:`LeakageError`).
    censored : {"drop", "estimate"}
        Rows of deals still open in ``crm`` (outcome unknown). ``"drop"`` (for scoring):
        left out. ``"estimate"`` (for training): kept, labelled so that each (stage, age in
        stage) cell of :func:`~forecastkit.probability.stages.stage_age_probabilities` on
        ``crm`` gets its share of wins - the deals are ranked at random (fixed seed) and the
        first ``round(n x p_win)`` of the cell count as won. Dropping them biases a model
        toward quick outcomes: slow deals (large, enterprise) still open at the snapshot
        are mostly future losses, and without them the slow segments look too good.
    max_deals : int or None
        Cap on the deals rewound (default :data:`MAX_TRAINING_DEALS`; ``None``: no cap).
        A larger company is sampled by whole owners before rewinding
        (:func:`training_sample`), so each ``as_of`` and the model fit work on the sample
        only and the cost of a fit stays bounded; a company at or under the cap is used
        whole (same rows as without a cap).
    sample_seed : int
        Seed of the owners' order when sampling.

    Returns
    -------
    DataFrame
        ``opportunity_id, as_of, <features...>, won`` (1 = won, 0 = lost), one row
        per deal open at each as-of date whose outcome is known in ``crm``.
        ``attrs["unlabelled"]`` counts the rows of deals still open (dropped, or with an
        estimated label: ``attrs["estimated"]``).
    """
    names = check_features(features)
    if censored not in ("drop", "estimate"):
        raise ParameterError(f"censored must be 'drop' or 'estimate', got {censored!r}")
    if max_deals is not None and (isinstance(max_deals, bool) or not isinstance(max_deals, int) or max_deals < 1):
        raise ParameterError(f"max_deals must be a positive whole number of deals or None, got {max_deals!r}")
    dates = as_of_dates(crm, start, end, freq, settle=settle)
    status = crm.opportunities.set_index("opportunity_id")["status"]
    source = _training_source(crm, dates[-1] if len(dates) else crm.as_of_date, max_deals, sample_seed)
    lean_status = source[1].opportunities["status"].to_numpy(dtype=object)
    parts, unlabelled = [], 0
    for d in dates:
        f, numbers = _features_at(crm, source, d, names)
        if numbers is None:
            st = status.reindex(f["opportunity_id"].to_numpy()).to_numpy(dtype=object)
        else:  # the deals' numbers in the lean snapshot, whose rows carry the full snapshot's status
            st = lean_status[numbers]
        known = (st == "won") | (st == "lost")
        unlabelled += int((~known).sum())
        if censored == "estimate":
            f = f.assign(won=np.where(known, (st == "won").astype(float), np.nan))
        else:
            f = f[known].assign(won=(st[known] == "won").astype(np.int64))
        f.insert(1, "as_of", d)
        parts.append(f)
    rows = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["opportunity_id", "as_of", *names, "won"])
    )
    if censored == "estimate":
        open_rows = rows["won"].isna().to_numpy()
        rows["won"] = rows["won"].fillna(0).astype(np.int64)
        if open_rows.any():
            rows.loc[open_rows, "won"] = _estimated_labels(crm, rows.loc[open_rows, "opportunity_id"].to_numpy())
        rows.attrs["estimated"] = int(open_rows.sum())
    rows.attrs["unlabelled"] = unlabelled
    return rows


def _estimated_labels(crm: CRM, ids: np.ndarray) -> np.ndarray:
    """0/1 labels of rows of deals still open in ``crm``, in the proportions of their stage x age cell."""
    import warnings

    from forecastkit.probability.stages import stage_age_probabilities

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = stage_age_probabilities(crm, on_insufficient="warn")
    age = current_stage_age(crm).set_index("opportunity_id").reindex(ids)
    p = np.full(len(ids), np.nan)
    for st, t in table.groupby("stage", sort=False):
        here = (age["stage"] == st).to_numpy(dtype=bool, na_value=False)
        band = np.searchsorted(t["age_from"].to_numpy(float), age["days_in_stage"].to_numpy(float)[here], side="right")
        p[here] = t["p_win"].to_numpy(float)[np.clip(band - 1, 0, len(t) - 1)]
    p = np.nan_to_num(p, nan=0.0)
    cell = pd.Series(np.round(p, 6))
    rng = np.random.default_rng(0)
    rank = pd.Series(rng.random(len(ids))).groupby(cell.to_numpy()).rank(method="first").to_numpy() - 1
    size = cell.groupby(cell.to_numpy()).transform("size").to_numpy()
    return (rank < np.round(size * p)).astype(np.int64)


def as_of_dates(
    crm: CRM, start: object = None, end: object = None, freq: str = "30D", *, settle: str | pd.Timedelta = "180D"
) -> pd.DatetimeIndex:
    """The as-of dates of :func:`training_rows` (see its parameters).

    A fixed spacing (``"30D"``) counts back from ``end``, so ``end`` is always a date;
    a calendar frequency (``"MS"``) runs from ``start``.
    """
    try:
        settle_td = pd.Timedelta(settle)
    except (ValueError, TypeError):
        raise ParameterError(f"settle={settle!r} is not a duration; use e.g. '180D'") from None
    end_ts = crm.as_of_date - settle_td if end is None else pd.Timestamp(end).normalize()
    if start is None:
        first = crm.opportunities["created_at"].min()
        start_ts = max(end_ts - pd.Timedelta(days=730), (first if pd.notna(first) else end_ts) + pd.Timedelta(days=60))
    else:
        start_ts = pd.Timestamp(start).normalize()
    if end_ts > crm.as_of_date:
        raise ParameterError(f"end={end_ts.date()} is after the snapshot date {crm.as_of_date.date()}")
    if start_ts > end_ts:
        raise InsufficientDataError(
            f"no as-of dates between {start_ts.date()} and {end_ts.date()}: the history is too short "
            f"(snapshot {crm.as_of_date.date()}, settle {settle}); pass an earlier start or a shorter settle"
        )
    try:
        step = pd.Timedelta(freq)
    except (ValueError, TypeError):
        step = None
    if step is not None:  # fixed spacing: count back from end so that the last date is end
        if step <= pd.Timedelta(0):
            raise ParameterError(f"freq={freq!r} must be a positive duration, e.g. '30D'")
        k = int((end_ts - start_ts) / step)
        return pd.DatetimeIndex([end_ts - i * step for i in range(k, -1, -1)])
    try:
        dates = pd.date_range(start=start_ts, end=end_ts, freq=freq)
    except ValueError:
        raise ParameterError(f"freq={freq!r} is not a pandas frequency; use e.g. '30D', '14D' or 'MS'") from None
    return dates


# --------------------------------------------------------------------------- helpers
#: Point-in-time features already computed, per snapshot object (dropped with it), training
#: source (deal sample) and as-of date: the forecast, its backtest, the diagnosis and the
#: calibration report fit win models on the same snapshot and dates, and a snapshot is never
#: modified in place.
_FEATURE_CACHE: weakref.WeakKeyDictionary[CRM, dict[tuple, tuple[pd.DataFrame, np.ndarray | None]]] = (
    weakref.WeakKeyDictionary()
)
#: The lean training snapshot per full snapshot and sample key (see :func:`_training_source`).
_SOURCE_CACHE: weakref.WeakKeyDictionary[CRM, dict[tuple, tuple[tuple, CRM, np.ndarray | None]]] = (
    weakref.WeakKeyDictionary()
)


def _features_at(
    crm: CRM, source: tuple[tuple, CRM, np.ndarray | None], d: pd.Timestamp, names: list[str]
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``point_in_time_features(source.as_of(d), names)``, computed once per snapshot, source and date.

    Also the rows' deal numbers in the lean snapshot (None when it keeps the ids).
    """
    key, lean, ids = source
    per_date = _FEATURE_CACHE.setdefault(crm, {})
    f, numbers = per_date.get((key, d), (None, None))
    if f is None or not set(names) <= set(f.columns):
        day = pd.Timestamp(d).normalize()  # (as_of_dates ends on or before the snapshot date: as_of's check holds)
        f = point_in_time_features(lean._as_of(day, skip=("field_history",)), names)  # they read no field history
        numbers = None
        if ids is not None:  # the lean snapshot numbers its deals: back to their ids
            numbers = f["opportunity_id"].to_numpy(dtype=np.int64)
            f["opportunity_id"] = ids[numbers]
        per_date[(key, d)] = (f, numbers)
    return f[["opportunity_id", *names]].copy(), numbers


def training_sample(
    crm: CRM, max_deals: int | None = MAX_TRAINING_DEALS, *, until: object = None, seed: int = 0
) -> np.ndarray:
    """Opportunity ids the win model trains on: every deal, or whole owners up to ``max_deals`` deals.

    Deals created on or before ``until`` (default the snapshot date) are counted. When
    there are more than ``max_deals``, owners are taken in a fixed pseudo-random order
    (CRC-32 of ``"<seed>:<owner>"``: the same order in every snapshot and run) while their
    deals fit under the cap (at least one owner). Sampling whole owners keeps the
    owner features what they are on the full company (``owner_open_deals`` exactly;
    ``owner_win_rate`` up to the company rate it is shrunk toward, taken from the
    sample); a random sample of deals would thin every owner's pipeline.

    Measured on the 100k benchmark company (train on what was known 365 days before
    the snapshot, score the later as-of dates, 19,638 held-out rows): uncapped
    (37,054 training deals) Brier 0.0686, ECE 0.008; capped at 30,000 (about 20,400
    training deals, three seeds) Brier 0.0687-0.0688 (+0.0001 +- 0.0001, deal-clustered
    bootstrap), ECE 0.006-0.008; at 15,000 Brier +0.0005 (+- 0.00015).

    Returns
    -------
    ndarray
        The ids, in ``crm.opportunities`` order (all of them when under the cap).
    """
    o = crm.opportunities
    end = crm.as_of_date if until is None else pd.Timestamp(until)
    in_scope = ~(o["created_at"] >= end + pd.Timedelta(days=1)).to_numpy(dtype=bool, na_value=False)
    if max_deals is None or int(in_scope.sum()) <= max_deals:
        return o["opportunity_id"].to_numpy()
    owner = o["owner"].astype(object).where(o["owner"].notna(), _MISSING)
    counts = owner[in_scope].value_counts()
    order = sorted(counts.index, key=lambda w: (zlib.crc32(f"{seed}:{w}".encode()), str(w)))
    n = counts.reindex(order).to_numpy()
    take = max(1, int(np.searchsorted(np.cumsum(n), max_deals, side="right")))
    keep = owner.isin(set(order[:take])).to_numpy(dtype=bool)
    return o.loc[keep, "opportunity_id"].to_numpy()


def _training_source(
    crm: CRM, until: pd.Timestamp, max_deals: int | None, seed: int = 0
) -> tuple[tuple, CRM, np.ndarray | None]:
    """``(key, lean, ids)``: the sampled deals' tables, with only what the features read, ready to rewind.

    ``lean.as_of(d)`` gives the same features as ``crm.as_of(d)`` for the sampled deals:
    opportunities keep the columns features and the rewind read, field history the
    fields among them, activities those done on a deal. Deals are numbered by their row
    in ``lean.opportunities`` (``opportunity_id`` 0, 1, ... in every table; rows of other
    deals -1) and ``ids`` gives each number's id: each rewind then matches numbers instead
    of hashing text ids (about twice as fast). ``ids`` is None when the ids are not
    distinct text (the tables keep their ids then).
    """
    ids = training_sample(crm, max_deals, until=until, seed=seed)
    o = crm.opportunities
    whole = len(ids) == len(o)
    key = ("all",) if whole else ("owners", max_deals, pd.Timestamp(until), seed)
    per = _SOURCE_CACHE.setdefault(crm, {})
    if key in per:
        return per[key]
    pb = crm.playbook
    cols = [*_DEAL_COLUMNS, *pb.qualification_fields, *_REWIND_COLUMNS]
    cols = [c for c in dict.fromkeys(cols) if c in o]
    if whole:
        opps, hist, fh, act = o[cols], crm.history, crm.field_history, crm.activities
        act_keep = (act["opportunity_id"].notna() & act["done_at"].notna()).to_numpy(dtype=bool)
    else:
        mine = _member_test(ids)
        opps = o.loc[mine(o["opportunity_id"]), cols]
        hist = crm.history[mine(crm.history["opportunity_id"])]
        fh = crm.field_history[mine(crm.field_history["opportunity_id"])]
        act = crm.activities
        act_keep = act["done_at"].notna().to_numpy(dtype=bool) & mine(act["opportunity_id"])
    fh = fh[fh["field"].isin(cols).to_numpy(dtype=bool, na_value=False)]
    act = act.loc[act_keep, ["opportunity_id", "created_at", "due_at", "done_at"]]
    tables = {
        "opportunities": opps.reset_index(drop=True),
        "history": hist.reset_index(drop=True),
        "field_history": fh.reset_index(drop=True),
        "activities": act.reset_index(drop=True),
    }
    ids = _number_deals(tables)
    lean = CRM(tables, as_of_date=crm.as_of_date, playbook=pb, load_report=crm.load_report)
    per[key] = (key, lean, ids)
    return per[key]


def _member_test(ids: np.ndarray):  # type: ignore[no-untyped-def]
    """A function telling which cells of a column are among ``ids`` (``Series.isin(set(ids))``).

    Text ids without missing values are hashed by pyarrow (several times faster on
    millions of rows); anything else goes through pandas.
    """
    from forecastkit.data.validate import _isin

    ids = np.asarray(ids, dtype=object)
    if len(ids) and not pd.isna(ids).any() and all(isinstance(v, str) for v in ids):
        keys = pd.Series(ids, dtype=object)
        return lambda col: _isin(col, keys).to_numpy(dtype=bool)
    mine = set(ids)
    return lambda col: col.isin(mine).to_numpy(dtype=bool)


def _number_deals(tables: dict[str, pd.DataFrame]) -> np.ndarray | None:
    """Replace the deal ids of ``tables`` by deal numbers (row in opportunities, -1 for others); return the ids.

    Nothing is changed (None returned) unless the opportunities' ids are distinct text
    and every other id is text or missing: only then is the numbering one-to-one.
    """
    from forecastkit.data.validate import text_positions

    o = tables["opportunities"]["opportunity_id"]
    ids = o.to_numpy(dtype=object)
    if o.isna().any() or not o.is_unique:
        return None
    pos = {}
    for name in ("opportunities", "history", "field_history", "activities"):
        p = text_positions(tables[name]["opportunity_id"], o)
        if p is None:
            return None
        pos[name] = p
    for name, p in pos.items():
        tables[name] = tables[name].assign(opportunity_id=p)
    return ids


def _open_compact(snapshot: CRM, o: pd.DataFrame, open_rows: np.ndarray | None = None) -> CRM:
    """The open deals ``o`` of ``snapshot`` and their history, deals renumbered by position (int ids).

    Integer ids and categorical stages make the shared timeline functions fast on
    large snapshots; nothing but the snapshot's own rows goes in. Each history row's
    deal is looked up by id, or, when the snapshot already holds each history row's row
    in its opportunities (distinct ids; the backtest's rewinds set it, see
    ``CRM._rows_of_deals``) and ``open_rows`` gives the rows of ``o`` there, by position.
    """
    pb = snapshot.playbook
    stage_t = pd.CategoricalDtype(list(pb.all_stage_names))
    h = snapshot.history
    known = snapshot._cached_only(("deal_pos", "history")) if open_rows is not None else None
    if known is not None and len(known) == len(h):
        row_of = np.full(len(snapshot.opportunities) + 1, -1, dtype=np.int64)
        row_of[open_rows] = np.arange(len(o))
        code = row_of[known]  # (known = -1, an unknown deal, reads the last, -1)
    else:
        code = _deal_positions(h["opportunity_id"], o["opportunity_id"])
    keep = np.flatnonzero(code >= 0)
    fc = np.asarray(h["forecast_category"].array, dtype=object)[keep]
    hist = pd.DataFrame(
        {
            "opportunity_id": code[keep],
            "changed_at": h["changed_at"].to_numpy()[keep],
            "stage": timeline._categorical(pd.Series(np.asarray(h["stage"].array, dtype=object)[keep]), stage_t),
            "amount": h["amount"].to_numpy(float)[keep],
            "close_date": h["close_date"].to_numpy()[keep],
            "forecast_category": fc,
        }
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": np.arange(len(o), dtype=np.int64),
            "created_at": o["created_at"].to_numpy(),
            "stage": timeline._categorical(o["stage"], stage_t),
            "status": "open",
        }
    )
    return CRM({"opportunities": opps, "history": hist}, as_of_date=snapshot.as_of_date, playbook=pb)


def _first_valid(deal: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Each deal's (numbers ``0..n-1``) first non-NaN value among its rows, in row order (NaN: none).

    ``groupby(deal, sort=False)[values].first()`` reindexed to ``0..n-1``.
    """
    rows = np.flatnonzero(~np.isnan(values))
    first = np.full(n, len(values), dtype=np.int64)
    np.minimum.at(first, deal[rows], rows)
    out = np.full(n, np.nan)
    got = first < len(values)
    out[got] = values[first[got]]
    return out


def _last_valid_row(deal: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Each deal's (numbers ``0..n-1``) last row where ``valid`` holds (-1: none): ``groupby(...).last()``'s row."""
    rows = np.flatnonzero(valid)
    last = np.full(n, -1, dtype=np.int64)
    np.maximum.at(last, deal[rows], rows)
    return last


def _pushes_of_numbers(deal: np.ndarray, close_date: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``pushes`` and ``days_pushed`` of :func:`~forecastkit.data.timeline.close_date_pushes` per deal ``0..n-1``.

    ``deal``: each history row's deal number (table order); ``close_date``: datetime64[ns]. A
    push is a row whose deal is the previous row's and whose close date is at least a day
    later (whole days, rounded down as ``Series.dt.days``); deals without rows get 0.
    """
    if len(deal) < 2:
        return np.zeros(n), np.zeros(n)
    same = deal[1:] == deal[:-1]
    t = close_date.view(np.int64)
    known = same & ~np.isnat(close_date[1:]) & ~np.isnat(close_date[:-1])
    days = np.floor_divide(t[1:] - t[:-1], 86_400_000_000_000)
    pushed = known & (days > 0)
    who = deal[1:][pushed]
    n_pushes = np.bincount(who, minlength=n).astype(float)
    days_pushed = np.bincount(who, weights=days[pushed].astype(float), minlength=n)
    return n_pushes, days_pushed


def _deal_positions(keys: pd.Series, ids: pd.Series) -> np.ndarray:
    """Position in ``ids`` (distinct) of each of ``keys`` (-1 when absent): ``timeline._row_positions``.

    Integer ids (the deal numbers of :func:`_training_source`) are looked up as integers.
    """
    if keys.dtype == np.int64 and ids.dtype == np.int64:
        return pd.Index(ids.to_numpy()).get_indexer(keys.to_numpy()).astype(np.int64)
    return timeline._row_positions(keys, ids)


#: Opportunity columns ``CRM.as_of`` reads or sets besides the features' own.
_REWIND_COLUMNS = ("status", "closed_at", "forecast_category", "loss_reason", "probability")

_DEAL_COLUMNS = (
    "opportunity_id",
    "created_at",
    "stage",
    "amount",
    "close_date",
    "segment",
    "source",
    "product",
    "owner",
    "discount",
    "champion",
    "decision_maker",
    "budget",
    "competitor",
)


def _open_deal_columns(snapshot: CRM, rows: bool = False):  # type: ignore[no-untyped-def]
    """The open deals (``snapshot.open_deals`` order) with only the columns features read.

    With ``rows=True``, also their row positions in ``snapshot.opportunities``.
    """
    opps = snapshot.opportunities
    cols = list(dict.fromkeys([*_DEAL_COLUMNS, *snapshot.playbook.qualification_fields]))
    cols = [c for c in cols if c in opps]
    open_rows = np.flatnonzero(snapshot._open_mask())  # (text_is(status, "open"), kept per snapshot)
    out = opps.take(open_rows)[cols].reset_index(drop=True)  # (rows first: the few open deals' cells are copied)
    return (out, open_rows) if rows else out


def _text(s: pd.Series) -> np.ndarray:
    return s.astype("string").fillna(_MISSING).to_numpy(dtype=object)


def _activity_features(
    snapshot: CRM, ids: pd.Series, open_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Done activities of each deal of ``ids`` in the last 30 days, and days since its last one (NaN: none).

    Text ids: each activity's deal is found by position (a pyarrow hash look-up) and
    counted with ``bincount`` / the latest date kept with ``maximum.at``, without copying
    the activities table; the same numbers as the groupby (kept for other ids). Distinct
    integer ids (the deal numbers of :func:`_training_source`) are looked up as integers. When the
    snapshot already holds each activity's row in its opportunities (distinct ids; the
    backtest's rewinds set it, see ``CRM._rows_of_deals``) and ``open_rows`` gives the
    rows of ``ids`` there, no id is hashed.
    """
    from forecastkit.data.validate import text_positions

    a = snapshot.activities
    d_end = snapshot.as_of_date + pd.Timedelta(days=1)
    done_at = a["done_at"]
    if len(ids) and done_at.dtype == "datetime64[ns]":
        known = snapshot._cached_only(("deal_pos", "activities")) if open_rows is not None else None
        if known is not None and len(known) == len(a):
            first = np.arange(len(ids))
            row_of = np.full(len(snapshot.opportunities) + 1, -1, dtype=np.int64)
            row_of[open_rows] = first
            pos = row_of[known]  # (known = -1 reads the last, -1)
        elif ids.dtype == np.int64 and a["opportunity_id"].dtype == np.int64 and ids.is_unique:
            first = np.arange(len(ids))
            pos = pd.Index(ids.to_numpy()).get_indexer(a["opportunity_id"].to_numpy())
        else:
            first = text_positions(ids, ids)  # each id's first row among ids (-1: missing id)
            pos = text_positions(a["opportunity_id"], ids) if first is not None else None
        if pos is not None:
            when = done_at.to_numpy().view(np.int64)
            nat = np.iinfo(np.int64).min  # NaT
            keep = (pos >= 0) & (when != nat)
            p, w = pos[keep], when[keep]
            recent = np.bincount(p[w >= (d_end - _ACTIVITY_WINDOW).value], minlength=len(ids)).astype(float)
            latest = np.full(len(ids), nat, dtype=np.int64)
            np.maximum.at(latest, p, w)
            found = first >= 0
            n = np.where(found, recent[np.where(found, first, 0)], 0.0)
            last = pd.Series(np.where(found, latest[np.where(found, first, 0)], nat).view("datetime64[ns]"))
            return n, _days_since(snapshot, last)
    return _activity_features_by_groupby(snapshot, ids)


def _activity_features_by_groupby(snapshot: CRM, ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_activity_features` with two groupbys over the done activities (any id type)."""
    a = snapshot.activities
    d_end = snapshot.as_of_date + pd.Timedelta(days=1)
    done = a[a["done_at"].notna() & a["opportunity_id"].notna()]
    recent = done[done["done_at"] >= d_end - _ACTIVITY_WINDOW]
    n = recent.groupby("opportunity_id", sort=False).size().reindex(ids.to_numpy()).fillna(0).to_numpy(float)
    last = done.groupby("opportunity_id", sort=False)["done_at"].max().reindex(ids.to_numpy())
    return n, _days_since(snapshot, last)


def _days_since(snapshot: CRM, last: pd.Series) -> np.ndarray:
    """Days from each date of ``last`` to the snapshot date (0 at least; NaN where no date)."""
    return ((snapshot.as_of_date - last).dt.total_seconds() / 86400.0).clip(lower=0).to_numpy(float)


def _owner_win_rate(snapshot: CRM, owners: pd.Series, open_rows: np.ndarray | None = None) -> np.ndarray:
    """``owner_win_rate`` of each of ``owners`` (see :data:`FEATURES`).

    Closed deals: status other than ``open`` (a missing status too, counted in neither
    the wins nor the closed deals of the rates), closed (``closed_at``, else
    ``close_date``) after the snapshot date - 730 days. Owners without such deals get
    the company rate (NaN when there is none). ``open_rows``: the rows of the open deals
    in ``snapshot.opportunities``, when the caller has them.
    """
    o = snapshot.opportunities
    status = o["status"]
    if open_rows is None:
        is_open = text_is(status, "open")
    else:
        is_open = np.zeros(len(o), dtype=bool)
        is_open[open_rows] = True
    rows = np.flatnonzero(~is_open)  # (a missing status is not open)
    since = snapshot.as_of_date - _OWNER_WINDOW
    if o["closed_at"].dtype == "datetime64[ns]" and o["close_date"].dtype == "datetime64[ns]":
        closed_at = o["closed_at"].to_numpy()[rows]
        when = np.where(np.isnat(closed_at), o["close_date"].to_numpy()[rows], closed_at)
        rows = rows[when > since.to_datetime64()]  # (NaT: False, as pandas compares it)
    else:
        when = o["closed_at"].iloc[rows].fillna(o["close_date"].iloc[rows])
        rows = rows[(when > since).to_numpy(dtype=bool)]
    is_won = text_is(status, "won")[rows]
    won = is_won.astype(float)
    unsure = np.flatnonzero(~is_won & ~text_is(status, "lost")[rows])
    if len(unsure):  # neither won nor lost: (status == "won") may be missing (NaN), as pandas compares them
        won[unsure] = (status.iloc[rows[unsure]] == "won").astype(float).to_numpy()
    won = pd.Series(won)
    m = float(won.mean()) if len(rows) else np.nan  # no closed deal yet: unknown
    if isinstance(o["owner"].dtype, pd.StringDtype) and o["owner"].dtype.storage == "python":
        return _owner_rates_by_codes(o["owner"], rows, won.to_numpy(), owners, m)
    g = won.groupby(o["owner"].iloc[rows].to_numpy()).agg(["sum", "count"])
    rate = (g["sum"] + _OWNER_PRIOR * m) / (g["count"] + _OWNER_PRIOR)
    return owners.map(rate).fillna(m).to_numpy(float)


def _owner_rates_by_codes(
    owner: pd.Series, rows: np.ndarray, won: np.ndarray, owners: pd.Series, m: float
) -> np.ndarray:
    """The end of :func:`_owner_win_rate` for a text ``owner`` column, with owner codes and ``bincount``.

    The same numbers as ``won.groupby(owner[rows]).agg(["sum", "count"])`` mapped onto
    ``owners`` (NaN-skipping sums and counts of 0/1 values are whole numbers, exact in any
    order): an owner among the closed deals gets ``(sum + prior x m) / (count + prior)``
    (its count may be 0 when every status is missing), another owner or a missing one ``m``.
    """
    closed = np.asarray(owner.array, dtype=object)[rows]
    codes, uniques = pd.factorize(np.concatenate([closed, np.asarray(owners.array, dtype=object)]))
    k = len(uniques)
    c_closed, c_open = codes[: len(closed)], codes[len(closed) :]
    named = c_closed >= 0
    seen = np.bincount(c_closed[named], minlength=k) > 0
    ok = named & ~np.isnan(won)
    total = np.bincount(c_closed[ok], weights=won[ok], minlength=k)
    count = np.bincount(c_closed[ok], minlength=k)
    rate = (total + _OWNER_PRIOR * m) / (count + _OWNER_PRIOR)
    has = c_open >= 0
    has[has] = seen[c_open[has]]
    return np.where(has, rate[np.where(has, c_open, 0)] if k else m, m)
