"""Array helpers of ``CRM.as_of``: a snapshot's deals rewound by positions and codes instead of ids and text.

A snapshot is often rewound many times (the backtest rewinds one copy to 32 dates, the
win model's training to many more). What does not depend on the date is computed once
per snapshot in a :class:`RewindPlan` (kept in the snapshot's cache): the opportunities row
of each history and field-history row, the history rows grouped by deal, the stages as
integer codes, and each text column joined with the history's into one "pool" array. A
rewind then only compares dates and picks rows: a rewound text column is one ``take``
from its pool (no text comparison, no check of the values), the same values and
``StringDtype`` as assigning them with ``.loc``.

The plan applies to snapshots as :func:`forecastkit.load` builds them (distinct, present
opportunity ids; canonical column types; history with a stage on every row); for any
other table :func:`plan_for` returns None and ``CRM.as_of`` uses the plain pandas steps.
"""

from __future__ import annotations

from collections.abc import MutableMapping

import numpy as np
import pandas as pd

from forecastkit.data.validate import TEXT_DTYPE
from forecastkit.playbook import LOST, WON

# opportunities columns the rewind rewrites, with the dtype the plan needs
_OPP_DTYPES = {
    "created_at": "datetime64[ns]",
    "stage": TEXT_DTYPE,
    "amount": "float64",
    "close_date": "datetime64[ns]",
    "forecast_category": TEXT_DTYPE,
    "closed_at": "datetime64[ns]",
    "loss_reason": TEXT_DTYPE,
    "probability": "float64",
}
HISTORY_COLUMNS = ("stage", "amount", "close_date", "forecast_category")  # taken from a deal's last history row
_STATUS = pd.array(["open", WON, LOST], dtype=TEXT_DTYPE)  # status codes 0, 1, 2
_OPEN, _WON, _LOST = 0, 1, 2


