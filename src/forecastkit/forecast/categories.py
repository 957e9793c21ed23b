"""Forecast categories: the reps' (``forecast_category``) and the model's, and their roll-up.

Model category of an open deal, from its probability ``p`` of being won inside the
period (``p_win x p_in_period``) and the playbook's thresholds:
``commit`` when ``p >= commit_threshold``, ``best_case`` when ``p >= best_case_threshold``,
``pipeline`` when ``p >= pipeline_threshold``, else ``omitted``. Deals already won in
the period are ``closed``.

Roll-up convention: **cumulative, as in Salesforce Collaborative Forecasts' default**
("cumulative forecast rollups"): the *commit* forecast is closed + commit deals; the
*best case* forecast is closed + commit + best case (best case **includes** commit);
the *pipeline* figure is Salesforce's "open pipeline": the open deals in commit, best
case and pipeline (closed deals excluded). *omitted* is the open amount left out.

Scope: the reps' view counts the open deals whose expected close date falls in the
period (what a CRM forecast page shows; deals dated in an earlier period are not in
it). The model's view counts the same deals plus every other open deal the model
puts at or above ``pipeline_threshold`` (e.g. a deal dated next quarter that usually
closes early).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from forecastkit.playbook import FORECAST_CATEGORIES, Playbook

__all__ = ["model_category", "rollup", "SUMMARY_COLUMNS", "OPEN_CATEGORIES"]

#: Columns of the forecast summary, cumulative (see the module docstring).
SUMMARY_COLUMNS = ("closed_won", "commit", "best_case", "pipeline", "omitted")
#: Categories of open deals, most to least certain.
OPEN_CATEGORIES = FORECAST_CATEGORIES[1:]


def model_category(p: np.ndarray | pd.Series, playbook: Playbook) -> np.ndarray:
    """Category of each open deal from its probability of being won in the period.

    Examples
    --------
    >>> from forecastkit.playbook import Playbook
    >>> model_category([0.9, 0.5, 0.2, 0.01], Playbook()).tolist()
    ['commit', 'best_case', 'pipeline', 'omitted']
    """
    x = np.nan_to_num(np.asarray(p, dtype=float), nan=0.0)
    out = np.full(len(x), "omitted", dtype=object)
    out[x >= playbook.pipeline_threshold] = "pipeline"
    out[x >= playbook.best_case_threshold] = "best_case"
    out[x >= playbook.commit_threshold] = "commit"
    return out


def rollup(closed_won: float, amounts: np.ndarray | pd.Series, categories: np.ndarray | pd.Series) -> dict[str, float]:
    """Cumulative forecast figures from open deals' amounts and categories.

    Parameters
    ----------
    closed_won : float
        Amount already won in the period.
    amounts, categories : array-like
        Amount and category (commit / best_case / pipeline / omitted) of each open deal in scope.

    Returns
    -------
    dict
        ``closed_won``, ``commit`` (closed + commit), ``best_case`` (commit + best case),
        ``pipeline`` (open commit + best case + pipeline), ``omitted``.

    Examples
    --------
    >>> rollup(100.0, [10, 20, 40, 80], ["commit", "best_case", "pipeline", "omitted"])
    {'closed_won': 100.0, 'commit': 110.0, 'best_case': 130.0, 'pipeline': 70.0, 'omitted': 80.0}
    """
    a = np.asarray(amounts, dtype=float)
    c = np.asarray(categories, dtype=object)
    by = {k: float(a[c == k].sum()) for k in OPEN_CATEGORIES}
    commit = float(closed_won) + by["commit"]
    best = commit + by["best_case"]
    return {
        "closed_won": float(closed_won),
        "commit": commit,
        "best_case": best,
        "pipeline": by["commit"] + by["best_case"] + by["pipeline"],
        "omitted": by["omitted"],
    }
