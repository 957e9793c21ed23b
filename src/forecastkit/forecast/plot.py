"""Figures of the forecast module: commit / best case vs quota, calls vs model, waterfall, backtest errors.

Each function takes the tidy result of a computation and returns a plotly ``Figure``;
none calls ``.show()``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from forecastkit.errors import SchemaError
from forecastkit.forecast.changes import PipelineChanges
from forecastkit.forecast.forecast import Forecast

__all__ = ["plot_forecast", "plot_calls", "plot_waterfall", "plot_backtest"]

_COLORS = {
    "crm": "#d62728",
    "stage": "#2ca02c",
    "model": "#1f77b4",
    "commit": "#9467bd",
    "best_case": "#c5b0d5",
    "run_rate": "#8c564b",
    "oracle": "#7f7f7f",
}


def plot_forecast(fc: Forecast) -> go.Figure:
    """Closed, commit and best case (reps' and model's) next to the P10-P50-P90 range and the quota.

    Returns
    -------
    plotly.graph_objects.Figure
        Grouped bars per view (cumulative figures, as in the summary) and a range bar
        for the distribution; a dashed line at the quota when there is one.
    """
    s = fc.summary.set_index("view")
    d = fc.distribution.iloc[0]
    fig = go.Figure()
    for col, color in (("closed_won", "#2ca02c"), ("commit", "#1f77b4"), ("best_case", "#aec7e8")):
        fig.add_bar(
            name=col.replace("_", " "), x=[f"{v} view" for v in s.index], y=s[col].to_numpy(float), marker_color=color
        )
    fig.add_bar(
        name="P50 (P10-P90)",
        x=["distribution"],
        y=[d["p50"]],
        marker_color="#ff7f0e",
        error_y=dict(type="data", symmetric=False, array=[d["p90"] - d["p50"]], arrayminus=[d["p50"] - d["p10"]]),
    )
    quota = float(fc.target["quota"].iloc[0])
    if np.isfinite(quota):
        fig.add_hline(y=quota, line_dash="dash", line_color="black", annotation_text=f"quota {quota:,.0f}")
    fig.update_layout(
        title=f"Forecast {fc.period.label} as of {fc.as_of.date()} ({fc.method})",
        barmode="group",
        yaxis_title="bookings",
        template="plotly_white",
    )
    return fig


def plot_calls(fc: Forecast, level: str = "owner") -> go.Figure:
    """Each rep's (or team's) latest commit call next to the model's expected bookings and P10-P90."""
    c = fc.calls[fc.calls["level"] == level]
    if c.empty:
        return go.Figure().update_layout(title=f"No {level} in the forecast calls", template="plotly_white")
    fig = go.Figure()
    fig.add_bar(name="call: commit", y=c["name"], x=c["call_commit"], orientation="h", marker_color=_COLORS["commit"])
    fig.add_scatter(
        name="model: expected (P10-P90)",
        y=c["name"],
        x=c["expected"],
        mode="markers",
        marker=dict(color=_COLORS["model"], size=9),
        error_x=dict(
            type="data",
            symmetric=False,
            array=(c["p90"] - c["expected"]).to_numpy(),
            arrayminus=(c["expected"] - c["p10"]).to_numpy(),
        ),
    )
    fig.update_layout(
        title=f"Calls vs model, {fc.period.label}",
        xaxis_title="bookings",
        template="plotly_white",
        height=max(300, 28 * len(c) + 120),
    )
    return fig


def plot_waterfall(changes: PipelineChanges) -> go.Figure:
    """The waterfall from the pipeline on ``start`` to the pipeline on ``end`` (stage moves left out)."""
    s = changes.summary[changes.summary["kind"] != "info"]
    measure = ["absolute" if k == "total" else "relative" for k in s["kind"]]
    y = [
        v if k != "total" or st == "start" else 0.0 for v, k, st in zip(s["amount"], s["kind"], s["step"], strict=True)
    ]
    measure[-1] = "total"
    fig = go.Figure(
        go.Waterfall(
            x=s["step"].str.replace("_", " "),
            y=y,
            measure=measure,
            text=[f"{n} deals" for n in s["deals"]],
            textposition="outside",
        )
    )
    fig.update_layout(
        title=f"Pipeline {changes.period.label}: {changes.start.date()} to {changes.end.date()}",
        yaxis_title="open pipeline dated in the period",
        template="plotly_white",
        showlegend=False,
    )
    return fig


def plot_backtest(results: pd.DataFrame, statistic: str = "median") -> go.Figure:
    """Error by checkpoint and method: the median (or mean) of ``|forecast - actual| / actual``.

    Parameters
    ----------
    results : DataFrame
        From :func:`~forecastkit.forecast.backtest.backtest`.
    statistic : {"median", "mean"}

    Returns
    -------
    plotly.graph_objects.Figure
        One line per method, checkpoints on the x axis, error as a share of actual bookings.
    """
    need = {"checkpoint", "method", "abs_pct_error"}
    if not need <= set(results.columns):
        raise SchemaError(f"plot_backtest needs the columns {sorted(need)} of backtest()")
    if statistic not in ("median", "mean"):
        raise SchemaError(f"statistic must be 'median' or 'mean', got {statistic!r}")
    order = list(dict.fromkeys(results["checkpoint"]))
    g = results.groupby(["method", "checkpoint"], sort=False)["abs_pct_error"].agg(statistic).reset_index()
    fig = go.Figure()
    for m, d in g.groupby("method", sort=False):
        d = d.set_index("checkpoint").reindex(order)
        fig.add_scatter(
            name=str(m),
            x=order,
            y=d["abs_pct_error"],
            mode="lines+markers",
            line=dict(color=_COLORS.get(str(m)), dash="dot" if m == "oracle" else None),
        )
    fig.update_layout(
        title=f"Backtest: {statistic} absolute error as a share of actual bookings",
        xaxis_title="checkpoint",
        yaxis_title="|forecast - actual| / actual",
        yaxis_tickformat=".0%",
        template="plotly_white",
    )
    return fig
