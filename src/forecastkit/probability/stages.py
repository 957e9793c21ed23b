"""Stage win probabilities counted from history, shrunk across groups, with intervals.

Counting rule (the shared one of :func:`forecastkit.data.timeline.stages_reached`):
a closed deal counts for **every** stage it reached, not only its last one; a deal
still open is reported in ``open`` and is not a loss. The estimate of a cell is
``P(won | reached the stage)`` among the deals of the cell that closed in the
look-back window (closing-date windows are unbiased for a steady pipeline; creation
cohorts are not, because losses close earlier than wins).

Shrinkage (empirical Bayes). Each stage's overall rate gets a Jeffreys
``Beta(1/2, 1/2)`` prior. A group (segment, owner, ...) gets a ``Beta(m s, (1 - m) s)``
prior centred on its parent's posterior mean ``m`` (the stage for one ``by`` column;
the enclosing group for nested ``by`` columns, e.g. team then team x segment); the
prior strength ``s`` (in pseudo-deals) is fitted per stage and level from the
beta-binomial marginal likelihood across the groups: the lower end of its 90%
profile-likelihood interval (the weakest prior the data cannot reject, so groups
that truly differ are not pooled on a flat likelihood), bounded to ``[2, 10^5]``;
with fewer than five groups holding closed deals (e.g. three segments) the spread
cannot be estimated and the minimal prior of 2 pseudo-deals is used
and never above the parent's own posterior strength (a group's prior cannot be
more certain than its parent, so full pooling still carries the parent's uncertainty).
``p_win`` is the posterior mean and ``ci_lower``/``ci_upper`` the equal-tailed
posterior interval, so a rep with 4 deals gets a value between their raw rate and
the team's, never 0 or 1. The fitted strengths are in ``result.attrs["prior_strength"]``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from forecastkit._text import text_is
from forecastkit.data import timeline
from forecastkit.data.crm import CRM
from forecastkit.data.timeline import stage_spells
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError
from forecastkit.playbook import Playbook

__all__ = ["stage_probabilities", "stage_age_probabilities", "MIN_CLOSED"]

#: Closed deals (won + lost) below which estimates fall back toward the CRM defaults.
MIN_CLOSED = 30
_FALLBACK_STRENGTH = 10.0  # pseudo-deals of the CRM-default prior used in the fallback
_S_MIN, _S_MAX = 2.0, 1e5
_MIN_GROUPS = 5  # groups with closed deals needed to fit the prior strength
_LR_HALF = float(stats.chi2.ppf(0.90, 1) / 2)  # 90% likelihood-ratio interval
_MISSING = "(missing)"
_COUNTS = ["reached", "won", "lost", "open"]


# --------------------------------------------------------------------------- public
def stage_probabilities(
    crm: CRM,
    lookback: str | pd.Timedelta | None = "730D",
    by: str | Sequence[str] | None = None,
    *,
    level: float = 0.90,
    min_closed: int = MIN_CLOSED,
    on_insufficient: Literal["warn", "raise"] = "warn",
) -> pd.DataFrame:
    """Win probability per stage (and group), recalibrated to history.

    Parameters
    ----------
    crm : CRM
        The snapshot; everything is counted as of ``crm.as_of_date``.
    lookback : str or Timedelta or None
        Window of closing dates counted, ending on the snapshot date (``"730D"``:
        deals closed in the last 730 days). ``None`` counts every closed deal.
        Deals open on the snapshot date are always reported in ``open``.
    by : str or list of str, optional
        Opportunity column(s) to group by (``"segment"``, ``"owner"``,
        ``["team", "segment"]``...). Nested columns shrink each level toward the one above.
        Missing values form the group ``"(missing)"``.
    level : float
        Coverage of the interval (0.90 = 5% and 95% posterior quantiles).
    min_closed : int
        Fewer closed deals than this in the window triggers the fallback.
    on_insufficient : {"warn", "raise"}
        With too few closed deals: ``"warn"`` emits a :class:`FallbackWarning` and
        shrinks every stage toward the playbook's CRM probability with a prior worth
        10 deals (with no closed deal at all, ``p_win`` equals the CRM probability);
        ``"raise"`` raises :class:`InsufficientDataError`.

    Returns
    -------
    DataFrame
        One row per stage (pipeline order) and group: ``stage, [by columns...],
        reached`` (deals in scope that reached the stage), ``won, lost, open,
        p_win`` (posterior mean), ``ci_lower, ci_upper`` (posterior interval),
        ``crm_probability`` (the playbook's), ``gap`` (= crm_probability - p_win;
        positive when the CRM is optimistic). Never NaN.

    Examples
    --------
    >>> import forecastkit as fk
    >>> table = fk.stage_probabilities(crm, by="segment")   # doctest: +SKIP
    """
    by_cols = _by_columns(crm, by)
    _check_level(level)
    status = _status_codes(crm)
    keep = _in_scope(crm, lookback, status)
    n_closed = int((status[keep] != 0).sum())
    top = _top_prior(crm.playbook, n_closed, min_closed, on_insufficient, what="stage_probabilities")
    levels = _reached_counts(crm, keep, status, by_cols)
    return _shrunk_table(levels, crm, top, level)


def _stage_probabilities_by_scope(
    crm: CRM,
    scope: np.ndarray,
    n_scopes: int,
    lookback: str | pd.Timedelta | None = "730D",
    *,
    level: float = 0.90,
    min_closed: int = MIN_CLOSED,
) -> list[pd.DataFrame]:
    """:func:`stage_probabilities` of many scopes in one pass (no ``by``; fallbacks without warning).

    ``scope`` holds each opportunity's scope (``0..n_scopes-1``; -1: in none). Table ``g``
    equals ``stage_probabilities(s, lookback, level=level, min_closed=min_closed)`` of the
    snapshot ``s`` of scope ``g``'s deals and their history (each scope shrunk toward its
    own prior, the CRM defaults when it has fewer than ``min_closed`` closed deals): a deal's
    counts read only its own history, and every number is the same elementwise operation.
    """
    _check_level(level)
    pb = crm.playbook
    scope = np.asarray(scope, dtype=np.int64)
    status = _status_codes(crm)
    keep = _in_scope(crm, lookback, status) & (scope >= 0)
    n_closed = np.bincount(scope[keep & (status != 0)], minlength=n_scopes)
    idx, lo, hi = _reached_spans(crm, keep)
    n_st = len(pb.stages)
    # counts per (scope, stage, status) as in _level_table, every stage kept (zero where none)
    width = (n_st + 1) * 4
    g, st = scope[idx], status[idx]
    enter = np.bincount(g * width + lo * 4 + st, minlength=n_scopes * width)
    leave = np.bincount(g * width + (hi + 1) * 4 + st, minlength=n_scopes * width)
    cnt = (enter - leave).reshape(n_scopes, n_st + 1, 4).cumsum(axis=1)[:, :n_st, :].reshape(-1, 4)
    won, lost, open_ = cnt[:, 1], cnt[:, 2], cnt[:, 0]
    # each scope's prior (_top_prior): Jeffreys, or the CRM defaults with too few closed deals
    crm_p = np.array([pb.crm_probability(s) for s in pb.stage_names])
    few = np.repeat(n_closed < min_closed, n_st)
    a0 = np.where(few, np.tile(crm_p * _FALLBACK_STRENGTH, n_scopes), 0.5)
    b0 = np.where(few, np.tile((1 - crm_p) * _FALLBACK_STRENGTH, n_scopes), 0.5)
    a, b = a0 + won, b0 + lost
    tail = (1 - level) / 2
    crm_col = np.tile(crm_p.astype(float), n_scopes)
    p_win = a / (a + b)
    out = pd.DataFrame(
        {
            "stage": pd.array(np.tile(np.asarray(pb.stage_names, dtype=object), n_scopes), dtype="string"),
            "reached": cnt[:, :3].sum(axis=1).astype(np.int64),
            "won": won.astype(np.int64),
            "lost": lost.astype(np.int64),
            "open": open_.astype(np.int64),
            "p_win": p_win,
            "ci_lower": stats.beta.ppf(tail, a, b),
            "ci_upper": stats.beta.ppf(1 - tail, a, b),
            "crm_probability": crm_col,
            "gap": crm_col - p_win,
        }
    )
    tables = []
    for k in range(n_scopes):
        t = out.iloc[k * n_st : (k + 1) * n_st].reset_index(drop=True)
        t.attrs = {"prior_strength": {}, "level": level}
        tables.append(t)
    return tables


def stage_age_probabilities(
    crm: CRM,
    lookback: str | pd.Timedelta | None = "730D",
    bands: Sequence[float] | None = None,
    by: str | Sequence[str] | None = None,
    *,
    level: float = 0.90,
    min_closed: int = MIN_CLOSED,
    on_insufficient: Literal["warn", "raise"] = "warn",
) -> pd.DataFrame:
    """Win probability by stage and **age in the stage** (age bands).

    Method: age bands, not a hazard model. For a band starting at ``a`` days, the
    estimate is ``P(won | the deal was still in the stage after a days)``: a deal
    counts in every band its (first) spell in the stage reached, so a deal that
    has sat 70 days in discovery is scored with the deals that also sat at least
    that long there. Deals that jumped over a stage (no spell in it) are not
    counted for its age bands. Bands shrink toward their stage (and group) estimate
    with the same empirical-Bayes Beta prior as :func:`stage_probabilities`.

    Parameters
    ----------
    crm, lookback, by, level, min_closed, on_insufficient
        As in :func:`stage_probabilities`.
    bands : sequence of float, optional
        Lower edges of the age bands in days, starting at 0 (e.g. ``[0, 15, 30, 60]``),
        the same for every stage. Default: multiples of each stage's age cap,
        ``0, 0.5, 1, 2, 3`` x cap.

    Returns
    -------
    DataFrame
        ``stage, [by columns...], age_band`` (label such as ``"15-30d"``),
        ``age_from, age_to`` (days; ``age_to`` is inf for the last band),
        ``reached`` (deals in the stage at that age), ``won, lost, open, p_win,
        ci_lower, ci_upper, crm_probability, gap``.
    """
    by_cols = _by_columns(crm, by)
    _check_level(level)
    pb = crm.playbook
    if bands is not None:
        edges = np.asarray(sorted(float(b) for b in bands))
        if len(edges) == 0 or edges[0] != 0 or np.any(np.diff(edges) <= 0):
            raise ParameterError(f"bands must be increasing lower edges in days starting at 0, got {list(bands)}")
    scoped = _scope(crm, lookback, by_cols)
    n_closed = int((scoped.opportunities["status"] != "open").sum())
    sp = stage_spells(scoped)
    sp = sp[sp["stage"].isin(pb.stage_names)].drop_duplicates(["opportunity_id", "stage"], keep="first")
    status = scoped.opportunities.set_index("opportunity_id")["status"]
    sp = sp.assign(status=status.reindex(sp["opportunity_id"].to_numpy()).to_numpy())
    parts, catalog = [], []
    for st in pb.stage_names:
        e = edges if bands is not None else np.array([0.0, 0.5, 1.0, 2.0, 3.0]) * pb.stage(st).age_cap_days
        s = sp[sp["stage"] == st]
        d = s["days_in_stage"].to_numpy()
        n_cov = np.maximum(np.searchsorted(e, d, side="right"), 1)
        rep = np.repeat(np.arange(len(s)), n_cov)
        band = np.arange(n_cov.sum()) - np.repeat(np.cumsum(n_cov) - n_cov, n_cov)
        hi = np.append(e[1:], np.inf)
        labels = np.array([_band_label(a, b) for a, b in zip(e, hi, strict=True)], dtype=object)
        catalog.append(
            pd.DataFrame(
                {"stage": st, "band_index": np.arange(len(e)), "age_band": labels, "age_from": e, "age_to": hi}
            )
        )
        parts.append(
            pd.DataFrame(
                {
                    "opportunity_id": s["opportunity_id"].to_numpy()[rep],
                    "stage": st,
                    "band_index": band,
                    "age_band": labels[band],
                    "age_from": e[band],
                    "age_to": hi[band],
                    "status": s["status"].to_numpy()[rep],
                }
            )
        )
    long = pd.concat(parts, ignore_index=True)
    long = _attach_groups(long, scoped.opportunities, by_cols)
    first = long[long["band_index"] == 0]  # every spell once: the distinct deals of each stage
    top = _top_prior(pb, n_closed, min_closed, on_insufficient, what="stage_age_probabilities")
    band_keys = ["band_index", "age_band", "age_from", "age_to"]
    levels = [_count(first, ["stage", *by_cols[:j]]) for j in range(len(by_cols) + 1)]
    bands_long = _count(long, ["stage", *by_cols, *band_keys])
    # every band of every stage (and group seen in the stage), zero counts where no deal got there
    cells = levels[-1][["stage", *by_cols]]
    if not by_cols:
        cells = pd.DataFrame({"stage": list(pb.stage_names)})
    grid = cells.merge(pd.concat(catalog, ignore_index=True), on="stage")
    grid = grid.merge(bands_long, on=["stage", *by_cols, *band_keys], how="left")
    grid[_COUNTS] = grid[_COUNTS].fillna(0).astype(np.int64)
    levels.append(grid)
    out = _shrunk_table(levels, crm, top, level)
    return out.drop(columns="band_index")


# --------------------------------------------------------------------------- scope and counts
def _by_columns(crm: CRM, by: str | Sequence[str] | None) -> list[str]:
    cols = [] if by is None else [by] if isinstance(by, str) else list(by)
    avail = crm.opportunities.columns
    bad = [c for c in cols if c not in avail]
    if bad or len(set(cols)) != len(cols) or {"stage", "status"} & set(cols):
        raise ParameterError(
            f"by={cols!r}: cannot group by {bad or 'a repeated column, stage or status'}; "
            f"use opportunity columns such as segment, owner, team, source, product"
        )
    return cols


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ParameterError(f"level must be between 0 and 1 (e.g. 0.90 for a 90% interval), got {level}")


def _lookback_start(crm: CRM, lookback: str | pd.Timedelta | None) -> pd.Timestamp | None:
    if lookback is None:
        return None
    try:
        td = pd.Timedelta(lookback)
    except (ValueError, TypeError):
        raise ParameterError(f"lookback={lookback!r} is not a duration; use e.g. '730D', '365D' or None") from None
    if td <= pd.Timedelta(0):
        raise ParameterError(f"lookback={lookback!r} must be a positive duration, e.g. '730D'")
    return crm.as_of_date + pd.Timedelta(days=1) - td


def _status_codes(crm: CRM) -> np.ndarray:
    """Each opportunity's status as a code: 0 open, 1 won, 2 lost, 3 anything else (counted in no
    column, but as closed for the fallback). Read from the snapshot's open mask (kept per snapshot)
    and two exact text comparisons."""
    status = crm.opportunities["status"]
    codes = np.full(len(status), 3, dtype=np.int64)
    codes[text_is(status, "won")] = 1
    codes[text_is(status, "lost")] = 2
    codes[crm._open_mask()] = 0
    return codes


def _in_scope(crm: CRM, lookback: str | pd.Timedelta | None, status: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the opportunities counted: open now, or closed in the look-back window."""
    start = _lookback_start(crm, lookback)
    o = crm.opportunities
    if start is None:
        return np.ones(len(o), dtype=bool)
    status = _status_codes(crm) if status is None else status
    closed = o["closed_at"].to_numpy()
    when = np.where(np.isnat(closed), o["close_date"].to_numpy(), closed)
    return (status == 0) | (when >= start.to_datetime64())


