"""loss_reasons(), win_loss_review() and the plots on the small hand-built CRM."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from winloss_fixtures import small_crm

from forecastkit.errors import ParameterError
from forecastkit.winloss.plot import plot_loss_reasons
from forecastkit.winloss.reasons import loss_reasons
from forecastkit.winloss.review import win_loss_review


def test_loss_reason_pareto_and_kinds():
    r = loss_reasons(small_crm())
    p = r.pareto.set_index("loss_reason")
    # lost: B "No decision" (5 000), C "price" (90 000), E no reason (3 000)
    assert set(p.index) == {"no_decision", "price", "(not given)"}
    assert p["lost_deals"].sum() == 3
    assert p.loc["price", "amount_share"] == pytest.approx(90000 / 98000)
    assert r.pareto["cumulative_share"].iloc[-1] == pytest.approx(1.0)
    assert r.pareto["vital_few"].tolist() == [True, True, True]  # 1/3, 2/3 < 0.8, the third crosses the line
    k = r.kinds.iloc[0]
    # B is a no-decision; E has no reason and no activity in its last 30 days -> abandoned; C is a plain loss
    assert (k["lost_deals"], k["no_decision"], k["abandoned"], k["lost"]) == (3, 1, 1, 1)
    d = r.deals.set_index("opportunity_id")
    assert d.loc["C", "stage"] == "discovery" and d.loc["B", "stage"] == "qualification"  # C jumped to discovery


def test_loss_reasons_by_stage_and_bad_by():
    r = loss_reasons(small_crm(), by="stage")
    got = r.kinds.set_index("stage")["lost_deals"]
    assert got[got > 0].to_dict() == {"to_contact": 1, "qualification": 1, "discovery": 1}
    assert list(got.index[got > 0]) == ["to_contact", "qualification", "discovery"]  # playbook order
    with pytest.raises(ParameterError, match="cannot group loss reasons on"):
        loss_reasons(small_crm(), by="colour")
    assert isinstance(plot_loss_reasons(r), go.Figure)


def test_review_sheet_rows():
    r = win_loss_review(small_crm(), deals=["A", "B"]).set_index("opportunity_id")
    a = r.loc["A"]
    assert a["timeline"] == "to_contact 10d > qualification 20d > discovery 20d > won"
    assert (a["days_qualification"], a["pushes"], a["activities"]) == (20.0, 1, 3)
    assert a["activity_mix"] == "call 2, meeting 1"
    assert a["reports"] == 1 and a["report_completeness"] == pytest.approx(3 / 5)
    assert a["missing_boxes"] == "proofs, risks"
    assert a["cycle_days"] == pytest.approx(50.0)
    assert r.loc["B", "last_stage"] == "qualification" and r.loc["B", "status"] == "lost"
    assert {"p_qualification", "p_discovery", "lost_from"} <= set(r.columns)


def test_review_rejects_open_or_unknown_deals():
    with pytest.raises(ParameterError, match="still open on 2026-06-30"):
        win_loss_review(small_crm(), deals=["D"])
    with pytest.raises(ParameterError, match="not in this CRM snapshot"):
        win_loss_review(small_crm(), deals=["ZZ"])
    assert len(win_loss_review(small_crm(), n=2)) == 2
