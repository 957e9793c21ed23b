"""Slips: the probability that a deal, if won, is won *inside* the forecast period.

A calibrated win probability says whether a deal will be won, not when. Close dates
slip (case 2 of the domain: "good conversion, cycle too long"), so a deal dated this
quarter is often won next quarter, and a deal dated next quarter is sometimes pulled in.

Method (empirical, fitted on past snapshots)
--------------------------------------------
``p_in_period = P(won before the period ends | won, stage, close-date position,
time left in the period, pushes so far, segment, days in stage)``, a logistic
regression fitted on past as-of snapshots:

* training as-of dates ``t`` lie on a fixed weekly grid (Mondays since 2000-01-03, so
  that a rewound snapshot uses exactly the same dates), within ``lookback`` of the
  snapshot date;
* at each ``t`` every deal **open at t and won later** gives a row; its state (stage,
  days in that stage, expected close date, close-date pushes so far) is its last
  ``history`` row known at the end of day ``t``; its segment is the opportunity's;
* the label is 1 when the deal was won (``closed_at``) before the end of the fiscal
  period (of the forecast's frequency) that contains ``t``;
* only periods that ended at least ``settle`` days before the snapshot date are used:
  a deal open then and still open at the snapshot date may yet be won, and would be
  missing from the "won" rows (``settle`` makes that censoring negligible).

Features: the stage (one-hot), the close-date position relative to the period
(``overdue`` - dated on or before the as-of day -, ``in_period``, ``next_period``,
``later``; one-hot), each position times the share of the period still to run, the
number of pushes so far (capped at 3), the customer segment (one-hot, segments with
at least :data:`MIN_SEGMENT_ROWS` training rows; others and empty count as unknown)
and each segment times the share of the period still to run, and log(1 + days in the
current stage). Why the segment: a close date that has passed is pushed by a few
weeks whatever the deal, so after a push the date no longer tells a slow (enterprise)
deal from a fast one; on the sample company (enterprise deals 1.5x slower) the model
without the segment put enterprise deals' ``p_in_period`` 30-50% above the truth and
small-business deals' 10-15% below (see ``benchmarks/bench_forecast.py``). With fewer
than :data:`MIN_SLIP_ROWS` training rows (or no row of one label) the model falls
back, with a :class:`~forecastkit.errors.FallbackWarning`, to trusting the close date:
``p_in_period = 1`` for deals dated before the period end, else 0.

The forecast's probability of booking a deal in the period is then
``p_win x p_in_period``.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, ParameterError
from forecastkit.periods import Freq, Period, period_of

__all__ = ["SlipModel", "p_in_period", "slip_rows", "MIN_SLIP_ROWS", "MIN_SEGMENT_ROWS", "POSITIONS", "SLIP_FEATURES"]

#: Fewest training rows (won deals x as-of dates) before the model falls back to the close date.
MIN_SLIP_ROWS = 40
#: Fewest training rows of a segment before it gets its own term (rarer segments count as unknown).
MIN_SEGMENT_ROWS = 30
#: Optional feature groups of the slip model (all used by default; stage and close-date position always are).
SLIP_FEATURES = ("pushes", "segment", "days_in_stage")
#: Close-date positions relative to the period, in feature order.
POSITIONS = ("overdue", "in_period", "next_period", "later")
_EPOCH = pd.Timestamp("2000-01-03")  # a Monday: the weekly grid of training dates
_DAY = pd.Timedelta(days=1)
_MAX_PUSHES = 3


def _grid(start: pd.Timestamp, end: pd.Timestamp, step_days: int = 7) -> pd.DatetimeIndex:
    """Dates ``_EPOCH + k * step`` within ``[start, end]`` (the same dates whatever the snapshot)."""
    k0 = int(np.ceil((start - _EPOCH).days / step_days))
    k1 = int(np.floor((end - _EPOCH).days / step_days))
    return pd.DatetimeIndex([_EPOCH + pd.Timedelta(days=k * step_days) for k in range(k0, k1 + 1)])


def _positions(close_date: np.ndarray, t: np.ndarray, end: np.ndarray, period_days: np.ndarray) -> np.ndarray:
    """Index into :data:`POSITIONS` of each close date relative to (as-of day t, period end)."""
    cd = close_date.astype("datetime64[ns]")
    nxt = end + (period_days * 86400e9).astype("timedelta64[ns]")
    pos = np.full(len(cd), 3)
    pos[cd < nxt] = 2
    pos[cd < end] = 1
    pos[cd < t + np.timedelta64(1, "D")] = 0
    pos[np.isnat(cd)] = 1  # an undated deal is taken at its word: this period
    return pos


def _design(
    stage_idx: np.ndarray,
    pos: np.ndarray,
    frac_left: np.ndarray,
    pushes: np.ndarray,
    n_stages: int,
    seg_idx: np.ndarray | None = None,
    n_segments: int = 0,
    log_days: np.ndarray | None = None,
) -> np.ndarray:
    n = len(pos)
    st = np.zeros((n, n_stages))
    st[np.arange(n), stage_idx] = 1.0
    po = np.zeros((n, len(POSITIONS)))
    po[np.arange(n), pos] = 1.0
    parts = [st, po, po * frac_left[:, None], np.minimum(pushes, _MAX_PUSHES)[:, None].astype(float)]
    if seg_idx is not None and n_segments:
        sg = np.zeros((n, n_segments))
        ok = seg_idx >= 0
        sg[np.flatnonzero(ok), seg_idx[ok]] = 1.0
        parts += [sg, sg * frac_left[:, None]]
    if log_days is not None:
        parts.append(log_days[:, None])
    return np.hstack(parts)


#: The columns of :func:`slip_rows` and their dtypes (the empty result is typed like a full one).
_SLIP_DTYPES = {
    "opportunity_id": "string",
    "as_of": "datetime64[ns]",
    "stage": "string",
    "close_date": "datetime64[ns]",
    "pushes": "int64",
    "segment": "string",
    "days_in_stage": "float64",
    "period_end": "datetime64[ns]",
    "period_days": "float64",
    "closed_at": "datetime64[ns]",
    "in_period": "int64",
}
_SLIP_COLUMNS = list(_SLIP_DTYPES)


def _no_slip_rows() -> pd.DataFrame:
    """The empty result of :func:`slip_rows`, typed like a full one (dates compare with dates)."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SLIP_DTYPES.items()})


