"""Figures of the probability module: reliability diagram, recalibrated vs CRM probabilities.

Each function takes the tidy result of a computation and returns a plotly
``Figure``; none calls ``.show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from forecastkit.errors import SchemaError
from forecastkit.probability.calibration import CalibrationReport

__all__ = ["plot_reliability", "plot_stage_probabilities"]

_COLORS = {"model": "#1f77b4", "stage": "#2ca02c", "crm": "#d62728", "oracle": "#7f7f7f"}


def plot_reliability(report: CalibrationReport, sources: Sequence[str] | None = None) -> go.Figure:
    """Reliability diagram: observed win rate against mean predicted probability per bin, with counts.

    Parameters
    ----------
    report : CalibrationReport
        From :func:`~forecastkit.probability.calibration.calibration_report`.
    sources : list of str, optional
        Sources to draw (default all), by name (``"model"``, ``"stage"``, ``"crm"``...).

    Returns
    -------
    plotly.graph_objects.Figure
        Top: one line per source with 90% intervals of the observed rate and the
        diagonal of perfect calibration; bottom: rows per bin.
    """
    rel = report.reliability
    names = list(dict.fromkeys(rel["source"])) if sources is None else list(sources)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.05)
    fig.add_trace(
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration", line={"dash": "dot", "color": "black"}
        ),
        row=1,
        col=1,
    )
    for name in names:
        r = rel[rel["source"] == name]
        color = _COLORS.get(name)
        ece = report.scores.set_index("source")["ece"].get(name, float("nan"))
        fig.add_trace(
            go.Scatter(
                x=r["mean_predicted"],
                y=r["observed_rate"],
                mode="lines+markers",
                name=f"{name} (ECE {ece:.3f})",
                line={"color": color},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": r["ci_upper"] - r["observed_rate"],
                    "arrayminus": r["observed_rate"] - r["ci_lower"],
                },
                customdata=r[["n", "p_from", "p_to"]].to_numpy(),
                hovertemplate="bin %{customdata[1]:.1f}-%{customdata[2]:.1f}<br>predicted %{x:.3f}<br>"
                "observed %{y:.3f}<br>%{customdata[0]} rows<extra>" + name + "</extra>",
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                x=(r["p_from"] + r["p_to"]) / 2, y=r["n"], name=f"{name} rows", marker_color=color, showlegend=False
            ),
            row=2,
            col=1,
        )
    fig.update_layout(title="Reliability on held-out rows", barmode="group", template="plotly_white")
    fig.update_xaxes(title_text="predicted win probability", range=[0, 1], row=2, col=1)
    fig.update_yaxes(title_text="observed win rate", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="rows", row=2, col=1)
    return fig


def plot_stage_probabilities(table: pd.DataFrame) -> go.Figure:
    """Recalibrated stage probabilities (bars with intervals) next to the CRM's typed-in ones (markers).

    Parameters
    ----------
    table : DataFrame
        From :func:`~forecastkit.probability.stages.stage_probabilities` (any ``by``).

    Returns
    -------
    plotly.graph_objects.Figure
    """
    need = {"stage", "p_win", "ci_lower", "ci_upper", "crm_probability"}
    if not need <= set(table.columns):
        raise SchemaError(f"plot_stage_probabilities needs the columns {sorted(need)} of stage_probabilities()")
    extra = {"reached", "won", "lost", "open", "gap", "age_from", "age_to", "band_index"}
    groups = [c for c in table.columns if c not in need | extra]
    stages = list(dict.fromkeys(table["stage"]))
    fig = go.Figure()
    label = table[groups].astype(str).agg(" / ".join, axis=1) if groups else pd.Series("history", index=table.index)
    for g in dict.fromkeys(label):
        t = table[label == g]
        fig.add_trace(
            go.Bar(
                x=t["stage"],
                y=t["p_win"],
                name=f"recalibrated: {g}" if groups else "recalibrated to history",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": t["ci_upper"] - t["p_win"],
                    "arrayminus": t["p_win"] - t["ci_lower"],
                },
                customdata=t[["won", "lost", "open"]].to_numpy() if {"won", "lost", "open"} <= set(t) else None,
                hovertemplate="%{x}: %{y:.1%}<br>won %{customdata[0]}, lost %{customdata[1]}, open %{customdata[2]}"
                if {"won", "lost", "open"} <= set(t)
                else None,
            )
        )
    crm = table.drop_duplicates("stage")
    fig.add_trace(
        go.Scatter(
            x=crm["stage"],
            y=crm["crm_probability"],
            mode="markers",
            name="CRM default",
            marker={"symbol": "line-ew-open", "size": 28, "line": {"width": 3, "color": "#d62728"}},
        )
    )
    fig.update_layout(
        title="Stage win probabilities: history vs CRM defaults",
        barmode="group",
        template="plotly_white",
        yaxis={"title": "P(win)", "tickformat": ".0%", "range": [0, 1]},
        xaxis={"categoryorder": "array", "categoryarray": stages},
    )
    return fig
