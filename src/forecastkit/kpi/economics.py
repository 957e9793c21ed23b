"""Unit economics: CAC, LTV, LTV/CAC, payback, NRR, GRR, churn - and two customer-base models.

The simple formulas (``unit_economics``):

* CAC = (marketing + sales costs of the period) / new customers of the period;
* ARPU = monthly revenue per active customer; LTV = ARPU x gross margin x lifetime,
  lifetime = 1 / monthly churn rate (subscriptions) - in months;
* CAC payback = CAC / (ARPU x gross margin), in months;
* NRR = (MRR at start + expansion - contraction - churned MRR) / MRR at start, over
  the accounts paying at the start; GRR the same without expansion.

Beyond them, two maximum-likelihood models with published references:

* :class:`ShiftedBetaGeometric` (Fader & Hardie 2007, "How to project customer
  retention") for contractual customers: each customer renews with its own
  probability, heterogeneous across customers (beta). It explains why retention
  *rises* with tenure and gives a lifetime that 1 / churn underestimates.
* :class:`BetaGeometricNBD` (Fader, Hardie & Lee 2005, "Counting your customers the
  easy way") for repeat-order customers: the probability a customer is still
  active given its number of repeat orders, the time of its last one and its age.

No maintained library on PyPI fits both without heavy dependencies (``lifetimes``
is archived; pymc-marketing pulls in PyMC), so both are concise scipy fits,
validated against the published estimates (tests and ``benchmarks/validate_bgnbd.py``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special
from threadpoolctl import threadpool_limits

from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError
from forecastkit.kpi._common import FREQS, _safe_div
from forecastkit.periods import Freq, Period, parse_period

__all__ = [
    "unit_economics",
    "nrr",
    "ShiftedBetaGeometric",
    "fit_sbg",
    "BetaGeometricNBD",
    "fit_bgnbd",
    "bgnbd_log_likelihood",
    "rfm_summary",
]


# ====================================================================== sBG
#: Parameters (sBG and BG/NBD) are searched in [exp(-12), exp(12)]: data at the edge of a model drive
#: its maximum likelihood to infinity (a customer base that never drops out sends BG/NBD's ``a`` and ``b``
#: there; a cohort that all churned at the first renewal sends sBG's ``alpha`` there), and the bound stops
#: the search with finite parameters that describe the same behaviour (P(drop-out) ~ 0, or ~ 1).
#: The bound can also bind on extreme but valid data (sBG: a huge cohort of which a handful churn
#: once and none after, beta -> 0); the fit is then slightly less flat than the data, the price of
#: never reporting an infinite or cancelled-out likelihood.
_LOG_BOUND = 12.0


class ShiftedBetaGeometric:
    """Shifted-beta-geometric retention model (Fader & Hardie 2007).

    Each customer churns at the end of every period with its own probability
    ``theta ~ Beta(alpha, beta)``; the lifetime ``T`` (periods paid) is geometric
    given ``theta``. Then ``P(T = t) = B(alpha + 1, beta + t - 1) / B(alpha, beta)``
    and ``S(t) = P(T > t) = B(alpha, beta + t) / B(alpha, beta)``.

    Attributes
    ----------
    alpha_, beta_ : float
        Maximum-likelihood estimates (after :meth:`fit`).
    log_likelihood_ : float
    n_customers_ : int
    """

    def __init__(self) -> None:
        pass

    # ------------------------------------------------------------------ fit
    def fit(self, durations: Sequence[int] | np.ndarray, churned: Sequence[bool] | np.ndarray) -> ShiftedBetaGeometric:
        """Fit on one row per customer: periods observed and whether it churned.

        Parameters
        ----------
        durations : array of int >= 1
            Periods the customer paid (a churner's lifetime; for an active
            customer, the periods observed so far - censored).
        churned : array of bool
            True when the customer left after ``durations`` periods.
        """
        t = np.asarray(durations, dtype=float)
        c = np.asarray(churned, dtype=bool)
        if t.shape != c.shape or t.ndim != 1:
            raise ParameterError("durations and churned must be 1-d arrays of the same length")
        if len(t) == 0 or not np.isfinite(t).all() or np.any(t < 1) or np.any(t != np.round(t)):
            raise ParameterError("durations must be whole numbers of periods >= 1 (a churner pays at least one period)")
        # customers counted per distinct duration (not per period up to the longest: durations may be huge)
        ts, at = np.unique(t, return_inverse=True)
        d = np.bincount(at, weights=c.astype(float), minlength=len(ts))
        cens = np.bincount(at, weights=(~c).astype(float), minlength=len(ts))
        return self._fit_counts(d, cens, ts)

    def fit_alive(self, alive: Sequence[float] | np.ndarray) -> ShiftedBetaGeometric:
        """Fit on one cohort: ``alive[t]`` customers still active after ``t`` periods (``alive[0]`` = cohort size)."""
        n = np.asarray(alive, dtype=float)
        if (
            n.ndim != 1
            or len(n) < 2
            or not np.isfinite(n).all()
            or np.any(np.diff(n) > 0)
            or np.any(n < 0)
            or n[0] <= 0
        ):
            raise ParameterError(
                "alive must list the customers still active after 0, 1, 2... periods: at least two "
                f"non-increasing counts starting with the cohort size, got {list(n)!r}"
            )
        d = -np.diff(n)
        cens = np.zeros_like(d)
        cens[-1] = n[-1]
        return self._fit_counts(d, cens, np.arange(1, len(d) + 1, dtype=float))

    def _fit_counts(self, died: np.ndarray, censored: np.ndarray, ts: np.ndarray) -> ShiftedBetaGeometric:
        """Fit on the customers who churned after ``ts[i]`` periods (``died[i]``) and those still active then."""
        if died.sum() == 0:
            raise InsufficientDataError("no customer churned: the sBG churn distribution cannot be estimated")

        def nll(x: np.ndarray) -> float:
            a, b = np.exp(x)
            return -float(np.sum(died * _sbg_logpmf(ts, a, b)) + np.sum(censored * _sbg_logsf(ts, a, b)))

        best = None
        for x0 in ([0.0, 0.0], [-1.0, 1.0], [1.0, 2.0]):
            res = optimize.minimize(
                nll,
                np.array(x0),
                method="Nelder-Mead",
                bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 2,
                options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
            )
            if best is None or res.fun < best.fun:
                best = res
        assert best is not None
        self.alpha_, self.beta_ = (float(v) for v in np.exp(best.x))
        self.log_likelihood_ = -float(best.fun)
        self.n_customers_ = int(died.sum() + censored.sum())
        return self

    # ------------------------------------------------------------ predictions
    def _check(self) -> None:
        if not hasattr(self, "alpha_"):
            raise ParameterError("this ShiftedBetaGeometric is not fitted yet; call fit() or fit_alive() first")

    def survival(self, t: int | np.ndarray) -> np.ndarray:
        """``S(t)``: share of a new cohort still active after ``t`` periods."""
        self._check()
        return np.exp(_sbg_logsf(np.asarray(t, dtype=float), self.alpha_, self.beta_))

    def retention_rate(self, t: int | np.ndarray) -> np.ndarray:
        """``r(t) = S(t) / S(t - 1) = (beta + t - 1) / (alpha + beta + t - 1)``: renewal rate at period ``t``."""
        self._check()
        t = np.asarray(t, dtype=float)
        return (self.beta_ + t - 1) / (self.alpha_ + self.beta_ + t - 1)

    @property
    def expected_lifetime(self) -> float:
        """Mean lifetime in periods, ``(alpha + beta - 1) / (alpha - 1)`` (infinite when alpha <= 1)."""
        self._check()
        return (self.alpha_ + self.beta_ - 1) / (self.alpha_ - 1) if self.alpha_ > 1 else float("inf")

    def discounted_expected_lifetime(self, discount_rate: float) -> float:
        """DEL = sum over t >= 1 of S(t - 1) / (1 + d)^(t - 1) = 2F1(1, beta; alpha + beta; 1 / (1 + d)).

        Multiply by the margin per period to get the LTV of a new customer
        (Fader & Hardie 2010); ``discount_rate`` is per period.
        """
        self._check()
        if discount_rate <= 0:
            raise ParameterError(f"discount_rate={discount_rate!r} must be > 0 (e.g. 0.01 per month)")
        return float(special.hyp2f1(1.0, self.beta_, self.alpha_ + self.beta_, 1.0 / (1.0 + discount_rate)))

    def __repr__(self) -> str:
        if hasattr(self, "alpha_"):
            return f"ShiftedBetaGeometric(alpha_={self.alpha_:.4g}, beta_={self.beta_:.4g})"
        return "ShiftedBetaGeometric()"


def _sbg_logpmf(t: np.ndarray, a: float, b: float) -> np.ndarray:
    return special.betaln(a + 1, b + t - 1) - special.betaln(a, b)


def _sbg_logsf(t: np.ndarray, a: float, b: float) -> np.ndarray:
    return special.betaln(a, b + t) - special.betaln(a, b)


def fit_sbg(
    alive: Sequence[float] | np.ndarray | None = None,
    *,
    durations: Sequence[int] | None = None,
    churned: Sequence[bool] | None = None,
) -> ShiftedBetaGeometric:
    """Fit a :class:`ShiftedBetaGeometric` on a cohort's survivor counts, or on per-customer lifetimes.

    Examples
    --------
    Fader & Hardie's "High End" customers (survivors of 1,000 over years 0-7):

    >>> m = fit_sbg([1000, 869, 743, 653, 593, 551, 517, 491])
    >>> round(m.alpha_, 3), round(m.beta_, 3)
    (0.668, 3.806)
    """
    if alive is not None:
        return ShiftedBetaGeometric().fit_alive(alive)
    if durations is None or churned is None:
        raise ParameterError("fit_sbg needs either alive counts or both durations= and churned=")
    return ShiftedBetaGeometric().fit(durations, churned)


# ==================================================================== BG/NBD
def bgnbd_log_likelihood(params: Sequence[float], x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
    """Per-customer BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6).

    Parameters
    ----------
    params : (r, alpha, a, b)
    x : repeat purchases; t_x : time of the last purchase; T : age (same unit), from the first purchase.

    Returns
    -------
    ndarray
        ``ln L`` per customer.
    """
    r, alpha, a, b = (float(p) for p in params)
    x = np.asarray(x, dtype=float)
    t_x = np.asarray(t_x, dtype=float)
    T = np.asarray(T, dtype=float)
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b) - special.gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    has = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(has, np.log(a) - np.log(np.where(has, b + x - 1, 1.0)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


class BetaGeometricNBD:
    """BG/NBD model of repeat buying: purchases Poisson(lambda) while alive, drop-out p after each purchase.

    ``lambda ~ Gamma(r, alpha)``, ``p ~ Beta(a, b)``. Fit on ``x`` (repeat purchases),
    ``t_x`` (time of the last purchase since the first) and ``T`` (time since the
    first purchase), all in one unit (days or weeks).

    Attributes
    ----------
    r_, alpha_, a_, b_ : float
    log_likelihood_ : float
    n_customers_ : int
    """

    def __init__(self, penalizer: float = 0.0) -> None:
        self.penalizer = penalizer

    def fit(
        self, x: Sequence[float] | np.ndarray, t_x: Sequence[float] | np.ndarray, T: Sequence[float] | np.ndarray
    ) -> BetaGeometricNBD:
        """Maximum likelihood over log parameters (L-BFGS-B with the analytic gradient; a second start if the first fails)."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        if not (x.shape == t_x.shape == T.shape) or x.ndim != 1:
            raise ParameterError("x, t_x and T must be 1-d arrays of the same length")
        if len(x) < 5:
            raise InsufficientDataError(f"BG/NBD needs customers with purchase histories; got {len(x)}")
        if not (np.isfinite(x).all() and np.isfinite(t_x).all() and np.isfinite(T).all()):
            raise ParameterError("x, t_x and T must be numbers for every customer (no missing or infinite value)")
        if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > T):
            raise ParameterError("need x >= 0, t_x >= 0 and T >= t_x for every customer")
        if not np.any(x > 0):
            raise InsufficientDataError(
                "BG/NBD: no customer bought twice, so how customers drop out cannot be estimated"
            )
        # collapse identical customers: the likelihood is a sum over distinct (x, t_x, T)
        key = pd.DataFrame({"x": x, "t": t_x, "T": T}).value_counts(sort=False).reset_index(name="n")
        xs, ts, Ts, w = (key[c].to_numpy(dtype=float) for c in ("x", "t", "T", "n"))
        ux, inv = np.unique(xs, return_inverse=True)  # the gamma-function terms depend on x only
        has = xs > 0
        wsum = w.sum()
        pen = self.penalizer

        def nll(z: np.ndarray) -> tuple[float, np.ndarray]:
            """Mean negative log-likelihood and its gradient in log parameters (analytic)."""
            r, al, a, b = np.exp(z)
            g = special.gammaln
            head = (g(r + ux) - g(r) + g(a + b) + g(b + ux) - g(b) - g(a + b + ux))[inv]
            la_t, la_tx = np.log(al + Ts), np.log(al + ts)
            bx1 = np.where(has, b + xs - 1, 1.0)
            a3 = -(r + xs) * la_t
            a4 = np.where(has, np.log(a) - np.log(bx1) - (r + xs) * la_tx, -np.inf)
            tot = np.logaddexp(a3, a4)
            ll = np.sum(w * (head + tot)) + wsum * r * np.log(al)
            pi = np.exp(a4 - tot)  # weight of the "dropped out after the last purchase" branch
            q = 1.0 - pi
            d = special.digamma
            dr = (d(r + ux) - d(r))[inv] + np.log(al) - q * la_t - pi * la_tx
            dal = r / al - q * (r + xs) / (al + Ts) - pi * (r + xs) / (al + ts)
            da = (d(a + b) - d(a + b + ux))[inv] + pi / a
            db = (d(a + b) + d(b + ux) - d(b) - d(a + b + ux))[inv] - pi / bx1
            # elementwise sums, not BLAS dot products: OpenBLAS threads stall on a busy machine
            grad = np.array([np.sum(w * v) for v in (dr, dal, da, db)]) * np.array([r, al, a, b])
            p2 = np.exp(2 * z)
            return -(ll / wsum) + pen * float(p2.sum()), -(grad / wsum) + pen * 2 * p2

        best = None
        # one BLAS thread: L-BFGS-B's BLAS calls on 4-vectors gain nothing from threads, and OpenBLAS
        # threads spinning between them cost several times the fit's own CPU time (same result)
        with threadpool_limits(limits=1, user_api="blas"):
            for x0 in (np.zeros(4), np.log([0.5, np.mean(T) / 2 + 1e-9, 1.0, 2.0])):
                res = optimize.minimize(
                    nll,
                    x0,
                    jac=True,
                    method="L-BFGS-B",
                    bounds=[(-_LOG_BOUND, _LOG_BOUND)] * 4,
                    options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 5000},
                )
                if best is None or res.fun < best.fun:
                    best = res
                if res.success:  # the second start is a fallback for a failed first search
                    break
        assert best is not None
        self.r_, self.alpha_, self.a_, self.b_ = (float(v) for v in np.exp(best.x))
        self.log_likelihood_ = float(np.sum(w * bgnbd_log_likelihood(np.exp(best.x), xs, ts, Ts)))
        self.n_customers_ = int(w.sum())
        return self

    @property
    def params_(self) -> dict[str, float]:
        """``{"r", "alpha", "a", "b"}``."""
        self._check()
        return {"r": self.r_, "alpha": self.alpha_, "a": self.a_, "b": self.b_}

    def _check(self) -> None:
        if not hasattr(self, "r_"):
            raise ParameterError("this BetaGeometricNBD is not fitted yet; call fit(x, t_x, T) first")

    def probability_alive(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """P(still active | x, t_x, T) = 1 / (1 + [x > 0] a / (b + x - 1) ((alpha + T) / (alpha + t_x))^(r + x))."""
        self._check()
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        r, al, a, b = self.r_, self.alpha_, self.a_, self.b_
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_ratio = (
                np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(al + T) - np.log(al + t_x))
            )
            out = np.where(x > 0, special.expit(-log_ratio), 1.0)
        return out

    def expected_purchases(self, t: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray:
        """Expected purchases in the next ``t`` time units, given each customer's history (FHL 2005, eq. 10)."""
        self._check()
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        r, al, a, b = self.r_, self.alpha_, self.a_, self.b_

        def first(a: float) -> np.ndarray:
            hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, t / (al + T + t))
            return (a + b + x - 1) / (a - 1) * (1 - ((al + T) / (al + T + t)) ** (r + x) * hyp)

        # a = 1 is a removable singularity (0 / 0): read the formula on both sides of it
        value = first(a) if abs(a - 1) > 1e-6 else (first(1 - 1e-6) + first(1 + 1e-6)) / 2
        return value * self.probability_alive(x, t_x, T)

    def __repr__(self) -> str:
        if hasattr(self, "r_"):
            return f"BetaGeometricNBD(r_={self.r_:.4g}, alpha_={self.alpha_:.4g}, a_={self.a_:.4g}, b_={self.b_:.4g})"
        return "BetaGeometricNBD()"


