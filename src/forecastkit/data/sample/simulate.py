"""Agent-based simulation of the reps and their deals (vectorised with numpy).

Times are float days since ``start`` (midnight). Events are kept only when
strictly before ``as_of`` (midnight), i.e. the snapshot is taken at the start
of the ``as_of`` day. Loops run over stages, months or push rounds, never deals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecastkit.playbook import Playbook

from .model import dwell_scale, loss_stage_distribution, outcome_prior, sigmoid
from .scenarios import DRIVERS, PRODUCTS, SEGMENTS, SOURCES, SimParams

__all__ = ["Reps", "Deals", "simulate_reps", "simulate_deals"]

_NATO = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett", "Kilo", "Lima")
_FIRST = (
    "Alice", "Bruno", "Chloe", "David", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Karim", "Lea", "Marc",
    "Nina", "Oscar", "Paula", "Quentin", "Rosa", "Samir", "Tina", "Ugo", "Vera", "Walid", "Xenia", "Yann", "Zoe",
    "Amir", "Berit", "Camille", "Dario", "Elif", "Fabio", "Hanna", "Ivan", "Julia", "Lucas", "Maya", "Noah",
)
_LAST = (
    "Martin", "Bernard", "Dubois", "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux", "Petit",
    "Garnier", "Fournier", "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller",
    "Schmidt", "Weber", "Rossi", "Ferrari", "Garcia", "Lopez", "Novak", "Jansen", "Peeters", "Costa", "Silva",
)
_SEG_AMOUNT = (8_000.0, 30_000.0, 120_000.0)
_PROD_AMOUNT = (1.0, 0.6, 0.8, 0.5)
_PROD_MIX = (0.45, 0.25, 0.15, 0.15)


def person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct 'First Last' names (a number is appended when combinations run out)."""
    combos = np.array([f"{f} {la}" for f in _FIRST for la in _LAST], dtype=object)
    perm = rng.permutation(len(combos))
    reps = int(np.ceil(n / len(combos)))
    out = np.concatenate([combos[perm] if i == 0 else combos[perm] + f" {i + 1}" for i in range(reps)])
    return out[:n]


@dataclass
class Reps:
    """Latent rep attributes (arrays indexed by rep)."""

    name: np.ndarray
    team: np.ndarray
    business_unit: np.ndarray
    manager: np.ndarray
    start: np.ndarray  # days since start (may be negative)
    end: np.ndarray  # days since start, inf = still here
    skill: np.ndarray
    optimism: np.ndarray
    rate: np.ndarray  # lead-rate multiplier (WIP habit)
    neglect: np.ndarray
    hygiene: np.ndarray
    discipline: np.ndarray
    replacement: np.ndarray  # rep index taking over open deals at ``end`` (-1 = none)
    weak: int = 0


