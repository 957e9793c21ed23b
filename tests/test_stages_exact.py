"""The array fast paths of stage_probabilities and the timeline equal plain pandas formulations, exactly.

Each fast path (id look-ups by merging sorted runs, stage orders read once per run,
entry and furthest stage read run by run) is compared with a slow, obviously-correct
formulation on hand-built and random histories: sorted and unsorted, repeated and
missing ids, integer ids, missing times, stages outside the playbook.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data import timeline
from forecastkit.data.crm import CRM
from forecastkit.playbook import Playbook
from forecastkit.probability import stages

PB = Playbook()
NAMES = list(PB.stage_names)
VALUES = [*NAMES, "won", "lost", "mystery", None]  # a stage outside the playbook, a missing one


# --------------------------------------------------------------------------- plain formulations
def _plain_positions(keys: list, index: list) -> np.ndarray:
    """Position of each key in ``index`` by a dict (hash equality, as pandas); -1 when absent."""
    where = {v: i for i, v in enumerate(index)}
    assert len(where) == len(index)
    return np.array([where.get(k, -1) for k in keys], dtype=np.int64)


def _plain_order(stage: object) -> float:
    """``stage_order`` of one value: pipeline position, won = number of stages, lost = -1, else NaN."""
    if not isinstance(stage, str):
        return np.nan
    if stage == "won":
        return float(len(NAMES))
    if stage == "lost":
        return -1.0
    return float(NAMES.index(stage)) if stage in NAMES else np.nan


def _plain_progress(h: pd.DataFrame, ids: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per deal of ``ids``: entry and furthest order from its own history rows, and whether it has any row.

    Rows in lost or unknown stages are left out; the entry is the earliest remaining row
    (missing times last, ties: first row).
    """
    hid = list(h["opportunity_id"].astype(object))
    entry, furthest, has = [], [], []
    for deal in ids:
        rows = [i for i, x in enumerate(hid) if x is not pd.NA and x is not None and x == deal]
        has.append(bool(rows))
        mine = pd.DataFrame(
            {
                "t": h["changed_at"].to_numpy()[rows],
                "order": [_plain_order(s) for s in h["stage"].astype(object).to_numpy()[rows]],
                "row": rows,
            }
        )
        mine = mine[mine["order"] >= 0].sort_values(["t", "row"], na_position="last", kind="stable")
        entry.append(mine["order"].iloc[0] if len(mine) else np.nan)
        furthest.append(mine["order"].max() if len(mine) else np.nan)
    return np.array(entry, dtype=float), np.array(furthest, dtype=float), np.array(has, dtype=bool)


def _random_history(seed: int, n_deals: int = 40, integer_ids: bool = False) -> tuple[list, pd.DataFrame]:
    """Deals and a history sorted by deal and time (ties and repeated stages included)."""
    rng = np.random.default_rng(seed)
    ids = list(range(100, 100 + n_deals)) if integer_ids else [f"D{i:03d}" for i in range(n_deals)]
    rows = []
    for deal in ids:
        n = int(rng.integers(1, 7))
        days = np.sort(rng.integers(0, 30, n))  # equal days: ties
        for d in days:
            rows.append(
                (deal, pd.Timestamp("2026-01-01") + pd.Timedelta(days=int(d)), VALUES[rng.integers(len(VALUES))])
            )
    h = pd.DataFrame(rows, columns=["opportunity_id", "changed_at", "stage"])
    h["opportunity_id"] = h["opportunity_id"].astype("int64" if integer_ids else "string")
    h["stage"] = h["stage"].astype("string")
    return ids, h


def _variants(ids: list, h: pd.DataFrame, seed: int) -> dict[str, tuple[list, pd.DataFrame]]:
    """The sorted history and awkward versions of it."""
    rng = np.random.default_rng(seed)
    out = {"sorted": (ids, h)}
    out["shuffled"] = (ids, h.sample(frac=1.0, random_state=seed).reset_index(drop=True))
    out["deals without history"] = (ids, h[h["opportunity_id"].isin(ids[::3])].reset_index(drop=True))
    out["history of unknown deals"] = (ids[1::2], h)
    out["deals in another order"] = (list(rng.permutation(np.array(ids, dtype=object))), h)
    split = h.copy()
    split.loc[split.index[:3], "opportunity_id"] = split["opportunity_id"].iloc[-1]  # one deal in two runs
    out["deal in two runs"] = (ids, split)
    back = h.copy()
    back.loc[back.index[1], "changed_at"] = pd.Timestamp("2025-01-01")  # time going backwards in a run
    back.loc[back.index[5], "changed_at"] = pd.NaT
    out["times out of order, missing"] = (ids, back)
    return out


