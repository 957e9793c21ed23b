"""Property-based (hypothesis) tests of every public analysis function on random VALID snapshots.

Each test draws a small random company (``tests/_fuzz_snapshots.py``: a few reps,
deals, history rows, activities and optional tables, with edge cases such as no
closed deal, all lost, one stage only, zero amounts, a snapshot date before any
deal closed or was created, absent or empty optional tables), then calls a family
of analysis functions. The only allowed outcomes are

* a result whose promised numbers are numbers (no NaN where the docstring does
  not document one; probabilities in [0, 1]; counts whole and non-negative), or
* a :class:`~forecastkit.errors.ForecastkitError` subclass with a message.

Any other exception is a bug: see ``FUZZ_FINDINGS.md`` for the ones found, each
pinned by a strict xfail example here until it is fixed.

Examples are bounded by default (a handful per test, derandomised, so the
module runs in about a minute of CPU); ``FORECASTKIT_FUZZ=long`` runs many more
(the same mechanism and profile names as ``tests/test_fuzz_loader.py``)::

    FORECASTKIT_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz_analysis.py -q
"""

from __future__ import annotations

import math
import os
import traceback
import warnings

import numpy as np
import pandas as pd
from _fuzz_snapshots import snapshots
from hypothesis import HealthCheck, given, settings

import forecastkit as fk
from forecastkit.errors import ForecastkitError, ForecastkitWarning

_LONG = os.environ.get("FORECASTKIT_FUZZ", "").lower() == "long"
_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)


def fuzz(n: int, n_long: int = 300):
    """Hypothesis settings: ``n`` derandomised examples by default, ``n_long`` random ones in the long profile."""
    if _LONG:
        return settings(max_examples=n_long, **_COMMON)
    return settings(max_examples=n, derandomize=True, **_COMMON)


# ------------------------------------------------------------------ known findings
#: Bugs found by these tests and not fixed yet (see FUZZ_FINDINGS.md): finding id ->
#: (exception type, "<module path>:<function>" of the innermost forecastkit frame).
#: The property tests treat a matching exception as that known finding (so they go on
#: looking for new ones); each finding has a strict-xfail regression test at the end of
#: this module, which starts passing - and so fails - once the bug is fixed: then delete
#: both the entry here and the xfail marker.
KNOWN: dict[str, tuple[type[BaseException], str]] = {}


def _innermost_forecastkit_frame(exc: BaseException) -> str:
    where = ""
    for fs in traceback.extract_tb(exc.__traceback__):
        path = fs.filename.replace(os.sep, "/")
        if "/forecastkit/" in path:
            where = f"{path.split('/forecastkit/', 1)[1]}:{fs.name}"
    return where


def known_finding(exc: BaseException) -> str | None:
    """The id of the known finding ``exc`` is an instance of, if any."""
    where = _innermost_forecastkit_frame(exc)
    for fid, (kind, place) in KNOWN.items():
        if isinstance(exc, kind) and where == place:
            return fid
    return None


# ------------------------------------------------------------------ checks
def call(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; None when it raised a documented ForecastkitError (which must carry a message).

    forecastkit's own warnings (fallbacks, data quality) are expected on small
    companies and silenced; any other exception propagates and fails the test,
    except a known finding (see :data:`KNOWN`), which also gives None.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastkitWarning)
        try:
            return fn(*args, **kwargs)
        except ForecastkitError as exc:
            assert str(exc).strip(), f"{type(exc).__name__} without a message from {fn.__name__}"
            return None
        except Exception as exc:
            if known_finding(exc) is None:
                raise
            return None