def _group_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer group of each value and the group labels (text; missing values form ``"(missing)"``)."""
    codes, uniques = pd.factorize(values.to_numpy(dtype=object, na_value=None))
    labels = pd.Series(uniques, dtype=object).astype("string").fillna(_MISSING).to_numpy(dtype=object)
    labels = np.append(labels, _MISSING)  # code -1: missing
    relabel, final = pd.factorize(labels)  # two values with the same text are one group
    return relabel[codes], np.asarray(final, dtype=object)


def _reached_counts(crm: CRM, keep: np.ndarray, status: np.ndarray, by_cols: list[str]) -> list[pd.DataFrame]:
    """Counts per stage (and group, one table per nesting level) under the ``stages_reached`` rule.

    Same counting as :func:`~forecastkit.data.timeline.stages_reached` on the deals in
    ``keep`` (tests check it), with integer deal positions and stage codes: a deal
    counts once for every open stage from its entry stage to its furthest one. Counts
    per (group, stage, status) come from ``bincount`` over entry and exit points and a
    cumulative sum along the stages, so no (deal, stage) table is built.
    """
    pb = crm.playbook
    o = crm.opportunities
    n_st = len(pb.stages)
    idx, lo, hi = _reached_spans(crm, keep)
    status = status[idx]
    group = np.zeros(len(idx), dtype=np.int64)
    levels = [_level_table(group, 1, lo, hi, status, n_st, pb, {})]
    col_codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for c in by_cols:
        codes, lab = _group_codes(o[c].iloc[idx])
        col_codes[c] = (codes, lab)
        _, first, group = np.unique(group * len(lab) + codes, return_index=True, return_inverse=True)
        labels = {k: lb[cd[first]] for k, (cd, lb) in col_codes.items()}
        levels.append(_level_table(group.ravel(), len(first), lo, hi, status, n_st, pb, labels))
    return levels


def _reached_spans(crm: CRM, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The deals counted and the stages they reached: ``idx`` (rows of ``crm.opportunities``
    among ``keep`` with a stage reached), ``lo``..``hi`` (their entry and furthest open stage,
    pipeline positions). Each deal's span reads only its own history rows; a deal without
    history rows counts its current stage.

    Each history row's deal row and stage order are read from the snapshot's cache when
    its maker left them there (the backtest's rewinds: ``("deal_pos", "history")`` and
    ``("stage_order", "history")``); the deal rows only when the ids are distinct (strictly
    increasing, as validated snapshots hold them), so the result is the same as from the ids.
    """
    pb = crm.playbook
    o = crm.opportunities
    n_st = len(pb.stages)
    h = crm.history
    deal_pos = crm._cached_only(("deal_pos", "history"))
    if deal_pos is not None and not (
        len(deal_pos) == len(h) and timeline._strictly_increasing(timeline._text_values(o["opportunity_id"]))
    ):
        deal_pos = None
    order = crm._cached_only(("stage_order", "history"))
    if order is not None and len(order) != len(h):
        order = None
    entry, furthest, has_history = timeline._deal_entry_and_furthest(
        h, o["opportunity_id"], pb, deal_pos=deal_pos, order=order
    )
    no_hist = keep & ~has_history
    if no_hist.any():
        cur = timeline._stage_order_codes(o["stage"], pb)
        cur = np.where(cur >= 0, cur, np.nan)
        entry[no_hist], furthest[no_hist] = cur[no_hist], cur[no_hist]
    lo, hi = entry, np.minimum(furthest, n_st - 1)
    ok = keep & ~np.isnan(lo) & ~np.isnan(hi) & (hi >= lo)
    idx = np.flatnonzero(ok)
    return idx, lo[idx].astype(np.int64), hi[idx].astype(np.int64)


