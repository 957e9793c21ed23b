"""The per-owner hygiene scorecard: a few numbers with the playbook's traffic lights.

Seven numbers per owner (domain section 6: 5 to 7 key indicators, sober
green / orange / red lights, each leading to a list of actions - the
:func:`~forecastkit.hygiene.review` rows of that owner):

========================== ============================================================ ==========================
kpi                        value                                                        drill-down (review problem)
========================== ============================================================ ==========================
open_deals                 open deals (no light)                                        -
next_step_coverage         share of open deals with a dated next step not overdue        no/undated/overdue_next_step
within_age_cap             share of open deals within the age cap of their stage        stale_*
mandatory_fields_complete  share of deals past a milestone with every mandatory field   missing_fields
wip_load                   active deals / WIP limit (lower is better)                   over_wip_limit
cadence_compliance         cadence steps on time / steps due                            cadence_missed
data_completeness          filled contact fields of the owner's accounts                contact_data
========================== ============================================================ ==========================

Lights come from ``playbook.traffic_lights`` (``next_step_coverage``,
``within_age_cap``, ``mandatory_fields_complete``, ``wip_load``...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import _spells_and_last
from forecastkit.hygiene._deals import open_deal_frame, select
from forecastkit.hygiene.aging import _aging
from forecastkit.hygiene.cadence import _by_owner as _cadence_by_owner
from forecastkit.hygiene.cadence import _steps
from forecastkit.hygiene.completeness import completeness
from forecastkit.hygiene.fields import _check_fields, _missing_long, _next_steps
from forecastkit.playbook import Playbook

__all__ = ["scorecard", "KPIS"]

#: kpi -> label, in display order.
KPIS: dict[str, str] = {
    "open_deals": "Open deals",
    "next_step_coverage": "Dated next step",
    "within_age_cap": "Within age cap",
    "mandatory_fields_complete": "Mandatory fields",
    "wip_load": "WIP load",
    "cadence_compliance": "Cadence on time",
    "data_completeness": "Contact data",
}

#: Traffic-light rules used only for the KPIs the playbook does not define (to move into the playbook defaults).


def _lights(pb: Playbook) -> Playbook:
    merged: Mapping[str, Mapping[str, Any]] = pb.traffic_lights
    return replace(pb, traffic_lights=merged)


def scorecard(
    crm: CRM,
    owner: str | Iterable[str] | None = None,
    *,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Seven hygiene numbers per owner, each with its traffic light.

    Parameters
    ----------
    crm : CRM
        The snapshot (as of ``crm.as_of_date``). Cadence needs ``activities``
        and contact data needs ``contacts``; without them those KPIs are NaN
        with a ``grey`` light.
    owner, team : str or list of str, optional
        Keep only these owners / teams (owners of open deals).

    Returns
    -------
    DataFrame
        Long table, one row per (owner, kpi), owners sorted by name and KPIs in
        :data:`KPIS` order: ``owner, team, kpi, label, value`` (float),
        ``light`` (``green`` / ``orange`` / ``red``; ``grey`` when the KPI has
        no rule or no value).
    """
    spells, last = _spells_and_last(crm)
    d = select(open_deal_frame(crm, spells, last), owner, team).reset_index(drop=True)
    return _scorecard(crm, d, spells)


def _scorecard(crm: CRM, d: pd.DataFrame, spells: pd.DataFrame) -> pd.DataFrame:
    pb = crm.playbook
    owners = pd.Index(sorted(d["owner"].dropna().unique()), name="owner")
    per = pd.DataFrame(index=owners)
    by = d.groupby("owner", sort=False)
    per["open_deals"] = by.size().reindex(owners).astype("float64")
    n_bad = _next_steps(d, crm.as_of_date).groupby("owner").size()
    per["next_step_coverage"] = 1 - n_bad.reindex(owners).fillna(0) / per["open_deals"]
    n_stale = _aging(d, pb).groupby("owner").size()
    known = d[d["stage_order"].notna()].groupby("owner").size().reindex(owners)
    per["within_age_cap"] = 1 - n_stale.reindex(owners).fillna(0) / known
    _check_fields(crm)
    names = pb.stage_names
    due_any = np.zeros(len(d), dtype=bool)
    for from_stage in pb.mandatory_fields.values():
        due_any |= d["stage_order"].to_numpy() >= names.index(from_stage)
    n_due = pd.Series(due_any).groupby(d["owner"].to_numpy()).sum().reindex(owners)
    miss = _missing_long(d, pb)
    n_miss = miss.drop_duplicates("opportunity_id").groupby("owner").size().reindex(owners).fillna(0)
    per["mandatory_fields_complete"] = 1 - n_miss / n_due.where(n_due > 0)
    active = d[(d["stage_order"] >= 1).to_numpy()].groupby("owner").size().reindex(owners).fillna(0)
    per["wip_load"] = active / pb.wip_limit
    per["cadence_compliance"] = np.nan
    if crm.has("activities"):
        steps = _steps(crm, spells)
        cb = _cadence_by_owner(steps).set_index("owner")["compliance_rate"]
        per["cadence_compliance"] = cb.reindex(owners).to_numpy(dtype="float64")
    per["data_completeness"] = np.nan
    if crm.has("contacts"):
        cb = completeness(crm).by_owner.set_index("owner")["completeness"]
        per["data_completeness"] = cb.reindex(owners).to_numpy(dtype="float64")
    team = by["team"].first().reindex(owners)
    long = per.reset_index().melt(id_vars="owner", var_name="kpi", value_name="value")
    long["team"] = long["owner"].map(team)
    long["label"] = long["kpi"].map(KPIS)
    lp = _lights(pb)
    long["light"] = [lp.traffic_light(k, v) for k, v in zip(long["kpi"], long["value"], strict=True)]
    long["_k"] = long["kpi"].map({k: i for i, k in enumerate(KPIS)})
    long = long.sort_values(["owner", "_k"], kind="stable")
    out = long[["owner", "team", "kpi", "label", "value", "light"]].reset_index(drop=True)
    for c in ("owner", "team", "kpi", "label", "light"):
        out[c] = out[c].astype("string")
    out["value"] = out["value"].astype("float64")
    return out
