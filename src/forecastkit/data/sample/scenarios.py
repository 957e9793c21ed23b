"""Scenario parameters of the synthetic sample company.

A scenario is a set of modifications of the baseline parameters; ``"a+b"``
applies ``a`` then ``b``. Every number that drives the simulation lives in
:class:`SimParams` so that the ground truth can be computed from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from forecastkit.errors import ParameterError

__all__ = ["SCENARIOS", "SimParams", "DRIVERS", "SOURCES", "SEGMENTS", "PRODUCTS", "params_for", "SCALE_SHAPE"]

SCENARIOS = ("baseline", "wide_pipeline", "slow_cycle", "optimistic", "stage_only")

SOURCES = ("inbound", "outbound", "partner", "event", "referral")
SEGMENTS = ("smb", "mid_market", "enterprise")
PRODUCTS = ("core", "analytics", "integrations", "services")

#: (driver, level, true odds ratio, CRM column, CRM rule). Reference levels have no row:
#: source=inbound, segment=smb, product=core, and "unknown/absent/below" for the binary drivers.
DRIVERS: tuple[tuple[str, str, float, str, str], ...] = (
    ("source", "outbound", 0.8, "source", "source == 'outbound'"),
    ("source", "partner", 1.8, "source", "source == 'partner'"),
    ("source", "event", 0.7, "source", "source == 'event'"),
    ("source", "referral", 1.5, "source", "source == 'referral'"),
    ("segment", "mid_market", 0.8, "segment", "segment == 'mid_market'"),
    ("segment", "enterprise", 0.6, "segment", "segment == 'enterprise'"),
    ("champion", "known", 2.2, "champion", "champion is not empty"),
    ("decision_maker", "known", 1.6, "decision_maker", "decision_maker is not empty"),
    ("competitor", "present", 0.55, "competitor", "competitor is not empty"),
    ("discount", ">=15%", 1.0, "discount", "discount >= 0.15"),
    ("product", "analytics", 1.0, "product", "product == 'analytics'"),
    ("product", "integrations", 1.0, "product", "product == 'integrations'"),
    ("product", "services", 1.0, "product", "product == 'services'"),
    ("budget", "known", 1.0, "budget", "budget is not empty"),
    ("metrics", "known", 1.0, "metrics", "metrics is not empty"),
    ("pain", "known", 1.0, "pain", "pain is not empty"),
)


@dataclass(frozen=True)
class SimParams:
    """Every knob of the simulation (see the module docstring of ``sample``).

    Attributes
    ----------
    stage_p : tuple of float
        Target true P(win | reached stage) per open stage; sets the base rate
        and the loss-stage distribution.
    base_shift : float
        Extra log-odds added to every deal after calibration (lower-quality leads).
    lead_mult : float
        Multiplier of the lead arrival rate.
    dwell_mean : tuple of float
        Mean days a deal that passes the stage spends in it (mid-market, baseline).
    dwell_shape : float
        Gamma shape of the dwell times.
    dwell_mult : float
        Multiplier of every dwell time.
    loss_dwell_mult : float
        Dwell multiplier in the stage where a deal is lost (it stalls before being lost).
    neglect_dwell_mult : float
        Dwell multiplier in the loss stage of a neglected deal (stale, no activity).
    neglect_mean : float
        Mean probability a lost deal is neglected before being lost.
    slip_mult : float
        Multiplier of close-date push sizes; pushes happen when the date passes.
    close_date_optimism : float
        Share of the remaining expected cycle reps put in the first close date.
    optimism_mean, optimism_sd : float
        Log-normal rep forecast bias (multiplicative).
    effects : bool
        False: every driver effect and rep skill is zero (stage_only).
    skill_sd : float
        Standard deviation of rep skill (logit shift).
    source_mix : tuple of float
        Share of leads per source (SOURCES order).
    hygiene_mult : float
        Multiplier of the reps' probabilities of leaving fields empty.
    weak_extra : float
        Share of the weak rep's deals that would move past the weak stage (won or lost
        later) lost at the weak stage instead: the rep's conversion out of that stage is
        ``1 - weak_extra`` times a peer's, and the rep wins that share fewer deals.
    activity_mult : float
        Multiplier of the rate of calls, emails, visits, meetings and social touches
        logged while a deal is worked (stages after the first; the outreach cadence of
        new leads is the playbook's and does not change). Won deals keep their 1.3x
        more touches than lost ones. Default 1 (about 6.7 activities per opportunity).
    amount_revisions_per_month : float
        Re-quotes: extra amount changes per 30 days a deal is worked in the stages after
        the first (seats or scope added or removed), each multiplying the amount by
        ``exp(N(0, 0.1))`` (rounded to 100, at least 500). Each is a history row (the
        history table records every change of stage, amount, close date or category).
        Default 0 (about 3.5 history rows per opportunity: creation, stage changes,
        close, the amount changes at qualification/proposal/negotiation, close-date
        pushes and the category downgrades of neglected deals). Drawn from their own
        random stream: stages, close dates and outcomes do not change.
    order_cycle_days : tuple of float
        The usual days between two orders of a repeat customer, drawn with shares
        0.40 / 0.35 / 0.25 (default 30 / 60 / 90: monthly, bimonthly, quarterly).
        Orders are smaller when more frequent (same value per month), and
        :attr:`GroundTruth.stopped_customers` reports the cycle drawn.

    :data:`SCALE_SHAPE` sets the last three to reach about 6 history rows, 10 activities
    and 2 orders per opportunity (the shape of the scale benchmark).
    """

    stage_p: tuple[float, ...] = (0.05, 0.10, 0.25, 0.50, 0.75)
    base_shift: float = 0.0
    lead_mult: float = 1.0
    leads_per_rep_month: float = 8.0
    dwell_mean: tuple[float, ...] = (7.0, 18.0, 25.0, 20.0, 18.0)
    dwell_shape: float = 2.0
    dwell_mult: float = 1.0
    loss_dwell_mult: float = 2.0
    neglect_dwell_mult: float = 5.0
    neglect_mean: float = 0.12
    slip_mult: float = 1.0
    close_date_optimism: float = 0.8
    optimism_mean: float = 1.05
    optimism_sd: float = 0.07
    effects: bool = True
    skill_sd: float = 0.35
    source_mix: tuple[float, ...] = (0.35, 0.28, 0.12, 0.13, 0.12)
    segment_mix: tuple[float, ...] = (0.5, 0.35, 0.15)
    hygiene_mult: float = 1.0
    weak_extra: float = 0.5
    segment_dwell: tuple[float, ...] = (0.75, 1.0, 1.5)
    skip_share_inbound: float = 0.5
    activity_mult: float = 1.0
    amount_revisions_per_month: float = 0.0
    order_cycle_days: tuple[float, ...] = (30.0, 60.0, 90.0)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log_or(self) -> np.ndarray:
        """True log odds ratios in DRIVERS order (zeros when effects are off)."""
        if not self.effects:
            return np.zeros(len(DRIVERS))
        return np.log(np.array([d[2] for d in DRIVERS]))


_MODS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "wide_pipeline": {
        "lead_mult": 2.5,
        "base_shift": float(np.log(0.35)),
        "neglect_mean": 0.35,
        "source_mix": (0.2, 0.45, 0.05, 0.25, 0.05),
        "hygiene_mult": 1.5,
    },
    "slow_cycle": {"dwell_mult": 2.0, "slip_mult": 1.6, "close_date_optimism": 0.55},
    "optimistic": {
        "stage_p": (0.025, 0.05, 0.125, 0.25, 0.375),
        "optimism_mean": 1.45,
        "optimism_sd": 0.12,
        "close_date_optimism": 0.6,
    },
    "stage_only": {"effects": False},
}


def params_for(scenario: str, **overrides: Any) -> SimParams:
    """Parameters of ``scenario`` (``"a+b"`` combines), then ``overrides``.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS` or several joined with ``+``.
    **overrides
        Any :class:`SimParams` field.

    Returns
    -------
    SimParams
    """
    p = SimParams()
    for name in str(scenario).split("+"):
        name = name.strip()
        if name not in _MODS:
            raise ParameterError(f"unknown scenario {name!r}; allowed: {', '.join(SCENARIOS)} (combine with '+')")
        p = replace(p, **_MODS[name])
    known = {f.name for f in fields(SimParams)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ParameterError(f"unknown sample parameter(s) {bad}; allowed: {', '.join(sorted(known))}")
    p = replace(p, **overrides)
    _check_shape(p)
    return p


def _number(name: str, value: Any, low: float) -> float:
    """``value`` as a finite float ``>= low``, else a ParameterError naming the parameter."""
    try:
        v = float(value) if not isinstance(value, (bool, str)) else float("nan")
    except (TypeError, ValueError):
        v = float("nan")
    if not np.isfinite(v) or v < low:
        raise ParameterError(f"{name} must be a finite number >= {low:g}, got {value!r}")
    return v


def _check_shape(p: SimParams) -> None:
    """Check the table-shape parameters (activity rate, amount revisions, order cycles)."""
    _number("activity_mult", p.activity_mult, 0.0)
    _number("amount_revisions_per_month", p.amount_revisions_per_month, 0.0)
    cyc = p.order_cycle_days
    if isinstance(cyc, (str, bytes)) or not hasattr(cyc, "__len__") or len(cyc) != 3:
        raise ParameterError(f"order_cycle_days must be three numbers of days (>= 1), got {cyc!r}")
    for c in cyc:
        _number("order_cycle_days", c, 1.0)


#: Overrides of :func:`~forecastkit.data.sample.generate` that give the table shape of the scale
#: benchmark (issue 10: per opportunity about 6 history rows, 10 activities and 2 orders) instead of
#: the default ~3.5 / 6.7 / 0.65: about 2.1x the touches per worked deal (0.2-0.4 a day, two or three
#: a week), a quote update (line item added, removed or re-priced) about weekly while a deal is worked,
#: and weekly / monthly / quarterly repeat orders. Opportunities' stages, outcomes and close dates are
#: the same as with the defaults for the same seed (amounts differ by the re-quotes).
SCALE_SHAPE: dict[str, Any] = {
    "activity_mult": 2.12,
    "amount_revisions_per_month": 3.3,
    "order_cycle_days": (7.0, 30.0, 90.0),
}
