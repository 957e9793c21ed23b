"""Figures of the KPI module: sparklines, a dashboard's tile grid, cycle curves and customer status.

Each function returns a ``plotly.graph_objects.Figure`` and never shows it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from forecastkit.kpi.dashboards import Dashboard, Tile

__all__ = ["STATUS_COLOURS", "plot_sparkline", "plot_dashboard", "plot_cycle_survival", "plot_customer_status"]

#: Sober traffic-light colours (domain section 6).
STATUS_COLOURS = {"green": "#2e7d32", "orange": "#ef6c00", "red": "#c62828", "grey": "#9e9e9e"}
_CURVE_NAMES = {
    "still_open": "Still open (Kaplan-Meier)",
    "won": "Won (cumulative incidence)",
    "lost": "Lost (cumulative incidence)",
}


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "amount":
        return f"{value:,.0f}"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def plot_sparkline(tile: Tile, *, height: int = 80, width: int = 220) -> go.Figure:
    """A tile's sparkline: a thin line in the tile's status colour, no axes."""
    s = tile.sparkline
    fig = go.Figure(
        go.Scatter(
            x=list(s.index),
            y=s.to_numpy(),
            mode="lines+markers",
            line={"color": STATUS_COLOURS.get(tile.status, "#9e9e9e"), "width": 2},
            marker={"size": 4},
            hovertemplate="%{x}: %{y:,.2f}<extra></extra>",
        )
    )
    fig.update_layout(
        height=height,
        width=width,
        margin={"l": 4, "r": 4, "t": 4, "b": 4},
        showlegend=False,
        xaxis={"visible": False},
        yaxis={"visible": False},
        plot_bgcolor="white",
    )
    return fig


def plot_dashboard(dashboard: Dashboard, *, columns: int = 4) -> go.Figure:
    """The dashboard as a grid of tiles: label, value (coloured by status), target, sparkline."""
    tiles = dashboard.tiles
    rows = max(1, math.ceil(len(tiles) / columns))
    fig = make_subplots(
        rows=rows, cols=columns, subplot_titles=[t.label for t in tiles], vertical_spacing=0.25, horizontal_spacing=0.06
    )
    for i, t in enumerate(tiles):
        r, c = i // columns + 1, i % columns + 1
        colour = STATUS_COLOURS.get(t.status, "#9e9e9e")
        s = t.sparkline
        fig.add_trace(
            go.Scatter(
                x=list(s.index),
                y=s.to_numpy(),
                mode="lines+markers",
                line={"color": colour},
                showlegend=False,
                hovertemplate="%{x}: %{y:,.2f}<extra></extra>",
            ),
            row=r,
            col=c,
        )
        text = f"<b>{_fmt(t.value, t.unit)}</b>"
        if t.target is not None:
            text += f"<br>target {_fmt(t.target, t.unit)}"
        fig.add_annotation(
            text=text,
            xref="x domain" if i == 0 else f"x{i + 1} domain",
            yref="y domain" if i == 0 else f"y{i + 1} domain",
            x=0.02,
            y=0.98,
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"color": colour, "size": 14},
            align="left",
        )
        fig.update_xaxes(visible=False, row=r, col=c)
        fig.update_yaxes(visible=False, row=r, col=c)
    fig.update_layout(
        title=f"{dashboard.title} - {dashboard.who} - {dashboard.period}",
        height=230 * rows,
        margin={"t": 80},
        plot_bgcolor="white",
    )
    return fig


def plot_cycle_survival(
    curves: pd.DataFrame, *, title: str = "Sales cycle: deals still open, won and lost"
) -> go.Figure:
    """Kaplan-Meier and cumulative-incidence curves from :func:`forecastkit.kpi.cycle.cycle_survival`."""
    fig = go.Figure()
    colours = {"still_open": "#455a64", "won": STATUS_COLOURS["green"], "lost": STATUS_COLOURS["red"]}
    group_cols = [c for c in curves.columns if c not in ("curve", "days", "estimate", "lower", "upper")]
    for key, g in curves.groupby([*group_cols, "curve"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        curve = key[-1]
        label = _CURVE_NAMES.get(curve, str(curve))
        prefix = ", ".join(str(k) for k in key[:-1] if k != "all")
        name = f"{prefix}: {label}" if prefix else label
        fig.add_trace(
            go.Scatter(
                x=g["days"],
                y=g["estimate"],
                mode="lines",
                line_shape="hv",
                name=name,
                line={"color": colours.get(curve)},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=np.r_[g["days"], g["days"][::-1]],
                y=np.r_[g["upper"], g["lower"][::-1]],
                fill="toself",
                line={"width": 0},
                fillcolor=colours.get(curve, "#999"),
                opacity=0.15,
                hoverinfo="skip",
                showlegend=False,
            )
        )
    fig.add_hline(y=0.5, line_dash="dot", line_color="#999")
    fig.update_layout(
        title=title,
        xaxis_title="days since creation",
        yaxis_title="share of deals",
        yaxis_range=[0, 1],
        plot_bgcolor="white",
    )
    return fig


def plot_customer_status(activity: pd.DataFrame) -> go.Figure:
    """Customers by status (from :func:`forecastkit.kpi.customers.customer_activity`), with their mean P(alive)."""
    g = activity.groupby("status", observed=True).agg(customers=("account_id", "size"), p_alive=("p_alive", "mean"))
    order = [s for s in ("active", "inactive", "lost", "one_off") if s in g.index]
    g = g.reindex(order)
    colours = {
        "active": STATUS_COLOURS["green"],
        "inactive": STATUS_COLOURS["orange"],
        "lost": STATUS_COLOURS["red"],
        "one_off": STATUS_COLOURS["grey"],
    }
    fig = go.Figure(
        go.Bar(
            x=order,
            y=g["customers"],
            marker_color=[colours[s] for s in order],
            text=[f"P(alive) {p:.0%}" if p == p else "" for p in g["p_alive"]],
            textposition="outside",
        )
    )
    fig.update_layout(
        title="Customers by ordering status (usual-cycle rule) and mean BG/NBD P(alive)",
        yaxis_title="customers",
        plot_bgcolor="white",
    )
    return fig
