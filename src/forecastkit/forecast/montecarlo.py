"""The distribution of period bookings: seeded Monte Carlo of open deals plus not-yet-created deals.

Method
------
Bookings still to come in the period are ``sum_i amount_i x B_i + N`` where

* ``B_i ~ Bernoulli(p_i)`` independently, ``p_i`` the deal's probability of being won
  inside the period (``p_win x p_in_period``);
* ``N`` is the bookings of deals **not created yet** that will be created and won
  inside the period: a compound Poisson variable. From each of the last
  ``n_periods`` completed periods, the deals created after the same point of the
  period (same days elapsed) and won before its end are counted; the number of such
  deals is ``Poisson(mean count)`` and each amount is drawn from the pooled amounts
  of those deals (bootstrap). Its mean is the average of those periods' sums (a
  run-rate).

The sum is simulated (**seeded Monte Carlo**, ``n_sims`` draws, the same seed gives
the same numbers; quantiles are the empirical ones). It is not an exact
Poisson-binomial convolution: amounts differ from deal to deal and the new-deal
term is compound, which Monte Carlo handles exactly up to sampling error (with
10,000 draws the P10/P90 move by about 1% of their spread between seeds). For very
large pipelines, the ``exact_limit`` deals with the largest variance
``amount^2 p (1 - p)`` are simulated and the sum of the others - many small
independent terms - is drawn from the normal distribution with their exact mean
and variance (central limit theorem), clipped at zero.

Per group (``groups=``, e.g. one group per owner): the Bernoulli draws are made in the
deals' own order, so a grouped and an ungrouped run with one seed use the same draws
and the groups' sums add up to the ungrouped total (exactly for whole-number amounts,
else up to float rounding); the normal remainder is drawn per group (one normal per
group, each clipped at zero) and the new-deal term per group (a share of the rate
proportional to the group's share of the pool: the sum of independent compound Poisson
terms with the same total rate and pool). :func:`~forecastkit.forecast.forecast.forecast`
simulates once per owner and sums the owners for the company total.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit._text import text_is
from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.periods import Period

__all__ = ["NewDeals", "new_deal_run_rate", "simulate_bookings", "summarise", "QUANTILES"]

#: The quantiles reported (P10, P50, P90).
QUANTILES = (0.10, 0.50, 0.90)
_CHUNK = 250_000  # Bernoulli draws per chunk (~2 MB: cache-sized blocks are faster to sum than 32 MB ones)


@dataclass(frozen=True)
class NewDeals:
    """The not-yet-created deals term: ``Poisson(rate)`` deals with amounts drawn from ``amounts``.

    Attributes
    ----------
    rate : float
        Expected number of deals created and won in the rest of the period.
    amounts : ndarray
        Pooled amounts of such deals in the reference periods (bootstrap pool).
    expected : float
        Expected bookings from them (``rate x mean(amounts)``).
    periods : tuple of str
        The reference periods.
    rows : ndarray or None
        Row position, in the opportunities frame used, of the deal behind each pooled
        amount (to split the term by owner or team).
    """

    rate: float
    amounts: np.ndarray
    expected: float
    periods: tuple[str, ...]
    rows: np.ndarray | None = None

    @classmethod
    def none(cls) -> NewDeals:
        """No new-deal term (e.g. for the CRM weighted pipeline)."""
        return cls(0.0, np.zeros(0), 0.0, ())


def new_deal_run_rate(crm: CRM, period: Period, *, n_periods: int = 4, deals: pd.DataFrame | None = None) -> NewDeals:
    """Run-rate of bookings from deals created and won in the rest of the period.

    For each of the ``n_periods`` periods before ``period`` that ended by the snapshot
    date, the deals created at or after ``start + elapsed`` (``elapsed`` = days of
    ``period`` already past at the end of the snapshot day) and won before the period
    end are collected.

    Parameters
    ----------
    crm : CRM
        Snapshot.
    period : Period
        The forecast period (contains the snapshot date).
    n_periods : int
        Completed periods averaged (fewer when the history is shorter; none gives zero).
    deals : DataFrame, optional
        Opportunities to use (default ``crm.opportunities``; e.g. one team's).

    Returns
    -------
    NewDeals
    """
    if n_periods < 1:
        raise ParameterError(f"n_periods must be at least 1, got {n_periods}")
    o = crm.opportunities if deals is None else deals
    elapsed = crm.as_of_date + pd.Timedelta(days=1) - period.start
    first_created = o["created_at"].min()
    won = np.flatnonzero(text_is(o["status"], "won"))  # the won deals' rows: compared once, not per period
    created, closed, amount = o["created_at"].iloc[won], o["closed_at"].iloc[won], o["amount"].to_numpy(float)[won]
    counts, amounts, labels, rows = [], [], [], []
    p = period
    for _ in range(n_periods):
        p = p.shift(-1, crm.playbook)
        if pd.isna(first_created) or p.end <= first_created:
            break
        if p.end > crm.as_of_date + pd.Timedelta(days=1) or p.start < first_created.normalize():
            continue  # not complete yet, or the CRM history starts inside it
        cut = p.start + elapsed
        sel = (created >= cut) & (closed < p.end) & (closed >= p.start)
        sel = sel.fillna(False).to_numpy(dtype=bool)
        counts.append(int(sel.sum()))
        amounts.append(amount[sel])
        rows.append(won[sel])
        labels.append(p.label)
    if not counts:
        return NewDeals.none()
    pool = np.concatenate(amounts)
    rate = float(np.mean(counts))
    expected = float(pool.sum() / len(counts))
    return NewDeals(rate, pool, expected, tuple(labels), np.concatenate(rows))


def simulate_bookings(
    amounts: np.ndarray,
    p: np.ndarray,
    new: NewDeals | None = None,
    *,
    n_sims: int = 10_000,
    seed: int = 0,
    groups: np.ndarray | None = None,
    n_groups: int = 1,
    new_groups: np.ndarray | None = None,
    exact_limit: int = 2_000,
) -> np.ndarray:
    """Simulated bookings still to come, per draw (and per group).

    Parameters
    ----------
    amounts, p : ndarray
        Amount and probability of being won in the period of each open deal.
    new : NewDeals, optional
        The not-yet-created deals term.
    n_sims : int
        Number of draws.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    groups : ndarray of int, optional
        Group code (0..n_groups-1) of each deal, to get one total per group.
    n_groups : int
        Number of groups.
    new_groups : ndarray of int, optional
        Group code of each amount in ``new.amounts`` (the new-deal term is then simulated
        per group with the group's share of the rate).
    exact_limit : int
        Deals simulated one by one (those with the largest variance); the others' sum
        (per group) is drawn from a gamma with its mean and variance.

    Returns
    -------
    ndarray
        Shape ``(n_sims,)`` without groups, ``(n_sims, n_groups)`` with groups.
    """
    a = np.asarray(amounts, dtype=float)
    q = np.clip(np.nan_to_num(np.asarray(p, dtype=float)), 0.0, 1.0)
    if a.shape != q.shape:
        raise ParameterError(f"amounts and p must have the same length, got {a.shape} and {q.shape}")
    if n_sims < 1:
        raise ParameterError(f"n_sims must be at least 1, got {n_sims}")
    rng = np.random.default_rng(seed)
    grouped = groups is not None
    g = np.zeros(len(a), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    k = n_groups if grouped else 1
    out = np.zeros((n_sims, k))
    live = (q > 0) & (a != 0)
    a, q, g = a[live], q[live], g[live]
    if len(a) > exact_limit:
        var = a * a * q * (1 - q)
        order = np.argsort(-var, kind="stable")
        rest = order[exact_limit:]
        mu = np.bincount(g[rest], weights=a[rest] * q[rest], minlength=k)
        sd = np.sqrt(np.bincount(g[rest], weights=var[rest], minlength=k))
        out += _remainder_draws(rng, mu, sd * sd, n_sims)
        keep = order[:exact_limit]
        a, q, g = a[keep], q[keep], g[keep]
    if len(a):
        # per-group sums with reduceat over the deals sorted by group; the draws are made in the
        # deals' own order, so grouped and ungrouped runs with one seed use the same draws
        order = np.argsort(g, kind="stable")
        a_s, g_s = a[order], g[order]
        starts = np.flatnonzero(np.r_[True, g_s[1:] != g_s[:-1]])
        present = g_s[starts]
        in_order = bool((order == np.arange(len(order))).all())  # (always without groups)
        step = min(n_sims, max(1, _CHUNK // len(a)))
        u, hits, vals = np.empty((step, len(a))), np.empty((step, len(a)), dtype=bool), np.empty((step, len(a)))
        for s0 in range(0, n_sims, step):
            s1 = min(n_sims, s0 + step)
            m = s1 - s0  # (a chunk's uniforms are the stream's next m x deals numbers, whatever m)
            rng.random(out=u[:m])
            np.less(u[:m], q, out=hits[:m])
            # amount where hit, else 0 (-0.0 for a negative amount: the sums and totals are the same)
            np.multiply(hits[:m] if in_order else hits[:m][:, order], a_s, out=vals[:m])
            out[s0:s1, present] += np.add.reduceat(vals[:m], starts, axis=1)
    if new is not None and new.rate > 0 and len(new.amounts):
        if grouped and new_groups is not None:
            ng = np.asarray(new_groups, dtype=np.int64)
            order = np.argsort(ng, kind="stable")
            ng_s = ng[order]
            bounds = np.searchsorted(ng_s, np.arange(k + 1))
            for j in range(k):
                pool = new.amounts[order[bounds[j] : bounds[j + 1]]]  # the group's amounts, in pool order
                if len(pool):
                    _add_compound(rng, new.rate * len(pool) / len(new.amounts), pool, out[:, j])
        elif not grouped:
            _add_compound(rng, new.rate, new.amounts, out[:, 0])
    return out if grouped else out[:, 0]


def _remainder_draws(rng: np.random.Generator, mu: np.ndarray, var: np.ndarray, n_sims: int) -> np.ndarray:
    """Draws of each group's sum of the small deals: a gamma with that sum's mean and variance.

    A gamma keeps the sum non-negative without bias; a normal clipped at zero would add
    to every group whose mean is small against its spread (many owners with a few small
    deals each: +81k on a 9.0M forecast of the 100k company, 16 standard errors). Groups
    with no spread get their mean; a negative mean (credit notes) is drawn from the normal.
    """
    out = np.broadcast_to(mu, (n_sims, len(mu))).copy()
    gam = (mu > 0) & (var > 0)
    if gam.any():
        shape, scale = mu[gam] ** 2 / var[gam], var[gam] / mu[gam]
        out[:, gam] = rng.gamma(shape[None, :], scale[None, :], (n_sims, int(gam.sum())))
    nor = (mu <= 0) & (var > 0)
    if nor.any():
        out[:, nor] += np.sqrt(var[nor])[None, :] * rng.standard_normal((n_sims, int(nor.sum())))
    return out


def _add_compound(rng: np.random.Generator, rate: float, pool: np.ndarray, out: np.ndarray) -> None:
    """Add compound Poisson draws to ``out`` (one per draw): ``Poisson(rate)`` amounts bootstrapped from ``pool``."""
    n = rng.poisson(rate, len(out))
    total = int(n.sum())
    if total == 0:
        return
    draws = pool[rng.integers(0, len(pool), total)]
    hit = np.flatnonzero(n)
    if len(hit) == total:  # at most one new deal per draw (small rates): no per-draw sums needed
        out[hit] += draws
    else:
        out += np.bincount(np.repeat(hit, n[hit]), weights=draws, minlength=len(out))


def summarise(totals: np.ndarray, offset: float = 0.0, quota: float | None = None) -> dict[str, float]:
    """Expected value, P10, P50, P90 (and P(total >= quota)) of ``offset + totals``.

    Returns
    -------
    dict
        ``expected, p10, p50, p90, std`` and ``p_reach_quota`` (NaN without a quota).
    """
    x = offset + np.asarray(totals, dtype=float)
    q10, q50, q90 = np.quantile(x, QUANTILES) if len(x) else (np.nan,) * 3
    reach = float(np.mean(x >= quota)) if quota is not None and np.isfinite(quota) and len(x) else np.nan
    return {
        "expected": float(x.mean()) if len(x) else np.nan,
        "p10": float(q10),
        "p50": float(q50),
        "p90": float(q90),
        "std": float(x.std()) if len(x) else np.nan,
        "p_reach_quota": reach,
    }
