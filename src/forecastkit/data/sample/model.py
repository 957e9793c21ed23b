"""The outcome and dwell model shared by the simulation and the ground truth.

Each deal has an outcome prior ``pi`` over six terminal outcomes: lost at
open stage 0..4 (columns 0..4) or won (column 5). A deal that is lost at stage
``l`` passes the stages before ``l`` with the normal dwell distribution and
stalls in ``l`` (dwell scale times ``loss_dwell_mult``, or ``neglect_dwell_mult``
when neglected) before being lost; won deals pass every stage normally.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from .scenarios import SimParams

__all__ = ["loss_stage_distribution", "outcome_prior", "dwell_scale", "posterior_win", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def loss_stage_distribution(params: SimParams) -> tuple[float, np.ndarray]:
    """Base win share ``Q`` and loss-stage distribution ``r`` matching ``params.stage_p``.

    With ``P(win) = Q`` and lost deals dropping out at stage ``l ~ r``,
    ``P(win | reached s) = Q / (Q + (1 - Q) R_s)`` with ``R_s = sum_{l >= s} r_l``;
    solving for ``R_s`` gives ``R_s = odds(p_0) / odds(p_s)``.

    Returns
    -------
    Q : float
    r : ndarray of shape (n_stages,)
    """
    p = np.asarray(params.stage_p, dtype=float)
    odds = p / (1 - p)
    big_r = odds[0] / odds
    r = big_r - np.append(big_r[1:], 0.0)
    return float(p[0]), r


def outcome_prior(q: np.ndarray, weak: np.ndarray, weak_stage: int, weak_extra: float, r: np.ndarray) -> np.ndarray:
    """Prior probabilities of the six terminal outcomes per deal.

    A normal deal is won with probability ``q`` and otherwise lost at stage ``l`` with
    probability ``r_l``. A deal of the weak rep is also lost in ``weak_stage`` whenever it
    would have moved past it (won, or lost at a later stage) and a ``weak_extra`` coin says
    the rep drops it there: every outcome after ``weak_stage`` is scaled by ``1 - weak_extra``
    and the mass moves to "lost at ``weak_stage``".

    So the weakness has the same practical size at every stage: the weak rep's conversion
    out of ``weak_stage`` is ``1 - weak_extra`` times a peer's with the same deals (about 40%
    -> 20% out of qualification, 67% -> 33% out of proposal at the baseline's 0.5), every
    other transition is unchanged (deals that got past the weak stage are normal deals), and
    the weak rep wins a share ``weak_extra`` fewer deals whatever the stage. Taking the
    extra losses only from would-be-won deals instead would make the conversion drop
    ``weak_extra x P(win | reached stage)``: 5 points out of qualification against 25 out of
    proposal, too small to find at an early stage, and it would leak into later transitions
    (fewer winners among the deals that get through).

    Parameters
    ----------
    q : ndarray
        P(win) from the logit (drivers + rep skill + base).
    weak : ndarray of bool
        Deal owned (created) by the weak rep.
    weak_stage : int
        Stage index where the weak rep loses an extra share of the deals that would move on.
    weak_extra : float
        That share.
    r : ndarray
        Loss-stage distribution.

    Returns
    -------
    ndarray of shape (n, n_stages + 1)
    """
    n_st = len(r)
    pi = np.empty((len(q), n_st + 1))
    pi[:, :n_st] = (1 - q)[:, None] * r[None, :]
    pi[:, n_st] = q
    later = pi[:, weak_stage + 1 :]
    extra = weak_extra * weak
    pi[:, weak_stage] += extra * later.sum(axis=1)
    pi[:, weak_stage + 1 :] = later * (1 - extra)[:, None]
    return pi


def dwell_scale(params: SimParams, segment: np.ndarray) -> np.ndarray:
    """Gamma scale (days) of the pass dwell per deal and stage, shape ``(n, n_stages)``."""
    mean = np.asarray(params.dwell_mean) * params.dwell_mult
    seg = np.asarray(params.segment_dwell)[segment]
    return seg[:, None] * mean[None, :] / params.dwell_shape


def posterior_win(
    pi: np.ndarray, stage: np.ndarray, age: np.ndarray, scale: np.ndarray, neglect: np.ndarray, params: SimParams
) -> np.ndarray:
    """P(eventually won | in open ``stage`` for ``age`` days, outcome prior ``pi``).

    Bayes with the gamma survival functions: a deal still in stage ``s`` after
    ``a`` days is either a deal that will pass ``s`` (won or lost later), with
    survival ``S_pass(a)``, or a deal that will be lost in ``s``, with survival
    ``(1 - nu) S(a; loss scale) + nu S(a; neglect scale)``.

    Parameters
    ----------
    pi : ndarray (n, n_stages + 1)
    stage : ndarray of int (n,)
    age : ndarray of float (n,)
        Days in the current stage (>= 0).
    scale : ndarray (n, n_stages)
        Pass dwell scale per deal and stage.
    neglect : ndarray (n,)
        Probability a lost deal is neglected (its owner's).
    params : SimParams

    Returns
    -------
    ndarray of float (n,)
    """
    n, n_st = scale.shape
    idx = np.arange(n)
    sc = scale[idx, stage]
    k = params.dwell_shape
    s_pass = stats.gamma.sf(age, k, scale=sc)
    s_loss = (1 - neglect) * stats.gamma.sf(age, k, scale=sc * params.loss_dwell_mult) + neglect * stats.gamma.sf(
        age, k, scale=sc * params.neglect_dwell_mult
    )
    later = np.arange(n_st)[None, :] > stage[:, None]
    pi_later = (pi[:, :n_st] * later).sum(axis=1)
    win = pi[:, n_st] * s_pass
    den = win + pi_later * s_pass + pi[idx, stage] * s_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, win / den, 0.0)
    return out