def _scope(crm: CRM, lookback: str | pd.Timedelta | None, by_cols: Sequence[str] = ()) -> CRM:
    """A compact snapshot of the deals open now or closed in the window, and their history.

    For speed, deals are renumbered (``opportunity_id`` becomes the deal's row
    position in ``crm.opportunities``, an int64) and stages and statuses become
    categoricals; only the columns the counts need are kept. The shared timeline
    functions run unchanged on it.
    """
    o = crm.opportunities
    pb = crm.playbook
    keep = _in_scope(crm, lookback)
    stage_t = pd.CategoricalDtype(list(pb.all_stage_names))
    status_t = pd.CategoricalDtype(["open", "won", "lost"])
    pos = np.flatnonzero(keep)
    cols = {
        "opportunity_id": pos.astype(np.int64),
        "created_at": o["created_at"].to_numpy()[pos],
        "stage": pd.Categorical(o["stage"].to_numpy(dtype=object, na_value=None)[pos], dtype=stage_t),
        "status": pd.Categorical(o["status"].to_numpy(dtype=object, na_value=None)[pos], dtype=status_t),
    }
    for c in by_cols:
        cols[c] = o[c].astype("string").fillna(_MISSING).to_numpy(dtype=object)[pos]
    opps = pd.DataFrame(cols)
    h = crm.history
    code = timeline._row_positions(h["opportunity_id"], o["opportunity_id"])
    hk = code >= 0
    hk[hk] = keep[code[hk]]
    hist = pd.DataFrame(
        {
            "opportunity_id": code[hk].astype(np.int64),
            "changed_at": h["changed_at"].to_numpy()[hk],
            "stage": pd.Categorical(h["stage"].to_numpy(dtype=object, na_value=None)[hk], dtype=stage_t),
        }
    )
    return CRM({"opportunities": opps, "history": hist}, as_of_date=crm.as_of_date, playbook=pb)


