"""A synthetic sample company with known ground truth.

``generate()`` simulates a sales organisation (reps in teams and business units,
leads per rep and month, deals moving through the playbook's five stages, close-date
pushes, amount changes, qualification fields, next steps, activities and the outreach
cadence, accounts and contacts with realistic gaps, orders, subscriptions, targets,
costs and weekly forecast calls) and returns the twelve canonical tables together with
a :class:`GroundTruth` that analyses can be checked against.

Outcome model
-------------
Each deal draws its outcome at creation: ``logit P(win) = base + sum(driver effects) +
rep skill`` (effects in :attr:`GroundTruth.driver_effects`). A lost deal drops out at a
stage drawn from a loss-stage distribution ``r`` independent of the drivers, so every
driver's odds ratio is the same among deals that reached any stage. ``base`` and ``r``
are tuned so that the population P(win | reached stage) equals the scenario's
``stage_p`` (baseline: the default CRM probabilities 0.05/0.10/0.25/0.50/0.75). One rep
(``weak_rep``) loses in ``weak_stage`` a share ``weak_extra`` of the deals that would have moved
past it (won or lost later): that transition converts ``1 - weak_extra`` times as often as a
peer's, the others are unchanged (see :func:`~.model.outcome_prior`). Dwell times
are gamma; a deal stalls in the stage where it is lost (scale x2, x5 when neglected), so a
long stay in a stage lowers P(win) - exactly as :meth:`GroundTruth.p_win` computes.

Inbound leads are often created directly in ``qualification`` (their ``to_contact``
phase happened before the CRM; such leads lost before qualification never became
deals). The snapshot is taken at the start of the ``as_of`` day: every recorded event is
strictly before ``as_of`` midnight.

Scenarios: ``baseline``, ``wide_pipeline`` (2.5x leads of lower quality, more neglect),
``slow_cycle`` (dwell x2, more close-date slips), ``optimistic`` (true stage win rates
half the CRM probabilities, reps' forecasts biased upwards), ``stage_only`` (no driver
effects, no rep skill); combine with ``+``.

Table shape: by default a company has per opportunity about 3.5 history rows, 6.7
activities and 0.65 orders. ``generate(**SCALE_SHAPE)`` (:data:`SCALE_SHAPE`: more
touches per worked deal, amount re-quotes, weekly/monthly/quarterly repeat orders) gives
about 6 / 10 / 2, the shape of the scale benchmark; the fields are documented on
:class:`SimParams` (``activity_mult``, ``amount_revisions_per_month``, ``order_cycle_days``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from forecastkit.data.schema import TABLES
from forecastkit.errors import ParameterError
from forecastkit.playbook import Playbook

from .company import (
    assign_accounts,
    build_accounts_table,
    build_contacts,
    build_costs,
    build_forecast_calls,
    build_orders,
    build_reps,
    build_subscriptions,
    build_targets,
)
from .crm_tables import DealTables, build_deal_tables
from .csv_out import write_csv
from .scenarios import DRIVERS, SCALE_SHAPE, SCENARIOS, SEGMENTS, SimParams, params_for
from .simulate import Deals, Reps, playbook_stage_names, simulate_deals, simulate_reps, to_date, to_timestamp
from .truth import GroundTruth, driver_design, stage_win_table

if TYPE_CHECKING:  # pragma: no cover
    from forecastkit.data.crm import CRM

__all__ = ["generate", "Sample", "GroundTruth", "SCENARIOS", "SCALE_SHAPE", "SimParams", "driver_design", "conform"]


@dataclass
class Sample:
    """A generated company: canonical tables, ground truth, snapshot date and playbook."""

    tables: dict[str, pd.DataFrame]
    truth: GroundTruth
    as_of: pd.Timestamp
    playbook: Playbook
    scenario: str = "baseline"
    seed: int = 0

    @functools.cached_property
    def crm(self) -> CRM:
        """The tables loaded as a :class:`forecastkit.data.crm.CRM` (as of :attr:`as_of`), built once."""
        from forecastkit.data.crm import CRM

        return CRM.from_tables(self.tables, as_of=self.as_of, playbook=self.playbook)

    def save(self, path: str | Path, format: str = "csv") -> Path:
        """Write every table (``<table>.csv`` or ``.parquet``), ``crm.yaml`` and ``playbook.yaml``.

        CSV dates are ``YYYY-MM-DD`` when a column holds whole days, else
        ``YYYY-MM-DDTHH:MM:SS``; no index. Output is byte-identical for the same seed.

        Parameters
        ----------
        path : str or Path
            Folder (created if needed).
        format : {"csv", "parquet"}

        Returns
        -------
        Path
        """
        if format not in ("csv", "parquet"):
            raise ParameterError(f"format must be 'csv' or 'parquet', got {format!r}")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        for name, df in self.tables.items():
            if format == "csv":
                _write_csv(df, out / f"{name}.csv")
            else:
                df.to_parquet(out / f"{name}.parquet", index=False)
        (out / "crm.yaml").write_text(
            f"as_of: {self.as_of:%Y-%m-%d}\ncurrency: {self.playbook.currency}\n", encoding="utf-8"
        )
        self.playbook.to_yaml(out / "playbook.yaml")
        return out


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    write_csv(df, path)


def conform(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Cast ``df`` to the schema of table ``name``: exact columns in schema order and kinds."""
    table = TABLES[name]
    cols = {}
    for c in table.columns:
        v = df[c.name] if c.name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)
        if c.kind == "str":
            cols[c.name] = pd.array(np.asarray(v, dtype=object), dtype="string")
        elif c.kind == "date":
            a = np.asarray(v)
            cols[c.name] = a.astype("datetime64[ns]") if a.dtype.kind == "M" else pd.to_datetime(
                pd.Series(a, dtype=object)).to_numpy("datetime64[ns]")
        elif c.kind == "float":
            cols[c.name] = pd.to_numeric(v, errors="coerce").to_numpy(np.float64)
        else:
            cols[c.name] = pd.array(v, dtype="boolean")
    return pd.DataFrame(cols).reset_index(drop=True)


