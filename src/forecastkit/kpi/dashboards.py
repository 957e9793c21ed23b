"""The four dashboards of a B2B CRM (domain section 9), as KPI tiles.

Each dashboard has at most seven :class:`Tile` objects: a value, its target (when
there is one), a green / orange / red status from the playbook's traffic lights, a
sparkline (the same value over the previous periods) and the drill-down action list
behind it (the deals, orders, customers or visits to act on).

1. ``sales_activity`` - invoiced revenue, ordered amount and number of orders
   against targets, margin after discounts, average basket, weighted pipeline and
   bookings against quota;
2. ``organisation`` - the rep's assistant: late visits, quotes to follow up, late and
   due deliveries, delivered but not invoiced orders, overdue calls/e-mails/meetings,
   active deals against the WIP limit;
3. ``data_health`` - contact completeness, data-quality index, new prospects, inactive
   and lost customers, customer churn;
4. ``field_dynamics`` - visit reports, visit-to-order ratio, action-plan progress,
   qualified leads.

Conventions
-----------
* ``level`` is ``rep`` (column ``owner``), ``team`` or ``business_unit``; ``who`` one
  member of that level, or ``None`` for the whole company. Orders, activities and
  accounts are credited to their ``owner``; teams and business units come from ``reps``.
* ``period`` (default: the fiscal quarter holding the snapshot date) sets the flow
  figures; snapshot figures (late visits, open quotes...) are at the snapshot date.
* Targets against a period not over yet are prorated by elapsed days for the status
  (``attainment = value / (target x elapsed share)``); the tile shows the full target.
* Traffic lights come from ``playbook.traffic_lights`` (override any of them in the
  playbook YAML). Informational tiles are ``grey``.
* Forecast accuracy is not a tile here: it belongs to
  :func:`forecastkit.forecast.accuracy.forecast_accuracy`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.kpi._common import _org_map, _period_codes, _safe_div, _target_amounts, _with_groups
from forecastkit.kpi.customers import customer_activity, customer_churn
from forecastkit.kpi.sales import win_probabilities
from forecastkit.periods import Period, parse_period, period_of
from forecastkit.playbook import WON, Playbook

__all__ = ["Tile", "Dashboard", "dashboard", "dashboards", "DASHBOARDS", "LEVELS"]

Which = Literal["sales_activity", "organisation", "data_health", "field_dynamics"]
Level = Literal["rep", "team", "business_unit"]
DASHBOARDS: dict[str, str] = {
    "sales_activity": "Steering sales activity",
    "organisation": "Getting organised",
    "data_health": "Customer-data health",
    "field_dynamics": "Field dynamics",
}
LEVELS: dict[str, str] = {"rep": "owner", "team": "team", "business_unit": "business_unit"}
_MAX_TILES = 7
_ALL = "all"

#: Traffic lights used when the playbook does not define the KPI (same format as ``playbook.traffic_lights``).


# ------------------------------------------------------------------ objects
@dataclass(frozen=True)
class Tile:
    """One KPI tile.

    Attributes
    ----------
    key, label : str
        Machine name and display label.
    value : float
    target : float or None
        The period's target (None when the KPI has none).
    unit : str
        ``amount``, ``count``, ``ratio`` or ``days``.
    status : str
        ``green``, ``orange``, ``red`` or ``grey`` (no rule or no value).
    status_value : float
        The number the traffic light judged (e.g. attainment to date, a trend ratio).
    action : str
        What to do with the drill-down list.
    sparkline : Series
        The value over the previous periods (index: period labels, oldest first).
    drilldown : DataFrame
        The action list behind the tile.

    ``sparkline`` and ``drilldown`` are properties built on access from arrays shared by
    every member's dashboard, so building the dashboards of thousands of reps stays cheap.
    """

    key: str
    label: str
    value: float
    target: float | None
    unit: str
    status: str
    status_value: float
    action: str = ""
    _spark: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _spark_index: pd.Index = field(default_factory=lambda: pd.Index([]), repr=False)
    _source: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    _rows: np.ndarray = field(default_factory=lambda: np.arange(0), repr=False)

    @property
    def sparkline(self) -> pd.Series:
        """The value over the previous periods (index: period labels, oldest first)."""
        return pd.Series(self._spark, index=self._spark_index, name=self.key)

    @property
    def drilldown(self) -> pd.DataFrame:
        """The drill-down action list (a new frame)."""
        return self._source.iloc[self._rows].reset_index(drop=True)

    @property
    def drilldown_rows(self) -> int:
        """Number of rows of the drill-down list."""
        return len(self._rows)


@dataclass(frozen=True)
class Dashboard:
    """One dashboard for one member (or the company): its tiles in display order."""

    name: str
    title: str
    level: str
    who: str
    period: str
    as_of: pd.Timestamp
    tiles: tuple[Tile, ...] = field(default_factory=tuple)

    def tile(self, key: str) -> Tile:
        """The tile called ``key``."""
        for t in self.tiles:
            if t.key == key:
                return t
        raise ParameterError(
            f"dashboard {self.name!r} has no tile {key!r}; tiles: {', '.join(t.key for t in self.tiles)}"
        )

    def to_frame(self) -> pd.DataFrame:
        """``key, label, value, target, unit, status, status_value, action, drilldown_rows``."""
        return pd.DataFrame(
            [
                {
                    "key": t.key,
                    "label": t.label,
                    "value": t.value,
                    "target": t.target,
                    "unit": t.unit,
                    "status": t.status,
                    "status_value": t.status_value,
                    "action": t.action,
                    "drilldown_rows": t.drilldown_rows,
                }
                for t in self.tiles
            ]
        )

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>{html.escape(self.title)}</b> - {html.escape(self.level)} "
            f"<i>{html.escape(self.who)}</i>, {html.escape(self.period)} (as of {self.as_of.date()})</p>"
        )
        return head + self.to_frame().to_html(index=False)


# ------------------------------------------------------------------ helpers
def _lights_playbook(pb: Playbook) -> Playbook:
    """The playbook with :data:`DEFAULT_TRAFFIC_LIGHTS` added for the KPIs it does not define."""
    return pb


class _Ctx:
    """Everything a dashboard computation needs, built once: grouped tables and the periods."""

    def __init__(self, crm: CRM, level: str, period: Period, history: int, full: CRM | None = None) -> None:
        self.crm = crm
        self.full = full or crm
        self.pb = crm.playbook
        self.lights = _lights_playbook(crm.playbook)
        self.col = LEVELS[level] if level != "company" else None
        self.level = level
        self.period = period
        self.as_of = crm.as_of_date
        self.cut = crm.as_of_date + pd.Timedelta(days=1)  # everything before is known
        self.periods = [period.shift(-k, self.pb) for k in range(history - 1, -1, -1)]
        self.labels = [p.label for p in self.periods]
        self.codes = _period_codes(pd.Series([p.start for p in self.periods]), period.freq, self.pb)
        self.org = _org_map(self.full)
        end = min(period.end, self.cut)
        self.elapsed = max(0.0, min(1.0, (end - period.start).days / period.days))

    def who(self, df: pd.DataFrame, table: str) -> pd.Series:
        """The group label of each row (``all`` for the company)."""
        if self.col is None:
            return pd.Series(_ALL, index=df.index, dtype=object)
        g = _with_groups(df, self.crm, [self.col], table=table, org=self.org)
        return g[self.col].astype(object).fillna("(none)")

    def who_codes(self, df: pd.DataFrame, table: str) -> tuple[np.ndarray, np.ndarray]:
        """The group of each row as integer codes, and the group labels."""
        codes, labels = pd.factorize(self.who(df, table))
        return codes, np.asarray(labels, dtype=object)

    def flow(self, df: pd.DataFrame, date: pd.Series, values: Mapping[str, pd.Series], table: str) -> pd.DataFrame:
        """Sums of ``values`` per (who, period) over the sparkline periods (missing = 0)."""
        code = _period_codes(date, self.period.freq, self.pb)
        keep = np.isin(code, self.codes) & (date < self.cut).to_numpy(dtype=bool)
        w, labels = self.who_codes(df, table)
        k = len(self.codes)
        pos = np.searchsorted(self.codes, code[keep])  # self.codes is sorted (oldest first)
        key = w[keep].astype(np.int64) * k + pos
        cols = {
            name: np.bincount(key, weights=v.to_numpy(dtype=float)[keep], minlength=len(labels) * k)
            for name, v in values.items()
        }
        idx = pd.MultiIndex.from_product([labels, self.codes], names=["_who", "_code"])
        return pd.DataFrame(cols, index=idx)

    def dense(self, g: pd.DataFrame, col: str, members: list) -> np.ndarray:
        """``g[col]`` as a members x sparkline-periods matrix (missing = 0)."""
        if not len(g):
            return np.zeros((len(members), len(self.codes)))
        m = g[col].unstack("_code")
        return m.reindex(index=members, columns=self.codes).fillna(0.0).to_numpy(dtype=float)

    def target(self, metric: str) -> pd.Series:
        lvl = {"rep": "owner", "team": "team", "business_unit": "business_unit"}.get(self.level)
        t = _target_amounts(self.full, metric, [self.period], lvl, org=self.org)
        if not len(t):
            return pd.Series(dtype=float)
        return t.set_index(lvl)["target"] if lvl else pd.Series({_ALL: float(t["target"].sum())})

    def rows(self, df: pd.DataFrame, table: str) -> dict[object, np.ndarray]:
        """Positions of each group's rows in ``df`` (drill-down lists)."""
        if not len(df):
            return {}
        w = self.who(df, table).to_numpy()
        return pd.Series(np.arange(len(df))).groupby(w, sort=False).indices


