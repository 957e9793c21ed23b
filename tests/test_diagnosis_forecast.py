"""diagnose(forecast=...): the company's forecast handed over gives the same findings; a forecast that is not
the one the diagnosis would compute is refused with a message saying what differs."""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.data.sample import generate
from forecastkit.diagnosis import diagnose
from forecastkit.diagnosis.cases import _commit_deals, _commit_rows
from forecastkit.errors import ParameterError


@functools.cache
def _crm() -> CRM:
    return generate(scenario="optimistic", seed=11).crm


class FixedModel:
    """A win model that gives every open deal a probability from its amount (cheap; no fit)."""

    def predict_proba(self, snap: CRM) -> pd.DataFrame:
        amount = snap.open_deals["amount"].to_numpy(float)
        return pd.DataFrame({"p_win": np.clip(np.nan_to_num(amount) / 200_000.0, 0.02, 0.95)})


def _assert_same_findings(got: fk.diagnosis.Diagnosis, want: fk.diagnosis.Diagnosis) -> None:
    assert len(got.findings) == len(want.findings)
    for a, b in zip(got.findings, want.findings, strict=True):
        assert (a.case, a.scope, a.status, a.severity, a.basis) == (b.case, b.scope, b.status, b.severity, b.basis)
        pd.testing.assert_frame_equal(a.evidence, b.evidence, check_exact=True)
        assert list(a.drilldown) == list(b.drilldown)
        for name in a.drilldown:
            pd.testing.assert_frame_equal(a.drilldown[name], b.drilldown[name], check_exact=True, obj=name)


@pytest.mark.parametrize("method", ["stage", "model"])
def test_a_forecast_handed_over_gives_the_same_findings(method: str) -> None:
    crm = _crm()
    model = FixedModel() if method == "model" else None
    fc = fk.forecast(crm, method=method, model=model)  # the scheduled job's forecast (10,000 draws)
    inside = diagnose(crm, by=["team", "owner"], method=method, model=model)  # type: ignore[arg-type]
    handed = diagnose(crm, by=["team", "owner"], method=method, model=model, forecast=fc)  # type: ignore[arg-type]
    _assert_same_findings(handed, inside)
    commit = handed.finding(3).evidence.set_index("metric").loc["commit_win_probability"]
    assert commit["n"] > 0 and np.isfinite(commit["value"])


@pytest.mark.parametrize("method", ["stage", "crm", "model"])
def test_the_commit_deals_are_those_of_the_forecasts_deal_table(method: str) -> None:
    """The diagnosis builds only the forecast's deal table: the same rows, values, types and order."""
    crm = _crm()
    model = FixedModel() if method == "model" else None
    want = _commit_rows(fk.forecast(crm, method=method, model=model, n_sims=500).deals)  # type: ignore[arg-type]
    got = _commit_deals(crm, method, model)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_forecast_the_diagnosis_would_not_compute_is_refused() -> None:
    crm = _crm()
    fc = fk.forecast(crm, method="stage", n_sims=200)
    team = sorted(crm.opportunities["team"].dropna().unique())[0]
    cases = [
        ({"forecast": "2026-Q4"}, "forecast= takes the Forecast of fk.forecast(crm, ...), got str"),
        (
            {"forecast": fk.forecast(crm.as_of("2026-11-13"), method="stage", n_sims=200)},
            "forecast= is as of 2026-11-13, the diagnosis as of 2026-11-20: forecast the same snapshot",
        ),
        (
            {"forecast": fc, "period": "2026-Q3"},
            "forecast= is as of 2026-11-20, the diagnosis as of 2026-09-30",
        ),
        (
            {"forecast": fk.forecast(crm, period="2026-11", method="stage", n_sims=200)},
            "forecast= is of period 2026-11, the diagnosis reads the commit deals of the quarter 2026-Q4",
        ),
        ({"forecast": fc, "method": "model"}, "forecast= used method='stage', the diagnosis method='model'"),
        (
            {"forecast": fk.forecast(crm, method="stage", team=team, n_sims=200)},
            "forecast= is of one rep or team (owner= or team=), the diagnosis needs the company's",
        ),
        (
            {"forecast": fk.forecast(crm.subset(team=team), method="stage", n_sims=200)},
            "forecast= does not hold this snapshot's open deals dated in 2026-Q4",
        ),
        (
            {"forecast": fc, "playbook": crm.playbook},
            "forecast= was computed with the snapshot's playbook, the diagnosis with playbook=",
        ),
    ]
    for kwargs, message in cases:
        kwargs.setdefault("method", "stage")
        with pytest.raises(ParameterError, match=re.escape(message)):
            diagnose(crm, by=None, drilldown=False, **kwargs)  # type: ignore[arg-type]


def test_a_forecast_of_another_win_model_is_refused() -> None:
    crm = _crm()
    model = FixedModel()
    fc = fk.forecast(crm, model=model, n_sims=200)
    # a forecast whose win model could not be fitted used stage probabilities, not the model given
    fell_back = dataclasses.replace(
        fc, notes=("win model not fitted (too little history); using historical stage probabilities instead",)
    )
    with pytest.raises(ParameterError, match="forecast= fell back to stage probabilities .* uses the model= given"):
        diagnose(crm, by=None, drilldown=False, model=model, forecast=fell_back)
    # the Forecast records its win model: it must be the one given to the diagnosis
    assert fc.model is model
    other = fk.forecast(crm, model=FixedModel(), n_sims=200)
    with pytest.raises(ParameterError, match="forecast= used another win model than the model= given"):
        diagnose(crm, by=None, drilldown=False, model=model, forecast=other)
    other = dataclasses.replace(fc)
    assert diagnose(crm, by=None, drilldown=False, model=model, forecast=other).finding(3).status != ""
    assert fk.forecast(crm, method="stage", n_sims=200).model is None
