"""What wins and loses deals: odds ratios with honest intervals, beside a permutation importance.

:func:`drivers` takes the closed deals that reached a stage, their features as of the
moment they left it (:mod:`forecastkit.winloss.features` - never the final state),
and fits

* a logistic regression (statsmodels ``Logit``): one odds ratio per feature level
  against a reference level (the most frequent one) or per unit of a numeric
  feature, with a 95% Wald interval and a p-value, *conditional on every other
  feature in the model*; when the data separate (a level where every deal was won or
  lost) the fit falls back to Firth's penalised likelihood, with a
  :class:`~forecastkit.errors.FallbackWarning`; rare levels are grouped into
  ``"other"`` with a :class:`~forecastkit.errors.DataQualityWarning`;
* a histogram gradient-boosting classifier (scikit-learn) on the same rows, and the
  permutation importance of each feature on a held-out quarter of them (drop in ROC
  AUC when the feature is shuffled) - model-agnostic, catches interactions and
  non-linear effects the logit misses, but says nothing about direction.

These are **associations, not causes**: a feature can win deals, or only travel with
what does (good reps fill in the champion field *and* win). The result says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from forecastkit.data.crm import CRM
from forecastkit.errors import DataQualityWarning, FallbackWarning, InsufficientDataError, ParameterError
from forecastkit.periods import Period, parse_period, to_timestamp
from forecastkit.playbook import WON
from forecastkit.winloss._fit import design, fit_logit, wald_table
from forecastkit.winloss.features import FEATURES, check_features, stage_exit_features

__all__ = ["drivers", "DriversResult", "CAVEAT", "MIN_DEALS", "select_window"]

#: Fewest won and fewest lost deals for a driver analysis.
MIN_DEALS = 20
CAVEAT = (
    "These are associations, not causes: each odds ratio compares deals that differ on one feature and are "
    "alike on the others in the model; what is not in the model (rep skill, timing, the account) can explain it."
)

Window = str | Period | tuple[object, object] | pd.Timedelta | None


@dataclass(frozen=True)
class DriversResult:
    """Result of :func:`drivers`.

    Attributes
    ----------
    table : DataFrame
        One row per term: ``feature, level`` (empty for a numeric feature),
        ``reference`` (the level compared with), ``unit`` (what one step of a numeric
        feature is), ``n_deals, n_won`` (deals with that level / flag, or all deals for a
        continuous feature), ``odds_ratio, ci_low, ci_high`` (95%), ``p_value``,
        ``significant`` (p < 0.05), ``direction`` (``"wins more"`` / ``"wins less"`` /
        ``"unclear"`` when the interval covers 1), ``importance, importance_std``
        (permutation importance of the feature, repeated on every row of that feature),
        ``method`` (``logit`` or ``firth``); sorted by feature importance then odds ratio.
    importance : DataFrame
        ``feature, importance, importance_std, rank`` (drop in held-out ROC AUC when the
        feature is shuffled, mean and standard deviation over repeats).
    at : str
        The stage at whose exit features were taken.
    n_deals, n_won : int
        Closed deals analysed and how many were won.
    method : str
        ``logit`` or ``firth`` (penalised fallback).
    notes : list of str
        What was grouped, dropped or fallen back on.
    caveat : str
        Associations, not causes.
    """

    table: pd.DataFrame
    importance: pd.DataFrame
    at: str
    n_deals: int
    n_won: int
    method: str
    notes: list[str] = field(default_factory=list)
    caveat: str = CAVEAT

    def to_frame(self) -> pd.DataFrame:
        """The odds-ratio table."""
        return self.table

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>Win/loss drivers at the exit of '{self.at}'</b>: {self.n_deals} closed deals, "
            f"{self.n_won} won ({self.method}).<br><i>{self.caveat}</i></p>"
        )
        notes = "".join(f"<li>{n}</li>" for n in self.notes)
        return head + (f"<ul>{notes}</ul>" if notes else "") + self.table.to_html(index=False, float_format="%.3g")


def drivers(
    crm: CRM,
    at: str = "qualification",
    features: Sequence[str] | str | None = None,
    window: Window = None,
    *,
    min_level_deals: int = 30,
    importance: bool = True,
    n_repeats: int = 5,
    max_importance_rows: int = 20_000,
    random_state: int = 0,
) -> DriversResult:
    """Factors associated with winning, as of the moment deals left stage ``at``.

    Parameters
    ----------
    crm : CRM
        The snapshot. Closed deals (won or lost) that reached ``at`` are analysed.
    at : str
        An open stage of the playbook; features are taken just before each deal left it.
    features : list of str, optional
        Names from :data:`forecastkit.winloss.features.FEATURES`, or a preset:
        ``"attributes"`` (the default, :data:`~forecastkit.winloss.features.DEFAULT_FEATURES`:
        segment, source, product, owner, deal size band, competitor, discount band and
        the BANT/MEDDIC fields), ``"process"`` (activities, meeting share, report
        completeness, days in stage, pushes so far) or ``"attributes+process"``. Process
        features are partly consequences of the outcome (deals about to be lost stall),
        so adding them changes what the attribute odds ratios mean. A column only known
        at close raises :class:`~forecastkit.errors.LeakageError`.
    window : optional
        Which closed deals, by ``closed_at``: ``None`` (all), a fiscal period
        (``"2026-Q3"``, ``"FY2026"``), a look-back ending on the snapshot date
        (``"730D"`` or a Timedelta), or a ``(start, end)`` pair of dates (inclusive).
    min_level_deals : int
        A categorical level with fewer deals (or with only won / only lost deals) is
        grouped into ``"other"``.
    importance : bool
        Also compute the permutation importance (scikit-learn).
    n_repeats : int
        Shuffles per feature in the permutation importance.
    max_importance_rows : int
        Cap on the rows the gradient-boosting model is fitted and scored on (a seeded
        random subsample above it); the logit always uses every row.
    random_state : int
        Seed of the split, the model and the shuffles.

    Returns
    -------
    DriversResult
        ``table`` (odds ratios), ``importance``, counts, ``notes`` and the caveat.

    Raises
    ------
    LeakageError
        A requested feature is only known once a deal closes.
    InsufficientDataError
        Fewer than :data:`MIN_DEALS` won or lost deals.

    Warns
    -----
    DataQualityWarning
        Levels grouped into ``"other"``, constant or redundant features left out.
    FallbackWarning
        Separation: Firth's penalised fit was used.
    """
    names = check_features(features)
    f = stage_exit_features(crm, at, names)
    opp = crm.opportunities.set_index("opportunity_id")
    status = opp["status"].reindex(f["opportunity_id"].to_numpy()).to_numpy(dtype=object)
    closed_at = opp["closed_at"].fillna(opp["close_date"]).reindex(f["opportunity_id"].to_numpy())
    keep = np.isin(status, ("won", "lost")) & select_window(closed_at, window, crm).to_numpy()
    f = f[keep].reset_index(drop=True)
    y = (status[keep] == WON).astype(float)
    n_won, n = int(y.sum()), len(y)
    if min(n_won, n - n_won) < MIN_DEALS:
        raise InsufficientDataError(
            f"drivers at '{at}' needs at least {MIN_DEALS} won and {MIN_DEALS} lost deals that reached that stage"
            f"{'' if window is None else f' and closed in window {window!r}'}; found {n_won} won and "
            f"{n - n_won} lost. Widen the window, or choose an earlier stage"
        )
    # one BLAS thread for the design checks and the fit: a few matrix products, which oversubscribed
    # threads on a busy machine make many times slower
    with threadpool_limits(limits=1, user_api="blas"):
        d = design(f, y, names, min_level_deals)
    notes = list(d.notes)
    if d.notes:
        warnings.warn("drivers: " + "; ".join(d.notes), DataQualityWarning, stacklevel=2)
    if d.X.shape[1] == 0:
        raise InsufficientDataError(f"no feature varies among the {n} deals that left '{at}'; nothing to estimate")
    with threadpool_limits(limits=1, user_api="blas"):
        fit, reason = fit_logit(d.X, y)
    if reason is not None:
        msg = (
            f"drivers at '{at}': {reason}; used Firth's penalised logistic regression instead, which keeps the "
            "odds ratios finite (intervals are Wald intervals of the penalised fit, wide where data are thin)"
        )
        notes.append(msg)
        warnings.warn(msg, FallbackWarning, stacklevel=2)
    t = pd.concat([d.terms.reset_index(drop=True), wald_table(fit)], axis=1)
    t["significant"] = t["p_value"] < 0.05
    t["direction"] = np.where(t["ci_low"] > 1, "wins more", np.where(t["ci_high"] < 1, "wins less", "unclear"))
    t["method"] = fit.method
    used = list(dict.fromkeys(t["feature"]))
    if importance:
        imp = _permutation_importance(f, y, used, n_repeats, max_importance_rows, random_state)
    else:
        imp = pd.DataFrame({"feature": used, "importance": np.nan, "importance_std": np.nan, "rank": np.nan})
    t = t.merge(imp[["feature", "importance", "importance_std"]], on="feature", how="left")
    t["_rank"] = t["feature"].map(imp.set_index("feature")["rank"])
    t["_or"] = -np.abs(np.log(t["odds_ratio"]))
    t = t.sort_values(["_rank", "_or"], kind="stable").drop(columns=["_rank", "_or", "kind", "scale"])
    cols = [
        "feature",
        "level",
        "reference",
        "unit",
        "n_deals",
        "n_won",
        "odds_ratio",
        "ci_low",
        "ci_high",
        "p_value",
        "significant",
        "direction",
        "importance",
        "importance_std",
        "method",
    ]
    return DriversResult(t[cols].reset_index(drop=True), imp, at, n, n_won, fit.method, notes)


def select_window(dates: pd.Series, window: Window, crm: CRM) -> pd.Series:
    """Boolean mask of ``dates`` inside ``window`` (see :func:`drivers`); missing dates are outside."""
    if window is None:
        return pd.Series(True, index=dates.index)
    if isinstance(window, tuple):
        if len(window) != 2:
            raise ParameterError(f"window={window!r}: give a (start, end) pair of dates")
        a = to_timestamp(window[0], what="window start").normalize()
        b = to_timestamp(window[1], what="window end").normalize() + pd.Timedelta(days=1)
        return (dates >= a) & (dates < b)
    if isinstance(window, Period):
        return (dates >= window.start) & (dates < window.end)
    if isinstance(window, pd.Timedelta) or (isinstance(window, str) and window.strip()[-1:].upper() == "D"):
        try:
            td = pd.Timedelta(window)
        except (ValueError, TypeError):
            td = None
        if td is not None:
            end = crm.as_of_date + pd.Timedelta(days=1)
            return (dates >= end - td) & (dates < end)
    if isinstance(window, str):
        p = parse_period(window, crm.playbook)
        return (dates >= p.start) & (dates < p.end)
    raise ParameterError(
        f"window={window!r} is not understood; use None, a period such as '2026-Q3', a look-back such as "
        "'730D', or a (start, end) pair of dates"
    )


def _permutation_importance(
    f: pd.DataFrame, y: np.ndarray, names: list[str], n_repeats: int, max_rows: int, seed: int
) -> pd.DataFrame:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))
    if len(idx) > max_rows:
        idx = np.sort(rng.choice(idx, max_rows, replace=False))
    # a plain float array, not a DataFrame: scikit-learn validates and copies a DataFrame on each of the
    # n_features x n_repeats scorings (most of the time spent); the numbers are the same
    X = np.empty((len(idx), len(names)))
    cat = []
    for j, n in enumerate(names):
        col = f[n].to_numpy()[idx]
        if FEATURES[n].kind == "categorical":
            codes, _ = pd.factorize(pd.Series(col, dtype=object))
            X[:, j] = codes.astype(float)
            cat.append(True)
        else:
            X[:, j] = pd.to_numeric(pd.Series(col), errors="coerce").to_numpy(float)
            cat.append(False)
    yy = y[idx]
    strat = yy if min(yy.sum(), len(yy) - yy.sum()) >= 4 else None
    Xtr, Xte, ytr, yte = train_test_split(X, yy, test_size=0.25, random_state=seed, stratify=strat)
    model = HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        categorical_features=cat,
        early_stopping=False,
        random_state=seed,
    )
    # one OpenMP thread: on a shared machine, oversubscribed threads make predictions 10-50x slower
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(Xtr, ytr)
        if len(np.unique(yte)) < 2:
            imp_mean, imp_std = np.full(len(names), np.nan), np.full(len(names), np.nan)
        else:
            r = permutation_importance(model, Xte, yte, scoring=_roc_auc, n_repeats=n_repeats, random_state=seed)
            imp_mean, imp_std = r.importances_mean, r.importances_std
    out = pd.DataFrame({"feature": names, "importance": imp_mean, "importance_std": imp_std})
    out["rank"] = out["importance"].rank(ascending=False, method="first")
    return out.sort_values("rank", kind="stable").reset_index(drop=True)


def _roc_auc(model, X: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of ``model`` on ``(X, y)`` from the ranks of its scores (Mann-Whitney, ties at mid-rank).

    The same number as scikit-learn's ``"roc_auc"`` scorer (up to rounding) without its input checks,
    which cost more than the prediction on the n_features x n_repeats scorings of the permutation.
    """
    from scipy.stats import rankdata

    ranks = rankdata(model.decision_function(X))
    pos = np.asarray(y) == 1
    n1 = int(pos.sum())
    n0 = len(pos) - n1
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))
