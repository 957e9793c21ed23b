"""The forecast on the sample company: leakage, reproducibility, bad inputs and the acceptance criteria.

Acceptance tests run on the default sample size (24 reps, about 25 won deals a quarter), one seed
per scenario (deterministic); the multi-seed figures on larger companies come from
``benchmarks/bench_forecast.py accuracy`` (see the module docstring there). Tolerances are stated
in each test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.sample import generate
from forecastkit.errors import PeriodError
from forecastkit.forecast.accuracy import calls_vs_actual, forecast_accuracy
from forecastkit.forecast.backtest import backtest, checkpoint_date
from forecastkit.forecast.changes import pipeline_changes
from forecastkit.forecast.forecast import forecast
from forecastkit.periods import parse_period

pytestmark = pytest.mark.filterwarnings("ignore::forecastkit.errors.FallbackWarning")


@pytest.fixture(scope="module")
def baseline():
    return generate("baseline", seed=0)


@pytest.fixture(scope="module")
def base_crm(baseline):
    return baseline.crm


@pytest.fixture(scope="module")
def base_backtest(baseline, base_crm):
    # 8 past quarters (2024-Q4 to 2026-Q3), the week-4 checkpoint, every method and the oracle
    return backtest(base_crm, checkpoints=("week4",), truth=baseline.truth, seed=0)


def _falsified_future(tables: dict[str, pd.DataFrame], d: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The tables with what happened after day ``d`` falsified: every deal closed later gets the opposite
    outcome and three times its amount, its later history rows are replaced by one fake row, later forecast
    calls are multiplied by 10, later orders and activities are deleted. ``field_history`` is kept: it is
    what rewinds the qualification fields of the (current-state) opportunities rows."""
    cut = d + pd.Timedelta(days=1)
    t = {k: v.copy() for k, v in tables.items()}
    o = t["opportunities"]
    late = (o["closed_at"] >= cut).fillna(False).to_numpy(dtype=bool)
    flip = {"won": "lost", "lost": "won"}
    for col in ("stage", "status"):
        o.loc[late, col] = o.loc[late, col].map(flip).astype("string")
    o.loc[late, "amount"] = o.loc[late, "amount"] * 3
    h = t["history"]
    h = h[(h["changed_at"] < cut).to_numpy(dtype=bool)]
    fake = o.loc[late, ["opportunity_id", "closed_at", "stage", "amount", "close_date"]].rename(
        columns={"closed_at": "changed_at"}
    )
    t["history"] = pd.concat([h, fake], ignore_index=True).sort_values(["opportunity_id", "changed_at"], kind="stable")
    fc = t["forecast_calls"]
    later = (fc["submitted_at"] >= cut).to_numpy(dtype=bool)
    fc.loc[later, ["commit", "best_case"]] *= 10
    orders = t["orders"]
    t["orders"] = orders[(orders["ordered_at"] < cut).to_numpy(dtype=bool)]
    a = t["activities"]
    t["activities"] = a[(a["created_at"].fillna(a["due_at"]) < cut).to_numpy(dtype=bool)]
    return t


def test_leakage_forecast_as_of_d_ignores_everything_after_d(baseline, base_crm):
    d = checkpoint_date(parse_period("2025-Q2"), "week8")  # 2025-05-20
    a = forecast(base_crm.as_of(d), method="model", n_sims=2000)
    # 1. a CRM built only from the rows known at d
    known = fk.CRM.from_tables(base_crm.as_of(d).tables, as_of=d)
    # 2. the full CRM with everything after d falsified
    fake = fk.CRM.from_tables(_falsified_future(baseline.tables, d), as_of=baseline.as_of).as_of(d)
    for other in (known, fake):
        b = forecast(other, method="model", n_sims=2000)
        for part in ("summary", "distribution", "deals", "target", "calls"):
            pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part), obj=part)
    # the backtest's cached training rows give the very same model as a refit on crm.as_of(d)
    bt = backtest(base_crm, periods=["2025-Q2"], checkpoints=("week8",), methods=("model",), refit="checkpoint")
    assert bt.attrs["fits"] == {"win_model": 1, "slip_model": 1}
    dist = a.distribution.iloc[0]
    expected = dist["closed_won"] + dist["open_expected"] + dist["new_deals_expected"]
    assert bt["forecast"].iloc[0] == pytest.approx(expected, rel=1e-9)


