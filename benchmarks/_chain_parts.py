"""The functions the one-process chain of ``bench_scale.py`` calls, imported in one place."""

from forecastkit.diagnosis import diagnose
from forecastkit.forecast.forecast import fit_win_model, forecast
from forecastkit.hygiene import review
from forecastkit.kpi.dashboards import DASHBOARDS, dashboards
from forecastkit.probability.stages import stage_probabilities
from forecastkit.report.runner import run_report

__all__ = [
    "DASHBOARDS",
    "dashboards",
    "diagnose",
    "fit_win_model",
    "forecast",
    "review",
    "run_report",
    "stage_probabilities",
]