def numbers(df: pd.DataFrame, cols, *, lo: float | None = None, hi: float | None = None, what: str = "") -> None:
    """Columns ``cols`` of ``df`` hold finite numbers (within ``[lo, hi]`` when given)."""
    for c in cols:
        assert c in df.columns, f"{what}: promised column {c!r} missing; got {list(df.columns)}"
        v = pd.to_numeric(df[c], errors="coerce").astype(float).to_numpy()
        bad = ~np.isfinite(v)
        assert not bad.any(), f"{what}: {c} is not a finite number in rows {np.flatnonzero(bad)[:5]}:\n{df.head()}"
        if lo is not None:
            assert (v >= lo - 1e-9).all(), f"{what}: {c} below {lo}: {v[v < lo][:5]}"
        if hi is not None:
            assert (v <= hi + 1e-9).all(), f"{what}: {c} above {hi}: {v[v > hi][:5]}"


def counts(df: pd.DataFrame, cols, what: str = "") -> None:
    """Columns ``cols`` hold whole non-negative numbers."""
    numbers(df, cols, lo=0, what=what)
    for c in cols:
        v = df[c].astype(float).to_numpy()
        assert (v == np.round(v)).all(), f"{what}: {c} not whole: {v[:5]}"


def rate(df: pd.DataFrame, col: str, denom: str | pd.Series, what: str = "", hi: float | None = 1.0) -> None:
    """A rate is in [0, hi] where its denominator is positive; NaN is allowed only where the denominator is 0."""
    d = (df[denom] if isinstance(denom, str) else denom).astype(float).to_numpy()
    v = pd.to_numeric(df[col], errors="coerce").astype(float).to_numpy()
    defined = d > 0
    assert np.isfinite(v[defined]).all(), f"{what}: {col} NaN/inf though its denominator is > 0:\n{df.head()}"
    assert (v[defined] >= -1e-9).all(), f"{what}: {col} negative: {v[defined]}"
    if hi is not None:
        assert (v[defined] <= hi + 1e-9).all(), f"{what}: {col} above {hi}: {v[defined]}"
    assert not np.isinf(v).any(), f"{what}: {col} infinite: {v}"


def some_owner(crm) -> str:
    o = crm.opportunities["owner"].dropna()
    return str(o.iloc[0]) if len(o) else "rep0"


# ------------------------------------------------------------------ probability
@fuzz(6)
@given(snapshots())
def test_stage_probabilities(snap):
    crm, _ = snap
    for by in (None, "owner", ["team", "segment"]):
        t = call(fk.stage_probabilities, crm, by=by)
        if t is None:
            continue
        what = f"stage_probabilities(by={by})"
        counts(t, ["reached", "won", "lost", "open"], what)
        numbers(t, ["p_win", "ci_lower", "ci_upper", "crm_probability"], lo=0, hi=1, what=what)
        numbers(t, ["gap"], lo=-1, hi=1, what=what)
        assert (t["ci_lower"] <= t["p_win"] + 1e-9).all() and (t["p_win"] <= t["ci_upper"] + 1e-9).all(), what
        assert (t["won"] + t["lost"] <= t["reached"]).all(), what
    t = call(fk.stage_probabilities, crm, lookback=None, on_insufficient="raise")  # raises or a table
    if t is not None:
        numbers(t, ["p_win"], lo=0, hi=1, what="stage_probabilities(lookback=None)")
    t = call(fk.stage_age_probabilities, crm)
    if t is not None:
        numbers(t, ["p_win", "ci_lower", "ci_upper"], lo=0, hi=1, what="stage_age_probabilities")


@fuzz(4, 100)
@given(snapshots())
def test_win_model_small(snap):
    """On small companies the win model refuses to fit (InsufficientDataError), never crashes."""
    crm, _ = snap
    m = call(fk.WinModel().fit, crm)
    if m is not None:
        p = m.predict_proba(crm)
        assert len(p) == len(crm.open_deals)
        numbers(p, ["p_win"], lo=0, hi=1, what="WinModel.predict_proba")