def slip_rows(crm: CRM, freq: Freq = "quarter", *, lookback: str = "1095D", until: object = None) -> pd.DataFrame:
    """Training rows of the slip model: one per (won deal, weekly as-of date it was open on).

    Parameters
    ----------
    crm : CRM
        Snapshot; only deals won in it are used, states are read from ``history``.
    freq : {"month", "quarter", "half", "year"}
        Period frequency whose end defines the label.
    lookback : str
        How far before the snapshot date the grid of as-of dates starts.
    until : date, optional
        Last as-of date (default: the snapshot date).

    Returns
    -------
    DataFrame
        ``opportunity_id, as_of, stage, close_date, pushes, segment`` (empty without a
        segment column), ``days_in_stage`` (days since the deal entered its stage, to
        ``as_of``), ``period_end, period_days, closed_at, in_period`` (1 when won before
        ``period_end``).
    """
    try:
        lb = pd.Timedelta(lookback)
    except (ValueError, TypeError):
        raise ParameterError(f"lookback={lookback!r} is not a duration; use e.g. '1095D'") from None
    last = crm.as_of_date if until is None else pd.Timestamp(until).normalize()
    dates = _grid(crm.as_of_date - lb, last)
    o = crm.opportunities
    won = o.loc[(o["status"] == "won") & o["closed_at"].notna(), ["opportunity_id", "created_at", "closed_at"]]
    h = crm.history
    h = h[h["opportunity_id"].isin(won["opportunity_id"])]
    if won.empty or h.empty or len(dates) == 0:
        return _no_slip_rows()
    h = h.sort_values(["opportunity_id", "changed_at"], kind="stable")
    same = h["opportunity_id"].eq(h["opportunity_id"].shift())
    pushed = (h["close_date"] > h["close_date"].shift()) & same
    same_np = same.fillna(False).to_numpy(dtype=bool)
    new_spell = ~(same_np & h["stage"].eq(h["stage"].shift()).fillna(False).to_numpy(dtype=bool))
    entered = h["changed_at"].where(new_spell).ffill()  # start of the current stage spell (as stage_spells)
    h = h.assign(pushes=pushed.astype(int).groupby(h["opportunity_id"], sort=False).cumsum(), entered_stage_at=entered)
    # pairs (won deal, date) with the deal created by the end of t and not yet won at the end of t
    # each deal's run of dates (deal by deal, dates in order): cut > created_at and cut <= closed_at
    w = won.reset_index(drop=True)
    cuts = dates.to_numpy() + np.timedelta64(1, "D")
    created = w["created_at"].to_numpy(dtype="datetime64[ns]")
    lo = np.where(np.isnat(created), len(cuts), np.searchsorted(cuts, created, side="right"))
    hi = np.searchsorted(cuts, w["closed_at"].to_numpy(dtype="datetime64[ns]"), side="right")
    n = np.maximum(hi - lo, 0)
    di = np.repeat(np.arange(len(w)), n)
    ti = lo[di] + (np.arange(len(di)) - np.repeat(np.cumsum(n) - n, n))
    pairs = pd.DataFrame(
        {
            "opportunity_id": w["opportunity_id"].to_numpy()[di],
            "as_of": dates.to_numpy()[ti],
            "_cut": cuts[ti],
            "closed_at": w["closed_at"].to_numpy()[di],
        }
    )
    if pairs.empty:
        return _no_slip_rows()
    pairs = pairs.sort_values("_cut", kind="stable")
    cols = ["opportunity_id", "changed_at", "stage", "close_date", "pushes", "entered_stage_at"]
    hs = h[cols].sort_values("changed_at", kind="stable")
    hs = hs.assign(opportunity_id=hs["opportunity_id"].astype(object))
    pairs["opportunity_id"] = pairs["opportunity_id"].astype(object)
    m = pd.merge_asof(
        pairs,
        hs,
        left_on="_cut",
        right_on="changed_at",
        by="opportunity_id",
        direction="backward",
        allow_exact_matches=False,
    )
    m = m[m["stage"].isin(crm.playbook.stage_names)]
    ends = {d: period_of(d, freq, crm.playbook) for d in pd.DatetimeIndex(m["as_of"].unique())}
    m["period_end"] = m["as_of"].map({d: p.end for d, p in ends.items()})
    m["period_days"] = m["as_of"].map({d: p.days for d, p in ends.items()}).astype(float)
    m["in_period"] = (m["closed_at"] < m["period_end"]).astype(int)
    m["pushes"] = m["pushes"].astype(int)
    m["stage"] = m["stage"].astype("string")
    m["segment"] = _segments(crm, m["opportunity_id"])
    m["days_in_stage"] = ((m["as_of"] - m["entered_stage_at"]).dt.total_seconds() / 86400.0).clip(lower=0)
    out = m[_SLIP_COLUMNS].sort_values(["as_of", "opportunity_id"], kind="stable").reset_index(drop=True)
    return out


