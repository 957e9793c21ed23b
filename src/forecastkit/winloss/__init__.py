"""Win/loss analysis: what wins and loses deals, why deals are lost, and where each rep loses them.

* :func:`~forecastkit.winloss.drivers.drivers` - odds ratios (statsmodels) with 95% intervals and
  permutation importance (scikit-learn), features taken when deals left a stage;
* :func:`~forecastkit.winloss.reasons.loss_reasons` - Pareto of loss reasons, no-decision and abandoned deals;
* :func:`~forecastkit.winloss.coaching.coaching` - rep vs peers, team vs company, the largest credible gap;
* :func:`~forecastkit.winloss.review.win_loss_review` - the one-row-per-deal review sheet;
* :mod:`~forecastkit.winloss.plot` - forest plot, Pareto, funnel.
"""

__all__ = [
    "CoachingReport",
    "DriversResult",
    "LossReasons",
    "coaching",
    "drivers",
    "loss_reasons",
    "plot_drivers",
    "plot_funnel",
    "plot_loss_reasons",
    "stage_exit_features",
    "win_loss_review",
]

_WHERE = {
    "CoachingReport": "coaching",
    "coaching": "coaching",
    "DriversResult": "drivers",
    "drivers": "drivers",
    "LossReasons": "reasons",
    "loss_reasons": "reasons",
    "plot_drivers": "plot",
    "plot_funnel": "plot",
    "plot_loss_reasons": "plot",
    "stage_exit_features": "features",
    "win_loss_review": "review",
}


def __getattr__(name: str):  # lazy: statsmodels, scikit-learn and plotly load only when used
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(f"forecastkit.winloss.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'forecastkit.winloss' has no attribute {name!r}")
