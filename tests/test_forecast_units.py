"""Forecast formulas on small hand-built frames; every expected number is worked out by hand here."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.timeline import current_stage_age
from forecastkit.errors import FallbackWarning, ParameterError, PeriodError, SchemaError
from forecastkit.forecast.accuracy import forecast_accuracy, pinball_loss
from forecastkit.forecast.backtest import backtest, checkpoint_date
from forecastkit.forecast.categories import model_category, rollup
from forecastkit.forecast.changes import pipeline_changes
from forecastkit.forecast.forecast import forecast
from forecastkit.forecast.montecarlo import NewDeals, new_deal_run_rate, simulate_bookings, summarise
from forecastkit.forecast.plot import plot_backtest, plot_calls, plot_forecast, plot_waterfall
from forecastkit.forecast.slips import POSITIONS, SlipModel, _open_deal_state, _positions, p_in_period, slip_rows
from forecastkit.periods import parse_period
from forecastkit.playbook import Playbook
from tests._forecast_fixtures import tables, tiny_crm

Q4 = parse_period("2026-Q4")


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        return fn(*a, **k)


# --------------------------------------------------------------------------- categories
def test_model_category_thresholds_are_inclusive():
    pb = Playbook()  # commit 0.70, best case 0.40, pipeline 0.10
    got = model_category([0.70, 0.6999, 0.40, 0.3999, 0.10, 0.0999, np.nan], pb)
    assert got.tolist() == ["commit", "best_case", "best_case", "pipeline", "pipeline", "omitted", "omitted"]


def test_rollup_is_cumulative_best_case_includes_commit():
    r = rollup(1000.0, [2000, 4000, 3000, 500], ["commit", "best_case", "pipeline", "omitted"])
    assert r == {"closed_won": 1000.0, "commit": 3000.0, "best_case": 7000.0, "pipeline": 9000.0, "omitted": 500.0}


# --------------------------------------------------------------------------- Monte Carlo
def test_simulation_of_certain_deals_is_exact():
    tot = simulate_bookings(np.array([100.0, 50.0, 7.0]), np.array([1.0, 0.0, 1.0]), n_sims=50, seed=3)
    assert np.all(tot == 107.0)


def test_three_deal_quantiles_match_the_enumerated_distribution():
    # outcomes of 2000 x B(.75) + 4000 x B(.5) + 3000 x B(.1): cumulative probabilities
    # 0: .1125, 2000: .45, 3000: .4625, 4000: .575, 5000: .6125, 6000: .95, 7000: .9625, 9000: 1
    tot = simulate_bookings(np.array([2000.0, 4000.0, 3000.0]), np.array([0.75, 0.5, 0.1]), n_sims=20_000, seed=1)
    s = summarise(tot, offset=1000.0, quota=6000.0)
    assert (s["p10"], s["p50"], s["p90"]) == (1000.0, 5000.0, 7000.0)
    assert s["expected"] == pytest.approx(1000 + 1500 + 2000 + 300, abs=4 * 2358 / np.sqrt(20_000))
    assert s["p_reach_quota"] == pytest.approx(1 - 0.575, abs=0.015)  # P(open >= 5000)


def test_same_seed_same_draws_other_seed_other_draws():
    a, p = np.array([10.0, 20.0, 30.0]), np.array([0.3, 0.5, 0.7])
    new = NewDeals(1.5, np.array([5.0, 15.0]), 15.0, ("2026-Q3",))
    x = simulate_bookings(a, p, new, n_sims=1000, seed=7)
    assert np.array_equal(x, simulate_bookings(a, p, new, n_sims=1000, seed=7))
    assert not np.array_equal(x, simulate_bookings(a, p, new, n_sims=1000, seed=8))


def test_compound_poisson_new_deals():
    new = NewDeals(2.0, np.array([100.0]), 200.0, ("x",))
    tot = simulate_bookings(np.zeros(0), np.zeros(0), new, n_sims=40_000, seed=0)
    assert tot.mean() == pytest.approx(200.0, rel=0.02)
    assert np.mean(tot == 0) == pytest.approx(np.exp(-2.0), abs=0.01)
    assert set(np.unique(tot) % 100) == {0.0}


def test_rare_new_deals_add_one_amount_per_draw():
    # rate 0.05: almost every draw holds 0 or 1 new deal (the one-per-draw shortcut), a few hold 2
    new = NewDeals(0.05, np.array([100.0, 300.0]), 10.0, ("x",))
    tot = simulate_bookings(np.zeros(0), np.zeros(0), new, n_sims=40_000, seed=1)
    assert tot.mean() == pytest.approx(10.0, abs=4 * 50 / np.sqrt(40_000))  # sd per draw: sqrt(0.05 x 50,000)
    assert set(np.unique(tot) % 100) == {0.0}
    assert np.isin(tot, [0.0, 100.0, 300.0]).mean() > 0.995  # none or one pooled amount: P(2+) = 0.12%
    assert np.mean(tot > 0) == pytest.approx(1 - np.exp(-0.05), abs=0.005)


def test_grouped_new_deals_split_the_rate_by_pool_share():
    # pool of 3 amounts, 2 in group 0 and 1 in group 1: rates 2 x 2/3 and 2 x 1/3
    new = NewDeals(2.0, np.array([100.0, 100.0, 1000.0]), 800.0, ("x",))
    tot = simulate_bookings(
        np.zeros(0), np.zeros(0), new, n_sims=40_000, seed=0, groups=np.zeros(0), n_groups=2, new_groups=[0, 0, 1]
    )
    assert tot[:, 0].mean() == pytest.approx(2 * 2 / 3 * 100.0, rel=0.03)
    assert tot[:, 1].mean() == pytest.approx(2 / 3 * 1000.0, rel=0.03)
    assert set(np.unique(tot[:, 1]) % 1000) == {0.0}


def test_normal_approximation_beyond_exact_limit_keeps_mean_and_variance():
    rng = np.random.default_rng(0)
    a, p = rng.uniform(100, 200, 400), rng.uniform(0.1, 0.9, 400)
    tot = simulate_bookings(a, p, n_sims=20_000, seed=2, exact_limit=50)
    assert tot.mean() == pytest.approx((a * p).sum(), rel=0.01)
    assert tot.std() == pytest.approx(np.sqrt((a * a * p * (1 - p)).sum()), rel=0.03)


def test_many_small_groups_beyond_exact_limit_are_unbiased_and_non_negative():
    # 600 owners with a few small, unlikely deals each: their sums are drawn per owner; a normal
    # clipped at zero overstated each owner's mean (the company total by many standard errors)
    rng = np.random.default_rng(1)
    n = 3_000
    a, p, g = rng.uniform(500, 1500, n), np.full(n, 0.05), rng.integers(0, 600, n)
    tot = simulate_bookings(a, p, n_sims=20_000, seed=3, groups=g, n_groups=600, exact_limit=100)
    assert (tot >= 0).all()
    company = tot.sum(axis=1)
    se = company.std() / np.sqrt(len(company))
    assert abs(company.mean() - (a * p).sum()) < 4 * se
    assert company.std() == pytest.approx(np.sqrt((a * a * p * (1 - p)).sum()), rel=0.03)
    # a group with a negative expected sum (credit notes) keeps its mean
    neg = simulate_bookings(np.array([-100.0] * 3000), np.full(3000, 0.5), n_sims=4_000, seed=0, exact_limit=10)
    assert neg.mean() == pytest.approx(-100.0 * 0.5 * 3000, rel=0.01)


def test_grouped_simulation_sums_to_the_total():
    a, p, g = np.array([10.0, 20.0, 30.0]), np.array([1.0, 1.0, 0.0]), np.array([0, 1, 1])
    tot = simulate_bookings(a, p, n_sims=5, seed=0, groups=g, n_groups=2)
    assert tot.shape == (5, 2) and np.all(tot[:, 0] == 10.0) and np.all(tot[:, 1] == 20.0)


def test_simulation_rejects_bad_shapes():
    with pytest.raises(ParameterError, match="same length"):
        simulate_bookings(np.ones(2), np.ones(3))


def test_new_deal_run_rate_counts_deals_created_after_the_same_point_of_past_periods():
    crm = tiny_crm()
    # as of 2026-11-20: 51 days of Q4 elapsed; Q3's cut is 2026-07-01 + 51 days = 2026-08-21.
    # Only W2 (created 08-25, won 09-10, 600) qualifies; Q2 ends before the first deal.
    new = new_deal_run_rate(crm, Q4)
    assert new.periods == ("2026-Q3",)
    assert new.rate == 1.0 and new.expected == 600.0 and new.amounts.tolist() == [600.0]


# --------------------------------------------------------------------------- slips
def test_positions_of_close_dates():
    t = np.array(["2026-11-20"] * 5, dtype="datetime64[ns]")
    end = np.array(["2027-01-01"] * 5, dtype="datetime64[ns]")
    cd = np.array(["2026-11-20", "2026-11-21", "2027-01-01", "2027-04-10", "NaT"], dtype="datetime64[ns]")
    pos = _positions(cd, t, end, np.full(5, 92.0))
    assert [POSITIONS[i] for i in pos] == ["overdue", "in_period", "next_period", "later", "in_period"]


def test_slip_rows_label_won_deals_by_period_end():
    rows = slip_rows(tiny_crm(), "quarter")
    w1 = rows[rows["opportunity_id"] == "W1"]
    mondays = pd.date_range("2026-09-01", "2026-10-14", freq="W-MON")  # open from 09-01 until won 10-15
    assert w1["as_of"].tolist() == list(mondays)
    # Q3 Mondays: won 10-15 is after Q3's end -> 0; October Mondays -> 1
    assert w1["in_period"].tolist() == [0 if d < pd.Timestamp("2026-10-01") else 1 for d in mondays]
    assert set(w1["stage"]) == {"proposal"} and set(w1["pushes"]) == {0}
    # in proposal since 09-01: days in stage counted to each Monday; no segment column in the tiny company
    assert w1["days_in_stage"].tolist() == [float((d - pd.Timestamp("2026-09-01")).days) for d in mondays]
    assert w1["segment"].isna().all()
    assert set(rows["opportunity_id"]) == {"W0", "W1", "W2"}  # open and lost deals give no row


def test_days_in_stage_of_open_deals_match_the_timeline():
    crm = tiny_crm()
    o = crm.open_deals
    got = pd.Series(_open_deal_state(crm, o)["days_in_stage"].to_numpy(), index=o["opportunity_id"].to_numpy())
    # A entered negotiation 10-20, B proposal 09-15, C discovery 10-01, D qualification 10-10 (snapshot 11-20)
    assert got.to_dict() == {"A": 31.0, "B": 66.0, "C": 50.0, "D": 41.0}
    assert current_stage_age(crm).set_index("opportunity_id")["days_in_stage"].to_dict() == got.to_dict()


def test_slip_model_falls_back_to_the_close_date_with_a_warning():
    crm = tiny_crm()
    with pytest.warns(FallbackWarning, match="falling back to the close date"):
        model = SlipModel().fit(crm)
    got = p_in_period(crm, Q4, model=model).set_index("opportunity_id")
    assert got["p_in_period"].to_dict() == {"A": 1.0, "B": 1.0, "C": 0.0, "D": 1.0}
    assert got.loc["A", "pushes"] == 1


def _won_company(deals: list[tuple[str, str, str, str]], segments: list[str] | None = None) -> fk.CRM:
    """Won deals ``(id, created = entered proposal, close date while open, won on)``, two history rows each."""
    opps = pd.DataFrame(
        {
            "opportunity_id": [r[0] for r in deals],
            "owner": "o",
            "created_at": [r[1] for r in deals],
            "close_date": [r[3] for r in deals],
            "amount": 1.0,
            "stage": "won",
            "status": "won",
            "closed_at": [r[3] for r in deals],
        }
    )
    if segments is not None:
        opps["segment"] = segments
    hist = pd.concat(
        [
            pd.DataFrame(
                {
                    "opportunity_id": opps["opportunity_id"],
                    "changed_at": opps["created_at"],
                    "stage": "proposal",
                    "amount": 1.0,
                    "close_date": [r[2] for r in deals],
                }
            ),
            pd.DataFrame(
                {
                    "opportunity_id": opps["opportunity_id"],
                    "changed_at": opps["closed_at"],
                    "stage": "won",
                    "amount": 1.0,
                    "close_date": opps["closed_at"],
                }
            ),
        ]
    )
    return fk.CRM.from_tables({"opportunities": opps, "history": hist}, as_of="2026-11-20")


def test_slip_model_learns_that_deals_dated_in_period_close_in_period():
    # 60 won deals dated in the period and won in it, 60 dated next period and won then
    rows = [
        (f"X{i}-{k}", "2026-01-05", close, won)
        for i in range(60)
        for k, (close, won) in enumerate((("2026-03-20", "2026-03-25"), ("2026-05-10", "2026-05-12")))
    ]
    model = SlipModel().fit(_won_company(rows))
    assert not model.fallback_ and model.n_rows_ > 40 and model.segments_ == ()
    deals = pd.DataFrame(
        {
            "stage": ["proposal", "proposal"],
            "close_date": pd.to_datetime(["2026-12-15", "2027-02-10"]),
            "pushes": [0, 0],
        }
    )
    p = model.predict(deals, pd.Timestamp("2026-11-20"), Q4)
    assert p[0] > 0.8 and p[1] < 0.2


def test_slip_model_learns_that_a_slow_segment_slips_past_the_same_close_date():
    # every deal is dated 03-20 (in Q1); the 60 smb deals are won on 03-25 (in Q1), the 60 enterprise
    # deals on 05-12 (Q2): the close date cannot tell them apart, the segment can
    rows, segs = [], []
    for i in range(60):
        for seg, won in (("smb", "2026-03-25"), ("enterprise", "2026-05-12")):
            rows.append((f"{seg}{i}", "2026-01-05", "2026-03-20", won))
            segs.append(seg)
    crm = _won_company(rows, segs)
    model = SlipModel().fit(crm)
    assert model.segments_ == ("enterprise", "smb")
    deals = pd.DataFrame(
        {
            "stage": ["proposal"] * 3,
            "close_date": pd.to_datetime(["2026-12-15"] * 3),
            "pushes": [0] * 3,
            "segment": ["smb", "enterprise", "public_sector"],  # the last one is unknown to the model
            "days_in_stage": [30.0] * 3,
        }
    )
    p = model.predict(deals, pd.Timestamp("2026-10-20"), Q4)
    assert p[0] > 0.8 and p[1] < 0.2 and p[1] < p[2] < p[0]
    # without the segment the two are the same deal
    flat = SlipModel(features=("pushes", "days_in_stage")).fit(crm).predict(deals, pd.Timestamp("2026-10-20"), Q4)
    assert flat[0] == pytest.approx(flat[1]) and 0.2 < flat[0] < 0.8
    # a deals frame without segment / days in stage counts as an unknown segment, 0 days
    p2 = model.predict(deals[["stage", "close_date", "pushes"]], pd.Timestamp("2026-10-20"), Q4)
    unknown = model.predict(deals.assign(segment=None, days_in_stage=0.0), pd.Timestamp("2026-10-20"), Q4)
    np.testing.assert_allclose(p2, unknown)
    with pytest.raises(ParameterError, match=r"unknown slip feature\(s\) \['colour'\]; allowed: pushes, segment"):
        SlipModel(features=("colour",)).fit(crm)


# --------------------------------------------------------------------------- forecast
def test_crm_method_summary_distribution_target_and_calls_by_hand():
    f = forecast(tiny_crm(), "2026-Q4", method="crm", n_sims=20_000)
    s = f.summary.set_index("view")
    # reps: closed 1000 (W1); in-period open deals A commit 2000, B best case 4000, D omitted 3000 (C is dated 2027)
    assert s.loc["rep"].drop("deals").to_dict() == {
        "closed_won": 1000.0,
        "commit": 3000.0,
        "best_case": 7000.0,
        "pipeline": 6000.0,
        "omitted": 3000.0,
    }
    # model (CRM probabilities): A .75 commit, B .50 best case, D .10 pipeline
    assert s.loc["model"].drop("deals").to_dict() == {
        "closed_won": 1000.0,
        "commit": 3000.0,
        "best_case": 7000.0,
        "pipeline": 9000.0,
        "omitted": 0.0,
    }
    d = f.distribution.iloc[0]
    assert d["open_expected"] == pytest.approx(2000 * 0.75 + 4000 * 0.5 + 3000 * 0.1)
    assert d["new_deals_expected"] == 0.0  # the CRM weighted pipeline has no new-deal term
    assert (d["p10"], d["p50"], d["p90"]) == (1000.0, 5000.0, 7000.0)
    t = f.target.iloc[0]
    assert t["quota"] == 8000.0 and t["remaining_quota"] == 7000.0
    assert t["qualified_pipeline"] == 9000.0  # A, B, D: qualification or later, dated in the period
    assert t["coverage"] == pytest.approx(9000 / 8000) and t["coverage_remaining"] == pytest.approx(9000 / 7000)
    assert t["p_reach_quota"] == pytest.approx(0.05, abs=0.006)  # remaining 7000: open 7000 (.0125) or 9000 (.0375)
    deals = f.deals.set_index("opportunity_id")
    assert list(deals.index) == ["B", "A", "D"]  # by expected amount: 2000, 1500, 300
    assert deals.loc["A", "pushes"] == 1 and deals.loc["A", "days_to_close"] == 20
    assert deals["disagree"].to_dict() == {"B": False, "A": False, "D": True}
    c = f.calls.set_index(["level", "name"])
    assert c.loc[("owner", "alice"), "call_commit"] == 2500.0  # the latest call, not 1000
    assert c.loc[("owner", "alice"), "rep_commit"] == 3000.0  # 1000 won + A
    assert c.loc[("owner", "bob"), "rep_best_case"] == 4000.0
    assert c.loc[("company", "all"), "call_commit"] == 3000.0
    assert c.loc[("company", "all"), "expected"] == pytest.approx(d["expected"])


def test_stage_method_uses_shrunk_stage_rates_slips_and_new_deals():
    crm = tiny_crm()
    with pytest.warns(FallbackWarning):
        f = forecast(crm, method="stage", n_sims=2000)
    # stage rates shrunk toward the CRM defaults with 10 pseudo-deals (only 4 closed deals):
    # negotiation reached by W0, W1, W2 (won) -> (7.5 + 3) / 13; proposal by W0, W1 -> (5 + 2) / 12;
    # qualification reached by none -> 0.10. Slips fall back to the close date (C out).
    p = {"A": 10.5 / 13, "B": 7 / 12, "D": 0.10}
    got = f.deals.set_index("opportunity_id")["p_win"].to_dict()
    assert got == pytest.approx(p)
    d = f.distribution.iloc[0]
    assert d["open_expected"] == pytest.approx(2000 * p["A"] + 4000 * p["B"] + 3000 * p["D"])
    assert d["new_deals_expected"] == 600.0
    assert any("falling back" in n for n in f.notes)


def test_distribution_is_the_sum_of_the_owners_simulations_and_of_the_unlisted_rest():
    # W2 (600, the only not-yet-created-deals reference: rate 1 x 600) belongs to carol, who has no
    # open deal, no call and nothing won in Q4: the calls table does not list her, so her share of the
    # new-deal term sits in the simulation's extra column - in the distribution, not in the calls
    t = tables()
    o = t["opportunities"]
    o.loc[o["opportunity_id"] == "W2", "owner"] = "carol"
    crm = fk.CRM.from_tables(t, as_of="2026-11-20")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = forecast(crm, method="stage", n_sims=20_000)
    d = f.distribution.iloc[0]
    assert d["new_deals_expected"] == 600.0
    assert "carol" not in set(f.calls["name"])
    c = f.calls.set_index("level").loc["company"]
    owners = f.calls[f.calls["level"] == "owner"]
    assert c["expected"] == pytest.approx(owners["expected"].sum(), rel=1e-12)
    # the same draws: the gap is carol's column alone (Poisson(1) x 600: sd 600)
    assert d["expected"] - c["expected"] == pytest.approx(600.0, abs=4 * 600 / np.sqrt(20_000))
    assert d["expected"] == pytest.approx(
        d["closed_won"] + d["open_expected"] + 600.0, abs=4 * d["std"] / np.sqrt(20_000)
    )


def test_owner_and_team_filters():
    f = forecast(tiny_crm(), method="crm", owner="alice")
    assert set(f.deals["opportunity_id"]) == {"A", "D"}
    assert f.target.iloc[0]["quota"] == 5000.0 and f.distribution.iloc[0]["closed_won"] == 1000.0
    g = forecast(tiny_crm(), method="crm", team="south")
    assert set(g.deals["opportunity_id"]) == {"B"}
    assert g.target.iloc[0]["quota"] == 3000.0  # no team target: the sum of its reps' targets
    assert g.distribution.iloc[0]["closed_won"] == 0.0


def test_missing_quota_gives_nan_and_a_note():
    f = forecast(tiny_crm(targets=False), method="crm")
    t = f.target.iloc[0]
    assert np.isnan(t["quota"]) and np.isnan(t["coverage"]) and np.isnan(t["p_reach_quota"])
    assert any("no targets table" in n for n in f.notes)
    tab = tables()
    tab["targets"]["period"] = "2026-Q3"
    g = forecast(fk.CRM.from_tables(tab, as_of="2026-11-20"), method="crm")
    assert any("no 'bookings' target for 2026-Q4" in n for n in g.notes)


def test_bad_inputs_give_clear_errors():
    crm = tiny_crm()
    with pytest.raises(PeriodError, match="ended before the snapshot date 2026-11-20"):
        forecast(crm, "2026-Q3", method="crm")
    with pytest.raises(PeriodError, match="starts after the snapshot date"):
        forecast(crm, "2027-Q1", method="crm")
    with pytest.raises(ParameterError, match="method must be one of"):
        forecast(crm, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="owner='zoe' is not in the data"):
        forecast(crm, method="crm", owner="zoe")


def test_as_of_before_any_deal_gives_documented_zeros():
    early = tiny_crm().as_of("2026-06-15")
    for method in ("crm", "stage", "model"):
        f = forecast(early, method=method)  # type: ignore[arg-type]
        assert f.period.label == "2026-Q2"
        assert f.distribution.iloc[0][["closed_won", "expected", "p10", "p90"]].tolist() == [0.0] * 4
        assert f.deals.empty and any("no deal was created" in n for n in f.notes)


def test_empty_pipeline_gives_zero_to_come():
    tab = tables()
    o = tab["opportunities"]
    tab["opportunities"] = o[o["status"] != "open"]
    tab["history"] = tab["history"][tab["history"]["opportunity_id"].isin(tab["opportunities"]["opportunity_id"])]
    f = _quiet(forecast, fk.CRM.from_tables(tab, as_of="2026-11-20"), method="stage")
    d = f.distribution.iloc[0]
    assert d["open_expected"] == 0.0 and d["closed_won"] == 1000.0
    assert any("no open deal in scope" in n for n in f.notes)


def test_forecast_frame_and_html():
    f = forecast(tiny_crm(), method="crm")
    row = f.to_frame().iloc[0]
    assert row["rep_commit"] == 3000.0 and row["quota"] == 8000.0
    assert "Forecast 2026-Q4" in f._repr_html_()
    assert len(plot_forecast(f).data) == 4 and len(plot_calls(f).data) == 2


# --------------------------------------------------------------------------- accuracy
def test_accuracy_formulas_by_hand():
    df = pd.DataFrame(
        {
            "method": "m",
            "forecast": [110.0, 80.0, 50.0],
            "actual": [100.0, 100.0, 0.0],
            "p10": [90.0, 85.0, 0.0],
            "p50": [105.0, 90.0, 40.0],
            "p90": [120.0, 95.0, 60.0],
        }
    )
    r = forecast_accuracy(df).iloc[0]
    assert r["n"] == 3 and r["n_zero_actual"] == 1
    assert r["wape"] == pytest.approx(80 / 200) and r["accuracy"] == pytest.approx(0.6)
    assert r["bias"] == pytest.approx(40 / 200)
    assert r["mean_accuracy"] == pytest.approx(0.85) and r["median_ape"] == pytest.approx(0.15)
    assert r["coverage"] == pytest.approx(2 / 3)
    # pinball: row 1: 1 + 2.5 + 2; row 2: 1.5 + 5 + 4.5; row 3: 0 + 20 + 6  -> 42.5 / 9
    assert r["pinball"] == pytest.approx(42.5 / 9)
    assert r["pinball_scaled"] == pytest.approx(42.5 / 9 / (200 / 3))


def test_point_forecast_pinball_and_zero_actuals():
    assert pinball_loss(np.array([100.0]), np.array([110.0]), 0.1).tolist() == [pytest.approx(9.0)]
    r = forecast_accuracy(pd.DataFrame({"method": "x", "forecast": [110.0], "actual": [100.0]})).iloc[0]
    assert r["pinball"] == pytest.approx((9 + 5 + 1) / 3) and np.isnan(r["coverage"])
    z = forecast_accuracy(pd.DataFrame({"method": "x", "forecast": [5.0], "actual": [0.0]})).iloc[0]
    assert np.isnan(z["accuracy"]) and np.isnan(z["median_ape"]) and z["n_zero_actual"] == 1


def test_accuracy_bad_inputs():
    with pytest.raises(ParameterError, match="lacks column"):
        forecast_accuracy(pd.DataFrame({"forecast": [1.0]}))
    with pytest.raises(ParameterError, match="cannot group by"):
        forecast_accuracy(pd.DataFrame({"forecast": [1.0], "actual": [1.0]}), by="team")


# --------------------------------------------------------------------------- backtest
def test_checkpoint_dates():
    assert checkpoint_date(Q4, "week1") == pd.Timestamp("2026-10-01")
    assert checkpoint_date(Q4, "week13") == pd.Timestamp("2026-12-24")
    assert checkpoint_date(Q4, 10) == pd.Timestamp("2026-10-11")
    with pytest.raises(ParameterError, match="not understood"):
        checkpoint_date(Q4, "monday")
    with pytest.raises(ParameterError, match="falls outside 2026-Q4"):
        checkpoint_date(Q4, "week20")


def test_backtest_by_hand_on_the_tiny_company():
    bt = backtest(tiny_crm(), periods=["2026-Q3"], checkpoints=("week4",), methods=("crm", "run_rate", "call_commit"))
    r = bt.set_index("method")
    # as of 2026-07-22 only W0 exists (discovery, dated 09-20, 500): 0.25 x 500; actual Q3 = 500 + 600
    assert r.loc["crm", "forecast"] == pytest.approx(125.0) and r.loc["crm", "actual"] == 1100.0
    assert r.loc["crm", "abs_pct_error"] == pytest.approx(975 / 1100)
    assert (r.loc["crm", "p10"], r.loc["crm", "p90"]) == (0.0, 500.0) and not r.loc["crm", "covered"]
    assert r.loc["run_rate", "forecast"] == 0.0 and "no completed past period" in r.loc["run_rate", "note"]
    assert np.isnan(r.loc["call_commit", "forecast"]) and "no forecast call for 2026-Q3" in r.loc["call_commit", "note"]
    assert pd.isna(r.loc["call_commit", "covered"])
    fig = plot_backtest(bt)
    assert {t.name for t in fig.data} == {"crm", "run_rate", "call_commit"}


def test_backtest_commit_and_best_case_roll_up_the_reps_categories():
    # as of 2026-09-02 (day 63 of Q3): W2 (negotiation, commit, dated 09-10, 600) and W0 (discovery,
    # pipeline, 09-20, 500) are open and dated in Q3; A and W1 (best case) are dated in Q4, L1 in Q4.
    bt = backtest(tiny_crm(), periods=["2026-Q3"], checkpoints=(63,), methods=("commit", "best_case"))
    r = bt.set_index("method")
    assert r.loc["commit", "as_of"] == pd.Timestamp("2026-09-02")
    assert r.loc["commit", "forecast"] == 600.0 and r.loc["best_case", "forecast"] == 600.0
    assert r.loc["commit", "actual"] == 1100.0 and r.loc["commit", "error"] == -500.0
    # as of 2026-12-01 (day 61 of Q4): W1 won (1000); A commit 2000 and B best case 4000 dated in Q4;
    # D (omitted) and C (next quarter) do not count
    crm = fk.CRM.from_tables(tables(), as_of="2027-01-05")
    bt = backtest(crm, periods=["2026-Q4"], checkpoints=(61,), methods=("commit", "best_case", "call_commit"))
    r = bt.set_index("method")
    assert r.loc["commit", "closed_won"] == 1000.0
    assert r.loc["commit", "forecast"] == 3000.0 and r.loc["best_case", "forecast"] == 7000.0
    assert r.loc["call_commit", "forecast"] == 3000.0  # alice's latest 2500 + bob's 500
    assert not r["note"].str.contains("forecast category").any()


def test_backtest_commit_roll_up_without_categories_says_so():
    t = tables()
    t["opportunities"]["forecast_category"] = None
    t["history"]["forecast_category"] = None
    crm = fk.CRM.from_tables(t, as_of="2027-01-05")
    r = backtest(crm, periods=["2026-Q4"], checkpoints=(61,), methods=("commit",)).set_index("method")
    assert r.loc["commit", "forecast"] == 1000.0  # only what is won
    assert "no open deal has a forecast category" in r.loc["commit", "note"]


def test_backtest_bad_inputs():
    crm = tiny_crm()
    with pytest.raises(PeriodError, match="has not ended"):
        backtest(crm, periods=["2026-Q4"])
    with pytest.raises(PeriodError, match="ends before the first deal"):
        backtest(crm, periods=["2025-Q1"])
    with pytest.raises(ParameterError, match="needs truth="):
        backtest(crm, periods=["2026-Q3"], methods=("oracle",))
    with pytest.raises(ParameterError, match="unknown method"):
        backtest(crm, periods=["2026-Q3"], methods=("psychic",))
    with pytest.raises(fk.errors.InsufficientDataError, match="no past quarter to backtest"):
        backtest(crm)
    with pytest.raises(SchemaError, match="plot_backtest needs"):
        plot_backtest(pd.DataFrame({"x": [1]}))


# --------------------------------------------------------------------------- what changed
def _changed_crm() -> fk.CRM:
    """Tiny company plus: B's amount up to 4500 (11-01), E pushed to 2027 (11-10), C pulled into Q4 (11-05)."""
    t = tables()
    o = t["opportunities"]
    e = pd.DataFrame(
        [
            {
                "opportunity_id": "E",
                "name": "Deal E",
                "owner": "bob",
                "team": "south",
                "created_at": "2026-09-20",
                "close_date": "2027-01-20",
                "amount": 1500,
                "stage": "proposal",
                "status": "open",
                "forecast_category": "pipeline",
            }
        ]
    )
    o = pd.concat([o, e], ignore_index=True)
    o.loc[o["opportunity_id"] == "B", "amount"] = 4500
    o.loc[o["opportunity_id"] == "C", "close_date"] = "2026-12-28"
    t["opportunities"] = o
    extra = pd.DataFrame(
        [
            ("B", "2026-11-01", "proposal", 4500, "2026-12-20", "best_case"),
            ("C", "2026-11-05", "discovery", 8000, "2026-12-28", "pipeline"),
            ("E", "2026-09-20", "proposal", 1500, "2026-12-01", "best_case"),
            ("E", "2026-11-10", "proposal", 1500, "2027-01-20", "pipeline"),
        ],
        columns=t["history"].columns,
    )
    t["history"] = pd.concat([t["history"], extra], ignore_index=True).sort_values(["opportunity_id", "changed_at"])
    return fk.CRM.from_tables(t, as_of="2026-11-20")


