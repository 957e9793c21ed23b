"""Acceptance on the sample generator's ground truth (issue 7), several seeds.

Companies: ``generate(seed, n_reps=24, leads_per_rep_month=20)`` (about 15 000 deals, 8 000 of
which left qualification closed), seeds 0, 2 and 3 - the generator draws the weak stage per seed:
proposal, qualification and discovery respectively, so each seed checks a different stage.

Weak rep, measured with ``transition_gaps`` as :func:`coaching` uses it (each rep against the
rest of the team) on seeds 0-7 (to choose the rule) and 8-15 (to check it): flagged at the weak
stage 16 of 16 (qualification 7, discovery 4, proposal 5), with the headline there 16 of 16. Reps
who are not the weak rep with a flagged transition: 28 of 184 on seeds 0-7 and 29 of 184 on
8-15 (15%): mostly reps whose drawn skill is low (skill < -0.2: 31-40% flagged, the others
7-9%), who do convert worse than their team, most visibly at negotiation.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest

from forecastkit.data.sample import generate
from forecastkit.data.sample.model import loss_stage_distribution, outcome_prior
from forecastkit.data.sample.scenarios import SimParams
from forecastkit.kpi.sales import conversion
from forecastkit.winloss.coaching import coaching, transition_gaps
from forecastkit.winloss.drivers import drivers

SEEDS = (0, 2, 3)
_TERM = {  # truth driver -> (feature, level) of the drivers() table
    "champion": ("champion_known", ""),
    "decision_maker": ("decision_maker_known", ""),
    "competitor": ("competitor_present", ""),
    "budget": ("budget_known", ""),
    "metrics": ("metrics_known", ""),
    "pain": ("pain_known", ""),
    "discount": ("discount_band", ">=15%"),
}


@cache
def _sample(seed: int):
    s = generate(seed=seed, n_reps=24, leads_per_rep_month=20)
    return s.crm, s.truth


@cache
def _estimates() -> pd.DataFrame:
    rows = []
    for seed in SEEDS:
        crm, truth = _sample(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = drivers(crm, at="qualification", importance=False).table
        for e in truth.driver_effects.itertuples():
            feat, level = _TERM.get(e.driver, (e.driver, e.level))
            est = t[(t["feature"] == feat) & (t["level"] == level)].iloc[0]
            rows.append(
                {
                    "seed": seed,
                    "driver": e.driver,
                    "level": e.level,
                    "true": e.true_odds_ratio,
                    "null": e.is_null,
                    "or": est["odds_ratio"],
                    "lo": est["ci_low"],
                    "hi": est["ci_high"],
                    "p": est["p_value"],
                }
            )
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_true_effects_found_with_right_sign_and_covering_interval():
    d = _estimates()
    big = d[(d["true"] < 0.8) | (d["true"] > 1.25)]
    ok = (
        (np.sign(np.log(big["or"])) == np.sign(np.log(big["true"])))
        & (big["lo"] <= big["true"])
        & (big["true"] <= big["hi"])
    )
    assert len(big) == 7 * len(SEEDS)
    assert ok.mean() >= 0.80, big.assign(ok=ok)


@pytest.mark.slow
def test_null_drivers_not_significant():
    d = _estimates()
    nulls = d[d["null"]]
    assert len(nulls) == 7 * len(SEEDS)
    assert (nulls["p"] >= 0.05).mean() >= 0.90, nulls


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_weak_rep_is_flagged_at_the_weak_stage(seed):
    crm, truth = _sample(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = coaching(crm, truth.weak_rep)
    t = r.transitions.set_index("stage")
    assert t.loc[truth.weak_stage, "flagged"], t
    assert t.loc[truth.weak_stage, "prob_worse"] >= 0.95
    assert r.weak_stage == truth.weak_stage, r.headline


@pytest.mark.slow
def test_other_reps_are_rarely_flagged():
    """Reps other than the weak one with a flagged transition: at most a quarter (measured: 15%)."""
    flags = []
    for seed in SEEDS:
        crm, truth = _sample(seed)
        conv = conversion(crm, None, by=["team", "owner"])
        for owner in conv["owner"].dropna().unique():
            if owner == truth.weak_rep:
                continue
            is_rep = conv["owner"] == owner
            team = conv.loc[is_rep, "team"].mode().iloc[0]
            t = transition_gaps(conv[is_rep], conv[(conv["team"] == team) & ~is_rep], crm, np.random.default_rng(0))
            flags.append(bool(t["flagged"].any()))
    assert len(flags) >= 60 and np.mean(flags) <= 0.25, np.mean(flags)


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_generator_weak_rep_converts_half_as_often_at_the_weak_stage_only(stage):
    """The weak rep's conversion out of the weak stage is 1 - weak_extra times a peer's; other stages unchanged."""
    q_base, r = loss_stage_distribution(SimParams())
    q = np.array([q_base, q_base, 0.3, 0.3])
    weak = np.array([False, True, False, True])
    pi = outcome_prior(q, weak, stage, 0.5, r)
    assert np.allclose(pi.sum(axis=1), 1.0)
    reached = np.cumsum(pi[:, ::-1], axis=1)[:, ::-1][:, :-1]  # P(reach stage s), s = 0..4
    conv = np.append(reached[:, 1:], pi[:, -1:], axis=1) / reached  # s -> s + 1, last -> won
    for normal, weak_row in ((0, 1), (2, 3)):
        ratio = conv[weak_row] / conv[normal]
        assert ratio[stage] == pytest.approx(0.5)
        assert np.delete(ratio, stage) == pytest.approx(np.ones(len(r) - 1))
        assert pi[weak_row, -1] == pytest.approx(0.5 * q[weak_row])  # half the wins, whatever the stage
