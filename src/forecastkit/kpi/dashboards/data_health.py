"""Dashboard: customer-data health (contacts, data quality, new prospects, inactive and lost customers, churn)."""

from __future__ import annotations

import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import qualification_completeness
from forecastkit.hygiene.completeness import _shared_contact_problems
from forecastkit.kpi._common import _period_codes
from forecastkit.kpi.customers import customer_activity, customer_churn
from forecastkit.kpi.dashboards._base import _ALL, _Ctx, _empty, _TileSpec
from forecastkit.periods import Period, period_of


# --------------------------------------------------------- 3. data health
def _contact_problems(crm: CRM) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`~forecastkit.hygiene.completeness.contact_problems` once per snapshot, shared with the pipeline review.

    Every dashboard call of that snapshot, for all reps or one (a one-rep dashboard reads the
    whole company's frame), and ``hygiene.review`` read the same frames (read only).
    """
    return _shared_contact_problems(crm)


def _contact_completeness(c: _Ctx) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """(completeness, quality index) per group and the accounts with contact problems."""
    if not c.full.has("contacts"):
        return pd.Series(dtype=float), pd.Series(dtype=float), _empty(["account_id", "owner"])
    bo, by_account = _contact_problems(c.full)
    w = c.who(bo, "contacts").to_numpy()
    k = bo["contacts"].to_numpy(dtype=float)
    filled = pd.Series(bo["completeness"].to_numpy() * k).groupby(w).sum()
    usable = pd.Series(bo["quality_index"].to_numpy() * k).groupby(w).sum()
    n = pd.Series(k).groupby(w).sum()
    return filled / n, usable / n, by_account


def _data_health(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    comp, dqi_contacts, bad_acc = _contact_completeness(c)
    od = crm.open_deals
    qc = qualification_completeness(od, c.pb)
    dated = (od["next_step_date"] >= c.as_of).astype(float)
    w = c.who(od, "opportunities").to_numpy()
    deal_q = pd.Series(((qc.fillna(0) + dated) / 2).to_numpy()).groupby(w).mean()
    dqi = pd.concat([dqi_contacts, deal_q], axis=1).mean(axis=1)
    weak = od.assign(qualification_completeness=qc.to_numpy(), dated_next_step=dated.astype(bool).to_numpy())
    weak = weak[(weak["qualification_completeness"] < 0.5) | ~weak["dated_next_step"]]
    weak = weak.sort_values(["qualification_completeness", "amount"], ascending=[True, False])
    weak = weak[["opportunity_id", "name", "owner", "stage", "amount", "qualification_completeness", "next_step_date"]]
    acc = crm.accounts
    newp = c.flow(acc, acc["created_at"], {"n": pd.Series(1.0, index=acc.index)}, "accounts")
    new_list = acc[c.in_period(acc["created_at"])]
    new_list = new_list[[x for x in ("account_id", "name", "owner", "segment", "created_at") if x in new_list]]
    cols = ["account_id", "owner", "last_order", "usual_cycle_days", "days_since_last_order", "p_alive", "status"]
    if crm.has("orders") and len(crm.orders):
        act = customer_activity(crm)
        act_w = c.who(act, "customers").to_numpy()
        judged = act["status"] != "one_off"
        base = pd.Series(judged.to_numpy(dtype=float)).groupby(act_w).sum()
        inactive = act[act["status"] == "inactive"].sort_values("p_alive")[cols]
        recent = act["lost_at"] >= c.as_of - pd.Timedelta(days=365)
        lost = act[(act["status"] == "lost") & recent].sort_values("lost_at", ascending=False)[[*cols, "lost_at"]]
        ni = pd.Series((act["status"] == "inactive").to_numpy(dtype=float)).groupby(act_w).sum()
        nl = pd.Series(((act["status"] == "lost") & recent).to_numpy(dtype=float)).groupby(act_w).sum()
        lvl = c.col
        months = _months_of(c)
        ch = customer_churn(crm, "month", by=lvl, since=months[0].start)
        ch = ch[ch["period"].isin([p.label for p in months])]
        ch = ch.assign(_who=ch[lvl].astype(object).fillna("(none)") if lvl else _ALL)
        start = {p.label: p.start for p in months}
        mcode = _period_codes(ch["period"].map(start), c.period.freq, c.pb)
        churn = ch.assign(_code=mcode).groupby(["_who", "_code"])[["became_lost", "customers_start"]].sum()
    else:
        inactive, lost = _empty(cols), _empty([*cols, "lost_at"])
        base = ni = nl = pd.Series(dtype=float)
        churn = pd.DataFrame(
            columns=["became_lost", "customers_start"],
            index=pd.MultiIndex.from_arrays([[], []], names=["_who", "_code"]),
        )
    specs = [
        dict(
            key="contact_completeness",
            label="Contact completeness",
            unit="ratio",
            snapshot=comp,
            kpi="data_completeness",
            drill=(bad_acc, "contacts"),
            action="Complete these accounts' contacts (name, job title, department, e-mail, phone)",
        ),
        dict(
            key="data_quality_index",
            label="Data-quality index",
            unit="ratio",
            snapshot=dqi,
            kpi="data_quality_index",
            drill=(weak, "opportunities"),
            action="Qualify these deals and date their next step",
        ),
        dict(
            key="new_prospects",
            label="New prospects",
            unit="count",
            flow=(newp, "n"),
            kpi="prospect_trend",
            trend=True,
            drill=(new_list, "accounts"),
            action="Qualify the new prospects",
        ),
        dict(
            key="inactive_customers",
            label="Inactive customers",
            unit="count",
            snapshot=ni,
            share_of=base,
            kpi="inactive_share",
            drill=(inactive, "customers"),
            action="Call them: their usual order is late",
        ),
        dict(
            key="lost_customers",
            label="Customers lost (last 12 months)",
            unit="count",
            snapshot=nl,
            share_of=base,
            kpi="lost_share",
            drill=(lost, "customers"),
            action="Win-back plan for these customers",
        ),
        dict(
            key="churn_rate",
            label="Customer churn (monthly)",
            unit="ratio",
            ratio=(churn, "became_lost", "customers_start"),
            kpi="churn_rate",
            drill=(lost, "customers"),
            action="Customers lost: understand why",
        ),
    ]
    members = set(comp.index) | set(deal_q.index) | set(base.index) | set(newp.index.get_level_values(0))
    return specs, members


def _months_of(c: _Ctx) -> list[Period]:
    out = []
    for p in c.periods:
        m = period_of(p.start, "month", c.pb)
        while m.start < p.end:
            out.append(m)
            m = m.shift(1, c.pb)
    return out
