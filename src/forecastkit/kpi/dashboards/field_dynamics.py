"""Dashboard: field dynamics (visit reports, orders per visit, action-plan progress, qualified leads)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.data.timeline import _row_positions
from forecastkit.hygiene._deals import isin, obj
from forecastkit.kpi.dashboards._base import _Ctx, _is, _take, _text, _TileSpec
from forecastkit.playbook import WON


# ----------------------------------------------------- 4. field dynamics
def _report_boxes() -> tuple[str, ...]:
    from forecastkit.data.schema import REPORT_BOXES

    return tuple(REPORT_BOXES)


def _has_report(a: pd.DataFrame) -> pd.Series:
    """A report written (not blank) or any of the five report boxes ticked."""
    text = _text(a["report"])
    filled = np.flatnonzero(a["report"].notna().to_numpy(dtype=bool))
    written = np.zeros(len(a), dtype=bool)
    written[filled] = [str(x).strip() != "" for x in text[filled]]
    has = pd.Series(written, index=a.index)
    for b in _report_boxes():
        if b in a:
            has |= a[b].fillna(False).astype(bool)
    return has


def _field_dynamics(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    a = crm.activities
    # masks on the whole table, then only the columns each figure or list needs (activities are wide and long)
    done_at = a["done_at"]
    is_visit = _is(a["type"], "visit") & done_at.notna().to_numpy(dtype=bool)
    v_cols = ["activity_id", "account_id", "opportunity_id", "owner", "done_at", "report"]
    v = _take(a, is_visit, [*v_cols, *(b for b in _report_boxes() if b in a)])
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
    is_due = (a["due_at"] < c.cut).to_numpy(dtype=bool)
    due = _take(a, is_due, ["due_at", "done_at"])
    done_on = due["done_at"].notna().astype(float)
    ap = c.flow(due, due["due_at"], {"due": pd.Series(1.0, index=due.index), "done": done_on}, "activities")
    todo_cols = ["activity_id", "type", "account_id", "opportunity_id", "owner", "due_at"]
    is_todo = is_due & c.in_period(a["due_at"]) & done_at.isna().to_numpy(dtype=bool)
    todo = _take(a, is_todo, todo_cols).sort_values("due_at")[todo_cols]
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
    """Deals with the date they first reached the second stage or later (from history, else creation).

    Only the columns of the drill-down list (and ``qualified_at``); rows keep the
    opportunities' index.
    """
    crm = c.crm
    names = c.pb.stage_names
    q_stages = set(names[1:]) | {WON}
    h = crm.history
    o = crm.opportunities
    deal, of_row, n_ids = _deal_codes(h, o)
    big, nat = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    changed = h["changed_at"].to_numpy("datetime64[ns]").view(np.int64)
    ok = isin(h["stage"], q_stages) & (deal >= 0) & (changed != nat)
    first = np.full(n_ids + 1, big, dtype=np.int64)  # the extra slot: deals without an id
    np.minimum.at(first, deal[ok], changed[ok])
    first = first[of_row]
    at = np.where(first == big, nat, first)
    in_hist = np.r_[np.bincount(deal[deal >= 0], minlength=n_ids) > 0, False][of_row]
    no_hist = ~in_hist & isin(o["stage"], q_stages)
    created = o["created_at"].to_numpy("datetime64[ns]").view(np.int64)
    at = np.where(no_hist, created, at)
    keep = at != nat
    cols = ["opportunity_id", "name", "owner", "stage", "status", "amount", "next_step_date"]
    out = _take(o, keep, cols)
    return out.assign(qualified_at=at[keep].view("datetime64[ns]"))


def _deal_codes(h: pd.DataFrame, o: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Deal code of each history row (-1: unknown deal), of each opportunity row (-1: no id), number of deals.

    Integer codes, no grouping on text ids: with unique ids (a validated snapshot) the code is
    the opportunity's row position, found once per run of equal ids in the history.
    """
    oid = o["opportunity_id"]
    if not oid.isna().any():
        try:
            return _row_positions(h["opportunity_id"], oid), np.arange(len(o)), len(o)
        except pd.errors.InvalidIndexError:  # duplicated ids: the general path below
            pass
    ids_o = obj(oid)
    ids = pd.Index(pd.unique(ids_o[~pd.isna(ids_o)]))
    return ids.get_indexer(obj(h["opportunity_id"])), ids.get_indexer(ids_o), len(ids)
