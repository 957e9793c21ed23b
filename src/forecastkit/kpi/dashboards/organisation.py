"""Dashboard: getting organised (late visits, quotes to follow up, deliveries, invoicing, overdue tasks, WIP)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.kpi.dashboards._base import _Ctx, _is, _reps_per_group, _take, _TileSpec


# --------------------------------------------------------- 2. organisation
def _ns(dates: pd.Series) -> np.ndarray:
    """Dates as int64 nanoseconds, missing as the largest value (never passed)."""
    d = dates.to_numpy("datetime64[ns]")
    return np.where(np.isnat(d), np.iinfo(np.int64).max, d.view(np.int64))


def _at_ends(
    c: _Ctx, df: pd.DataFrame, table: str, since: list[tuple[pd.Series, bool]], until: pd.Series
) -> pd.DataFrame:
    """Counts per (who, period end) of rows open at each period end (snapshot for the last).

    A row is open at ``t`` when every date of ``since`` has passed (``date < t`` when
    strict, else ``date <= t``; a missing date never passes) and ``until`` has not
    (missing or after ``t``).
    """
    w, labels = c.who_codes(df, table)
    starts = [(_ns(d), strict) for d, strict in since]
    end = _ns(until)
    ts = [(min(p.end, c.cut) - pd.Timedelta(days=1)).value for p in c.periods]  # end of each period's last known day
    # rows open at no period end (closed before the first, or started after the last) are dropped once
    maybe = end > min(ts)
    for d, _ in starts:
        maybe &= d <= max(ts)
    w, end = w[maybe], end[maybe]
    starts = [(d[maybe], strict) for d, strict in starts]
    out = np.zeros((len(labels), len(c.codes)))
    for j, t in enumerate(ts):
        m = end > t
        for d, strict in starts:
            m &= (d < t) if strict else (d <= t)
        out[:, j] = np.bincount(w[m], minlength=len(labels))
    idx = pd.MultiIndex.from_product([labels, c.codes], names=["_who", "_code"])
    return pd.DataFrame({"n": out.ravel()}, index=idx)


def _organisation(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    a = crm.activities
    # masks on the whole table, then only the columns each figure or list needs (activities are wide and long)
    is_visit = _is(a["type"], "visit")
    is_other = ~is_visit & a["type"].notna().to_numpy(dtype=bool)
    overdue = ((a["due_at"] < c.as_of) & a["done_at"].isna()).to_numpy(dtype=bool)
    dates = ["created_at", "due_at", "done_at"]
    cols = ["activity_id", "type", "account_id", "opportunity_id", "owner", "due_at"]
    visits = _take(a, is_visit, dates)
    late_v = _at_ends(
        c,
        visits,
        "activities",
        [(visits["due_at"], True), (visits["created_at"].fillna(visits["due_at"]), False)],
        visits["done_at"],
    )
    late_list = _take(a, is_visit & overdue, cols)
    late_list = late_list.assign(days_late=(c.as_of - late_list["due_at"]).dt.days).sort_values("due_at")
    late_list = late_list[["activity_id", "account_id", "opportunity_id", "owner", "due_at", "days_late"]]
    other = _take(a, is_other, dates)
    over = _at_ends(
        c,
        other,
        "activities",
        [(other["due_at"], True), (other["created_at"].fillna(other["due_at"]), False)],
        other["done_at"],
    )
    over_list = _take(a, is_other & overdue, cols)
    over_list = over_list.assign(days_late=(c.as_of - over_list["due_at"]).dt.days).sort_values("due_at")
    over_list = over_list[["activity_id", "type", "account_id", "opportunity_id", "owner", "due_at", "days_late"]]
    # quotes and offers: open deals in the last two open stages whose next step is missing or overdue
    od = crm.open_deals
    names = c.pb.stage_names
    quote_stages = names[-2:] if len(names) >= 2 else names
    if "proposal" in names:
        quote_stages = names[names.index("proposal") :]
    q = od[od["stage"].isin(quote_stages) & ~(od["next_step_date"] >= c.as_of)]
    q = q.assign(days_overdue=(c.as_of - q["next_step_date"]).dt.days).sort_values("amount", ascending=False)
    q = q[
        [
            "opportunity_id",
            "name",
            "account_id",
            "owner",
            "stage",
            "amount",
            "close_date",
            "next_step",
            "next_step_date",
            "days_overdue",
        ]
    ]
    qn = c.count(q, "opportunities")
    o = crm.orders
    ld = _at_ends(c, o, "orders", [(o["promised_delivery"], True), (o["ordered_at"], False)], o["delivered_at"])
    late_d = o[(o["promised_delivery"] < c.as_of) & o["delivered_at"].isna()]
    late_d = late_d.assign(days_late=(c.as_of - late_d["promised_delivery"]).dt.days).sort_values("promised_delivery")
    late_d = late_d[["order_id", "account_id", "owner", "ordered_at", "amount", "promised_delivery", "days_late"]]
    due = o[
        (o["promised_delivery"] >= c.as_of)
        & (o["promised_delivery"] <= c.as_of + pd.Timedelta(days=14))
        & o["delivered_at"].isna()
    ].sort_values("promised_delivery")
    due = due[["order_id", "account_id", "owner", "ordered_at", "amount", "promised_delivery"]]
    dn = c.count(due, "orders")
    un = _at_ends(c, o, "orders", [(o["delivered_at"], False)], o["invoiced_at"])
    un_list = o[o["delivered_at"].notna() & o["invoiced_at"].isna()].sort_values("delivered_at")
    un_list = un_list[["order_id", "account_id", "owner", "amount", "delivered_at"]]
    # WIP: active = open past the first stage
    active = od[od["stage"].isin(names[1:])]
    active = active.assign(deal_age_days=(c.as_of - active["created_at"]).dt.days)
    active = active.sort_values("deal_age_days", ascending=False)[
        ["opportunity_id", "name", "owner", "stage", "amount", "deal_age_days", "next_step_date"]
    ]
    wn = c.count(active, "opportunities")
    reps = _reps_per_group(c)
    limit = reps * c.pb.wip_limit
    specs = [
        dict(
            key="late_visits",
            label="Late visits",
            unit="count",
            flow=(late_v, "n"),
            kpi="late_visits",
            drill=(late_list, "activities"),
            action="Do or reschedule these visits",
        ),
        dict(
            key="quotes_to_follow_up",
            label="Quotes and offers to follow up",
            unit="count",
            snapshot=qn,
            kpi="quotes_to_follow_up",
            drill=(q, "opportunities"),
            action="Follow up: book a dated next step",
        ),
        dict(
            key="late_deliveries",
            label="Late deliveries",
            unit="count",
            flow=(ld, "n"),
            kpi="late_deliveries",
            drill=(late_d, "orders"),
            action="Chase the delivery and warn the customer",
        ),
        dict(
            key="deliveries_due",
            label="Deliveries due in 14 days",
            unit="count",
            snapshot=dn,
            kpi=None,
            drill=(due, "orders"),
            action="Check these deliveries are on track",
        ),
        dict(
            key="uninvoiced_deliveries",
            label="Delivered, not invoiced",
            unit="count",
            flow=(un, "n"),
            kpi="uninvoiced_deliveries",
            drill=(un_list, "orders"),
            action="Invoice these deliveries",
        ),
        dict(
            key="overdue_actions",
            label="Overdue calls, e-mails and meetings",
            unit="count",
            flow=(over, "n"),
            kpi="overdue_actions",
            drill=(over_list, "activities"),
            action="Do or reschedule these actions",
        ),
        dict(
            key="wip",
            label="Active deals vs WIP limit",
            unit="count",
            snapshot=wn,
            target=limit,
            kpi="wip_usage",
            ratio_to_target=True,
            drill=(active, "opportunities"),
            action="Over the limit: close out or kill the oldest deals",
        ),
    ]
    members = set(late_v.index.get_level_values(0)) | set(qn.index) | set(wn.index) | set(ld.index.get_level_values(0))
    return specs, members
