"""Property-based tests of the public analysis functions that take arrays, not a snapshot.

``fit_sbg`` and ``fit_bgnbd`` (customer economics) and ``calibration_report`` (probability
scoring) get random and adversarial inputs: NaN and infinite values, negative counts,
lengths that differ, empty inputs, text, a single class. The only allowed outcomes are:
- a result whose promised numbers are finite and in range;
- a :class:`~forecastkit.errors.ForecastkitError` with a message.

The snapshot-based functions are fuzzed in ``test_fuzz_analysis.py``. The same profiles
apply here: a few fixed examples by default, ``FORECASTKIT_FUZZ=long`` for many random ones.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import forecastkit as fk
from forecastkit.errors import ForecastkitError, ForecastkitWarning, InsufficientDataError, ParameterError
from forecastkit.kpi.economics import BetaGeometricNBD

_LONG = os.environ.get("FORECASTKIT_FUZZ", "").lower() == "long"
_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)


def fuzz(n: int, n_long: int = 500):
    if _LONG:
        return settings(max_examples=n_long, **_COMMON)
    return settings(max_examples=n, derandomize=True, **_COMMON)


#: numbers as CRM exports and spreadsheets hold them: ordinary values, zero, negatives, NaN, infinities, huge
_ANY = st.one_of(
    st.integers(-3, 60).map(float),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 1.0, np.nan, np.inf, -np.inf, 1e300, -1.0, 0.5]),
)


def _arrays(elements=_ANY, min_size: int = 0, max_size: int = 40):
    return st.lists(elements, min_size=min_size, max_size=max_size)


def _ok_or_error(fn, *args, **kwargs):
    """The call's result, or None when it raised a ForecastkitError (any other exception fails the test)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForecastkitWarning)
            return fn(*args, **kwargs)
    except ForecastkitError as exc:
        assert str(exc), f"{fn.__name__} raised {type(exc).__name__} without a message"
        return None


# ------------------------------------------------------------------ sBG (churn)
def _check_sbg(m) -> None:
    assert np.isfinite([m.alpha_, m.beta_, m.log_likelihood_]).all(), m
    assert m.alpha_ > 0 and m.beta_ > 0
    s = m.survival(np.arange(0, 13))
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1 + 1e-12).all()
    assert (np.diff(s) <= 1e-12).all(), "survival must not rise"
    r = m.retention_rate(np.arange(1, 13))
    assert np.isfinite(r).all() and ((r >= 0) & (r <= 1)).all()
    assert m.expected_lifetime >= 1  # (may be infinite: alpha <= 1)
    assert np.isfinite(m.discounted_expected_lifetime(0.01)) and m.discounted_expected_lifetime(0.01) >= 1


@fuzz(25)
@given(_arrays())
def test_fit_sbg_on_survivor_counts(alive):
    m = _ok_or_error(fk.fit_sbg, alive)
    if m is not None:
        _check_sbg(m)


@fuzz(25)
@given(
    st.integers(0, 30).flatmap(
        lambda n: st.tuples(
            _arrays(min_size=n, max_size=n),
            st.lists(st.one_of(st.booleans(), st.sampled_from([0, 1, None])), min_size=n, max_size=n),
        )
    ),
    st.booleans(),
)
def test_fit_sbg_on_customer_lifetimes(data, mismatch):
    durations, churned = data
    if mismatch:
        churned = [*churned, True]
    m = _ok_or_error(fk.fit_sbg, durations=durations, churned=churned)
    if m is not None:
        _check_sbg(m)


# ------------------------------------------------------------------ BG/NBD (repeat buying)
@fuzz(25, 300)
@given(
    st.integers(0, 30).flatmap(
        lambda n: st.tuples(*(_arrays(min_size=n, max_size=n) for _ in range(3))),
    ),
    st.booleans(),
)
def test_fit_bgnbd(data, plausible):
    x, t_x, T = (np.asarray(v, dtype=float) for v in data)
    if plausible:  # mostly valid histories, so that the fit itself is reached often
        x = np.floor(np.abs(np.nan_to_num(x, nan=1.0, posinf=5.0, neginf=0.0)) % 20)
        t_x = np.abs(np.nan_to_num(t_x, nan=2.0, posinf=10.0, neginf=0.0)) % 50
        T = t_x + np.abs(np.nan_to_num(T, nan=1.0, posinf=3.0, neginf=0.0)) % 30
        t_x = np.where(x == 0, 0.0, t_x)
    m = _ok_or_error(fk.fit_bgnbd, x, t_x, T)
    if m is None:
        return
    params = np.array(list(m.params_.values()))
    assert np.isfinite(params).all() and (params > 0).all(), m
    assert np.isfinite(m.log_likelihood_)
    alive = m.probability_alive(x, t_x, T)
    assert np.isfinite(alive).all() and ((alive >= 0) & (alive <= 1)).all()
    expected = m.expected_purchases(4.0, x, t_x, T)
    assert np.isfinite(expected).all() and (expected >= -1e-9).all(), (m, expected)


