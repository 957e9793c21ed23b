"""KPIs, unit economics and the four B2B dashboards.

* :mod:`~forecastkit.kpi.sales` - win rate, conversion by stage, deal size, velocity,
  pipeline coverage, weighted and new pipeline (``f(crm, period=, by=)`` -> tidy frame);
* :mod:`~forecastkit.kpi.cycle` - sales cycle, closed-only and censoring-aware
  (Kaplan-Meier, Aalen-Johansen);
* :mod:`~forecastkit.kpi.economics` - CAC, LTV, LTV/CAC, payback, NRR, GRR, churn; the
  shifted-beta-geometric and BG/NBD customer-base models;
* :mod:`~forecastkit.kpi.customers` - inactive and lost customers by their usual ordering cycle;
* :mod:`~forecastkit.kpi.dashboards` - the four dashboards as KPI tiles;
* :mod:`~forecastkit.kpi.plot` - the figures.

Forecast accuracy is :func:`forecastkit.forecast.accuracy.forecast_accuracy`.
"""

from forecastkit.kpi.customers import customer_activity, customer_churn
from forecastkit.kpi.cycle import cycle_data, cycle_survival, sales_cycle
from forecastkit.kpi.dashboards import Dashboard, Tile, dashboard, dashboards
from forecastkit.kpi.economics import (
    BetaGeometricNBD,
    ShiftedBetaGeometric,
    fit_bgnbd,
    fit_sbg,
    nrr,
    rfm_summary,
    unit_economics,
)
from forecastkit.kpi.plot import plot_customer_status, plot_cycle_survival, plot_dashboard, plot_sparkline
from forecastkit.kpi.sales import (
    conversion,
    deal_size,
    historical_stage_win_rates,
    new_pipeline,
    pipeline_coverage,
    velocity,
    weighted_pipeline,
    win_rate,
)

__all__ = [
    "BetaGeometricNBD",
    "Dashboard",
    "ShiftedBetaGeometric",
    "Tile",
    "conversion",
    "customer_activity",
    "customer_churn",
    "cycle_data",
    "cycle_survival",
    "dashboard",
    "dashboards",
    "deal_size",
    "fit_bgnbd",
    "fit_sbg",
    "historical_stage_win_rates",
    "new_pipeline",
    "nrr",
    "pipeline_coverage",
    "plot_customer_status",
    "plot_cycle_survival",
    "plot_dashboard",
    "plot_sparkline",
    "rfm_summary",
    "sales_cycle",
    "unit_economics",
    "velocity",
    "weighted_pipeline",
    "win_rate",
]