@fuzz(2, 30)
@given(snapshots(many=True))
def test_win_model_many(snap):
    """With enough closed deals the model fits and predicts a probability per open deal."""
    crm, _ = snap
    m = call(fk.WinModel(cv=2).fit, crm)
    if m is not None:
        p = call(m.predict_proba, crm)
        if p is not None:
            assert list(p["opportunity_id"]) == list(crm.open_deals["opportunity_id"])
            numbers(p, ["p_win"], lo=0, hi=1, what="WinModel.predict_proba")


# ------------------------------------------------------------------ forecast
def check_forecast(fc, crm, what: str) -> None:
    d = fc.distribution
    numbers(
        d,
        ["closed_won", "open_expected", "new_deals_expected", "expected", "p10", "p50", "p90", "std"],
        lo=0,
        what=what,
    )
    r = d.iloc[0]
    assert r["p10"] <= r["p50"] + 1e-6 <= r["p90"] + 2e-6, what
    numbers(fc.summary, ["closed_won", "commit", "best_case", "pipeline", "omitted"], lo=0, what=what)
    counts(fc.summary, ["deals"], what)
    deals = fc.deals
    numbers(deals, ["p_win", "p_in_period", "p_win_in_period"], lo=0, hi=1, what=what)
    numbers(deals, ["amount", "expected_amount"], lo=0, what=what)
    counts(deals, ["pushes"], what)
    numbers(fc.target, ["closed_won", "expected"], lo=0, what=what)
    frame = fc.to_frame()
    numbers(frame, ["closed_won", "rep_commit", "model_commit", "expected", "p10", "p50", "p90"], lo=0, what=what)


@fuzz(6)
@given(snapshots())
def test_forecast(snap):
    crm, _ = snap
    for method in ("stage", "crm", "model"):
        fc = call(fk.forecast, crm, method=method, n_sims=500)
        if fc is not None:
            check_forecast(fc, crm, f"forecast(method={method})")
    fc = call(fk.forecast, crm, method="stage", owner=some_owner(crm), n_sims=200)
    if fc is not None:
        check_forecast(fc, crm, "forecast(owner=...)")


@fuzz(2, 30)
@given(snapshots(many=True))
def test_forecast_many(snap):
    crm, _ = snap
    fc = call(fk.forecast, crm, method="model", n_sims=500)
    if fc is not None:
        check_forecast(fc, crm, "forecast(method=model)")


@fuzz(4, 100)
@given(snapshots())
def test_backtest_and_accuracy(snap):
    crm, _ = snap
    bt = call(
        fk.backtest,
        crm,
        periods=2,
        checkpoints=("week1", "week8"),
        methods=("crm", "stage", "commit", "best_case", "call_commit", "run_rate"),
        n_sims=200,
    )
    if bt is None:
        return
    what = "backtest"
    numbers(bt, ["actual", "closed_won"], lo=0, what=what)
    dist = bt[bt["method"].isin(["crm", "stage", "commit", "best_case", "run_rate"])]
    numbers(dist, ["forecast", "error"], what=what)
    with_interval = bt[bt["method"].isin(["crm", "stage"])]
    numbers(with_interval, ["p10", "p50", "p90"], lo=0, what=what)
    rate(bt, "abs_pct_error", "actual", what, hi=None)
    acc = call(fk.forecast_accuracy, bt)
    if acc is not None:
        counts(acc, ["n", "n_zero_actual"], "forecast_accuracy")
        numbers(acc, ["forecast", "actual"], lo=0, what="forecast_accuracy")


@fuzz(6)
@given(snapshots())
def test_pipeline_changes(snap):
    crm, _ = snap
    for start in (crm.as_of_date - pd.Timedelta(days=30), crm.as_of_date - pd.Timedelta(days=400), crm.as_of_date):
        ch = call(fk.pipeline_changes, crm, start)
        if ch is None:
            continue
        numbers(ch.summary, ["amount"], what="pipeline_changes.summary")
        counts(ch.summary, ["deals"], "pipeline_changes.summary")
        numbers(ch.deals, ["value"], what="pipeline_changes.deals")


