"""Figures of a diagnosis: the traffic-light verdict grid and each finding's evidence against its thresholds."""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from forecastkit.diagnosis.findings import CASES, Diagnosis, Finding

__all__ = ["plot_verdict", "plot_evidence"]

_COLOURS = {"green": "#2e7d32", "orange": "#ef6c00", "red": "#c62828", "grey": "#9e9e9e"}
_LEVEL = {"green": 0, "orange": 1, "red": 2, "grey": 3}


def plot_verdict(dx: Diagnosis) -> go.Figure:
    """A grid of traffic lights: one row per scope (company first), one column per case."""
    v = dx.verdict()
    scopes = list(dict.fromkeys(v["scope"]))
    cases = sorted(CASES)
    z = np.full((len(scopes), len(cases)), 3.0)
    text = [["" for _ in cases] for _ in scopes]
    for r in v.itertuples():
        i, j = scopes.index(r.scope), cases.index(r.case)
        z[i, j] = _LEVEL[r.light]
        text[i][j] = html.escape(f"{r.status} ({r.severity})" if r.status == "detected" else r.status)
    scale = [
        [0.0, _COLOURS["green"]],
        [0.33, _COLOURS["green"]],
        [0.34, _COLOURS["orange"]],
        [0.5, _COLOURS["orange"]],
        [0.51, _COLOURS["red"]],
        [0.66, _COLOURS["red"]],
        [0.67, _COLOURS["grey"]],
        [1.0, _COLOURS["grey"]],
    ]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"{c}. {CASES[c]}" for c in cases],
            y=[html.escape(s) for s in scopes],
            text=text,
            texttemplate="%{text}",
            zmin=0,
            zmax=3,
            colorscale=scale,
            showscale=False,
            xgap=3,
            ygap=3,
            hovertemplate="%{y}<br>%{x}<br>%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Diagnosis as of {dx.as_of.date()}",
        yaxis={"autorange": "reversed"},
        height=140 + 40 * len(scopes),
        margin={"l": 160},
    )
    return fig


def plot_evidence(finding: Finding) -> go.Figure:
    """Each metric as a share of its threshold (1 = on the threshold); red where the symptom holds."""
    e = finding.evidence
    e = e[np.isfinite(e["value"].astype(float)) & np.isfinite(e["threshold"].astype(float)) & (e["threshold"] != 0)]
    ratio = e["value"].astype(float) / e["threshold"].astype(float)
    colours = [_COLOURS["red"] if h else _COLOURS["green"] for h in e["holds"]]
    hover = [
        html.escape(f"{m}: {v:.3g} (threshold {t:.3g}, {c}; {ref})")
        for m, v, t, c, ref in zip(
            e["metric"], e["value"], e["threshold"], e["comparison"], e["reference"], strict=True
        )
    ]
    fig = go.Figure(
        go.Bar(
            x=ratio,
            y=[html.escape(m) for m in e["metric"]],
            orientation="h",
            marker_color=colours,
            hovertext=hover,
            hoverinfo="text",
        )
    )
    fig.add_vline(x=1.0, line_dash="dash", line_color="#555")
    fig.update_layout(
        title=html.escape(f"Case {finding.case} - {finding.title} ({finding.scope}): {finding.status}"),
        xaxis_title="value / threshold",
        height=120 + 40 * len(e),
        margin={"l": 200},
    )
    return fig