def fit_bgnbd(
    x: Sequence[float] | np.ndarray,
    t_x: Sequence[float] | np.ndarray,
    T: Sequence[float] | np.ndarray,
    *,
    penalizer: float = 0.0,
) -> BetaGeometricNBD:
    """Fit a :class:`BetaGeometricNBD` (see its docstring) and return it."""
    return BetaGeometricNBD(penalizer=penalizer).fit(x, t_x, T)


def rfm_summary(orders: pd.DataFrame, as_of: object, *, unit_days: float = 7.0) -> pd.DataFrame:
    """Per account: repeat-order frequency, recency and age, the input of :class:`BetaGeometricNBD`.

    Orders on the same day count as one purchase (as in the BG/NBD papers).

    Returns
    -------
    DataFrame
        ``account_id, x`` (distinct order days - 1), ``t_x`` (first to last order),
        ``T`` (first order to the end of ``as_of``), in units of ``unit_days`` days;
        ``first_order, last_order``.
    """
    cutoff = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    o = orders[orders["ordered_at"] < cutoff]
    day = o["ordered_at"].dt.normalize()
    g = pd.DataFrame({"account_id": o["account_id"].to_numpy(), "day": day.to_numpy()}).drop_duplicates()
    agg = g.groupby("account_id", sort=True)["day"].agg(["min", "max", "size"])
    unit = pd.Timedelta(days=unit_days)
    out = pd.DataFrame(
        {
            "account_id": agg.index.to_numpy(),
            "x": (agg["size"] - 1).to_numpy(dtype=float),
            "t_x": ((agg["max"] - agg["min"]) / unit).to_numpy(dtype=float),
            "T": ((cutoff - agg["min"]) / unit).to_numpy(dtype=float),
            "first_order": agg["min"].to_numpy(),
            "last_order": agg["max"].to_numpy(),
        }
    )
    return out


