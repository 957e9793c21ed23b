"""Dashboard: steering sales activity (invoiced, ordered, orders, margin, basket, weighted pipeline, bookings)."""

from __future__ import annotations

import pandas as pd

from forecastkit.kpi.customers import customer_activity
from forecastkit.kpi.dashboards._base import _Ctx, _empty, _is, _rule, _take, _TileSpec
from forecastkit.kpi.sales import win_probabilities
from forecastkit.playbook import WON


# ------------------------------------------------------- 1. sales activity
def _sales_activity(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    o = crm.orders
    inv = c.flow(o, o["invoiced_at"], {"invoiced": o["invoiced_amount"].fillna(0)}, "orders")
    od = c.flow(
        o,
        o["ordered_at"],
        {
            "ordered": o["amount"],
            "orders": pd.Series(1.0, index=o.index),
            "margin": o["margin"].fillna(0),
            "margin_base": o["amount"].where(o["margin"].notna(), 0),
        },
        "orders",
    )
    opp = crm.opportunities
    won = _take(opp, _is(opp["status"], WON), ["closed_at", "close_date", "amount"])
    wd = won["closed_at"].fillna(won["close_date"])
    bk = c.flow(won, wd, {"bookings": won["amount"]}, "opportunities")
    # drill-downs
    uninv = o[o["invoiced_at"].isna()].assign(days_waiting=lambda d: (c.as_of - d["ordered_at"]).dt.days)
    uninv = uninv.sort_values("ordered_at")[
        ["order_id", "account_id", "owner", "ordered_at", "amount", "delivered_at", "days_waiting"]
    ]
    act = customer_activity(crm, p_alive=False) if len(o) else None
    cols_act = ["account_id", "owner", "last_order", "usual_cycle_days", "days_since_last_order", "status"]
    if act is not None:
        inactive = act[act["status"] == "inactive"].sort_values("days_since_last_order", ascending=False)[cols_act]
        due = act["last_order"] + pd.to_timedelta(act["usual_cycle_days"].fillna(1e4).clip(upper=1e4), unit="D")
        soon = act[(act["status"] == "active") & (due <= c.as_of + pd.Timedelta(days=14))].assign(reorder_due=due)
        soon = soon.sort_values("reorder_due")[[*cols_act, "reorder_due"]]
    else:
        inactive, soon = _empty(cols_act), _empty([*cols_act, "reorder_due"])
    in_p = c.in_period(o["ordered_at"])
    op = o[in_p]
    rate = op["margin"] / op["amount"].where(op["amount"] > 0)
    low = op.assign(margin_rate=rate)[(rate < _rule(c, "margin_rate")["orange"]) | (op["discount"] >= 0.15)]
    low = low.sort_values("margin_rate")[
        ["order_id", "account_id", "owner", "ordered_at", "amount", "discount", "margin", "margin_rate"]
    ]
    big = op.sort_values("amount", ascending=False)[["order_id", "account_id", "owner", "ordered_at", "amount"]]
    od_open = crm.open_deals
    p = win_probabilities(c.full, "history", od_open)
    pipe = od_open.assign(p_win=p.to_numpy(), weighted=(od_open["amount"] * p).to_numpy())
    pipe_p = pipe[c.in_period(pipe["close_date"])]
    dcols = [
        "opportunity_id",
        "name",
        "account_id",
        "owner",
        "stage",
        "amount",
        "p_win",
        "weighted",
        "close_date",
        "budget",
        "need",
        "competitor",
        "next_step",
        "next_step_date",
    ]
    pipe_p = pipe_p.sort_values("weighted", ascending=False)[[x for x in dcols if x in pipe_p]]
    pw = c.total(pipe_p, pipe_p["weighted"], "opportunities")
    pa = c.total(pipe_p, pipe_p["amount"], "opportunities")
    tg = {m: c.target(m) for m in ("invoiced", "ordered", "orders", "bookings")}
    specs = [
        dict(
            key="invoiced",
            label="Invoiced revenue",
            unit="amount",
            flow=(inv, "invoiced"),
            target=tg["invoiced"],
            kpi="attainment",
            drill=(uninv, "orders"),
            action="Invoice these orders (not invoiced yet)",
        ),
        dict(
            key="ordered",
            label="Ordered amount",
            unit="amount",
            flow=(od, "ordered"),
            target=tg["ordered"],
            kpi="attainment",
            drill=(inactive, "customers"),
            action="Call these inactive customers: their usual order is late",
        ),
        dict(
            key="orders",
            label="Number of orders",
            unit="count",
            flow=(od, "orders"),
            target=tg["orders"],
            kpi="attainment",
            drill=(soon, "customers"),
            action="Propose the reorder: due within 14 days",
        ),
        dict(
            key="margin_rate",
            label="Margin after discounts",
            unit="ratio",
            ratio=(od, "margin", "margin_base"),
            kpi="margin_rate",
            drill=(low, "orders"),
            action="Review these low-margin or heavily discounted orders",
        ),
        dict(
            key="average_basket",
            label="Average basket",
            unit="amount",
            ratio=(od, "ordered", "orders"),
            kpi="basket_trend",
            trend=True,
            drill=(big, "orders"),
            action="The period's orders, largest first",
        ),
        dict(
            key="weighted_pipeline",
            label="Weighted pipeline closing in the period",
            unit="amount",
            snapshot=pw,
            pipeline=pa,
            target=tg["bookings"],
            kpi="pipeline_coverage",
            drill=(pipe_p, "opportunities"),
            action="Move these deals forward: need, budget, signature date, competition",
            won=(bk, "bookings"),
        ),
        dict(
            key="bookings",
            label="Bookings (won) vs quota",
            unit="amount",
            flow=(bk, "bookings"),
            target=tg["bookings"],
            kpi="attainment",
            drill=(pipe_p, "opportunities"),
            action="The deals that can still close in the period",
        ),
    ]
    members = set(inv.index.get_level_values(0)) | set(od.index.get_level_values(0)) | set(bk.index.get_level_values(0))
    members |= set(pw.index)
    return specs, members
