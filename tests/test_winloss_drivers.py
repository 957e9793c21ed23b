"""drivers(): odds ratios checked against hand-computed 2x2 tables, rare levels, separation, windows."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from winloss_fixtures import table_crm

from forecastkit.errors import DataQualityWarning, FallbackWarning, InsufficientDataError, LeakageError
from forecastkit.winloss.drivers import CAVEAT, drivers


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        warnings.simplefilter("ignore", FallbackWarning)
        return drivers(**kw)


def test_single_binary_feature_gives_the_2x2_odds_ratio_and_wald_interval():
    # champion known: 30 won / 20 lost; unknown: 20 won / 80 lost -> OR = 30*80 / (20*20) = 6
    crm = table_crm([({"champion": "x"}, 30, 20), ({}, 20, 80)])
    r = drivers(crm, at="qualification", features=["champion_known"], importance=False)
    row = r.table.iloc[0]
    se = np.sqrt(1 / 30 + 1 / 20 + 1 / 20 + 1 / 80)
    assert row["odds_ratio"] == pytest.approx(6.0, rel=1e-6)
    assert row["ci_low"] == pytest.approx(6.0 * np.exp(-1.959964 * se), rel=1e-4)
    assert row["ci_high"] == pytest.approx(6.0 * np.exp(1.959964 * se), rel=1e-4)
    assert (row["n_deals"], row["n_won"]) == (50, 30)
    assert row["direction"] == "wins more" and row["significant"]
    assert (r.n_deals, r.n_won, r.method) == (150, 50, "logit")
    assert r.caveat == CAVEAT and "not causes" in r.caveat


def test_categorical_reference_is_the_most_frequent_level():
    # smb: 40 won / 60 lost (odds 2/3); enterprise: 10 won / 40 lost (odds 1/4) -> OR = (1/4) / (2/3) = 0.375
    crm = table_crm([({"segment": "smb"}, 40, 60), ({"segment": "enterprise"}, 10, 40)])
    r = drivers(crm, at="qualification", features=["segment"], importance=False)
    row = r.table.iloc[0]
    assert (row["feature"], row["level"], row["reference"]) == ("segment", "enterprise", "smb")
    assert row["odds_ratio"] == pytest.approx(0.375, rel=1e-6)
    assert row["direction"] == "wins less"


def test_rare_levels_are_grouped_into_other_with_a_warning():
    crm = table_crm(
        [
            ({"segment": "smb"}, 40, 60),
            ({"segment": "enterprise"}, 20, 30),
            ({"segment": "gov"}, 2, 3),
            ({"segment": "edu"}, 1, 3),
        ]
    )
    with pytest.warns(DataQualityWarning, match=r"segment: level\(s\) \['edu', 'gov'\].*grouped into 'other'"):
        r = drivers(crm, at="qualification", features=["segment"], importance=False, min_level_deals=30)
    other = r.table[r.table["level"] == "other"].iloc[0]
    assert (other["n_deals"], other["n_won"]) == (9, 3)
    assert any("grouped into 'other'" in n for n in r.notes)


def test_perfect_separation_falls_back_to_firth_with_a_warning():
    # every deal with a champion was won: the ML odds ratio is infinite
    crm = table_crm([({"champion": "x"}, 25, 0), ({}, 25, 75)])
    with pytest.warns(FallbackWarning, match="Firth's penalised logistic regression"):
        r = drivers(crm, at="qualification", features=["champion_known"], importance=False)
    row = r.table.iloc[0]
    # with one binary covariate Firth's estimate equals the 2x2 odds ratio with 0.5 added to every cell
    assert row["odds_ratio"] == pytest.approx((25.5 * 75.5) / (0.5 * 25.5), rel=1e-4)
    assert np.isfinite(row["ci_high"]) and row["method"] == "firth" and r.method == "firth"


def test_collinear_and_constant_features_are_left_out_with_a_note():
    crm = table_crm([({"champion": "x", "pain": "p"}, 30, 20), ({}, 20, 80)])
    with pytest.warns(DataQualityWarning, match="linear combination"):
        r = drivers(
            crm, at="qualification", features=["champion_known", "pain_known", "metrics_known"], importance=False
        )
    assert list(r.table["feature"]) == ["champion_known"]
    assert any("metrics_known: the same value" in n for n in r.notes)


def test_window_and_insufficient_data():
    crm = table_crm([({"champion": "x"}, 30, 20), ({}, 20, 80)])
    full = _quiet(crm=crm, at="qualification", features=["champion_known"], importance=False)
    part = _quiet(
        crm=crm, at="qualification", features=["champion_known"], importance=False, window=("2026-01-11", "2026-02-28")
    )
    assert part.n_deals < full.n_deals
    with pytest.raises(InsufficientDataError, match=r"at least 20 won and 20 lost.*found 0 won and 0 lost"):
        drivers(crm, at="qualification", features=["champion_known"], window="2025-Q1")


def test_leaking_feature_is_rejected_by_drivers():
    crm = table_crm([({"champion": "x"}, 30, 20), ({}, 20, 80)])
    with pytest.raises(LeakageError, match="'loss_reason'.*leak the outcome"):
        drivers(crm, features=["champion_known", "loss_reason"])


def test_permutation_importance_ranks_the_real_driver_first():
    rng = np.random.default_rng(1)
    cells = [({"champion": "x", "source": s}, 30 + int(rng.integers(0, 3)), 10) for s in ("a", "b")]
    cells += [({"source": s}, 10, 30 + int(rng.integers(0, 3))) for s in ("a", "b")]
    crm = table_crm(cells)
    r = drivers(crm, at="qualification", features=["champion_known", "source"], n_repeats=3)
    assert r.importance.iloc[0]["feature"] == "champion_known"
    assert r.importance.iloc[0]["importance"] > 0.2
    assert r.table.iloc[0]["feature"] == "champion_known"
