"""Win probabilities recalibrated to history.

* :mod:`~forecastkit.probability.stages` - stage (and stage x age) win
  probabilities counted from history, with empirical-Bayes shrinkage and intervals;
* :mod:`~forecastkit.probability.features` - point-in-time deal features and the
  leak-proof feature registry;
* :mod:`~forecastkit.probability.model` - :class:`WinModel`, a calibrated per-deal score;
* :mod:`~forecastkit.probability.calibration` - Brier, skill, log loss, AUC, ECE, reliability;
* :mod:`~forecastkit.probability.plot` - the figures.
"""

__all__ = [
    "CalibrationReport",
    "FEATURES",
    "FORBIDDEN_FEATURES",
    "WinModel",
    "calibration_report",
    "holdout_predictions",
    "plot_reliability",
    "plot_stage_probabilities",
    "point_in_time_features",
    "stage_age_probabilities",
    "stage_probabilities",
    "training_rows",
]

_WHERE = {
    "CalibrationReport": "calibration",
    "calibration_report": "calibration",
    "holdout_predictions": "calibration",
    "FEATURES": "features",
    "FORBIDDEN_FEATURES": "features",
    "point_in_time_features": "features",
    "training_rows": "features",
    "WinModel": "model",
    "plot_reliability": "plot",
    "plot_stage_probabilities": "plot",
    "stage_age_probabilities": "stages",
    "stage_probabilities": "stages",
}


def __getattr__(name: str):  # lazy: scikit-learn and plotly load only when used
    import importlib

    if name in _WHERE:
        return getattr(importlib.import_module(f"forecastkit.probability.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'forecastkit.probability' has no attribute {name!r}")
