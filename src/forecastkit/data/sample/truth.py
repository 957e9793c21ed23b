"""The ground truth of a sample company: known effects, latent outcomes and exact probabilities."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .model import outcome_prior, posterior_win, sigmoid
from .scenarios import DRIVERS, SimParams

__all__ = ["GroundTruth", "driver_design"]


def driver_design(opportunities: pd.DataFrame) -> pd.DataFrame:
    """Map CRM opportunity columns to the 0/1 driver indicators of :attr:`GroundTruth.driver_effects`.

    Column ``"<driver>=<level>"`` per row of the driver table, using exactly the rule in its
    ``crm_rule`` column: ``source``/``segment``/``product`` equal to the level; ``champion``,
    ``decision_maker``, ``budget``, ``metrics``, ``pain`` not empty (these are filled on entering
    ``qualification`` and never change, so they are exact for deals that reached qualification);
    ``competitor`` not empty; ``discount >= 0.15``.

    Parameters
    ----------
    opportunities : DataFrame
        Canonical opportunities (any subset of rows).

    Returns
    -------
    DataFrame of float indicators, same index.
    """
    out = {}
    for drv, level, _, col, _rule in DRIVERS:
        v = opportunities[col]
        if drv in ("source", "segment", "product"):
            x = v.astype("string") == level
        elif drv == "discount":
            x = v.astype(float) >= 0.15 - 1e-9
        else:
            x = v.notna() & (v.astype("string").str.len() > 0 if v.dtype == "string" else v.notna())
        out[f"{drv}={level}"] = x.fillna(False).to_numpy(float)
    return pd.DataFrame(out, index=opportunities.index)


@dataclass
class GroundTruth:
    """What the generator knows and an analysis should recover.

    Attributes
    ----------
    driver_effects : DataFrame
        ``driver, level, true_odds_ratio, is_null, crm_column, crm_rule``: the true odds
        ratio of winning for the level against the reference (source=inbound,
        segment=smb, product=core, binary drivers absent). Log-linear in the logit, so
        the same odds ratio holds among deals that reached any stage (conditional on the
        other drivers and the rep). Use :func:`driver_design` to build the indicators.
    rep_skill : dict
        owner -> logit shift on P(win) of the deals they created.
    rep_bias : dict
        owner -> multiplicative forecast bias: each weekly commit call equals
        ``won_to_date + bias * (final_quarter_bookings - won_to_date) * noise`` (noise mean 1);
        it also raises the share of deals the rep puts in commit/best case. (These calls see
        the quarter's final bookings; calls built only from what the rep knew on the Friday
        are on branch ``forecast`` and wait for the diagnosis thresholds to be re-validated.)
    weak_rep, weak_stage : str
        The rep who loses, while in ``weak_stage``, an extra ``weak_extra`` share of the
        deals that would have moved past it (won or lost later): that transition's
        conversion is ``1 - weak_extra`` times a peer's; the other transitions are unchanged.
    weak_extra : float
    stage_win_probability : DataFrame
        ``stage, segment, p_win``: true population P(win | reached stage) (segment
        ``"all"`` and per segment), computed exactly per deal of a 200,000-deal internal
        population draw of the model (not the sample's realised outcomes).
    stale_deals : DataFrame
        ``opportunity_id, owner, stage, days_in_stage, age_cap_days`` for deals open at
        ``as_of`` whose calendar days in stage ``(as_of - day entered)`` exceed the cap.
    missing_fields : DataFrame
        ``opportunity_id, owner, stage, field`` mandatory fields empty at ``as_of`` on open
        deals at or past the stage from which the playbook makes them mandatory.
    undated_next_steps, overdue_next_steps : DataFrame
        ``opportunity_id, owner, stage, next_step_date``: open deals at ``as_of`` whose
        current next step has no date / a date before ``as_of``.
    skipped_cadence_steps : DataFrame
        ``opportunity_id, cadence_step, outcome`` (on_time / late / missed) for every
        cadence step due before ``as_of`` while the lead was still in the first stage.
        ``missed`` steps have no activity row or a row without ``done_at``.
    stopped_customers : DataFrame
        ``account_id, stopped_at, usual_cycle_days``: repeat buyers that stopped ordering.
    subscription_churn : DataFrame
        ``account_id, monthly_churn_probability, churned_month``.
    true_median_cycle_days : float
        Median creation-to-close days of all sample deals from the latent timeline
        (including closes after ``as_of``).
    hidden : DataFrame
        Per deal: ``opportunity_id, creator, will_win, loss_stage, logit, neglected,
        entry_stage, closes_at`` (latent, for oracle use only).
    """

    driver_effects: pd.DataFrame
    rep_skill: dict[str, float]
    rep_bias: dict[str, float]
    weak_rep: str
    weak_stage: str
    weak_extra: float
    stage_win_probability: pd.DataFrame
    stale_deals: pd.DataFrame
    missing_fields: pd.DataFrame
    undated_next_steps: pd.DataFrame
    overdue_next_steps: pd.DataFrame
    skipped_cadence_steps: pd.DataFrame
    stopped_customers: pd.DataFrame
    subscription_churn: pd.DataFrame
    true_median_cycle_days: float
    hidden: pd.DataFrame
    params: SimParams
    _lat: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ oracle
    def _state(self, opportunity_ids: Any, at: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        lat = self._lat
        ids = pd.Index(lat["ids"])
        idx = ids.get_indexer(pd.Index(np.asarray(opportunity_ids, dtype=object)))
        if (idx < 0).any():
            raise KeyError("unknown opportunity_id(s)")
        t = (pd.Timestamp(at) - lat["start"]) / pd.Timedelta(days=1)
        enter = lat["enter"][idx]
        created = enter[np.arange(len(idx)), lat["entry"][idx]]
        close = lat["close"][idx]
        with np.errstate(invalid="ignore"):
            stage = (np.nan_to_num(enter, nan=np.inf) <= t).sum(axis=1) - 1 + lat["entry"][idx]
        stage = np.clip(stage, 0, enter.shape[1] - 1)
        return idx, np.full(len(idx), t), stage, np.c_[created, close]

    def p_win(self, opportunity_ids: Any, at: Any) -> np.ndarray:
        """True P(eventually won) of each deal given its latent propensity, stage and age in stage at ``at``.

        Parameters
        ----------
        opportunity_ids : array-like of str
        at : date-like
            Deals not yet created at ``at`` get NaN; deals already closed get 1 (won) or 0.

        Returns
        -------
        ndarray of float
        """
        lat = self._lat
        idx, t, stage, cc = self._state(opportunity_ids, at)
        age = np.maximum(t - lat["enter"][idx, stage], 0.0)
        p = posterior_win(lat["pi"][idx], stage, np.nan_to_num(age), lat["scale"][idx], lat["neglect"][idx],
                          self.params)
        p = np.where(cc[:, 1] <= t, lat["will_win"][idx].astype(float), p)
        return np.where(cc[:, 0] > t, np.nan, p)

    def p_win_by(self, opportunity_ids: Any, at: Any, by: Any, n_sims: int = 2000) -> np.ndarray:
        """True P(won on or before ``by``) of each deal open at ``at`` (Monte Carlo, fixed seed, deterministic).

        The winning path continues the current stage (gamma dwell conditioned on the age
        already spent) then passes the later stages; ``by`` is inclusive (end of that day).
        """
        lat = self._lat
        idx, t, stage, cc = self._state(opportunity_ids, at)
        tb = (pd.Timestamp(by).normalize() + pd.Timedelta(days=1) - lat["start"]) / pd.Timedelta(days=1)
        pw = self.p_win(opportunity_ids, at)
        out = np.full(len(idx), np.nan)
        rng = np.random.default_rng(12345)
        k = self.params.dwell_shape
        n_st = lat["scale"].shape[1]
        chunk = max(1, 2_000_000 // n_sims)
        for a in range(0, len(idx), chunk):
            sl = slice(a, a + chunk)
            i, s = idx[sl], stage[sl]
            sc = lat["scale"][i]
            age = np.maximum(t[sl] - lat["enter"][i, s], 0.0)
            age = np.nan_to_num(age)
            sc_s = sc[np.arange(len(i)), s]
            f0 = stats.gamma.cdf(age, k, scale=sc_s)
            u = f0[:, None] + rng.random((len(i), n_sims)) * (1 - f0)[:, None]
            rem = stats.gamma.ppf(np.clip(u, 0, 1 - 1e-12), k, scale=sc_s[:, None]) - age[:, None]
            total = t[sl][:, None] + rem  # now + remaining time in the current stage
            for j in range(1, n_st):
                later = (s + j) < n_st
                add = rng.gamma(k, 1.0, (len(i), n_sims)) * sc[np.arange(len(i)), np.minimum(s + j, n_st - 1)][:, None]
                total = total + np.where(later[:, None], add, 0.0)
            out[sl] = (total < tb).mean(axis=1)
        res = pw * out
        closed = cc[:, 1] <= t[0] if len(t) else np.zeros(0, bool)
        res = np.where(closed, (lat["will_win"][idx] & (lat["close"][idx] < tb)).astype(float), res)
        return np.where(cc[:, 0] > t, np.nan, res)


def stage_win_table(
    params: SimParams, x: np.ndarray, skill: np.ndarray, weak: np.ndarray, skip: np.ndarray, segment: np.ndarray,
    base: float, r: np.ndarray, weak_stage: int, stages: tuple[str, ...], segments: tuple[str, ...],
) -> pd.DataFrame:
    """Exact population P(win | reached stage) from a population draw of deal features."""
    q = sigmoid(base + params.base_shift + x @ params.log_or + skill)
    pi = outcome_prior(q, weak, weak_stage, params.weak_extra, r)
    n_st = len(r)
    rows = []
    tail = np.cumsum(pi[:, :n_st][:, ::-1], axis=1)[:, ::-1]  # sum_{l >= s} pi_l
    keep_pop = ~skip
    for sname in ("all", *segments):
        m = np.ones(len(q), bool) if sname == "all" else segment == segments.index(sname)
        for s, st in enumerate(stages):
            # skipped (inbound created at qualification) deals never sit in stage 0; for s >= 1 a skipped
            # deal's population is identical (its stage-0 losses never became opportunities)
            el = m & (keep_pop if s == 0 else True)
            w = pi[el, n_st].sum()
            den = w + tail[el, s].sum()
            rows.append((st, sname, float(w / den)))
    return pd.DataFrame(rows, columns=["stage", "segment", "p_win"])
