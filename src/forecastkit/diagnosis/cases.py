"""Diagnosis of the three case patterns, from the numbers the KPI, probability, hygiene and forecast functions return.

How each case is judged (thresholds in ``playbook.diagnosis``; every metric is
computed by the named forecastkit function, never a second time here):

1. **Wide pipeline, low conversion** - detected when *both* core symptoms hold:
   conversion is low (qualified -> won, the recalibrated ``p_win`` of the
   qualification stage from :func:`~forecastkit.stage_probabilities` over the
   last 365 days, is below ``conversion_low_ratio`` x the CRM's qualification
   probability, or has dropped by ``history_drop`` against the year before when
   the history is long enough) *and* the pipeline is wide (new deals per rep
   per month, from :func:`~forecastkit.new_pipeline`, above
   ``leads_per_rep_month_high``, or the median rep over the WIP limit).
2. **Good conversion, cycle too long** - conversion is *not* low *and* the
   censoring-aware median time to win (Aalen-Johansen cumulative incidence of
   won, from :func:`~forecastkit.cycle_survival`) is above the playbook's
   ``sales_cycle_days`` orange threshold, or lengthened by ``history_drop``
   against the year before. Close-date slips and forecast instability are
   supporting evidence.
3. **Systematically optimistic forecast** ("commits are not met") - judged on
   two independent families of evidence, so that no single number decides:
   *calls over bookings* - the median signed bias of the reps' week-4 commit
   calls over the last ``bias_periods`` closed quarters is above
   ``forecast_bias_high``, or at least ``biased_periods_min`` of those quarters
   are above +10% (:func:`~forecastkit.forecast_accuracy` of ``calls_vs_actual``);
   *commit deals unlikely* - the deals the reps call commit for the current
   quarter are, weighted by amount, below ``commit_probability_low`` of being won
   in it (``p_win_in_period`` of :func:`~forecastkit.forecast`; it does not use
   the calls). Detected when both families hold, or when the calls alone are
   systematic (median bias above ``forecast_bias_high`` *and* every one of the
   last ``bias_periods`` quarters above +10%). CRM
   stage probabilities above the recalibrated ones are supporting evidence only
   (the wide-pipeline case shows them too).

"Low" and "long" are judged against the playbook's thresholds and, when the
company has at least ``history_quarters`` closed quarters, also against its own
previous year; the finding's ``basis`` says which. With too few closed deals
(``min_closed_deals``) or forecast periods, the finding is "insufficient data"
with what is missing - never a verdict.

Speed: :func:`diagnose` computes the company-wide tables once (close-date pushes,
aging and WIP from one open-deal frame, the reps' calls against bookings, the company's year-ago
snapshot and the forecast's deal table of the current quarter, which fits the win model at most
once, or uses ``model=``; or the deal table of a forecast handed over with ``forecast=``). The
company's KPI measures and calls read a copy with only the deal columns they need, and the
year-ago snapshot rewinds only those columns and the history (not the activities).
The company is split by team (or rep, unit) once (:meth:`~forecastkit.CRM.split_by`, on the
tables that place a row in a scope: deals, calls, targets, reps). Each scope is then judged
(:func:`_judge`) from measures computed once for every scope (:class:`_ScopeMeasures`), never
from a snapshot cut per scope: new deals per rep, win rate, the current quarter's pipeline and
the time-to-win curves (now and a year ago) run once, grouped by a column holding each deal's
scope (the same counts and sums, and the same Aalen-Johansen curve per scope as on the scope
alone: one pass of :func:`~forecastkit.kpi.cycle._aalen_johansen`, equal to lifelines' fit per
scope), and so do the stage probabilities (now and a year ago: one count of the stages reached,
each scope shrunk toward its own prior), the reps' calls' bias by quarter and instability (one
``forecast_accuracy`` grouped by scope and quarter, a rep in two teams counted in both), each
scope's first deal, won deals and quota (read at the scope's rows of arrays built once). The
drill-down lists (close-date pushes, deals to kill, stuck deals, reps over WIP, commit deals)
are built once for every scope, ordered by scope, and cut by position. The findings are
identical to judging ``crm.subset(team=...)`` on its own (:class:`_Measures`, what
:func:`diagnose_scope` computes on a snapshot): the same values, types and tables.

Severity: how far the weakest core symptom is past its threshold - ``high``
at 1.5x or more (or 1/1.5 for "below" symptoms), ``medium`` at 1.2x, ``low``
otherwise (case 3: the weakest of the symptoms that hold).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM, _positions
from forecastkit.diagnosis.findings import ACTIONS, EVIDENCE_COLUMNS, Diagnosis, Finding
from forecastkit.errors import ParameterError
from forecastkit.periods import parse_period, period_of
from forecastkit.playbook import _DEFAULT_DIAGNOSIS, Playbook

__all__ = ["diagnose", "diagnose_scope"]

_YEAR = pd.Timedelta(days=365)


@dataclass
class _Metric:
    metric: str
    value: float
    threshold: float
    comparison: Literal["above", "below"]
    reference: str
    core: bool
    source: str
    trend: float = np.nan
    n: float = np.nan
    holds_override: bool | None = None

    @property
    def holds(self) -> bool:
        if self.holds_override is not None:
            return self.holds_override
        if not np.isfinite(self.value) or not np.isfinite(self.threshold):
            return False
        return self.value > self.threshold if self.comparison == "above" else self.value < self.threshold

    @property
    def strength(self) -> float:
        """How far past the threshold (>= 1 when the symptom holds)."""
        v, t = self.value, self.threshold
        if not (np.isfinite(v) and np.isfinite(t)) or t == 0 or v == 0:
            return 1.0 if self.holds else 0.0
        return v / t if self.comparison == "above" else t / v

    def row(self) -> dict:
        return {
            "metric": self.metric,
            "value": self.value,
            "threshold": self.threshold,
            "comparison": self.comparison,
            "reference": self.reference,
            "holds": self.holds,
            "core": self.core,
            "trend": self.trend,
            "n": self.n,
            "source": self.source,
        }


def _quiet(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Call an analysis function; its fallback warnings become part of the evidence, not noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _severity(core: Sequence[_Metric]) -> str:
    s = min(m.strength for m in core)
    return "high" if s >= 1.5 else "medium" if s >= 1.2 else "low"


def _evidence(metrics: Sequence[_Metric]) -> pd.DataFrame:
    return pd.DataFrame([m.row() for m in metrics], columns=EVIDENCE_COLUMNS)


# ------------------------------------------------------------------- measures
def _stage_table(crm: CRM) -> pd.DataFrame:
    """Recalibrated stage probabilities over the last year (one call per scope, shared by cases 1-3)."""
    from forecastkit.probability.stages import stage_probabilities

    return _quiet(stage_probabilities, crm, lookback="365D")


def _qualified_conversion(crm: CRM, table: pd.DataFrame | None = None) -> tuple[float, float, int]:
    """Recalibrated p_win of the qualification stage over the last year: (p_win, crm_probability, closed deals)."""
    return _conversion_of(crm.playbook, _stage_table(crm) if table is None else table)


def _conversion_of(pb: Playbook, t: pd.DataFrame) -> tuple[float, float, int]:
    """The qualification stage's row of a stage table: (p_win, crm_probability, closed deals)."""
    stage = _qualified_stage(pb)
    hit = np.flatnonzero(t["stage"].to_numpy(dtype=object, na_value=None) == stage)
    if not len(hit):
        return np.nan, pb.crm_probability(stage), 0
    i = int(hit[0])
    n = int(t["won"].iat[i] + t["lost"].iat[i])
    return (float(t["p_win"].iat[i]) if n else np.nan), float(t["crm_probability"].iat[i]), n


def _qualified_stage(pb: Playbook) -> str:
    return pb.stage_names[1] if len(pb.stages) > 1 else pb.stage_names[0]


_MONTH_LABELS: dict[tuple, tuple[Playbook, set[str]]] = {}


def _month_labels(crm: CRM, which: Literal["last_full", "year_to_date"]) -> set[str]:
    """Labels of the 12 months a scope's measures read: the last 12 full months before the
    snapshot date (``last_full``), or the months of the 12 month-steps after a year before it
    (``year_to_date``). The same for every scope of a company: computed once per date and playbook."""
    key = (which, crm.as_of_date, id(crm.playbook))
    hit = _MONTH_LABELS.get(key)
    if hit is not None and hit[0] is crm.playbook:
        return hit[1]
    pb = crm.playbook
    if which == "last_full":
        last = period_of(crm.as_of_date, "month", pb).shift(-1, pb)
        labels = {last.shift(-i, pb).label for i in range(12)}
    else:
        start = crm.as_of_date - _YEAR
        labels = {period_of(start + pd.DateOffset(months=i), "month", pb).label for i in range(1, 13)}
    if len(_MONTH_LABELS) > 64:
        _MONTH_LABELS.clear()
    _MONTH_LABELS[key] = (pb, labels)
    return labels


def _leads_per_rep_month(crm: CRM, table: pd.DataFrame | None = None) -> tuple[float, int]:
    """Deals created per active rep per month over the last 12 full months (new_pipeline by owner and month).

    ``table``: the scope's rows of ``new_pipeline`` computed once for every scope (else computed on ``crm``).
    """
    from forecastkit.kpi.sales import new_pipeline

    months = _month_labels(crm, "last_full")
    t = new_pipeline(crm, period="month", by="owner") if table is None else table
    t = t[t["period"].isin(months)]
    if t.empty:
        return np.nan, 0
    per_rep = t.groupby("owner")["new_deals"].sum() / len(months)
    return float(per_rep.median()), int(t["new_deals"].sum())


def _wip_load(w, by_owner) -> tuple[float, pd.DataFrame, pd.DataFrame]:  # type: ignore[no-untyped-def]
    """Median WIP load of the scope's reps (hygiene.wip, computed once company-wide), reps over the limit, deals to close out.

    ``by_owner(name, table)`` gives the scope's reps' rows of a company-wide table.
    """
    by = by_owner("wip.by_owner", w.by_owner)
    load = float(by["load"].median()) if len(by) else np.nan
    return load, by[by["over_limit"] > 0].reset_index(drop=True), by_owner("wip.close_out", w.close_out)


def _time_to_win(crm: CRM, curves: pd.DataFrame | None = None) -> tuple[float, int]:
    """Censoring-aware median days to win: where the Aalen-Johansen incidence of won reaches half its final level.

    ``curves``: the scope's rows of ``cycle_survival`` computed once for every scope (else computed on ``crm``).
    """
    from forecastkit.kpi.cycle import cycle_survival

    if curves is None:
        curves = _quiet(cycle_survival, crm, curves=("won",), intervals=False)
    return _median_days_to_win(curves, int((crm.opportunities["status"] == "won").sum()))