def test_leakage_backtest_shared_caches_ignore_everything_after_the_checkpoint(baseline, base_crm):
    # the backtest's caches built once from the full snapshot (slip-model rows, win-model rows, the lean
    # copy without the activities of deals closed throughout, row positions) leak nothing: with the
    # future falsified, every forecast made at the checkpoint is the same (only the actual differs)
    d = checkpoint_date(parse_period("2025-Q2"), "week8")
    fake = fk.CRM.from_tables(_falsified_future(baseline.tables, d), as_of=baseline.as_of)
    kw = {"periods": ["2025-Q2"], "checkpoints": ("week8",), "methods": ("crm", "stage", "model", "commit")}
    a, b = backtest(base_crm, **kw), backtest(fake, **kw)
    cols = ["period", "checkpoint", "as_of", "method", "forecast", "closed_won", "p10", "p50", "p90", "note"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert not np.allclose(a["actual"], b["actual"])


def test_backtest_row_positions_give_the_id_look_ups_results(base_crm, monkeypatch):
    # the slip inputs read by row position equal those looked up by id (the path for duplicated ids)
    from forecastkit.forecast import backtest as bt_module

    kw = {"periods": ["2025-Q3", "2025-Q4"], "checkpoints": ("week1", "week8"), "methods": ("stage", "model")}
    fast = backtest(base_crm, **kw)
    at = bt_module._Rewinder.at
    monkeypatch.setattr(bt_module._Rewinder, "at", lambda self, d: (at(self, d)[0], None))
    slow = backtest(base_crm, **kw)
    pd.testing.assert_frame_equal(fast, slow)


def test_closed_throughout_deals_are_closed_in_every_later_snapshot(base_crm):
    from forecastkit.forecast.backtest import _closed_throughout

    cut = pd.Timestamp("2025-01-01")
    closed = _closed_throughout(base_crm, cut)
    ids = base_crm.opportunities.loc[closed, "opportunity_id"]
    assert 0.3 < closed.mean() < 0.95  # most deals of the sample are settled by then, not all
    for d in ("2024-12-31", "2025-06-30", "2026-02-14"):
        o = base_crm.as_of(d).opportunities
        status = o.set_index("opportunity_id").loc[ids, "status"]
        assert status.isin(["won", "lost"]).all()
    # and no deal still open at the first day is flagged
    still_open = base_crm.as_of("2024-12-31").open_deals["opportunity_id"]
    assert not ids.isin(still_open).any()


def test_backtest_fits_each_model_once_and_reuses_it(base_crm):
    # 2 periods x 2 checkpoints: each model once per period (refit="period"), the slip model shared by
    # "stage" and "model", or once per checkpoint (refit="checkpoint")
    kw = {"periods": ["2025-Q3", "2025-Q4"], "checkpoints": ("week4", "week8"), "methods": ("stage", "model")}
    bt = backtest(base_crm, **kw)
    assert bt.attrs["fits"] == {"win_model": 2, "slip_model": 2}
    again = backtest(base_crm, refit="checkpoint", **kw)
    assert again.attrs["fits"] == {"win_model": 4, "slip_model": 4}
    first = bt[bt["checkpoint"] == "week4"].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, again[again["checkpoint"] == "week4"].reset_index(drop=True))


def test_sample_forecast_is_reproducible_and_consistent(base_crm):
    f = forecast(base_crm, "2026-Q4", method="stage", seed=3)
    g = forecast(base_crm, "2026-Q4", method="stage", seed=3)
    h = forecast(base_crm, "2026-Q4", method="stage", seed=4)
    pd.testing.assert_frame_equal(f.distribution, g.distribution)
    assert not f.distribution.equals(h.distribution)
    d = f.distribution.iloc[0]
    assert d["p10"] <= d["p50"] <= d["p90"]
    se = d["std"] / np.sqrt(d["n_sims"])
    assert d["expected"] == pytest.approx(d["closed_won"] + d["open_expected"] + d["new_deals_expected"], abs=5 * se)
    for view in f.summary.itertuples():
        assert view.closed_won <= view.commit <= view.best_case  # cumulative: best case includes commit
    assert f.deals["p_win_in_period"].between(0, 1).all()
    assert (f.deals["expected_amount"] == f.deals["amount"] * f.deals["p_win_in_period"]).all()
    # the company row of the calls equals the forecast, teams sum to it
    c = f.calls.set_index("level")
    assert c.loc["company", "expected"] == pytest.approx(d["expected"], rel=1e-9)
    assert f.calls.loc[f.calls["level"] == "team", "call_commit"].sum() == pytest.approx(
        c.loc["company", "call_commit"]
    )


def test_open_deal_state_matches_the_timeline(base_crm):
    # the forecast's one-pass pushes and days in stage count exactly like the timeline's functions
    from forecastkit.data.timeline import close_date_pushes, current_stage_age
    from forecastkit.forecast.slips import _open_deal_state

    for crm in (base_crm, base_crm.as_of("2025-05-20")):
        o = crm.open_deals
        got = _open_deal_state(crm, o)
        ids = o["opportunity_id"].to_numpy()
        pushes = close_date_pushes(crm).set_index("opportunity_id")["pushes"].reindex(ids)
        age = current_stage_age(crm).set_index("opportunity_id")["days_in_stage"].reindex(ids)
        assert got["pushes"].to_numpy().tolist() == pushes.to_numpy().tolist()
        assert got["pushes"].sum() > 0
        np.testing.assert_array_equal(got["days_in_stage"].to_numpy(), age.to_numpy(dtype=float))


