"""Point-in-time features, the leak-proof registry, training rows and WinModel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.errors import InsufficientDataError, LeakageError, ParameterError, SchemaError
from forecastkit.probability.features import (
    FEATURES,
    FORBIDDEN_FEATURES,
    as_of_dates,
    check_features,
    point_in_time_features,
    training_rows,
)

AS_OF = "2026-06-30"


def _tables() -> dict[str, pd.DataFrame]:
    opps = pd.DataFrame(
        [
            # won on 2026-03-20 after a close-date push
            [
                "W1",
                "alice",
                "smb",
                "inbound",
                "2026-01-05",
                "2026-03-31",
                "12000",
                "won",
                "won",
                "2026-03-20",
                None,
                "Bo",
            ],
            # lost on 2026-04-15, with a loss reason (known at close only)
            [
                "L1",
                "alice",
                "smb",
                "event",
                "2026-02-10",
                "2026-04-30",
                "8000",
                "lost",
                "lost",
                "2026-04-15",
                "price",
                None,
            ],
            # open in proposal
            [
                "O1",
                "bob",
                "enterprise",
                "partner",
                "2026-02-01",
                "2026-07-15",
                "5000",
                "proposal",
                "open",
                None,
                None,
                None,
            ],
        ],
        columns=[
            "opportunity_id",
            "owner",
            "segment",
            "source",
            "created_at",
            "close_date",
            "amount",
            "stage",
            "status",
            "closed_at",
            "loss_reason",
            "champion",
        ],
    )
    hist = pd.DataFrame(
        [
            ["W1", "2026-01-05", "qualification", "10000", "2026-03-01"],
            ["W1", "2026-02-15", "proposal", "12000", "2026-03-31"],  # push of 30 days, amount up
            ["W1", "2026-03-20", "won", "12000", "2026-03-31"],
            ["L1", "2026-02-10", "discovery", "8000", "2026-04-30"],
            ["L1", "2026-04-15", "lost", "8000", "2026-04-30"],
            ["O1", "2026-02-01", "qualification", "4000", "2026-06-30"],
            ["O1", "2026-04-01", "proposal", "5000", "2026-07-15"],
        ],
        columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"],
    )
    acts = pd.DataFrame(
        [
            ["T1", "W1", "alice", "call", "2026-02-20", "2026-02-20", "2026-02-20"],
            ["T2", "W1", "alice", "email", "2026-01-10", "2026-01-10", "2026-01-10"],
            ["T3", "W1", "alice", "visit", "2026-03-01", "2026-03-05", None],  # planned, not done
        ],
        columns=["activity_id", "opportunity_id", "owner", "type", "created_at", "due_at", "done_at"],
    )
    return {"opportunities": opps, "history": hist, "activities": acts}


@pytest.fixture
def crm() -> CRM:
    return CRM.from_tables(_tables(), as_of=AS_OF)


def test_features_by_hand_on_a_past_snapshot(crm):
    snap = crm.as_of("2026-02-28")  # W1 in proposal since 02-15, L1 in discovery, O1 in qualification
    f = point_in_time_features(snap).set_index("opportunity_id")
    assert sorted(f.index) == ["L1", "O1", "W1"]
    w = f.loc["W1"]
    assert w["stage"] == "proposal" and w["stage_order"] == 3
    assert w["days_in_stage"] == pytest.approx(13)  # 02-15 -> 02-28
    assert w["deal_age_days"] == pytest.approx(54)  # 01-05 -> 02-28
    assert w["close_date_pushes"] == 1 and w["days_pushed"] == 30
    assert w["days_to_close_date"] == pytest.approx(31)  # 02-28 -> 03-31
    assert w["amount_change"] == pytest.approx(np.log1p(12000) - np.log1p(10000))
    assert w["log_amount"] == pytest.approx(np.log1p(12000))
    assert w["activities_30d"] == 1  # T1 on 02-20; T2 is older
    assert w["days_since_activity"] == pytest.approx(8)
    assert w["champion_known"] == 1 and f.loc["L1", "champion_known"] == 0
    assert f.loc["O1", "days_since_activity"] == pytest.approx(27)  # no activity: the deal's age
    assert np.isnan(w["owner_win_rate"])  # nothing closed yet on 02-28
    assert f.loc["O1", "owner_open_deals"] == 1


def test_owner_win_rate_is_shrunk_toward_the_company_rate(crm):
    f = point_in_time_features(crm.as_of("2026-04-20"), ["owner_win_rate"])
    assert list(f.columns) == ["opportunity_id", "owner_win_rate"]
    f = f.set_index("opportunity_id")
    # closed by then: W1 won, L1 lost (both alice) -> company rate 0.5; alice (1 + 10 * 0.5) / (2 + 10)
    # bob has no closed deal -> company rate
    assert f.loc["O1", "owner_win_rate"] == pytest.approx(0.5)


def test_forbidden_features_raise_leakage_error(crm):
    for name in ("loss_reason", "closed_at", "status", "final_stage"):
        assert name in FORBIDDEN_FEATURES and name not in FEATURES
    with pytest.raises(LeakageError, match=r"\['loss_reason'\] are only known once a deal closes"):
        check_features(["stage", "loss_reason"])
    with pytest.raises(LeakageError, match="closed_at.*close timestamp"):
        point_in_time_features(crm, ["closed_at"])
    with pytest.raises(LeakageError, match="status.*label itself"):
        training_rows(crm, "2026-03-01", "2026-03-01", features=["status"])
    with pytest.raises(LeakageError, match="final_stage"):
        fk.WinModel(features=["stage", "final_stage"]).fit(crm)
    with pytest.raises(ParameterError, match="unknown feature.*'colour'.*registered features"):
        check_features(["colour"])


def test_features_at_a_date_do_not_change_when_the_future_changes(crm):
    """Leak-proof by construction: rewrite everything after d; features at d stay identical."""
    d = "2026-03-10"
    before = point_in_time_features(crm.as_of(d))
    t = _tables()
    o, h, a = t["opportunities"], t["history"], t["activities"]
    # W1 now lost later with a loss reason, L1 won, new post-d history and activities
    o.loc[o["opportunity_id"] == "W1", ["stage", "status", "closed_at", "loss_reason"]] = [
        "lost",
        "lost",
        "2026-05-01",
        "late",
    ]
    o.loc[o["opportunity_id"] == "L1", ["stage", "status", "closed_at", "loss_reason"]] = [
        "won",
        "won",
        "2026-04-15",
        None,
    ]
    h = h[~((h["opportunity_id"] == "W1") & (h["changed_at"] == "2026-03-20"))].copy()
    h.loc[(h["opportunity_id"] == "L1") & (h["stage"] == "lost"), "stage"] = "won"
    h = pd.concat([h, pd.DataFrame([["W1", "2026-05-01", "lost", "1", "2027-01-01"]], columns=h.columns)])
    a = pd.concat(
        [a, pd.DataFrame([["T9", "W1", "alice", "call", "2026-04-01", "2026-04-01", "2026-04-01"]], columns=a.columns)]
    )
    other = CRM.from_tables({"opportunities": o, "history": h, "activities": a}, as_of=AS_OF)
    after = point_in_time_features(other.as_of(d))
    pd.testing.assert_frame_equal(before, after)
    # ... while the labels (read from the full snapshot) do change
    lab = training_rows(crm, d, d).set_index("opportunity_id")["won"]
    lab2 = training_rows(other, d, d).set_index("opportunity_id")["won"]
    assert lab["W1"] == 1 and lab2["W1"] == 0


def test_training_rows_label_from_full_snapshot_and_drop_still_open(crm):
    rows = training_rows(crm, "2026-02-28", "2026-03-10", freq="10D")
    assert list(rows.columns[:2]) == ["opportunity_id", "as_of"] and rows.columns[-1] == "won"
    assert sorted(rows["as_of"].unique()) == [pd.Timestamp("2026-02-28"), pd.Timestamp("2026-03-10")]
    assert set(rows["opportunity_id"]) == {"W1", "L1"}  # O1 is still open: no label
    assert rows.attrs["unlabelled"] == 2
    assert rows.set_index(["opportunity_id", "as_of"]).loc[("W1", pd.Timestamp("2026-03-10")), "won"] == 1


def test_as_of_dates_count_back_from_end_and_errors(crm):
    d = as_of_dates(crm, "2026-01-01", "2026-03-01", "30D")
    assert d[-1] == pd.Timestamp("2026-03-01") and d[0] >= pd.Timestamp("2026-01-01") and len(d) == 2
    with pytest.raises(InsufficientDataError, match="no as-of dates.*pass an earlier start"):
        as_of_dates(crm, "2026-05-01", "2026-03-01")
    with pytest.raises(ParameterError, match="freq='soon' is not a pandas frequency"):
        as_of_dates(crm, "2026-01-01", "2026-03-01", "soon")


def test_win_model_follows_scikit_learn_rules_and_refuses_tiny_data(crm):
    m = fk.WinModel(estimator="hgb", calibration="sigmoid", random_state=3)
    assert m.get_params()["estimator"] == "hgb" and clone(m).get_params() == m.get_params()
    with pytest.raises(NotFittedError):
        m.predict_proba(crm)
    with pytest.raises(InsufficientDataError, match=r"at least 30 won and 30 lost.*got 1 won and 1 lost"):
        m.fit(crm, "2026-02-28", "2026-03-10")
    with pytest.raises(SchemaError, match=r"lack column\(s\) \['won'\]"):
        m.fit_rows(pd.DataFrame({"opportunity_id": [], "as_of": [], **{k: [] for k in FEATURES}}))
    with pytest.raises(ParameterError, match="estimator must be 'hgb' or 'logistic'"):
        fk.WinModel(estimator="forest").fit_rows(training_rows(crm, "2026-02-28", "2026-02-28"))


def _synthetic_rows(n: int = 3000, seed: int = 0, signal: float = 1.5) -> pd.DataFrame:
    """Rows whose outcome depends on stage and on the champion flag (known log-odds)."""
    rng = np.random.default_rng(seed)
    stages = np.array(["qualification", "discovery", "proposal", "negotiation"], dtype=object)
    s = rng.integers(0, 4, n)
    champ = rng.random(n) < 0.4
    logit = -2.5 + 0.9 * s + signal * champ
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    cols = {k: np.zeros(n) for k, f in FEATURES.items() if f.kind == "numeric"}
    cols.update({k: np.full(n, "x", dtype=object) for k, f in FEATURES.items() if f.kind == "categorical"})
    cols.update(stage=stages[s], stage_order=s.astype(float), champion_known=champ.astype(float))
    return pd.DataFrame(
        {"opportunity_id": [f"D{i}" for i in range(n)], "as_of": pd.Timestamp("2026-01-01"), **cols, "won": y}
    )


@pytest.mark.parametrize(("estimator", "calibration"), [("logistic", "sigmoid"), ("hgb", "isotonic")])
def test_win_model_learns_a_known_signal_and_is_calibrated(estimator, calibration):
    train, test = _synthetic_rows(3000, 0), _synthetic_rows(3000, 1)
    with threadpool_limits(1):  # OpenMP threads crawl on a busy 2-core machine
        m = fk.WinModel(estimator=estimator, calibration=calibration).fit_rows(train)
        p = m.predict_rows(test)
        again = fk.WinModel(estimator=estimator, calibration=calibration).fit_rows(train).predict_rows(test)
    assert m.n_rows_ == 3000 and m.features_ == list(FEATURES) and 0 < m.base_rate_ < 1
    champ = test["champion_known"] == 1
    assert p[champ].mean() > p[~champ].mean() + 0.1
    assert abs(p.mean() - test["won"].mean()) < 0.03
    assert np.array_equal(p, again)  # seeded


def test_predict_proba_returns_one_row_per_open_deal(crm):
    m = fk.WinModel().fit_rows(_synthetic_rows(2000, 0))
    out = m.predict_proba(crm)
    assert list(out.columns) == ["opportunity_id", "p_win"]
    assert out["opportunity_id"].tolist() == ["O1"] and 0 <= out["p_win"].iloc[0] <= 1


# ------------------------------------------------------------------ acceptance on the sample company
@pytest.mark.slow
def test_model_beats_stage_history_on_baseline_and_is_calibrated():
    from _probability_samples import holdout

    from forecastkit.probability.calibration import calibration_report

    pred = holdout("baseline", 0)
    s = calibration_report(pred).scores.set_index("source")
    assert s.loc["model", "brier_skill_vs_stage"] >= 0.10
    assert s.loc["model", "ece"] <= 0.03
    # the oracle (true probabilities) is the floor: the model cannot beat it by more than noise
    assert s.loc["oracle", "brier"] <= s.loc["model", "brier"] + 0.002
    assert s.loc["model", "brier"] - s.loc["oracle", "brier"] < 0.01  # what is left to win is small


@pytest.mark.slow
def test_model_does_not_overfit_when_outcomes_depend_on_stage_alone():
    from _probability_samples import holdout

    from forecastkit.probability.calibration import calibration_report

    s = calibration_report(holdout("stage_only", 0)).scores.set_index("source")
    assert s.loc["model", "brier_skill_vs_stage"] >= -0.02


@pytest.mark.slow
def test_large_deals_are_not_over_predicted_against_the_oracle():
    """Amount-weighted win probability of the largest and of enterprise deals vs the truth (72 reps).

    The forecast over-predicts large deals by 30-45% on this company; the win model does
    not (held-out ratio to the oracle about 0.87): the excess is in the timing of wins.
    """
    from _probability_samples import HOLDOUT_DAYS, sample_sized

    from forecastkit.probability.calibration import holdout_predictions

    crm, truth = sample_sized("baseline", 0, 72)
    pred = holdout_predictions(crm, crm.as_of_date - pd.Timedelta(days=HOLDOUT_DAYS), oracle=truth.p_win)
    o = crm.opportunities.set_index("opportunity_id")
    amount = o["amount"].reindex(pred["opportunity_id"]).to_numpy(float)
    segment = o["segment"].reindex(pred["opportunity_id"]).to_numpy(dtype=object)
    top = amount >= np.quantile(amount, 0.8)
    for name, rows in (("top amount quintile", top), ("enterprise", segment == "enterprise")):
        ratio = (pred["p_model"] * amount)[rows].sum() / (pred["p_oracle"] * amount)[rows].sum()
        assert 0.75 <= ratio <= 1.25, f"{name}: model/oracle expected amount {ratio:.2f}"


def test_censored_rows_are_dropped_or_labelled_in_their_cell_proportions():
    from _probability_samples import sample

    crm, _ = sample("baseline", 0)
    snap = crm.as_of(crm.as_of_date - pd.Timedelta(days=400))
    dropped = training_rows(snap, features=["stage"], settle="60D")
    kept = training_rows(snap, features=["stage"], settle="60D", censored="estimate")
    n_open = dropped.attrs["unlabelled"]
    assert n_open > 0 and kept.attrs["estimated"] == n_open
    assert len(kept) == len(dropped) + n_open
    assert set(kept["won"].unique()) <= {0, 1}
    # the estimated rows get both labels (in the proportions of their stage x age cells)
    still_open = ~kept.set_index(["opportunity_id", "as_of"]).index.isin(
        dropped.set_index(["opportunity_id", "as_of"]).index
    )
    assert 0 < kept.loc[still_open, "won"].mean() < 1
    with pytest.raises(ParameterError, match="censored must be 'drop' or 'estimate'"):
        training_rows(snap, features=["stage"], censored="keep")


def test_training_sample_caps_deals_by_whole_owners_and_keeps_owner_features():
    from _probability_samples import sample

    from forecastkit.probability.features import MAX_TRAINING_DEALS, training_sample

    crm, _ = sample("baseline", 0)
    snap = crm.as_of(crm.as_of_date - pd.Timedelta(days=400))
    o = snap.opportunities
    assert len(o) < MAX_TRAINING_DEALS  # the sample companies are used whole by default
    names = ["stage", "owner_win_rate", "owner_open_deals", "days_in_stage"]
    whole = training_rows(snap, features=names)
    pd.testing.assert_frame_equal(whole, training_rows(snap, features=names, max_deals=None))
    cap = len(o) // 3
    ids = training_sample(snap, cap)
    assert 0 < len(ids) <= cap
    owners = set(o.loc[o["opportunity_id"].isin(ids), "owner"])
    assert set(o.loc[o["owner"].isin(owners), "opportunity_id"]) == set(ids)  # whole owners only
    assert list(ids) == list(training_sample(snap, cap))  # seeded: the same sample every time
    assert set(training_sample(snap, cap, seed=1)) != set(ids)
    part = training_rows(snap, features=names, max_deals=cap)
    until = as_of_dates(snap)[-1]  # deals are counted up to the last training date
    assert 0 < len(part) < len(whole) and set(part["opportunity_id"]) <= set(training_sample(snap, cap, until=until))
    # features of a sampled deal are those it has in the whole company (owner features included)
    key = ["opportunity_id", "as_of"]
    same = part.merge(whole, on=key, suffixes=("", "_whole"))
    assert len(same) == len(part)
    for n in ("owner_open_deals", "days_in_stage"):
        np.testing.assert_array_equal(same[n], same[f"{n}_whole"])
    # the owner's own record is whole; only the company rate it is shrunk toward comes from the sample
    np.testing.assert_allclose(same["owner_win_rate"], same["owner_win_rate_whole"], atol=0.02)
    assert (same["stage"] == same["stage_whole"]).all() and (same["won"] == same["won_whole"]).all()
    m = fk.WinModel(max_deals=cap).fit(snap)
    assert m.n_deals_ == part["opportunity_id"].nunique()
    for bad in (0, -5, 2.5, True, "many"):
        with pytest.raises(ParameterError, match="max_deals must be a positive whole number of deals or None"):
            training_rows(snap, features=names, max_deals=bad)
