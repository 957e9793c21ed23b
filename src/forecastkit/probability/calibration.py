"""Calibration scores of win probabilities on held-out rows.

:func:`holdout_predictions` fits on what was known at a cutoff date
(``crm.as_of(cutoff)``) and scores ``(deal, as-of date)`` rows at later dates
with three (or four) probability sources side by side: the per-deal model, plain
stage history (:func:`~forecastkit.probability.stages.stage_probabilities` as of
the cutoff), the CRM defaults typed into the playbook and, for a sample company,
the generator's oracle. :func:`calibration_report` turns such a frame into scores
and a reliability table.

Definitions (``y`` in {0, 1}, ``p`` the probability, ``N`` rows):

* Brier score ``mean((p - y)^2)``; Brier skill against a reference ``1 - Brier / Brier_ref``
  (> 0: better than the reference);
* log loss ``-mean(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to ``[1e-6, 1 - 1e-6]``;
* ROC AUC (scikit-learn);
* expected calibration error ``sum_b n_b / N * |mean p_b - mean y_b|`` over ``n_bins``
  equal-width bins of ``p`` (empty bins skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from forecastkit.data.crm import CRM
from forecastkit.errors import InsufficientDataError, ParameterError, SchemaError
from forecastkit.probability.features import training_rows
from forecastkit.probability.model import WinModel
from forecastkit.probability.stages import stage_age_probabilities, stage_probabilities

__all__ = [
    "CalibrationReport",
    "calibration_report",
    "holdout_predictions",
    "brier_score",
    "expected_calibration_error",
]

_EPS = 1e-6


@dataclass(frozen=True)
class CalibrationReport:
    """Scores and reliability table of one or more probability sources.

    Attributes
    ----------
    scores : DataFrame
        One row per source: ``source, n, brier, brier_skill_vs_crm, brier_skill_vs_stage,
        log_loss, roc_auc, ece, mean_predicted, observed_rate``.
    reliability : DataFrame
        One row per source and non-empty bin: ``source, bin, p_from, p_to, n,
        mean_predicted, observed_rate, ci_lower, ci_upper`` (90% Jeffreys interval of the observed rate, 0 or 1 at the ends).
    """

    scores: pd.DataFrame
    reliability: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The scores table."""
        return self.scores

    def _repr_html_(self) -> str:
        return "<p><b>Calibration on held-out rows</b></p>" + self.scores.round(4).to_html(index=False)