class SlipModel:
    """P(won inside the period | won, deal state): see the module docstring for the method.

    Parameters
    ----------
    freq : {"month", "quarter", "half", "year"}
        Frequency of the forecast periods.
    lookback : str
        Window of training as-of dates before the snapshot date.
    settle : str
        Only periods that ended at least this long before the snapshot date are used.
    C : float
        Inverse L2 regularisation of the logistic regression.
    features : tuple of str
        Optional feature groups among :data:`SLIP_FEATURES` (``pushes``, ``segment``,
        ``days_in_stage``; default all); the stage and the close-date position are always used.

    Attributes
    ----------
    model_ : LogisticRegression or None
        None when the model fell back to the close-date rule.
    n_rows_ : int
        Training rows used.
    segments_ : tuple of str
        Segments with their own term.
    fallback_ : bool
        True when the close-date rule is used.
    """

    def __init__(
        self,
        freq: Freq = "quarter",
        lookback: str = "1095D",
        settle: str = "90D",
        C: float = 1.0,
        features: tuple[str, ...] = SLIP_FEATURES,
    ) -> None:
        self.freq = freq
        self.lookback = lookback
        self.settle = settle
        self.C = C
        self.features = features

    def fit(self, crm: CRM, rows: pd.DataFrame | None = None, *, known: bool = False) -> SlipModel:
        """Fit on ``crm`` (or on precomputed :func:`slip_rows` of a later snapshot, filtered to what ``crm`` knows).

        ``known=True`` says ``rows`` are already what ``crm`` knows: filtered with
        :func:`_known_rows` and with each deal's segment as ``crm`` has it (the backtest
        does this with row positions instead of id look-ups).
        """
        try:
            settle = pd.Timedelta(self.settle)
        except (ValueError, TypeError):
            raise ParameterError(f"settle={self.settle!r} is not a duration; use e.g. '90D'") from None
        bad = [f for f in self.features if f not in SLIP_FEATURES]
        if bad:
            raise ParameterError(f"unknown slip feature(s) {bad}; allowed: {', '.join(SLIP_FEATURES)}")
        if rows is None:
            rows = slip_rows(crm, self.freq, lookback=self.lookback)
        elif not known:  # rows of a later snapshot: keep what this one knows (won by its date, grid in its window)
            rows = rows[_known_rows(rows, crm.as_of_date, self.lookback)]
            rows = rows.assign(segment=_segments(crm, rows["opportunity_id"]))  # as this snapshot knows them
        rows = rows[rows["period_end"] <= crm.as_of_date + _DAY - settle]
        self.stage_names_ = tuple(crm.playbook.stage_names)
        self.n_rows_ = len(rows)
        y = rows["in_period"].to_numpy(int)
        if len(rows) < MIN_SLIP_ROWS or y.min(initial=1) == y.max(initial=0):
            warnings.warn(
                f"slip model: only {len(rows)} won deal-snapshots in periods that ended {self.settle} or more before "
                f"{crm.as_of_date.date()} (need {MIN_SLIP_ROWS}, with both outcomes); falling back to the close "
                "date: a deal counts in the period when its expected close date is before the period end",
                FallbackWarning,
                stacklevel=2,
            )
            self.model_ = None
            self.fallback_ = True
            return self
        if "segment" in self.features:
            counts = rows["segment"].dropna().astype(str).value_counts()
            self.segments_ = tuple(sorted(counts.index[counts >= MIN_SEGMENT_ROWS]))
        else:
            self.segments_ = ()
        X = self._features(rows, rows["as_of"], rows["period_end"], rows["period_days"])
        # one BLAS thread: each L-BFGS step is a few small matrix-vector products, which oversubscribed
        # threads make ~10x slower in CPU time (the fitted coefficients are the same)
        with threadpool_limits(limits=1, user_api="blas"):
            self.model_ = LogisticRegression(C=self.C, max_iter=1000).fit(X, y)
        self.fallback_ = False
        return self

    def _features(
        self,
        deals: pd.DataFrame,
        t: pd.Series | pd.Timestamp,
        end: pd.Series | pd.Timestamp,
        period_days: pd.Series | float,
    ) -> np.ndarray:
        n = len(deals)
        t_a = np.broadcast_to(np.asarray(t, dtype="datetime64[ns]"), (n,))
        e_a = np.broadcast_to(np.asarray(end, dtype="datetime64[ns]"), (n,))
        pdays = np.broadcast_to(np.asarray(period_days, dtype=float), (n,))
        idx = pd.Index(self.stage_names_).get_indexer(deals["stage"].astype(object).to_numpy())
        idx = np.where(idx < 0, 0, idx)
        pos = _positions(deals["close_date"].to_numpy(dtype="datetime64[ns]"), t_a, e_a, pdays)
        left = (e_a - (t_a + np.timedelta64(1, "D"))) / np.timedelta64(1, "D")
        frac = np.clip(left / pdays, 0.0, 1.0)
        pushes = deals["pushes"].to_numpy(dtype=float) if "pushes" in self.features else np.zeros(n)  # constant
        seg_idx = None
        if self.segments_:
            seg = deals["segment"] if "segment" in deals else pd.Series([None] * n, dtype=object)
            seg_idx = pd.Index(self.segments_).get_indexer(seg.astype(object).where(seg.notna(), None).to_numpy())
        log_days = None
        if "days_in_stage" in self.features:
            days = deals["days_in_stage"] if "days_in_stage" in deals else pd.Series(np.zeros(n))
            log_days = np.log1p(np.nan_to_num(days.to_numpy(dtype=float), nan=0.0).clip(0, None))
        return _design(idx, pos, frac, pushes, len(self.stage_names_), seg_idx, len(self.segments_), log_days)

    def predict(self, deals: pd.DataFrame, as_of: pd.Timestamp, period: Period) -> np.ndarray:
        """``p_in_period`` of open deals as of ``as_of`` for ``period``.

        ``deals`` has ``stage, close_date, pushes`` and, when the model uses them,
        ``segment`` and ``days_in_stage`` (missing columns count as an unknown segment
        and 0 days).
        """
        if not hasattr(self, "fallback_"):
            raise ParameterError("SlipModel is not fitted; call fit(crm) first")
        if len(deals) == 0:
            return np.zeros(0)
        if self.fallback_:
            cd = deals["close_date"]
            return (cd.isna() | (cd < period.end)).to_numpy(dtype=float)
        X = self._features(deals, as_of, period.end, float(period.days))
        return self.model_.predict_proba(X)[:, 1]