def _median_days_to_win(curves: pd.DataFrame, n: int) -> tuple[float, int]:
    """Where the won curve of ``curves`` reaches half its final level; ``n``: the scope's won deals."""
    won = curves[curves["curve"] == "won"].sort_values("days")
    if won.empty or n == 0 or won["estimate"].max() <= 0:
        return np.nan, n
    half = 0.5 * won["estimate"].max()
    return float(won.loc[won["estimate"] >= half, "days"].iloc[0]), n


def _slips(crm: CRM, pushes: pd.DataFrame) -> tuple[float, float, pd.DataFrame]:
    """Close-date pushes of the scope's open deals (timeline.close_date_pushes, computed once company-wide)."""
    o = crm.open_deals.merge(pushes, on="opportunity_id", how="left")
    if o.empty:
        return np.nan, np.nan, o
    share = float((o["pushes"] > 0).mean())
    per = float(o["pushes"].mean())
    cols = ["opportunity_id", "owner", "name", "stage", "amount", "close_date", "pushes", "days_pushed"]
    twice = o[o["pushes"] >= 2].sort_values(["pushes", "amount"], ascending=False)[cols]
    return share, per, twice.reset_index(drop=True)


def _calls_by_period(crm: CRM, periods: int) -> pd.DataFrame:
    """The reps' commit calls against bookings, per closed quarter and checkpoint (calls_vs_actual)."""
    from forecastkit.errors import InsufficientDataError
    from forecastkit.forecast.accuracy import calls_vs_actual

    empty = pd.DataFrame(columns=["period", "checkpoint", "method", "owner", "forecast", "actual"])
    if not crm.has("forecast_calls") or crm.forecast_calls.empty:
        return empty
    try:
        cva = calls_vs_actual(crm, periods=periods, checkpoints=("week2", "week4", "week13"))
    except InsufficientDataError:
        return empty
    return cva[cva["method"] == "commit"]


def _commit_bias(calls: pd.DataFrame) -> tuple[float, int, int, pd.DataFrame]:
    """Signed bias of the commit calls at week 4 per closed quarter (forecast_accuracy): median, count above +10%, n."""
    from forecastkit.forecast.accuracy import forecast_accuracy

    w4 = calls[calls["checkpoint"] == "week4"]
    if w4.empty:
        return np.nan, 0, 0, pd.DataFrame()
    acc = forecast_accuracy(w4, by="period").sort_values("period")
    acc = acc[acc["bias"].notna()]
    if acc.empty:
        return np.nan, 0, 0, acc
    return float(acc["bias"].median()), int((acc["bias"] > 0.10).sum()), len(acc), acc.reset_index(drop=True)


def _forecast_instability(calls: pd.DataFrame) -> float:
    """Mean absolute move of the company commit call between week 2 and week 13 of each quarter, as a share of actual."""
    if calls.empty:
        return np.nan
    tot = calls.groupby(["period", "checkpoint"])[["forecast", "actual"]].sum().unstack("checkpoint")
    if not {"week2", "week13"} <= set(tot["forecast"].columns):
        return np.nan
    moved = (tot["forecast"]["week13"] - tot["forecast"]["week2"]).abs()
    actual = tot["actual"]["week13"].replace(0, np.nan)
    return float((moved / actual).mean())


# ------------------------------------------------------------- company-wide, once
class _Company:
    """Company-wide tables computed once per :func:`diagnose` call and sliced per scope.

    Per-deal tables (close-date pushes, aging, the forecast's deal table) are sliced by
    the scope's deals; per-rep tables (WIP load, the reps' calls against bookings) by
    the scope's reps. The company's year-ago snapshot is rewound once (a scope rewinds its own, small one).
    """

    def __init__(
        self,
        crm: CRM,
        *,
        method: str = "model",
        model: object = None,
        forecast_deals: bool = True,
        forecast: object = None,
    ) -> None:
        self.crm = crm
        self.method = method
        self.model = model
        self.want_forecast = forecast_deals
        self.forecast = forecast  # a Forecast of this snapshot handed over (checked by _check_forecast)
        self._cache: dict[str, object] = {}

    def _get(self, key: str, make):  # type: ignore[no-untyped-def]
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def deals_only(self) -> CRM:
        """The snapshot with only the deal columns the KPI measures read (``_MEASURE_COLUMNS``), the
        reps, the targets and the forecast calls: what ``win_rate``, ``new_pipeline``,
        ``pipeline_coverage``, ``cycle_survival`` and ``calls_vs_actual`` of the company read,
        without copying every deal column at each filter."""

        def build() -> CRM:
            crm = self.crm
            o = crm.opportunities
            tables = {"opportunities": o[[c for c in _MEASURE_COLUMNS if c in o]]}
            tables.update({n: crm._tables[n] for n in ("reps", "targets", "forecast_calls") if n in crm._present})
            return CRM(tables, as_of_date=crm.as_of_date, playbook=crm.playbook)

        return self._get("deals_only", build)  # type: ignore[no-any-return]

    def pushes(self) -> pd.DataFrame:
        from forecastkit.data.timeline import close_date_pushes

        return self._get("pushes", lambda: close_date_pushes(self.crm))  # type: ignore[no-any-return]

    def open_deal_frame(self) -> pd.DataFrame:
        """The hygiene checks' open-deal frame (stage spells, ages), built once for aging and WIP."""
        from forecastkit.hygiene._deals import open_deal_frame

        return self._get("open_deal_frame", lambda: open_deal_frame(self.crm))  # type: ignore[no-any-return]

    def aging(self) -> pd.DataFrame:
        """``hygiene.aging(crm)``: its rows of the open-deal frame built once (:meth:`open_deal_frame`)."""
        from forecastkit.hygiene.aging import _aging

        return self._get("aging", lambda: _aging(self.open_deal_frame(), self.crm.playbook))  # type: ignore[no-any-return]

    def wip(self):  # type: ignore[no-untyped-def]
        """``hygiene.wip(crm)``: its tables from the open-deal frame built once (:meth:`open_deal_frame`)."""
        from forecastkit.hygiene.wip import WipReport, _wip

        return self._get("wip", lambda: WipReport(*_wip(self.open_deal_frame(), self.crm.playbook)))

    def calls(self, periods: int) -> pd.DataFrame:
        return self._get(f"calls{periods}", lambda: _calls_by_period(self.deals_only(), periods))  # type: ignore[no-any-return]

    def year_ago(self) -> CRM:
        """The snapshot a year earlier, with the tables and deal columns the year-ago measures read.

        Only the deals (the columns of ``_MEASURE_COLUMNS``) and their history are rewound
        (:meth:`CRM._rewind_source`): ``CRM.as_of`` rewinds each deal column on its own, so
        these columns hold the values of ``crm.as_of(...)``, without rewinding the activities
        and the other deal columns that the stage probabilities and the time to win never read.
        """

        def build() -> CRM:
            lean = self.crm._rewind_source(_MEASURE_COLUMNS)
            return lean.as_of(self.crm.as_of_date - _YEAR)

        return self._get("year_ago", build)  # type: ignore[no-any-return]

    def commit_deals(self) -> pd.DataFrame:
        """The forecast's open deals dated in the current quarter that the reps call commit (one forecast)."""
        if not self.want_forecast:
            return pd.DataFrame()
        if self.forecast is not None:
            return self._get("commit", lambda: _commit_rows(self.forecast.deals))  # type: ignore[attr-defined]
        return self._get("commit", lambda: _commit_deals(self.crm, self.method, self.model))  # type: ignore[no-any-return]


#: Tables a scope's snapshot needs for the per-scope measures (the others are left out of it).
_SCOPE_TABLES = ("opportunities", "history", "forecast_calls", "targets", "reps")
#: Tables :class:`_Scopes` splits by scope (a scope's rows of the others are never cut).
_SPLIT_TABLES = ("opportunities", "forecast_calls", "targets", "reps")
#: Deal columns read by the per-scope measures of the year before and by the KPI tables cut per scope.
_DEAL_COLUMNS = ("opportunity_id", "owner", "created_at", "stage", "status", "closed_at", "close_date", "amount")


