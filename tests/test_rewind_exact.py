"""``CRM.as_of``'s fast rewind (data/_fast.py) gives exactly the frames of the plain pandas steps.

The helpers are compared with obvious pandas formulations (groupby, duplicated,
get_indexer) on hand-built arrays; the whole rewind of the deals with the plain
path (``_rewind_opportunities``, used for tables the fast path does not take) on
hand-built companies: deals without history, won or lost after the date, history
rows without a category, later field changes, text and integer ids, shuffled
history, and the tables the fast path hands back (repeated or missing ids).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastkit.data import _fast
from forecastkit.data.crm import CRM, _before, _rewind_opportunities
from forecastkit.data.validate import TEXT_DTYPE

T0 = pd.Timestamp("2025-01-01")


def _day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


# ----------------------------------------------------------------- helpers
def test_last_rows_is_groupby_tail_of_known_rows() -> None:
    rng = np.random.default_rng(0)
    deal = rng.integers(-1, 30, 400)
    known = rng.random(400) < 0.6
    got = _fast.last_rows(_fast.by_deal(deal), deal, known, 35)
    df = pd.DataFrame({"deal": deal, "row": np.arange(400)})[known & (deal >= 0)]
    want = np.full(35, -1)
    tail = df.groupby("deal").tail(1)
    want[tail["deal"].to_numpy()] = tail["row"].to_numpy()
    np.testing.assert_array_equal(got, want)


def test_last_rows_on_sorted_deals_and_none_known() -> None:
    deal = np.array([0, 0, 0, 2, 2, -1, 3])
    order = _fast.by_deal(deal)
    np.testing.assert_array_equal(order, [0, 1, 2, 3, 4, 6])
    known = np.array([True, True, False, True, False, True, True])
    np.testing.assert_array_equal(_fast.last_rows(order, deal, known, 5), [1, -1, 3, 6, -1])
    np.testing.assert_array_equal(_fast.last_rows(order, deal, np.zeros(7, dtype=bool), 2), [-1, -1])


def test_first_rows_is_not_duplicated() -> None:
    keys = np.random.default_rng(1).integers(0, 20, 200)
    want = np.flatnonzero(~pd.Series(keys).duplicated().to_numpy())
    np.testing.assert_array_equal(_fast.first_rows(keys), want)
    assert len(_fast.first_rows(np.zeros(0, dtype=np.int64))) == 0


@pytest.mark.parametrize("kind", ["text", "int", "object"])
def test_deal_rows_is_get_indexer(kind: str) -> None:
    deals = pd.Series(["O3", "O1", "O2"], dtype=TEXT_DTYPE)
    ids = pd.Series(["O1", None, "O9", "O3", "O1"], dtype=TEXT_DTYPE)
    if kind == "int":
        deals, ids = pd.Series([3, 1, 2]), pd.Series([1, 0, 9, 3, 1])
    elif kind == "object":
        deals, ids = deals.astype(object), ids.astype(object)
    got = _fast.deal_rows(ids, deals)
    want = pd.Index(deals.astype(object)).get_indexer(ids.astype(object))
    want[ids.isna().to_numpy()] = -1
    np.testing.assert_array_equal(got, want)
    assert got.tolist() == [1, -1, -1, 0, 1]
    assert _fast.deal_rows(ids.iloc[:0], deals).tolist() == []


# --------------------------------------------------------- a hand-built company
def _company(int_ids: bool = False, shuffle: bool = False) -> CRM:
    """Six deals: open with history, won before and after the date, lost after it without history,
    a history row without category, and later changes of next step and budget."""
    opps = pd.DataFrame(
        {
            "opportunity_id": ["O1", "O2", "O3", "O4", "O5", "O6"],
            "owner": ["ann", "bob", "ann", "bob", "ann", "bob"],
            "created_at": [_day(0), _day(1), _day(2), _day(3), _day(40.5), _day(5)],
            "stage": ["proposal", "won", "won", "lost", "discovery", "negotiation"],
            "amount": [1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0],
            "close_date": [_day(60), _day(20), _day(50), _day(45), _day(90), _day(70)],
            "closed_at": [pd.NaT, _day(20), _day(50), _day(45), pd.NaT, pd.NaT],
            "forecast_category": ["best_case", "closed", "closed", "omitted", "pipeline", "commit"],
            "probability": [0.4, 1.0, 1.0, 0.0, 0.2, 0.6],
            "loss_reason": [None, None, None, "price", None, None],
            "next_step": ["send quote", None, None, None, "call", "sign"],
            "budget": [np.nan, 2000.0, np.nan, np.nan, np.nan, 9000.0],
        }
    )
    hist = pd.DataFrame(
        [
            ("O1", _day(0), "discovery", 900.0, _day(50), "pipeline"),
            ("O1", _day(25), "proposal", 1000.0, _day(60), "best_case"),
            ("O2", _day(1), "qualification", 2000.0, _day(20), "pipeline"),
            ("O2", _day(20.5), "won", 2000.0, _day(20), "closed"),
            ("O3", _day(2), "discovery", 2500.0, _day(40), "pipeline"),
            ("O3", _day(50.2), "won", 3000.0, _day(50), "closed"),
            ("O6", _day(5), "negotiation", 6000.0, _day(70), None),
            ("O9", _day(5), "proposal", 1.0, _day(70), "commit"),
        ],
        columns=["opportunity_id", "changed_at", "stage", "amount", "close_date", "forecast_category"],
    )
    fh = pd.DataFrame(
        [
            ("O1", _day(10), "next_step", "call back", "send quote"),
            ("O1", _day(35), "next_step", "book demo", "send quote"),
            ("O6", _day(31), "budget", "7500", "9000"),
            ("O6", _day(33), "not_a_field", "x", "y"),
            ("O2", _day(32), "budget", None, "2000"),
        ],
        columns=["opportunity_id", "changed_at", "field", "old_value", "new_value"],
    )
    if shuffle:
        hist = hist.sample(frac=1, random_state=2).reset_index(drop=True)
    tables = {"opportunities": opps, "history": hist, "field_history": fh}
    crm = CRM.from_tables(tables, as_of="2025-03-31")
    if int_ids:
        t = crm.tables
        for name in ("opportunities", "history", "field_history"):
            t[name] = t[name].assign(opportunity_id=t[name]["opportunity_id"].str.slice(1).astype(np.int64))
        crm = CRM({n: t[n] for n in ("opportunities", "history", "field_history")}, as_of_date=crm.as_of_date)
    return crm


def _plain(crm: CRM, date: str) -> pd.DataFrame:
    """The deals rewound by the plain pandas steps."""
    cutoff = pd.Timestamp(date) + pd.Timedelta(days=1)
    hist = _before(crm.history, "changed_at", cutoff)
    return _rewind_opportunities(crm.opportunities, hist, crm.field_history, cutoff, {})


def _fast_as_of(crm: CRM, date: str) -> CRM:
    """``crm.as_of(date)`` by the prepared rewind (a snapshot's first rewind takes the plain steps)."""
    crm.as_of(date)
    snap = crm.as_of(date)
    assert crm._cached_only(("rewind_plan",)) is not None
    return snap


DATES = ["2024-12-31", "2025-01-01", "2025-01-15", "2025-01-20", "2025-01-21", "2025-02-01", "2025-02-10", "2025-03-31"]


@pytest.mark.parametrize("int_ids", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_fast_rewind_equals_plain_steps(int_ids: bool, shuffle: bool) -> None:
    crm = _company(int_ids=int_ids, shuffle=shuffle)
    for date in DATES * 2:  # the second pass reuses the per-snapshot conversions
        got = crm.as_of(date).opportunities
        pd.testing.assert_frame_equal(got, _plain(crm, date), check_exact=True)
    assert crm._cached_only(("rewind_plan",)) is not None  # (the fast path was taken)


def test_fast_rewind_values_on_the_15th_of_january() -> None:
    o = _fast_as_of(_company(), "2025-01-15").opportunities.set_index("opportunity_id")
    assert list(o.index) == ["O1", "O2", "O3", "O4", "O6"]  # O5 created on day 40
    o1 = o.loc["O1"]
    assert (o1["stage"], o1["amount"], o1["status"]) == ("discovery", 900.0, "open")
    assert o1["close_date"] == _day(50) and o1["forecast_category"] == "pipeline"
    assert o1["next_step"] == "book demo" and np.isnan(o1["probability"])  # other stage: probability dropped
    # won on day 20.5: open again, no closed date
    assert o.loc["O2", "stage"] == "qualification" and pd.isna(o.loc["O2", "closed_at"])
    # lost on day 45 without history: open, stage unknown, no loss reason, probability dropped
    o4 = o.loc["O4"]
    assert pd.isna(o4["stage"]) and o4["status"] == "open" and pd.isna(o4["loss_reason"])
    assert pd.isna(o4["closed_at"]) and np.isnan(o4["probability"])
    # history without a category: the current one; same stage: typed-in probability kept
    o6 = o.loc["O6"]
    assert o6["forecast_category"] == "commit" and o6["probability"] == 0.6 and o6["budget"] == 7500.0
    for col in ("stage", "status", "forecast_category", "loss_reason", "next_step"):
        assert o[col].dtype == TEXT_DTYPE


def test_fast_rewind_fills_closed_date_from_history() -> None:
    crm = _company()
    t = crm.tables
    t["opportunities"] = t["opportunities"].assign(closed_at=pd.NaT)  # closed without a date: the last row's day
    crm = CRM({n: t[n] for n in ("opportunities", "history", "field_history")}, as_of_date=crm.as_of_date)
    o = _fast_as_of(crm, "2025-03-31").opportunities.set_index("opportunity_id")
    assert o.loc["O2", "closed_at"] == _day(20) and o.loc["O3", "closed_at"] == _day(50)
    assert o.loc["O2", "forecast_category"] == "closed" and o.loc["O4", "forecast_category"] == "omitted"
    assert o.loc["O4", "loss_reason"] == "price"
    pd.testing.assert_frame_equal(crm.as_of("2025-03-31").opportunities, _plain(crm, "2025-03-31"), check_exact=True)


def _replace(crm: CRM, **tables: pd.DataFrame) -> CRM:
    t = {n: crm.tables[n] for n in ("opportunities", "history", "field_history")}
    return CRM({**t, **tables}, as_of_date=crm.as_of_date)


def test_repeated_or_missing_ids_take_the_plain_path() -> None:
    crm = _company()
    o = crm.opportunities
    twice = _replace(crm, opportunities=pd.concat([o, o.iloc[[2]]], ignore_index=True))
    missing = o.copy()
    missing.loc[4, "opportunity_id"] = pd.NA
    for odd in (twice, _replace(crm, opportunities=missing)):
        odd = _replace(odd, opportunities=odd.opportunities, field_history=crm.field_history.iloc[:0])
        for date in ("2025-01-15", "2025-03-31"):
            pd.testing.assert_frame_equal(odd.as_of(date).opportunities, _plain(odd, date), check_exact=True)
        assert odd._cached_only(("rewind_plan",)) is None


def test_empty_history_and_deals_without_history() -> None:
    crm = _company()
    h = crm.history
    for hist in (h.iloc[:0], h[h["opportunity_id"] != "O1"].reset_index(drop=True)):
        c = _replace(crm, history=hist, field_history=crm.field_history.iloc[:0])
        for date in DATES:
            pd.testing.assert_frame_equal(c.as_of(date).opportunities, _plain(c, date), check_exact=True)
        assert c._cached_only(("rewind_plan",)) is not None


def test_missing_history_ids_are_left_out() -> None:
    crm = _company()
    h = crm.history.copy()
    h.loc[0, "opportunity_id"] = pd.NA  # O1's first row: no deal
    c = _replace(crm, history=h)
    got = _fast_as_of(c, "2025-01-15").opportunities
    pd.testing.assert_frame_equal(got, _plain(c, "2025-01-15"), check_exact=True)
    assert got.set_index("opportunity_id").loc["O1", "stage"] == "proposal"  # no known history row: current


def test_rewinding_a_rewound_snapshot_and_unknown_stages() -> None:
    crm = _company()
    once = crm.as_of("2025-02-01")  # O4 (lost on day 45, no history) is open with an unknown stage
    o = once.opportunities.copy()
    o.loc[o["opportunity_id"] == "O4", "probability"] = 0.3  # unknown stage: the typed-in value cannot stay
    again = _replace(once, opportunities=o, history=once.history, field_history=once.field_history)
    for date in ("2025-01-15", "2025-01-25", "2025-02-01"):
        got = again.as_of(date).opportunities
        pd.testing.assert_frame_equal(got, _plain(again, date), check_exact=True)
        assert np.isnan(got.set_index("opportunity_id").loc["O4", "probability"])
    assert again._cached_only(("rewind_plan",)) is not None


def test_deal_rows_of_a_table_sorted_by_deal() -> None:
    deals = pd.Series(["O2", "O1", "O3"], dtype=TEXT_DTYPE)
    ids = pd.Series(["O1", "O1", "O1", "O2", "O9", "O9", "O3", "O3"], dtype=TEXT_DTYPE)  # runs: looked up once each
    assert _fast.deal_rows(ids, deals).tolist() == [1, 1, 1, 0, -1, -1, 2, 2]
    with_missing = pd.Series(["O1", "O1", None, None, "O3", "O3"], dtype=TEXT_DTYPE)
    assert _fast.deal_rows(with_missing, deals).tolist() == [1, 1, -1, -1, 2, 2]


def test_open_and_closed_deals_of_a_rewound_snapshot() -> None:
    crm = _company()
    for date in DATES:
        snap = crm.as_of(date)
        o = snap.opportunities
        pd.testing.assert_frame_equal(snap.open_deals, o[o["status"] == "open"], check_exact=True)
        pd.testing.assert_frame_equal(snap.closed_deals, o[o["status"] != "open"], check_exact=True)
    assert snap._cached_only(("open",)) is not None  # (set by the rewind)


def test_a_single_rewind_takes_the_plain_steps() -> None:
    crm = _company()
    crm.as_of("2025-01-15")
    assert crm._cached_only(("rewind_plan",)) is None  # (preparing costs more than one plain rewind)
    crm.as_of("2025-01-16")
    assert crm._cached_only(("rewind_plan",)) is not None


def test_a_lean_copy_is_prepared_at_its_first_rewind() -> None:
    crm = _company()
    lean = crm._rewind_source(crm.opportunities.columns)
    got = lean.as_of("2025-01-15").opportunities
    assert lean._cached_only(("rewind_plan",)) is not None
    pd.testing.assert_frame_equal(got, crm.as_of("2025-01-15").opportunities, check_exact=True)


# ------------------------------------------------ read-only rewinds (the backtest's lean copy)
@pytest.mark.parametrize("by_creation", [False, True])
def test_read_only_rewinds_share_the_first_rows_and_equal_the_copies(by_creation: bool) -> None:
    crm = _company()
    if by_creation:  # deals in creation order: those created before a date are the first rows
        t = crm.tables
        t["opportunities"] = t["opportunities"].sort_values("created_at", kind="stable").reset_index(drop=True)
        crm = CRM({n: t[n] for n in ("opportunities", "history", "field_history")}, as_of_date=crm.as_of_date)
    shared = crm._rewind_source(crm.opportunities.columns)
    shared._cached(("read_only_rewinds",), lambda: True)
    before = shared.opportunities.copy()
    for date in DATES:
        got = shared.as_of(date).opportunities
        pd.testing.assert_frame_equal(got, crm.as_of(date).opportunities, check_exact=True)
        pd.testing.assert_frame_equal(got, _plain(crm, date), check_exact=True)
    pd.testing.assert_frame_equal(shared.opportunities, before, check_exact=True)  # nothing written into it


def test_head_shares_the_rows_and_a_new_column_leaves_the_source() -> None:
    from forecastkit.data.crm import _head

    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": pd.array(["x", "y", None], dtype=TEXT_DTYPE)}, index=[5, 6, 7])
    head = _head(df, 2)
    assert list(head.index) == [0, 1] and list(head["a"]) == [1.0, 2.0]
    assert np.shares_memory(head["a"].to_numpy(), df["a"].to_numpy())
    head["a"] = [9.0, 9.0]
    head["b"] = pd.array(["z", "z"], dtype=TEXT_DTYPE)
    assert list(df["a"]) == [1.0, 2.0, 3.0] and list(df["b"].astype(object)) == ["x", "y", pd.NA]


def test_as_of_skipping_tables_leaves_them_out_and_rewinds_the_others() -> None:
    crm = _company()
    d = pd.Timestamp("2025-01-20")
    full = crm.as_of(d)
    lean = crm._as_of(d, skip=("field_history",))
    assert not lean.has("field_history") and lean.field_history.empty and full.has("field_history")
    for name in ("opportunities", "history"):
        pd.testing.assert_frame_equal(lean.tables[name], full.tables[name], check_exact=True)


@pytest.mark.parametrize("seed", range(6))
def test_last_known_counts_time_ordered_runs_as_last_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, h = 30, 200
    deal = np.sort(rng.integers(0 if seed == 5 else -1, n, h)) if seed % 2 else rng.integers(-1, n, h)
    changed = rng.integers(0, 50, h).astype("datetime64[D]").astype("datetime64[ns]")
    if seed >= 4:  # each deal's rows in time order, then one missing date: the plain path again
        order = _fast.by_deal(deal)
        changed[order] = np.sort(changed)[np.argsort(np.argsort(deal[order], kind="stable"), kind="stable")]
    order = _fast.by_deal(deal)
    runs = _fast._time_ordered_runs(order, deal, changed)
    plan = _fast.RewindPlan.__new__(_fast.RewindPlan)
    plan.n, plan.hist_order, plan.hist_deal, plan.changed, plan.runs = n, order, deal, changed, runs
    for cut in ("1970-01-01", "1970-01-20", "1970-02-10", "1971-01-01"):
        c = np.datetime64(cut, "ns")
        want = _fast.last_rows(order, deal, changed < c, n)
        np.testing.assert_array_equal(plan.last_known(c), want)
    if seed >= 4:
        assert runs is not None and runs[2] == (seed == 5)  # (5: every row in table order)
        changed[order[-1]] = np.datetime64("NaT")
        assert _fast._time_ordered_runs(order, deal, changed) is None or deal[order][-2] != deal[order][-1]


@pytest.mark.parametrize("budget_dtype", ["float64", "object"])
def test_fast_rewind_restores_dates_and_columns_of_other_types(budget_dtype: str) -> None:
    crm = _company()
    t = {n: crm.tables[n] for n in ("opportunities", "history", "field_history")}
    o = t["opportunities"]
    t["opportunities"] = o.assign(
        next_step_date=pd.to_datetime([_day(30), pd.NaT, pd.NaT, pd.NaT, _day(95), _day(40)]).astype("datetime64[ns]"),
        budget=o["budget"].astype(budget_dtype),
    )
    fh = t["field_history"]
    extra = pd.DataFrame(
        [
            ("O1", _day(12), "next_step_date", "2025-01-20", "2025-01-31"),
            ("O6", _day(34), "next_step_date", None, "2025-02-10"),
            ("O6", _day(36), "budget", "8000", "9000"),
        ],
        columns=list(fh.columns),
    ).astype(fh.dtypes.to_dict())
    t["field_history"] = pd.concat([fh, extra], ignore_index=True)
    crm = CRM(t, as_of_date=crm.as_of_date)
    for date in DATES * 2:
        got = _fast_as_of(crm, date).opportunities
        pd.testing.assert_frame_equal(got, _plain(crm, date), check_exact=True)
    assert _fast_as_of(crm, "2025-01-10").opportunities["next_step_date"].iloc[0] == pd.Timestamp("2025-01-20")