def _known_rows(rows: pd.DataFrame, as_of_date: pd.Timestamp, lookback: str) -> np.ndarray:
    """Mask of the :func:`slip_rows` of a later snapshot that the snapshot of ``as_of_date`` knows.

    Deals won by the end of ``as_of_date``, as-of dates within ``lookback`` before it.
    """
    lb = pd.Timedelta(lookback)
    known = as_of_date + _DAY
    m = (rows["closed_at"] < known) & (rows["as_of"] >= as_of_date - lb) & (rows["as_of"] <= as_of_date)
    return m.to_numpy(dtype=bool)


def _first_positions(keys: pd.Series | pd.Index, values: pd.Series | np.ndarray) -> np.ndarray:
    """Row of the first ``keys`` equal to each of ``values`` (-1 when absent or missing); text ids hashed once.

    ``keys`` may be an object :class:`~pandas.Index` of them: one index looked up for several
    columns hashes the keys once (pandas keeps its hash table).
    """
    k = keys if isinstance(keys, pd.Index) else pd.Index(np.asarray(keys, dtype=object))
    v = np.asarray(values, dtype=object)
    if k.is_unique:
        pos = k.get_indexer(v)
    else:
        first = ~k.duplicated()
        at = k[first].get_indexer(v)
        pos = np.where(at >= 0, np.flatnonzero(first)[at], -1)
    return np.where(pd.isna(v), -1, pos).astype(np.int64)