def brier_score(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared difference between probabilities and outcomes."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Row-weighted mean absolute gap between mean probability and observed rate over equal-width bins."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    sp = np.bincount(b, weights=p, minlength=n_bins)
    sy = np.bincount(b, weights=y, minlength=n_bins)
    ok = n > 0
    return float(np.sum(np.abs(sp[ok] - sy[ok])) / len(y))


def calibration_report(
    predictions: pd.DataFrame,
    *,
    label: str = "won",
    sources: Sequence[str] | None = None,
    crm_col: str = "p_crm",
    stage_col: str = "p_stage",
    n_bins: int = 10,
) -> CalibrationReport:
    """Brier, Brier skill, log loss, ROC AUC, ECE and a reliability table for each probability column.

    Parameters
    ----------
    predictions : DataFrame
        One row per scored case: the 0/1 outcome in ``label`` and one column per
        probability source (e.g. the output of :func:`holdout_predictions`).
    label : str
        Outcome column (1 = won).
    sources : list of str, optional
        Probability columns to score (default: every column starting with ``p_``).
        A source is named by its column without the ``p_`` prefix.
    crm_col, stage_col : str
        Reference columns for the two Brier skill scores (NaN when absent).
    n_bins : int
        Equal-width bins of the reliability table and the ECE.

    Returns
    -------
    CalibrationReport
        ``scores`` (``source, n, brier, brier_skill_vs_crm, brier_skill_vs_stage, log_loss,
        roc_auc, ece, mean_predicted, observed_rate``) and ``reliability``
        (``source, bin, p_from, p_to, n, mean_predicted, observed_rate, ci_lower, ci_upper``).
    """
    if label not in predictions:
        raise SchemaError(f"calibration_report: no outcome column {label!r}; pass label=<the 0/1 won column>")
    cols = [c for c in predictions if str(c).startswith("p_")] if sources is None else list(sources)
    missing = [c for c in cols if c not in predictions]
    if missing or not cols:
        raise SchemaError(
            f"calibration_report: probability column(s) {missing or '(none)'} not found; "
            f"columns are {list(predictions.columns)}"
        )
    if n_bins < 2:
        raise ParameterError(f"n_bins must be at least 2, got {n_bins}")
    y_all = pd.to_numeric(predictions[label], errors="coerce").to_numpy(float)
    if np.isnan(y_all).any() or not np.isin(y_all, (0.0, 1.0)).all():
        raise SchemaError(f"calibration_report: {label!r} must hold only 0 and 1 (1 = won), without missing values")
    if len(y_all) == 0:
        raise InsufficientDataError("calibration_report: no rows to score")

    def _ref(col: str) -> float:
        if col not in predictions:
            return np.nan
        return brier_score(y_all, predictions[col].to_numpy(float))

    ref_crm, ref_stage = _ref(crm_col), _ref(stage_col)
    score_rows, rel_rows = [], []
    edges = np.linspace(0, 1, n_bins + 1)
    for c in cols:
        p = predictions[c].to_numpy(float)
        ok = ~np.isnan(p)
        y, p = y_all[ok], np.clip(p[ok], 0, 1)
        name = str(c)[2:] if str(c).startswith("p_") else str(c)
        brier = brier_score(y, p)
        pc = np.clip(p, _EPS, 1 - _EPS)
        auc = roc_auc_score(y, p) if 0 < y.sum() < len(y) else np.nan
        score_rows.append(
            {
                "source": name,
                "n": int(ok.sum()),
                "brier": brier,
                "brier_skill_vs_crm": 1 - brier / ref_crm if ref_crm > 0 else np.nan,
                "brier_skill_vs_stage": 1 - brier / ref_stage if ref_stage > 0 else np.nan,
                "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
                "roc_auc": float(auc),
                "ece": expected_calibration_error(y, p, n_bins),
                "mean_predicted": float(p.mean()),
                "observed_rate": float(y.mean()),
            }
        )
        b = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
        for i in np.unique(b):
            m = b == i
            k, n = y[m].sum(), m.sum()
            rel_rows.append(
                {
                    "source": name,
                    "bin": int(i),
                    "p_from": edges[i],
                    "p_to": edges[i + 1],
                    "n": int(n),
                    "mean_predicted": float(p[m].mean()),
                    "observed_rate": float(k / n),
                    "ci_lower": 0.0 if k == 0 else float(stats.beta.ppf(0.05, k + 0.5, n - k + 0.5)),
                    "ci_upper": 1.0 if k == n else float(stats.beta.ppf(0.95, k + 0.5, n - k + 0.5)),
                }
            )
    return CalibrationReport(pd.DataFrame(score_rows), pd.DataFrame(rel_rows))


def holdout_predictions(
    crm: CRM,
    cutoff: object,
    *,
    model: WinModel | None = None,
    freq: str = "30D",
    settle: str = "180D",
    lookback: str | None = "730D",
    oracle: Callable[[np.ndarray, pd.Timestamp], np.ndarray] | None = None,
    exclude_seen: Literal[False, True] = False,
) -> pd.DataFrame:
    """Score held-out rows: fit on ``crm.as_of(cutoff)``, predict at later as-of dates.

    The model (a clone of ``model``, default :class:`WinModel`) and the stage-history
    table are fitted on the snapshot at ``cutoff`` only; the scored rows are the
    deals open at as-of dates after ``cutoff`` (every ``freq`` up to the snapshot date
    minus ``settle``), labelled by their eventual outcome in ``crm``.

    Parameters
    ----------
    crm : CRM
        Full snapshot (labels).
    cutoff : date
        End of the training window.
    model : WinModel, optional
        Unfitted model to clone and fit.
    freq, settle : str
        Spacing of the scored as-of dates, and gap to the snapshot date.
    lookback : str or None
        Look-back of the stage-history table (see :func:`stage_probabilities`).
    oracle : callable, optional
        ``oracle(opportunity_ids, at)`` -> true probabilities (e.g. a sample company's
        ``truth.p_win``); adds ``p_oracle``. Called with ``at`` = the end of the as-of day.
    exclude_seen : bool
        Drop deals that had a training row (score only deals the model never saw).

    Returns
    -------
    DataFrame
        ``opportunity_id, as_of, stage, won, p_model, p_stage`` (stage history),
        ``p_stage_age`` (stage x age-in-stage history, :func:`stage_age_probabilities`),
        ``p_crm`` (playbook defaults) ``[, p_oracle]``. ``attrs`` holds the fitted
        ``model``, ``stage_table`` and ``stage_age_table``.
    """
    cut = pd.Timestamp(cutoff).normalize()
    train = crm.as_of(cut)
    m = clone(model) if model is not None else WinModel(freq=freq, settle=settle)
    m.fit(train)
    end = crm.as_of_date - pd.Timedelta(settle)
    start = cut + pd.Timedelta(freq)
    if start > end:
        raise InsufficientDataError(
            f"no held-out as-of dates between {start.date()} and {end.date()}: move the cutoff earlier "
            f"(snapshot {crm.as_of_date.date()}, settle {settle})"
        )
    extra = [f for f in ("stage", "days_in_stage") if f not in m.features_]
    rows = training_rows(crm, start, end, freq, settle=settle, features=[*m.features_, *extra])
    if exclude_seen:
        seen = set(training_rows(train, None, None, m.freq, settle=m.settle, features=["stage"])["opportunity_id"])
        rows = rows[~rows["opportunity_id"].isin(seen)].reset_index(drop=True)
    table = stage_probabilities(train, lookback=lookback)
    ages = stage_age_probabilities(train, lookback=lookback)
    pb = crm.playbook
    out = pd.DataFrame(
        {
            "opportunity_id": rows["opportunity_id"].to_numpy(),
            "as_of": rows["as_of"].to_numpy(),
            "stage": rows["stage"].to_numpy(),
            "won": rows["won"].to_numpy(),
            "p_model": m.predict_rows(rows),
            "p_stage": rows["stage"].map(table.set_index("stage")["p_win"]).to_numpy(float),
            "p_stage_age": _age_lookup(ages, rows["stage"].to_numpy(), rows["days_in_stage"].to_numpy(float)),
            "p_crm": rows["stage"].map({s: pb.crm_probability(s) for s in pb.stage_names}).to_numpy(float),
        }
    )
    if oracle is not None:
        p = np.full(len(out), np.nan)
        for d, idx in out.groupby("as_of").indices.items():
            p[idx] = oracle(out["opportunity_id"].to_numpy()[idx], pd.Timestamp(d) + pd.Timedelta(days=1))
        out["p_oracle"] = p
    out.attrs["model"] = m
    out.attrs["stage_table"] = table
    out.attrs["stage_age_table"] = ages
    return out


def _age_lookup(ages: pd.DataFrame, stage: np.ndarray, days: np.ndarray) -> np.ndarray:
    """``p_win`` of the age band of each (stage, days in stage) from a stage_age_probabilities table."""
    out = np.full(len(stage), np.nan)
    for st, t in ages.groupby("stage", sort=False):
        m = stage == st
        if m.any():
            lo = t["age_from"].to_numpy(float)
            idx = np.clip(np.searchsorted(lo, np.nan_to_num(days[m]), side="right") - 1, 0, len(lo) - 1)
            out[m] = t["p_win"].to_numpy(float)[idx]
    return out