def generate(
    scenario: str = "baseline",
    seed: int = 0,
    start: str | pd.Timestamp = "2023-07-01",
    as_of: str | pd.Timestamp = "2026-11-20",
    n_reps: int = 24,
    leads_per_rep_month: float | None = None,
    playbook: Playbook | None = None,
    **overrides: Any,
) -> Sample:
    """Simulate a sample company.

    Parameters
    ----------
    scenario : str
        One of :data:`SCENARIOS`, or several joined with ``+`` (e.g. ``"wide_pipeline+optimistic"``).
    seed : int
        Random seed; the same seed gives byte-identical tables.
    start, as_of : date-like
        First day of the CRM history and the snapshot date.
    n_reps : int
        Sales reps (six per team, two business units). ~270 deals per rep over the default
        window; ``n_reps=3675`` makes about a million opportunities.
    leads_per_rep_month : float, optional
        Mean leads per rep per month (default 6.5, times the scenario's multiplier).
    playbook : Playbook, optional
        The company's playbook (five open stages); default ``Playbook()``.
    **overrides
        Any :class:`SimParams` field (e.g. ``weak_extra=0.7``, ``dwell_mult=1.5``);
        ``**SCALE_SHAPE`` for the scale benchmark's table shape (6 history rows, 10 activities,
        2 orders per opportunity).

    Returns
    -------
    Sample
    """
    params = params_for(scenario, **overrides)
    pb = playbook or Playbook()
    stages = playbook_stage_names(pb)
    start_ts = pd.Timestamp(start).normalize()
    as_of_ts = pd.Timestamp(as_of).normalize()
    if as_of_ts <= start_ts + pd.Timedelta(days=120):
        raise ParameterError("as_of must be at least four months after start")
    if n_reps < 6:
        raise ParameterError(f"n_reps must be at least 6, got {n_reps}")
    ss = np.random.SeedSequence(seed)
    g = [np.random.default_rng(s) for s in ss.spawn(12)]
    shape_rng = np.random.default_rng(ss.spawn(1)[0])  # amount re-quotes only (default: unused)
    if "weak_stage" not in params.extra:
        params = replace(params, extra={**params.extra, "weak_stage": int(g[0].integers(1, 4))})
    weak_stage = int(params.extra["weak_stage"])
    horizon = float((as_of_ts - start_ts).days)
    months = pd.date_range(start_ts, as_of_ts + pd.offsets.MonthBegin(1), freq="MS")
    mt = ((months - start_ts) / pd.Timedelta(days=1)).to_numpy(float)
    leads = params.leads_per_rep_month if leads_per_rep_month is None else float(leads_per_rep_month)

    reps = simulate_reps(g[1], n_reps, horizon, params)
    d = simulate_deals(g[2], reps, horizon, mt, params, leads)
    acc = assign_accounts(g[3], d, reps, horizon)
    contacts, acc_contact = build_contacts(g[4], acc, start_ts, horizon)
    dt = build_deal_tables(g[5], d, reps, params, pb, start_ts, horizon, acc.deal_account, acc.ids, acc.names,
                           acc_contact, shape_rng=shape_rng)
    opp = dt.opportunities
    amounts = opp["amount"].to_numpy(float)
    orders, stopped, first_won = build_orders(g[6], d, acc, reps, amounts, start_ts, horizon,
                                              opp["opportunity_id"].to_numpy(object), params.order_cycle_days)
    subs, churn = build_subscriptions(g[7], d, acc, first_won, amounts, start_ts, as_of_ts)
    targets = build_targets(d, reps, orders, amounts, start_ts, as_of_ts, pb, g[8])
    costs = build_costs(d, reps, amounts, start_ts, as_of_ts, g[9])
    calls = build_forecast_calls(g[10], d, reps, amounts, start_ts, as_of_ts, pb)
    raw = {
        "opportunities": opp, "history": dt.history, "field_history": dt.field_history,
        "activities": dt.activities, "accounts": build_accounts_table(g[11], acc, reps, start_ts),
        "contacts": contacts, "orders": orders, "targets": targets, "forecast_calls": calls, "costs": costs,
        "subscriptions": subs, "reps": build_reps(reps, start_ts),
    }
    tables = {name: conform(name, raw[name]) for name in TABLES}
    truth = _truth(d, reps, dt, params, pb, stages, start_ts, horizon, stopped, churn, weak_stage)
    return Sample(tables=tables, truth=truth, as_of=as_of_ts, playbook=pb, scenario=scenario, seed=seed)


