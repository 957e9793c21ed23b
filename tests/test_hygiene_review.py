"""Unit tests of the review action list, the scorecard and the Kanban view (hand-built CRM)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest
from hygiene_fixtures import make_crm

import forecastkit as fk
from forecastkit.errors import ParameterError
from forecastkit.playbook import Playbook

h = fk.hygiene


@pytest.fixture(scope="module")
def crm():
    return make_crm()


def test_review_rows_and_order(crm):
    r = h.review(crm)
    assert list(r.columns) == [
        "owner",
        "team",
        "opportunity_id",
        "account_id",
        "name",
        "stage",
        "amount",
        "probability",
        "value_at_risk",
        "problem",
        "severity",
        "detail",
        "action",
    ]
    # sorted by value at risk, then red before orange
    v = r["value_at_risk"].tolist()
    assert v == sorted(v, reverse=True)
    d2 = r[r["opportunity_id"] == "D2"]
    # D2: 20000 x 0.5 = 10000 at risk; red (abandon) before orange (undated, visit report)
    assert d2["value_at_risk"].unique().tolist() == [10000.0]
    assert d2["problem"].tolist() == ["stale_abandon", "undated_next_step", "visit_report"]
    d1 = r[r["opportunity_id"] == "D1"].set_index("problem")
    assert d1.loc["overdue_next_step", "detail"] == "'demo' was due 2026-06-20 (10 days overdue)"
    assert d1.loc["stale_follow_up", "detail"] == "60 days in discovery (cap 45)"
    assert d1.loc["missing_fields", "detail"] == "missing: budget"  # next_step_date is left to next_steps
    assert d1.loc["visit_report", "detail"] == "1 visit(s) without report"
    # account row: A2's contacts; value at risk of A2's open deals = D3 200 + D4 22500 + L2 200
    a2 = r[(r["problem"] == "contact_data") & (r["account_id"] == "A2")].iloc[0]
    assert a2["value_at_risk"] == pytest.approx(4000 * 0.05 + 30000 * 0.75 + 2000 * 0.10)
    assert a2["owner"] == "bob" and a2["detail"] == "1 invalid e-mail/phone; 1 duplicate(s)"


def test_review_cadence_rows_only_for_leads_in_outreach(crm):
    r = h.review(crm, checks=["cadence"])
    # L2 left outreach (qualification): its missed D2 is history, not an action
    assert r["opportunity_id"].tolist() == ["D3", "L1"]
    assert (
        r.set_index("opportunity_id").loc["L1", "detail"] == "missed: d2_social, d5_reminder, d9_case_study, d14_call"
    )


def test_review_filters_and_checks(crm):
    bob = h.review(crm, "bob")
    assert set(bob["owner"]) == {"bob"}
    assert set(h.review(crm, team="north")["owner"]) == {"ann"}
    only = h.review(crm, checks=["aging"])
    assert set(only["problem"]) == {"stale_abandon", "stale_follow_up", "stale_requalify"}
    with pytest.raises(ParameterError, match="unknown check"):
        h.review(crm, checks=["vibes"])


def test_review_without_optional_tables():
    r = h.review(make_crm(activities=False, contacts=False))
    assert not set(r["problem"]) & {"cadence_missed", "visit_report", "contact_data"}
    assert {"stale_abandon", "overdue_next_step"} <= set(r["problem"])


def test_review_as_of_is_what_the_rep_saw(crm):
    # on 2026-06-10: D1 had been 40 days in discovery (cap 45: fine) and its next step was due 06-05
    past = crm.as_of("2026-06-10")
    r = h.review(past, checks=["aging", "next_steps"])
    d1 = r[r["opportunity_id"] == "D1"]
    assert d1["problem"].tolist() == ["overdue_next_step"]
    assert d1["detail"].iloc[0] == "'demo' was due 2026-06-05 (5 days overdue)"
    # D3 did not exist yet
    assert "D3" not in set(r["opportunity_id"])
    # rewinding the full snapshot gives the same list as a snapshot taken on that day
    again = h.review(make_crm().as_of("2026-06-10"), checks=["aging", "next_steps"])
    assert r.equals(again)


def test_deal_probability_is_the_playbook_stage_probability():
    from forecastkit.hygiene.review import _deal_probability

    pb = Playbook.from_dict({"stages": [{"name": "discovery", "crm_probability": 0.4}]})
    c = make_crm(pb)
    p = _deal_probability(c)
    assert p[c.open_deals["opportunity_id"].eq("D1").to_numpy()].tolist() == [0.4]
    r = h.review(c, checks=["aging"]).set_index("opportunity_id")
    assert r.loc["D1", "value_at_risk"] == pytest.approx(10000 * 0.4)


def test_scorecard(crm):
    sc = h.scorecard(crm)
    assert list(sc.columns) == ["owner", "team", "kpi", "label", "value", "light"]
    ann = sc[sc["owner"] == "ann"].set_index("kpi")
    assert len(ann) == 7
    assert ann.loc["open_deals", "value"] == 3
    # ann: D1 overdue, D2 undated -> 1 of 3 deals with a good next step
    assert ann.loc["next_step_coverage", "value"] == pytest.approx(1 / 3)
    assert ann.loc["next_step_coverage", "light"] == "red"
    # D1 and D2 aging -> 1 of 3 within the cap
    assert ann.loc["within_age_cap", "value"] == pytest.approx(1 / 3)
    # D1 misses budget, D2 misses next_step_date, D4 complete
    assert ann.loc["mandatory_fields_complete", "value"] == pytest.approx(1 / 3)
    assert ann.loc["wip_load", "value"] == pytest.approx(3 / 25) and ann.loc["wip_load", "light"] == "green"
    assert ann.loc["data_completeness", "value"] == pytest.approx(0.8)
    assert ann.loc["data_completeness", "light"] == "orange"  # playbook: green 0.90, orange 0.75
    bob = sc[sc["owner"] == "bob"].set_index("kpi")
    assert bob.loc["cadence_compliance", "value"] == pytest.approx(0.25)
    assert bob.loc["cadence_compliance", "light"] == "red"


def test_scorecard_lights_come_from_the_playbook():
    pb = Playbook.from_dict(
        {
            "traffic_lights": {
                "data_completeness": {"green": 0.8, "orange": 0.5},
                "wip_load": {"green": 0.1, "orange": 0.11, "higher_is_better": False},
            }
        }
    )
    sc = h.scorecard(make_crm(pb), "ann").set_index("kpi")
    assert sc.loc["data_completeness", "light"] == "green"
    assert sc.loc["wip_load", "light"] == "red"  # 0.12 > 0.11


def test_kanban_cards_and_flags(crm):
    k = h.kanban(crm).set_index("opportunity_id")
    assert k.loc["D2", "flag"] == "red"  # abandon
    assert k.loc["D1", "flag"] == "red"  # overdue next step
    assert k.loc["D4", "flag"] == "orange"  # report missing a box
    assert k.loc["D6", "flag"] == "green"
    assert k.loc["D3", "issues"] == "no_next_step; cadence_missed"
    assert list(h.kanban(crm)["stage_order"]) == sorted(h.kanban(crm)["stage_order"])


def test_kanban_html_escapes_crm_text(crm):
    k = h.kanban(crm)
    out = h.kanban_html(k)
    assert "Acme &lt;b&gt;extension&lt;/b&gt;" in out
    assert "<b>extension</b>" not in out
    fig = h.plot_kanban(k, max_cards=2)
    assert isinstance(fig, go.Figure)
    cells = [c for col in fig.data[0].cells.values for c in col]
    assert any("Acme &lt;b&gt;extension&lt;/b&gt;" in c for c in cells)
    assert max(len(col) for col in fig.data[0].cells.values) == 2
    assert "+ 1 more" in h.kanban_html(k, max_cards=1)


def test_plot_scorecard(crm):
    fig = h.plot_scorecard(h.scorecard(crm))
    assert isinstance(fig, go.Figure)
    assert list(fig.data[0].cells.values[0]) == ["ann", "bob"]


@pytest.mark.slow
def test_pipeline_review_notebook_runs(tmp_path):
    import nbformat
    import papermill as pm

    from forecastkit.data.sample import generate

    crm = generate(seed=0).crm
    crm.save(tmp_path / "sample")
    owner = str(crm.open_deals["owner"].mode().iloc[0])
    out = tmp_path / "out.ipynb"
    nb_path = Path(__file__).resolve().parents[1] / "notebooks" / "pipeline_review.ipynb"
    pm.execute_notebook(
        str(nb_path),
        str(out),
        parameters={"data": str(tmp_path / "sample"), "owner": owner},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(tmp_path),
    )
    nb = nbformat.read(out, as_version=4)
    count = next(c for c in nb.cells if "NBVAL_CHECK_OUTPUT" in c.source)
    assert int(count.outputs[0]["data"]["text/plain"]) > 0
    # the committed notebook is thin and has its outputs cleared
    src = nbformat.read(nb_path, as_version=4)
    assert all(not c.get("outputs") for c in src.cells if c.cell_type == "code")
    assert all(len(c.source.splitlines()) < 15 for c in src.cells if c.cell_type == "code")
