"""The per-checkpoint fast paths of the backtest's models give exactly the plain pandas numbers.

Stage reach read from a snapshot's cached deal rows and stage orders, the win model's
features by deal number (close-date pushes, first amount, last forecast category, owner
win rates by codes) and the win model's training rows a snapshot knows (binary search of
the distinct ids) are each compared with the pandas formulation they replace, on
hand-built frames with missing values, unknown deals and unsorted ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_stages_exact import _odd_crm, _plain_reached, assert_reached_spans_as_plain

from forecastkit.data import timeline
from forecastkit.data.crm import CRM
from forecastkit.forecast import backtest as B
from forecastkit.forecast import forecast as FF
from forecastkit.probability import features as F
from forecastkit.probability import stages


# --------------------------------------------------------------------------- stage reach from caches
def _with_caches(crm: CRM, order: bool) -> CRM:
    """The same snapshot holding each history row's deal row (and stage order) in its cache."""
    o, h = crm.opportunities, crm.history
    out = CRM({"opportunities": o, "history": h}, as_of_date=crm.as_of_date, playbook=crm.playbook)
    keys = pd.Index(np.asarray(o["opportunity_id"], dtype=object))
    pos = keys.get_indexer(np.asarray(h["opportunity_id"], dtype=object)).astype(np.int64)
    out._cached(("deal_pos", "history"), lambda: pos)
    if order:
        out._cached(("stage_order", "history"), lambda: timeline._stage_order_codes(h["stage"], crm.playbook))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("order", [False, True])
def test_reached_spans_from_cached_deal_rows_equal_the_plain_reading(seed, shuffle, order):
    assert_reached_spans_as_plain(_with_caches(_odd_crm(seed, integer_ids=False, shuffle=shuffle), order))


def test_cached_deal_rows_are_ignored_when_the_ids_are_not_in_order():
    crm = _odd_crm(4, integer_ids=False, shuffle=False)
    o = crm.opportunities.iloc[::-1].reset_index(drop=True)  # distinct, but not increasing
    crm = _with_caches(CRM({"opportunities": o, "history": crm.history}, as_of_date=crm.as_of_date), order=True)
    crm._index_cache["deal_pos", "history"] = np.zeros(len(crm.history), dtype=np.int64)  # (would be wrong)
    keep = np.ones(len(o), dtype=bool)
    for g, w in zip(stages._reached_spans(crm, keep), _plain_reached(crm, keep), strict=True):
        np.testing.assert_array_equal(g, w)


def test_stage_probabilities_of_rewound_snapshots_with_stage_orders_equal_the_plain_rewind():
    from _probability_samples import sample

    crm, _ = sample("baseline", 0)
    rewind = B._Rewinder(crm, ["model", "stage"], None, crm.as_of_date - pd.Timedelta(days=400))
    lean_h = rewind.lean.history
    order = timeline._stage_order_codes(lean_h["stage"], crm.playbook)
    changed = lean_h["changed_at"].to_numpy(dtype="datetime64[ns]")
    for k in (400, 120, 0):
        d = crm.as_of_date - pd.Timedelta(days=k)
        snap, _ = rewind.at(d)
        cut = (d + pd.Timedelta(days=1)).to_datetime64()
        snap._cached(("stage_order", "history"), lambda cut=cut: order[changed < cut])
        assert snap._cached_only(("deal_pos", "history")) is not None
        got = stages.stage_probabilities(snap, by="segment")
        want = stages.stage_probabilities(rewind.lean.as_of(d), by="segment")
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert want["reached"].sum() > 0


# --------------------------------------------------------------------------- features by deal number
def _compact_history(seed: int, n: int = 30) -> pd.DataFrame:
    """History rows of deals numbered 0..n-1 (some without rows), interleaved, with gaps and odd times."""
    rng = np.random.default_rng(seed)
    m = 200
    deal = np.sort(rng.integers(0, n, m))
    deal[rng.integers(0, m, 15)] = rng.integers(0, n, 15)  # some rows out of their deal's run
    cd = pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(-40, 40, m) * 3600 * 7, unit="s")
    cd = pd.Series(cd).where(rng.random(m) > 0.1)  # missing close dates
    amount = pd.Series(rng.integers(0, 5, m) * 1000.0).where(rng.random(m) > 0.3)
    fc = pd.Series(rng.choice(["commit", "best_case", "pipeline"], m), dtype=object).where(rng.random(m) > 0.4)
    return pd.DataFrame({"opportunity_id": deal, "close_date": cd, "amount": amount, "forecast_category": fc})


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_features_by_deal_number_equal_the_groupbys(seed):
    n = 30
    h = _compact_history(seed, n)
    ids = h["opportunity_id"].to_numpy()
    # close-date pushes: timeline.close_date_pushes on the same rows
    opps = pd.DataFrame({"opportunity_id": np.arange(n), "created_at": pd.Timestamp("2025-01-01"), "stage": "x"})
    crm = CRM({"opportunities": opps, "history": h}, as_of_date=pd.Timestamp("2026-03-01"))
    want = timeline.close_date_pushes(crm).set_index("opportunity_id").reindex(np.arange(n))
    pushes, days = F._pushes_of_numbers(ids, h["close_date"].to_numpy(), n)
    np.testing.assert_array_equal(pushes, want["pushes"].fillna(0).to_numpy(float))
    np.testing.assert_array_equal(days, want["days_pushed"].fillna(0).to_numpy(float))
    assert pushes.sum() > 0
    # first amount, last forecast category
    first = h.groupby("opportunity_id", sort=False)["amount"].first().reindex(np.arange(n)).to_numpy(float)
    np.testing.assert_array_equal(F._first_valid(ids, h["amount"].to_numpy(float), n), first)
    fc = h.dropna(subset=["forecast_category"]).groupby("opportunity_id", sort=False)["forecast_category"].last()
    at = F._last_valid_row(ids, h["forecast_category"].notna().to_numpy(), n)
    got = np.where(at >= 0, h["forecast_category"].to_numpy(object)[np.maximum(at, 0)], None)
    assert list(pd.Series(got, dtype=object).fillna("-")) == list(fc.reindex(np.arange(n)).fillna("-"))