def _open_deal_state(
    crm: CRM,
    open_deals: pd.DataFrame,
    *,
    days: bool = True,
    codes: tuple[np.ndarray, np.ndarray, int] | None = None,
) -> pd.DataFrame:
    """``pushes`` and ``days_in_stage`` of each open deal (``open_deals`` order), from history, in one pass.

    * ``pushes`` as :func:`~forecastkit.data.timeline.close_date_pushes`: history rows, in
      the table's order, whose deal is the previous row's and whose close date is at least
      a day later than the previous row's; 0 without history.
    * ``days_in_stage`` as :func:`~forecastkit.data.timeline.current_stage_age`: consecutive
      history rows (by ``changed_at``) in one stage are one spell; the current spell's start
      to the snapshot date (a deal without dated history entered its stage at creation).

    Ids are factorised once (history and open deals together) and everything else is
    done on integer codes. ``days=False`` skips ``days_in_stage`` (NaN). ``codes`` may
    give those codes already: ``(history_codes, open_deal_codes, n_codes)``, one code
    per deal in ``[0, n_codes - 1)`` and ``n_codes - 1`` for a missing or unknown id
    (the backtest uses row positions in the full snapshot).
    """
    h = crm.history
    nh = len(h)
    if codes is None:
        ids = np.asarray(open_deals["opportunity_id"], dtype=object)
        both, uniques = pd.factorize(np.concatenate([np.asarray(h["opportunity_id"], dtype=object), ids]))
        hc, oc = both[:nh], both[nh:]
        n_codes = len(uniques) + 1  # the last slot stands for a missing id
        hc = np.where(hc < 0, n_codes - 1, hc)
        oc = np.where(oc < 0, n_codes - 1, oc)
    else:
        hc, oc, n_codes = codes
    wanted = np.zeros(n_codes, dtype=bool)
    wanted[oc] = True
    wanted[-1] = False
    rows = np.flatnonzero(wanted[hc])  # the open deals' history rows
    # pushes, in the history's own row order (as close_date_pushes): a row pushes when the row before it
    # in the table is the same deal's, dated at least a day earlier (only the open deals' rows are counted)
    cd = h["close_date"].to_numpy(dtype="datetime64[ns]")
    prev = rows[rows > 0]
    pushed = prev[(hc[prev - 1] == hc[prev]) & (cd[prev] - cd[prev - 1] >= np.timedelta64(1, "D"))]
    pushes = np.bincount(hc[pushed], minlength=n_codes)[oc]
    pushes[oc == n_codes - 1] = 0
    if not days:
        return pd.DataFrame({"pushes": pushes.astype(int), "days_in_stage": np.nan}, index=open_deals.index)
    # current stage spell of the open deals' rows, sorted by (deal, changed_at; NaT last), stable
    entered_by_code = np.full(n_codes, np.datetime64("NaT"), dtype="datetime64[ns]")
    if len(rows):
        t = h["changed_at"].to_numpy(dtype="datetime64[ns]")[rows]
        tkey = np.where(np.isnat(t), np.iinfo(np.int64).max, t.view(np.int64))
        srt = np.lexsort((tkey, hc[rows]))
        c, t = hc[rows][srt], t[srt]
        st = pd.factorize(np.asarray(h["stage"].array, dtype=object)[rows[srt]])[0]
        new_spell = np.ones(len(c), dtype=bool)
        new_spell[1:] = ~((c[1:] == c[:-1]) & (st[1:] == st[:-1]) & (st[1:] >= 0))
        valid = new_spell & ~np.isnat(t)
        last_valid = np.maximum.accumulate(np.where(valid, np.arange(len(t)), -1))  # forward fill
        entered = np.where(last_valid >= 0, t[np.maximum(last_valid, 0)], np.datetime64("NaT"))
        ends = np.flatnonzero(np.r_[c[1:] != c[:-1], True])
        entered_by_code[c[ends]] = entered[ends]
    start = entered_by_code[oc]
    created = open_deals["created_at"].to_numpy(dtype="datetime64[ns]")
    start = np.where(np.isnat(start), created, start)
    days = ((crm.as_of_date - pd.Series(start)).dt.total_seconds() / 86400.0).clip(lower=0)
    return pd.DataFrame({"pushes": pushes.astype(int), "days_in_stage": days.to_numpy(float)}, index=open_deals.index)


