"""Tests of the synthetic sample company generator and its ground truth."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from forecastkit.data.sample import SCENARIOS, GroundTruth, Sample, driver_design, generate
from forecastkit.data.schema import TABLES
from forecastkit.errors import ParameterError

_KIND = {"str": "string", "float": "float64", "bool": "boolean", "date": "datetime64[ns]"}
#: columns that may hold dates after as_of (planned things)
_FUTURE_OK = {
    ("opportunities", "close_date"), ("opportunities", "next_step_date"), ("opportunities", "timing"),
    ("history", "close_date"), ("activities", "due_at"), ("orders", "promised_delivery"),
}


@pytest.fixture(scope="module")
def base() -> Sample:
    return generate()


@pytest.fixture(scope="module")
def small() -> Sample:
    return generate(seed=1, n_reps=12)


@pytest.fixture(scope="module")
def big() -> Sample:
    return generate(seed=3, n_reps=84, start="2022-01-01")


# ------------------------------------------------------------------ determinism
def test_same_seed_identical_tables(small: Sample) -> None:
    again = generate(seed=1, n_reps=12)
    for name in TABLES:
        pd.testing.assert_frame_equal(small.tables[name], again.tables[name])
    assert small.truth.weak_rep == again.truth.weak_rep
    pd.testing.assert_frame_equal(small.truth.hidden, again.truth.hidden)


def test_different_seed_differs(small: Sample) -> None:
    other = generate(seed=2, n_reps=12)
    assert not small.tables["opportunities"].equals(other.tables["opportunities"])


def test_save_byte_identical(small: Sample, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    small.save(a)
    generate(seed=1, n_reps=12).save(b)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted([f"{t}.csv" for t in TABLES] + ["crm.yaml", "playbook.yaml"])
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors
    assert (a / "crm.yaml").read_text() == "as_of: 2026-11-20\ncurrency: EUR\n"
    head = (a / "history.csv").read_text().splitlines()[1]
    assert "T" in head.split(",")[1] and (a / "opportunities.csv").read_text().count(" 00:00:00") == 0


def test_save_parquet(small: Sample, tmp_path: Path) -> None:
    small.save(tmp_path, format="parquet")
    back = pd.read_parquet(tmp_path / "opportunities.parquet")
    assert list(back.columns) == list(TABLES["opportunities"].column_names)
    with pytest.raises(ParameterError):
        small.save(tmp_path, format="xlsx")


# ------------------------------------------------------------------ schema
def test_tables_follow_schema(base: Sample) -> None:
    assert set(base.tables) == set(TABLES)
    for name, table in TABLES.items():
        df = base.tables[name]
        assert list(df.columns) == list(table.column_names), name
        assert len(df) > 0, name
        for c in table.columns:
            assert str(df[c.name].dtype) == _KIND[c.kind], (name, c.name, df[c.name].dtype)
            if c.required:
                assert df[c.name].notna().all(), (name, c.name)
            if c.nonnegative:
                assert (df[c.name].dropna() >= 0).all(), (name, c.name)
            if c.allowed:
                assert set(df[c.name].dropna()) <= set(c.allowed), (name, c.name)
        if table.key:
            assert not df.duplicated(list(table.key)).any(), name
    opp = base.tables["opportunities"]
    assert (opp["currency"] == "EUR").all()
    assert set(opp["stage"]) <= set(base.playbook.all_stage_names)
    assert set(base.tables["activities"]["opportunity_id"].dropna()) <= set(opp["opportunity_id"])
    assert set(opp["account_id"]) <= set(base.tables["accounts"]["account_id"])
    assert set(opp["owner"]) <= set(base.tables["reps"]["owner"])


def test_nothing_after_as_of(base: Sample) -> None:
    for name, df in base.tables.items():
        for c in TABLES[name].columns:
            if c.kind == "date" and (name, c.name) not in _FUTURE_OK and name != "targets":
                assert (df[c.name].dropna() < base.as_of).all(), (name, c.name)


def test_history_matches_opportunities(base: Sample) -> None:
    opp = base.tables["opportunities"].set_index("opportunity_id")
    hist = base.tables["history"]
    assert hist.equals(hist.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True))
    last = hist.groupby("opportunity_id").tail(1).set_index("opportunity_id").loc[opp.index]
    for col in ("stage", "amount", "close_date", "forecast_category"):
        assert (last[col] == opp[col]).all(), col
    first = hist.groupby("opportunity_id").head(1).set_index("opportunity_id").loc[opp.index]
    assert (first["changed_at"] == opp["created_at"]).all()
    closed = opp[opp["status"] != "open"]
    assert (closed["closed_at"] == closed["close_date"]).all()
    assert closed["stage"].isin(["won", "lost"]).all() and (closed["stage"] == closed["status"]).all()
    assert opp.loc[opp["status"] == "lost", "loss_reason"].notna().all()
    assert opp.loc[opp["status"] == "open", "closed_at"].isna().all()


def test_field_history_rewinds_to_current_values(base: Sample) -> None:
    opp = base.tables["opportunities"].set_index("opportunity_id")
    fh = base.tables["field_history"]
    last = fh.groupby(["opportunity_id", "field"]).tail(1)
    champ = last[last["field"] == "champion"].set_index("opportunity_id")["new_value"]
    assert (opp.loc[champ.index, "champion"] == champ).all()
    assert opp.loc[opp.index.difference(champ.index), "champion"].isna().all()
    nsd = last[last["field"] == "next_step_date"].set_index("opportunity_id")["new_value"]
    got = opp.loc[nsd.index, "next_step_date"].dt.strftime("%Y-%m-%d")
    assert (got.fillna("") == nsd.fillna("")).all()


# ------------------------------------------------------------------ ground truth
def _reached(sample: Sample) -> pd.DataFrame:
    """Deals x stage: reached (from history) and won."""
    h = sample.tables["history"]
    return h[~h["stage"].isin(["won", "lost"])][["opportunity_id", "stage"]].drop_duplicates()


def test_stage_win_probability_matches_realised(big: Sample) -> None:
    opp = big.tables["opportunities"]
    old = opp[(opp["created_at"] < big.as_of - pd.Timedelta(days=400)) & (opp["status"] != "open")]
    r = _reached(big).merge(old[["opportunity_id", "status"]], on="opportunity_id")
    truth = big.truth.stage_win_probability.query("segment == 'all'").set_index("stage")["p_win"]
    assert np.allclose(truth.to_numpy(), [0.05, 0.10, 0.25, 0.50, 0.75], atol=0.02)
    for stage, g in r.groupby("stage"):
        p = truth[stage]
        se = np.sqrt(p * (1 - p) / len(g))
        assert abs((g["status"] == "won").mean() - p) < 4 * se + 0.02, stage


def test_driver_odds_ratios_recovered(big: Sample) -> None:
    opp = big.tables["opportunities"]
    reached = _reached(big)
    q_ids = reached.loc[reached["stage"] == "qualification", "opportunity_id"]
    d = opp[opp["opportunity_id"].isin(q_ids) & (opp["status"] != "open")].reset_index(drop=True)
    x = driver_design(d)
    y = (d["status"] == "won").to_numpy(float)
    fit = sm.Logit(y, sm.add_constant(x)).fit(disp=0)
    eff = big.truth.driver_effects.assign(key=lambda t: t["driver"] + "=" + t["level"]).set_index("key")
    for key in ("champion=known", "competitor=present", "source=partner", "decision_maker=known"):
        true = np.log(eff.loc[key, "true_odds_ratio"])
        assert np.sign(fit.params[key]) == np.sign(true), key
        assert abs(fit.params[key] - true) < 0.4, (key, fit.params[key], true)
    nulls = eff[eff["is_null"]].index
    assert len(nulls) >= 4
    assert (fit.pvalues[nulls] > 0.001).all()


def test_truth_fields(base: Sample) -> None:
    t = base.truth
    assert isinstance(t, GroundTruth)
    eff = t.driver_effects
    assert {"driver", "level", "true_odds_ratio", "is_null"} <= set(eff.columns)
    assert eff.loc[eff["level"] == "partner", "true_odds_ratio"].item() == pytest.approx(1.8)
    assert eff["is_null"].sum() >= 4
    reps = set(base.tables["reps"]["owner"])
    assert t.weak_rep in reps and t.weak_stage in base.playbook.stage_names
    assert set(t.rep_bias) == reps and set(t.rep_skill) == reps
    assert len(t.hidden) == len(base.tables["opportunities"])
    assert t.true_median_cycle_days > 0


def test_stage_only_has_no_effects() -> None:
    s = generate("stage_only", seed=4, n_reps=6)
    assert s.truth.driver_effects["is_null"].all()
    assert set(s.truth.rep_skill.values()) == {0.0}


def test_p_win_bounds_and_decreasing_in_age(base: Sample) -> None:
    opp = base.tables["opportunities"]
    ids = opp.loc[opp["status"] == "open", "opportunity_id"].to_numpy()
    p = base.truth.p_win(ids, base.as_of)
    assert np.all((p >= 0) & (p <= 1))
    pb = base.truth.p_win_by(ids, base.as_of, base.as_of + pd.Timedelta(days=90))
    assert np.all((pb >= 0) & (pb <= p + 1e-12))
    # deals in their current stage for >= 30 days: P(win) falls as they keep sitting there
    h = base.tables["history"]
    chg = h[(h["stage"] != h.groupby("opportunity_id")["stage"].shift()).fillna(True).astype(bool)]
    entered = chg.groupby("opportunity_id")["changed_at"].last().loc[ids]
    long = entered[entered < base.as_of - pd.Timedelta(days=30)].index.to_numpy()
    assert len(long) > 10
    ps = [base.truth.p_win(long, base.as_of - pd.Timedelta(days=k)) for k in (28, 14, 0)]
    assert np.all(np.diff(np.vstack(ps), axis=0) <= 1e-12)
    assert np.all(ps[0] - ps[-1] > 0)
    closed = opp.loc[opp["status"] == "won", "opportunity_id"].to_numpy()[:5]
    assert np.all(base.truth.p_win(closed, base.as_of) == 1)


def test_stale_missing_next_steps_consistent(base: Sample) -> None:
    t = base.truth
    opp = base.tables["opportunities"].set_index("opportunity_id")
    stale = t.stale_deals
    assert len(stale) > 0
    assert (opp.loc[stale["opportunity_id"], "status"] == "open").all()
    assert (opp.loc[stale["opportunity_id"], "stage"].to_numpy() == stale["stage"].to_numpy()).all()
    assert (stale["days_in_stage"] > stale["age_cap_days"]).all()
    h = base.tables["history"]
    chg = h[(h["stage"] != h.groupby("opportunity_id")["stage"].shift()).fillna(True).astype(bool)]
    entered = chg.groupby("opportunity_id")["changed_at"].last()
    days = (base.as_of - entered.loc[stale["opportunity_id"]].dt.normalize()).dt.days.to_numpy()
    assert (days == stale["days_in_stage"].to_numpy()).all()
    open_ = opp[opp["status"] == "open"]
    ent = (base.as_of - entered.loc[open_.index].dt.normalize()).dt.days
    caps = open_["stage"].map({s.name: s.age_cap_days for s in base.playbook.stages})
    assert set(ent[ent > caps].index) == set(stale["opportunity_id"])
    mf = t.missing_fields
    assert len(mf) > 0
    for fld, g in mf.groupby("field"):
        assert opp.loc[g["opportunity_id"], fld].isna().all(), fld
    order = {s: i for i, s in enumerate(base.playbook.stage_names)}
    expect = set()
    for fld, st in base.playbook.mandatory_fields.items():
        m = (open_["stage"].map(order) >= order[st]) & open_[fld].isna()
        expect |= {(i, fld) for i in open_.index[m]}
    assert expect == set(zip(mf["opportunity_id"], mf["field"], strict=True))
    assert set(t.undated_next_steps["opportunity_id"]) == set(open_.index[open_["next_step_date"].isna()])
    assert set(t.overdue_next_steps["opportunity_id"]) == set(open_.index[open_["next_step_date"] < base.as_of])


def test_cadence_truth_matches_activities(base: Sample) -> None:
    cad = base.truth.skipped_cadence_steps
    assert set(cad["outcome"]) == {"on_time", "late", "missed"}
    act = base.tables["activities"].dropna(subset=["cadence_step"])
    m = cad.merge(act, on=["opportunity_id", "cadence_step"], how="left", validate="one_to_one")
    on_time = m[m["outcome"] == "on_time"]
    assert (on_time["done_at"].dt.normalize() <= on_time["due_at"].dt.normalize()).all()
    late = m[m["outcome"] == "late"]
    assert (late["done_at"].dt.normalize() > late["due_at"].dt.normalize()).all()
    assert m.loc[m["outcome"] == "missed", "done_at"].isna().all()
    assert set(act["cadence_step"]) <= {c.name for c in base.playbook.cadence}


def test_orders_and_stopped_customers(base: Sample) -> None:
    orders = base.tables["orders"]
    stopped = base.truth.stopped_customers
    assert len(stopped) > 0
    last = orders.groupby("account_id")["ordered_at"].max().loc[stopped["account_id"]]
    assert (last.to_numpy() <= stopped["stopped_at"].to_numpy()).all()
    inv = orders.dropna(subset=["invoiced_at"])
    assert (inv["invoiced_at"] >= inv["ordered_at"]).all()
    assert base.tables["subscriptions"]["mrr"].gt(0).all()


# ------------------------------------------------------------------ scenarios
def _win_rate(s: Sample) -> float:
    opp = s.tables["opportunities"]
    closed = opp[opp["status"] != "open"]
    return float((closed["status"] == "won").mean())


def test_scenarios_differ_as_intended(small: Sample) -> None:
    wide = generate("wide_pipeline", seed=1, n_reps=12)
    slow = generate("slow_cycle", seed=1, n_reps=12)
    opt = generate("optimistic", seed=1, n_reps=12)
    assert _win_rate(wide) < 0.6 * _win_rate(small)
    n_open = (small.tables["opportunities"]["status"] == "open").sum()
    assert (wide.tables["opportunities"]["status"] == "open").sum() > 2 * n_open
    assert slow.truth.true_median_cycle_days > 1.5 * small.truth.true_median_cycle_days
    won_cycle = [
        (o["closed_at"] - o["created_at"]).dt.days[o["status"] == "won"].median()
        for o in (small.tables["opportunities"], slow.tables["opportunities"])
    ]
    assert won_cycle[1] > 1.5 * won_cycle[0]
    sp = opt.truth.stage_win_probability.query("segment == 'all'")["p_win"].to_numpy()
    assert np.allclose(sp, 0.5 * np.array([0.05, 0.10, 0.25, 0.50, 0.75]), atol=0.02)
    for s, lo in ((opt, 1.1), (small, 0.85)):
        ratio = _commit_over_actual(s)
        assert ratio > lo, ratio
    assert _commit_over_actual(opt) > _commit_over_actual(small) + 0.1
    combo = generate("wide_pipeline+optimistic", seed=1, n_reps=6)
    assert _win_rate(combo) < _win_rate(opt) + 0.02
    with pytest.raises(ParameterError):
        generate("nonsense")
    assert SCENARIOS == ("baseline", "wide_pipeline", "slow_cycle", "optimistic", "stage_only")


def _commit_over_actual(s: Sample) -> float:
    """Mean over reps and closed quarters of (commit call six weeks before quarter end) / bookings."""
    calls = s.tables["forecast_calls"]
    opp = s.tables["opportunities"]
    won = opp[opp["status"] == "won"].copy()
    won["period"] = won["closed_at"].dt.year.astype(str) + "-Q" + won["closed_at"].dt.quarter.astype(str)
    actual = won.groupby(["owner", "period"])["amount"].sum()
    qend = pd.PeriodIndex(calls["period"].str.replace("-", ""), freq="Q").end_time
    c = calls[(qend - calls["submitted_at"]).dt.days.between(35, 48) & (qend < s.as_of)]
    c = c.groupby(["owner", "period"])["commit"].mean()
    j = pd.concat([c, actual], axis=1, keys=["commit", "actual"]).dropna()
    return float(j["commit"].sum() / j["actual"].sum())


def test_no_clock_reading() -> None:
    import forecastkit.data.sample as pkg

    for f in Path(pkg.__file__).parent.glob("*.py"):
        text = f.read_text()
        assert "now(" not in text and "today(" not in text and "time.time" not in text, f.name