def test_features_by_deal_number_without_rows():
    empty = np.zeros(0, dtype=np.int64)
    pushes, days = F._pushes_of_numbers(empty, np.zeros(0, dtype="datetime64[ns]"), 3)
    assert pushes.tolist() == [0.0, 0.0, 0.0] and days.tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(F._first_valid(empty, np.zeros(0), 2)).all()
    assert F._last_valid_row(empty, np.zeros(0, dtype=bool), 2).tolist() == [-1, -1]


# --------------------------------------------------------------------------- training rows a snapshot knows
def _company(n: int, order: str = "sorted") -> CRM:
    ids = [f"D{i:05d}" for i in range(n)]
    if order == "reversed":
        ids = ids[::-1]
    status = pd.Series((["won", "lost", "open", "won", None] * n)[:n], dtype="string")
    o = pd.DataFrame(
        {
            "opportunity_id": pd.Series(ids, dtype="string"),
            "created_at": pd.Timestamp("2025-01-01"),
            "status": status,
        }
    )
    o["created_at"] = o["created_at"].astype("datetime64[ns]")
    return CRM({"opportunities": o}, as_of_date=pd.Timestamp("2026-06-30"))


def _rows(ids: list) -> pd.DataFrame:
    k = len(ids)
    as_of = pd.Series(pd.date_range("2025-01-01", periods=k, freq="3D")).where(np.arange(k) % 9 != 4)
    return pd.DataFrame({"opportunity_id": pd.Series(ids, dtype="string"), "as_of": as_of})


@pytest.mark.parametrize("order", ["sorted", "reversed"])
@pytest.mark.parametrize("few", [True, False])
def test_known_training_rows_equal_the_isin_formulation(monkeypatch, order, few):
    crm = _company(400, order)
    rng = np.random.default_rng(0)
    picked = [f"D{i:05d}" for i in rng.integers(0, 400, 12 if few else 300)] + ["X1", "D99999", "D00002"]
    rows = _rows(picked)
    start, end = pd.Timestamp("2025-01-10"), pd.Timestamp("2025-03-20")
    o = crm.opportunities
    closed = o.loc[o["status"] != "open", "opportunity_id"]
    want = ((rows["as_of"] >= start) & (rows["as_of"] <= end) & rows["opportunity_id"].isin(closed)).to_numpy()
    searched = []
    real = np.searchsorted
    monkeypatch.setattr(np, "searchsorted", lambda *a, **k: searched.append(1) or real(*a, **k))
    got = FF._known_training_rows(crm, rows, start, end)
    assert bool(searched) == (few and order == "sorted")  # (the binary search ran where it applies)
    assert got.dtype == bool
    np.testing.assert_array_equal(got, want)
    assert want.any() and not want.all()


# --------------------------------------------------------------------------- status codes
@pytest.mark.parametrize(
    "status",
    [
        pd.Series(["won", "lost", pd.NA, "open", "Won", "abandoned"], dtype="string"),
        pd.Series(["won", None, np.nan, "open", 3, "lost"], dtype=object),
        pd.Series([], dtype="string"),
    ],
)
def test_status_codes_equal_the_factorised_codes(status):
    o = pd.DataFrame({"opportunity_id": [f"D{i}" for i in range(len(status))], "status": status})
    crm = CRM({"opportunities": o}, as_of_date=pd.Timestamp("2026-06-30"))
    np.testing.assert_array_equal(stages._status_codes(crm), _factorised_status_codes(status))


def _factorised_status_codes(status: pd.Series) -> np.ndarray:
    """The plain reading: 0 open, 1 won, 2 lost, 3 any other value (missing, other text, not text)."""
    codes, uniques = pd.factorize(np.asarray(status.array, dtype=object))
    known = {"open": 0, "won": 1, "lost": 2}
    lut = np.array([known.get(u, 3) if isinstance(u, str) else 3 for u in uniques] + [3], dtype=np.int64)
    return lut[codes]
