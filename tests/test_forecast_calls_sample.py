"""The sample generator's forecast calls: built only from what each rep knows on the Friday they submit.

The calls (``company.build_forecast_calls``) are the reps' judgement of their quarter: won so far, their
open deals weighted by their experience of each stage and of the time left, and their run rate of new
deals, times the rep's bias. These tests rebuild the calls from the generator's latent deals with the
future falsified, and check the convention best case >= commit.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from forecastkit.data.sample import generate
from forecastkit.data.sample.company import build_forecast_calls
from forecastkit.data.sample.scenarios import params_for
from forecastkit.data.sample.simulate import simulate_deals, simulate_reps
from forecastkit.playbook import Playbook

START, AS_OF = pd.Timestamp("2023-07-01"), pd.Timestamp("2024-12-20")


def _latent(seed: int = 0, n_reps: int = 12):
    """Latent reps and deals of a small company (the generator's own simulation steps)."""
    params = params_for("baseline")
    g = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
    params = replace(params, extra={**params.extra, "weak_stage": 2})
    horizon = float((AS_OF - START).days)
    months = pd.date_range(START, AS_OF + pd.offsets.MonthBegin(1), freq="MS")
    mt = ((months - START) / pd.Timedelta(days=1)).to_numpy(float)
    reps = simulate_reps(g[1], n_reps, horizon, params)
    d = simulate_deals(g[2], reps, horizon, mt, params, params.leads_per_rep_month)
    amounts = d.amount0 * np.exp(np.random.default_rng(1).normal(0, 0.1, d.n))
    return reps, d, amounts


def _falsify_after(d, amounts, t: float):
    """Deals with everything after day ``t`` changed: outcome flipped, later stage entries and close moved."""
    late = d.close >= t
    shift = np.where(late, 17.0, 0.0)
    enter = np.where(d.enter > t, d.enter + shift[:, None], d.enter)
    dwell = np.where(late[:, None] & np.isfinite(d.dwell), d.dwell * 1.7, d.dwell)
    will_win = np.where(late, ~d.will_win, d.will_win)
    fake = replace(d, enter=enter, dwell=dwell, close=d.close + shift, will_win=will_win)
    return fake, np.where(late, amounts * 3, amounts)


def test_calls_ignore_everything_after_the_friday():
    reps, d, amounts = _latent()
    pb = Playbook()
    calls = build_forecast_calls(np.random.default_rng(5), d, reps, amounts, START, AS_OF, pb)
    cut = pd.Timestamp("2024-06-14")  # a Friday: the calls submitted up to it must not change
    t = float((cut - START).days) + 1.0
    fake_d, fake_amounts = _falsify_after(d, amounts, t)
    assert not np.array_equal(fake_d.will_win, d.will_win)
    other = build_forecast_calls(np.random.default_rng(5), fake_d, reps, fake_amounts, START, AS_OF, pb)
    known = calls["submitted_at"] <= cut
    assert known.sum() > 100
    pd.testing.assert_frame_equal(calls[known], other[other["submitted_at"] <= cut])
    # ...while the later calls do see the falsified deals
    assert not calls[~known].reset_index(drop=True).equals(other[other["submitted_at"] > cut].reset_index(drop=True))


def test_calls_best_case_at_least_commit_and_at_least_won():
    s = generate("baseline", seed=1, n_reps=12)
    fc = s.tables["forecast_calls"]
    assert len(fc) > 0 and (fc["commit"] >= 0).all()
    assert (fc["best_case"] >= fc["commit"]).all()
    # a call never drops below what the rep had already won in the quarter (rounded to hundreds)
    o = s.tables["opportunities"]
    won = o[o["status"] == "won"]
    last = fc.sort_values("submitted_at").groupby(["owner", "period"]).tail(1)
    for r in last.sample(40, random_state=0).itertuples():
        start = pd.Period(r.period.replace("-Q", "Q"), freq="Q").start_time
        w = won[(won["owner"] == r.owner) & (won["closed_at"] >= start) & (won["closed_at"] <= r.submitted_at)]
        assert r.commit >= w["amount"].sum() - 50