def _truth(
    d: Deals, reps: Reps, dt: DealTables, params: SimParams, pb: Playbook, stages: tuple[str, ...],
    start_ts: pd.Timestamp, A: float, stopped: pd.DataFrame, churn: pd.DataFrame, weak_stage: int,
) -> GroundTruth:
    """Ground truth from the latent timeline (never from re-analysing the tables)."""
    n = d.n
    opp = dt.opportunities
    ids = opp["opportunity_id"].to_numpy(object)
    owner = reps.name[d.owner]
    eff = pd.DataFrame({
        "driver": [x[0] for x in DRIVERS],
        "level": [x[1] for x in DRIVERS],
        "true_odds_ratio": np.exp(params.log_or),
        "crm_column": [x[3] for x in DRIVERS],
        "crm_rule": [x[4] for x in DRIVERS],
    })
    eff.insert(3, "is_null", np.isclose(eff["true_odds_ratio"], 1.0))
    pop = d.extras["pop"]
    swp = stage_win_table(params, pop["x"], pop["skill"], pop["weak"], pop["skip"], pop["segment"], d.base, d.r,
                          weak_stage, stages, SEGMENTS)
    # state at as_of
    open_ = d.close >= A
    with np.errstate(invalid="ignore"):
        st = (np.nan_to_num(d.enter, nan=np.inf) < A).sum(axis=1) - 1 + d.entry
    st = np.clip(st, 0, 4)
    entered = d.enter[np.arange(n), st]
    days = A - np.floor(entered)
    caps = np.array([s.age_cap_days for s in pb.stages], dtype=float)[st]
    stale = open_ & (days > caps)
    stage_names = np.array(stages, dtype=object)

    def _frame(mask: np.ndarray, **cols: Any) -> pd.DataFrame:
        base = {"opportunity_id": ids[mask], "owner": owner[mask], "stage": stage_names[st[mask]]}
        base.update({k: v[mask] for k, v in cols.items()})
        return pd.DataFrame(base)

    stale_df = _frame(stale, days_in_stage=days, age_cap_days=caps)
    empty = {
        "budget": np.array([v is None for v in dt.field_state["budget"]]),
        "decision_maker": np.array([v is None for v in dt.field_state["decision_maker"]]),
        "next_step_date": np.isnan(dt.next_date_at_asof),
        "close_date": np.zeros(n, bool),
    }
    rows = []
    for fld, from_stage in pb.mandatory_fields.items():
        if fld in empty:
            e = empty[fld]
        elif fld in dt.field_state:
            e = np.array([v is None for v in dt.field_state[fld]])
        elif fld in opp.columns:
            e = opp[fld].isna().to_numpy()
        else:
            continue
        m = open_ & (st >= pb.stage_order(from_stage)) & e
        f = _frame(m)
        f["field"] = fld
        rows.append(f)
    missing = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["opportunity_id", "field"])
    missing = missing.sort_values(["opportunity_id", "field"], ignore_index=True)
    nd = dt.next_date_at_asof
    nd_ts = to_date(start_ts, nd)
    undated = _frame(open_ & np.isnan(nd), next_step_date=nd_ts)
    with np.errstate(invalid="ignore"):
        overdue = _frame(open_ & (nd < A), next_step_date=nd_ts)
    created = d.enter[np.arange(n), d.entry]
    lost_stage = np.where(d.will_win, None, stage_names[np.clip(d.loss_stage, 0, 4)])
    hidden = pd.DataFrame({
        "opportunity_id": ids, "creator": reps.name[d.rep], "will_win": d.will_win,
        "loss_stage": lost_stage, "logit": d.logit, "neglected": d.neglected,
        "entry_stage": stage_names[d.entry], "closes_at": to_timestamp(start_ts, d.close),
    })
    lat = {"ids": ids, "start": start_ts, "enter": d.enter, "entry": d.entry, "close": d.close, "pi": d.pi,
           "scale": d.scale, "neglect": reps.neglect[d.rep], "will_win": d.will_win}
    return GroundTruth(
        driver_effects=eff,
        rep_skill=dict(zip(reps.name, reps.skill.astype(float), strict=True)),
        rep_bias=dict(zip(reps.name, reps.optimism.astype(float), strict=True)),
        weak_rep=str(reps.name[reps.weak]),
        weak_stage=stages[weak_stage],
        weak_extra=params.weak_extra,
        stage_win_probability=swp,
        stale_deals=stale_df,
        missing_fields=missing,
        undated_next_steps=undated,
        overdue_next_steps=overdue,
        skipped_cadence_steps=dt.cadence_truth,
        stopped_customers=stopped,
        subscription_churn=churn,
        true_median_cycle_days=float(np.median(d.close - created)),
        hidden=hidden,
        params=params,
        _lat=lat,
    )
