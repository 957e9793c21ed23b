"""Sample companies and held-out predictions shared by the probability tests (cached per session)."""

from __future__ import annotations

import functools

import pandas as pd

from forecastkit.data.crm import CRM

#: Held-out split: train on what was known 545 days before the snapshot; score the
#: as-of dates after it, up to 180 days before the snapshot (so outcomes are known).
HOLDOUT_DAYS = 545


@functools.cache
def sample(scenario: str, seed: int) -> tuple[CRM, object]:
    """(crm, truth) of a generated company."""
    from forecastkit.data.sample import generate

    s = generate(scenario, seed=seed)
    return s.crm, s.truth


@functools.cache
def sample_sized(scenario: str, seed: int, n_reps: int) -> tuple[CRM, object]:
    """(crm, truth) of a generated company with ``n_reps`` reps."""
    from forecastkit.data.sample import generate

    s = generate(scenario, seed=seed, n_reps=n_reps)
    return s.crm, s.truth


@functools.cache
def holdout(scenario: str, seed: int) -> pd.DataFrame:
    """Held-out predictions (model, stage history, CRM defaults, oracle) of a generated company."""
    from forecastkit.probability.calibration import holdout_predictions

    crm, truth = sample(scenario, seed)
    cutoff = crm.as_of_date - pd.Timedelta(days=HOLDOUT_DAYS)
    return holdout_predictions(crm, cutoff, oracle=truth.p_win)
