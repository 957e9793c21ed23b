"""coaching(): the transition comparison by hand, the headline and its playbook action, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest
from winloss_fixtures import small_crm, table_crm

from forecastkit.errors import ParameterError
from forecastkit.playbook import Playbook
from forecastkit.winloss.coaching import STAGE_ACTIONS, _two_proportion_test, coaching, transition_gaps
from forecastkit.winloss.plot import plot_funnel


def _conv(stage: str, reached: int, advanced: int, undecided: int = 0) -> dict[str, object]:
    return {"stage": stage, "reached": reached, "advanced": advanced, "undecided": undecided}


class _Pb:
    playbook = Playbook()


def test_transition_gaps_rates_tests_and_posterior():
    rep = pd.DataFrame([_conv("qualification", 110, 30, 10), _conv("discovery", 30, 15)])
    peers = pd.DataFrame(
        [_conv("qualification", 200, 100), _conv("qualification", 100, 50), _conv("discovery", 100, 50)]
    )
    t = transition_gaps(rep, peers, _Pb(), np.random.default_rng(0)).set_index("stage")
    q = t.loc["qualification"]
    # rep: 30 of 100 decided (10 undecided left out); peers: 150 of 300
    assert (q["rep_decided"], q["rep_advanced"], q["peer_decided"], q["peer_advanced"]) == (100, 30, 300, 150)
    assert q["gap"] == pytest.approx(0.3 - 0.5)
    assert q["p_value"] == pytest.approx(proportions_ztest([30, 150], [100, 300])[1]) and q["test"] == "z"
    assert q["deals_lost_vs_peers"] == pytest.approx(20.0)
    assert q["prob_worse"] > 0.99 and q["flagged"]
    # posterior 90% interval of the gap roughly -0.2 +- 1.645 * sd
    sd = np.sqrt(0.3 * 0.7 / 100 + 0.25 / 300)
    assert q["gap_low"] == pytest.approx(-0.2 - 1.645 * sd, abs=0.01)
    assert q["shortfall_low"] == pytest.approx(-q["gap_high"], abs=1e-9)
    d = t.loc["discovery"]
    assert d["gap"] == pytest.approx(0.0) and not d["flagged"]
    assert t.loc["to_contact", "rep_decided"] == 0 and np.isnan(t.loc["to_contact", "prob_worse"])
    assert t.loc["qualification", "action"] == STAGE_ACTIONS["qualification"]


def test_small_counts_use_fisher():
    p, kind = _two_proportion_test(1, 4, 10, 12)
    assert kind == "fisher" and p == pytest.approx(stats.fisher_exact([[1, 3], [10, 2]])[1])


def test_coaching_headline_names_the_weak_transition_and_action():
    # deals go from qualification straight to won or lost, so qualification -> discovery is the transition compared:
    # ann moves 10 of 40 on, bob (her team peer) 30 of 40
    cells = [
        ({"owner": "ann", "team": "north"}, 10, 30),
        ({"owner": "bob", "team": "north"}, 30, 10),
        ({"owner": "cid", "team": "south"}, 20, 20),
    ]
    crm = table_crm(cells)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = coaching(crm, "ann")
    t = r.transitions.set_index("stage")
    assert (t.loc["qualification", "rep_rate"], t.loc["qualification", "peer_rate"]) == (0.25, 0.75)
    assert r.weak_stage == "qualification" and r.team == "north"
    assert "ann loses deals at qualification" in r.headline and "BANT" in r.headline
    assert t.loc["qualification", "headline"]
    k = r.kpis.set_index("kpi")
    assert k.loc["win_rate", "rep"] == pytest.approx(0.25) and k.loc["win_rate", "peers"] == pytest.approx(0.75)
    assert k.loc["win_rate", "company"] == pytest.approx(60 / 120)
    tt = r.team_transitions.set_index("stage")
    assert tt.loc["qualification", "rep_rate"] == pytest.approx(0.5)  # north: 40 of 80; south: 20 of 40
    assert isinstance(plot_funnel(r), go.Figure)


def test_no_credible_gap_headline_and_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = coaching(small_crm(), "ann")
        assert r.weak_stage is None and "no stage credibly worse" in r.headline
        with pytest.raises(ParameterError, match="owner 'anne' has no deals.*did you mean ann"):
            coaching(small_crm(), "anne")
        with pytest.raises(ParameterError, match="peers='world'"):
            coaching(small_crm(), "ann", peers="world")


def test_forecast_bias_is_the_accuracy_modules_bias_of_each_reps_last_call():
    from forecastkit.data.crm import CRM

    base = table_crm([({"owner": "ann", "team": "north"}, 10, 5), ({"owner": "bob", "team": "north"}, 8, 8)])
    o = base.opportunities
    won = o[o["status"] == "won"]

    def booked(owner: str, start: str, end: str) -> float:
        w = won[(won["owner"] == owner) & (won["closed_at"] >= start) & (won["closed_at"] < end)]
        return float(w["amount"].sum())

    calls = pd.DataFrame(
        {
            "submitted_at": pd.to_datetime(["2026-01-10", "2026-02-20", "2026-04-05", "2026-01-15"]),
            "owner": ["ann", "ann", "ann", "bob"],
            "period": ["2026-Q1", "2026-Q1", "2026-Q2", "2026-Q1"],
            "commit": [5000.0, 9000.0, 2000.0, 4000.0],
            "best_case": [6000.0, 9500.0, 2500.0, 5000.0],
        }
    )
    crm = CRM.from_tables({"opportunities": o, "history": base.history, "forecast_calls": calls}, as_of="2026-06-30")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning any more
        warnings.simplefilter("ignore", RuntimeWarning)
        k = coaching(crm, "ann").kpis.set_index("kpi")
    ann = booked("ann", "2026-01-01", "2026-04-01") + booked("ann", "2026-04-01", "2026-07-01")
    bob = booked("bob", "2026-01-01", "2026-04-01")
    assert ann > 0 and bob > 0
    # the last call of each rep and period (ann's Q1 call of Feb 20, not Jan 10) against what the rep won
    assert k.loc["forecast_bias", "rep"] == pytest.approx((9000 + 2000 - ann) / ann)
    assert k.loc["forecast_bias", "peers"] == pytest.approx((4000 - bob) / bob)
    assert k.loc["forecast_bias", "company"] == pytest.approx((9000 + 2000 + 4000 - ann - bob) / (ann + bob))
    assert "forecast_accuracy's bias" in k.loc["forecast_bias", "note"]
