"""Sales cycle: closed-only figures vs Kaplan-Meier and Aalen-Johansen, by hand on the six-deal CRM.

Cycles (days): D6 lost 30, D1 won 31, D2 lost 50, D3 won 68; open at the snapshot
(censored): D5 60, D4 121.

Kaplan-Meier, share still open: S(30) = 5/6, S(31) = 5/6 x 4/5 = 4/6, S(50) = 4/6 x 3/4 = 1/2,
S(68) = 1/2 x 1/2 = 1/4 (two deals at risk at day 68). The median is the first day S falls
*below* 1/2 (lifelines' convention): 68, since S is exactly 1/2 from day 50 to day 68.
Closed-only median: median(30, 31, 50, 68) = 40.5, biased low.
Aalen-Johansen: won by day t: 1/5 x S(30) = 1/6 at 31, + 1/2 x S(50) = 1/4 at 68 -> 5/12;
lost: 1/6 at 30, + 1/4 x S(31) = 1/6 at 50 -> 1/3. Won + lost + still open = 5/12 + 1/3 + 1/4 = 1.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter
from test_kpi_sales import AS_OF, make_tables

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.kpi.cycle import _aalen_johansen, cycle_data, cycle_survival, sales_cycle


@pytest.fixture
def crm() -> CRM:
    return CRM.from_tables(make_tables(), as_of=AS_OF)


def test_cycle_data(crm: CRM) -> None:
    d = cycle_data(crm).set_index("opportunity_id")
    assert d["days"].to_dict() == {"D1": 31, "D2": 50, "D3": 68, "D4": 121, "D5": 60, "D6": 30}
    assert d["event"].to_dict() == {"D1": 1, "D2": 2, "D3": 1, "D4": 0, "D5": 0, "D6": 2}


def test_sales_cycle_closed_only_vs_kaplan_meier(crm: CRM) -> None:
    r = sales_cycle(crm).iloc[0]
    assert r[["deals", "closed", "open"]].tolist() == [6, 4, 2]
    assert r["share_open"] == pytest.approx(2 / 6)
    assert r["closed_median_days"] == 40.5
    assert r["closed_mean_days"] == pytest.approx((30 + 31 + 50 + 68) / 4)
    assert r["won_median_days"] == pytest.approx((31 + 68) / 2)
    assert r["km_median_days"] == 68
    assert r["median_bias_days"] == pytest.approx(40.5 - 68)
    assert r["km_median_low"] <= 68 <= r["km_median_high"]


def test_sales_cycle_by_owner_and_cohort(crm: CRM) -> None:
    r = sales_cycle(crm, by="owner").set_index("owner")
    # alice: D1 31 (won), D2 50 (lost), D5 60 (open) -> S(31) = 2/3, S(50) = 1/3 -> median 50
    assert r.loc["alice", "km_median_days"] == 50
    q = sales_cycle(crm, period="quarter")
    assert q["period"].tolist() == ["2026-Q1", "2026-Q2"]
    assert q["deals"].tolist() == [4, 2]


def test_sales_cycle_median_not_reached_is_infinite() -> None:
    tables = make_tables()
    opp = tables["opportunities"]
    # only D1 closed, every other deal open: S never drops to 1/2
    keep = opp["opportunity_id"].isin(["D1", "D4", "D5"])
    tables["opportunities"] = opp[keep]
    tables["history"] = tables["history"][tables["history"]["opportunity_id"].isin(["D1", "D4", "D5"])]
    r = sales_cycle(CRM.from_tables(tables, as_of=AS_OF)).iloc[0]
    assert r["km_median_days"] == float("inf")
    assert r["closed_median_days"] == 31


def test_cycle_survival_curves(crm: CRM) -> None:
    c = cycle_survival(crm)
    km = c[c["curve"] == "still_open"].set_index("days")["estimate"]
    assert km.loc[30] == pytest.approx(5 / 6)
    assert km.loc[50] == pytest.approx(0.5)
    assert km.loc[68] == pytest.approx(0.25)
    won = c[c["curve"] == "won"]
    lost = c[c["curve"] == "lost"]
    assert won["estimate"].iloc[-1] == pytest.approx(5 / 12, abs=1e-6)
    assert lost["estimate"].iloc[-1] == pytest.approx(1 / 3, abs=1e-6)
    assert set(c.columns) == {"period", "curve", "days", "estimate", "lower", "upper"}
    # same seed, same jitter, same curves
    pd.testing.assert_frame_equal(c, cycle_survival(crm))


def test_bad_alpha(crm: CRM) -> None:
    with pytest.raises(ParameterError, match="alpha=1.5 must be between 0 and 1"):
        sales_cycle(crm, alpha=1.5)


def _lifelines_incidence(days: np.ndarray, event: np.ndarray, code: int, seed: int) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ajf = AalenJohansenFitter(seed=seed, calculate_variance=False).fit(days, event, event_of_interest=code)
    return ajf.cumulative_density_.iloc[:, 0]


@pytest.mark.parametrize("seed", [0, 7])
def test_aalen_johansen_in_one_pass_equals_lifelines_per_group(seed: int) -> None:
    """Random groups with tied integer days (won and lost on the same day: jittered), censoring,
    deals closed on day 0 (jittered below 0: the entry row moves), a group without ties and a
    group with one deal: every group's curve equals lifelines' fit on the group alone."""
    rng = np.random.default_rng(seed)
    sizes = [1, 2, 5, 40, 300, 1200]
    group = np.repeat(np.arange(len(sizes)), sizes)
    days = rng.integers(0, 60, len(group)).astype(float)
    event = rng.choice([0, 1, 2], len(group), p=[0.3, 0.4, 0.3])
    days[group == 3] = rng.permutation(40) * 1.5  # group 3: distinct times, no jitter
    event[group == 0] = 1
    event[group == 1] = [1, 2]
    days[group == 1] = 0.0  # won and lost on day 0
    for code in (1, 2):
        g, t, est = _aalen_johansen(days, event, group, code, seed=seed)
        for k in range(len(sizes)):
            ref = _lifelines_incidence(days[group == k], event[group == k], code, seed)
            np.testing.assert_array_equal(t[g == k], ref.index.to_numpy(dtype=float))
            np.testing.assert_allclose(est[g == k], ref.to_numpy(), rtol=1e-12, atol=1e-15)
        assert np.all(np.diff(g) >= 0)


def test_cycle_survival_without_intervals_equals_the_lifelines_loop(crm: CRM) -> None:
    """The one-pass won/lost curves (intervals=False) are the rows lifelines gives group by group."""
    for by, period in [(None, None), ("owner", None), ("owner", "quarter")]:
        fast = cycle_survival(crm, by=by, period=period, curves=("won", "lost"), intervals=False)
        loop = cycle_survival(crm, by=by, period=period, curves=("still_open", "won", "lost"), intervals=False)
        loop = loop[loop["curve"] != "still_open"].reset_index(drop=True)
        pd.testing.assert_frame_equal(fast, loop, check_exact=True)
        assert fast["lower"].isna().all()
    won = cycle_survival(crm, curves=("won",), intervals=False)
    assert won["estimate"].iloc[-1] == pytest.approx(5 / 12, abs=1e-6)