def deal_rows(ids: pd.Series, deal_ids: pd.Series) -> np.ndarray:
    """Row of ``deal_ids`` (distinct, none missing) holding each of ``ids``; -1 when absent or missing.

    A table sorted by deal (history, field history) repeats each id in a run: each run's id
    is looked up once.
    """
    if len(ids) == 0 or len(deal_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    v = np.asarray(ids.array, dtype=object) if ids.dtype == TEXT_DTYPE else None
    if v is not None:
        try:  # (a missing id, pd.NA, cannot be compared: each id looked up then)
            starts = np.flatnonzero(np.append(True, v[1:] != v[:-1]))
        except TypeError:
            starts = None
        if starts is not None and len(starts) < len(v) // 2:
            runs = np.diff(np.append(starts, len(v)))
            return np.repeat(key_positions(ids.iloc[starts], deal_ids), runs)
    return key_positions(ids, deal_ids)


def key_positions(ids: pd.Series, keys: pd.Series | np.ndarray) -> np.ndarray:
    """``pd.Index(keys).get_indexer(ids)`` for distinct ``keys`` without a missing one (integer ids, or text
    hashed by pyarrow); -1 for an absent or missing id."""
    from forecastkit.data.validate import text_positions

    if ids.dtype == np.int64 and keys.dtype == np.int64:
        return pd.Index(np.asarray(keys)).get_indexer(ids.to_numpy()).astype(np.int64)
    pos = text_positions(ids, keys)
    if pos is not None:
        return pos
    return pd.Index(np.asarray(keys, dtype=object)).get_indexer(ids.to_numpy(dtype=object)).astype(np.int64)


def text_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """``pd.factorize(values)`` of a text column as ``(codes, uniques as an Index)``; codes -1 for missing.

    Hashed as the plain object array: twice as fast as through ``StringDtype``.
    """
    codes, uniques = pd.factorize(np.asarray(values.array, dtype=object))
    return codes, pd.Index(uniques, dtype=object)


def by_deal(deal: np.ndarray) -> np.ndarray:
    """Rows with a deal (``deal >= 0``), ordered by deal and, within a deal, by row."""
    rows = np.flatnonzero(deal >= 0)
    d = deal[rows]
    if len(d) > 1 and not bool((d[1:] >= d[:-1]).all()):  # (history exports are usually sorted by deal)
        rows = rows[np.argsort(d, kind="stable")]
    return rows


def last_rows(order: np.ndarray, deal: np.ndarray, known: np.ndarray, n_deals: int) -> np.ndarray:
    """For each deal ``0..n_deals-1``, its last row (in table order) where ``known`` holds; -1 when none.

    ``order`` is :func:`by_deal` of ``deal``; ``known`` a bool per row.
    """
    rows = order[known[order]]
    d = deal[rows]
    ends = np.ones(len(rows), dtype=bool)
    ends[:-1] = d[1:] != d[:-1]
    out = np.full(n_deals, -1, dtype=np.int64)
    out[d[ends]] = rows[ends]
    return out


def first_rows(keys: np.ndarray) -> np.ndarray:
    """Positions of the first occurrence of each distinct value of ``keys`` (int64), ascending."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


class RewindPlan:
    """What rewinding one snapshot's deals needs that does not depend on the date (see the module docstring).

    Opportunities rows are numbered ``0..n-1``, history rows ``0..h-1``. ``pool[col]`` holds
    a text column's opportunities values, then the history's (for the history columns),
    then the constants a rewind writes; a rewound column takes from it by position.
    """

    def __init__(
        self, opps: pd.DataFrame, hist: pd.DataFrame, fh: pd.DataFrame, field_codes: tuple[np.ndarray, pd.Index]
    ) -> None:
        self.n, self.h = len(opps), len(hist)
        self.closed_at = opps["closed_at"].to_numpy()
        self.probability = opps["probability"].to_numpy()
        self.hist_deal = deal_rows(hist["opportunity_id"], opps["opportunity_id"])
        self.hist_order = by_deal(self.hist_deal)
        self.changed = hist["changed_at"].to_numpy()
        self.runs = _time_ordered_runs(self.hist_order, self.hist_deal, self.changed)
        all_stages = pd.concat([opps["stage"], hist["stage"]], ignore_index=True)
        self.stage_code, stages = text_codes(all_stages)
        self.won = np.append(stages == WON, False)[self.stage_code]  # (code -1 reads the appended False)
        self.lost = np.append(stages == LOST, False)[self.stage_code]
        self.hist_fc_missing = hist["forecast_category"].isna().to_numpy(dtype=bool)
        self.values = {c: np.concatenate([opps[c].to_numpy(), hist[c].to_numpy()]) for c in ("amount", "close_date")}
        self.pool = {
            "stage": all_stages.array,
            "forecast_category": pd.concat(
                [
                    opps["forecast_category"],
                    hist["forecast_category"],
                    pd.Series(["closed", "omitted"], dtype=TEXT_DTYPE),
                ],
                ignore_index=True,
            ).array,
            "loss_reason": opps["loss_reason"].array,
        }
        self.fh_deal = deal_rows(fh["opportunity_id"], opps["opportunity_id"])
        self.fh_changed = fh["changed_at"].to_numpy()
        self.field_codes, self.field_names = field_codes

    def rewind(self, o: MutableMapping, sel: np.ndarray, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        """Set the rewritten columns of ``o`` (opportunities rows ``sel``, created before ``cutoff``; a frame, or
        a dict that collects the columns) as known before ``cutoff``.

        Each deal takes stage, amount, close date and category from its last history row
        before the cutoff; then status, closed date, loss reason, closing categories and
        probability follow (``CRM.as_of``'s rules). Returns ``(o_row, is_open)``: the row of
        ``o`` of each opportunities row (-1 when not in ``o``), for the field-history step,
        and whether each deal of ``o`` is open.
        """
        n, cut = self.n, cutoff.to_datetime64()
        row = self.last_known(cut)[sel]  # each deal's last history row, -1 none
        has = row >= 0
        src = np.where(has, n + row, sel)  # each deal's source of the history columns (positions in the pools)
        closed_at = self.closed_at[sel]
        won, lost = self.won[src], self.lost[src]
        reopened = ~has & (won | lost) & (closed_at >= cut)  # closed after the cutoff, no history: stage unknown
        won &= ~reopened
        lost &= ~reopened
        stage_src = np.where(reopened, -1, src)
        o["stage"] = self.pool["stage"].take(stage_src, allow_fill=True)
        for col in ("amount", "close_date"):
            o[col] = self.values[col][src]
        o["status"] = _STATUS.take(np.where(won, _WON, np.where(lost, _LOST, _OPEN)))
        closed_at = np.where((won | lost) & (closed_at < cut), closed_at, np.datetime64("NaT"))
        if has.any():  # closed without a known date: the day of the last history row
            fill = (won | lost) & np.isnat(closed_at) & has
            closed_at[fill] = pd.DatetimeIndex(self.changed[row[fill]]).normalize().to_numpy()
        o["closed_at"] = closed_at
        o["loss_reason"] = self.pool["loss_reason"].take(np.where(lost, sel, -1), allow_fill=True)
        # a history row without a category keeps the current one while the deal is open
        from_history = np.zeros(len(sel), dtype=bool)
        from_history[has] = ~(self.hist_fc_missing[row[has]] & ~won[has] & ~lost[has])
        fc = np.where(from_history, src, sel)
        fc = np.where(won, n + self.h, np.where(lost, n + self.h + 1, fc))
        o["forecast_category"] = self.pool["forecast_category"].take(fc)
        new_code, cur_code = np.where(reopened, -1, self.stage_code[src]), self.stage_code[sel]
        other_stage = (new_code != cur_code) | (new_code < 0) | (cur_code < 0)
        o["probability"] = np.where(other_stage, np.nan, self.probability[sel])
        o_row = np.full(n, -1, dtype=np.int64)
        o_row[sel] = np.arange(len(sel))
        return o_row, ~(won | lost)

    def last_known(self, cut: np.datetime64) -> np.ndarray:
        """:func:`last_rows` of the history rows dated before ``cut``, for each opportunities row.

        When each deal's rows are in time order (:func:`_time_ordered_runs`), the rows before the
        cut are the first ones of each deal's run: a deal's last one is a known row whose next
        row (in the run) is not known, found with a few boolean operations instead of a sort.
        """
        known = self.changed < cut
        if self.runs is None:
            return last_rows(self.hist_order, self.hist_deal, known, self.n)
        later_start, deals, whole = self.runs  # (positions in hist_order)
        k = known if whole else known[self.hist_order]
        ends = k.copy()
        if len(k) > 1:
            ends[:-1] &= ~(k[1:] & ~later_start)  # the next row is known and the same deal's: not the last
        last = np.flatnonzero(ends)
        out = np.full(self.n, -1, dtype=np.int64)
        out[deals[last]] = last if whole else self.hist_order[last]
        return out

    def later_changes(self, o_row: np.ndarray, cutoff: pd.Timestamp) -> tuple[np.ndarray, np.ndarray]:
        """``(later, first)``: field-history rows after ``cutoff`` on a deal of the rewound snapshot, and
        among them each (deal, field)'s first one (rows in table order; rows without a field left out)."""
        later = np.flatnonzero(self.fh_changed >= cutoff.to_datetime64())
        deal = self.fh_deal[later]
        later = later[(deal >= 0) & (o_row[np.maximum(deal, 0)] >= 0)]
        named = later[self.field_codes[later] >= 0]
        keys = self.fh_deal[named] * (len(self.field_names) + 1) + self.field_codes[named]
        return later, named[first_rows(keys)]


def _time_ordered_runs(
    order: np.ndarray, deal: np.ndarray, changed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """``(starts, deals, whole)`` when the history rows taken in ``order`` (:func:`by_deal`) are, deal by deal,
    in time order (no missing date after a deal's first row), else None: ``starts[i]`` says whether
    row ``i + 1`` (in ``order``) starts another deal's run, ``deals`` each row's deal, ``whole`` whether
    ``order`` is every row in table order."""
    d, t = deal[order], changed[order]
    same = d[1:] == d[:-1]
    if len(t) > 1 and not bool(np.all(t[1:][same] >= t[:-1][same])):  # (NaT compares False)
        return None
    whole = len(order) == len(deal) and bool(np.all(order == np.arange(len(order))))
    return ~same, d, whole


def plan_for(
    opps: pd.DataFrame, hist: pd.DataFrame, fh: pd.DataFrame, field_codes: tuple[np.ndarray, pd.Index]
) -> RewindPlan | None:
    """A :class:`RewindPlan` of the tables, or None when they are not as the plan needs (see the module docstring).

    ``field_codes``: ``(codes, names)`` of the field-history ``field`` column (:func:`text_codes`).
    """
    for col, dtype in _OPP_DTYPES.items():
        if col not in opps or opps[col].dtype != dtype:
            return None
    ids = opps["opportunity_id"]
    if ids.dtype != np.int64 and ids.dtype != TEXT_DTYPE:
        return None
    if ids.isna().any() or not pd.Index(ids.to_numpy(dtype=object)).is_unique:
        return None
    if hist["changed_at"].dtype != "datetime64[ns]" or fh["changed_at"].dtype != "datetime64[ns]":
        return None
    if any(hist[c].dtype != opps[c].dtype for c in HISTORY_COLUMNS):
        return None
    if hist["opportunity_id"].dtype != ids.dtype or fh["opportunity_id"].dtype != ids.dtype:
        return None
    plan = RewindPlan(opps, hist, fh, field_codes)
    return None if (plan.stage_code[plan.n :] < 0).any() else plan  # (a history row without a stage)