def simulate_reps(rng: np.random.Generator, n_reps: int, horizon: float, params: SimParams) -> Reps:
    """Draw the sales force: teams of six, two business units, some joiners and leavers."""
    idx = np.arange(n_reps)
    team_i = idx // 6
    n_teams = int(team_i.max()) + 1
    team_names = np.array([f"Team {_NATO[k]}" if k < len(_NATO) else f"Team {k + 1}" for k in range(n_teams)], dtype=object)
    managers = person_names(np.random.default_rng(rng.integers(2**32)), n_teams + n_reps)
    names = managers[n_teams:]
    start = np.where(rng.random(n_reps) < 0.82, -rng.uniform(60, 1500, n_reps), rng.uniform(30, 0.6 * horizon, n_reps))
    start = np.floor(start)
    leaves = rng.random(n_reps) < 0.12
    end = np.where(leaves, np.floor(rng.uniform(0.3 * horizon, 0.95 * horizon, n_reps)), np.inf)
    end = np.where(end < start + 240, np.inf, end)
    skill = rng.normal(0, params.skill_sd, n_reps) if params.effects else np.zeros(n_reps)
    optimism = np.exp(rng.normal(np.log(params.optimism_mean), params.optimism_sd, n_reps))
    rate = np.exp(rng.normal(0, 0.2, n_reps))
    neglect = np.clip(params.neglect_mean * np.exp(rng.normal(0, 0.5, n_reps)), 0.01, 0.8)
    hygiene = np.clip(rng.beta(2, 12, n_reps) * params.hygiene_mult, 0.0, 0.8)
    discipline = rng.beta(8, 2, n_reps)
    # replacement: first teammate active at the leave date, else the first rep active then
    replacement = np.full(n_reps, -1)
    for i in np.flatnonzero(np.isfinite(end)):
        active = (start <= end[i]) & (end > end[i] + 1)
        mates = np.flatnonzero(active & (team_i == team_i[i]))
        cands = mates if len(mates) else np.flatnonzero(active)
        replacement[i] = int(cands[0]) if len(cands) else -1
    full = np.flatnonzero((start <= 0) & ~np.isfinite(end))
    weak = int(rng.choice(full)) if len(full) else 0
    return Reps(
        name=names,
        team=team_names[team_i],
        business_unit=np.array(["BU North", "BU South"], dtype=object)[team_i % 2],
        manager=managers[:n_teams][team_i],
        start=start,
        end=end,
        skill=skill,
        optimism=optimism,
        rate=rate,
        neglect=neglect,
        hygiene=hygiene,
        discipline=discipline,
        replacement=replacement,
        weak=weak,
    )


def _features(rng: np.random.Generator, rep: np.ndarray, reps: Reps, params: SimParams) -> dict[str, np.ndarray]:
    """Driver values of ``len(rep)`` deals (used for the sample and for the truth's population draw)."""
    n = len(rep)
    seg = rng.choice(3, n, p=params.segment_mix)
    src = rng.choice(5, n, p=np.asarray(params.source_mix) / np.sum(params.source_mix))
    prod = rng.choice(4, n, p=_PROD_MIX)
    h = reps.hygiene[rep]
    f = {
        "segment": seg,
        "source": src,
        "product": prod,
        "champion": rng.random(n) < 0.3 + 0.1 * (seg == 2),
        "decision_maker": rng.random(n) < 0.65 * (1 - h),
        "competitor": rng.random(n) < 0.3 + 0.1 * seg,
        "discount": np.where(rng.random(n) < 0.45, 0.0, np.round(rng.uniform(0.03, 0.3, n), 2)),
        "budget": rng.random(n) < 0.9 * (1 - h),
        "metrics": rng.random(n) < 0.4,
        "pain": rng.random(n) < 0.6,
    }
    return f


def design(f: dict[str, np.ndarray]) -> np.ndarray:
    """0/1 design matrix in :data:`DRIVERS` order from latent driver values."""
    cols = []
    for drv, level, *_ in DRIVERS:
        if drv == "source":
            cols.append(f["source"] == SOURCES.index(level))
        elif drv == "segment":
            cols.append(f["segment"] == SEGMENTS.index(level))
        elif drv == "product":
            cols.append(f["product"] == PRODUCTS.index(level))
        elif drv == "discount":
            cols.append(f["discount"] >= 0.15 - 1e-9)
        else:
            cols.append(f[drv].astype(bool))
    return np.column_stack(cols).astype(float)


def calibrate_base(
    rng: np.random.Generator, reps: Reps, weights: np.ndarray, params: SimParams
) -> tuple[float, dict[str, np.ndarray]]:
    """Intercept so that the population mean P(win) equals ``params.stage_p[0]`` (before ``base_shift``).

    Also returns the 200,000-deal population draw (design, skill, weak, skip, segment) used by the truth.
    """
    q_target, _ = loss_stage_distribution(params)
    rep = rng.choice(len(weights), 200_000, p=weights / weights.sum())
    f = _features(rng, rep, reps, params)
    xd = design(f)
    pop = {
        "x": xd, "skill": reps.skill[rep], "weak": rep == reps.weak, "segment": f["segment"],
        "skip": (f["source"] == SOURCES.index("inbound")) & (rng.random(len(rep)) < params.skip_share_inbound),
    }
    x = xd @ params.log_or + reps.skill[rep]
    lo, hi = -12.0, 6.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if sigmoid(mid + x).mean() > q_target:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi), pop


