"""Diagnosis of the three case patterns, judged on the generator's scenarios."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.data.sample import generate
from forecastkit.diagnosis import diagnose
from forecastkit.diagnosis.findings import EVIDENCE_COLUMNS
from forecastkit.errors import ParameterError
from forecastkit.forecast.accuracy import calls_vs_actual
from forecastkit.playbook import Playbook

EXPECTED = {"baseline": [], "wide_pipeline": [1], "slow_cycle": [2], "optimistic": [3]}


@functools.cache
def _crm(scenario: str, seed: int) -> CRM:
    return generate(scenario=scenario, seed=seed).crm


@functools.cache
def _dx(scenario: str, seed: int) -> fk.diagnosis.Diagnosis:
    return diagnose(_crm(scenario, seed), by=None, drilldown=False)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(EXPECTED))
@pytest.mark.parametrize("seed", [11, 12])
def test_each_scenario_triggers_its_case_only(scenario: str, seed: int) -> None:
    dx = _dx(scenario, seed)
    assert dx.detected_cases() == EXPECTED[scenario], dx.to_frame()[["case", "metric", "value", "threshold", "holds"]]
    for f in dx.company:
        assert f.status in ("detected", "not detected")
        assert (f.severity == "none") == (not f.detected)


@pytest.mark.slow
def test_a_mixed_scenario_triggers_both_cases() -> None:
    dx = diagnose(_crm("wide_pipeline+optimistic", 3), by=None, drilldown=False)
    assert dx.detected_cases() == [1, 3]


def test_evidence_numbers_come_from_the_kpi_functions() -> None:
    crm = _crm("baseline", 11)
    f1, f2, f3 = _dx("baseline", 11).company
    ev = f1.evidence.set_index("metric")
    assert list(f1.evidence.columns) == EVIDENCE_COLUMNS
    sp = fk.stage_probabilities(crm, lookback="365D")
    q = sp[sp["stage"] == "qualification"].iloc[0]
    assert ev.loc["qualified_to_won", "value"] == pytest.approx(q["p_win"])
    assert ev.loc["qualified_to_won", "n"] == q["won"] + q["lost"]
    assert ev.loc["qualified_to_won", "threshold"] == pytest.approx(0.6 * q["crm_probability"])
    cov = fk.pipeline_coverage(crm)
    assert ev.loc["pipeline_coverage", "value"] == pytest.approx(cov["coverage"].iloc[0])
    npl = fk.new_pipeline(crm, period="month", by="owner")
    months = [fk.periods.period_of(crm.as_of_date, "month").shift(-i).label for i in range(1, 13)]
    per_rep = npl[npl["period"].isin(months)].groupby("owner")["new_deals"].sum() / 12
    assert ev.loc["new_deals_per_rep_month", "value"] == pytest.approx(per_rep.median())
    wip = fk.hygiene.wip(crm).by_owner
    assert ev.loc["median_wip_load", "value"] == pytest.approx(wip["load"].median())
    assert set(f2.evidence["metric"]) >= {"median_days_to_win", "share_open_deals_pushed", "qualified_to_won_healthy"}
    assert set(f3.evidence["metric"]) >= {"commit_bias_median", "periods_biased_up", "crm_probability_gap"}
    gap = np.average(sp["gap"], weights=sp["reached"].clip(lower=1))
    assert f3.evidence.set_index("metric").loc["crm_probability_gap", "value"] == pytest.approx(gap)


def test_each_finding_says_what_it_was_judged_against() -> None:
    for f in _dx("baseline", 11).company:
        assert "playbook thresholds" in f.basis and "own previous year" in f.basis
        assert f.actions, "the prescribed actions are always listed"
        assert f.evidence["source"].str.len().gt(0).all()


def test_too_little_history_gives_insufficient_data_never_a_verdict() -> None:
    crm = generate(scenario="wide_pipeline", seed=1, start="2026-06-01", n_reps=6).crm
    dx = diagnose(crm, by=None, drilldown=False)
    for f in dx.company:
        assert f.status == "insufficient data", f
        assert f.light == "grey"
        assert "at least" in f.minimum_needed
    assert "own history too short" in dx.company[0].basis


def test_thresholds_come_from_the_playbook_and_can_be_overridden() -> None:
    crm = _crm("baseline", 11)
    strict = Playbook.from_dict({"diagnosis": {"conversion_low_ratio": 1.5, "leads_per_rep_month_high": 3}})
    dx = diagnose(crm, by=None, drilldown=False, playbook=strict)
    assert 1 in dx.detected_cases()
    # case 3 needs the calls over bookings: with both call symptoms out of reach, the commit deals alone do not decide
    lax = Playbook.from_dict({"diagnosis": {"forecast_bias_high": 5.0, "biased_periods_min": 5}})
    f3 = diagnose(_crm("optimistic", 11), by=None, drilldown=False, playbook=lax).finding(3)
    assert not f3.detected
    ev = f3.evidence.set_index("metric")
    assert not ev.loc["commit_bias_median", "holds"] and not ev.loc["periods_biased_up", "holds"]
    assert ev.loc["commit_bias_median", "threshold"] == 5.0


def test_a_case_can_hold_for_one_team_only() -> None:
    crm = _crm("baseline", 11)
    teams = sorted(crm.opportunities["team"].dropna().unique())
    target = teams[0]
    owners = set(crm.opportunities.loc[crm.opportunities["team"] == target, "owner"])
    tables = crm.tables
    calls = tables["forecast_calls"].copy()
    mine = calls["owner"].isin(owners)
    calls.loc[mine, "commit"] *= 1.8
    calls.loc[mine, "best_case"] *= 1.8
    tables["forecast_calls"] = calls
    present = {n: tables[n] for n in tables if crm.has(n)}
    inflated = CRM(present, as_of_date=crm.as_of_date, playbook=crm.playbook)
    dx = diagnose(inflated, by="team", drilldown=False)
    assert 3 in dx.detected_cases(f"team={target}")
    for other in teams[1:]:
        assert 3 not in dx.detected_cases(f"team={other}")
    v = dx.verdict()
    assert set(v["scope"]) == {"company", *(f"team={t}" for t in teams)}


def test_drilldowns_make_the_actions_concrete() -> None:
    crm = _crm("wide_pipeline", 11)
    f1 = diagnose(crm, by=None, method="stage").finding(1)
    assert f1.detected
    kill = f1.drilldown["unqualified_deals_to_kill"]
    assert len(kill) and set(kill["stage"]) <= {"to_contact", "qualification"}
    assert (kill["days_over_cap"] > 0).all()
    assert {"owner", "active_deals", "over_limit"} <= set(f1.drilldown["reps_over_wip"].columns)
    f3 = diagnose(_crm("optimistic", 11), by=None, method="stage").finding(3)
    assert {"stage", "p_win", "crm_probability"} <= set(f3.drilldown["recalibrated_probabilities"].columns)
    challenge = f3.drilldown["commit_deals_to_challenge"]
    assert len(challenge), "the optimistic reps commit deals that will not close"
    assert (challenge["rep_category"] == "commit").all() and challenge["in_period"].all()
    assert (challenge["p_win_in_period"] < crm.playbook.best_case_threshold).all()


def test_case_3_combines_calls_and_commit_deals_from_the_forecast_functions() -> None:
    crm = _crm("optimistic", 11)
    f3 = diagnose(crm, by=None, drilldown=False, method="stage").finding(3)
    ev = f3.evidence.set_index("metric")
    bias, up, commit = ev.loc[["commit_bias_median", "periods_biased_up", "commit_win_probability"], "holds"]
    strong = bias and ev.loc["periods_biased_up", "value"] == 4
    assert ev.loc["optimism_evidence", "value"] == (bias or up) + commit + strong
    assert f3.detected and (bias or up) and commit
    # the commit deals' probability is the forecast's own p_win_in_period of the reps' commit deals
    d = fk.forecast(crm, method="stage", n_sims=500).deals
    c = d[(d["rep_category"] == "commit") & d["in_period"]]
    assert ev.loc["commit_win_probability", "value"] == pytest.approx(
        np.average(c["p_win_in_period"], weights=c["amount"])
    )
    assert ev.loc["commit_win_probability", "n"] == len(c)
    # the call bias is forecast_accuracy's bias of the week-4 commit calls
    cva = calls_vs_actual(crm, periods=4, checkpoints=("week4",))
    acc = fk.forecast_accuracy(cva[cva["method"] == "commit"], by="period")
    assert ev.loc["commit_bias_median", "value"] == pytest.approx(acc["bias"].median())
    assert ev.loc["periods_biased_up", "value"] == (acc["bias"] > 0.10).sum()


def test_the_win_model_is_fitted_at_most_once_and_can_be_passed() -> None:
    crm = _crm("baseline", 11)
    seen = []

    class FixedModel:
        def predict_proba(self, snap: CRM) -> pd.DataFrame:
            seen.append(len(snap.open_deals))
            return pd.DataFrame({"p_win": np.full(len(snap.open_deals), 0.05)})

    dx = diagnose(crm, by="team", drilldown=True, model=FixedModel())
    assert seen == [len(crm.open_deals)], "one forecast for the company and every team"
    for f in dx.findings:
        if f.case == 3 and f.status != "insufficient data":
            p = f.evidence.set_index("metric").loc["commit_win_probability", "value"]
            assert np.isnan(p) or p <= 0.05


def test_team_findings_slice_the_company_tables() -> None:
    crm = _crm("baseline", 11)
    dx = diagnose(crm, by="team", method="stage")
    team = sorted(crm.opportunities["team"].dropna().unique())[0]
    sub = crm.subset(team=team)
    f2 = dx.finding(2, f"team={team}")
    pushed = f2.drilldown["deals_pushed_twice_or_more"]
    assert set(pushed["opportunity_id"]) <= set(sub.open_deals["opportunity_id"])
    pushes = fk.timeline.close_date_pushes(sub).merge(sub.open_deals[["opportunity_id"]])
    share = f2.evidence.set_index("metric").loc["share_open_deals_pushed", "value"]
    assert share == pytest.approx((pushes["pushes"] > 0).mean())
    f1 = dx.finding(1, f"team={team}")
    assert set(f1.drilldown["reps_over_wip"]["owner"]) <= set(sub.opportunities["owner"])
    challenge = dx.finding(3, f"team={team}").drilldown["commit_deals_to_challenge"]
    assert set(challenge["opportunity_id"]) <= set(sub.open_deals["opportunity_id"])


@pytest.mark.parametrize("col", ["team", "owner", "business_unit"])
def test_scopes_cut_from_the_company_split_equal_judging_each_subset_alone(col: str) -> None:
    """diagnose() splits the company once and computes some measures for every scope at once;
    each scope's findings must be those of its own ``crm.subset`` judged on its own."""
    from forecastkit.diagnosis.cases import _Company, diagnose_scope

    crm = _crm("slow_cycle", 11)
    dx = diagnose(crm, by=col, method="stage")
    company = _Company(crm, method="stage")
    names = sorted(crm.opportunities[col].dropna().unique())
    for who in names[:: max(1, len(names) // 5)]:
        alone = diagnose_scope(crm.subset(**{col: who}), f"{col}={who}", company=company)
        for f in alone:
            got = dx.finding(f.case, f.scope)
            assert (got.status, got.severity, got.basis) == (f.status, f.severity, f.basis)
            pd.testing.assert_frame_equal(got.evidence, f.evidence, check_exact=True)
            assert list(got.drilldown) == list(f.drilldown)
            for k in f.drilldown:
                pd.testing.assert_frame_equal(got.drilldown[k], f.drilldown[k], check_exact=True)


@pytest.mark.parametrize("col", ["team", "owner"])
def test_stage_tables_counted_once_for_every_scope_equal_each_scope_alone(col: str) -> None:
    """The scopes' stage probabilities (now and a year ago) come from one pass over the company;
    each is the table of the scope's own snapshot (each shrunk toward its own prior)."""
    from forecastkit.diagnosis.cases import _Company, _Scopes, _stage_table

    crm = _crm("baseline", 11)
    part = _Scopes(_Company(crm, method="stage"), col)
    for key in part.split:
        pd.testing.assert_frame_equal(part.stage_table(key), _stage_table(part.snapshot(key)), check_exact=True)
        ya = part.year_ago(key)
        assert len(ya.opportunities)
        pd.testing.assert_frame_equal(part.stage_table(key, year_ago=True), _stage_table(ya), check_exact=True)


@pytest.mark.parametrize("col", ["team", "owner"])
def test_calls_measures_computed_once_for_every_scope_equal_each_scope_alone(col: str) -> None:
    """The reps' calls: bias by quarter and instability of every scope from one grouped pass,
    the same numbers and tables as from the scope's own calls."""
    from forecastkit.diagnosis.cases import _commit_bias, _Company, _forecast_instability, _Scopes

    crm = _crm("optimistic", 11)
    company = _Company(crm, method="stage")
    part = _Scopes(company, col)
    calls = company.calls(4)
    finite = []
    for key in part.split:
        sub = part.snapshot(key)
        owners = set(sub.opportunities["owner"].dropna()) | set(sub.forecast_calls["owner"].dropna())
        assert part.owners(key) == owners
        mine = _rows_of_owners(calls, owners)
        instability, (bias, n_up, n, table) = part.calls_measures(key, 4)
        want = _commit_bias(mine)
        np.testing.assert_equal((instability, bias, n_up, n), (_forecast_instability(mine), *want[:3]))
        pd.testing.assert_frame_equal(table, want[3], check_exact=True)
        finite.append(np.isfinite(instability) and np.isfinite(bias))
    assert sum(finite) >= len(finite) / 2  # real numbers compared, not only NaN


@pytest.mark.parametrize("col", ["team", "owner"])
def test_close_date_slips_taken_by_position_equal_the_merge_per_scope(col: str) -> None:
    from forecastkit.diagnosis.cases import _Company, _Scopes, _slips

    crm = _crm("slow_cycle", 11)
    company = _Company(crm, method="stage")
    part = _Scopes(company, col)
    pushed = 0
    for key in part.split:
        sub = part.snapshot(key)
        want = _slips(sub, part.deal_rows("pushes", company.pushes(), key))
        got = part.slips(key)
        if not len(sub.open_deals):
            assert got is None
            continue
        np.testing.assert_equal(got[:2], want[:2])
        pd.testing.assert_frame_equal(got[2], want[2], check_exact=True)
        pushed += len(got[2])
    assert pushed > 0


_MEASURES = (
    "first_created",
    "has_year_ago",
    "conversion",
    "conversion_year_ago",
    "leads",
    "wip",
    "coverage",
    "win_rate",
    "time_to_win",
    "time_to_win_year_ago",
    "slips",
    "unqualified_deals",
    "stuck_deals",
    "commit_probability",
    "commit_to_challenge",
)


def _assert_same(got: object, want: object, what: str) -> None:
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, check_exact=True, obj=what)  # type: ignore[arg-type]
    elif isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _assert_same(g, w, f"{what}[{i}]")
    else:
        np.testing.assert_equal(got, want, err_msg=what)


@pytest.mark.parametrize(
    ("scenario", "col"), [("slow_cycle", "team"), ("optimistic", "owner"), ("wide_pipeline", "team")]
)
def test_measures_of_every_scope_at_once_equal_each_scope_alone(scenario: str, col: str) -> None:
    """diagnose() judges each scope from measures computed once for every scope (_ScopeMeasures);
    each must equal the measure computed on the scope's own snapshot (_Measures), value and type."""
    from forecastkit.diagnosis.cases import _Company, _judge, _Measures, _Scopes

    crm = _crm(scenario, 11)
    company = _Company(crm, method="stage")
    part = _Scopes(company, col)
    keys = sorted(crm.opportunities[col].dropna().astype(str).unique())
    checked = {"deals": 0, "finite": 0}
    for key in keys[:: max(1, len(keys) // 4)]:
        batched, alone = part.measures(key), _Measures(part.snapshot(key), company)
        for name in _MEASURES:
            got = getattr(batched, name)()
            want = getattr(alone, name)()
            assert type(got) is type(want), (key, name, type(got), type(want))
            _assert_same(got, want, f"{key}: {name}")
        checked["deals"] += len(alone.stuck_deals()) + len(alone.slips()[2])
        checked["finite"] += np.isfinite(alone.time_to_win()[0]) + np.isfinite(alone.coverage())
        # and the findings judged from either
        for f, g in zip(_judge(alone, key, True, "stage"), _judge(batched, key, True, "stage"), strict=True):
            assert (f.status, f.severity, f.basis, f.minimum_needed) == (
                g.status,
                g.severity,
                g.basis,
                g.minimum_needed,
            )
            pd.testing.assert_frame_equal(g.evidence, f.evidence, check_exact=True)
            for k in f.drilldown:
                pd.testing.assert_frame_equal(g.drilldown[k], f.drilldown[k], check_exact=True)
    assert checked["deals"] > 0 and checked["finite"] > 0  # real rows and numbers compared, not only empties


def _rows_of_owners(table: pd.DataFrame, owners: set) -> pd.DataFrame:
    return table[table["owner"].isin(owners)].reset_index(drop=True)


def test_period_and_scope_errors() -> None:
    crm = _crm("baseline", 11)
    with pytest.raises(ParameterError, match="by='region' is not a scope; use 'team', 'owner' or 'business_unit'"):
        diagnose(crm, by="region")
    past = diagnose(crm, period="2025-Q4", by=None, drilldown=False)
    assert past.as_of == pd.Timestamp("2025-12-31")


def test_plots_and_frames() -> None:
    from forecastkit.diagnosis import plot as dplot

    dx = _dx("wide_pipeline", 11)
    fig = dplot.plot_verdict(dx)
    assert fig.data[0].z.shape == (1, 3)
    assert len(dplot.plot_evidence(dx.finding(1)).data[0].x) >= 3
    frame = dx.to_frame()
    assert {"scope", "case", "status", *EVIDENCE_COLUMNS} <= set(frame.columns)
    assert "<table" in dx._repr_html_() and "<table" in dx.finding(1)._repr_html_()


def test_scopes_carry_only_the_targets_of_the_quarter_and_keep_their_coverage() -> None:
    """The company split for the scopes keeps only the bookings targets overlapping the current
    quarter: every scope's pipeline_coverage (the diagnosis' quota) is unchanged."""
    from forecastkit.diagnosis.cases import _quarter_targets_only
    from forecastkit.kpi.sales import pipeline_coverage

    crm = _crm("baseline", 11)
    narrow = _quarter_targets_only(crm)
    assert 0 < len(narrow.targets) < len(crm.targets)
    assert set(narrow.targets["metric"].str.lower()) == {"bookings"}
    for by in (None, "team", "owner", "business_unit"):
        pd.testing.assert_frame_equal(pipeline_coverage(narrow, by=by), pipeline_coverage(crm, by=by), check_exact=True)
    split = narrow.split_by("team")
    for team in list(split)[:3]:
        pd.testing.assert_frame_equal(
            pipeline_coverage(split[team]), pipeline_coverage(crm.subset(team=team)), check_exact=True
        )
