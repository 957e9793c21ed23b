"""Calibration scores and figures, checked against numbers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

import forecastkit as fk
from forecastkit.errors import InsufficientDataError, ParameterError, SchemaError
from forecastkit.probability.calibration import brier_score, expected_calibration_error
from forecastkit.probability.plot import plot_reliability, plot_stage_probabilities


@pytest.fixture
def preds() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "won": [1, 0, 1, 0],
            "p_model": [0.8, 0.2, 0.6, 0.4],
            "p_stage": [0.7, 0.3, 0.3, 0.3],
            "p_crm": [0.5, 0.5, 0.5, 0.5],
        }
    )


def test_scores_by_hand(preds):
    rep = fk.calibration_report(preds)
    s = rep.scores.set_index("source")
    assert list(s.index) == ["model", "stage", "crm"]
    m = s.loc["model"]
    assert m["n"] == 4
    assert m["brier"] == pytest.approx((0.04 + 0.04 + 0.16 + 0.16) / 4)  # 0.10
    assert m["brier_skill_vs_crm"] == pytest.approx(1 - 0.10 / 0.25)
    # stage: (0.09 + 0.09 + 0.49 + 0.09) / 4 = 0.19
    assert s.loc["stage", "brier"] == pytest.approx(0.19)
    assert m["brier_skill_vs_stage"] == pytest.approx(1 - 0.10 / 0.19)
    assert s.loc["stage", "brier_skill_vs_stage"] == pytest.approx(0.0)
    assert m["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert m["roc_auc"] == pytest.approx(1.0)
    # one row per bin: |0.8-1| + |0.2-0| + |0.6-1| + |0.4-0| = 1.2, over 4 rows
    assert m["ece"] == pytest.approx(0.3)
    # stage: bin 7 (0.7 -> 1) and bin 3 (0.3, 0.3, 0.3 -> 1/3): (0.3 + 3 * |0.3 - 1/3|) / 4
    assert s.loc["stage", "ece"] == pytest.approx((0.3 + 3 * (1 / 3 - 0.3)) / 4)
    assert m["mean_predicted"] == pytest.approx(0.5) and m["observed_rate"] == pytest.approx(0.5)


def test_reliability_table_has_counts_per_bin(preds):
    rel = fk.calibration_report(preds).reliability
    st = rel[rel["source"] == "stage"].set_index("bin")
    assert list(rel.columns) == [
        "source",
        "bin",
        "p_from",
        "p_to",
        "n",
        "mean_predicted",
        "observed_rate",
        "ci_lower",
        "ci_upper",
    ]
    assert st["n"].to_dict() == {3: 3, 7: 1}
    assert st.loc[3, "observed_rate"] == pytest.approx(1 / 3)
    assert st.loc[3, "p_from"] == pytest.approx(0.3) and st.loc[3, "p_to"] == pytest.approx(0.4)
    assert (rel["ci_lower"] <= rel["observed_rate"]).all() and (rel["observed_rate"] <= rel["ci_upper"]).all()


def test_helpers_and_edge_cases():
    assert brier_score([1, 0], [1.0, 0.0]) == 0.0
    assert expected_calibration_error([1, 1], [1.0, 1.0]) == 0.0  # p = 1 falls in the last bin
    rep = fk.calibration_report(pd.DataFrame({"won": [1, 1], "p_x": [0.9, 0.8]}))
    s = rep.scores.iloc[0]
    assert np.isnan(s["roc_auc"]) and np.isnan(s["brier_skill_vs_crm"])  # one class; no reference column


def test_errors_say_what_to_fix(preds):
    with pytest.raises(SchemaError, match="no outcome column 'outcome'"):
        fk.calibration_report(preds, label="outcome")
    with pytest.raises(SchemaError, match=r"probability column\(s\) \['p_nope'\] not found"):
        fk.calibration_report(preds, sources=["p_nope"])
    with pytest.raises(SchemaError, match="must hold only 0 and 1"):
        fk.calibration_report(preds.assign(won=[1, 2, 0, 0]))
    with pytest.raises(ParameterError, match="n_bins must be at least 2"):
        fk.calibration_report(preds, n_bins=1)
    with pytest.raises(InsufficientDataError, match="no rows to score"):
        fk.calibration_report(preds.iloc[:0])


def test_figures_are_plotly_and_carry_the_numbers(preds):
    rep = fk.calibration_report(preds)
    fig = plot_reliability(rep)
    assert isinstance(fig, go.Figure)
    lines = [t for t in fig.data if isinstance(t, go.Scatter) and t.name.startswith("model")]
    assert list(lines[0].y) == [0.0, 0.0, 1.0, 1.0]
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert sum(sum(b.y) for b in bars) == 12  # 4 rows x 3 sources
    table = pd.DataFrame(
        {
            "stage": ["proposal", "negotiation"],
            "reached": [4, 2],
            "won": [2, 2],
            "lost": [2, 0],
            "open": [0, 0],
            "p_win": [0.5, 0.8],
            "ci_lower": [0.2, 0.5],
            "ci_upper": [0.8, 0.95],
            "crm_probability": [0.5, 0.75],
            "gap": [0.0, -0.05],
        }
    )
    fig2 = plot_stage_probabilities(table)
    assert list(fig2.data[0].y) == [0.5, 0.8] and list(fig2.data[-1].y) == [0.5, 0.75]
    with pytest.raises(SchemaError, match="plot_stage_probabilities needs the columns"):
        plot_stage_probabilities(table.drop(columns="ci_lower"))


@pytest.mark.slow
def test_holdout_rows_come_after_the_training_window():
    from _probability_samples import HOLDOUT_DAYS, holdout, sample

    crm, _ = sample("baseline", 0)
    pred = holdout("baseline", 0)
    cutoff = crm.as_of_date - pd.Timedelta(days=HOLDOUT_DAYS)
    model = pred.attrs["model"]
    assert pred["as_of"].min() > cutoff and model.train_dates_.max() <= cutoff
    assert list(pred.columns) == [
        "opportunity_id",
        "as_of",
        "stage",
        "won",
        "p_model",
        "p_stage",
        "p_stage_age",
        "p_crm",
        "p_oracle",
    ]
    assert not pred.filter(like="p_").isna().any().any()


@pytest.mark.slow
def test_recalibrated_beats_crm_defaults_on_optimistic_and_matches_them_on_baseline():
    from _probability_samples import holdout

    opt = holdout("optimistic", 0)
    base = holdout("baseline", 0)

    def brier(df, col):
        return float(np.mean((df[col] - df["won"]) ** 2))

    # optimistic (true rates half the CRM's): both recalibrations cut the Brier score by well over 20%
    assert 1 - brier(opt, "p_stage") / brier(opt, "p_crm") >= 0.20
    assert 1 - brier(opt, "p_stage_age") / brier(opt, "p_crm") >= 0.20
    # baseline (CRM defaults are the true stage rates): stage x age history is at least as good;
    # plain stage history equals the defaults up to noise (-5% to +3% over five seeds)
    assert brier(base, "p_stage_age") <= brier(base, "p_crm")
    assert brier(base, "p_stage") <= brier(base, "p_crm") * 1.05
