"""Acceptance: the hygiene checks find exactly the defects the sample generator planted (several seeds)."""

from __future__ import annotations

import pandas as pd
import pytest

import forecastkit as fk
from forecastkit.data.sample import generate

h = fk.hygiene
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module", params=[("baseline", s) for s in SEEDS] + [("wide_pipeline", 5)], ids=str)
def sample(request):
    scenario, seed = request.param
    return generate(scenario=scenario, seed=seed)


def _pr(found: pd.DataFrame, truth: pd.DataFrame) -> tuple[float, float]:
    f = set(map(tuple, found.astype(str).to_numpy()))
    t = set(map(tuple, truth.astype(str).to_numpy()))
    tp = len(f & t)
    return tp / max(len(f), 1), tp / max(len(t), 1)


pytestmark = pytest.mark.slow


def test_stale_deals_exact(sample):
    found = h.aging(sample.crm)[["opportunity_id"]]
    truth = sample.truth.stale_deals[["opportunity_id"]]
    assert len(truth) > 10
    assert _pr(found, truth) == (1.0, 1.0)


def test_missing_fields_exact(sample):
    found = h.missing_fields(sample.crm, by="field")[["opportunity_id", "field"]]
    truth = sample.truth.missing_fields[["opportunity_id", "field"]]
    assert len(truth) > 10
    assert _pr(found, truth) == (1.0, 1.0)


def test_next_steps_exact(sample):
    n = h.next_steps(sample.crm)
    undated = n.loc[n["problem"].isin(["missing", "undated"]), ["opportunity_id"]]
    overdue = n.loc[n["problem"] == "overdue", ["opportunity_id"]]
    assert _pr(undated, sample.truth.undated_next_steps[["opportunity_id"]]) == (1.0, 1.0)
    assert len(sample.truth.overdue_next_steps) > 10
    assert _pr(overdue, sample.truth.overdue_next_steps[["opportunity_id"]]) == (1.0, 1.0)


def _cadence_pairs(sample) -> tuple[pd.DataFrame, pd.DataFrame]:
    s = h.cadence(sample.crm).steps
    s = s.loc[s["status"] != "pending", ["opportunity_id", "cadence_step", "status"]]
    t = sample.truth.skipped_cadence_steps[["opportunity_id", "cadence_step", "outcome"]]
    return s, t


def test_cadence_recall_and_status_exact(sample):
    s, t = _cadence_pairs(sample)
    m = s.merge(t, on=["opportunity_id", "cadence_step"], how="right")
    assert m["status"].notna().all()  # recall 1.0: every due step found
    assert (m["status"] == m["outcome"]).all()  # same on time / late / missed verdict
    missed_found = s.loc[s["status"] == "missed", ["opportunity_id", "cadence_step"]]
    missed_truth = t.loc[t["outcome"] == "missed", ["opportunity_id", "cadence_step"]]
    assert _pr(missed_found, missed_truth)[1] == 1.0


def test_cadence_precision_exact(sample):
    s, t = _cadence_pairs(sample)
    assert _pr(s, t) == (1.0, 1.0)


def test_review_covers_every_planted_defect(sample):
    r = h.review(sample.crm)
    rows = set(zip(r["opportunity_id"].astype(str), r["problem"].astype(str), strict=True))
    tr = sample.truth
    stale = {p for p in r["problem"].unique() if p.startswith("stale_")}
    for oid in tr.stale_deals["opportunity_id"]:
        assert any((oid, p) in rows for p in stale)
    for oid in tr.overdue_next_steps["opportunity_id"]:
        assert (oid, "overdue_next_step") in rows
    v = r["value_at_risk"].dropna().tolist()
    assert v == sorted(v, reverse=True)