def test_pipeline_changes_waterfall_by_hand():
    ch = pipeline_changes(_changed_crm(), "2026-10-01", "2026-11-20", period="2026-Q4")
    s = ch.summary.set_index("step")
    # on 10-01 (end of day) the Q4 pipeline is W1 1000 + L1 700 + A 2000 + B 4000 + E 1500 = 9200
    assert s.loc["start", "amount"] == 9200.0 and s.loc["start", "deals"] == 5
    assert s.loc["new", "amount"] == 3000.0  # D
    assert s.loc["pulled_in", "amount"] == 8000.0  # C moved from 2027-02-15 to 2026-12-28
    assert s.loc["won", "amount"] == -1000.0 and s.loc["lost", "amount"] == -700.0
    assert s.loc["pushed_out", "amount"] == -1500.0  # E
    assert s.loc["amount_up", "amount"] == 500.0 and s.loc["amount_down", "amount"] == 0.0
    assert s.loc["stage_forward", "amount"] == 2000.0  # A: proposal -> negotiation (information only)
    # end: A 2000 + B 4500 + C 8000 + D 3000 = 17500 = 9200 + 3000 + 8000 - 1000 - 700 - 1500 + 500
    assert s.loc["end", "amount"] == 17500.0 and s.loc["end", "deals"] == 4
    assert ch.deals_for("pushed_out")["opportunity_id"].tolist() == ["E"]
    assert ch.deals_for("won")["opportunity_id"].tolist() == ["W1"]
    assert len(plot_waterfall(ch).data) == 1