class _Scopes:
    """One scope column (team, owner or business unit) of the company: the scopes' snapshots and their rows.

    The company is split once (:meth:`CRM.split_by`); each scope's snapshot is cut from
    it, and the scope's rows of the company-wide tables (per deal: aging, pushes, the
    commit deals, the year-ago snapshot; per rep: WIP, calls) are cut from each table
    ordered by scope once. A scope's work is then proportional to its own rows, not to
    the company's: identical rows to filtering the company-wide table by the scope's
    deals or reps (``_rows_of``), in the same order.
    """

    def __init__(self, company: _Company, col: str) -> None:
        self.company = company
        self.col = col
        # the split reads only the tables that place a row in a scope and that the measures cut
        # per scope (the same keys and rows as splitting the whole company, without cutting its
        # history and activities); a scope's full snapshot comes from a second split, if asked for
        self._quarter = quarter = _quarter_targets_only(company.crm)
        tables = {n: quarter._tables[n] for n in _SPLIT_TABLES if n in quarter._present or n == "opportunities"}
        self.split = CRM(tables, as_of_date=quarter.as_of_date, playbook=quarter.playbook).split_by(col)
        self._full_split: Mapping[str, CRM] | None = None
        self._deal_scope = np.full(len(company.crm.opportunities), -1, dtype=np.int64)
        self._scope_no: dict[str, int] = {}
        for g, key in enumerate(self.split):
            self._deal_scope[self.split.positions(key)] = g
            self._scope_no[key] = g
        self._by_deal: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._by_owner: dict[str, dict] = {}
        self._kpis: dict[str, tuple[pd.DataFrame, dict]] = {}
        self._year_ago_tables: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._scoped: dict[str, CRM] = {}
        self._reps_team: set | None = None
        self._stages: dict[str, list[pd.DataFrame]] = {}
        self._calls: dict[str, tuple] = {}
        self._slips: tuple | bool | None = None
        self._batch: dict[str, object] = {}

    def snapshot(self, key: str) -> CRM:
        """Scope ``key``'s snapshot (= ``crm.subset``) with the tables the per-scope measures read."""
        if self._full_split is None:
            self._full_split = self._quarter.split_by(self.col)
        return self._full_split.scope(key, tables=_SCOPE_TABLES)  # type: ignore[attr-defined, no-any-return]

    def kpi(self, name: str, key: str) -> pd.DataFrame:
        """Scope ``key``'s rows of a KPI table computed once for every scope.

        ``"new_pipeline"`` (by owner and month), ``"win_rate"`` (by month), ``"pipeline_coverage"``
        (the current quarter's pipeline and won amount; no quota), ``"cycle_survival"``
        (won, no intervals) and ``"cycle_survival_year_ago"`` (the same a year earlier). The KPI
        function runs once on the company's deals that belong to a scope, grouped by a
        column holding each deal's scope (the ``subset`` rule, never refilled), so a scope's
        rows are those of the function run on the scope's snapshot (counts per group; one
        Aalen-Johansen fit per group, on the group's deals in the same order, same seed).
        """
        from forecastkit.kpi.cycle import cycle_survival
        from forecastkit.kpi.sales import new_pipeline, pipeline_coverage, win_rate

        if name not in self._kpis:
            col = self.col
            if name == "new_pipeline":
                t = new_pipeline(self._scope_company(), period="month", by=[col] if col == "owner" else [col, "owner"])
            elif name == "win_rate":
                t = win_rate(self._scope_company(), period="month", by=col)
            elif name == "cycle_survival":
                t = _quiet(cycle_survival, self._scope_company(), by=col, curves=("won",), intervals=False)
            elif name == "pipeline_coverage":  # pipeline and won per scope (quota: see coverage())
                t = pipeline_coverage(self._scope_company(), by=col)
            elif name == "cycle_survival_year_ago":
                t = _quiet(cycle_survival, self._scope_company(year_ago=True), by=col, curves=("won",), intervals=False)
            else:
                raise KeyError(name)
            self._kpis[name] = (t, t.groupby(col, sort=False).indices)
        t, idx = self._kpis[name]
        return t.take(idx.get(key, np.array([], dtype=np.int64))).reset_index(drop=True)

    def coverage(self, key: str, crm: CRM | None = None) -> float:
        """Scope ``key``'s pipeline coverage of the current quarter: ``pipeline_coverage(crm)["coverage"]``.

        The pipeline comes from ``pipeline_coverage`` run once for every scope (the same sum
        over the same deals in the same order); the quota from the scope's own targets
        (``crm``, its snapshot), as ``pipeline_coverage`` computes it for the scope alone.
        """
        from forecastkit.kpi._common import _current_period, _org_map, _safe_div, _target_amounts

        if "pipeline" not in self._batch:  # each scope's row of pipeline_coverage run for every scope
            self.kpi("pipeline_coverage", key)
            t, idx = self._kpis["pipeline_coverage"]
            values = t["pipeline"].to_numpy()
            self._batch["pipeline"] = {k: float(values[i[0]]) for k, i in idx.items() if len(i)}
        pipeline = self._batch["pipeline"].get(key, 0.0)  # type: ignore[attr-defined]
        if self._reps_team is None:
            reps = self.company.crm.reps
            self._reps_team = set(reps.loc[reps["team"].notna(), "owner"].unique()) if len(reps) else set()
        if crm is None:
            got = self._quota_by_position(key)
            if got is not None:
                return np.nan if np.isnan(got) else float(_safe_div(pipeline, got))
            crm = self.snapshot(key)
        tg = crm.targets
        if not len(tg):  # no quota: NaN coverage (or no row at all)
            return np.nan
        has_owner = tg["owner"].notna().to_numpy(dtype=bool)
        owners = tg.loc[has_owner, "owner"]
        # the quota maps each target owner to a team through the scope's org map; for an owner
        # whose rows in ``reps`` name a team, it is the company's (the scope holds all his rows)
        if _QUOTA not in tg or not all(o in self._reps_team for o in owners.unique()):
            quota = _target_amounts(crm, "bookings", [_current_period(crm)], None)
            return float(_safe_div(pipeline, float(quota["target"].iloc[0]))) if len(quota) else np.nan
        # = _target_amounts(crm, "bookings", [quarter], None): the reps' quotas, except those of
        # a team that has its own quota, plus the teams' own (each row's prorated amount is
        # computed once company-wide, see _quarter_targets_only); summed in the same order
        target = tg[_QUOTA].to_numpy(dtype=float)
        team_row = ~has_owner & tg["team"].notna().to_numpy(dtype=bool)
        of_owners = target[has_owner]
        if team_row.any():
            own = set(tg.loc[team_row, "team"].dropna())
            org = self._once("org_map", lambda: _org_map(self.company.crm))
            team = owners.map(org["team"]) if len(org) else pd.Series(pd.NA, index=owners.index)
            of_owners = of_owners[~team.isin(own).to_numpy(dtype=bool)]
        total = pd.Series(np.concatenate([of_owners, target[team_row]]), dtype=float).sum()
        return float(_safe_div(pipeline, float(total)))

    def _quota_by_position(self, key: str) -> float | None:
        """The scope's quota as :meth:`coverage` computes it from its snapshot's targets, read from arrays of
        the company's targets (built once) at the scope's rows. NaN: no target row; None: the snapshot is needed."""
        from forecastkit.kpi._common import _org_map

        def build():  # type: ignore[no-untyped-def]
            tg = self.split._crm.targets
            if not len(tg) or _QUOTA not in tg:
                return None
            owner = tg["owner"].to_numpy(dtype=object, na_value=None)
            team = tg["team"].to_numpy(dtype=object, na_value=None)
            org = _org_map(self.company.crm) if (np.equal(owner, None) & ~np.equal(team, None)).any() else None
            if org is not None and len(org):  # each owner's team in the org map (None: none)
                mapped = tg["owner"].map(org["team"]).to_numpy(dtype=object, na_value=None)
            else:
                mapped = np.full(len(tg), None, dtype=object)
            in_reps = np.array([o in self._reps_team for o in owner], dtype=bool)
            return owner, team, mapped, in_reps, tg[_QUOTA].to_numpy(dtype=float)

        arrays = self._once("quota_arrays", build)
        if arrays is None:
            return None if len(self.split._crm.targets) else np.nan
        owner, team, mapped, in_reps, target = arrays  # type: ignore[misc]
        p = self.split.positions(key, "targets")
        if not len(p):
            return np.nan
        has_owner = ~np.equal(owner[p], None)
        if not in_reps[p][has_owner].all():
            return None
        team_row = ~has_owner & ~np.equal(team[p], None)
        of_owners = target[p][has_owner]
        if team_row.any():
            own = set(team[p][team_row])
            of_owners = of_owners[~np.array([t is not None and t in own for t in mapped[p][has_owner]], dtype=bool)]
        return float(pd.Series(np.concatenate([of_owners, target[p][team_row]]), dtype=float).sum())

    def stage_table(self, key: str, year_ago: bool = False) -> pd.DataFrame:
        """Scope ``key``'s recalibrated stage probabilities (now, or a year earlier): ``_stage_table`` of its snapshot.

        Counted once for every scope on the company's deals (or its year-ago deals), each
        deal in its scope, each scope shrunk toward its own prior
        (:func:`~forecastkit.probability.stages._stage_probabilities_by_scope`): the same
        table as ``stage_probabilities(lookback="365D")`` of the scope's snapshot.
        """
        from forecastkit.probability.stages import _stage_probabilities_by_scope

        name = "stages_year_ago" if year_ago else "stages"
        if name not in self._stages:
            if year_ago:
                crm, scope = self.company.year_ago(), self._year_ago_scope()
            else:
                crm, scope = self.company.crm, self._deal_scope
            self._stages[name] = _stage_probabilities_by_scope(crm, scope, len(self._scope_no), lookback="365D")
        return self._stages[name][self._scope_no[key]]

    def owners(self, key: str) -> set:
        """The reps of scope ``key`` as :func:`diagnose_scope` reads them from its snapshot: its deals' owners
        and its forecast calls' owners (found for every scope in one pass)."""
        return self._once("owners", self._owners_of_every_scope)[self._scope_no[key]]  # type: ignore[no-any-return]

    def _owners_of_every_scope(self) -> list[set]:
        crm = self.company.crm
        out: list[set] = [set() for _ in self._scope_no]
        names = ["opportunities"] + (["forecast_calls"] if crm.has("forecast_calls") else [])
        for name in names:
            codes, uniques = pd.factorize(crm._tables[name]["owner"])  # a missing owner: -1 (dropped)
            uniques = np.asarray(uniques, dtype=object)
            for key, g in self._scope_no.items():
                c = codes[self.split.positions(key, name)]
                out[g].update(uniques[np.unique(c[c >= 0])])
        return out

    def calls_measures(self, key: str, periods: int) -> tuple[float, tuple]:
        """Scope ``key``'s ``_forecast_instability`` and ``_commit_bias`` of its reps' calls, computed for every scope at once.

        The company's calls (``calls_vs_actual``, once) are cut per scope as :meth:`owner_rows`
        cuts them (a rep in two teams counts in both); the sums per quarter and checkpoint and
        :func:`~forecastkit.forecast_accuracy` run once grouped by scope, each group on the same
        rows in the same order as for the scope alone, so the numbers are identical.
        """
        name = f"calls{periods}"
        if name not in self._calls:
            self._calls[name] = self._calls_of_every_scope(name, self.company.calls(periods))
        cut, instability, accuracy = self._calls[name]
        g = self._scope_no[key]
        if g not in accuracy:  # no call with a forecast at week 4: the scope's own (empty) answer
            return instability.get(g, np.nan), _commit_bias(cut(key))
        acc = accuracy[g].sort_values("period")
        acc = acc[acc["bias"].notna()]
        if acc.empty:
            return instability.get(g, np.nan), (np.nan, 0, 0, acc)
        bias = (float(acc["bias"].median()), int((acc["bias"] > 0.10).sum()), len(acc), acc.reset_index(drop=True))
        return instability.get(g, np.nan), bias

    def _calls_of_every_scope(self, name: str, calls: pd.DataFrame):  # type: ignore[no-untyped-def]
        from forecastkit.forecast.accuracy import forecast_accuracy

        def cut(key: str) -> pd.DataFrame:
            return self.owner_rows(name, calls, self.owners(key))

        if calls is None or len(calls) == 0 or "owner" not in calls:
            return cut, {}, {}
        if name not in self._by_owner:
            self._by_owner[name] = calls.groupby("owner", sort=False, dropna=True, observed=True).indices
        idx = self._by_owner[name]
        rows, scope = [], []
        for g, key in enumerate(self.split):  # = owner_rows(name, calls, owners) of every scope
            found = [idx[o] for o in self.owners(key) if o in idx]
            if found:
                r = np.sort(np.concatenate(found))
                rows.append(r)
                scope.append(np.full(len(r), g, dtype=np.int64))
        if not rows:
            return cut, {}, {}
        big = calls.take(np.concatenate(rows)).reset_index(drop=True)
        big["_scope"] = np.concatenate(scope)
        # _forecast_instability of each scope (NaN when the scope lacks week 2 or week 13 calls)
        instability: dict[int, float] = {}
        tot = big.groupby(["_scope", "period", "checkpoint"])[["forecast", "actual"]].sum().unstack("checkpoint")
        if {"week2", "week13"} <= set(tot["forecast"].columns):
            w2 = tot["forecast"]["week2"].to_numpy(dtype=float)
            w13 = tot["forecast"]["week13"].to_numpy(dtype=float)
            actual = tot["actual"]["week13"].to_numpy(dtype=float)
            # each row's move over actual, as the scope alone computes it (its rows: its quarters, sorted)
            ratio = np.abs(w13 - w2) / np.where(actual == 0, np.nan, actual)
            row_scope = tot.index.get_level_values(0).to_numpy()
            bounds = np.searchsorted(row_scope, np.arange(len(self._scope_no) + 1))
            for g in np.unique(row_scope):
                a, b = bounds[g], bounds[g + 1]
                if np.isnan(w2[a:b]).all() or np.isnan(w13[a:b]).all():  # no call at one of the checkpoints
                    continue
                instability[int(g)] = float(pd.Series(ratio[a:b]).mean())
        # _commit_bias: forecast_accuracy of the week-4 calls by quarter, every scope in one call
        w4 = big[big["checkpoint"] == "week4"]
        accuracy: _CutByScope = _CutByScope(None)
        if len(w4):
            acc = forecast_accuracy(w4, by=["_scope", "period"])
            scope = acc["_scope"].to_numpy(dtype=np.int64)
            rows, scope = _by_scope(np.arange(len(acc)), scope)
            acc = acc.take(rows).drop(columns="_scope").reset_index(drop=True)
            accuracy = _CutByScope(_Cut(acc, scope, len(self._scope_no)))
        return cut, instability, accuracy

    def slips(self, key: str) -> tuple[float, float, pd.DataFrame] | None:
        """Scope ``key``'s ``_slips`` (close-date pushes of its open deals) without a merge per scope.

        ``close_date_pushes`` has one row per deal of the company, in the deals' order, so the
        scope's open deals take their pushes by position: the same rows, values and order as
        merging the scope's open deals with its rows of the table. The deals pushed twice or
        more of every scope are built (and given the merge's column types) once, sorted by
        scope, then pushes and amount (descending; a stable sort, so each scope's rows are in
        the order of sorting them alone), and cut per scope. None when the table is not one
        row per deal or the scope has no open deal (then ``_slips`` itself is used).
        """
        if self._slips is None:
            self._slips = self._slips_of_every_scope()
        if self._slips is False:
            return None
        rows, bounds, n_push, twice = self._slips
        g = self._scope_no[key]
        n = n_push[rows[bounds[g] : bounds[g + 1]]]
        if not len(n):
            return None
        return float((n > 0).mean()), float(n.mean()), twice(g)

    def _slips_of_every_scope(self):  # type: ignore[no-untyped-def]
        o, pushes = self.company.crm.opportunities, self.company.pushes()
        aligned = len(o) > 0 and len(pushes) == len(o)
        aligned = aligned and bool(
            (pushes["opportunity_id"].to_numpy(dtype=object) == o["opportunity_id"].to_numpy(dtype=object)).all()
        )
        if not aligned or pushes["pushes"].dtype != np.int64:  # (a mean of integers: the same in any order)
            return False
        is_open = (o["status"] == "open").to_numpy(dtype=bool)
        n_push = pushes["pushes"].to_numpy()
        deal = np.flatnonzero(is_open & (self._deal_scope >= 0))
        rows, g = _by_scope(deal, self._deal_scope[deal])
        bounds = np.searchsorted(g, np.arange(len(self._scope_no) + 1))
        # the column types a merge gives (e.g. a text id merged with the table's object id is object)
        dtypes = o.head(1).merge(pushes.head(1), on="opportunity_id", how="left").dtypes
        many = rows[n_push[rows] >= 2]
        cols = ["opportunity_id", "owner", "name", "stage", "amount", "close_date"]
        twice = o[cols].take(many).reset_index(drop=True)
        twice["pushes"] = pushes["pushes"].take(many).to_numpy()
        twice["days_pushed"] = pushes["days_pushed"].take(many).to_numpy()
        twice = twice.astype({c: dtypes[c] for c in twice.columns if twice[c].dtype != dtypes[c]})
        twice[_G] = self._deal_scope[many]
        twice = twice.sort_values([_G, "pushes", "amount"], ascending=[True, False, False])
        scope = twice.pop(_G).to_numpy()
        return rows, bounds, n_push, _Cut(twice.reset_index(drop=True), scope, len(self._scope_no))

    # ----------------------------------------------------- the measures of every scope at once
    def measures(self, key: str) -> _ScopeMeasures:
        """Scope ``key``'s measures for :func:`_judge`, cut from tables computed once for every scope."""
        return _ScopeMeasures(self, key)

    def _once(self, name: str, build):  # type: ignore[no-untyped-def]
        if name not in self._batch:
            self._batch[name] = build()
        return self._batch[name]

    def first_created(self, g: int) -> pd.Timestamp:
        """The first creation date of scope ``g``'s deals (``created_at.min()`` of its snapshot)."""

        def build() -> pd.Series:
            o = self.company.crm.opportunities
            return o["created_at"].groupby(self._deal_scope).min()

        return self._once("first_created", build).get(g, pd.NaT)

    def won_deals(self, g: int, year_ago: bool = False) -> int:
        """Scope ``g``'s won deals (now or a year earlier), as ``_time_to_win`` counts them."""
        name = "won_year_ago" if year_ago else "won"
        return int(self._once(name, lambda: self._count_by_scope(year_ago, won=True))[g])

    def year_ago_deals(self, g: int) -> int:
        """Scope ``g``'s deals in the company's year-ago snapshot (the rows of :meth:`year_ago`)."""
        return int(self._once("deals_year_ago", lambda: self._count_by_scope(True, won=False))[g])

    def _count_by_scope(self, year_ago: bool, won: bool) -> np.ndarray:
        o = self.company.year_ago().opportunities if year_ago else self.company.crm.opportunities
        scope = self._year_ago_scope() if year_ago else self._deal_scope
        keep = scope >= 0
        if won:
            keep &= (o["status"] == "won").to_numpy(dtype=bool, na_value=False)
        return np.bincount(scope[keep], minlength=len(self._scope_no))

    def _year_ago_scope(self) -> np.ndarray:
        """The scope of each deal of the company's year-ago snapshot, through its deal now (-1: none)."""

        def build() -> np.ndarray:
            ids = self.company.year_ago().opportunities["opportunity_id"]
            pos = _positions(ids, self.company.crm.opportunities["opportunity_id"])
            return np.where(pos >= 0, self._deal_scope[np.maximum(pos, 0)], -1)

        return self._once("year_ago_scope", build)  # type: ignore[no-any-return]

    def time_to_win(self, key: str, year_ago: bool = False) -> tuple[float, int]:
        """Scope ``key``'s ``_time_to_win`` (now or a year earlier) from the curves of every scope."""
        name = "cycle_survival_year_ago" if year_ago else "cycle_survival"
        n = self.won_deals(self._scope_no[key], year_ago)
        if name not in self._kpis:
            self.kpi(name, key)
        t, idx = self._kpis[name]
        rows = idx.get(key)
        if rows is None or not len(rows):
            return _median_days_to_win(self.kpi(name, key), n)
        cols = self._once(
            f"{name}.arrays",
            lambda: (
                t["curve"].to_numpy(dtype=object, na_value=None) == "won",
                t["days"].to_numpy(dtype=float, na_value=np.nan),
                t["estimate"].to_numpy(dtype=float, na_value=np.nan),
            ),
        )
        won = rows[cols[0][rows]]
        days, estimate = cols[1][won], cols[2][won]
        if not len(won) or np.isnan(days).any() or np.isnan(estimate).any():
            return _median_days_to_win(self.kpi(name, key), n)
        if n == 0 or estimate.max() <= 0:
            return np.nan, n
        order = days.argsort(kind="quicksort")  # = sort_values("days") (no missing day)
        half = 0.5 * estimate.max()
        return float(days[order][estimate[order] >= half][0]), n

    def leads(self, key: str) -> tuple[float, int]:
        """Scope ``key``'s ``_leads_per_rep_month``: the median rep's new deals per month, new deals."""

        def build():  # type: ignore[no-untyped-def]
            months = _month_labels(self.company.crm, "last_full")
            self.kpi("new_pipeline", next(iter(self._scope_no)))
            t = self._kpis["new_pipeline"][0]
            t = t[t["period"].isin(months)]
            col = self.col
            per_rep = t.groupby([col, "owner"] if col != "owner" else [col], observed=True)["new_deals"].sum()
            per_rep = per_rep / len(months)
            median = per_rep.groupby(level=0, observed=True).median()
            total = t.groupby(col, observed=True)["new_deals"].sum()
            return median.to_dict(), total.to_dict()

        median, total = self._once("leads", build)
        if key not in total:
            return np.nan, 0
        return float(median.get(key, np.nan)), int(total[key])

    def win_counts(self, key: str) -> tuple[int, int]:
        """Scope ``key``'s ``_win_counts``: deals won and closed over the last 12 months."""

        def build():  # type: ignore[no-untyped-def]
            self.kpi("win_rate", next(iter(self._scope_no)))
            t = self._kpis["win_rate"][0]
            t = t[t["period"].isin(_month_labels(self.company.crm, "year_to_date"))]
            sums = t.groupby(self.col, observed=True)[["won", "closed"]].sum()
            pairs = zip(sums["won"].to_numpy(), sums["closed"].to_numpy(), strict=True)
            return dict(zip(sums.index, pairs, strict=True))

        zero = np.zeros(1, dtype=np.int64)[0]
        return self._once("win_counts", build).get(key, (zero, zero))

    def wip(self, key: str) -> tuple[float, pd.DataFrame, pd.DataFrame]:
        """Scope ``key``'s ``_wip_load`` (its reps' rows of the company's WIP tables)."""
        return _wip_load(self.company.wip(), lambda name, table: self.owner_cut(name, table)(key))

    def owner_cut(self, name: str, table: pd.DataFrame):  # type: ignore[no-untyped-def]
        """``owner_rows(name, table, owners(key))`` of every scope, built in one pass: a function of the key."""
        if table is None or len(table) == 0 or "owner" not in table:
            return lambda key: _rows_of(table, "owner", set())
        if f"owner_cut.{name}" not in self._batch:
            if name not in self._by_owner:
                self._by_owner[name] = table.groupby("owner", sort=False, dropna=True, observed=True).indices
            idx = self._by_owner[name]
            rows, scope = [], []
            for key, g in self._scope_no.items():
                found = [idx[o] for o in self.owners(key) if o in idx]
                if found:
                    r = np.sort(np.concatenate(found))
                    rows.append(r)
                    scope.append(np.full(len(r), g, dtype=np.int64))
            all_rows = np.concatenate(rows) if rows else np.array([], dtype=np.int64)
            all_scope = np.concatenate(scope) if scope else np.array([], dtype=np.int64)
            cut = _Cut(table.take(all_rows).reset_index(drop=True), all_scope, len(self._scope_no))
            self._batch[f"owner_cut.{name}"] = lambda key: cut(self._scope_no[key])
        return self._batch[f"owner_cut.{name}"]

    def deal_cut(self, name: str, table: pd.DataFrame) -> _Cut | None:
        """The company-wide per-deal ``table`` ordered by scope once (None for an empty table)."""
        if table is None or len(table) == 0 or "opportunity_id" not in table:
            return None
        if f"cut.{name}" not in self._batch:
            self.deal_rows(name, table, next(iter(self._scope_no)))
            rows, bounds = self._by_deal[name]
            scope = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
            self._batch[f"cut.{name}"] = _Cut(table.take(rows).reset_index(drop=True), scope, len(self._scope_no))
        return self._batch[f"cut.{name}"]  # type: ignore[no-any-return]

    def drill(self, name: str, key: str) -> pd.DataFrame:
        """Scope ``key``'s drill-down list: ``unqualified`` (``_unqualified_deals``), ``stuck``
        (``_stuck_deals``) or ``challenge`` (its commit deals below the best-case threshold),
        each built once for every scope and cut per scope."""
        company, pb = self.company, self.company.crm.playbook
        commit = name == "challenge"
        source = company.commit_deals() if commit else company.aging()
        cut = self.deal_cut("commit" if commit else "aging", source)
        if cut is None:  # an empty table: the scope's (empty) rows, as deal_rows gives them
            rows = _rows_of(source, "opportunity_id", set())
            if name == "unqualified":
                return _unqualified_deals(company.crm, rows)
            return _stuck_deals(company.crm, rows) if name == "stuck" else rows
        g = self._scope_no[key]
        if name == "challenge":
            if not cut.size(g):
                return cut(g)
            mine = self._once("cut.challenge", lambda: cut.where(cut.table["p_win_in_period"] < pb.best_case_threshold))
        elif name == "unqualified":
            mine = self._once("cut.unqualified", lambda: cut.where(cut.table["stage"].isin(set(pb.stage_names[:2]))))
        elif name == "stuck":
            mine = self._once("cut.stuck", lambda: cut.with_table(_stuck_deals(company.crm, cut.table)))
        else:
            raise KeyError(name)
        return mine(g)  # type: ignore[no-any-return]

    def commit_probability(self, key: str) -> tuple[float, int]:
        """Scope ``key``'s ``_commit_probability`` of its commit deals."""
        cut = self.deal_cut("commit", self.company.commit_deals())
        if cut is None:
            return np.nan, 0
        g = self._scope_no[key]
        a, b = cut.bounds[g], cut.bounds[g + 1]
        if b == a:
            return np.nan, 0
        amount = cut.table["amount"].iloc[a:b]
        if amount.sum() <= 0:
            return np.nan, 0
        p = cut.table["p_win_in_period"].to_numpy()[a:b]
        return float(np.average(p, weights=amount.to_numpy())), int(b - a)

    def _scope_company(self, year_ago: bool = False) -> CRM:
        """The company's deals (or its year-ago deals) that belong to a scope, their scope column holding the scope's key."""
        name = "year_ago" if year_ago else "now"
        if name not in self._scoped:
            crm = self.company.year_ago() if year_ago else self.company.crm
            o = crm.opportunities
            scope = self._year_ago_scope() if year_ago else self._deal_scope
            rows = np.flatnonzero(scope >= 0)
            cols = [c for c in (*_DEAL_COLUMNS, "team", "business_unit") if c in o and c != self.col]
            opps = o[cols].take(rows).reset_index(drop=True)
            opps[self.col] = pd.array(np.asarray(list(self.split), dtype=object)[scope[rows]], dtype="string")
            self._scoped[name] = CRM({"opportunities": opps}, as_of_date=crm.as_of_date, playbook=crm.playbook)
        return self._scoped[name]

    def deal_rows(self, name: str, table: pd.DataFrame, key: str) -> pd.DataFrame:
        """Rows of the company-wide per-deal ``table`` whose deal is in scope ``key`` (table order kept)."""
        if table is None or len(table) == 0 or "opportunity_id" not in table:
            return _rows_of(table, "opportunity_id", set())
        if name not in self._by_deal:
            pos = _positions(table["opportunity_id"], self.company.crm.opportunities["opportunity_id"])
            g = np.where(pos >= 0, self._deal_scope[np.maximum(pos, 0)], -1)
            rows = np.flatnonzero(g >= 0)
            order = np.argsort(g[rows], kind="stable")
            rows, g = rows[order], g[rows][order]
            self._by_deal[name] = (rows, np.searchsorted(g, np.arange(len(self._scope_no) + 1)))
        rows, bounds = self._by_deal[name]
        g = self._scope_no[key]
        return table.take(rows[bounds[g] : bounds[g + 1]]).reset_index(drop=True)

    def owner_rows(self, name: str, table: pd.DataFrame, owners: set) -> pd.DataFrame:
        """Rows of the company-wide per-rep ``table`` whose ``owner`` is in ``owners`` (table order kept)."""
        if table is None or len(table) == 0 or "owner" not in table:
            return _rows_of(table, "owner", owners)
        if name not in self._by_owner:
            self._by_owner[name] = table.groupby("owner", sort=False, dropna=True, observed=True).indices
        idx = self._by_owner[name]
        found = [idx[o] for o in owners if o in idx]
        rows = np.sort(np.concatenate(found)) if found else np.array([], dtype=np.int64)
        return table.take(rows).reset_index(drop=True)

    def year_ago(self, key: str) -> CRM:
        """The scope's snapshot a year earlier, cut from the company's (rewound once): its deals and their history.

        Rewinding a deal reads only its own history, so the company's year-ago rows of the
        scope's deals are those of the scope rewound on its own; the year-ago measures
        (stage probabilities, time to win) read only these two tables.
        """
        ya = self.company.year_ago()
        if self._year_ago_tables is None:  # the columns the two measures read, cut once
            o, h = ya.opportunities, ya.history
            self._year_ago_tables = (
                o[[c for c in _DEAL_COLUMNS if c in o]],
                h[[c for c in ("opportunity_id", "changed_at", "stage", "amount", "close_date") if c in h]],
            )
        o, h = self._year_ago_tables
        tables = {
            "opportunities": self.deal_rows("year_ago.opportunities", o, key),
            "history": self.deal_rows("year_ago.history", h, key),
        }
        return CRM(tables, as_of_date=ya.as_of_date, playbook=ya.playbook)


