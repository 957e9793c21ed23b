"""Unit economics, the shifted-beta-geometric and the BG/NBD models, with hand-computed answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError
from forecastkit.kpi.economics import (
    BetaGeometricNBD,
    ShiftedBetaGeometric,
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_sbg,
    nrr,
    rfm_summary,
    unit_economics,
)

# ------------------------------------------------------------------- sBG
HIGH_END = [1000, 869, 743, 653, 593, 551, 517, 491]  # Fader & Hardie (2007), years 0-7


def test_sbg_reproduces_fader_hardie_high_end() -> None:
    m = fit_sbg(HIGH_END)
    assert m.alpha_ == pytest.approx(0.668, rel=0.005)
    assert m.beta_ == pytest.approx(3.806, rel=0.005)
    assert m.n_customers_ == 1000


def test_sbg_per_customer_form_matches_counts() -> None:
    died = -np.diff(HIGH_END)
    durations = np.concatenate([np.repeat(np.arange(1, 8), died), np.full(HIGH_END[-1], 7)])
    churned = np.concatenate([np.ones(died.sum(), bool), np.zeros(HIGH_END[-1], bool)])
    m = fit_sbg(durations=durations, churned=churned)
    ref = fit_sbg(HIGH_END)
    assert m.alpha_ == pytest.approx(ref.alpha_, rel=1e-4)
    assert m.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-9)


def test_sbg_formulas_by_hand() -> None:
    m = ShiftedBetaGeometric()
    m.alpha_, m.beta_ = 1.0, 1.0  # theta ~ uniform: S(t) = B(1, 1 + t) / B(1, 1) = 1 / (1 + t)
    assert m.survival(np.array([0, 1, 3])) == pytest.approx([1.0, 1 / 2, 1 / 4])
    assert m.retention_rate(1) == pytest.approx(1 / 2)  # beta / (alpha + beta)
    assert m.retention_rate(3) == pytest.approx(3 / 4)  # (beta + 2) / (alpha + beta + 2)
    assert m.expected_lifetime == float("inf")  # alpha <= 1
    m.alpha_, m.beta_ = 3.0, 2.0
    assert m.expected_lifetime == pytest.approx((3 + 2 - 1) / (3 - 1))
    # discounted expected lifetime = sum_t S(t - 1) / (1 + d)^(t - 1), truncated far out
    d = 0.1
    t = np.arange(0, 2000)
    by_sum = float(np.sum(m.survival(t) / (1 + d) ** t))
    assert m.discounted_expected_lifetime(d) == pytest.approx(by_sum, rel=1e-6)


def test_sbg_errors() -> None:
    with pytest.raises(ParameterError, match="non-increasing counts starting with the cohort size"):
        fit_sbg([100, 120])
    with pytest.raises(InsufficientDataError, match="no customer churned"):
        fit_sbg([100, 100, 100])
    with pytest.raises(ParameterError, match="not fitted yet"):
        ShiftedBetaGeometric().survival(1)
    with pytest.raises(ParameterError, match="whole numbers of periods >= 1"):
        fit_sbg(durations=[0, 2], churned=[True, False])
    with pytest.raises(ParameterError, match="either alive counts or both durations= and churned="):
        fit_sbg()
    with pytest.raises(ParameterError, match="discount_rate=0 must be > 0"):
        fit_sbg(HIGH_END).discounted_expected_lifetime(0)


# ----------------------------------------------------------------- BG/NBD
def test_bgnbd_likelihood_by_hand() -> None:
    # r = alpha = a = b = 1: lambda ~ Exp(1), p ~ Uniform(0, 1).
    # x = 0, T = 1: L = E[exp(-lambda T)] = 1 / (1 + T) = 1/2.
    # x = 1, t_x = 1, T = 2: L = E[1 - p] E[lambda exp(-lambda T)] + E[p] E[lambda exp(-lambda t_x)]
    #                         = 1/2 x 1/(1 + 2)^2 + 1/2 x 1/(1 + 1)^2 = 1/18 + 1/8 = 13/72.
    ll = bgnbd_log_likelihood([1, 1, 1, 1], np.array([0, 1]), np.array([0, 1]), np.array([1, 2]))
    assert np.exp(ll) == pytest.approx([1 / 2, 13 / 72])
    m = BetaGeometricNBD()
    m.r_ = m.alpha_ = m.a_ = m.b_ = 1.0
    # P(alive | x=1, t_x=1, T=2) = (1/18) / (13/72) = 4/13; no repeat purchase: alive for sure
    assert m.probability_alive([1, 0], [1, 0], [2, 5]) == pytest.approx([4 / 13, 1.0])


def _simulate_bgnbd(n: int, r: float, alpha: float, a: float, b: float, T: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    t = np.zeros(n)
    x = np.zeros(n)
    t_x = np.zeros(n)
    alive = np.ones(n, bool)
    while alive.any():
        nxt = t + rng.exponential(1 / lam)
        buy = alive & (nxt < T)
        x[buy] += 1
        t_x[buy] = nxt[buy]
        t = np.where(buy, nxt, t)
        alive = buy & (rng.random(n) >= p)
    return x, t_x, np.full(n, T)


def test_bgnbd_recovers_simulated_parameters() -> None:
    x, t_x, T = _simulate_bgnbd(6000, r=0.5, alpha=5.0, a=0.8, b=2.5, T=52.0, seed=1)
    m = fit_bgnbd(x, t_x, T)
    assert m.r_ == pytest.approx(0.5, rel=0.15)
    assert m.alpha_ == pytest.approx(5.0, rel=0.2)
    assert m.a_ == pytest.approx(0.8, rel=0.3)
    assert m.b_ == pytest.approx(2.5, rel=0.35)
    # the fit is at the likelihood maximum: nudging a parameter lowers it
    best = bgnbd_log_likelihood(list(m.params_.values()), x, t_x, T).sum()
    for i in range(4):
        p = np.array(list(m.params_.values()))
        p[i] *= 1.02
        assert bgnbd_log_likelihood(p, x, t_x, T).sum() < best
    assert m.log_likelihood_ == pytest.approx(best)


def test_bgnbd_expected_purchases_matches_closed_form_limits() -> None:
    m = BetaGeometricNBD()
    m.r_, m.alpha_, m.a_, m.b_ = 0.5, 5.0, 0.8, 2.5
    assert m.expected_purchases(0.0, [2], [10], [20]) == pytest.approx([0.0])
    # x = 0: E[Y(t) | x=0, T] from eq. 10 with P(alive) = 1
    t, T = 10.0, 20.0
    r, al, a, b = 0.5, 5.0, 0.8, 2.5
    want = (
        (a + b - 1) / (a - 1) * (1 - ((al + T) / (al + T + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (al + T + t)))
    )
    assert m.expected_purchases(t, [0], [0], [T]) == pytest.approx([want])


def test_bgnbd_errors() -> None:
    with pytest.raises(InsufficientDataError, match="needs customers"):
        fit_bgnbd([1, 2], [1, 1], [2, 2])
    with pytest.raises(ParameterError, match="T >= t_x"):
        fit_bgnbd([1] * 5, [3] * 5, [2] * 5)
    with pytest.raises(ParameterError, match="not fitted yet"):
        BetaGeometricNBD().probability_alive([1], [1], [2])


def test_rfm_summary_by_hand() -> None:
    orders = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "B"],
            "ordered_at": pd.to_datetime(
                ["2026-01-01", "2026-01-01 15:00", "2026-01-15", "2026-01-08"], format="ISO8601"
            ),
        }
    )
    r = rfm_summary(orders, "2026-01-28", unit_days=7).set_index("account_id")
    # A: two order days (same-day orders count once) -> x = 1, t_x = 14 days, T = 28 days (to the end of 28 Jan)
    assert r.loc["A", ["x", "t_x", "T"]].tolist() == [1, 2, 4]
    assert r.loc["B", ["x", "t_x", "T"]].tolist() == [0, 0, 3]


# --------------------------------------------------------- unit economics
def _econ_crm(with_margin: bool = True) -> CRM:
    """Dec 2025: A 100, B 50, C 80. Jan: same. Feb: A 100, C 70, D 40 (B churned). Mar: A 120, C 60, D 40."""
    rows = [
        ("A", "2025-12-01", 100),
        ("B", "2025-12-01", 50),
        ("C", "2025-12-01", 80),
        ("A", "2026-01-01", 100),
        ("B", "2026-01-01", 50),
        ("C", "2026-01-01", 80),
        ("A", "2026-02-01", 100),
        ("C", "2026-02-01", 70),
        ("D", "2026-02-01", 40),
        ("A", "2026-03-01", 120),
        ("C", "2026-03-01", 60),
        ("D", "2026-03-01", 40),
    ]
    subs = pd.DataFrame(rows, columns=["account_id", "month", "mrr"])
    costs = pd.DataFrame({"period": ["2026-01", "2026-02", "2026-03"], "marketing": [100] * 3, "sales": [50] * 3})
    opp = pd.DataFrame(
        {
            "opportunity_id": ["X"],
            "owner": ["alice"],
            "created_at": ["2025-11-01"],
            "close_date": ["2025-11-20"],
            "amount": [1.0],
            "stage": ["won"],
            "closed_at": ["2025-11-20"],
        }
    )
    tables = {"opportunities": opp, "subscriptions": subs, "costs": costs}
    if with_margin:
        tables["orders"] = pd.DataFrame(
            {
                "order_id": ["R1", "R2"],
                "account_id": ["A", "C"],
                "ordered_at": ["2026-01-05", "2026-02-05"],
                "amount": [100.0, 300.0],
                "margin": [40.0, 160.0],
            }
        )
    return CRM.from_tables(tables, as_of="2026-03-31")


def test_nrr_by_hand() -> None:
    crm = _econ_crm()
    r = nrr(crm.subscriptions, "2025-12-01", "2026-03-01")
    # start 230 (A, B, C); A +20 expansion, C -20 contraction, B -50 churned; D is new, not counted
    assert (r["mrr_start"], r["expansion"], r["contraction"], r["churned_mrr"]) == (230, 20, 20, 50)
    assert r["nrr"] == pytest.approx(180 / 230)
    assert r["grr"] == pytest.approx(160 / 230)


def test_unit_economics_by_hand() -> None:
    u = unit_economics(_econ_crm(), "2026-Q1").iloc[0]
    assert u["acquisition_cost"] == 450 and u["new_customers"] == 1 and u["cac"] == 450
    arpu = (230 + 210 + 220) / 9  # MRR / customer-months over Jan-Mar
    assert u["arpu"] == pytest.approx(arpu)
    gm = (40 + 160) / (100 + 300)  # from order margins
    assert u["gross_margin"] == pytest.approx(gm)
    assert u["churn_rate"] == pytest.approx(1 / 3)  # B of A, B, C
    monthly = 1 - (2 / 3) ** (1 / 3)
    assert u["monthly_churn_rate"] == pytest.approx(monthly)
    assert u["ltv"] == pytest.approx(arpu * gm / monthly)
    assert u["ltv_cac"] == pytest.approx(arpu * gm / monthly / 450)
    assert u["payback_months"] == pytest.approx(450 / (arpu * gm))
    assert u["nrr"] == pytest.approx(180 / 230)


def test_unit_economics_margin_fallback_warns() -> None:
    with pytest.warns(FallbackWarning, match="LTV uses revenue"):
        u = unit_economics(_econ_crm(with_margin=False), "2026-Q1")
    assert u.loc[0, "gross_margin"] == 1.0
    u2 = unit_economics(_econ_crm(with_margin=False), "month", gross_margin=0.5)
    assert u2["period"].tolist() == ["2025-12", "2026-01", "2026-02", "2026-03"]
    # February alone: start = January (A, B, C); B churned
    feb = u2.set_index("period").loc["2026-02"]
    assert feb["churn_rate"] == pytest.approx(1 / 3) and feb["new_customers"] == 1


def test_unit_economics_errors() -> None:
    with pytest.raises(ParameterError, match="revenue='mrr': use 'auto', 'subscriptions' or 'orders'"):
        unit_economics(_econ_crm(), revenue="mrr")  # type: ignore[arg-type]
