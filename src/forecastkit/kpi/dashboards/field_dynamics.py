"""Dashboard: field dynamics (visit reports, orders per visit, action-plan progress, qualified leads)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.hygiene._deals import isin, obj
from forecastkit.kpi.dashboards._base import _Ctx, _TileSpec
from forecastkit.playbook import WON


# ----------------------------------------------------- 4. field dynamics
def _has_report(a: pd.DataFrame) -> pd.Series:
    from forecastkit.data.schema import REPORT_BOXES

    has = a["report"].notna() & (a["report"].astype(str).str.strip() != "")
    for b in REPORT_BOXES:
        if b in a:
            has |= a[b].fillna(False).astype(bool)
    return has


def _field_dynamics(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    a = crm.activities
    v = a[(a["type"] == "visit") & a["done_at"].notna()]
    has_report = _has_report(v)
    rep = has_report.astype(float)
    vf = c.flow(v, v["done_at"], {"visits": pd.Series(1.0, index=v.index), "reports": rep}, "activities")
    o = crm.orders
    of = c.flow(o, o["ordered_at"], {"orders": pd.Series(1.0, index=o.index)}, "orders")
    vo = vf.join(of, how="outer").fillna(0.0)
    in_p = c.in_period(v["done_at"])
    no_rep = v[in_p & ~has_report.to_numpy(dtype=bool)].sort_values("done_at")
    no_rep = no_rep[["activity_id", "account_id", "opportunity_id", "owner", "done_at"]]
    vp = v[in_p]
    last_order = o.groupby("account_id")["ordered_at"].max() if len(o) else pd.Series(dtype="datetime64[ns]")
    no_ord = vp[~(vp["account_id"].map(last_order) >= vp["done_at"])].sort_values("done_at")
    no_ord = no_ord[["activity_id", "account_id", "owner", "done_at"]]
    due = a[(a["due_at"] < c.cut)]
    done_on = due["done_at"].notna().astype(float)
    ap = c.flow(due, due["due_at"], {"due": pd.Series(1.0, index=due.index), "done": done_on}, "activities")
    todo = due[c.in_period(due["due_at"]) & due["done_at"].isna()]
    todo = todo.sort_values("due_at")[["activity_id", "type", "account_id", "opportunity_id", "owner", "due_at"]]
    ql = _qualified_leads(c)
    qf = c.flow(ql, ql["qualified_at"], {"n": pd.Series(1.0, index=ql.index)}, "opportunities")
    ql_p = ql[c.in_period(ql["qualified_at"])]
    ql_p = ql_p.sort_values("qualified_at")[
        ["opportunity_id", "name", "owner", "stage", "status", "amount", "qualified_at", "next_step_date"]
    ]
    specs = [
        dict(
            key="visit_reports",
            label="Visit reports",
            unit="count",
            flow=(vf, "reports"),
            status_ratio=(vf, "reports", "visits"),
            kpi="visit_report_rate",
            drill=(no_rep, "activities"),
            action="Write the report of these visits (five boxes)",
        ),
        dict(
            key="visit_to_order",
            label="Orders per visit",
            unit="ratio",
            ratio=(vo, "orders", "visits"),
            kpi="visit_to_order",
            drill=(no_ord, "activities"),
            action="Visited, no order since: follow up",
        ),
        dict(
            key="action_plan_progress",
            label="Action-plan progress",
            unit="ratio",
            ratio=(ap, "done", "due"),
            kpi="action_plan_progress",
            drill=(todo, "activities"),
            action="Planned actions not done yet",
        ),
        dict(
            key="qualified_leads",
            label="Qualified leads",
            unit="count",
            flow=(qf, "n"),
            kpi="qualified_lead_trend",
            trend=True,
            drill=(ql_p, "opportunities"),
            action="Make sure each has a dated next step",
        ),
    ]
    members = set(vf.index.get_level_values(0)) | set(ap.index.get_level_values(0)) | set(qf.index.get_level_values(0))
    return specs, members


def _qualified_leads(c: _Ctx) -> pd.DataFrame:
    """Deals with the date they first reached the second stage or later (from history, else creation)."""
    crm = c.crm
    names = c.pb.stage_names
    q_stages = set(names[1:]) | {WON}
    h = crm.history
    o = crm.opportunities
    # deals as integer codes (no grouping on text ids): each history row's deal, each opportunity's deal
    oid = obj(o["opportunity_id"])
    ids = pd.Index(pd.unique(oid[~pd.isna(oid)]))
    deal = ids.get_indexer(obj(h["opportunity_id"]))
    of_row = ids.get_indexer(oid)
    big, nat = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    changed = h["changed_at"].to_numpy("datetime64[ns]").view(np.int64)
    ok = isin(h["stage"], q_stages) & (deal >= 0) & (changed != nat)
    first = np.full(len(ids) + 1, big, dtype=np.int64)  # the extra slot: deals without an id
    np.minimum.at(first, deal[ok], changed[ok])
    first = first[of_row]
    at = pd.Series(np.where(first == big, nat, first).view("datetime64[ns]"), index=o.index)
    in_hist = np.r_[np.bincount(deal[deal >= 0], minlength=len(ids)) > 0, False][of_row]
    no_hist = ~in_hist & isin(o["stage"], q_stages)
    at = at.where(~no_hist, o["created_at"])
    out = o.assign(qualified_at=pd.to_datetime(at))
    return out[out["qualified_at"].notna()]
