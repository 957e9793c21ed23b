"""The fast paths of a backtest checkpoint give exactly the numbers of the plain pandas formulations.

Each test compares a fast path (numpy object comparisons of the deal status, won deals'
rows reused, history rows' deals read by position) with the pandas code it replaced,
written out here, on hand-built frames with missing values, unknown texts and empty
tables, so that a difference in any corner shows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _forecast_fixtures import tiny_crm

from forecastkit._text import text_is
from forecastkit.data.crm import CRM
from forecastkit.forecast import backtest as B
from forecastkit.forecast.montecarlo import new_deal_run_rate
from forecastkit.periods import parse_period
from forecastkit.probability import features as F

# --------------------------------------------------------------------------- text_is
_COLUMNS = {
    "string": pd.Series(["won", "lost", pd.NA, "open", "Won", "won "], dtype="string"),
    "string, none missing": pd.Series(["won", "lost", "open", "won"], dtype="string"),
    "object": pd.Series(["won", None, np.nan, "open", 3, "won"], dtype=object),
    "object with NA": pd.Series(["won", pd.NA, "open"], dtype=object),
    "categorical": pd.Series(["won", None, "open", "won"], dtype="category"),
    "pyarrow": pd.Series(["won", None, "open"], dtype="string[pyarrow]"),
    "empty": pd.Series([], dtype="string"),
    "empty object": pd.Series([], dtype=object),
    "numbers": pd.Series([1.0, np.nan, 2.0]),
}


@pytest.mark.parametrize("name", list(_COLUMNS))
@pytest.mark.parametrize("value", ["won", "open", "unknown", ""])
def test_text_is_is_pandas_equality_with_missing_false(name: str, value: str) -> None:
    col = _COLUMNS[name]
    got = text_is(col, value)
    want = (col == value).to_numpy(dtype=bool, na_value=False)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want)


def test_text_is_reads_a_column_with_a_custom_index() -> None:
    col = pd.Series(["open", "won", pd.NA], index=[10, 10, 3], dtype="string")
    np.testing.assert_array_equal(text_is(col, "won"), [False, True, False])


# --------------------------------------------------------------------------- hand-built snapshots
def _snapshot(status: pd.Series, as_of: str = "2026-11-20") -> CRM:
    """Deals of two owners (and one without owner), with the given statuses, closed over two years."""
    n = len(status)
    created = pd.date_range("2024-10-03", periods=n, freq="29D")
    closed = pd.Series(created + pd.Timedelta(days=40))
    closed[status.astype(object).isin(["open"]).to_numpy()] = pd.NaT
    closed.iloc[::5] = pd.NaT  # closed deals without a close timestamp: their close date counts
    opps = pd.DataFrame(
        {
            "opportunity_id": [f"D{i}" for i in range(n)],
            "owner": pd.array((["alice", "bob", None] * n)[:n], dtype="string"),
            "created_at": created,
            "close_date": pd.Series(created + pd.Timedelta(days=45)).where(np.arange(n) % 7 != 3),
            "closed_at": closed.to_numpy(),
            "amount": np.arange(n, dtype=float) * 100.0 + 50.0,
            "status": status.to_numpy(),
            "stage": pd.array((["discovery", "proposal", None, "mystery"] * n)[:n], dtype="string"),
        }
    )
    opps["status"] = opps["status"].astype(status.dtype)
    return CRM({"opportunities": opps}, as_of_date=pd.Timestamp(as_of))


_STATUSES = {
    "string": pd.Series((["won", "lost", "open", "won", pd.NA, "lost", "won"] * 5)[:32], dtype="string"),
    "no missing": pd.Series((["won", "lost", "open", "won", "lost"] * 7)[:32], dtype="string"),
    "odd texts": pd.Series((["won", "abandoned", "open", None, "Won"] * 7)[:32], dtype="string"),
    "object": pd.Series((["won", "lost", "open", None, np.nan, "won"] * 6)[:32], dtype=object),
    "all open": pd.Series(["open"] * 12, dtype="string"),
    "none": pd.Series([], dtype="string"),
}


def _owner_win_rate_pandas(snapshot: CRM, owners: pd.Series) -> np.ndarray:
    """The plain pandas formulation of ``_owner_win_rate``."""
    o = snapshot.opportunities[["status", "closed_at", "close_date", "owner"]]
    c = o[(o["status"] != "open").to_numpy(dtype=bool, na_value=True)]
    when = c["closed_at"].fillna(c["close_date"])
    c = c[when > snapshot.as_of_date - F._OWNER_WINDOW]
    won = (c["status"] == "won").astype(float)
    m = float(won.mean()) if len(c) else np.nan
    g = won.groupby(c["owner"].to_numpy()).agg(["sum", "count"])
    rate = (g["sum"] + F._OWNER_PRIOR * m) / (g["count"] + F._OWNER_PRIOR)
    return owners.map(rate).fillna(m).to_numpy(float)


@pytest.mark.parametrize("name", list(_STATUSES))
def test_owner_win_rate_equals_the_pandas_formulation(name: str) -> None:
    snap = _snapshot(_STATUSES[name])
    owners = pd.Series(["alice", "bob", "carol", None, pd.NA], dtype="string")
    got = F._owner_win_rate(snap, owners)
    want = _owner_win_rate_pandas(snap, owners)
    np.testing.assert_array_equal(got, want)
    if name in ("string", "object"):  # real rates compared, and the missing statuses matter
        assert np.isfinite(want).all() and len(set(want)) > 1


def _new_deals_pandas(crm: CRM, period, n_periods: int = 4) -> tuple:  # type: ignore[no-untyped-def]
    """The plain pandas formulation of ``new_deal_run_rate``: (counts' mean, pool, rows, labels)."""
    o = crm.opportunities
    elapsed = crm.as_of_date + pd.Timedelta(days=1) - period.start
    first_created = o["created_at"].min()
    counts, amounts, labels, rows = [], [], [], []
    p = period
    for _ in range(n_periods):
        p = p.shift(-1, crm.playbook)
        if pd.isna(first_created) or p.end <= first_created:
            break
        if p.end > crm.as_of_date + pd.Timedelta(days=1) or p.start < first_created.normalize():
            continue
        cut = p.start + elapsed
        sel = (o["status"] == "won") & (o["created_at"] >= cut) & (o["closed_at"] < p.end) & (o["closed_at"] >= p.start)
        sel = sel.fillna(False).to_numpy(dtype=bool)
        counts.append(int(sel.sum()))
        amounts.append(o["amount"].to_numpy(float)[sel])
        rows.append(np.flatnonzero(sel))
        labels.append(p.label)
    if not counts:
        return None
    return float(np.mean(counts)), np.concatenate(amounts), np.concatenate(rows), tuple(labels)


@pytest.mark.parametrize("name", list(_STATUSES))
def test_new_deal_run_rate_equals_the_pandas_formulation(name: str) -> None:
    snap = _snapshot(_STATUSES[name])
    for label in ("2026-Q4", "2026-Q2"):
        per = parse_period(label)
        got = new_deal_run_rate(snap, per)
        want = _new_deals_pandas(snap, per)
        if want is None:
            assert got.rate == 0 and len(got.amounts) == 0 and got.periods == ()
            continue
        rate, pool, rows, labels = want
        assert got.rate == rate and got.periods == labels
        np.testing.assert_array_equal(got.amounts, pool)
        np.testing.assert_array_equal(got.rows, rows)
        assert got.expected == float(pool.sum() / len(labels))


def test_new_deal_run_rate_counts_won_deals_of_a_real_company() -> None:
    crm = tiny_crm()
    per = parse_period("2026-Q4")
    snap = crm.as_of("2026-10-01")
    got = new_deal_run_rate(snap, per, n_periods=1)
    want = _new_deals_pandas(snap, per, 1)
    # 2026-Q3: W2 created 08-25 (after 07-01 + 1 day elapsed) and won 09-10; W0 created 07-01 before the cut
    assert got.rate == want[0] == 1.0 and list(got.amounts) == [600.0]
    np.testing.assert_array_equal(got.rows, want[2])


def _won_amount_pandas(snap: CRM, per) -> float:  # type: ignore[no-untyped-def]
    o = snap.opportunities
    m = (o["status"] == "won").fillna(False).to_numpy(dtype=bool) & per.contains(o["closed_at"]).fillna(False).to_numpy(
        dtype=bool
    )
    return float(o.loc[m, "amount"].sum())


def _run_rate_pandas(snap: CRM, per, n_periods: int, cw: float) -> dict:  # type: ignore[no-untyped-def]
    o = snap.opportunities
    won = o[(o["status"] == "won").fillna(False).to_numpy(dtype=bool)]
    elapsed = snap.as_of_date + pd.Timedelta(days=1) - per.start
    first = o["created_at"].min()
    vals, p = [], per
    for _ in range(n_periods):
        p = p.shift(-1, snap.playbook)
        if pd.isna(first) or p.start < first.normalize():
            break
        rest = (won["closed_at"] >= p.start + elapsed) & (won["closed_at"] < p.end)
        vals.append(float(won.loc[rest.fillna(False).to_numpy(dtype=bool), "amount"].sum()))
    if not vals:
        return {"forecast": cw, "note": "no completed past period: run-rate adds zero"}
    return {"forecast": cw + float(np.mean(vals))}


@pytest.mark.parametrize("name", list(_STATUSES))
def test_checkpoint_amounts_equal_the_pandas_formulation(name: str) -> None:
    snap = _snapshot(_STATUSES[name])
    ctx = B._Context(snap, parse_period("2026-Q4"), None, 4)
    o = snap.opportunities
    pd.testing.assert_frame_equal(ctx.open_deals, snap.open_deals, check_exact=True)
    # a deal without a status is neither open nor closed (as pandas masks it)
    pd.testing.assert_frame_equal(snap.open_deals, o[o["status"] == "open"], check_exact=True)
    pd.testing.assert_frame_equal(snap.closed_deals, o[o["status"] != "open"], check_exact=True)
    won = np.flatnonzero((o["status"] == "won").fillna(False).to_numpy(dtype=bool))
    np.testing.assert_array_equal(B._won_rows(snap), won)
    for label in ("2026-Q4", "2026-Q3", "2025-Q1", "2024-Q1"):
        per = parse_period(label)
        cw = B._won_amount(snap, per)
        assert cw == _won_amount_pandas(snap, per)
        assert B._run_rate(snap, per, 4, cw) == _run_rate_pandas(snap, per, 4, cw)
    if name == "string":  # real amounts compared
        assert _won_amount_pandas(snap, parse_period("2025-Q1")) > 0


def test_score_reads_the_actuals_of_the_won_deals() -> None:
    crm = tiny_crm()
    pers = [parse_period("2026-Q3"), parse_period("2026-Q4")]
    rows = pd.DataFrame(
        {"period": ["2026-Q3", "2026-Q4"], "forecast": [1.0, 2.0], "p10": [np.nan, 0.0], "p90": [np.nan, 5000.0]}
    )
    for c in ("checkpoint", "as_of", "method", "closed_won", "p50", "note"):
        rows[c] = None
    out = B._score(rows, crm, pers)
    assert list(out["actual"]) == [1100.0, 1000.0]  # Q3: W0 500 + W2 600; Q4: W1 1000 (L1 lost)


# --------------------------------------------------------------------------- features by position
def test_point_in_time_features_by_history_position_equal_the_id_lookup() -> None:
    from _probability_samples import sample

    crm, _ = sample("baseline", 0)
    methods = ["model", "stage"]
    rewind = B._Rewinder(crm, methods, None, crm.as_of_date - pd.Timedelta(days=400))
    assert rewind.by_position and rewind.ids_known
    for k in (400, 120, 0):
        d = crm.as_of_date - pd.Timedelta(days=k)
        snap, pos = rewind.at(d)
        assert pos is not None
        held = snap._cached_only(("deal_pos", "history"))
        assert held is not None and (held >= 0).any()
        plain = rewind.lean.as_of(d)  # the same snapshot, without the positions
        assert plain._cached_only(("deal_pos", "history")) is None
        np.testing.assert_array_equal(
            held, np.asarray(B._first_positions(plain.opportunities["opportunity_id"], plain.history["opportunity_id"]))
        )
        got = F.point_in_time_features(snap)
        want = F.point_in_time_features(plain)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert len(want) > 0 and want["close_date_pushes"].sum() > 0


def test_open_compact_by_position_with_unknown_deals_and_empty_history() -> None:
    crm = tiny_crm()
    snap = crm.as_of("2026-11-20")
    o, rows = F._open_deal_columns(snap, rows=True)
    want = F._open_compact(snap, o)
    # a history row of a deal the opportunities do not hold reads -1
    h = snap.history
    extra = pd.DataFrame({c: h[c].iloc[:1] for c in h.columns}).assign(opportunity_id="ZZ")
    tables = {**snap.tables, "history": pd.concat([h, extra], ignore_index=True)}
    odd = CRM({k: tables[k] for k in ("opportunities", "history")}, as_of_date=snap.as_of_date)
    odd._rows_of_deals("history", np.ones(len(odd.opportunities), dtype=bool))
    got = F._open_compact(odd, o, rows)
    pd.testing.assert_frame_equal(got.history, F._open_compact(odd, o).history, check_exact=True)
    pd.testing.assert_frame_equal(got.history.iloc[: len(want.history)], want.history, check_exact=True)
    # no history at all
    empty = CRM({"opportunities": snap.opportunities}, as_of_date=snap.as_of_date)
    empty._rows_of_deals("history", np.ones(len(empty.opportunities), dtype=bool))
    assert len(F._open_compact(empty, o, rows).history) == 0


# --------------------------------------------------------------------------- win model codes
@pytest.mark.parametrize(
    "cells",
    [
        pd.Series(["b", None, "a", "zz", np.nan, "(missing)", "a"], dtype=object),
        pd.Series(["b", pd.NA, "a", "unseen"], dtype="string"),
        pd.Series([1, 1.0, True, "a", None], dtype=object),  # (1 == 1.0 == True, but their texts differ)
        pd.Series([], dtype=object),
        pd.Series([None, None], dtype=object),
    ],
)
def test_win_model_vocabulary_codes_equal_the_text_lookup(cells: pd.Series) -> None:
    from forecastkit.probability import model as M

    vocab = {"stage": pd.Index(["(missing)", "1", "1.0", "True", "a", "b"], dtype=object)}
    rows = pd.DataFrame({"stage": cells, "log_amount": np.arange(len(cells), dtype=float)})
    got = M._frame(rows, ["stage", "log_amount"], vocab)
    text = cells.astype(object).where(cells.notna(), "(missing)").astype(str)
    want = vocab["stage"].get_indexer(text.to_numpy(dtype=object))
    np.testing.assert_array_equal(got["stage"].to_numpy(), want)
    assert got["stage"].dtype == np.intp


# --------------------------------------------------------------------------- open deals' columns
@pytest.mark.parametrize("name", list(_STATUSES))
def test_open_deal_columns_and_owner_rate_from_the_open_rows(name: str) -> None:
    snap = _snapshot(_STATUSES[name])
    o = snap.opportunities
    is_open = (o["status"] == "open").to_numpy(dtype=bool, na_value=False)
    cols = [c for c in dict.fromkeys([*F._DEAL_COLUMNS, *snap.playbook.qualification_fields]) if c in o]
    got, rows = F._open_deal_columns(snap, rows=True)
    pd.testing.assert_frame_equal(got, o.loc[is_open, cols].reset_index(drop=True), check_exact=True)
    np.testing.assert_array_equal(rows, np.flatnonzero(is_open))
    owners = pd.Series(["alice", "bob", None], dtype="string")
    np.testing.assert_array_equal(F._owner_win_rate(snap, owners, rows), _owner_win_rate_pandas(snap, owners))


def test_training_source_numbers_look_up_like_text_ids() -> None:
    from _probability_samples import sample

    from forecastkit.data import timeline

    crm, _ = sample("baseline", 0)
    key, lean, ids = F._training_source(crm, crm.as_of_date - pd.Timedelta(days=200), 300)
    assert ids is not None and lean.opportunities["opportunity_id"].dtype == np.int64
    snap = lean.as_of(crm.as_of_date - pd.Timedelta(days=300))
    o, rows = F._open_deal_columns(snap, rows=True)
    h = snap.history
    np.testing.assert_array_equal(
        F._deal_positions(h["opportunity_id"], o["opportunity_id"]),
        timeline._row_positions(h["opportunity_id"], o["opportunity_id"]),
    )
    got = F._activity_features(snap, o["opportunity_id"], rows)
    want = F._activity_features_by_groupby(snap, o["opportunity_id"])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert want[0].sum() > 0
    # repeated integer ids keep the groupby
    twice = pd.concat([o["opportunity_id"], o["opportunity_id"].iloc[:3]], ignore_index=True)
    got = F._activity_features(snap, twice)
    want = F._activity_features_by_groupby(snap, twice)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


# --------------------------------------------------------------------------- slip model state
def _pushes_pandas(crm: CRM, open_deals: pd.DataFrame) -> np.ndarray:
    """Pushes of each open deal counted on the whole history (the formulation before the open deals' rows only)."""
    h = crm.history
    nh = len(h)
    ids = np.asarray(open_deals["opportunity_id"], dtype=object)
    both, uniques = pd.factorize(np.concatenate([np.asarray(h["opportunity_id"], dtype=object), ids]))
    n_codes = len(uniques) + 1
    hc = np.where(both[:nh] < 0, n_codes - 1, both[:nh])
    oc = np.where(both[nh:] < 0, n_codes - 1, both[nh:])
    cd = h["close_date"].to_numpy(dtype="datetime64[ns]")
    pushed = np.zeros(nh, dtype=bool)
    if nh > 1:
        pushed[1:] = (hc[1:] == hc[:-1]) & (hc[1:] < n_codes - 1) & (cd[1:] - cd[:-1] >= np.timedelta64(1, "D"))
    pushes = np.bincount(hc[pushed], minlength=n_codes)[oc]
    pushes[oc == n_codes - 1] = 0
    return pushes


def test_open_deal_state_pushes_on_interleaved_history_with_gaps() -> None:
    from forecastkit.forecast.slips import _open_deal_state

    rng = np.random.default_rng(3)
    n = 400
    ids = rng.choice(["A", "B", "C", "D", "E", "closed1", "ghost"], n)  # interleaved; "ghost" has no deal row
    ids = pd.array(np.where(rng.random(n) < 0.05, None, ids), dtype="string")
    close = pd.Series(pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 90, n), unit="D"))
    close[rng.random(n) < 0.1] = pd.NaT
    hist = pd.DataFrame(
        {
            "opportunity_id": ids,
            "changed_at": pd.Timestamp("2025-06-01") + pd.to_timedelta(np.arange(n), unit="h"),
            "stage": pd.array(rng.choice(["discovery", "proposal"], n), dtype="string"),
            "close_date": close.to_numpy(),
        }
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": pd.array(["A", "B", "C", "D", "E", "closed1", "F"], dtype="string"),
            "created_at": pd.Timestamp("2025-05-01"),
            "status": pd.array(["open"] * 5 + ["won", "open"], dtype="string"),
        }
    )
    crm = CRM({"opportunities": opps, "history": hist}, as_of_date=pd.Timestamp("2026-06-01"))
    o = crm.open_deals
    want = _pushes_pandas(crm, o)
    np.testing.assert_array_equal(_open_deal_state(crm, o)["pushes"].to_numpy(), want)
    np.testing.assert_array_equal(_open_deal_state(crm, o, days=False)["pushes"].to_numpy(), want)
    assert want[:5].min() > 0 and want[-1] == 0  # F has no history
    empty = CRM({"opportunities": opps, "history": hist.iloc[:0]}, as_of_date=pd.Timestamp("2026-06-01"))
    assert _open_deal_state(empty, o)["pushes"].tolist() == [0] * len(o)