def _segments(crm: CRM, ids: pd.Series) -> pd.Series:
    """The segment of each deal in ``ids`` as ``crm`` knows it (missing without a segment column)."""
    o = crm.opportunities
    if "segment" not in o:
        return pd.Series(pd.NA, index=ids.index, dtype="string")
    pos = _first_positions(o["opportunity_id"], ids)
    seg = np.append(np.asarray(o["segment"], dtype=object), pd.NA)
    return pd.Series(seg[pos], index=ids.index, dtype="string")  # position -1 takes the trailing NA


def p_in_period(
    crm: CRM,
    period: Period,
    *,
    model: SlipModel | None = None,
    how: Literal["model", "close_date"] = "model",
) -> pd.DataFrame:
    """Probability that each open deal, if won, is won before ``period`` ends.

    Parameters
    ----------
    crm : CRM
        Snapshot (its date must lie inside ``period``).
    period : Period
        The forecast period.
    model : SlipModel, optional
        A fitted slip model (default: fitted on ``crm``).
    how : {"model", "close_date"}
        ``"close_date"`` trusts the CRM close date (1 when dated before the period end).

    Returns
    -------
    DataFrame
        ``opportunity_id, pushes, p_in_period``, one row per open deal (``crm.open_deals`` order).
    """
    o = crm.open_deals
    deals = _slip_deals(o, _open_deal_state(crm, o), _segments(crm, o["opportunity_id"]).to_numpy())
    return _p_in_period_of(deals, crm, period, model=model, how=how)


def _slip_deals(o: pd.DataFrame, state: pd.DataFrame, segment: np.ndarray) -> pd.DataFrame:
    """The open deals ``o`` with what the slip model reads (``state`` from :func:`_open_deal_state`)."""
    return pd.DataFrame(
        {
            "opportunity_id": o["opportunity_id"].to_numpy(),
            "stage": o["stage"].to_numpy(),
            "close_date": o["close_date"].to_numpy(),
            "pushes": state["pushes"].to_numpy(int),
            "segment": segment,
            "days_in_stage": state["days_in_stage"].fillna(0.0).to_numpy(float),
        }
    )


def _p_in_period_of(
    deals: pd.DataFrame,
    crm: CRM,
    period: Period,
    *,
    model: SlipModel | None = None,
    how: Literal["model", "close_date"] = "model",
) -> pd.DataFrame:
    """:func:`p_in_period` of prepared deal rows (:func:`_slip_deals`)."""
    if how == "close_date":
        p = (deals["close_date"].isna() | (deals["close_date"] < period.end)).to_numpy(dtype=float)
    elif how == "model":
        m = model if model is not None else SlipModel(period.freq).fit(crm)
        p = m.predict(deals, crm.as_of_date, period)
    else:
        raise ParameterError(f"how must be 'model' or 'close_date', got {how!r}")
    return deals[["opportunity_id", "pushes"]].assign(p_in_period=p)