# ------------------------------------------------------------------ win/loss
@fuzz(6)
@given(snapshots())
def test_winloss(snap):
    crm, _ = snap
    lr = call(fk.loss_reasons, crm)
    if lr is not None:
        counts(lr.pareto, ["lost_deals"], "loss_reasons.pareto")
        numbers(lr.pareto, ["share", "cumulative_share"], lo=0, hi=1, what="loss_reasons.pareto")
        numbers(lr.pareto, ["lost_amount"], lo=0, what="loss_reasons.pareto")
        rate(lr.pareto, "amount_share", lr.pareto["lost_amount"] * 0 + 1, "loss_reasons.pareto")
        counts(lr.kinds, ["lost_deals", "no_decision", "abandoned", "lost"], "loss_reasons.kinds")
        rate(lr.kinds, "no_decision_share", "lost_deals", "loss_reasons.kinds")
    lr = call(fk.loss_reasons, crm, by="owner")
    if lr is not None:
        counts(lr.pareto, ["lost_deals"], "loss_reasons(by=owner).pareto")
    dr = call(fk.drivers, crm, importance=False)
    if dr is not None:
        numbers(dr.table, ["odds_ratio"], lo=0, what="drivers.table")
    rv = call(fk.win_loss_review, crm)
    if rv is not None:
        # activities are NaN (unknown, not zero) when the snapshot has no activities table
        counts(rv, ["pushes", *(["activities"] if crm.has("activities") else [])], "win_loss_review")
        numbers(rv, ["cycle_days", "amount"], lo=0, what="win_loss_review")
    cr = call(fk.coaching, crm, some_owner(crm))
    if cr is not None:
        t = cr.transitions
        counts(t, ["rep_decided", "rep_advanced", "peer_decided", "peer_advanced"], "coaching.transitions")
        rate(t, "rep_rate", "rep_decided", "coaching.transitions")
        rate(t, "peer_rate", "peer_decided", "coaching.transitions")
        assert isinstance(cr.headline, str) and cr.headline, "coaching: empty headline"
    cr = call(fk.coaching, crm, some_owner(crm), peers="company")
    assert cr is None or isinstance(cr.headline, str)


@fuzz(2, 30)
@given(snapshots(many=True))
def test_drivers_many(snap):
    crm, _ = snap
    dr = call(fk.drivers, crm, n_repeats=2)
    if dr is not None:
        numbers(dr.table, ["odds_ratio", "ci_low", "ci_high"], lo=0, what="drivers.table")
        numbers(dr.table, ["p_value"], lo=0, hi=1, what="drivers.table")
        counts(dr.table, ["n_deals", "n_won"], "drivers.table")


# ------------------------------------------------------------------ hygiene
@fuzz(6)
@given(snapshots())
def test_hygiene(snap):
    crm, _ = snap
    h = fk.hygiene
    rv = call(h.review, crm)
    if rv is not None:
        # value at risk = amount x the stage's CRM probability: NaN (ranked last) for account rows
        # without an open deal and for deals whose stage is unknown (rewound past an untracked close)
        known = rv["opportunity_id"].notna() & rv["stage"].notna()
        numbers(rv[known], ["value_at_risk"], lo=0, what="hygiene.review")
        assert rv["severity"].isin(["red", "orange"]).all(), "hygiene.review severity"
    rv = call(h.review, crm, some_owner(crm))
    assert rv is None or isinstance(rv, pd.DataFrame)
    ag = call(h.aging, crm)
    if ag is not None:
        numbers(ag, ["days_in_stage", "days_over_cap"], lo=0, what="hygiene.aging")
    mf = call(h.missing_fields, crm)
    if mf is not None:
        counts(mf, ["n_missing"], "hygiene.missing_fields")
    call(h.missing_fields, crm, by="field")
    ns = call(h.next_steps, crm)
    if ns is not None:
        counts(ns, ["days_overdue"], "hygiene.next_steps")
    w = call(h.wip, crm)
    assert w is None or isinstance(w.by_owner, pd.DataFrame)
    cd = call(h.cadence, crm)
    assert cd is None or isinstance(cd.steps, pd.DataFrame)
    vr = call(h.visit_reports, crm)
    if vr is not None:
        counts(vr, ["n_missing"], "hygiene.visit_reports")
    call(h.completeness, crm)
    sc = call(h.scorecard, crm)
    if sc is not None:
        assert sc["light"].isin(["green", "orange", "red", "grey"]).all(), "hygiene.scorecard light"
        has_value = pd.to_numeric(sc["value"], errors="coerce").notna()
        assert (sc.loc[~has_value, "light"] == "grey").all(), "hygiene.scorecard: a light without a value"
    kb = call(h.kanban, crm)
    if kb is not None:
        call(h.kanban_html, kb)


