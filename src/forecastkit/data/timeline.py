"""Deal timelines derived from history: stage spells, stages reached, pushes, ages.

These are the shared building blocks of every analysis (stage probabilities,
conversion, cycle, hygiene, drivers), computed once here so that every metric
counts the same way.

Counting rule for "reached": a deal reached stage *k* when its entry stage is
at or before *k* and the furthest stage it got to is at or after *k* (a won
deal got past every stage). So a deal created directly in qualification did
not reach ``to_contact``, and a deal that jumped from discovery to
negotiation did reach ``proposal`` (it passed it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.playbook import LOST, WON, Playbook

__all__ = [
    "stage_spells",
    "deal_progress",
    "stages_reached",
    "current_stage_age",
    "close_date_pushes",
    "qualification_completeness",
]


def _same_as_previous(s: pd.Series) -> pd.Series:
    """True where a value equals the one on the previous row (False on the first row and on missing values)."""
    return s.eq(s.shift()).fillna(False).astype(bool)


def _is_sorted(h: pd.DataFrame) -> bool:
    ids = h["opportunity_id"]
    if not ids.is_monotonic_increasing:
        return False
    same = _same_as_previous(ids).to_numpy()
    t = h["changed_at"].to_numpy()
    return bool((t[1:][same[1:]] >= t[:-1][same[1:]]).all())


def _order(stages: pd.Series, playbook: Playbook) -> pd.Series:
    mapping = {name: i for i, name in enumerate(playbook.stage_names)}
    mapping[WON] = len(playbook.stages)
    mapping[LOST] = -1
    return stages.map(mapping).astype("float64")


def _text_values(s: pd.Series) -> np.ndarray:
    """The values of a column as an object array (no copy for the ``string`` dtype)."""
    return np.asarray(s.array, dtype=object)


def _spells_fast(crm: CRM, h: pd.DataFrame, o: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None] | None:
    """:func:`stage_spells` with numpy arrays; None when the input is unusual (missing ids, other time units).

    Same rules and same result as the pandas version below it, about five times faster on
    millions of history rows. Also returns the position of each opportunity's last spell
    (-1 when it has none) when history needed no re-sorting (else None).
    """
    if h["changed_at"].dtype != "datetime64[ns]" or o["created_at"].dtype != "datetime64[ns]":
        return None
    hid, oid = _text_values(h["opportunity_id"]), _text_values(o["opportunity_id"])
    if pd.isna(oid).any() or (len(hid) < 2 and pd.isna(hid).any()):
        return None  # (missing history ids show up below: comparing them raises TypeError)
    ids_col, stage_col = h["opportunity_id"], h["stage"]
    changed = h["changed_at"].to_numpy()
    starts = np.ones(len(hid), dtype=bool)
    try:
        np.not_equal(hid[1:], hid[:-1], out=starts[1:])
    except TypeError:  # missing ids (pd.NA) cannot be compared
        return None
    try:
        ids_sorted = len(hid) < 2 or bool((hid[1:] >= hid[:-1]).all())
    except TypeError:  # ids that cannot be ordered (e.g. None among texts): sorted below
        ids_sorted = False
    runs = hid[starts] if ids_sorted else pd.unique(hid[starts])  # (sorted ids: each deal one run)
    run_of = _run_positions(oid, runs)  # the deal's run of history rows
    in_hist = run_of >= 0
    add = ~in_hist & o["stage"].notna().to_numpy(bool)
    resort = bool(add.any())
    if resort:  # deals without history: one row at creation in their current stage
        ids_col = pd.concat([ids_col, o["opportunity_id"][add]], ignore_index=True)
        stage_col = pd.concat([stage_col, o["stage"][add]], ignore_index=True)
        changed = np.concatenate([changed, o["created_at"].to_numpy()[add]])
        hid = _text_values(ids_col)
    elif len(hid) > 1:  # validated snapshots keep history sorted; others are sorted here
        same = ~starts[1:]
        resort = not (ids_sorted and bool((changed[1:][same] >= changed[:-1][same]).all()))
    if resort:  # like sort_values(["opportunity_id", "changed_at"], kind="stable"): NaT last
        t = changed.view("int64")
        t = np.where(np.isnat(changed), np.iinfo(np.int64).max, t)
        order = np.lexsort((t, pd.factorize(hid, sort=True)[0]))
        ids_col = ids_col.take(order).reset_index(drop=True)
        stage_col = stage_col.take(order).reset_index(drop=True)
        changed = changed[order]
        hid = hid[order]
    n = len(hid)
    scode, suniq = pd.factorize(_text_values(stage_col))
    if resort:
        same_deal = np.zeros(n, dtype=bool)
        np.equal(hid[1:], hid[:-1], out=same_deal[1:])
    else:
        same_deal = ~starts
    same_stage = np.zeros(n, dtype=bool)
    same_stage[1:] = (scode[1:] == scode[:-1]) & (scode[1:] >= 0)
    idx = np.flatnonzero(~(same_deal & same_stage))
    m = len(idx)
    nxt_same = np.zeros(m, dtype=bool)
    nxt_same[:-1] = same_deal[idx[1:]]
    entered = changed[idx]
    exited = np.full(m, np.datetime64("NaT"), dtype="datetime64[ns]")
    exited[:-1] = np.where(nxt_same[:-1], entered[1:], np.datetime64("NaT"))
    sc = scode[idx]
    names = list(crm.playbook.stage_names)
    order_of = {name: float(i) for i, name in enumerate(names)}
    order_of[WON] = float(len(crm.playbook.stages))
    order_of[LOST] = -1.0
    lut_order = np.array([order_of.get(u, np.nan) for u in suniq] + [np.nan], dtype="float64")
    lut_term = np.array([u in (WON, LOST) for u in suniq] + [False], dtype=bool)
    terminal = lut_term[sc]
    exited[terminal] = np.datetime64("NaT")
    as_of = np.datetime64(crm.as_of_date.to_datetime64(), "ns").view("int64")
    end = np.where(np.isnat(exited), as_of, exited.view("int64"))
    delta = (end - entered.view("int64")).astype("float64")
    days = delta / 1_000_000_000 / 86400.0
    days[np.isnat(entered)] = np.nan
    days = np.where(days < 0, 0.0, days)  # clip(lower=0), NaN kept
    days[terminal] = 0.0
    nxt = np.where(nxt_same, np.append(idx[1:], -1), -1)
    last = None
    if not resort:  # history sorted by deal: run k of history rows is deal k's run of spells
        ends = np.flatnonzero(~nxt_same)
        last = np.where(in_hist, ends[np.maximum(run_of, 0)] if len(ends) else -1, -1)
    spells = pd.DataFrame(
        {
            "opportunity_id": ids_col.array.take(idx),
            "stage": stage_col.array.take(idx),
            "stage_order": lut_order[sc],
            "entered_at": entered,
            "exited_at": exited,
            "next_stage": stage_col.array.take(nxt, allow_fill=True),
            "days_in_stage": days,
        }
    )
    return spells, last


def stage_spells(crm: CRM) -> pd.DataFrame:
    """One row per (deal, stage visit): when the deal entered and left the stage.

    Consecutive history rows in the same stage form one spell. A deal without
    history gets one spell in its current stage starting at ``created_at``.

    Returns
    -------
    DataFrame
        ``opportunity_id, stage, stage_order, entered_at, exited_at`` (NaT while
        still in it), ``next_stage`` (empty while still in it), ``days_in_stage``
        (to exit, or to the snapshot date while in it; terminal stages 0).
    """
    return _spells_and_last(crm)[0]


def _spells_and_last(crm: CRM) -> tuple[pd.DataFrame, np.ndarray | None]:
    """:func:`stage_spells`, and the position of each opportunity's last spell (-1 without) or None when not known."""
    h = crm.history[["opportunity_id", "changed_at", "stage"]]
    o = crm.opportunities
    fast = _spells_fast(crm, h, o)
    if fast is not None:
        return fast
    missing = o.loc[~o["opportunity_id"].isin(h["opportunity_id"]), ["opportunity_id", "created_at", "stage"]]
    missing = missing.rename(columns={"created_at": "changed_at"}).dropna(subset=["stage"])
    if len(missing):
        h = pd.concat([h, missing], ignore_index=True).sort_values(["opportunity_id", "changed_at"], kind="stable")
    elif not _is_sorted(h):  # validated snapshots keep history sorted; others are sorted here
        h = h.sort_values(["opportunity_id", "changed_at"], kind="stable")
    same_deal = _same_as_previous(h["opportunity_id"])
    new_spell = ~(same_deal & _same_as_previous(h["stage"]))
    spells = h.loc[new_spell, ["opportunity_id", "stage", "changed_at"]].rename(columns={"changed_at": "entered_at"})
    nxt_same = _same_as_previous(spells["opportunity_id"]).shift(-1, fill_value=False)
    spells["exited_at"] = spells["entered_at"].shift(-1).where(nxt_same)
    spells["next_stage"] = spells["stage"].shift(-1).where(nxt_same)
    terminal = spells["stage"].isin((WON, LOST))
    spells.loc[terminal, "exited_at"] = pd.NaT
    end = spells["exited_at"].fillna(crm.as_of_date)
    spells["days_in_stage"] = ((end - spells["entered_at"]).dt.total_seconds() / 86400.0).clip(lower=0)
    spells.loc[terminal, "days_in_stage"] = 0.0
    spells["stage_order"] = _order(spells["stage"], crm.playbook)
    spells["exited_at"] = spells["exited_at"].astype("datetime64[ns]")
    cols = ["opportunity_id", "stage", "stage_order", "entered_at", "exited_at", "next_stage", "days_in_stage"]
    return spells[cols].reset_index(drop=True), None