@dataclass
class Deals:
    """Latent per-deal arrays (all deals created before ``as_of``, full future timeline)."""

    n: int
    rep: np.ndarray  # creator
    owner: np.ndarray  # owner at as_of
    reassigned_at: np.ndarray  # time the owner changed (inf = never)
    f: dict[str, np.ndarray]
    x: np.ndarray
    logit: np.ndarray
    pi: np.ndarray
    weak: np.ndarray
    will_win: np.ndarray
    loss_stage: np.ndarray  # -1 for won
    last_stage: np.ndarray  # last open stage visited (4 for won)
    entry: np.ndarray
    neglected: np.ndarray
    enter: np.ndarray  # (n, 5) stage entry times, NaN when not visited
    dwell: np.ndarray  # (n, 5)
    active_end: np.ndarray  # (n, 5) end of the active (worked) part of the stage
    close: np.ndarray  # close time
    scale: np.ndarray
    amount0: np.ndarray
    base: float
    r: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)


def simulate_deals(
    rng: np.random.Generator, reps: Reps, horizon: float, months: np.ndarray, params: SimParams, leads: float
) -> Deals:
    """Leads per rep and month, their latent outcome and full stage timeline.

    Parameters
    ----------
    rng : numpy Generator
    reps : Reps
    horizon : float
        ``as_of`` in days since start.
    months : ndarray
        Month start times (days since start), with the end appended.
    params : SimParams
    leads : float
        Mean leads per rep per month.
    """
    n_reps = len(reps.skill)
    m_len = np.diff(months)
    lam = leads * params.lead_mult * reps.rate[:, None] * (m_len[None, :] / 30.44)
    counts = rng.poisson(lam)
    rep = np.repeat(np.repeat(np.arange(n_reps), counts.shape[1]), counts.ravel())
    mon = np.repeat(np.tile(np.arange(counts.shape[1]), n_reps), counts.ravel())
    created = months[mon] + rng.random(len(rep)) * m_len[mon]
    keep = (created >= reps.start[rep]) & (created < reps.end[rep]) & (created < horizon)
    rep, created = rep[keep], created[keep]
    order = np.argsort(created, kind="stable")
    rep, created = rep[order], created[order]
    n = len(rep)

    weights = np.bincount(rep, minlength=n_reps).astype(float) + 1e-9
    base, pop = calibrate_base(np.random.default_rng(rng.integers(2**32)), reps, weights, params)
    f = _features(rng, rep, reps, params)
    x = design(f)
    logit = base + params.base_shift + x @ params.log_or + reps.skill[rep]
    q = sigmoid(logit)
    _, r = loss_stage_distribution(params)
    weak_stage = int(params.extra.get("weak_stage", 2))
    weak = rep == reps.weak
    pi = outcome_prior(q, weak, weak_stage, params.weak_extra, r)
    n_st = len(r)
    # outcome: column of pi drawn by inverse cdf
    cum = np.cumsum(pi, axis=1)
    u = rng.random(n)
    outcome = (u[:, None] > cum).sum(axis=1).clip(0, n_st)
    will_win = outcome == n_st
    loss_stage = np.where(will_win, -1, outcome)
    skip = (f["source"] == SOURCES.index("inbound")) & (rng.random(n) < params.skip_share_inbound)
    drop = skip & (loss_stage == 0)
    sel = ~drop

    def _take(a: np.ndarray) -> np.ndarray:
        return a[sel]

    rep, created, x, logit, pi, weak, will_win, loss_stage, skip = map(
        _take, (rep, created, x, logit, pi, weak, will_win, loss_stage, skip)
    )
    f = {k: v[sel] for k, v in f.items()}
    n = len(rep)
    entry = skip.astype(int)
    last = np.where(will_win, n_st - 1, loss_stage)
    neglected = ~will_win & (rng.random(n) < reps.neglect[rep])
    scale = dwell_scale(params, f["segment"])
    dwell = rng.gamma(params.dwell_shape, 1.0, (n, n_st)) * scale
    st = np.arange(n_st)[None, :]
    at_loss = st == loss_stage[:, None]
    mult = np.where(neglected, params.neglect_dwell_mult, params.loss_dwell_mult)
    dwell = np.where(at_loss, dwell * mult[:, None], dwell)
    visited = (st >= entry[:, None]) & (st <= last[:, None])
    dwell = np.where(visited, dwell, np.nan)
    cum_d = np.nancumsum(np.where(visited, dwell, 0.0), axis=1)
    enter = created[:, None] + cum_d - np.where(visited, dwell, 0.0)
    enter = np.where(visited, enter, np.nan)
    close = created + cum_d[:, -1]
    # active part of each stage (neglected deals stop being worked early in their loss stage)
    frac = np.where(at_loss & neglected[:, None], rng.uniform(0.05, 0.25, (n, 1)), 1.0)
    active_end = enter + dwell * frac

    seg_amt = np.asarray(_SEG_AMOUNT)[f["segment"]] * np.asarray(_PROD_AMOUNT)[f["product"]]
    amount0 = np.maximum(np.round(np.exp(rng.normal(np.log(seg_amt), 0.6)) / 100) * 100, 500.0)

    # owner changes when the creator leaves while the deal is open
    rep_end = reps.end[rep]
    moved = (rep_end < close) & (reps.replacement[rep] >= 0)
    owner = np.where(moved & (rep_end < horizon), reps.replacement[rep], rep)
    reassigned_at = np.where(moved, rep_end, np.inf)
    return Deals(
        n=n, rep=rep, owner=owner, reassigned_at=reassigned_at, f=f, x=x, logit=logit, pi=pi, weak=weak,
        will_win=will_win, loss_stage=loss_stage, last_stage=last, entry=entry, neglected=neglected, enter=enter,
        dwell=dwell, active_end=active_end, close=close, scale=scale, amount0=amount0, base=base, r=r,
        extras={"pop": pop, "weak_stage": weak_stage},
    )