def _trend(m: np.ndarray) -> np.ndarray:
    """Last column / mean of the earlier positive columns, per row."""
    prev = m[:, :-1]
    pos = prev > 0
    n = pos.sum(axis=1)
    mean = np.where(n > 0, np.where(pos, prev, 0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return np.asarray(_safe_div(m[:, -1], mean), dtype=float)


_TileSpec = dict[str, Any]


def _empty(cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=cols)


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
    won = crm.opportunities[crm.opportunities["status"] == WON]
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
    in_p = c.period.contains(o["ordered_at"]).fillna(False).to_numpy(dtype=bool)
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
    pipe_p = pipe[c.period.contains(pipe["close_date"]).fillna(False).to_numpy(dtype=bool)]
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
    pw = (
        pd.Series(pipe_p["weighted"].to_numpy(), index=c.who(pipe_p, "opportunities").to_numpy()).groupby(level=0).sum()
    )
    pa = pd.Series(pipe_p["amount"].to_numpy(), index=c.who(pipe_p, "opportunities").to_numpy()).groupby(level=0).sum()
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
            drill=(inactive, "orders"),
            action="Call these inactive customers: their usual order is late",
        ),
        dict(
            key="orders",
            label="Number of orders",
            unit="count",
            flow=(od, "orders"),
            target=tg["orders"],
            kpi="attainment",
            drill=(soon, "orders"),
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


def _rule(c: _Ctx, kpi: str) -> Mapping[str, Any]:
    return c.pb.traffic_lights[kpi]


# --------------------------------------------------------- 2. organisation
def _at_ends(c: _Ctx, df: pd.DataFrame, table: str, late_at) -> pd.DataFrame:
    """Counts per (who, period end) of rows for which ``late_at(t)`` is true at each period end (snapshot for the last)."""
    w, labels = c.who_codes(df, table)
    out = np.zeros((len(labels), len(c.codes)))
    for j, p in enumerate(c.periods):
        t = min(p.end, c.cut) - pd.Timedelta(days=1)  # state at the end of the period's last known day
        m = late_at(t).to_numpy(dtype=bool)
        out[:, j] = np.bincount(w[m], minlength=len(labels))
    idx = pd.MultiIndex.from_product([labels, c.codes], names=["_who", "_code"])
    return pd.DataFrame({"n": out.ravel()}, index=idx)


def _organisation(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    a = crm.activities
    visits = a[a["type"] == "visit"]
    late_v = _at_ends(
        c,
        visits,
        "activities",
        lambda t: (
            (visits["due_at"] < t) & ~(visits["done_at"] <= t) & (visits["created_at"].fillna(visits["due_at"]) <= t)
        ),
    )
    late_list = visits[(visits["due_at"] < c.as_of) & visits["done_at"].isna()]
    late_list = late_list.assign(days_late=(c.as_of - late_list["due_at"]).dt.days).sort_values("due_at")
    late_list = late_list[["activity_id", "account_id", "opportunity_id", "owner", "due_at", "days_late"]]
    other = a[a["type"] != "visit"]
    over = _at_ends(
        c,
        other,
        "activities",
        lambda t: (other["due_at"] < t) & ~(other["done_at"] <= t) & (other["created_at"].fillna(other["due_at"]) <= t),
    )
    over_list = other[(other["due_at"] < c.as_of) & other["done_at"].isna()]
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
    qn = pd.Series(1.0, index=c.who(q, "opportunities").to_numpy()).groupby(level=0).sum()
    o = crm.orders
    ld = _at_ends(
        c, o, "orders", lambda t: (o["promised_delivery"] < t) & ~(o["delivered_at"] <= t) & (o["ordered_at"] <= t)
    )
    late_d = o[(o["promised_delivery"] < c.as_of) & o["delivered_at"].isna()]
    late_d = late_d.assign(days_late=(c.as_of - late_d["promised_delivery"]).dt.days).sort_values("promised_delivery")
    late_d = late_d[["order_id", "account_id", "owner", "ordered_at", "amount", "promised_delivery", "days_late"]]
    due = o[
        (o["promised_delivery"] >= c.as_of)
        & (o["promised_delivery"] <= c.as_of + pd.Timedelta(days=14))
        & o["delivered_at"].isna()
    ].sort_values("promised_delivery")
    due = due[["order_id", "account_id", "owner", "ordered_at", "amount", "promised_delivery"]]
    dn = pd.Series(1.0, index=c.who(due, "orders").to_numpy()).groupby(level=0).sum()
    un = _at_ends(c, o, "orders", lambda t: (o["delivered_at"] <= t) & ~(o["invoiced_at"] <= t))
    un_list = o[o["delivered_at"].notna() & o["invoiced_at"].isna()].sort_values("delivered_at")
    un_list = un_list[["order_id", "account_id", "owner", "amount", "delivered_at"]]
    # WIP: active = open past the first stage
    active = od[od["stage"].isin(names[1:])]
    active = active.assign(deal_age_days=(c.as_of - active["created_at"]).dt.days)
    active = active.sort_values("deal_age_days", ascending=False)[
        ["opportunity_id", "name", "owner", "stage", "amount", "deal_age_days", "next_step_date"]
    ]
    wn = pd.Series(1.0, index=c.who(active, "opportunities").to_numpy()).groupby(level=0).sum()
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


def _reps_per_group(c: _Ctx) -> pd.Series:
    owners = pd.Index(c.crm.opportunities["owner"].dropna().unique())
    reps = c.crm.reps
    if len(reps):
        cur = reps[reps["end_date"].isna()]["owner"]
        owners = owners.intersection(pd.Index(cur)) if len(cur) else owners
    df = pd.DataFrame({"owner": owners})
    return pd.Series(1.0, index=c.who(df, "reps").to_numpy()).groupby(level=0).sum()


# --------------------------------------------------------- 3. data health
def _contact_completeness(c: _Ctx) -> tuple[pd.Series, pd.Series, pd.DataFrame]:
    """(completeness, quality index) per group and the accounts with contact problems."""
    try:
        from forecastkit.hygiene import completeness
    except ImportError:  # pragma: no cover - hygiene ships with the package
        # TODO(lead): wire forecastkit.hygiene.completeness here if the hygiene package is absent.
        return pd.Series(dtype=float), pd.Series(dtype=float), _empty(["account_id", "owner"])
    if not c.full.has("contacts"):
        return pd.Series(dtype=float), pd.Series(dtype=float), _empty(["account_id", "owner"])
    rep = completeness(c.full)
    bo = rep.by_owner
    w = c.who(bo, "contacts").to_numpy()
    k = bo["contacts"].to_numpy(dtype=float)
    filled = pd.Series(bo["completeness"].to_numpy() * k).groupby(w).sum()
    usable = pd.Series(bo["quality_index"].to_numpy() * k).groupby(w).sum()
    n = pd.Series(k).groupby(w).sum()
    return filled / n, usable / n, rep.by_account


def _data_health(c: _Ctx) -> tuple[list[_TileSpec], set]:
    crm = c.crm
    comp, dqi_contacts, bad_acc = _contact_completeness(c)
    od = crm.open_deals
    from forecastkit.data.timeline import qualification_completeness

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
    new_list = acc[c.period.contains(acc["created_at"]).fillna(False).to_numpy(dtype=bool)]
    new_list = new_list[[x for x in ("account_id", "name", "owner", "segment", "created_at") if x in new_list]]
    cols = ["account_id", "owner", "last_order", "usual_cycle_days", "days_since_last_order", "p_alive", "status"]
    if crm.has("orders") and len(crm.orders):
        act = customer_activity(crm)
        act_w = c.who(act, "orders").to_numpy()
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
            drill=(inactive, "orders"),
            action="Call them: their usual order is late",
        ),
        dict(
            key="lost_customers",
            label="Customers lost (last 12 months)",
            unit="count",
            snapshot=nl,
            share_of=base,
            kpi="lost_share",
            drill=(lost, "orders"),
            action="Win-back plan for these customers",
        ),
        dict(
            key="churn_rate",
            label="Customer churn (monthly)",
            unit="ratio",
            ratio=(churn, "became_lost", "customers_start"),
            kpi="churn_rate",
            drill=(lost, "orders"),
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
    rep = _has_report(v).astype(float)
    vf = c.flow(v, v["done_at"], {"visits": pd.Series(1.0, index=v.index), "reports": rep}, "activities")
    o = crm.orders
    of = c.flow(o, o["ordered_at"], {"orders": pd.Series(1.0, index=o.index)}, "orders")
    vo = vf.join(of, how="outer").fillna(0.0)
    in_p = c.period.contains(v["done_at"]).fillna(False).to_numpy(dtype=bool)
    no_rep = v[in_p & ~_has_report(v).to_numpy(dtype=bool)].sort_values("done_at")
    no_rep = no_rep[["activity_id", "account_id", "opportunity_id", "owner", "done_at"]]
    vp = v[in_p]
    last_order = o.groupby("account_id")["ordered_at"].max() if len(o) else pd.Series(dtype="datetime64[ns]")
    no_ord = vp[~(vp["account_id"].map(last_order) >= vp["done_at"])].sort_values("done_at")
    no_ord = no_ord[["activity_id", "account_id", "owner", "done_at"]]
    due = a[(a["due_at"] < c.cut)]
    done_on = due["done_at"].notna().astype(float)
    ap = c.flow(due, due["due_at"], {"due": pd.Series(1.0, index=due.index), "done": done_on}, "activities")
    todo = due[c.period.contains(due["due_at"]).fillna(False).to_numpy(dtype=bool) & due["done_at"].isna()]
    todo = todo.sort_values("due_at")[["activity_id", "type", "account_id", "opportunity_id", "owner", "due_at"]]
    ql = _qualified_leads(c)
    qf = c.flow(ql, ql["qualified_at"], {"n": pd.Series(1.0, index=ql.index)}, "opportunities")
    ql_p = ql[c.period.contains(ql["qualified_at"]).fillna(False).to_numpy(dtype=bool)]
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
    hq = h[h["stage"].isin(q_stages)]
    first = hq.groupby("opportunity_id", sort=False)["changed_at"].min()
    o = crm.opportunities
    at = o["opportunity_id"].map(first)
    no_hist = ~o["opportunity_id"].isin(h["opportunity_id"]) & o["stage"].isin(q_stages)
    at = at.where(~no_hist, o["created_at"])
    out = o.assign(qualified_at=pd.to_datetime(at))
    return out[out["qualified_at"].notna()]


# -------------------------------------------------------------- assembly
_BUILDERS = {
    "sales_activity": _sales_activity,
    "organisation": _organisation,
    "data_health": _data_health,
    "field_dynamics": _field_dynamics,
}


def _vec(s: pd.Series | None, members: list, fill: float) -> np.ndarray:
    if s is None or not len(s):
        return np.full(len(members), fill, dtype=float)
    return s.groupby(level=0).sum().reindex(members).fillna(fill).to_numpy(dtype=float)


def _assemble(c: _Ctx, specs: list[_TileSpec], members: list) -> list[list[Tile]]:
    """Tiles of every member (vectorised over members; one list of tiles per member)."""
    n = len(members)
    cols: list[dict[str, Any]] = []
    for s in specs:
        target = _vec(s["target"], members, np.nan) if s.get("target") is not None else np.full(n, np.nan)
        if "flow" in s:
            g, col = s["flow"]
            spark = c.dense(g, col, members)
        elif "ratio" in s:
            g, num, den = s["ratio"]
            spark = np.asarray(_safe_div(c.dense(g, num, members), c.dense(g, den, members)), dtype=float).reshape(
                n, -1
            )
        else:
            fill = np.nan if s["unit"] == "ratio" else 0.0
            spark = _vec(s["snapshot"], members, fill)[:, None]
        value = spark[:, -1]
        kpi = s.get("kpi")
        judged = value
        if kpi == "attainment":
            judged = _safe_div(value, target * c.elapsed)
        elif s.get("trend"):
            judged = _trend(spark)
        elif "status_ratio" in s:
            g, num, den = s["status_ratio"]
            judged = _safe_div(c.dense(g, num, members)[:, -1], c.dense(g, den, members)[:, -1])
        elif "share_of" in s:
            judged = _safe_div(value, _vec(s["share_of"], members, 0.0))
        elif s.get("ratio_to_target"):
            judged = _safe_div(value, target)
        elif s["key"] == "weighted_pipeline":
            gw, colw = s["won"]
            remaining = np.clip(target - c.dense(gw, colw, members)[:, -1], 0, None)
            pipe = _vec(s["pipeline"], members, 0.0)
            judged = np.where(
                remaining > 0, pipe / np.where(remaining > 0, remaining, 1), np.where(target >= 0, np.inf, np.nan)
            )
        judged = np.asarray(judged, dtype=float).reshape(-1)
        df, table = s["drill"]
        cols.append(
            {
                "s": s,
                "spark": spark,
                "value": value,
                "target": target,
                "judged": judged,
                "source": df,
                "rows": c.rows(df, table),
            }
        )
    full_idx, last_idx = pd.Index(c.labels), pd.Index(c.labels[-1:])
    empty = np.arange(0)
    out = []
    for i, who in enumerate(members):
        tiles = []
        for col in cols:
            s = col["s"]
            spark = col["spark"][i]
            t = col["target"][i]
            j = col["judged"][i]
            kpi = s.get("kpi")
            tiles.append(
                Tile(
                    key=s["key"],
                    label=s["label"],
                    value=float(col["value"][i]),
                    target=None if t != t else float(t),
                    unit=s["unit"],
                    status=c.lights.traffic_light(kpi, j) if kpi else "grey",
                    status_value=float(j),
                    _spark=spark,
                    _spark_index=full_idx if len(spark) > 1 else last_idx,
                    action=s.get("action", ""),
                    _source=col["source"],
                    _rows=col["rows"].get(who, empty),
                )
            )
        if len(tiles) > _MAX_TILES:  # pragma: no cover - guarded by design
            raise AssertionError("a dashboard has at most 7 tiles")
        out.append(tiles)
    return out


def _resolve(crm: CRM, which: str, level: str, period: object) -> Period:
    if which not in DASHBOARDS:
        raise ParameterError(f"which={which!r} is not a dashboard; use one of {', '.join(DASHBOARDS)}")
    if level not in LEVELS:
        raise ParameterError(f"level={level!r}: use one of {', '.join(LEVELS)}")
    if period is None:
        return period_of(crm.as_of_date, "quarter", crm.playbook)
    if isinstance(period, Period):
        return period
    if isinstance(period, str) and period.lower() in ("month", "quarter", "half", "year"):
        return period_of(crm.as_of_date, period.lower(), crm.playbook)  # type: ignore[arg-type]
    return parse_period(str(period), crm.playbook)


def _scope(crm: CRM, level: str, who: str) -> CRM:
    """The snapshot restricted to one member's deals (with their history), orders, activities and accounts."""
    col = LEVELS[level]
    org = _org_map(crm)
    t = crm.tables
    o = _with_groups(t["opportunities"], crm, [col], table="opportunities", org=org)
    keep_o = (o[col] == who).fillna(False).to_numpy(dtype=bool)
    if col == "owner":
        owners = {who}
    else:
        owners = set(org.index[(org[col] == who).fillna(False).to_numpy(dtype=bool)]) | set(o.loc[keep_o, "owner"])
    if (
        not keep_o.any()
        and not owners & set(t["orders"]["owner"].dropna())
        and not owners & set(t["activities"]["owner"])
    ):
        known = sorted(set(o[col].dropna().astype(str)))
        raise ParameterError(
            f"who={who!r} is not a {level} of this CRM; known: {', '.join(known[:10])}"
            + (" ..." if len(known) > 10 else "")
        )
    out = dict(t)
    out["opportunities"] = t["opportunities"][keep_o]
    ids = set(out["opportunities"]["opportunity_id"])
    out["history"] = t["history"][t["history"]["opportunity_id"].isin(ids)]
    for name in ("orders", "activities", "accounts"):
        df = t[name]
        out[name] = df[df["owner"].isin(owners)] if "owner" in df else df
    # contacts are kept whole: their owner is resolved by the completeness check itself
    present = {n: out[n] for n in out if crm.has(n) or n == "opportunities"}
    return CRM(present, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)


def dashboard(
    crm: CRM,
    which: Which = "sales_activity",
    level: Level = "rep",
    who: str | None = None,
    period: str | Period | None = None,
    *,
    history: int = 6,
) -> Dashboard:
    """One dashboard for one rep, team or business unit (``who``), or the company (``who=None``).

    Parameters
    ----------
    crm : CRM
    which : {"sales_activity", "organisation", "data_health", "field_dynamics"}
    level : {"rep", "team", "business_unit"}
    who : str, optional
        The rep's name, the team or the business unit; ``None`` = everyone together.
    period : str or Period, optional
        The period of the flow figures (``"2026-Q4"``, ``"2026-11"``...) or a frequency
        (the period of that frequency holding the snapshot date); default: the current quarter.
    history : int
        Number of periods in each sparkline (the current one included).

    Returns
    -------
    Dashboard
        Its ``tiles`` (at most seven :class:`Tile`), ``to_frame()`` for a table.
    """
    p = _resolve(crm, which, level, period)
    if who is None:
        c = _Ctx(crm, "company", p, history)
        label = _ALL
    else:
        c = _Ctx(_scope(crm, level, str(who)), level, p, history, full=crm)
        label = str(who)
    specs, _ = _BUILDERS[which](c)
    tiles = _assemble(c, specs, [label])[0]
    return Dashboard(
        name=which,
        title=DASHBOARDS[which],
        level=level if who is not None else "company",
        who=label,
        period=p.label,
        as_of=crm.as_of_date,
        tiles=tuple(tiles),
    )


def dashboards(
    crm: CRM,
    which: Which = "sales_activity",
    level: Level = "rep",
    period: str | Period | None = None,
    *,
    history: int = 6,
) -> dict[str, Dashboard]:
    """The dashboard of every member of ``level`` at once (computed in one pass; same tiles as :func:`dashboard`).

    Returns
    -------
    dict
        Member name -> :class:`Dashboard`, sorted by name.
    """
    p = _resolve(crm, which, level, period)
    c = _Ctx(crm, level, p, history)
    specs, members = _BUILDERS[which](c)
    members = sorted(str(m) for m in members if m is not None and m == m and m != "(none)")
    tiles = _assemble(c, specs, members)
    return {
        m: Dashboard(
            name=which,
            title=DASHBOARDS[which],
            level=level,
            who=m,
            period=p.label,
            as_of=crm.as_of_date,
            tiles=tuple(t),
        )
        for m, t in zip(members, tiles, strict=True)
    }
