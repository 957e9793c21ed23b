"""forecastkit: honest B2B sales forecasts and coaching material from a CRM export.

>>> import forecastkit as fk
>>> crm = fk.load("data/sample")            # doctest: +SKIP
>>> crm.as_of("2025-06-30").open_deals      # doctest: +SKIP
"""

from importlib.metadata import PackageNotFoundError, version

from forecastkit import errors, periods
from forecastkit.data import CRM, LoadReport, load
from forecastkit.errors import ForecastkitError
from forecastkit.periods import Period, parse_period
from forecastkit.playbook import Playbook

try:
    __version__ = version("forecastkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "CRM",
    "ForecastkitError",
    "LoadReport",
    "Period",
    "Playbook",
    "__version__",
    "errors",
    "load",
    "parse_period",
    "periods",
]


# Public analysis functions, imported on first use so that `import forecastkit` stays fast.
_LAZY = {
    # probability
    "stage_probabilities": "forecastkit.probability.stages",
    "stage_age_probabilities": "forecastkit.probability.stages",
    "WinModel": "forecastkit.probability.model",
    "calibration_report": "forecastkit.probability.calibration",
    # forecast
    "forecast": "forecastkit.forecast.forecast",
    "forecast_accuracy": "forecastkit.forecast.accuracy",
    "backtest": "forecastkit.forecast.backtest",
    "pipeline_changes": "forecastkit.forecast.changes",
    # win/loss
    "drivers": "forecastkit.winloss.drivers",
    "loss_reasons": "forecastkit.winloss.reasons",
    "coaching": "forecastkit.winloss.coaching",
    "win_loss_review": "forecastkit.winloss.review",
    # KPIs and dashboards
    "win_rate": "forecastkit.kpi.sales",
    "conversion": "forecastkit.kpi.sales",
    "deal_size": "forecastkit.kpi.sales",
    "sales_cycle": "forecastkit.kpi.cycle",
    "cycle_survival": "forecastkit.kpi.cycle",
    "velocity": "forecastkit.kpi.sales",
    "pipeline_coverage": "forecastkit.kpi.sales",
    "weighted_pipeline": "forecastkit.kpi.sales",
    "new_pipeline": "forecastkit.kpi.sales",
    "unit_economics": "forecastkit.kpi.economics",
    "customer_activity": "forecastkit.kpi.customers",
    "dashboard": "forecastkit.kpi.dashboards",
    "dashboards": "forecastkit.kpi.dashboards",
    "customer_churn": "forecastkit.kpi.customers",
    "fit_sbg": "forecastkit.kpi.economics",
    "fit_bgnbd": "forecastkit.kpi.economics",
    # diagnosis
    "diagnose": "forecastkit.diagnosis.cases",
}
_SUBMODULES = {
    "sample": "forecastkit.data.sample",
    "hygiene": "forecastkit.hygiene",
    "adapters": "forecastkit.adapters",
    "timeline": "forecastkit.data.timeline",
    "report": "forecastkit.report",
    "diagnosis": "forecastkit.diagnosis",
    "winloss": "forecastkit.winloss",
    "kpi": "forecastkit.kpi",
    "probability": "forecastkit.probability",
}
__all__ += sorted(_LAZY) + sorted(set(_SUBMODULES) - set(__all__))


def __getattr__(name: str):  # lazy imports of the analysis functions and subpackages
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    raise AttributeError(f"module 'forecastkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
