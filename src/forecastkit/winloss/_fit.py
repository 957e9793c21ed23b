"""Design matrix and logistic fits behind :func:`forecastkit.winloss.drivers.drivers` (internal).

* :func:`design` turns feature columns into a 0/1 + numeric design: categorical
  features get one indicator per level against the most frequent level (the
  reference); levels with too few deals, or all won / all lost, are grouped into
  ``"other"``; constant columns and columns that are exact linear combinations of
  earlier ones are dropped. Every change is returned as a note.
* :func:`fit_logit` fits statsmodels' ``Logit`` (Wald 95% intervals, p-values);
  on perfect or quasi-complete separation it falls back to Firth's penalised
  likelihood (:func:`firth_logit`), whose estimates stay finite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from forecastkit.winloss.features import FEATURES

__all__: list[str] = []

OTHER = "other"
_MAX_ABS_COEF = 12.0  # |log odds ratio| beyond this signals separation (OR > 160 000)


@dataclass
class Design:
    """Design matrix with one row per deal and the description of each term."""

    X: np.ndarray  # without intercept
    terms: pd.DataFrame  # feature, level, reference, kind, unit, scale, n_deals, n_won
    notes: list[str] = field(default_factory=list)
    grouped: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def design(df: pd.DataFrame, y: np.ndarray, names: list[str], min_level_deals: int) -> Design:
    """Build the design of features ``names`` from ``df`` (one row per deal; ``y`` = won 1/0)."""
    cols: list[np.ndarray] = []
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    grouped: list[str] = []
    dropped: list[str] = []
    for name in names:
        f = FEATURES[name]
        if f.kind == "categorical":
            v = pd.Series(df[name].to_numpy(dtype=object)).astype(str)
            v, small = _group_rare(v, y, min_level_deals)
            if small:
                grouped.append(name)
                notes.append(
                    f"{name}: level(s) {small} have fewer than {min_level_deals} deals or only won / only lost "
                    f"deals and were grouped into '{OTHER}'"
                )
            counts = v.value_counts()
            if len(counts) < 2:
                dropped.append(name)
                notes.append(f"{name}: a single value ({counts.index[0]!r}) among these deals, left out")
                continue
            ref = str(counts.index[0])
            # integer codes once, then one cheap comparison per level (comparing strings per level is slow)
            codes, uniques = pd.factorize(v.to_numpy(dtype=object))
            code_of = {str(u): i for i, u in enumerate(uniques)}
            for level in sorted(counts.index[1:], key=lambda s: (s == OTHER, s)):
                x = (codes == code_of[str(level)]).astype(float)
                cols.append(x)
                rows.append(_term(name, level, ref, f.kind, "vs " + ref, 1.0, x, y))
        else:
            x = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
            miss = np.isnan(x)
            if miss.any():
                med = float(np.nanmedian(x)) if (~miss).any() else 0.0
                x = np.where(miss, med, x)
                notes.append(f"{name}: {int(miss.sum())} empty value(s) set to the median ({med:g})")
            if np.nanstd(x) == 0:
                dropped.append(name)
                notes.append(f"{name}: the same value ({x[0]:g}) for every deal, left out")
                continue
            binary = bool(np.isin(x, (0.0, 1.0)).all())
            scale = 1.0 if binary else f.scale
            ref = "absent / unknown" if binary else ""
            cols.append(x / scale)
            rows.append(_term(name, "", ref, f.kind, f.unit, scale, x if binary else None, y))
    X = np.column_stack(cols) if cols else np.zeros((len(y), 0))
    terms = pd.DataFrame(rows, columns=["feature", "level", "reference", "kind", "unit", "scale", "n_deals", "n_won"])
    keep = _independent(X)
    if not keep.all():
        bad = terms.loc[~keep, ["feature", "level"]].agg(lambda r: f"{r['feature']}={r['level']}".rstrip("="), axis=1)
        notes.append(
            f"{list(bad)}: exact linear combination(s) of other features (e.g. a score computed from them), left out"
        )
        dropped += list(bad)
        X, terms = X[:, keep], terms[keep].reset_index(drop=True)
    return Design(X, terms, notes, grouped, dropped)


def _term(
    feature: str, level: str, ref: str, kind: str, unit: str, scale: float, x: np.ndarray | None, y: np.ndarray
) -> dict[str, object]:
    if x is None:
        n, w = len(y), int(y.sum())
    else:
        on = x == 1
        n, w = int(on.sum()), int(y[on].sum())
    return {
        "feature": feature,
        "level": level,
        "reference": ref,
        "kind": kind,
        "unit": unit,
        "scale": scale,
        "n_deals": n,
        "n_won": w,
    }


def _group_rare(v: pd.Series, y: np.ndarray, min_n: int) -> tuple[pd.Series, list[str]]:
    g = pd.DataFrame({"v": v.to_numpy(), "y": y}).groupby("v")["y"].agg(["size", "sum"])
    rare = g[(g["size"] < min_n) | (g["sum"] == 0) | (g["sum"] == g["size"])].index
    # never group the most frequent level (the reference)
    rare = [str(r) for r in rare if r != g["size"].idxmax()]
    if not rare:
        return v, []
    return v.where(~v.isin(rare), OTHER), sorted(rare)


def _independent(X: np.ndarray) -> np.ndarray:
    """Columns to keep so that ``[1, X]`` has full column rank (greedy, left to right)."""
    n, p = X.shape
    keep = np.ones(p, dtype=bool)
    if p == 0:
        return keep
    # greedy QR on a subsample is enough to detect exact dependence of deterministic columns
    sub = X if n <= 20000 else X[np.linspace(0, n - 1, 20000).astype(int)]
    basis = np.ones((len(sub), 1))
    q, _ = np.linalg.qr(basis)
    for j in range(p):
        c = sub[:, j] - q @ (q.T @ sub[:, j])
        if np.linalg.norm(c) <= 1e-8 * max(1.0, np.linalg.norm(sub[:, j])):
            keep[j] = False
            continue
        q = np.column_stack([q, c / np.linalg.norm(c)])
    return keep


@dataclass
class Fit:
    """Coefficients (intercept first), standard errors and the method used."""

    coef: np.ndarray
    se: np.ndarray
    method: str
    converged: bool


def fit_logit(X: np.ndarray, y: np.ndarray) -> tuple[Fit, str | None]:
    """Maximum-likelihood logit (statsmodels); Firth's penalised fit when the data separate.

    Returns the fit and, when the fallback was used, the reason.
    """
    # the model module only: ``statsmodels.api`` imports every model (seconds of CPU on the first call)
    from statsmodels.discrete.discrete_model import Logit
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    Xc = np.column_stack([np.ones(len(y)), X])
    reason = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PerfectSeparationWarning)
            warnings.simplefilter("error", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            # design() already dropped linearly dependent columns: skip statsmodels' rank check (an SVD of X)
            res = Logit(y, Xc, check_rank=False).fit(method="newton", maxiter=100, disp=False)
        coef, se = np.asarray(res.params), np.asarray(res.bse)
        if not (np.isfinite(se).all() and np.abs(coef).max() < _MAX_ABS_COEF and res.mle_retvals["converged"]):
            reason = "the maximum-likelihood fit diverged (coefficients without finite bounds)"
        else:
            return Fit(coef, se, "logit", True), None
    except (PerfectSeparationWarning, np.linalg.LinAlgError) as e:
        reason = f"perfect or quasi-complete separation ({type(e).__name__})"
    except ConvergenceWarning:
        reason = "the maximum-likelihood fit did not converge (separation)"
    except Exception as e:  # statsmodels raises PerfectSeparationError in some versions
        if "separation" not in str(e).lower() and "Separation" not in type(e).__name__:
            raise
        reason = "perfect or quasi-complete separation"
    return firth_logit(Xc, y), reason


def firth_logit(Xc: np.ndarray, y: np.ndarray, maxiter: int = 100, tol: float = 1e-8) -> Fit:
    """Firth's bias-reduced logistic regression (Jeffreys-prior penalised likelihood).

    Newton steps on the modified score ``X'(y - p + h (1/2 - p))`` with step halving
    on the penalised log-likelihood ``l(b) + log|X'WX| / 2``; standard errors from
    the inverse information at the estimate (Wald intervals). ``Xc`` includes the
    intercept column.
    """
    n, p = Xc.shape
    beta = np.zeros(p)

    def _pen(b: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        eta = np.clip(Xc @ b, -30, 30)
        pr = 1.0 / (1.0 + np.exp(-eta))
        w = pr * (1 - pr)
        info = (Xc * w[:, None]).T @ Xc
        sign, logdet = np.linalg.slogdet(info)
        ll = float(np.sum(y * eta - np.logaddexp(0, eta)))
        return ll + 0.5 * logdet if sign > 0 else -np.inf, pr, w, info

    obj, pr, w, info = _pen(beta)
    converged = False
    for _ in range(maxiter):
        inv = np.linalg.pinv(info)
        a = Xc * np.sqrt(w)[:, None]
        h = np.einsum("ij,jk,ik->i", a, inv, a)
        score = Xc.T @ (y - pr + h * (0.5 - pr))
        step = inv @ score
        t = 1.0
        for _ in range(30):
            new = beta + t * step
            nobj, npr, nw, ninfo = _pen(new)
            if nobj >= obj - 1e-12:
                break
            t /= 2
        beta, obj, pr, w, info = new, nobj, npr, nw, ninfo
        if np.max(np.abs(t * step)) < tol:
            converged = True
            break
    se = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0, None))
    return Fit(beta, se, "firth", converged)


def wald_table(fit: Fit, level: float = 0.95) -> pd.DataFrame:
    """``odds_ratio, ci_low, ci_high, p_value`` per term (intercept dropped)."""
    z = stats.norm.ppf(0.5 + level / 2)
    b, se = fit.coef[1:], fit.se[1:]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = 2 * stats.norm.sf(np.abs(b / se))
        return pd.DataFrame(
            {"odds_ratio": np.exp(b), "ci_low": np.exp(b - z * se), "ci_high": np.exp(b + z * se), "p_value": p}
        )