def test_sample_bad_inputs(base_crm):
    with pytest.raises(PeriodError, match="starts after the snapshot date 2026-11-20"):
        forecast(base_crm, "2031-Q1", method="crm")
    with pytest.raises(PeriodError, match="ends before the first deal"):
        backtest(base_crm, periods=["2019-Q1"])
    early = base_crm.as_of("2023-06-15")  # before the first deal (2023-07-01)
    f = forecast(early, method="model")
    assert f.distribution.iloc[0]["expected"] == 0.0 and any("no deal was created" in n for n in f.notes)


def test_pipeline_changes_on_sample_add_up(base_crm):
    ch = pipeline_changes(base_crm, "2026-10-15", "2026-11-19")
    s = ch.summary.set_index("step")
    moves = s.loc[s["kind"].isin(["increase", "decrease"]), "amount"].sum()
    assert s.loc["start", "amount"] + moves == pytest.approx(s.loc["end", "amount"])
    for step in ("new", "won", "lost", "pushed_out"):
        assert s.loc[step, "deals"] == len(ch.deals_for(step))


@pytest.mark.slow
def test_acceptance_baseline_week4(base_backtest):
    """Calibrated method at week 4 on baseline (seed 0, 8 quarters).

    Tolerances: its median |F - A| / A is below each of the other four methods - the CRM's
    default probabilities, historical stage rates, the reps' own commit and best case (their
    categories as the CRM rolls them up) and the run rate - and at most 1.3x the oracle's; its
    P10-P90 interval covers the actual in 70-90% of the quarters. (Multi-seed figures: see the
    benchmark and the README.)
    """
    acc = forecast_accuracy(base_backtest, by="method").set_index("method")
    med = acc["median_ape"]
    for other in ("crm", "stage", "commit", "best_case", "run_rate"):
        assert med["model"] < med[other], other
    assert med["model"] <= 1.3 * med["oracle"]
    assert 0.70 <= acc.loc["model", "coverage"] <= 0.90


@pytest.mark.xfail(
    strict=True,
    reason="the generator builds the reps' typed-in calls (forecast_calls) from the realised final "
    "bookings (company.build_forecast_calls), so on baseline they are near-perfect (~3% error) and no "
    "pipeline method, the oracle included, can beat them; the reps' commit as their categories roll "
    "up carries no such foresight and is beaten (test above)",
)
def test_acceptance_baseline_model_beats_the_generators_calls(base_backtest):
    med = forecast_accuracy(base_backtest, by="method").set_index("method")["median_ape"]
    assert med["model"] < med["call_commit"]


@pytest.mark.slow
def test_acceptance_optimistic_commit_is_biased_upward():
    """Optimistic (seed 0, 8 quarters, week 4): the reps' commit overshoots bookings by more than 20%
    (roll-up of their categories; their typed-in calls too), and the calibrated method's median error
    is at most half the commit's. Multi-seed figures: ``benchmarks/bench_forecast.py accuracy optimistic``."""
    s = generate("optimistic", seed=0)
    bt = backtest(s.crm, checkpoints=("week4",), methods=("model", "commit", "call_commit", "run_rate"), seed=0)
    acc = forecast_accuracy(bt, by="method").set_index("method")
    for commit in ("commit", "call_commit"):
        assert acc.loc[commit, "bias"] > 0.20
        assert acc.loc[commit, "bias"] > acc.loc["run_rate", "bias"] + 0.20
    assert acc.loc["model", "median_ape"] <= 0.5 * acc.loc["commit", "median_ape"]


def test_calls_accuracy_per_team(base_crm):
    cv = calls_vs_actual(base_crm, periods=2, checkpoints=("week4",), level="team")
    acc = forecast_accuracy(cv, by=["method", "team"])
    assert set(acc["team"]) == set(base_crm.reps["team"].dropna())
    commit = cv[cv["method"] == "commit"]
    assert commit["forecast"].notna().all() and (commit["actual"] >= 0).all()


def test_the_forecast_records_the_win_model_it_used(base_crm):
    from forecastkit.probability.model import WinModel

    fitted = forecast(base_crm, n_sims=500)
    assert isinstance(fitted.model, WinModel)
    again = forecast(base_crm, n_sims=500, model=fitted.model)  # the recorded model gives the same forecast
    assert again.model is fitted.model
    pd.testing.assert_frame_equal(again.deals, fitted.deals, check_exact=True)
    pd.testing.assert_frame_equal(again.distribution, fitted.distribution, check_exact=True)
    assert forecast(base_crm, method="stage", n_sims=500).model is None
    assert forecast(base_crm, method="crm", n_sims=500).model is None