def owner_at(d: Deals, idx: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Owner (rep index) of deals ``idx`` at times ``t``."""
    return np.where(t >= d.reassigned_at[idx], d.owner[idx], d.rep[idx])


def to_timestamp(start: pd.Timestamp, t: np.ndarray) -> np.ndarray:
    """Float days since ``start`` -> datetime64[ns], floored to the second (NaN -> NaT)."""
    t = np.asarray(t, dtype=float)
    ok = np.isfinite(t)
    sec = np.where(ok, np.floor(np.where(ok, t, 0.0) * 86400.0), 0).astype(np.int64)
    out = np.datetime64(start.value, "ns") + sec.astype("timedelta64[s]").astype("timedelta64[ns]")
    out[~ok] = np.datetime64("NaT")
    return out


def to_date(start: pd.Timestamp, t: np.ndarray) -> np.ndarray:
    """Float days since ``start`` -> the calendar day (datetime64[ns] at midnight)."""
    t = np.asarray(t, dtype=float)
    return to_timestamp(start, np.floor(t))


def playbook_stage_names(pb: Playbook) -> tuple[str, ...]:
    """Open stage names, checked to be five (the simulation's stage model)."""
    names = pb.stage_names
    if len(names) != 5:
        raise ValueError("the sample generator simulates a five-stage pipeline")
    return names