def deal_progress(crm: CRM, spells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per deal: entry stage, furthest stage and outcome.

    Returns
    -------
    DataFrame
        ``opportunity_id, entry_order, max_order, status`` where orders are
        positions in ``playbook.stage_names`` (won = number of stages, so a won
        deal passed every stage; lost stages do not count).
    """
    sp = stage_spells(crm) if spells is None else spells
    sp = sp[sp["stage"] != LOST]
    g = sp.groupby("opportunity_id", sort=False)["stage_order"]
    prog = pd.DataFrame({"entry_order": g.first(), "max_order": g.max()})
    status = crm.opportunities.set_index("opportunity_id")["status"]
    prog["status"] = status.reindex(prog.index)
    return prog.reset_index()


def stages_reached(crm: CRM, spells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Long table: one row per (deal, open stage it reached), with the deal's outcome.

    Returns
    -------
    DataFrame
        ``opportunity_id, stage, stage_order, status`` (open/won/lost as of the snapshot).
    """
    prog = deal_progress(crm, spells)
    n = len(crm.playbook.stages)
    names = np.array(crm.playbook.stage_names, dtype=object)
    lo = prog["entry_order"].to_numpy()
    hi = np.minimum(prog["max_order"].to_numpy(), n - 1)
    ok = ~np.isnan(lo) & ~np.isnan(hi) & (hi >= lo)
    lo, hi = lo[ok].astype(int), hi[ok].astype(int)
    counts = hi - lo + 1
    rep = np.repeat(np.arange(ok.sum()), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    order = lo[rep] + offs
    sub = prog.loc[ok]
    return pd.DataFrame(
        {
            "opportunity_id": sub["opportunity_id"].to_numpy()[rep],
            "stage": pd.array(names[order], dtype="string"),
            "stage_order": order,
            "status": sub["status"].to_numpy()[rep],
        }
    )


def current_stage_age(crm: CRM, spells: pd.DataFrame | None = None) -> pd.DataFrame:
    """For open deals: when they entered their current stage and days since (to the snapshot date).

    Returns
    -------
    DataFrame
        ``opportunity_id, stage, entered_stage_at, days_in_stage, deal_age_days``.
    """
    sp = stage_spells(crm) if spells is None else spells
    return _current_stage_age(crm.open_deals, sp, crm.as_of_date)


def _last_entered(sp: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """``entered_at`` of the last spell of each deal of ``ids`` (NaT when it has none)."""
    sid = _text_values(sp["opportunity_id"])
    if not (pd.isna(sid).any() or pd.isna(ids).any()):  # fast path: a deal's spells are contiguous
        ends = np.ones(len(sid), dtype=bool)
        np.not_equal(sid[1:], sid[:-1], out=ends[:-1])
        last = sid[ends]
        if _strictly_increasing(last) or pd.Index(last).is_unique:
            pos = _run_positions(np.asarray(ids, dtype=object), last)
            entered = sp["entered_at"].to_numpy()[ends]
            nat = np.array("NaT", dtype=entered.dtype)
            return np.where(pos >= 0, entered[pos] if len(entered) else nat, nat)
    last = sp.groupby("opportunity_id", sort=False).tail(1).set_index("opportunity_id")
    return last["entered_at"].reindex(ids).to_numpy()


def _current_stage_age(
    o: pd.DataFrame, sp: pd.DataFrame, ref: pd.Timestamp, last: np.ndarray | None = None
) -> pd.DataFrame:
    """:func:`current_stage_age` of the open deals ``o`` given the spells ``sp``.

    ``last``: position in ``sp`` of the last spell of each deal of ``o`` (-1 without), when known.
    """
    out = pd.DataFrame({"opportunity_id": o["opportunity_id"].to_numpy(), "stage": o["stage"].to_numpy()})
    if last is None:
        entered = _last_entered(sp, o["opportunity_id"].to_numpy())
    else:
        nat = np.array("NaT", dtype="datetime64[ns]")
        all_entered = sp["entered_at"].to_numpy("datetime64[ns]")
        entered = np.where(last >= 0, all_entered[last] if len(all_entered) else nat, nat)
    out["entered_stage_at"] = pd.to_datetime(entered)
    out["days_in_stage"] = ((ref - out["entered_stage_at"]).dt.total_seconds() / 86400.0).clip(lower=0).to_numpy()
    out["deal_age_days"] = ((ref - o["created_at"]).dt.total_seconds() / 86400.0).clip(lower=0).to_numpy()
    return out


def close_date_pushes(crm: CRM) -> pd.DataFrame:
    """Close-date moves per deal, from history.

    A push is a history row whose close date is later than the previous row's;
    a pull-in is an earlier one.

    Returns
    -------
    DataFrame
        ``opportunity_id, pushes, pull_ins, days_pushed`` (total days the close
        date moved later), one row per deal of the snapshot (zeros without history).
    """
    h = crm.history[["opportunity_id", "close_date"]]
    same = _same_as_previous(h["opportunity_id"])
    delta = (h["close_date"] - h["close_date"].shift()).dt.days.where(same)
    df = pd.DataFrame(
        {
            "opportunity_id": h["opportunity_id"],
            "pushes": (delta > 0).astype(int),
            "pull_ins": (delta < 0).astype(int),
            "days_pushed": delta.clip(lower=0).fillna(0.0),
        }
    )
    res = df.groupby("opportunity_id", sort=False)[["pushes", "pull_ins", "days_pushed"]].sum()
    ids = crm.opportunities["opportunity_id"]
    res = res.reindex(ids.to_numpy()).fillna(0)
    res["pushes"] = res["pushes"].astype(int)
    res["pull_ins"] = res["pull_ins"].astype(int)
    return res.rename_axis("opportunity_id").reset_index()


def qualification_completeness(opportunities: pd.DataFrame, playbook: Playbook) -> pd.Series:
    """Share of the playbook's qualification fields (BANT + MEDDIC) that are filled, per deal (0-1)."""
    cols = [c for c in playbook.qualification_fields if c in opportunities]
    if not cols:
        return pd.Series(np.nan, index=opportunities.index, name="qualification_completeness")
    return opportunities[cols].notna().mean(axis=1).rename("qualification_completeness")


# --------------------------------------------------------------------------- array building blocks
# Private, numpy-level versions of the rules above for large snapshots (stage_probabilities uses them);
# tests check that they count exactly like deal_progress / stages_reached.
def _row_positions(keys: pd.Series, index: pd.Series) -> np.ndarray:
    """Position in ``index`` of each value of ``keys`` (-1 when absent), as ``pd.Index(index).get_indexer(keys)``.

    Fast on history-like keys where equal values sit next to each other: only the
    first key of each run is looked up (:func:`_run_positions`).
    """
    arr = _text_values(keys)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = _run_starts(arr)
    if starts is None:  # missing ids (pd.NA) cannot be compared: plain lookup
        return pd.Index(_text_values(index)).get_indexer(arr).astype(np.int64)
    first = _run_positions(arr[starts], _text_values(index))
    return np.repeat(first, np.diff(np.append(starts, len(arr))))


def _run_starts(ids: np.ndarray) -> np.ndarray | None:
    """Positions where a run of equal values of the object array ``ids`` starts (None: values not comparable)."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.empty(len(ids), dtype=bool)
    change[0] = True
    try:
        np.not_equal(ids[1:], ids[:-1], out=change[1:])
    except TypeError:  # missing ids (pd.NA)
        return None
    return np.flatnonzero(change)


def _strictly_increasing(values: np.ndarray) -> bool:
    """True when every value of the object array is greater than the one before (False when not comparable)."""
    if len(values) < 2:
        return True
    greater = np.empty(len(values) - 1, dtype=bool)
    try:
        np.greater(values[1:], values[:-1], out=greater)
    except (TypeError, ValueError):  # pd.NA, or texts mixed with numbers
        return False
    return bool(greater.all())


def _run_positions(keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Position in ``index`` of each value of ``keys`` (-1 when absent): ``pd.Index(index).get_indexer(keys)``.

    When both object arrays are strictly increasing (the ids of a validated snapshot and
    the runs of its history) no hash table is built: equal arrays give ``0..n-1``, and
    otherwise a stable sort of the two sorted arrays put end to end (a merge, linear)
    brings each key next to its equal in ``index``. Else (unsorted or repeated values,
    so also the error on a non-unique ``index``) pandas looks the keys up.
    """
    n = len(index)
    if not _strictly_increasing(index):
        return pd.Index(index).get_indexer(keys).astype(np.int64)
    if len(keys) == n:
        same = np.empty(n, dtype=bool)
        np.equal(keys, index, out=same)
        if same.all():  # (then keys are strictly increasing too)
            return np.arange(n, dtype=np.int64)
    if not _strictly_increasing(keys):
        return pd.Index(index).get_indexer(keys).astype(np.int64)
    both = np.concatenate([index, keys])
    try:
        order = np.argsort(both, kind="stable")  # index first among equals
    except TypeError:  # e.g. numbers in one array, texts in the other
        return pd.Index(index).get_indexer(keys).astype(np.int64)
    ranked = both[order]
    equal = np.empty(max(len(both) - 1, 0), dtype=bool)
    np.equal(ranked[1:], ranked[:-1], out=equal)
    pair = np.flatnonzero(equal)  # (index value, its equal key): neither array repeats a value
    pos = np.full(len(keys), -1, dtype=np.int64)
    pos[order[pair + 1] - n] = order[pair]
    return pos


def _stage_order_codes(stages: pd.Series, playbook: Playbook) -> np.ndarray:
    """``stage_order`` of :func:`stage_spells` per value: position, won = number of stages, lost = -1, else NaN."""
    values = _text_values(stages)
    starts = _run_starts(values)  # history repeats a deal's stage row after row: each run is looked up once
    if starts is None or len(starts) > 0.8 * len(values):
        starts = None
    else:
        values = values[starts]
    codes, uniques = pd.factorize(values)
    mapping = {name: i for i, name in enumerate(playbook.stage_names)}
    mapping[WON] = len(playbook.stages)
    mapping[LOST] = -1
    lut = np.array([mapping.get(u, np.nan) if isinstance(u, str) else np.nan for u in uniques] + [np.nan])
    order = lut[codes]  # code -1 (missing) takes the trailing NaN
    return order if starts is None else np.repeat(order, np.diff(np.append(starts, len(stages))))


def _entry_and_furthest(
    deal: np.ndarray, changed_at: np.ndarray, order: np.ndarray, n_deals: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per deal (0..n_deals-1): ``entry_order, max_order`` of :func:`deal_progress` from history rows.

    ``deal`` are row positions of the deals, ``order`` the rows' stage orders
    (:func:`_stage_order_codes`). Rows in lost or unknown stages are ignored; the entry
    is the earliest remaining row (ties: first row). NaN for deals without such rows.
    """
    entry = np.full(n_deals, np.nan)
    furthest = np.full(n_deals, np.nan)
    ok = ~np.isnan(order) & (order >= 0)
    d, t, o = deal[ok], changed_at[ok], order[ok]
    if len(d) == 0:
        return entry, furthest
    same = d[1:] == d[:-1]
    ordered = bool(np.all(t[1:][same] >= t[:-1][same]))
    if ordered:  # contiguous deals? (each deal one run)
        starts = np.flatnonzero(np.r_[True, ~same])
        ordered = _all_distinct(d[starts])
    if not ordered:
        srt = np.lexsort((t, d))  # stable: ties keep row order
        d, o = d[srt], o[srt]
        starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    entry[d[starts]] = o[starts]
    furthest[d[starts]] = np.maximum.reduceat(o, starts)
    return entry, furthest


def _deal_entry_and_furthest(
    history: pd.DataFrame,
    opportunity_ids: pd.Series,
    playbook: Playbook,
    *,
    deal_pos: np.ndarray | None = None,
    order: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per opportunity (rows of ``opportunity_ids``): ``entry_order, max_order`` of :func:`deal_progress`
    read from ``history`` alone, and whether the deal has any history row.

    As :func:`_entry_and_furthest` on the rows of each deal (rows in lost or unknown stages
    ignored; NaN without such rows). History sorted by deal and time (validated snapshots)
    is read run by run (:func:`_entry_and_furthest_of_runs`); other history row by row.

    ``deal_pos`` (optional): each history row's row in ``opportunity_ids`` (-1: not one of
    them), when the caller already has it and the ids are distinct; the runs of a deal's rows
    are then found on these integers instead of comparing text ids (an unknown row is a run of
    its own: such rows are ignored either way). ``order`` (optional): each history row's
    :func:`_stage_order_codes`, when the caller already has them. Same result either way.
    """
    if order is None:
        order = _stage_order_codes(history["stage"], playbook)
    changed = history["changed_at"].to_numpy()
    n = len(opportunity_ids)
    if deal_pos is not None:
        return _entry_and_furthest_of_positions(np.asarray(deal_pos, dtype=np.int64), changed, order, n)
    hid = _text_values(history["opportunity_id"])
    oid = _text_values(opportunity_ids)
    starts = _run_starts(hid)
    if starts is not None:
        run_pos = _run_positions(hid[starts], oid)
        fast = _entry_and_furthest_of_runs(starts, run_pos, changed, order, n)
        if fast is not None:
            return fast
        pos = np.repeat(run_pos, np.diff(np.append(starts, len(hid))))
    else:
        pos = pd.Index(oid).get_indexer(hid).astype(np.int64)
    has_history = np.zeros(n, dtype=bool)
    has_history[pos[pos >= 0]] = True
    rows = pos >= 0
    entry, furthest = _entry_and_furthest(pos[rows], changed[rows], order[rows], n)
    return entry, furthest, has_history


def _entry_and_furthest_of_positions(
    pos: np.ndarray, changed_at: np.ndarray, order: np.ndarray, n_deals: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_deal_entry_and_furthest` from each history row's deal row ``pos`` (-1: unknown deal)."""
    if len(pos):
        change = np.empty(len(pos), dtype=bool)
        change[0] = True
        np.not_equal(pos[1:], pos[:-1], out=change[1:])
        change[1:] |= pos[1:] < 0  # (each unknown row its own run)
        starts = np.flatnonzero(change)
        fast = _entry_and_furthest_of_runs(starts, pos[starts], changed_at, order, n_deals)
        if fast is not None:
            return fast
    has_history = np.zeros(n_deals, dtype=bool)
    has_history[pos[pos >= 0]] = True
    rows = pos >= 0
    entry, furthest = _entry_and_furthest(pos[rows], changed_at[rows], order[rows], n_deals)
    return entry, furthest, has_history


def _entry_and_furthest_of_runs(
    starts: np.ndarray, run_pos: np.ndarray, changed_at: np.ndarray, order: np.ndarray, n_deals: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`_deal_entry_and_furthest` when history comes in runs, one per deal, each in time order.

    ``starts``: first row of each run of equal ids; ``run_pos``: the run's deal (-1: not a
    deal of the snapshot). The entry is the run's first row in an open stage or won, the
    furthest its largest order. None when a deal has several runs or a run is not in
    time order (a missing ``changed_at`` included), which the row-by-row path sorts.
    """
    deals = run_pos[run_pos >= 0]
    if not (bool(np.all(deals[1:] > deals[:-1])) or _all_distinct(deals)):
        return None
    in_order = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        np.greater_equal(changed_at[1:], changed_at[:-1], out=in_order[1:])  # NaT: False
    in_order[starts] = True
    if not in_order.all():
        return None
    valid = order >= 0  # (NaN: unknown stage; -1: lost)
    ends = np.append(starts[1:], len(order))
    top = np.fmax.reduceat(order, starts) if len(starts) else np.zeros(0)  # (fmax skips NaN; lost: -1)
    valid_rows = np.flatnonzero(valid)
    first = np.searchsorted(valid_rows, starts)  # first row in an open stage or won, at or after the run start
    got = first < len(valid_rows)
    got[got] = valid_rows[first[got]] < ends[got]
    run_entry = np.full(len(starts), np.nan)
    run_entry[got] = order[valid_rows[first[got]]]
    run_furthest = np.where(top >= 0, top, np.nan)
    entry = np.full(n_deals, np.nan)
    furthest = np.full(n_deals, np.nan)
    has_history = np.zeros(n_deals, dtype=bool)
    known = run_pos >= 0
    entry[run_pos[known]] = run_entry[known]
    furthest[run_pos[known]] = run_furthest[known]
    has_history[run_pos[known]] = True
    return entry, furthest, has_history


def _distinct_sorted(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of an integer array, by one sort.

    NumPy 2.x's ``np.unique`` hashes: about fifty times slower than sorting on a
    million distinct integers.
    """
    v = np.sort(values)
    return v[np.r_[True, v[1:] != v[:-1]]] if len(v) else v


def _all_distinct(values: np.ndarray) -> bool:
    """True when no value of the integer array ``values`` repeats (``len(np.unique(values)) == len(values)``)."""
    v = np.sort(values)
    return not bool((v[1:] == v[:-1]).any())


def _categorical(values: pd.Series, dtype: pd.CategoricalDtype) -> pd.Categorical:
    """``pd.Categorical(values, dtype=dtype)`` via a factorisation (fast on text columns)."""
    codes, uniques = pd.factorize(np.asarray(values.array, dtype=object))
    lut = np.append(dtype.categories.get_indexer(pd.Index(uniques, dtype=object)), -1)
    return pd.Categorical.from_codes(lut[codes], dtype=dtype)