# ------------------------------------------------------------------ KPIs
@fuzz(6)
@given(snapshots())
def test_sales_kpis(snap):
    crm, _ = snap
    for period, by in ((None, None), ("quarter", "owner"), ("month", ["team", "segment"])):
        what = f"(period={period}, by={by})"
        wr = call(fk.win_rate, crm, period, by)
        if wr is not None:
            counts(wr, ["won", "lost", "closed"], "win_rate" + what)
            numbers(wr, ["won_amount", "closed_amount"], lo=0, what="win_rate" + what)
            rate(wr, "win_rate", "closed", "win_rate" + what)
            rate(wr, "value_win_rate", "closed_amount", "win_rate" + what)
        cv = call(fk.conversion, crm, period, by)
        if cv is not None:
            counts(cv, ["reached", "advanced", "undecided", "won", "lost"], "conversion" + what)
            rate(cv, "conversion_next", cv["reached"] - cv["undecided"], "conversion" + what)
            rate(cv, "conversion_won", cv["won"] + cv["lost"], "conversion" + what)
        ds = call(fk.deal_size, crm, period, by)
        if ds is not None:
            counts(ds, ["won_deals"], "deal_size" + what)
            numbers(ds, ["won_amount"], lo=0, what="deal_size" + what)
            rate(ds, "avg_deal_size", "won_deals", "deal_size" + what, hi=None)
        vel = call(fk.velocity, crm, period, by)
        if vel is not None:
            counts(vel, ["opportunities"], "velocity" + what)
        wp = call(fk.weighted_pipeline, crm, period, by)
        if wp is not None:
            counts(wp, ["open_deals"], "weighted_pipeline" + what)
            numbers(
                wp, ["pipeline", "weighted_pipeline", "crm_weighted_pipeline"], lo=0, what="weighted_pipeline" + what
            )
        pc = call(fk.pipeline_coverage, crm, period, by)
        if pc is not None:
            counts(pc, ["open_deals"], "pipeline_coverage" + what)
            numbers(pc, ["pipeline", "won"], lo=0, what="pipeline_coverage" + what)
        npl = call(fk.new_pipeline, crm, period, by)
        if npl is not None:
            counts(npl, ["new_deals"], "new_pipeline" + what)
            numbers(npl, ["new_amount"], lo=0, what="new_pipeline" + what)
            rate(npl, "avg_new_amount", "new_deals", "new_pipeline" + what, hi=None)


@fuzz(6)
@given(snapshots())
def test_cycle_kpis(snap):
    crm, _ = snap
    for period, by in ((None, None), ("quarter", "owner")):
        sc = call(fk.sales_cycle, crm, period, by)
        if sc is not None:
            counts(sc, ["deals", "closed", "open"], "sales_cycle")
            rate(sc, "share_open", "deals", "sales_cycle")
            rate(sc, "closed_median_days", "closed", "sales_cycle", hi=None)
        cs = call(fk.cycle_survival, crm, by, period, intervals=period is None)
        if cs is not None:
            numbers(cs, ["days"], lo=0, what="cycle_survival")
            numbers(cs, ["estimate"], lo=0, hi=1, what="cycle_survival")


