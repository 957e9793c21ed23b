"""Forecast accuracy: how far forecasts of past periods were from what was booked.

Formulas, per group of rows (each row: a forecast ``F`` of one period, its actual ``A``
and, when the method has a distribution, its quantiles ``P10, P50, P90``):

``accuracy``
    ``1 - sum|F - A| / sum A`` = ``1 - wape``: the domain's ``1 - |F - A| / A`` with the
    errors and actuals summed over the rows first (volume-weighted), so a period with a
    tiny actual cannot dominate. Can be negative (an error larger than the actual).
``mean_accuracy``
    the mean over rows of ``1 - |F - A| / A`` (the domain formula per period).
``median_ape``
    the median over rows of ``|F - A| / A``.
``bias``
    ``sum(F - A) / sum A``, signed: positive = forecasts too high (optimistic).
``wape``
    ``sum|F - A| / sum A`` (weighted absolute percentage error).
``coverage``
    share of rows with ``P10 <= A <= P90`` (a calibrated 80% interval covers ~80%).
``pinball``
    mean over rows and over ``q`` in (0.1, 0.5, 0.9) of the quantile (pinball) loss
    ``max(q (A - Q_q), (q - 1) (A - Q_q))``, in currency; a method without a
    distribution is scored as the degenerate one (every quantile = ``F``).
    ``pinball_scaled`` divides it by the mean actual.

When ``A = 0``: the per-row ratios (``mean_accuracy``, ``median_ape``) are undefined
and those rows are left out of them (``n_zero_actual`` counts them); the summed forms
(``accuracy``, ``bias``, ``wape``) keep them (their error adds to the numerator) and
are NaN only when every actual of the group is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError

__all__ = ["forecast_accuracy", "calls_vs_actual", "pinball_loss", "ACCURACY_COLUMNS"]

#: Metric columns of :func:`forecast_accuracy`.
ACCURACY_COLUMNS = (
    "n",
    "n_zero_actual",
    "forecast",
    "actual",
    "accuracy",
    "mean_accuracy",
    "median_ape",
    "bias",
    "wape",
    "coverage",
    "pinball",
    "pinball_scaled",
)
_Q = (0.1, 0.5, 0.9)


def pinball_loss(actual: np.ndarray, quantile: np.ndarray, q: float) -> np.ndarray:
    """Quantile (pinball) loss of each row: ``max(q (A - Q), (q - 1) (A - Q))``.

    Examples
    --------
    >>> pinball_loss(np.array([100.0]), np.array([80.0]), 0.9).tolist()
    [18.0]
    """
    diff = np.asarray(actual, dtype=float) - np.asarray(quantile, dtype=float)
    return np.maximum(q * diff, (q - 1) * diff)


def forecast_accuracy(
    data: pd.DataFrame | CRM,
    by: str | Sequence[str] | None = "method",
    *,
    checkpoint: str | None = None,
    **backtest_kwargs: Any,
) -> pd.DataFrame:
    """Accuracy, bias, WAPE, interval coverage and pinball loss of past forecasts.

    Parameters
    ----------
    data : DataFrame or CRM
        A tidy frame with ``forecast`` and ``actual`` (and optionally ``p10, p50, p90``)
        such as :func:`~forecastkit.forecast.backtest.backtest` or :func:`calls_vs_actual`
        return; or a CRM, which is backtested first (``backtest_kwargs`` are passed on).
    by : str or list of str, optional
        Grouping columns (``"method"``, ``["method", "checkpoint"]``, ``["method", "owner"]``...);
        None for one row over everything.
    checkpoint : str, optional
        Keep only this checkpoint (e.g. ``"week4"``).

    Returns
    -------
    DataFrame
        ``<by>..., n, n_zero_actual, forecast, actual`` (sums), ``accuracy, mean_accuracy,
        median_ape, bias, wape, coverage, pinball, pinball_scaled`` (see the module docstring).
        Rows without a forecast (NaN, e.g. no call submitted) are left out.
    """
    if isinstance(data, CRM):
        from forecastkit.forecast.backtest import backtest

        data = backtest(data, **backtest_kwargs)
    elif backtest_kwargs:
        raise ParameterError(f"{sorted(backtest_kwargs)} only apply when data is a CRM (they are backtest options)")
    missing = [c for c in ("forecast", "actual") if c not in data]
    if missing:
        raise ParameterError(f"data lacks column(s) {missing}; pass a backtest() or calls_vs_actual() frame, or a CRM")
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    bad = [k for k in keys if k not in data]
    if bad:
        raise ParameterError(f"cannot group by {bad}: not columns of data ({', '.join(map(str, data.columns))})")
    df = data
    if checkpoint is not None:
        if "checkpoint" not in df:
            raise ParameterError("checkpoint= needs a 'checkpoint' column (a backtest() frame)")
        df = df[df["checkpoint"] == str(checkpoint)]
    df = df[df["forecast"].notna() & df["actual"].notna()]
    if not keys:
        return pd.DataFrame([_metrics(df)], columns=list(ACCURACY_COLUMNS))
    if df.empty:
        return pd.DataFrame(columns=[*keys, *ACCURACY_COLUMNS])
    rows = [
        {**dict(zip(keys, k if isinstance(k, tuple) else (k,), strict=True)), **_metrics(g)}
        for k, g in df.groupby(keys, sort=True, dropna=False)
    ]
    return pd.DataFrame(rows, columns=[*keys, *ACCURACY_COLUMNS])


def _metrics(g: pd.DataFrame) -> dict[str, float]:
    f = g["forecast"].to_numpy(float)
    a = g["actual"].to_numpy(float)
    err = f - a
    sa = a.sum()
    pos = a > 0
    ape = np.abs(err[pos]) / a[pos]
    has_q = all(c in g for c in ("p10", "p50", "p90"))
    if has_q:
        qs = [g[c].to_numpy(float) for c in ("p10", "p50", "p90")]
        inter = ~np.isnan(qs[0]) & ~np.isnan(qs[2])
        coverage = float(np.mean((qs[0][inter] <= a[inter]) & (a[inter] <= qs[2][inter]))) if inter.any() else np.nan
        qs = [np.where(np.isnan(x), f, x) for x in qs]
    else:
        coverage = np.nan
        qs = [f, f, f]
    pin = float(np.mean([pinball_loss(a, x, q) for q, x in zip(_Q, qs, strict=True)])) if len(a) else np.nan
    wape = float(np.abs(err).sum() / sa) if sa > 0 else np.nan
    return {
        "n": int(len(g)),
        "n_zero_actual": int((~pos).sum()),
        "forecast": float(f.sum()),
        "actual": float(sa),
        "accuracy": 1 - wape if sa > 0 else np.nan,
        "mean_accuracy": float(np.mean(1 - ape)) if len(ape) else np.nan,
        "median_ape": float(np.median(ape)) if len(ape) else np.nan,
        "bias": float(err.sum() / sa) if sa > 0 else np.nan,
        "wape": wape,
        "coverage": coverage,
        "pinball": pin,
        "pinball_scaled": pin / float(a.mean()) if len(a) and a.mean() > 0 else np.nan,
    }


def calls_vs_actual(
    crm: CRM,
    periods: Sequence[str] | int | None = None,
    checkpoints: Sequence[str | int] = ("week1", "week4", "week8", "week13"),
    level: str = "owner",
) -> pd.DataFrame:
    """The reps' calls (latest by each checkpoint) next to what each rep or team booked.

    Parameters
    ----------
    crm : CRM
        Full snapshot with ``forecast_calls``.
    periods, checkpoints
        As in :func:`~forecastkit.forecast.backtest.backtest`.
    level : {"owner", "team"}
        One row per rep, or per team (calls and bookings summed over its reps).

    Returns
    -------
    DataFrame
        ``period, checkpoint, as_of, method`` (``commit`` / ``best_case``), ``<level>,
        forecast, actual`` - ready for ``forecast_accuracy(frame, by=["method", level])``.
    """
    from forecastkit.forecast.backtest import _periods, checkpoint_date
    from forecastkit.forecast.forecast import _team_of

    if level not in ("owner", "team"):
        raise ParameterError(f"level must be 'owner' or 'team', got {level!r}")
    fc = crm.require("forecast_calls", "calls_vs_actual")
    teams = _team_of(crm)
    o = crm.opportunities
    won = o[(o["status"] == "won").fillna(False).to_numpy(dtype=bool)]
    rows = []
    for per in _periods(crm, periods):
        w = won[per.contains(won["closed_at"]).fillna(False).to_numpy(dtype=bool)]
        booked = w.groupby("owner")["amount"].sum()
        calls_p = fc[(fc["period"] == per.label).fillna(False).to_numpy(dtype=bool)]
        for cp in checkpoints:
            d = checkpoint_date(per, cp)
            c = calls_p[calls_p["submitted_at"] < d + pd.Timedelta(days=1)]
            c = c.sort_values("submitted_at", kind="stable").groupby("owner", sort=False).tail(1)
            if c.empty:
                continue
            names = sorted(set(c["owner"].astype(str)))
            frame = pd.DataFrame(
                {
                    "owner": names,
                    "commit": c.set_index("owner")["commit"].reindex(names).to_numpy(float),
                    "best_case": c.set_index("owner")["best_case"].reindex(names).to_numpy(float),
                    "actual": booked.reindex(names).fillna(0.0).to_numpy(float),
                }
            )
            if level == "team":
                frame["team"] = frame["owner"].map(teams).fillna("(no team)")
                frame = frame.groupby("team", as_index=False)[["commit", "best_case", "actual"]].sum()
            for m in ("commit", "best_case"):
                rows.append(
                    frame[[level, "actual"]].assign(
                        period=per.label, checkpoint=str(cp), as_of=d, method=m, forecast=frame[m].to_numpy()
                    )
                )
    cols = ["period", "checkpoint", "as_of", "method", level, "forecast", "actual"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)
