"""The backtest kept for the next run (``backtest(..., cache=folder)``): reused only when it would not change.

Every test compares the cached result with a backtest computed from scratch on the same data,
exactly (``check_exact``), so a wrongly reused backtest fails whatever its numbers.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.sample import generate
from forecastkit.errors import ParameterError
from forecastkit.forecast import backtest_cache
from forecastkit.forecast.backtest import backtest, checkpoint_date
from forecastkit.periods import parse_period
from tests.test_forecast_sample import _falsified_future

pytestmark = pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning")

KW = {"periods": ["2025-Q3", "2025-Q4"], "checkpoints": ("week1", "week8"), "seed": 3}
#: The latest checkpoint of KW's plan: everything known by then decides the forecasts.
LAST = checkpoint_date(parse_period("2025-Q4"), "week8")


@pytest.fixture(scope="module")
def baseline():
    return generate("baseline", seed=0)


@pytest.fixture(scope="module")
def cold(baseline):
    """KW's backtest computed without a cache."""
    return backtest(baseline.crm, **KW)


def _crm(tables, baseline):
    return fk.CRM.from_tables(tables, as_of=baseline.as_of)


def test_the_next_run_reuses_the_backtest_and_gives_the_same_frame(baseline, cold, tmp_path):
    first = backtest(baseline.crm, **KW, cache=tmp_path)
    again = backtest(baseline.crm, **KW, cache=tmp_path)
    assert first.attrs["cache"] == "stored" and again.attrs["cache"] == "reused"
    assert first.attrs["fits"] == cold.attrs["fits"] and again.attrs["fits"] == {"win_model": 0, "slip_model": 0}
    pd.testing.assert_frame_equal(first, cold, check_exact=True)
    pd.testing.assert_frame_equal(again, cold, check_exact=True)
    assert len(list(tmp_path.glob("backtest-*.parquet"))) == 1


def test_newer_data_reuses_the_backtest_with_the_actuals_recomputed(baseline, cold, tmp_path):
    # everything after the latest checkpoint falsified (later outcomes flipped and tripled, later history,
    # calls, orders and activities changed): the forecasts are reused, the actuals follow the new data
    backtest(baseline.crm, **KW, cache=tmp_path)
    later = _crm(_falsified_future(baseline.tables, LAST), baseline)
    got = backtest(later, **KW, cache=tmp_path)
    assert got.attrs["cache"] == "reused"
    pd.testing.assert_frame_equal(got, backtest(later, **KW), check_exact=True)
    assert not np.allclose(got["actual"], cold["actual"])  # the deals won after the checkpoint count differently
    same = ["period", "checkpoint", "as_of", "method", "forecast", "closed_won", "p10", "p50", "p90", "note"]
    pd.testing.assert_frame_equal(got[same], cold[same], check_exact=True)


def test_a_change_known_before_the_latest_checkpoint_computes_the_backtest_again(baseline, tmp_path):
    backtest(baseline.crm, **KW, cache=tmp_path)
    t = {k: v.copy() for k, v in baseline.tables.items()}
    h = t["history"]
    row = np.flatnonzero((h["changed_at"] < LAST - pd.Timedelta(days=30)).to_numpy(dtype=bool))[-1]
    h.loc[h.index[row], "amount"] = h["amount"].iloc[row] * 2 + 1  # a backdated correction
    edited = _crm(t, baseline)
    got = backtest(edited, **KW, cache=tmp_path)
    assert got.attrs["cache"] == "stored"
    pd.testing.assert_frame_equal(got, backtest(edited, **KW), check_exact=True)
    assert len(list(tmp_path.glob("backtest-*.parquet"))) == 2


@pytest.mark.parametrize(
    "change",
    [{"seed": 4}, {"n_sims": 1000}, {"methods": ("crm", "commit")}, {"checkpoints": ("week1", "week4")}],
    ids=["seed", "draws", "methods", "checkpoints"],
)
def test_other_arguments_are_not_served_a_stored_backtest(baseline, tmp_path, change):
    kw = {**KW, "methods": ("crm", "stage", "commit")}
    backtest(baseline.crm, **kw, cache=tmp_path)
    got = backtest(baseline.crm, **{**kw, **change}, cache=tmp_path)
    assert got.attrs["cache"] == "stored"


def test_another_playbook_is_not_served_a_stored_backtest(baseline, tmp_path):
    kw = {**KW, "methods": ("crm", "commit")}
    backtest(baseline.crm, **kw, cache=tmp_path)
    pb = baseline.crm.playbook
    stages = tuple(replace(s, crm_probability=s.crm_probability * 0.9) for s in pb.stages)
    other = fk.CRM.from_tables(baseline.tables, as_of=baseline.as_of, playbook=replace(pb, stages=stages))
    got = backtest(other, **kw, cache=tmp_path)
    assert got.attrs["cache"] == "stored"
    pd.testing.assert_frame_equal(got, backtest(other, **kw), check_exact=True)


def test_a_damaged_stored_file_is_computed_again(baseline, cold, tmp_path):
    backtest(baseline.crm, **KW, cache=tmp_path)
    (stored,) = tmp_path.glob("backtest-*.parquet")
    stored.write_bytes(b"not a parquet file")
    got = backtest(baseline.crm, **KW, cache=tmp_path)
    assert got.attrs["cache"] == "stored"
    pd.testing.assert_frame_equal(got, cold, check_exact=True)


def test_the_oracle_is_never_stored(baseline, tmp_path):
    got = backtest(
        baseline.crm,
        periods=["2025-Q4"],
        checkpoints=("week4",),
        methods=("crm",),
        truth=baseline.truth,
        cache=tmp_path,
    )
    assert got.attrs["cache"] == "off" and "oracle" in set(got["method"])
    assert not list(tmp_path.glob("backtest-*"))


def test_a_file_given_as_the_cache_folder_is_refused(baseline, tmp_path):
    f = tmp_path / "cache.txt"
    f.write_text("x")
    with pytest.raises(ParameterError, match="is a file; give a folder"):
        backtest(baseline.crm, **KW, cache=f)


def test_only_the_newest_backtests_are_kept(baseline, tmp_path, monkeypatch):
    monkeypatch.setattr(backtest_cache, "KEEP", 2)
    kw = {**KW, "methods": ("crm",), "checkpoints": ("week4",)}
    for seed in (1, 2, 3):
        backtest(baseline.crm, **{**kw, "seed": seed}, cache=tmp_path)
        for p in tmp_path.glob("backtest-*.parquet"):  # the files written earlier are older
            os.utime(p, (p.stat().st_atime, p.stat().st_mtime - 10))
    assert len(list(tmp_path.glob("backtest-*.parquet"))) == 2
    assert backtest(baseline.crm, **{**kw, "seed": 3}, cache=tmp_path).attrs["cache"] == "reused"
    assert backtest(baseline.crm, **{**kw, "seed": 1}, cache=tmp_path).attrs["cache"] == "stored"