@fuzz(6)
@given(snapshots())
def test_customer_kpis(snap):
    crm, _ = snap
    ca = call(fk.customer_activity, crm)
    if ca is not None:
        counts(ca, ["orders"], "customer_activity")
        numbers(ca, ["days_since_last_order"], lo=0, what="customer_activity")
        p = pd.to_numeric(ca["p_alive"], errors="coerce")
        assert ((p >= 0) & (p <= 1) | p.isna()).all(), "customer_activity: p_alive outside [0, 1]"
    for period in ("month", "quarter", None):
        ch = call(fk.customer_churn, crm, period)
        if ch is not None:
            counts(ch, ["customers_start", "new_customers", "became_lost"], "customer_churn")
            rate(ch, "churn_rate", "customers_start", "customer_churn")
    for period in ("quarter", "month", None):
        ue = call(fk.unit_economics, crm, period)
        if ue is not None:
            numbers(ue, ["marketing", "sales", "acquisition_cost"], lo=0, what="unit_economics")
            counts(ue, ["new_customers"], "unit_economics")
            rate(ue, "cac", "new_customers", "unit_economics", hi=None)
    subs = crm.subscriptions
    if len(subs):
        months = sorted(subs["month"].unique())
        r = call(fk.kpi.nrr, subs, months[0], months[-1])
        if r is not None:
            for k in ("mrr_start", "expansion", "contraction", "churned_mrr", "mrr_end_retained", "customers_start"):
                assert math.isfinite(r[k]) and r[k] >= 0, f"nrr: {k} = {r[k]}"
            if r["mrr_start"] > 0:
                assert math.isfinite(r["nrr"]) and 0 <= r["grr"] <= 1 + 1e-9, f"nrr: {r}"


# ------------------------------------------------------------------ dashboards and diagnosis
_STATUSES = {"green", "orange", "red", "grey", "info", "none", ""}


@fuzz(5, 100)
@given(snapshots())
def test_dashboards(snap):
    crm, _ = snap
    for which in ("sales_activity", "organisation", "data_health", "field_dynamics"):
        boards = call(fk.dashboards, crm, which, "rep")
        if boards is None:
            continue
        for name, board in boards.items():
            frame = board.to_frame()
            assert len(frame) <= 7, f"dashboard {which}/{name}: {len(frame)} tiles"
            counts(frame.dropna(subset=["drilldown_rows"]), ["drilldown_rows"], f"dashboard {which}/{name}")
    board = call(fk.dashboard, crm, "sales_activity", "team")
    assert board is None or len(board.to_frame()) <= 7


@fuzz(4, 100)
@given(snapshots())
def test_diagnose(snap):
    crm, _ = snap
    dx = call(fk.diagnose, crm, method="stage")
    if dx is not None:
        v = dx.verdict()
        assert len(v) >= 3, "diagnose: fewer than three findings"
        assert v["status"].notna().all(), "diagnose: a finding without status"
        dx.to_frame()


# ------------------------------------------------------------------ findings F1-F5 (fixed; regression tests)
def _opps(*rows: dict) -> pd.DataFrame:
    base = {"owner": "rep0", "amount": 1000.0, "created_at": pd.Timestamp("2026-05-01")}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_finding_f1_forecast_without_won_history():
    """One open deal and no history: the slip model compares an empty float column with a date."""
    crm = fk.CRM.from_tables(
        {
            "opportunities": _opps(
                {"opportunity_id": "O1", "stage": "proposal", "close_date": pd.Timestamp("2026-07-31")}
            )
        },
        as_of="2026-06-30",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastkitWarning)
        fc = fk.forecast(crm, method="stage", n_sims=100)
    check_forecast(fc, crm, "forecast")


