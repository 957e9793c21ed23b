"""The forecast: commit versus best case, the bookings distribution, accuracy, backtests, what changed.

* :mod:`~forecastkit.forecast.forecast` - :func:`forecast` and the :class:`Forecast` result;
* :mod:`~forecastkit.forecast.categories` - reps' and model categories, the cumulative roll-up;
* :mod:`~forecastkit.forecast.slips` - P(won inside the period | won), fitted on past snapshots;
* :mod:`~forecastkit.forecast.montecarlo` - the seeded Monte Carlo of bookings and the new-deal run-rate;
* :mod:`~forecastkit.forecast.accuracy` - :func:`forecast_accuracy`;
* :mod:`~forecastkit.forecast.backtest` - :func:`backtest`, leakage-free over ``crm.as_of``;
* :mod:`~forecastkit.forecast.changes` - :func:`pipeline_changes`, the "what changed" waterfall;
* :mod:`~forecastkit.forecast.plot` - the figures.

Note: ``forecastkit.forecast`` is both this subpackage and the function
:func:`~forecastkit.forecast.forecast.forecast`. Importing the subpackage makes Python
set ``forecastkit.forecast`` to the module, so the module is made callable:
``fk.forecast(crm, period="2026-Q4")`` calls the function either way.
"""

import sys as _sys
import types as _types

__all__ = [
    "Forecast",
    "PipelineChanges",
    "SlipModel",
    "backtest",
    "forecast",
    "forecast_accuracy",
    "pipeline_changes",
    "plot_backtest",
    "plot_calls",
    "plot_forecast",
    "plot_waterfall",
]

_WHERE = {
    "Forecast": "forecast",
    "forecast": "forecast",
    "PipelineChanges": "changes",
    "pipeline_changes": "changes",
    "SlipModel": "slips",
    "backtest": "backtest",
    "forecast_accuracy": "accuracy",
    "plot_backtest": "plot",
    "plot_calls": "plot",
    "plot_forecast": "plot",
    "plot_waterfall": "plot",
}


def __getattr__(name: str):  # lazy: scikit-learn and plotly load only when used
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(f"forecastkit.forecast.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'forecastkit.forecast' has no attribute {name!r}")


class _CallableModule(_types.ModuleType):
    """The subpackage, callable as :func:`~forecastkit.forecast.forecast.forecast`."""

    def __call__(self, *args, **kwargs):
        from forecastkit.forecast.forecast import forecast

        return forecast(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
