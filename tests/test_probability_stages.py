"""Stage probabilities: counting rule, shrinkage, intervals, fallback, age bands; coverage on the sample company."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.errors import FallbackWarning, InsufficientDataError, ParameterError
from forecastkit.probability.stages import _fit_strength

AS_OF = "2026-06-30"
COLUMNS = [
    "stage",
    "reached",
    "won",
    "lost",
    "open",
    "p_win",
    "ci_lower",
    "ci_upper",
    "crm_probability",
    "gap",
]


def _crm(deals: list[tuple], as_of: str = AS_OF) -> CRM:
    """deals: (id, owner, team, [(date, stage), ...]); the last history row gives the current stage."""
    opps, hist = [], []
    for oid, owner, team, path in deals:
        stage = path[-1][1]
        status = stage if stage in ("won", "lost") else "open"
        closed = path[-1][0] if status != "open" else None
        opps.append(
            {
                "opportunity_id": oid,
                "owner": owner,
                "team": team,
                "created_at": path[0][0],
                "close_date": closed or "2026-12-31",
                "amount": "1000",
                "stage": stage,
                "status": status,
                "closed_at": closed,
            }
        )
        hist += [
            {"opportunity_id": oid, "changed_at": d, "stage": s, "amount": "1000", "close_date": "2026-12-31"}
            for d, s in path
        ]
    return CRM.from_tables({"opportunities": pd.DataFrame(opps), "history": pd.DataFrame(hist)}, as_of=as_of)


FIVE = [
    ("D1", "alice", "north", [("2026-01-01", "qualification"), ("2026-02-01", "discovery"), ("2026-03-01", "won")]),
    ("D2", "alice", "north", [("2026-01-05", "qualification"), ("2026-02-05", "lost")]),
    (
        "D3",
        "bob",
        "south",
        [
            ("2026-01-10", "to_contact"),
            ("2026-01-20", "qualification"),
            ("2026-02-10", "discovery"),
            ("2026-03-10", "lost"),
        ],
    ),
    ("D4", "bob", "south", [("2026-03-01", "discovery")]),
    ("D5", "bob", "south", [("2026-01-15", "qualification"), ("2026-02-15", "proposal"), ("2026-04-01", "won")]),
]


def test_counting_rule_every_stage_reached_and_open_not_lost():
    t = fk.stage_probabilities(_crm(FIVE), min_closed=1).set_index("stage")
    counts = t[["reached", "won", "lost", "open"]]
    assert counts.loc["to_contact"].tolist() == [1, 0, 1, 0]  # D3
    assert counts.loc["qualification"].tolist() == [4, 2, 2, 0]  # D1, D5 won; D2, D3 lost
    assert counts.loc["discovery"].tolist() == [4, 2, 1, 1]  # D5 passed discovery (jump); D4 open
    assert counts.loc["proposal"].tolist() == [2, 2, 0, 0]  # a won deal passed every stage
    assert counts.loc["negotiation"].tolist() == [2, 2, 0, 0]


def _counts_from_timeline(crm: CRM, by: list[str]) -> pd.DataFrame:
    """The counts by the shared (slower) timeline functions: what stage_probabilities must equal."""
    from forecastkit.data.timeline import stages_reached

    long = stages_reached(crm)
    groups = crm.opportunities.set_index("opportunity_id")[by].astype("string").fillna("(missing)")
    long = long.join(groups, on="opportunity_id")
    st = long["status"].astype(object)
    long = long.assign(won=st.eq("won").astype(int), lost=st.eq("lost").astype(int), open=st.eq("open").astype(int))
    g = long.groupby(["stage", *by])[["won", "lost", "open"]].sum()
    return g.assign(reached=g.sum(axis=1))[["reached", "won", "lost", "open"]].sort_index()


@pytest.mark.parametrize("by", [[], ["owner"], ["team", "owner"]])
def test_counts_equal_the_timeline_rule_on_awkward_histories(by):
    deals = [
        *FIVE,
        ("D6", None, "north", [("2026-01-03", "discovery"), ("2026-02-03", "lost")]),
        ("D7", "carol", None, [("2026-02-01", "lost")]),  # lost at once: reached no open stage
        ("D8", "carol", "south", [("2026-01-02", "negotiation"), ("2026-03-02", "won")]),
    ]
    crm = _crm(deals)
    o, h = crm.opportunities.copy(), crm.history.copy()
    no_history = o.iloc[[0]].assign(opportunity_id="D9", stage="proposal", status="open", closed_at=pd.NaT)
    o = pd.concat([o, no_history], ignore_index=True)
    h = h.sample(frac=1.0, random_state=1).reset_index(drop=True)  # unsorted history
    h.loc[h["opportunity_id"] == "D6", "stage"] = pd.NA  # unknown stage rows are ignored
    h = pd.concat(
        [h, pd.DataFrame({"opportunity_id": ["D1"], "changed_at": [pd.Timestamp("2025-12-01")], "stage": ["mystery"]})],
        ignore_index=True,
    )
    odd = CRM({"opportunities": o, "history": h}, as_of_date=crm.as_of_date, playbook=crm.playbook)
    got = fk.stage_probabilities(odd, lookback=None, by=by or None, min_closed=1)
    got = got.set_index(["stage", *by])[["reached", "won", "lost", "open"]].sort_index()
    want = _counts_from_timeline(odd, by)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_index_type=False)


def test_counts_equal_the_timeline_rule_on_the_sample_company():
    from _probability_samples import sample

    crm, _ = sample("baseline", 0)
    got = fk.stage_probabilities(crm, lookback=None, by="segment")
    got = got.set_index(["stage", "segment"])[["reached", "won", "lost", "open"]].sort_index()
    pd.testing.assert_frame_equal(
        got, _counts_from_timeline(crm, ["segment"]), check_dtype=False, check_index_type=False
    )


def test_jeffreys_posterior_and_interval_by_hand():
    t = fk.stage_probabilities(_crm(FIVE), min_closed=1, level=0.9).set_index("stage")
    # discovery: 2 won, 1 lost -> Beta(2.5, 1.5)
    assert t.loc["discovery", "p_win"] == pytest.approx(2.5 / 4)
    assert t.loc["discovery", "ci_lower"] == pytest.approx(stats.beta.ppf(0.05, 2.5, 1.5))
    assert t.loc["discovery", "ci_upper"] == pytest.approx(stats.beta.ppf(0.95, 2.5, 1.5))
    assert t.loc["discovery", "crm_probability"] == 0.25
    assert t.loc["discovery", "gap"] == pytest.approx(0.25 - 0.625)
    assert t.loc["qualification", "p_win"] == pytest.approx(0.5)


def test_columns_are_stable_and_in_pipeline_order():
    t = fk.stage_probabilities(_crm(FIVE), min_closed=1)
    assert list(t.columns) == COLUMNS
    assert t["stage"].tolist() == ["to_contact", "qualification", "discovery", "proposal", "negotiation"]
    g = fk.stage_probabilities(_crm(FIVE), by=["team", "owner"], min_closed=1)
    assert list(g.columns) == ["stage", "team", "owner", *COLUMNS[1:]]
    assert not g.isna().any().any()


def test_lookback_excludes_deals_closed_before_the_window():
    deals = [*FIVE, ("OLD", "alice", "north", [("2023-01-01", "qualification"), ("2023-02-01", "won")])]
    crm = _crm(deals)
    with_old = fk.stage_probabilities(crm, lookback=None, min_closed=1).set_index("stage")
    recent = fk.stage_probabilities(crm, lookback="365D", min_closed=1).set_index("stage")
    assert with_old.loc["qualification", "won"] == 3
    assert recent.loc["qualification", "won"] == 2


def test_too_few_closed_deals_warns_and_falls_back_to_crm_defaults():
    crm = _crm(FIVE)  # 4 closed deals < 30
    with pytest.warns(FallbackWarning, match=r"only 4 closed deal\(s\).*fewer than 30.*CRM probability"):
        t = fk.stage_probabilities(crm).set_index("stage")
    # prior worth 10 deals at the CRM probability: qualification (2 + 10 * 0.10) / (4 + 10)
    assert t.loc["qualification", "p_win"] == pytest.approx(3 / 14)
    assert t.loc["to_contact", "p_win"] == pytest.approx((0 + 0.5) / (1 + 10))
    with pytest.raises(InsufficientDataError, match=r"only 4 closed deal\(s\).*widen `lookback`"):
        fk.stage_probabilities(crm, on_insufficient="raise")


def test_no_closed_deal_at_all_gives_crm_defaults_never_nan():
    crm = _crm([("D4", "bob", "south", [("2026-03-01", "discovery")])])
    with pytest.warns(FallbackWarning, match="only 0 closed"):
        t = fk.stage_probabilities(crm, by="owner")
    assert not t[["p_win", "ci_lower", "ci_upper", "gap"]].isna().any().any()
    assert t.set_index("stage").loc["discovery", "p_win"] == pytest.approx(0.25)


def _two_groups(won_a: int, n_a: int, won_b: int, n_b: int) -> CRM:
    deals = []
    for grp, won, n in (("a", won_a, n_a), ("b", won_b, n_b)):
        for i in range(n):
            end = "won" if i < won else "lost"
            deals.append((f"{grp}{i}", grp, "t", [("2026-01-01", "negotiation"), ("2026-02-01", end)]))
    return _crm(deals)


def test_few_groups_keep_their_own_rates_with_the_minimum_prior():
    # two groups: the spread cannot be estimated -> s = 2 pseudo-deals at the parent
    t = fk.stage_probabilities(_two_groups(0, 20, 20, 20), by="owner").set_index(["stage", "owner"])
    parent = (20 + 0.5) / (40 + 1)
    assert t.loc[("negotiation", "a"), "p_win"] == pytest.approx((2 * parent + 0) / (2 + 20))
    assert t.loc[("negotiation", "b"), "p_win"] == pytest.approx((2 * parent + 20) / (2 + 20))


def test_a_rep_with_four_lost_deals_is_shrunk_not_zero():
    deals = []
    for r in range(8):  # eight reps at 40% on 20 deals each
        for i in range(20):
            end = "won" if i < 8 else "lost"
            deals.append((f"r{r}-{i}", f"rep{r}", "t", [("2026-01-01", "proposal"), ("2026-02-01", end)]))
    deals += [(f"new-{i}", "newbie", "t", [("2026-01-01", "proposal"), ("2026-02-01", "lost")]) for i in range(4)]
    t = fk.stage_probabilities(_crm(deals), by="owner").set_index(["stage", "owner"])
    newbie = t.loc[("proposal", "newbie")]
    assert newbie["won"] == 0 and newbie["lost"] == 4
    assert 0.2 < newbie["p_win"] < 0.4  # pulled most of the way to the 40% team rate
    assert newbie["ci_lower"] > 0
    assert t.attrs["prior_strength"]["owner"]["proposal"] > 2


def test_fit_strength_is_large_for_identical_groups_and_minimal_for_opposite_ones():
    won = np.full(6, 10.0)
    s_same = _fit_strength(won, won, np.full(6, 0.5))
    s_diff = _fit_strength(np.array([0.0, 20.0] * 3), np.array([20.0, 0.0] * 3), np.full(6, 0.5))
    assert s_same > 10
    assert s_diff == 2.0
    # fewer than five groups with closed deals: the spread cannot be estimated -> minimal prior
    assert _fit_strength(won[:4], won[:4], np.full(4, 0.5)) == 2.0


def test_parameter_errors_name_the_fix():
    crm = _crm(FIVE)
    with pytest.raises(ParameterError, match=r"cannot group by \['region'\].*segment, owner"):
        fk.stage_probabilities(crm, by="region")
    with pytest.raises(ParameterError, match="level must be between 0 and 1"):
        fk.stage_probabilities(crm, level=90)
    with pytest.raises(ParameterError, match="lookback='two years' is not a duration"):
        fk.stage_probabilities(crm, lookback="two years")
    with pytest.raises(ParameterError, match="on_insufficient must be 'warn' or 'raise'"):
        fk.stage_probabilities(crm, on_insufficient="ignore")
    with pytest.raises(ParameterError, match="bands must be increasing lower edges"):
        fk.stage_age_probabilities(crm, bands=[10, 5])


def test_input_is_not_mutated():
    crm = _crm(FIVE)
    before = crm.opportunities.copy(), crm.history.copy()
    fk.stage_probabilities(crm, by="owner", min_closed=1)
    fk.stage_age_probabilities(crm, min_closed=1)
    pd.testing.assert_frame_equal(crm.opportunities, before[0])
    pd.testing.assert_frame_equal(crm.history, before[1])


def test_age_bands_count_a_deal_in_every_band_its_spell_reached():
    deals = [
        ("A", "x", "t", [("2026-01-01", "discovery"), ("2026-01-06", "proposal"), ("2026-02-01", "won")]),  # 5 days
        ("B", "x", "t", [("2026-01-01", "discovery"), ("2026-02-10", "lost")]),  # 40 days
        ("C", "x", "t", [("2026-01-01", "discovery"), ("2026-02-20", "lost")]),  # 50 days
        ("D", "x", "t", [("2026-06-10", "discovery")]),  # open, 20 days
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        t = fk.stage_age_probabilities(_crm(deals), bands=[0, 30], min_closed=1)
    d = t[t["stage"] == "discovery"].set_index("age_band")
    assert list(t.columns) == ["stage", "age_band", "age_from", "age_to", *COLUMNS[1:]]
    assert d.loc["0-30d", ["reached", "won", "lost", "open"]].tolist() == [4, 1, 2, 1]
    assert d.loc["30d+", ["reached", "won", "lost", "open"]].tolist() == [2, 0, 2, 0]
    assert d.loc["30d+", "age_from"] == 30 and np.isinf(d.loc["30d+", "age_to"])
    assert d.loc["30d+", "p_win"] < d.loc["0-30d", "p_win"]
    # default bands: 0, 0.5, 1, 2, 3 x the stage's age cap (discovery: 45 days)
    t2 = fk.stage_age_probabilities(_crm(deals), min_closed=1)
    assert t2.loc[t2["stage"] == "discovery", "age_from"].tolist() == [0, 22.5, 45, 90, 135]


# ------------------------------------------------------------------ acceptance on the sample company
@pytest.mark.slow
def test_interval_coverage_of_true_stage_segment_probabilities_across_five_seeds():
    from _probability_samples import sample

    hits, cells = 0, 0
    for seed in range(5):
        crm, truth = sample("baseline", seed)
        # the generator's truth is stationary: use the whole history (3.4 years); with the default
        # 730-day window coverage is 65/75 on these seeds (see benchmarks/bench_probability.py accuracy)
        t = fk.stage_probabilities(crm, lookback=None, by="segment", level=0.90)
        true = truth.stage_win_probability
        m = t.merge(true[true["segment"] != "all"], on=["stage", "segment"], suffixes=("", "_true"))
        assert len(m) == 15
        hits += int(((m["ci_lower"] <= m["p_win_true"]) & (m["p_win_true"] <= m["ci_upper"])).sum())
        cells += len(m)
    assert hits / cells >= 0.85, f"coverage {hits}/{cells}"


@pytest.mark.parametrize("col", ["team", "owner"])
@pytest.mark.parametrize("year_ago", [False, True])
def test_stage_probabilities_of_many_scopes_at_once_equal_each_scope_alone(col, year_ago):
    """One pass for every scope (the diagnosis's teams or reps): each scope's table is exactly
    ``stage_probabilities`` of its own snapshot, shrunk toward its own prior (CRM defaults when
    it has too few closed deals); deals in no scope are left out."""
    from _probability_samples import sample

    from forecastkit.probability.stages import _stage_probabilities_by_scope

    crm, _ = sample("baseline", 0)
    if year_ago:
        crm = crm.as_of(crm.as_of_date - pd.Timedelta(days=365))
    split = crm.split_by(col)
    keys = list(split)
    scope = np.full(len(crm.opportunities), -1)
    for g, key in enumerate(keys[:-1]):  # the last scope's deals belong to none
        scope[split.positions(key)] = g
    fell_back = []
    for lookback in ("7D", "365D", None):
        tables = _stage_probabilities_by_scope(crm, scope, len(keys) - 1, lookback)
        assert len(tables) == len(keys) - 1
        for g, key in enumerate(keys[:-1]):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FallbackWarning)
                alone = fk.stage_probabilities(split[key], lookback=lookback)
            pd.testing.assert_frame_equal(tables[g], alone, check_exact=True)
            assert tables[g].attrs == alone.attrs
            fell_back.append(any(issubclass(w.category, FallbackWarning) for w in caught))
    assert any(fell_back) and not all(fell_back)  # both priors: the scope's own history and the CRM defaults