# ------------------------------------------------------------------ calibration report
@fuzz(30)
@given(
    st.integers(0, 40).flatmap(
        lambda n: st.tuples(
            st.lists(
                st.one_of(st.sampled_from([0, 1, 0.0, 1.0]), st.sampled_from([2, -1, np.nan, "won", None])),
                min_size=n,
                max_size=n,
            ),
            _arrays(st.one_of(st.floats(0, 1), _ANY), min_size=n, max_size=n),
            _arrays(st.floats(0, 1), min_size=n, max_size=n),
        )
    ),
    st.integers(-1, 12),
)
def test_calibration_report(data, n_bins):
    won, p_model, p_crm = data
    frame = pd.DataFrame({"won": pd.Series(won, dtype=object), "p_model": p_model, "p_crm": p_crm})
    rep = _ok_or_error(fk.calibration_report, frame, n_bins=n_bins)
    if rep is None:
        return
    s = rep.scores
    assert set(s["source"]) <= {"model", "crm"}
    for col in ("brier", "mean_predicted", "observed_rate"):
        v = s[col].to_numpy(float)
        defined = s["n"].to_numpy() > 0
        assert np.isfinite(v[defined]).all(), f"{col}: {s}"
        assert ((v[defined] >= 0) & (v[defined] <= 1)).all(), f"{col}: {s}"
    r = rep.reliability
    if len(r):
        assert (r["n"] >= 0).all()
        assert ((r["ci_lower"] <= r["observed_rate"] + 1e-12) | r["observed_rate"].isna()).all()


def test_fit_sbg_rejects_missing_counts_with_a_message():
    """A NaN among the survivor counts is not a count: say so instead of fitting NaN parameters."""
    with pytest.raises(ParameterError, match="alive must list"):
        fk.fit_sbg([100, np.nan, 50])


# ------------------------------------------------------------------ findings (FUZZ_FINDINGS.md F9-F12)
def test_finding_f9_sbg_cohort_that_all_churned_at_the_first_renewal():
    """The likelihood has no maximum inside (alpha -> infinity): the search stops at the bound, finite."""
    m = fk.fit_sbg([10, 0])
    _check_sbg(m)
    assert m.survival(1) < 1e-4  # everyone gone after one period, as observed
    assert m.expected_lifetime == pytest.approx(1.0, abs=1e-3)


def test_finding_f10_sbg_rejects_missing_or_infinite_durations_with_a_message():
    with pytest.raises(ParameterError, match="whole numbers of periods"):
        fk.fit_sbg(durations=[3, np.inf], churned=[True, False])
    with pytest.raises(ParameterError, match="whole numbers of periods"):
        fk.fit_sbg(durations=[3, np.nan], churned=[True, False])
    with pytest.raises(ParameterError, match="alive must list"):
        fk.fit_sbg([100, np.inf, 50])


def test_finding_f11_sbg_huge_durations_fit_without_an_array_per_period():
    """A customer observed for 5e10 periods: counted per distinct duration, not per period up to it."""
    m = fk.fit_sbg(durations=[1, 2, 2, 3, 5e10], churned=[True, True, False, True, False])
    _check_sbg(m)
    same = fk.fit_sbg(durations=[1, 2, 2, 3, 4], churned=[True, True, False, True, False])
    assert np.isfinite([same.alpha_, same.beta_]).all()


def test_finding_f12_bgnbd_without_repeat_buyers_and_at_a_equal_to_one():
    """No customer bought twice: drop-out cannot be estimated (the fit stayed at its start, a = 1, where the
    expected-purchases formula divides 0 by 0). Missing values are refused too; an age of 0 is not."""
    with pytest.raises(InsufficientDataError, match="no customer bought twice"):
        fk.fit_bgnbd([0.0] * 6, [0.0] * 6, [4.0] * 6)
    # a customer first seen at the very end (age 0, no repeat) adds nothing to the likelihood: accepted
    with_new = fk.fit_bgnbd([2.0, 1, 0, 0, 0, 0], [3.0, 2, 0, 0, 0, 0], [5.0, 4, 4, 3, 2, 0])
    assert np.isfinite(list(with_new.params_.values())).all()
    assert with_new.probability_alive(np.zeros(1), np.zeros(1), np.zeros(1)).tolist() == [1.0]
    with pytest.raises(ParameterError, match="no missing or infinite"):
        fk.fit_bgnbd([1.0, np.nan, 0, 0, 0], [1.0, 0, 0, 0, 0], [2.0] * 5)
    # the formula at a = 1 is the limit of its values on both sides
    x, t_x, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 3.0, 9.0]), np.array([10.0, 10.0, 10.0])
    values = {}
    for a in (1 - 1e-4, 1.0, 1 + 1e-4):
        m = BetaGeometricNBD()
        m.r_, m.alpha_, m.a_, m.b_ = 0.8, 4.0, a, 2.5
        values[a] = m.expected_purchases(4.0, x, t_x, T)
    assert np.isfinite(values[1.0]).all()
    np.testing.assert_allclose(values[1.0], (values[1 - 1e-4] + values[1 + 1e-4]) / 2, rtol=1e-6)