# --------------------------------------------------------------------------- id look-ups
@pytest.mark.parametrize(
    ("keys", "index"),
    [
        (["a", "b", "c"], ["a", "b", "c"]),  # the same ids: 0..n-1
        (["a", "c", "e"], ["a", "b", "c", "d"]),  # sorted, some absent
        (["b", "c"], ["a", "b", "c", "d"]),  # sorted subset
        (["a", "b", "c", "d"], ["b", "d"]),  # sorted superset
        (["x", "y"], ["a", "b"]),  # nothing in common
        (["c", "a", "b"], ["a", "b", "c"]),  # unsorted keys
        (["a", "b", "c"], ["c", "a", "b"]),  # unsorted index
        ([3, 5, 9, 11], [1, 3, 5, 7, 9]),  # integer ids
        ([3, 5], ["3", "5"]),  # numbers against texts: not equal, no error
        ([], ["a"]),
        (["a"], []),
    ],
)
def test_run_positions_equal_a_dict_look_up(keys, index):
    got = timeline._run_positions(np.array(keys, dtype=object), np.array(index, dtype=object))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, _plain_positions(keys, index))


def test_run_positions_on_a_repeated_index_raise_like_pandas():
    keys, index = np.array(["a", "b"], dtype=object), np.array(["a", "a", "b"], dtype=object)
    with pytest.raises(pd.errors.InvalidIndexError):
        pd.Index(index).get_indexer(keys)
    with pytest.raises(pd.errors.InvalidIndexError):
        timeline._run_positions(keys, index)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("integer_ids", [False, True])
def test_row_positions_equal_pandas_get_indexer(seed, integer_ids):
    ids, h = _random_history(seed, integer_ids=integer_ids)
    for name, (opp_ids, hist) in _variants(ids, h, seed).items():
        want = pd.Index(np.array(opp_ids, dtype=object)).get_indexer(hist["opportunity_id"].astype(object))
        got = timeline._row_positions(hist["opportunity_id"], pd.Series(opp_ids, dtype=object))
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_row_positions_with_missing_history_ids():
    keys = pd.Series(["a", "a", pd.NA, "b", pd.NA], dtype="string")
    got = timeline._row_positions(keys, pd.Series(["b", "a"], dtype="string"))
    np.testing.assert_array_equal(got, [1, 1, -1, 0, -1])


# --------------------------------------------------------------------------- stage orders
@pytest.mark.parametrize("seed", [0, 1])
def test_stage_order_codes_equal_the_value_by_value_rule(seed):
    _, h = _random_history(seed)
    for stage_col in (h["stage"], h["stage"].astype(object), h["stage"].sample(frac=1.0, random_state=seed)):
        got = timeline._stage_order_codes(stage_col, PB)
        want = np.array([_plain_order(s) for s in stage_col.astype(object)], dtype=float)
        np.testing.assert_array_equal(got, want)
    few_runs = pd.Series(["won"] * 5 + ["mystery"] * 3 + [None, None] + ["lost"], dtype=object)
    np.testing.assert_array_equal(
        timeline._stage_order_codes(few_runs, PB), [_plain_order(s) for s in few_runs], strict=True
    )
    assert len(timeline._stage_order_codes(pd.Series([], dtype="string"), PB)) == 0


# --------------------------------------------------------------------------- entry and furthest stage
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("integer_ids", [False, True])
def test_entry_and_furthest_equal_a_deal_by_deal_reading(seed, integer_ids):
    ids, h = _random_history(seed, integer_ids=integer_ids)
    for name, (opp_ids, hist) in _variants(ids, h, seed).items():
        got = timeline._deal_entry_and_furthest(hist, pd.Series(opp_ids, dtype=object), PB)
        for g, w in zip(got, _plain_progress(hist, opp_ids), strict=True):
            assert g.dtype == w.dtype, name
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_sorted_history_is_read_run_by_run(monkeypatch):
    ids, h = _random_history(5)

    def row_by_row(*args):
        raise AssertionError("the sorted history should not need the row-by-row reading")

    monkeypatch.setattr(timeline, "_entry_and_furthest", row_by_row)
    got = timeline._deal_entry_and_furthest(h, pd.Series(ids, dtype="string"), PB)
    for g, w in zip(got, _plain_progress(h, ids), strict=True):
        np.testing.assert_array_equal(g, w)