def _level_table(
    group: np.ndarray,
    n_groups: int,
    lo: np.ndarray,
    hi: np.ndarray,
    status: np.ndarray,
    n_st: int,
    pb: Playbook,
    labels: dict[str, np.ndarray],
) -> pd.DataFrame:
    """Counts per (stage, group) of deals reaching stages ``lo..hi``: one row per cell any deal reached."""
    width = (n_st + 1) * 4
    size = n_groups * width
    enter = np.bincount(group * width + lo * 4 + status, minlength=size)
    leave = np.bincount(group * width + (hi + 1) * 4 + status, minlength=size)
    cnt = (enter - leave).reshape(n_groups, n_st + 1, 4).cumsum(axis=1)[:, :n_st, :]
    s_idx, g_idx = np.nonzero(cnt.sum(axis=2).T > 0)  # pipeline order, then groups
    c = cnt[g_idx, s_idx]
    names = np.array(pb.stage_names, dtype=object)
    out = {"stage": names[s_idx], **{k: v[g_idx] for k, v in labels.items()}}
    out.update(reached=c[:, :3].sum(axis=1), won=c[:, 1], lost=c[:, 2], open=c[:, 0])
    return pd.DataFrame(out)


def _attach_groups(long: pd.DataFrame, opps: pd.DataFrame, by_cols: list[str]) -> pd.DataFrame:
    """Add the group columns of each deal (``opps`` is the compact table of :func:`_scope`)."""
    if not by_cols:
        return long
    pos = pd.Index(opps["opportunity_id"]).get_indexer(long["opportunity_id"])
    return long.assign(**{c: opps[c].to_numpy()[pos] for c in by_cols})