# ============================================================ unit economics
def _months(p: Period) -> list[pd.Timestamp]:
    return list(pd.date_range(p.start, p.end - pd.Timedelta(days=1), freq="MS"))


def _economics_periods(crm: CRM, period: object, first: pd.Timestamp, last: pd.Timestamp) -> list[Period]:
    pb = crm.playbook
    if period is None:
        period = "quarter"
    if isinstance(period, Period):
        return [period]
    if isinstance(period, str) and period.lower() in FREQS:
        from forecastkit.periods import periods_between

        ps = periods_between(first, last, period.lower(), pb)  # type: ignore[arg-type]
        return [p for p in ps if p.start <= crm.as_of_date]
    if not isinstance(period, str):
        raise ParameterError(f"period={period!r}: give a period such as '2026-Q4' or a frequency ({', '.join(FREQS)})")
    return [parse_period(period, pb)]


def nrr(subscriptions: pd.DataFrame, start_month: object, end_month: object) -> dict[str, float]:
    """Net and gross revenue retention of the accounts paying in ``start_month``, measured in ``end_month``.

    Returns
    -------
    dict
        ``mrr_start, expansion, contraction, churned_mrr, mrr_end_retained, nrr, grr,
        customers_start, churned_customers``.
    """
    s0 = pd.Timestamp(start_month)
    s1 = pd.Timestamp(end_month)
    sub = subscriptions[subscriptions["mrr"] > 0]
    a = sub[sub["month"] == s0].groupby("account_id")["mrr"].sum()
    b = sub[sub["month"] == s1].groupby("account_id")["mrr"].sum().reindex(a.index, fill_value=0.0)
    diff = b - a
    start = float(a.sum())
    expansion = float(diff.clip(lower=0).sum())
    churned = float(a[b <= 0].sum())
    contraction = float((-diff[b > 0]).clip(lower=0).sum())
    return {
        "mrr_start": start,
        "expansion": expansion,
        "contraction": contraction,
        "churned_mrr": churned,
        "mrr_end_retained": float(b.sum()),
        "nrr": (start + expansion - contraction - churned) / start if start > 0 else np.nan,
        "grr": (start - contraction - churned) / start if start > 0 else np.nan,
        "customers_start": float(len(a)),
        "churned_customers": float((b <= 0).sum()),
    }