#: Deal columns the company-wide measures read (:meth:`_Company.deals_only`; the year-ago snapshot,
#: :meth:`_Company.year_ago`, also holds those the rewind writes): stage probabilities, time to
#: win, win rate, new deals, pipeline coverage, the calls against bookings, the scopes' deals.
_MEASURE_COLUMNS = (*_DEAL_COLUMNS, "team", "business_unit", "forecast_category", "loss_reason", "probability")

#: Column holding each row's scope number in the tables sorted by scope.
_G = "_scope_no_"


def _by_scope(rows: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` and their scopes ``g`` ordered by scope (a stable sort: the rows' order kept within a scope)."""
    order = np.argsort(g, kind="stable")
    return rows[order], g[order]


class _CutByScope:
    """Scope number -> its rows of a :class:`_Cut`, for the scopes that have rows (a read-only mapping)."""

    def __init__(self, cut: _Cut | None) -> None:
        self._cut = cut

    def __contains__(self, g: object) -> bool:
        return self._cut is not None and isinstance(g, int | np.integer) and self._cut.size(int(g)) > 0

    def __getitem__(self, g: int) -> pd.DataFrame:
        if g not in self:
            raise KeyError(g)
        return self._cut(g)  # type: ignore[misc]


class _Cut:
    """A table whose rows are ordered by scope (``scope``: each row's, ascending), cut per scope by position.

    ``cut(g)`` equals taking scope ``g``'s rows of the unordered table and resetting the index.
    """

    def __init__(self, table: pd.DataFrame, scope: np.ndarray, n: int) -> None:
        self.table = table
        self.scope = scope
        self.n = n
        self.bounds = np.searchsorted(scope, np.arange(n + 1))

    def size(self, g: int) -> int:
        return int(self.bounds[g + 1] - self.bounds[g])

    def __call__(self, g: int) -> pd.DataFrame:
        out = self.table.iloc[self.bounds[g] : self.bounds[g + 1]].copy()
        out.index = pd.RangeIndex(len(out))
        return out

    def where(self, mask: pd.Series | np.ndarray) -> _Cut:
        """The rows where ``mask`` holds (a boolean filter of each scope's rows, then a fresh index)."""
        keep = np.asarray(mask, dtype=bool)
        return _Cut(self.table[keep].reset_index(drop=True), self.scope[keep], self.n)

    def with_table(self, table: pd.DataFrame) -> _Cut:
        """The same rows with the columns of ``table`` (one row per row of :attr:`table`)."""
        return _Cut(table, self.scope, self.n)


class _ScopeMeasures:
    """The measures :func:`_judge` reads for one scope of :func:`diagnose`'s split (see :class:`_Measures`).

    Each comes from :class:`_Scopes`' tables computed once for every scope: the same values,
    tables and types as the scope's own snapshot gives, without cutting that snapshot.
    """

    def __init__(self, part: _Scopes, key: str) -> None:
        self.part = part
        self.key = key
        self.g = part._scope_no[key]
        self.playbook = part.company.crm.playbook
        self.as_of_date = part.company.crm.as_of_date

    def first_created(self) -> pd.Timestamp:
        return self.part.first_created(self.g)

    def has_year_ago(self) -> bool:
        return self.part.year_ago_deals(self.g) > 0

    def stages(self) -> pd.DataFrame:
        return self.part.stage_table(self.key)

    def conversion(self) -> tuple[float, float, int]:
        return _conversion_of(self.playbook, self.stages())

    def conversion_year_ago(self) -> float:
        return _conversion_of(self.playbook, self.part.stage_table(self.key, year_ago=True))[0]

    def leads(self) -> tuple[float, int]:
        return self.part.leads(self.key)

    def wip(self) -> tuple[float, pd.DataFrame, pd.DataFrame]:
        return self.part.wip(self.key)

    def coverage(self) -> float:
        return self.part.coverage(self.key)

    def win_rate(self) -> tuple[int, int]:
        return self.part.win_counts(self.key)

    def calls(self, periods: int) -> tuple[float, tuple]:
        return self.part.calls_measures(self.key, periods)

    def time_to_win(self) -> tuple[float, int]:
        return self.part.time_to_win(self.key)

    def time_to_win_year_ago(self) -> float:
        return self.part.time_to_win(self.key, year_ago=True)[0]

    def slips(self) -> tuple[float, float, pd.DataFrame]:
        got = self.part.slips(self.key)
        if got is None:
            pushes = self.part.deal_rows("pushes", self.part.company.pushes(), self.key)
            got = _slips(self.part.snapshot(self.key), pushes)
        return got

    def unqualified_deals(self) -> pd.DataFrame:
        return self.part.drill("unqualified", self.key)

    def stuck_deals(self) -> pd.DataFrame:
        return self.part.drill("stuck", self.key)

    def commit_probability(self) -> tuple[float, int]:
        return self.part.commit_probability(self.key)

    def commit_to_challenge(self) -> pd.DataFrame:
        return self.part.drill("challenge", self.key)


#: Column of the scopes' targets holding each row's amount prorated to the current quarter.
_QUOTA = "_quarter_amount"


def _quarter_targets_only(crm: CRM) -> CRM:
    """The company with only the targets a scope's measures read: the bookings rows overlapping the current quarter.

    ``pipeline_coverage`` of the current quarter keeps exactly these rows (a row of another
    metric or period has no share in the quarter), in the same order, so a scope's quota is
    unchanged while each scope no longer carries (and parses) its whole target history. Column
    ``_QUOTA`` holds each row's amount prorated to the quarter (read by :meth:`_Scopes.coverage`).
    """
    from forecastkit.kpi._common import _current_period, _target_codes
    from forecastkit.periods import parse_period

    t = crm.targets
    if not len(t):
        return crm
    codes, names, period_codes, labels = _target_codes(crm)
    bookings = np.isin(codes, [i for i, n in enumerate(names) if n.lower() == "bookings"])
    quarter = _current_period(crm)
    overlaps = np.zeros(len(labels), dtype=bool)
    for i in np.unique(period_codes[bookings]):
        q = parse_period(labels[i], crm.playbook)
        overlaps[i] = (min(q.end, quarter.end) - max(q.start, quarter.start)).days > 0
    keep = bookings & overlaps[period_codes]
    tables = {name: crm._tables[name] for name in crm._present}
    tables["targets"] = t[keep].reset_index(drop=True)
    # each row's amount prorated to the quarter, as _target_amounts computes it
    share = np.zeros(len(labels))
    for i in np.flatnonzero(overlaps):
        q = parse_period(labels[i], crm.playbook)
        share[i] = max(0, (min(q.end, quarter.end) - max(q.start, quarter.start)).days) / q.days
    amount = t["amount"].to_numpy(dtype=float)[keep]
    tables["targets"][_QUOTA] = amount * share[period_codes[keep]]
    return CRM(tables, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)


def _year_ago(company: _Company, crm: CRM) -> CRM:
    """The scope's snapshot a year earlier: the company's is rewound once; a team's or rep's
    own (small) snapshot rewinds faster than the company's year-ago snapshot can be subset."""
    return company.year_ago() if crm is company.crm else crm.as_of(crm.as_of_date - _YEAR)


def _rows_of(table: pd.DataFrame, col: str, keep: pd.Series | set) -> pd.DataFrame:
    if table is None or len(table) == 0 or col not in table:
        return table if table is not None else pd.DataFrame()
    return table[table[col].isin(keep)].reset_index(drop=True)


# ---------------------------------------------------------------------- cases
def _history_basis(first: pd.Timestamp, as_of_date: pd.Timestamp, pb: Playbook) -> tuple[bool, int]:
    """Whether the history is long enough to judge against the previous year; ``first``: the first deal's creation."""
    if pd.isna(first):
        return False, 0
    quarters = len(pd.period_range(first, as_of_date, freq="Q")) - 1
    return quarters >= int({**_DEFAULT_DIAGNOSIS, **pb.diagnosis}["history_quarters"]), quarters


class _Measures:
    """The measures :func:`_judge` reads for one scope, computed on the scope's own snapshot.

    ``company`` holds the company-wide tables (pushes, aging, WIP, calls, commit deals),
    sliced to the snapshot's deals and reps. :class:`_ScopeMeasures` gives the same
    measures for a scope of :func:`diagnose`'s split, cut from tables computed once for
    every scope; every method returns the same values, tables and types.
    """

    def __init__(self, crm: CRM, company: _Company) -> None:
        self.crm = crm
        self.company = company
        self.playbook = crm.playbook
        self.as_of_date = crm.as_of_date
        self._ids = crm.opportunities["opportunity_id"]
        self._owners = set(crm.opportunities["owner"].dropna().unique()) | (
            set(crm.forecast_calls["owner"].dropna().unique()) if crm.has("forecast_calls") else set()
        )
        self._year_ago: CRM | None = None
        self._stages: pd.DataFrame | None = None
        self._by_deal: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def by_deal(self, table: pd.DataFrame) -> pd.DataFrame:
        """The snapshot's rows of a company-wide per-deal table (filtered once per table)."""
        hit = self._by_deal.get(id(table))
        if hit is None or hit[0] is not table:
            hit = self._by_deal[id(table)] = (table, _rows_of(table, "opportunity_id", self._ids))
        return hit[1].copy()

    def by_owner(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        return _rows_of(table, "owner", self._owners)

    def first_created(self) -> pd.Timestamp:
        return self.crm.opportunities["created_at"].min()

    def year_ago(self) -> CRM:
        if self._year_ago is None:
            self._year_ago = _year_ago(self.company, self.crm)
        return self._year_ago

    def has_year_ago(self) -> bool:
        return bool(len(self.year_ago().opportunities))

    def stages(self) -> pd.DataFrame:
        if self._stages is None:
            self._stages = _stage_table(self.crm)
        return self._stages

    def conversion(self) -> tuple[float, float, int]:
        return _qualified_conversion(self.crm, self.stages())

    def conversion_year_ago(self) -> float:
        return _qualified_conversion(self.year_ago())[0]

    def _kpi_crm(self) -> CRM:
        """What the KPI measures read: the company's deal columns they need (:meth:`_Company.deals_only`)."""
        return self.company.deals_only() if self.crm is self.company.crm else self.crm

    def leads(self) -> tuple[float, int]:
        return _leads_per_rep_month(self._kpi_crm())

    def wip(self) -> tuple[float, pd.DataFrame, pd.DataFrame]:
        return _wip_load(self.company.wip(), self.by_owner)

    def coverage(self) -> float:
        return _coverage(self._kpi_crm())

    def win_rate(self) -> tuple[int, int]:
        return _win_counts(self._kpi_crm())

    def calls(self, periods: int) -> tuple[float, tuple]:
        calls = self.company.calls(periods)
        if self.company.crm is not self.crm:
            calls = self.by_owner(f"calls{periods}", calls)
        return _forecast_instability(calls), _commit_bias(calls)

    def time_to_win(self) -> tuple[float, int]:
        return _time_to_win(self._kpi_crm())

    def time_to_win_year_ago(self) -> float:
        return _time_to_win(self.year_ago())[0]

    def slips(self) -> tuple[float, float, pd.DataFrame]:
        pushes = self.company.pushes()
        return _slips(self.crm, pushes if self.company.crm is self.crm else self.by_deal(pushes))

    def unqualified_deals(self) -> pd.DataFrame:
        return _unqualified_deals(self.crm, self.by_deal(self.company.aging()))

    def stuck_deals(self) -> pd.DataFrame:
        return _stuck_deals(self.crm, self.by_deal(self.company.aging()))

    def commit_probability(self) -> tuple[float, int]:
        return _commit_probability(self.by_deal(self.company.commit_deals()))

    def commit_to_challenge(self) -> pd.DataFrame:
        commit = self.by_deal(self.company.commit_deals())
        if len(commit):
            commit = commit[commit["p_win_in_period"] < self.playbook.best_case_threshold].reset_index(drop=True)
        return commit


def diagnose_scope(
    crm: CRM,
    scope: str = "company",
    *,
    with_drilldown: bool = True,
    company: _Company | None = None,
    part: tuple[_Scopes, str] | None = None,
) -> tuple[Finding, Finding, Finding]:
    """The three findings for one snapshot (already restricted to its scope).

    ``company`` holds the company-wide tables computed once by :func:`diagnose` (pushes,
    aging, WIP, the reps' calls, the company's year-ago snapshot, the forecast's commit deals); they
    are sliced to the scope's deals and reps. Without ``company``, everything is computed
    from ``crm``. ``part`` (the company's split and the scope's key) takes every measure
    from the tables computed once for every scope of the split (``crm`` is then not read).
    """
    if company is None:
        company = _Company(crm, method="stage", forecast_deals=True)
    src = _Measures(crm, company) if part is None else part[0].measures(part[1])
    return _judge(src, scope, with_drilldown, company.method)


def _judge(src, scope: str, with_drilldown: bool, method: str) -> tuple[Finding, Finding, Finding]:  # type: ignore[no-untyped-def]
    """The three findings of one scope from its measures (:class:`_Measures` or :class:`_ScopeMeasures`)."""
    pb = src.playbook
    th = {**_DEFAULT_DIAGNOSIS, **pb.diagnosis}  # a playbook saved before a threshold existed gets its default
    first = src.first_created()
    long_history, quarters = _history_basis(first, src.as_of_date, pb)
    basis = "playbook thresholds" + (
        f" and the company's own previous year ({quarters} quarters of history)"
        if long_history
        else f" (own history too short: {quarters} quarters, {int(th['history_quarters'])} needed)"
    )
    min_closed = int(th["min_closed_deals"])
    drop = float(th["history_drop"])
    with_year_ago = bool(long_history and src.has_year_ago())

    # shared measures
    stages = src.stages()
    conv, crm_p, n_closed = src.conversion()
    conv_prev = np.nan
    if with_year_ago:
        conv_prev = src.conversion_year_ago()
    conv_threshold = float(th["conversion_low_ratio"]) * crm_p
    conv_ref = f"{th['conversion_low_ratio']:.0%} of the CRM's {_qualified_stage(pb)} probability ({crm_p:.0%})"
    conv_low_hist = bool(long_history and np.isfinite(conv_prev) and conv < (1 - drop) * conv_prev)
    conversion = _Metric(
        "qualified_to_won",
        conv,
        conv_threshold,
        "below",
        conv_ref,
        True,
        "stage_probabilities(lookback='365D')",
        trend=conv_prev,
        n=n_closed,
    )
    if conv_low_hist:
        conversion.holds_override = True
        conversion.reference += f"; or {drop:.0%} below last year's {conv_prev:.1%}"
    months = int(th["min_history_months"])
    span_ok = pd.notna(first) and first <= src.as_of_date - pd.DateOffset(months=months)
    enough = n_closed >= min_closed and span_ok
    need = (
        f"at least {months} months of history (data starts {first.date() if pd.notna(first) else 'nowhere'}) and "
        f"at least {min_closed} deals closed in the last 365 days that reached {_qualified_stage(pb)} (found {n_closed})"
    )

    # case 1
    leads, n_leads = src.leads()
    load, over_wip, close_out = src.wip()
    lead_metric = _Metric(
        "new_deals_per_rep_month",
        leads,
        float(th["leads_per_rep_month_high"]),
        "above",
        "playbook diagnosis.leads_per_rep_month_high",
        True,
        "new_pipeline(period='month', by='owner')",
        n=n_leads,
    )
    wip_metric = _Metric(
        "median_wip_load", load, 1.0, "above", f"playbook wip_limit ({pb.wip_limit} active deals)", False, "hygiene.wip"
    )
    wide = _Metric(
        "pipeline_wide",
        float(lead_metric.holds or wip_metric.holds),
        0.5,
        "above",
        "new deals per rep or WIP load above the playbook",
        True,
        "(either of the two above)",
        holds_override=lead_metric.holds or wip_metric.holds,
    )
    m1 = [
        conversion,
        lead_metric,
        wip_metric,
        _coverage_metric(pb, src.coverage()),
        _win_rate_metric(pb, *src.win_rate()),
    ]
    core1 = [conversion, wide]
    drill1 = {}
    if with_drilldown:
        drill1 = {
            "unqualified_deals_to_kill": src.unqualified_deals(),
            "reps_over_wip": over_wip,
            "deals_to_close_out": close_out,
        }
    f1 = _finding(
        1,
        scope,
        core1,
        m1,
        enough,
        need,
        basis,
        drill1,
        strength_metrics=[conversion, lead_metric if lead_metric.holds else wip_metric],
    )

    # case 2
    periods = int(th["bias_periods"])
    instability, calls_bias = src.calls(periods)
    ttw, n_won = src.time_to_win()
    ttw_prev = np.nan
    if with_year_ago:
        ttw_prev = src.time_to_win_year_ago()
    cyc_rule = pb.traffic_lights.get("sales_cycle_days", {"orange": 120})
    cycle = _Metric(
        "median_days_to_win",
        ttw,
        float(cyc_rule["orange"]),
        "above",
        "playbook traffic_lights.sales_cycle_days (orange)",
        True,
        "cycle_survival (Aalen-Johansen, won)",
        trend=ttw_prev,
        n=n_won,
    )
    if long_history and np.isfinite(ttw_prev) and ttw > (1 + drop) * ttw_prev:
        cycle.holds_override = True
        cycle.reference += f"; or {drop:.0%} longer than last year's {ttw_prev:.0f} days"
    healthy = _Metric(
        "qualified_to_won_healthy",
        conv,
        conv_threshold,
        "above",
        conv_ref,
        True,
        "stage_probabilities(lookback='365D')",
        trend=conv_prev,
        n=n_closed,
        holds_override=not conversion.holds and np.isfinite(conv),
    )
    share, per, twice = src.slips()
    m2 = [
        healthy,
        cycle,
        _Metric(
            "share_open_deals_pushed",
            share,
            float(th["pushed_share_high"]),
            "above",
            "playbook diagnosis.pushed_share_high",
            False,
            "timeline.close_date_pushes",
        ),
        _Metric("pushes_per_open_deal", per, np.nan, "above", "(for information)", False, "timeline.close_date_pushes"),
        _Metric(
            "forecast_instability",
            instability,
            0.10,
            "above",
            "commit call moving more than 10% of actual within the quarter",
            False,
            "calls_vs_actual: company commit, week 2 vs week 13",
        ),
    ]
    drill2 = {}
    if with_drilldown:
        drill2 = {"deals_pushed_twice_or_more": twice, "stages_without_exit_criteria_met": src.stuck_deals()}
    f2 = _finding(2, scope, [healthy, cycle], m2, enough and n_won > 0, need, basis, drill2, strength_metrics=[cycle])

    # case 3: calls over bookings and commit deals unlikely (or systematic calls alone)
    bias, n_biased, n_periods, bias_table = calls_bias
    calls_source = "forecast_accuracy(calls_vs_actual(...), by='period'): commit at week 4"
    bias_metric = _Metric(
        "commit_bias_median",
        bias,
        float(th["forecast_bias_high"]),
        "above",
        f"playbook diagnosis.forecast_bias_high (median of the last {periods} quarters)",
        True,
        calls_source,
        n=n_periods,
    )
    count_metric = _Metric(
        "periods_biased_up",
        float(n_biased),
        float(th["biased_periods_min"]) - 0.5,
        "above",
        f"at least {int(th['biased_periods_min'])} of the last {periods} quarters above +10%",
        True,
        calls_source,
        n=n_periods,
    )
    commit_p, n_commit = src.commit_probability()
    commit_metric = _Metric(
        "commit_win_probability",
        commit_p,
        float(th["commit_probability_low"]),
        "below",
        "playbook diagnosis.commit_probability_low (amount-weighted, commit deals dated this quarter)",
        True,
        f"forecast(method={method!r}).deals: p_win_in_period of the reps' commit deals",
        n=n_commit,
    )
    gap, stage_table = _probability_gap(stages)
    calls_over = bias_metric.holds or count_metric.holds
    calls_strong = bias_metric.holds and n_periods >= periods and n_biased >= periods
    # When case 2 holds, slipping close dates already explain both commit deals unlikely to
    # close inside the quarter and calls above bookings: the two families are no longer
    # independent, so only calls biased in every quarter still point at optimism.
    slips_explain = f2.status == "detected"
    commit_counts = commit_metric.holds and not slips_explain
    score = float(calls_over) + float(commit_counts) + float(calls_strong)
    optimistic = _Metric(
        "optimism_evidence",
        score,
        1.5,
        "above",
        "both families: calls over bookings (bias or quarters up) and commit deals unlikely to close "
        "(not counted when case 2's slipping close dates explain it); "
        f"or the calls alone when biased and above +10% in every one of the last {periods} quarters",
        True,
        "(calls over bookings + commit deals unlikely + calls up in every quarter)",
        holds_override=score >= 2,
    )
    symptoms = [bias_metric, count_metric, commit_metric]
    for m in symptoms:
        m.core = False
    m3 = [
        optimistic,
        *symptoms,
        _Metric(
            "crm_probability_gap",
            gap,
            0.0,
            "above",
            "CRM stage probabilities above the recalibrated ones",
            False,
            "stage_probabilities(lookback='365D')",
        ),
    ]
    drill3 = {}
    if with_drilldown:
        drill3 = {
            "recalibrated_probabilities": stage_table,
            "commit_deals_to_challenge": src.commit_to_challenge(),
            "commit_bias_by_quarter": bias_table,
        }
    need3 = f"reps' forecast calls for at least {periods} closed quarters (found {n_periods})"
    f3 = _finding(
        3,
        scope,
        [optimistic],
        m3,
        n_periods >= periods,
        need3,
        basis,
        drill3,
        strength_metrics=[m for m in symptoms if m.holds] or [bias_metric],
    )
    return f1, f2, f3


def _finding(
    case: int,
    scope: str,
    core: list[_Metric],
    metrics: list[_Metric],
    enough: bool,
    need: str,
    basis: str,
    drill: dict,
    strength_metrics: list[_Metric],
) -> Finding:
    if not enough:
        return Finding(case, scope, "insufficient data", "none", basis, _evidence(metrics), ACTIONS[case], drill, need)
    detected = all(m.holds for m in core)
    severity = _severity(strength_metrics) if detected else "none"
    return Finding(
        case,
        scope,
        "detected" if detected else "not detected",
        severity,
        basis,
        _evidence(metrics),
        ACTIONS[case],
        drill,
    )


def _coverage(crm: CRM) -> float:
    """Pipeline coverage of the current quarter (``pipeline_coverage``)."""
    from forecastkit.kpi.sales import pipeline_coverage

    cov = pipeline_coverage(crm)
    return float(cov["coverage"].iloc[0]) if len(cov) else np.nan


def _coverage_metric(pb: Playbook, value: float) -> _Metric:
    """Pipeline coverage of the current quarter (``_coverage``, or :meth:`_Scopes.coverage` for a scope)."""
    rule = pb.traffic_lights.get("pipeline_coverage", {"green": 3.0})
    return _Metric(
        "pipeline_coverage",
        value,
        float(rule["green"]),
        "above",
        "playbook traffic_lights.pipeline_coverage",
        False,
        "pipeline_coverage",
    )


def _win_counts(crm: CRM) -> tuple[int, int]:
    """Deals won and closed over the last 12 months (``win_rate(period='month')``)."""
    from forecastkit.kpi.sales import win_rate

    wr = win_rate(crm, period="month")
    wr = wr[wr["period"].isin(_month_labels(crm, "year_to_date"))]
    return wr["won"].sum(), wr["closed"].sum()


def _win_rate_metric(pb: Playbook, won: int, closed: int) -> _Metric:
    """Win rate over the last 12 months from the deals won and closed (``_win_counts``, or per scope)."""
    rule = pb.traffic_lights.get("win_rate", {"orange": 0.2})
    return _Metric(
        "win_rate",
        won / closed if closed else np.nan,
        float(rule["orange"]),
        "below",
        "playbook traffic_lights.win_rate (orange)",
        False,
        "win_rate(period='month'), last 12 months",
        n=closed,
    )


def _probability_gap(t: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    """CRM probability minus recalibrated p_win, averaged over the stages weighted by the deals that reached them."""
    if t.empty:
        return np.nan, t
    reached = t["reached"].to_numpy()
    if reached.dtype.kind in "iuf":  # = t["reached"].clip(lower=1) (NaN kept), without a Series per scope
        weights = np.where(reached < 1, np.ones(1, dtype=reached.dtype), reached)
    else:
        weights = t["reached"].clip(lower=1)
    return float(np.average(t["gap"].to_numpy(), weights=weights)), t


def _unqualified_deals(crm: CRM, aged: pd.DataFrame) -> pd.DataFrame:
    """Open deals still early (to contact / qualification) and past their age cap: candidates to kill fast."""
    early = set(crm.playbook.stage_names[:2])
    return aged[aged["stage"].isin(early)].reset_index(drop=True)


def _stuck_deals(crm: CRM, aged: pd.DataFrame) -> pd.DataFrame:
    """Open deals past their stage's age cap, with the exit criterion they have not met."""
    crit = {s.name: s.exit_criteria for s in crm.playbook.stages}
    return aged.assign(exit_criterion=aged["stage"].map(crit)).reset_index(drop=True)


def _commit_deals(crm: CRM, method: str = "model", model: object = None) -> pd.DataFrame:
    """The open deals the reps call commit, dated in the current quarter, with their calibrated probabilities.

    The deal table of :func:`~forecastkit.forecast` of the current quarter for the whole
    company (``p_win_in_period`` = ``p_win x p_in_period``), built by the forecast's own
    step (:func:`~forecastkit.forecast.forecast.open_deal_table`) without the simulation and
    the calls table the diagnosis does not read: the same rows, values and order as taking them from
    ``forecast(crm, period=<quarter>, method=method, model=model).deals``
    (:func:`_commit_rows`). The win model is fitted at most once (or ``model`` is used).
    """
    from forecastkit.forecast.forecast import _METHODS, open_deal_table

    try:
        if method not in _METHODS:  # forecast() raises a ParameterError
            return pd.DataFrame()
        per = parse_period(period_of(crm.as_of_date, "quarter", crm.playbook).label, crm.playbook)
        d = _quiet(open_deal_table, crm, per, method, model=model)
    except Exception:  # the commit-deal evidence and drill-down must never break the diagnosis
        return pd.DataFrame()
    d = d[((d["rep_category"] == "commit") & d["in_period"]).to_numpy(dtype=bool)]
    # the forecast's order (largest expected amount first), then _commit_rows' sort on it
    d = d.sort_values(["expected_amount", "opportunity_id"], ascending=[False, True], kind="stable")
    return d.sort_values("amount", ascending=False).reset_index(drop=True)


def _commit_rows(deals: pd.DataFrame) -> pd.DataFrame:
    """The reps' commit deals dated in the period of a forecast's deal table, largest amount first."""
    d = deals
    if "opportunity_id" not in d:
        d = d.reset_index()
    mine = (d["rep_category"] == "commit") & d["in_period"]
    return d[mine].sort_values("amount", ascending=False).reset_index(drop=True)


def _commit_probability(commit: pd.DataFrame) -> tuple[float, int]:
    """Amount-weighted calibrated probability that the reps' commit deals are won in the quarter."""
    if commit is None or len(commit) == 0 or commit["amount"].sum() <= 0:
        return np.nan, 0
    return float(np.average(commit["p_win_in_period"], weights=commit["amount"])), len(commit)


def _check_forecast(fc: object, crm: CRM, method: str, model: object) -> None:
    """Refuse a forecast handed to :func:`diagnose` that is not the one it would compute (ParameterError)."""
    from forecastkit.forecast.forecast import Forecast, _rep_category

    if not isinstance(fc, Forecast):
        raise ParameterError(f"forecast= takes the Forecast of fk.forecast(crm, ...), got {type(fc).__name__}")
    how = "forecast the same snapshot with the same settings, or leave forecast= out"
    if pd.Timestamp(fc.as_of) != crm.as_of_date:
        raise ParameterError(
            f"forecast= is as of {pd.Timestamp(fc.as_of).date()}, the diagnosis as of {crm.as_of_date.date()}: {how}"
        )
    quarter = period_of(crm.as_of_date, "quarter", crm.playbook)
    if (fc.period.label, fc.period.start, fc.period.end) != (quarter.label, quarter.start, quarter.end):
        raise ParameterError(
            f"forecast= is of period {fc.period.label}, the diagnosis reads the commit deals of the "
            f"quarter {quarter.label}: {how}"
        )
    if fc.method != method:
        raise ParameterError(f"forecast= used method={fc.method!r}, the diagnosis method={method!r}: {how}")
    if method == "model" and model is not None:
        recorded = getattr(fc, "model", None)  # a Forecast that records its win model
        if any(str(n).startswith("win model not fitted") for n in fc.notes):
            raise ParameterError(
                "forecast= fell back to stage probabilities (its win model could not be fitted), "
                f"the diagnosis uses the model= given: {how}"
            )
        if recorded is not None and recorded is not model:
            raise ParameterError(f"forecast= used another win model than the model= given to the diagnosis: {how}")
    calls = fc.calls
    if "level" in calls and (calls["level"] == "scope").any():
        raise ParameterError(
            f"forecast= is of one rep or team (owner= or team=), the diagnosis needs the company's: {how}"
        )
    # the same snapshot: its open deals dated in the quarter, with their amounts and the reps' categories
    o = crm.open_deals
    mine = o[quarter.contains(o["close_date"]).fillna(False).to_numpy(dtype=bool)]
    d = fc.deals.reset_index() if "opportunity_id" not in fc.deals else fc.deals
    theirs = d[d["in_period"].to_numpy(dtype=bool)]
    same = len(mine) == len(theirs)
    if same and len(mine):
        a = pd.DataFrame(
            {
                "opportunity_id": mine["opportunity_id"].to_numpy(dtype=object),
                "amount": mine["amount"].to_numpy(float),
                "rep_category": _rep_category(mine["forecast_category"]),
            }
        )
        b = theirs[["opportunity_id", "amount", "rep_category"]].astype({"opportunity_id": object})
        a = a.sort_values("opportunity_id", kind="stable").reset_index(drop=True)
        b = b.sort_values("opportunity_id", kind="stable").reset_index(drop=True)
        same = bool(
            (a["opportunity_id"].to_numpy() == b["opportunity_id"].to_numpy()).all()
            and np.array_equal(a["amount"].to_numpy(float), b["amount"].to_numpy(float), equal_nan=True)
            and (a["rep_category"].to_numpy(dtype=object) == b["rep_category"].to_numpy(dtype=object)).all()
        )
    if not same:
        raise ParameterError(
            f"forecast= does not hold this snapshot's open deals dated in {quarter.label} "
            f"({len(theirs)} deals against {len(mine)}, or other amounts or categories): "
            f"a forecast of another snapshot or of one rep or team; {how}"
        )


# ------------------------------------------------------------------ public API
def diagnose(
    crm: CRM,
    period: str | None = None,
    *,
    by: Sequence[Literal["team", "owner", "business_unit"]] | str | None = ("team",),
    playbook: Playbook | None = None,
    drilldown: bool = True,
    method: Literal["model", "stage"] = "model",
    model: object = None,
    forecast: object = None,
) -> Diagnosis:
    """Judge the three case patterns company-wide and per team (or rep), with evidence, actions and drill-downs.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    period : str, optional
        A fiscal period (``"2026-Q3"``): the diagnosis is made as of its last day
        (or the snapshot date if earlier). Default: as of the snapshot date.
    by : "team", "owner", "business_unit", a list of them, or None
        Scopes judged besides the company (a case can hold for one team only).
    playbook : Playbook, optional
        Overrides the snapshot's playbook (e.g. other thresholds in ``diagnosis``).
    drilldown : bool
        Build the drill-down lists (deals to kill, pushed deals, commit deals to challenge...).
    method : {"model", "stage"}
        Where the calibrated probability of the reps' commit deals comes from (case 3's
        evidence and drill-down): the per-deal :class:`~forecastkit.WinModel` (fitted once
        per call, slower) or the stage probabilities recalibrated to history (see
        :func:`~forecastkit.forecast`).
    model : WinModel, optional
        A win model already fitted on this snapshot (or an earlier one): nothing is fitted.
        The default fits ``forecastkit.forecast.forecast.fit_win_model(crm)``, so passing
        that same model gives the same findings. In a chain that also forecasts, fit it
        once and pass it to both ``forecast(model=...)`` and ``diagnose(model=...)``: the
        fit is the largest single cost of the diagnosis (about a third at 100k opportunities).
    forecast : Forecast, optional
        The company's forecast of the current quarter already computed on this snapshot
        (``fc = forecast(crm, model=model)``): its deal table gives the reps' commit deals
        (case 3) instead of computing them again; the findings are the same. It must be of
        the date, period (the quarter of the diagnosis date), method and win model the
        diagnosis uses, for the whole company (no ``owner=`` or ``team=``), with this
        snapshot's open deals of the quarter; else a :class:`~forecastkit.errors.ParameterError`
        says what differs. A :class:`~forecastkit.forecast.forecast.Forecast` does not
        record its win model: give both calls the same ``model=`` (a forecast whose model
        could not be fitted is refused when ``model=`` is given). Not with ``playbook=``
        (the forecast was made with the snapshot's playbook).

    Returns
    -------
    Diagnosis
        ``findings`` (one :class:`Finding` per case and scope), ``verdict()``, ``to_frame()``.

    Examples
    --------
    >>> dx = fk.diagnose(crm)                     # doctest: +SKIP
    >>> dx.verdict()                              # doctest: +SKIP
    """
    if playbook is not None:
        if forecast is not None:
            raise ParameterError(
                "forecast= was computed with the snapshot's playbook, the diagnosis with playbook=...: "
                "leave forecast= out (the diagnosis forecasts with its playbook) or leave playbook= out"
            )
        crm = crm.with_playbook(playbook)
    if period is not None:
        p = parse_period(period, crm.playbook)
        crm = crm.as_of(min(p.last_day, crm.as_of_date))
    scopes = [by] if isinstance(by, str) else list(by or ())
    bad = [s for s in scopes if s not in ("team", "owner", "business_unit")]
    if bad:
        raise ParameterError(f"by={bad[0]!r} is not a scope; use 'team', 'owner' or 'business_unit'")
    if forecast is not None:
        _check_forecast(forecast, crm, method, model)
    company = _Company(crm, method=method, model=model, forecast=forecast)
    findings = list(diagnose_scope(crm, "company", with_drilldown=drilldown, company=company))
    for col in scopes:
        keys = sorted(crm.opportunities[col].dropna().astype(str).unique())
        if not keys:  # no deal names a scope: nothing to split
            continue
        part = _Scopes(company, col)  # the company split by the column once; each scope cut from it
        try:
            for who in keys:
                # the measures of crm.subset(**{col: who}), cut from tables computed once for every scope
                findings.extend(_judge(part.measures(who), f"{col}={who}", drilldown, company.method))
        finally:
            # its cached cuts are closures over it (reference cycles): emptied now, the scope tables
            # are freed here rather than at the garbage collector's next pass (GBs at 1M deals)
            part.__dict__.clear()
    return Diagnosis(tuple(findings), crm.as_of_date)