def test_runs_out_of_order_go_row_by_row():
    t = np.array(["2026-01-02", "2026-01-01", "2026-01-03"], dtype="datetime64[ns]")
    order = np.array([1.0, 0.0, 2.0])
    one_run = np.array([0]), np.array([0])
    assert timeline._entry_and_furthest_of_runs(*one_run, t, order, 1) is None  # time going backwards
    t_nat = np.array(["2026-01-01", "NaT", "2026-01-03"], dtype="datetime64[ns]")
    assert timeline._entry_and_furthest_of_runs(*one_run, t_nat, order, 1) is None  # missing time inside a run
    two_runs = np.array([0, 2]), np.array([0, 0])
    ok_t = np.sort(t)
    assert timeline._entry_and_furthest_of_runs(*two_runs, ok_t, order, 1) is None  # one deal, two runs
    entry, furthest, has = timeline._entry_and_furthest_of_runs(np.array([0, 2]), np.array([1, -1]), ok_t, order, 3)
    np.testing.assert_array_equal(entry, [np.nan, 1.0, np.nan])
    np.testing.assert_array_equal(furthest, [np.nan, 1.0, np.nan])
    np.testing.assert_array_equal(has, [False, True, False])


def test_empty_history():
    h = pd.DataFrame(
        {
            "opportunity_id": pd.Series([], dtype="string"),
            "changed_at": pd.Series([], dtype="datetime64[ns]"),
            "stage": pd.Series([], dtype="string"),
        }
    )
    entry, furthest, has = timeline._deal_entry_and_furthest(h, pd.Series(["a", "b"], dtype="string"), PB)
    assert np.isnan(entry).all() and np.isnan(furthest).all() and not has.any()


# --------------------------------------------------------------------------- stage_probabilities end to end
def _odd_crm(seed: int, integer_ids: bool, shuffle: bool, gaps: bool = True) -> CRM:
    """A CRM over a random history with odd stages; ``gaps``: deals without history, history of unknown deals."""
    ids, h = _random_history(seed, n_deals=60, integer_ids=integer_ids)
    rng = np.random.default_rng(seed)
    last = h.groupby("opportunity_id", sort=False)["stage"].last().reindex(ids)
    stage = last.astype(object).where(last.astype(object).isin([*NAMES, "won", "lost"]), "discovery")
    status = np.where(stage == "won", "won", np.where(stage == "lost", "lost", "open"))
    o = pd.DataFrame(
        {
            "opportunity_id": pd.Series(ids, dtype="int64" if integer_ids else "string"),
            "created_at": pd.Timestamp("2025-12-01"),
            "stage": pd.Series(stage.to_numpy(), dtype="string"),
            "status": pd.Series(status, dtype="string"),
            "closed_at": pd.Series(pd.Timestamp("2026-02-01"), index=range(len(ids))).where(status != "open"),
            "close_date": pd.Timestamp("2026-06-30"),
            "segment": pd.Series(rng.choice(["smb", "mid", None], len(ids)), dtype="string"),
        }
    )
    for c in ("created_at", "closed_at", "close_date"):
        o[c] = o[c].astype("datetime64[ns]")
    if gaps:
        h = h[~h["opportunity_id"].isin(ids[::7])]  # deals without history
        extra = h.iloc[:4].assign(opportunity_id=999 if integer_ids else "ZZZ")
        h = pd.concat([h, extra], ignore_index=True)  # history of a deal not in the snapshot
    h["opportunity_id"] = h["opportunity_id"].astype(o["opportunity_id"].dtype)
    if shuffle:
        h = h.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return CRM({"opportunities": o, "history": h}, as_of_date=pd.Timestamp("2026-03-31"), playbook=PB)


