"""Figures of the win/loss analysis: odds-ratio forest plot, loss-reason Pareto, rep-vs-peers funnel.

Each function takes the result of the matching analysis and returns a
``plotly.graph_objects.Figure`` (never shown here).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from forecastkit.winloss.coaching import CoachingReport
from forecastkit.winloss.drivers import DriversResult
from forecastkit.winloss.reasons import LossReasons

__all__ = ["plot_drivers", "plot_loss_reasons", "plot_funnel"]


def plot_drivers(result: DriversResult, *, max_terms: int = 30) -> go.Figure:
    """Forest plot: odds ratio and 95% interval per term, log scale, 1 = no association.

    Terms are ordered by the feature's permutation importance; the hover shows the
    number of deals behind each estimate and its p-value.
    """
    t = result.table.head(max_terms).iloc[::-1]
    label = np.where(
        t["level"] != "", t["feature"] + " = " + t["level"].astype(str), t["feature"] + " (" + t["unit"] + ")"
    )
    color = np.where(
        t["direction"] == "wins more", "#2e7d32", np.where(t["direction"] == "wins less", "#c62828", "#757575")
    )
    fig = go.Figure(
        go.Scatter(
            x=t["odds_ratio"],
            y=label,
            mode="markers",
            marker={"color": color, "size": 9},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": t["ci_high"] - t["odds_ratio"],
                "arrayminus": t["odds_ratio"] - t["ci_low"],
            },
            customdata=np.c_[t["n_deals"], t["n_won"], t["p_value"], t["reference"]],
            hovertemplate="OR %{x:.2f}<br>%{customdata[0]} deals, %{customdata[1]} won<br>p = %{customdata[2]:.3g}"
            "<br>vs %{customdata[3]}<extra></extra>",
        )
    )
    fig.add_vline(x=1.0, line_dash="dash", line_color="#9e9e9e")
    fig.update_xaxes(type="log", title="odds ratio of winning (95% interval)")
    fig.update_layout(
        title=f"Drivers at the exit of '{result.at}' - {result.n_deals} closed deals, {result.n_won} won"
        "<br><sup>Associations, not causes</sup>",
        height=max(350, 22 * len(t) + 120),
        margin={"l": 10},
    )
    return fig


def plot_loss_reasons(result: LossReasons, *, group: str | None = None) -> go.Figure:
    """Pareto chart: lost deals per reason (bars) and cumulative share (line), for one group or overall."""
    p = result.pareto
    by = [
        c
        for c in p.columns
        if c
        not in ("loss_reason", "lost_deals", "share", "cumulative_share", "lost_amount", "amount_share", "vital_few")
    ]
    if by:
        if group is None:
            p = p.groupby("loss_reason", as_index=False)["lost_deals"].sum().sort_values("lost_deals", ascending=False)
            p["cumulative_share"] = p["lost_deals"].cumsum() / p["lost_deals"].sum()
        else:
            p = p[p[by[0]] == group]
    fig = go.Figure()
    fig.add_bar(x=p["loss_reason"], y=p["lost_deals"], name="lost deals", marker_color="#c62828")
    fig.add_scatter(
        x=p["loss_reason"],
        y=p["cumulative_share"],
        name="cumulative share",
        yaxis="y2",
        mode="lines+markers",
        line_color="#424242",
    )
    fig.update_layout(
        title="Loss reasons (Pareto)" + (f" - {group}" if group else ""),
        yaxis={"title": "lost deals"},
        yaxis2={
            "title": "cumulative share",
            "overlaying": "y",
            "side": "right",
            "range": [0, 1.05],
            "tickformat": ".0%",
        },
        legend={"orientation": "h"},
    )
    return fig


def plot_funnel(report: CoachingReport) -> go.Figure:
    """Conversion at each stage transition, rep vs peers, with the rep's 90% credible gap in the hover."""
    t = report.transitions
    x = t["stage"] + " > " + t["next_stage"]
    fig = go.Figure()
    fig.add_bar(x=x, y=t["peer_rate"], name="peers", marker_color="#90a4ae")
    colors = np.where(t["flagged"], "#c62828", "#1565c0")
    fig.add_bar(
        x=x,
        y=t["rep_rate"],
        name=report.owner,
        marker_color=colors,
        customdata=np.c_[t["rep_decided"], t["gap_low"], t["gap_high"], t["prob_worse"]],
        hovertemplate="%{y:.0%} of %{customdata[0]} deals<br>gap %{customdata[1]:+.0%} to %{customdata[2]:+.0%}"
        "<br>P(worse) %{customdata[3]:.0%}<extra></extra>",
    )
    fig.update_layout(
        barmode="group",
        title=f"{report.owner} vs peers: conversion to the next stage<br><sup>{_wrap(report.headline)}</sup>",
        yaxis={"tickformat": ".0%", "title": "moved on"},
        legend={"orientation": "h"},
    )
    return fig


def _wrap(text: str, width: int = 110) -> str:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    lines.append(cur)
    return "<br>".join(lines[:3]) + ("..." if len(lines) > 3 else "")