def unit_economics(
    crm: CRM,
    period: str | Period | Freq | None = "quarter",
    *,
    gross_margin: float | None = None,
    revenue: Literal["auto", "subscriptions", "orders"] = "auto",
) -> pd.DataFrame:
    """CAC, ARPU, churn, LTV, LTV/CAC, payback, NRR and GRR per period.

    Parameters
    ----------
    crm : CRM
        Uses ``costs`` (marketing and sales per month) and either ``subscriptions``
        (MRR per account and month) or ``orders``.
    period : period or frequency
        ``"2026-Q4"`` or ``"month"``/``"quarter"``/``"half"``/``"year"`` (every period of
        the data up to the snapshot); ``None`` means ``"quarter"``.
    gross_margin : float, optional
        Gross margin rate; default: margin / amount over all orders that have a margin,
        else 1 (revenue instead of margin, with a :class:`FallbackWarning`).
    revenue : {"auto", "subscriptions", "orders"}
        Where revenue and customers come from; ``auto`` = subscriptions when present.
        With orders, a customer is active in a month it orders in or between its
        orders, churned when it becomes *lost* (two usual ordering cycles without an
        order, see :func:`forecastkit.kpi.customers.customer_activity`), and NRR/GRR
        are not defined (NaN).

    Notes
    -----
    New customers are accounts whose first paying month (or first order) falls in
    the period. Churn is logo churn: accounts paying in the month before the
    period that pay nothing in its last month, over those paying before; the monthly
    rate is ``1 - (1 - churn) ** (1 / months)`` and LTV = ARPU x margin / monthly churn.

    Returns
    -------
    DataFrame
        ``period, months, marketing, sales, acquisition_cost, new_customers, cac,
        active_customers, arpu, gross_margin, churn_rate, monthly_churn_rate, ltv,
        ltv_cac, payback_months, mrr_start, expansion, contraction, churned_mrr, nrr, grr``.
    """
    use_subs = revenue == "subscriptions" or (revenue == "auto" and crm.has("subscriptions") and len(crm.subscriptions))
    if revenue not in ("auto", "subscriptions", "orders"):
        raise ParameterError(f"revenue={revenue!r}: use 'auto', 'subscriptions' or 'orders'")
    if use_subs:
        subs = crm.require("subscriptions", "unit_economics(revenue='subscriptions')")
        subs = subs[subs["mrr"] > 0]
        if not len(subs):
            raise InsufficientDataError("unit_economics: the subscriptions table has no month with mrr > 0")
        first, last = subs["month"].min(), subs["month"].max()
    else:
        orders = crm.require("orders", "unit_economics (without subscriptions)")
        if not len(orders):
            raise InsufficientDataError("unit_economics: the orders table is empty")
        first, last = orders["ordered_at"].min(), orders["ordered_at"].max()
    gm = gross_margin
    if gm is None:
        o = crm.orders
        o = o[o["margin"].notna() & (o["amount"] > 0)] if len(o) else o
        if len(o):
            gm = float(o["margin"].sum() / o["amount"].sum())
        else:
            warnings.warn(
                "unit_economics: no order margins and no gross_margin= given; LTV uses revenue "
                "(gross margin 100%). Pass gross_margin=0.7 for a 70% margin.",
                FallbackWarning,
                stacklevel=2,
            )
            gm = 1.0
    costs = crm.costs
    cost_month = (
        pd.to_datetime(costs["period"].astype(str) + "-01", errors="coerce")
        if len(costs)
        else pd.Series(dtype="datetime64[ns]")
    )
    periods = _economics_periods(crm, period, first, last)

    if use_subs:
        first_month = subs.groupby("account_id")["month"].min()
        monthly = subs.groupby("month").agg(mrr=("mrr", "sum"), customers=("account_id", "nunique"))
    else:
        from forecastkit.kpi.customers import customer_activity, customer_churn

        first_month = customer_activity(crm, p_alive=False).set_index("account_id")["first_order"]
    rows = []
    for p in periods:
        months = _months(p)
        k = len(months)
        in_p = (cost_month >= p.start) & (cost_month < p.end)
        mk = float(costs.loc[in_p, "marketing"].sum()) if len(costs) else 0.0
        sl = float(costs.loc[in_p, "sales"].sum()) if len(costs) else 0.0
        new = int(((first_month >= p.start) & (first_month < p.end)).sum())
        rec: dict[str, object] = {
            "period": p.label,
            "months": k,
            "marketing": mk,
            "sales": sl,
            "acquisition_cost": mk + sl,
            "new_customers": new,
        }
        if use_subs:
            m = monthly.reindex(months).fillna(0.0)
            cust_months = float(m["customers"].sum())
            rec["active_customers"] = float(m["customers"].mean())
            rec["arpu"] = float(m["mrr"].sum() / cust_months) if cust_months else np.nan
            r = nrr(subs, p.start - pd.DateOffset(months=1), months[-1])
            churn = r["churned_customers"] / r["customers_start"] if r["customers_start"] else np.nan
            rec.update({k2: r[k2] for k2 in ("mrr_start", "expansion", "contraction", "churned_mrr", "nrr", "grr")})
        else:
            end = min(p.end, crm.as_of_date + pd.Timedelta(days=1))
            o = crm.orders
            o = o[(o["ordered_at"] >= p.start) & (o["ordered_at"] < end)]
            ch = customer_churn(crm, p).iloc[0]
            active = int(ch["customers_start"] + ch["new_customers"])
            k = max((end - p.start).days / 30.4375, 1e-9)
            rec["active_customers"] = float(active)
            rec["arpu"] = float(o["amount"].sum()) / active / k if active else np.nan
            churn = float(ch["churn_rate"])
            rec.update({c: np.nan for c in ("mrr_start", "expansion", "contraction", "churned_mrr", "nrr", "grr")})
        rec["gross_margin"] = gm
        rec["churn_rate"] = churn
        monthly_churn = 1 - (1 - churn) ** (1 / k) if churn == churn else np.nan
        rec["monthly_churn_rate"] = monthly_churn
        rec["cac"] = _safe_div(mk + sl, new)
        margin_month = rec["arpu"] * gm if rec["arpu"] == rec["arpu"] else np.nan
        rec["ltv"] = (
            (margin_month / monthly_churn if monthly_churn > 0 else np.inf)
            if monthly_churn == monthly_churn
            else np.nan
        )
        rec["ltv_cac"] = _safe_div(rec["ltv"], rec["cac"]) if np.isfinite(rec["cac"]) else np.nan
        rec["payback_months"] = _safe_div(rec["cac"], margin_month)
        rows.append(rec)
    cols = [
        "period",
        "months",
        "marketing",
        "sales",
        "acquisition_cost",
        "new_customers",
        "cac",
        "active_customers",
        "arpu",
        "gross_margin",
        "churn_rate",
        "monthly_churn_rate",
        "ltv",
        "ltv_cac",
        "payback_months",
        "mrr_start",
        "expansion",
        "contraction",
        "churned_mrr",
        "nrr",
        "grr",
    ]
    out = pd.DataFrame(rows, columns=cols)
    return out