def _plain_reached(crm: CRM, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_reached_spans`` by the plain deal-by-deal reading (a deal without history: its current stage)."""
    o = crm.opportunities
    ids = list(o["opportunity_id"].astype(object))
    entry, furthest, has = _plain_progress(crm.history, ids)
    cur = np.array([_plain_order(s) for s in o["stage"].astype(object)], dtype=float)
    cur[cur < 0] = np.nan
    entry = np.where(has, entry, cur)
    furthest = np.where(has, furthest, cur)
    hi = np.minimum(furthest, len(NAMES) - 1)
    idx = np.flatnonzero(keep & ~np.isnan(entry) & ~np.isnan(hi) & (hi >= entry))
    return idx, entry[idx].astype(np.int64), hi[idx].astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer_ids", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_reached_spans_equal_the_plain_reading(seed, integer_ids, shuffle):
    assert_reached_spans_as_plain(_odd_crm(seed, integer_ids, shuffle))


def assert_reached_spans_as_plain(crm: CRM) -> None:
    """``stages._reached_spans`` equals the plain reading, whole history and 60-day window (same dtypes)."""
    status = stages._status_codes(crm)
    for lookback in (None, "60D"):
        keep = stages._in_scope(crm, lookback, status)
        got = stages._reached_spans(crm, keep)
        for g, w in zip(got, _plain_reached(crm, keep), strict=True):
            assert g.dtype == w.dtype
            np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("integer_ids", [False, True])
def test_stage_probabilities_count_like_stages_reached_on_odd_histories(integer_ids):
    crm = _odd_crm(3, integer_ids, shuffle=True)
    got = fk.stage_probabilities(crm, lookback=None, by="segment", min_closed=1)
    long = timeline.stages_reached(crm)
    seg = crm.opportunities.set_index("opportunity_id")["segment"].astype("string").fillna("(missing)")
    long = long.join(seg, on="opportunity_id")
    st = long["status"].astype(object)
    long = long.assign(won=st.eq("won").astype(int), lost=st.eq("lost").astype(int), open=st.eq("open").astype(int))
    want = long.groupby(["stage", "segment"])[["won", "lost", "open"]].sum()
    want = want.assign(reached=want.sum(axis=1))[["reached", "won", "lost", "open"]].sort_index()
    got = got.set_index(["stage", "segment"])[["reached", "won", "lost", "open"]].sort_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_index_type=False)


# --------------------------------------------------------------------------- spells and current stage age
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer_ids", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_spells_equal_the_pandas_path(monkeypatch, seed, integer_ids, shuffle):
    crm = _odd_crm(seed, integer_ids, shuffle)
    fast = timeline.stage_spells(crm)
    monkeypatch.setattr(timeline, "_spells_fast", lambda *args: None)
    pd.testing.assert_frame_equal(fast, timeline.stage_spells(crm), check_exact=True)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("integer_ids", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_last_entered_equals_the_last_spell_by_groupby(seed, integer_ids, shuffle):
    crm = _odd_crm(seed, integer_ids, shuffle)
    sp = timeline.stage_spells(crm)
    if shuffle:  # spells of a deal not next to each other: the groupby path
        sp = sp.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    ids = crm.opportunities["opportunity_id"].to_numpy()
    for asked in (ids, ids[::-1], ids[::2], np.append(ids, ids[:3])):
        want = sp.groupby("opportunity_id", sort=False).tail(1).set_index("opportunity_id")["entered_at"]
        got = timeline._last_entered(sp, asked)
        np.testing.assert_array_equal(got, want.reindex(asked).to_numpy())


@pytest.mark.parametrize("integer_ids", [False, True])
def test_last_spell_positions_of_a_sorted_history(integer_ids):
    crm = _odd_crm(4, integer_ids, shuffle=False, gaps=False)
    spells, last = timeline._spells_and_last(crm)
    assert last is not None  # every deal has history, sorted: positions known
    row = spells.assign(row=np.arange(len(spells))).groupby("opportunity_id", sort=False)["row"].last()
    want = row.reindex(crm.opportunities["opportunity_id"].to_numpy()).fillna(-1).to_numpy(np.int64)
    np.testing.assert_array_equal(last, want)
    is_open = (crm.opportunities["status"] == "open").to_numpy(bool)
    by_position = timeline._current_stage_age(crm.open_deals, spells, crm.as_of_date, last[is_open])
    pd.testing.assert_frame_equal(by_position, timeline.current_stage_age(crm), check_exact=True)