def _empty_crm():
    """A snapshot of a company with no deal yet (only the opportunities table, with no row)."""
    cols = ["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"]
    return fk.CRM.from_tables({"opportunities": pd.DataFrame(columns=cols)}, as_of="2026-06-30")


def test_finding_f2_dashboards_without_deals():
    assert fk.dashboards(_empty_crm(), "sales_activity", "rep") == {}


def test_finding_f3_velocity_by_period_without_closed_deals():
    v = fk.velocity(_empty_crm(), "quarter")
    assert len(v) == 0


def test_finding_f4_coaching_rep_without_team():
    """The rep's deals carry no team (no team column, no reps table)."""
    crm = fk.CRM.from_tables(
        {
            "opportunities": _opps(
                {"opportunity_id": "O1", "stage": "proposal", "close_date": pd.Timestamp("2026-07-31")},
                {"opportunity_id": "O2", "owner": "rep1", "stage": "lost", "close_date": pd.Timestamp("2026-06-01")},
            )
        },
        as_of="2026-06-30",
    )
    report = fk.coaching(crm, "rep0")
    assert report.headline


def test_finding_f5_pipeline_coverage_overdue_pipeline_without_wins():
    """Only an overdue open deal (close date before the snapshot) and no deal won."""
    opps = _opps(
        {"opportunity_id": "O1", "stage": "discovery", "close_date": pd.Timestamp("2026-03-31"), "team": "t0"}
    ).assign(created_at=pd.Timestamp("2026-01-05"))
    crm = fk.CRM.from_tables({"opportunities": opps}, as_of="2026-06-30")
    cov = fk.pipeline_coverage(crm, "quarter")
    assert (cov["open_deals"] == 0).all()


def test_finding_f7_win_loss_review_deal_closed_the_day_it_was_created():
    from forecastkit.kpi.cycle import cycle_data

    """Created at 10:00, lost that day with no closing time: closed_at is the day's midnight, before creation."""
    opps = _opps(
        {"opportunity_id": "O1", "stage": "lost", "close_date": pd.Timestamp("2026-05-01"), "loss_reason": "price"},
        {"opportunity_id": "O2", "stage": "proposal", "close_date": pd.Timestamp("2026-07-31")},
    ).assign(created_at=pd.Timestamp("2026-05-01 10:00"))
    crm = fk.CRM.from_tables({"opportunities": opps}, as_of="2026-06-30")
    rv = fk.win_loss_review(crm)
    assert rv["cycle_days"].tolist() == [0.0]
    assert cycle_data(crm)["days"].min() == 0.0  # the rule the review follows (kpi.cycle)


def test_finding_f8_loss_reasons_amount_share_when_the_lost_deals_carry_no_amount():
    """Every lost deal has amount 0: the amount shares are 0 (not 0/0 = NaN); the count shares are unchanged."""
    opps = _opps(
        {"opportunity_id": "O1", "stage": "lost", "close_date": pd.Timestamp("2026-06-01"), "loss_reason": "price"},
        {"opportunity_id": "O2", "stage": "lost", "close_date": pd.Timestamp("2026-06-02"), "loss_reason": "timing"},
        {"opportunity_id": "O3", "stage": "proposal", "close_date": pd.Timestamp("2026-07-31")},
    ).assign(amount=[0.0, 0.0, 500.0])
    crm = fk.CRM.from_tables({"opportunities": opps}, as_of="2026-06-30")
    pareto = fk.loss_reasons(crm).pareto
    assert pareto["amount_share"].tolist() == [0.0, 0.0]
    assert pareto["share"].tolist() == [0.5, 0.5]
    by_owner = fk.loss_reasons(crm.subset(owner="rep0"), by="owner").pareto
    assert by_owner["amount_share"].tolist() == [0.0, 0.0]