def _count(long: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    st = long["status"].astype(object).to_numpy()
    df = long[keys].assign(
        won=(st == "won").astype(np.int64), lost=(st == "lost").astype(np.int64), open=(st == "open").astype(np.int64)
    )
    g = df.groupby(keys, sort=False, observed=True)[["won", "lost", "open"]].sum()
    g["reached"] = g[["won", "lost", "open"]].sum(axis=1)
    return g[_COUNTS].reset_index()


# --------------------------------------------------------------------------- shrinkage
def _top_prior(pb: Playbook, n_closed: int, min_closed: int, on_insufficient: str, *, what: str) -> pd.DataFrame:
    """Beta prior of each stage's overall rate: Jeffreys, or the CRM defaults when data are too few."""
    crm_p = np.array([pb.crm_probability(s) for s in pb.stage_names])
    if n_closed >= min_closed:
        a = np.full(len(crm_p), 0.5)
        b = np.full(len(crm_p), 0.5)
    else:
        msg = (
            f"{what}: only {n_closed} closed deal(s) in the look-back window (fewer than {min_closed}); "
            "estimates are too uncertain to stand alone"
        )
        if on_insufficient == "raise":
            raise InsufficientDataError(
                msg + ": widen `lookback` (or use lookback=None), or pass on_insufficient='warn'"
            )
        if on_insufficient != "warn":
            raise ParameterError(f"on_insufficient must be 'warn' or 'raise', got {on_insufficient!r}")
        warnings.warn(
            msg + f"; falling back: each stage is shrunk toward the playbook's CRM probability "
            f"(a prior worth {_FALLBACK_STRENGTH:g} deals)",
            FallbackWarning,
            stacklevel=3,
        )
        a = crm_p * _FALLBACK_STRENGTH
        b = (1 - crm_p) * _FALLBACK_STRENGTH
    return pd.DataFrame({"stage": list(pb.stage_names), "a": a, "b": b})


def _fit_strength(won: np.ndarray, lost: np.ndarray, mean: np.ndarray) -> float:
    """Prior strength ``s`` of the groups: the cautious end of its profile-likelihood interval.

    The beta-binomial marginal likelihood across groups is maximised over ``s``;
    the value used is the lower end of the 90% likelihood-ratio interval of ``s``
    (the weakest prior the data cannot reject), so that a flat likelihood does not
    pool groups that truly differ. With fewer than five groups holding closed deals
    (three segments, say) the spread between groups cannot be estimated and the
    minimal prior (2 pseudo-deals at the parent rate) is used.
    """
    n = won + lost
    ok = n > 0
    if ok.sum() < _MIN_GROUPS:  # the spread between 2-4 groups cannot be estimated: minimal prior
        return _S_MIN
    k, n, m = won[ok], n[ok], np.clip(mean[ok], 1e-6, 1 - 1e-6)

    def nll(log_s: float) -> float:
        s = np.exp(log_s)
        a, b = m * s, (1 - m) * s
        return -float(np.sum(special.betaln(k + a, n - k + b) - special.betaln(a, b)))

    lo, hi = np.log(_S_MIN), np.log(_S_MAX)
    best = optimize.minimize_scalar(nll, bounds=(lo, hi), method="bounded")
    cut = best.fun + _LR_HALF
    if nll(lo) <= cut or best.x <= lo:
        return _S_MIN
    root = optimize.brentq(lambda x: nll(x) - cut, lo, best.x, xtol=1e-3)
    return float(np.exp(root))


def _shrunk_table(levels: list[pd.DataFrame], crm: CRM, top: pd.DataFrame, level: float) -> pd.DataFrame:
    """Posterior Beta(a, b) of every cell of the last level, each level shrunk toward the one above."""
    pb = crm.playbook
    lvl0 = levels[0].set_index("stage").reindex(list(pb.stage_names)).fillna(0).astype(np.int64).reset_index()
    post = lvl0.merge(top, on="stage")
    post["a"] += post["won"]
    post["b"] += post["lost"]
    strengths: dict[str, dict[str, float]] = {}
    keys_prev = ["stage"]
    for cur in levels[1:]:
        keys = [c for c in cur.columns if c not in _COUNTS]
        parent = post[[*keys_prev, "a", "b"]].assign(
            m=lambda d: d["a"] / (d["a"] + d["b"]), ab=lambda d: d["a"] + d["b"]
        )
        cur = cur.merge(parent[[*keys_prev, "m", "ab"]], on=keys_prev, how="left")
        s_col = np.empty(len(cur))
        new_key = keys[len(keys_prev)]
        strengths[new_key] = {}
        for st, idx in cur.groupby("stage", sort=False).indices.items():
            c = cur.iloc[idx]
            s = _fit_strength(c["won"].to_numpy(float), c["lost"].to_numpy(float), c["m"].to_numpy(float))
            s_col[idx] = s
            strengths[new_key][str(st)] = s
        # a group's prior is never more informative than its parent's posterior
        s_col = np.minimum(s_col, cur["ab"].to_numpy())
        cur["a"] = cur["m"] * s_col + cur["won"]
        cur["b"] = (1 - cur["m"]) * s_col + cur["lost"]
        post, keys_prev = cur.drop(columns=["m", "ab"]), keys
    a, b = post["a"].to_numpy(float), post["b"].to_numpy(float)
    tail = (1 - level) / 2
    out = post.drop(columns=["a", "b"])
    out["p_win"] = a / (a + b)
    out["ci_lower"] = stats.beta.ppf(tail, a, b)
    out["ci_upper"] = stats.beta.ppf(1 - tail, a, b)
    out["crm_probability"] = out["stage"].map({s: pb.crm_probability(s) for s in pb.stage_names}).astype(float)
    out["gap"] = out["crm_probability"] - out["p_win"]
    order = {s: i for i, s in enumerate(pb.stage_names)}
    sort_keys = [c for c in keys_prev if c != "stage" and c not in ("age_band", "age_from", "age_to")]
    out = out.assign(_o=out["stage"].map(order)).sort_values(["_o", *sort_keys], kind="stable").drop(columns="_o")
    out["stage"] = out["stage"].astype("string")
    for c in _COUNTS:
        out[c] = out[c].astype(np.int64)
    out = out.reset_index(drop=True)
    out.attrs["prior_strength"] = strengths
    out.attrs["level"] = level
    return out


def _band_label(lo: float, hi: float) -> str:
    return f"{lo:g}d+" if np.isinf(hi) else f"{lo:g}-{hi:g}d"