def test_pipeline_changes_bad_dates():
    crm = tiny_crm()
    with pytest.raises(PeriodError, match="must be after start"):
        pipeline_changes(crm, "2026-11-01", "2026-10-01")
    with pytest.raises(PeriodError, match="after the snapshot date"):
        pipeline_changes(crm, "2026-11-01", "2026-12-31")
    with pytest.raises(ParameterError, match="is not one of"):
        pipeline_changes(crm, "2026-10-01").deals_for("moved")


def test_public_names_resolve():
    # fk.forecast is the subpackage once imported (same name as the function): it is callable
    assert fk.forecast(tiny_crm(), method="crm").summary.equals(forecast(tiny_crm(), method="crm").summary)
    assert fk.backtest is backtest
    assert fk.forecast_accuracy is forecast_accuracy and fk.pipeline_changes is pipeline_changes


def test_model_method_on_too_little_history_tries_the_fit_once_and_falls_back(monkeypatch):
    import forecastkit.forecast.forecast as fmod

    calls = []
    real = fmod.fit_win_model
    monkeypatch.setattr(fmod, "fit_win_model", lambda crm, *a, **k: calls.append(1) or real(crm, *a, **k))
    crm = tiny_crm()
    with pytest.warns(FallbackWarning, match="win model not fitted"):
        f = forecast(crm, method="model", n_sims=2000)
    assert len(calls) == 1
    assert f.model is None
    assert any(n.startswith("win model not fitted") for n in f.notes)
    stage = _quiet(forecast, crm, method="stage", n_sims=2000)
    assert f.deals["p_win"].tolist() == stage.deals["p_win"].tolist()  # the stage rates it fell back to
