"""The Kanban view of the pipeline and the scorecard figure.

:func:`kanban` is the data step (one card per open deal with its flag),
:func:`plot_kanban` draws it as a plotly table (columns = stages) and
:func:`kanban_html` as a self-contained HTML block for notebooks and reports.
Every text coming from the CRM (deal names, next steps, owners) is escaped with
:func:`html.escape`, so a deal called ``<script>`` shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import stage_spells
from forecastkit.hygiene._deals import open_deal_frame, select
from forecastkit.hygiene.review import CHECKS, _review

__all__ = ["kanban", "plot_kanban", "kanban_html", "plot_scorecard", "FLAG_COLORS"]

#: Sober traffic-light colours (card background, text accent).
FLAG_COLORS: dict[str, str] = {"red": "#f8d7da", "orange": "#fde8c8", "green": "#d8f0dc", "grey": "#eeeeee"}
_ACCENT = {"red": "#a61b29", "orange": "#9a5b00", "green": "#1d6b2f", "grey": "#555555"}
_DEAL_CHECKS = ("aging", "missing_fields", "next_steps", "wip", "cadence", "visit_reports")


def kanban(
    crm: CRM,
    owner: str | Iterable[str] | None = None,
    *,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """One card per open deal, with its red / orange / green flag from the hygiene checks.

    The flag is the worst severity among the deal's :func:`review` problems
    (``red``: no or overdue next step, aging past the requalify/abandon ratio;
    ``orange``: aging past the cap, undated next step, missing mandatory
    fields, WIP close-out candidate, missed cadence steps, missing visit
    reports); ``green`` when the deal has none.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    owner, team : str or list of str, optional
        Keep only these owners / teams.

    Returns
    -------
    DataFrame
        One row per open deal with a known stage, in stage order then highest
        value at risk first: ``opportunity_id, owner, team, name, stage,
        stage_order, amount, probability, value_at_risk, days_in_stage,
        next_step, next_step_date, flag, issues`` (the problems, ``"; "``-separated).
    """
    spells = stage_spells(crm)
    d = select(open_deal_frame(crm, spells), owner, team).reset_index(drop=True)
    d = d[d["stage_order"].notna().to_numpy()].reset_index(drop=True)
    rv = _review(crm, d, spells, None, None, tuple(c for c in CHECKS if c in _DEAL_CHECKS))
    rv = rv[rv["opportunity_id"].notna().to_numpy(bool)]
    red = rv[rv["severity"] == "red"].groupby("opportunity_id").size()
    issues = rv.groupby("opportunity_id", sort=False)["problem"].agg(lambda s: "; ".join(s.astype(str)))
    cards = d[["opportunity_id", "owner", "team", "name", "stage", "stage_order", "amount", "probability"]].copy()
    cards["value_at_risk"] = cards["amount"] * cards["probability"]
    cards["days_in_stage"] = d["days_in_stage"]
    cards["next_step"] = d["next_step"]
    cards["next_step_date"] = d["next_step_date"]
    ids = cards["opportunity_id"]
    has_issue = ids.isin(issues.index).to_numpy(bool)
    has_red = ids.isin(red.index).to_numpy(bool)
    cards["flag"] = pd.array(np.where(has_red, "red", np.where(has_issue, "orange", "green")), dtype="string")
    cards["issues"] = pd.array(ids.map(issues).fillna("").to_numpy(dtype=object), dtype="string")
    cards["stage_order"] = cards["stage_order"].astype("int64")
    cards = cards.sort_values(
        ["stage_order", "value_at_risk", "opportunity_id"],
        ascending=[True, False, True],
        na_position="last",
        kind="stable",
    )
    return cards.reset_index(drop=True)


def _card_text(row: pd.Series, currency: str) -> str:
    e = html.escape
    date = "" if pd.isna(row["next_step_date"]) else f"{row['next_step_date']:%Y-%m-%d}"
    step = "" if pd.isna(row["next_step"]) else str(row["next_step"])
    nxt = f"{date} {step}".strip() or "no next step"
    amount = "" if pd.isna(row["amount"]) else f"{row['amount']:,.0f} {currency}".strip()
    age = "" if pd.isna(row["days_in_stage"]) else f"{row['days_in_stage']:.0f} d in stage"
    return (
        f"<b>{e(str(row['name']) if not pd.isna(row['name']) else str(row['opportunity_id']))}</b><br>"
        f"{e(str(row['owner']))} - {e(amount)}<br>{e(age)}<br>next: {e(nxt)}"
    )


def _columns(
    cards: pd.DataFrame, stages: list[str], max_cards: int
) -> tuple[list[list[str]], list[list[str]], list[int]]:
    texts, flags, counts = [], [], []
    for st in stages:
        c = cards[cards["stage"] == st]
        counts.append(len(c))
        texts.append([_card_text(r, "") for _, r in c.head(max_cards).iterrows()])
        flags.append(list(c["flag"].head(max_cards).astype(str)))
    return texts, flags, counts


def plot_kanban(cards: pd.DataFrame, *, stages: list[str] | None = None, max_cards: int = 12) -> go.Figure:
    """The Kanban board as a plotly table: one column per stage, one coloured cell per card.

    Parameters
    ----------
    cards : DataFrame
        The output of :func:`kanban`.
    stages : list of str, optional
        Column order (default: the stages present, in ``stage_order``).
    max_cards : int
        Cards shown per column (highest value at risk first); the header gives the total.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    if stages is None:
        stages = list(cards.sort_values("stage_order")["stage"].drop_duplicates().astype(str))
    texts, flags, counts = _columns(cards, stages, max_cards)
    depth = max((len(t) for t in texts), default=0)
    cells = [t + [""] * (depth - len(t)) for t in texts]
    fills = [[FLAG_COLORS.get(f, "#ffffff") for f in fl] + ["#ffffff"] * (depth - len(fl)) for fl in flags]
    amounts = [cards.loc[cards["stage"] == st, "amount"].sum() for st in stages]
    header = [
        f"<b>{html.escape(st.replace('_', ' ').capitalize())}</b><br>{n} deals - {a:,.0f}"
        for st, n, a in zip(stages, counts, amounts, strict=True)
    ]
    fig = go.Figure(
        go.Table(
            header={"values": header, "fill_color": "#f2f2f2", "align": "left"},
            cells={"values": cells, "fill_color": fills, "align": "left", "height": 70},
        )
    )
    fig.update_layout(
        title="Pipeline Kanban (red: act now, orange: fix this week, green: on track)",
        height=max(300, 120 + 75 * depth),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


def kanban_html(cards: pd.DataFrame, *, stages: list[str] | None = None, max_cards: int = 12) -> str:
    """The Kanban board as a self-contained HTML block (all CRM text escaped).

    Parameters
    ----------
    cards : DataFrame
        The output of :func:`kanban`.
    stages : list of str, optional
        Column order (default: the stages present, in ``stage_order``).
    max_cards : int
        Cards shown per column; a last line says how many more there are.

    Returns
    -------
    str
        HTML (display it with ``IPython.display.HTML``).
    """
    if stages is None:
        stages = list(cards.sort_values("stage_order")["stage"].drop_duplicates().astype(str))
    texts, flags, counts = _columns(cards, stages, max_cards)
    cols = []
    for st, tx, fl, n in zip(stages, texts, flags, counts, strict=True):
        items = "".join(
            f'<div style="background:{FLAG_COLORS.get(f, "#fff")};border-left:4px solid {_ACCENT.get(f, "#555")};'
            f'margin:4px 0;padding:4px 6px;font-size:12px">{t}</div>'
            for t, f in zip(tx, fl, strict=True)
        )
        more = f'<div style="font-size:11px;color:#666">+ {n - len(tx)} more</div>' if n > len(tx) else ""
        title = html.escape(st.replace("_", " ").capitalize())
        cols.append(
            f'<div style="flex:1;min-width:170px;margin:0 4px"><div style="font-weight:bold">{title} ({n})</div>'
            f"{items}{more}</div>"
        )
    return '<div style="display:flex;align-items:flex-start">' + "".join(cols) + "</div>"


def plot_scorecard(sc: pd.DataFrame) -> go.Figure:
    """The scorecard as a table: one row per owner, one column per KPI, cells coloured by light.

    Parameters
    ----------
    sc : DataFrame
        The output of :func:`~forecastkit.hygiene.scorecard`.

    Returns
    -------
    plotly.graph_objects.Figure
    """
    from forecastkit.hygiene.scorecard import KPIS

    kpis = [k for k in KPIS if k in set(sc["kpi"].astype(str))]
    owners = list(dict.fromkeys(sc["owner"].astype(str)))
    val = sc.pivot(index="owner", columns="kpi", values="value").reindex(index=owners, columns=kpis)
    light = sc.pivot(index="owner", columns="kpi", values="light").reindex(index=owners, columns=kpis)

    def fmt(k: str, v: float) -> str:
        if pd.isna(v):
            return "-"
        return f"{v:.0f}" if k == "open_deals" else f"{v:.0%}"

    values = [[html.escape(o) for o in owners]] + [[fmt(k, v) for v in val[k]] for k in kpis]
    fills = [["#ffffff"] * len(owners)] + [
        [FLAG_COLORS.get(str(x), "#ffffff") if k != "open_deals" else "#ffffff" for x in light[k]] for k in kpis
    ]
    header = ["Owner"] + [KPIS[k] for k in kpis]
    fig = go.Figure(
        go.Table(header={"values": header, "fill_color": "#f2f2f2"}, cells={"values": values, "fill_color": fills})
    )
    fig.update_layout(
        title="Hygiene scorecard per owner",
        height=max(250, 80 + 28 * len(owners)),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig
