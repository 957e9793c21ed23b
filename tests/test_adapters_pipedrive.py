"""Pipedrive deals exports (API fields and UI headers): round trip, deleted deals, rotting days as age caps."""

from __future__ import annotations

import pandas as pd
import pytest
from _adapters_writers import PD_STAGES, assert_same, sample_company, write_pipedrive

from forecastkit.adapters import pipedrive
from forecastkit.errors import DataQualityWarning, SchemaError
from forecastkit.playbook import Playbook

COLS = ["opportunity_id", "name", "owner", "amount", "currency", "stage", "status", "close_date", "created_at",
        "closed_at", "probability", "loss_reason", "next_step_date", "account_id"]  # fmt: skip


@pytest.fixture(scope="module")
def company():
    return sample_company(0)


@pytest.mark.parametrize("ui", [False, True], ids=["api", "ui"])
def test_round_trip(company, tmp_path, ui):
    crm = company.crm
    p = write_pipedrive(crm, tmp_path, ui=ui)
    with pytest.warns(DataQualityWarning, match="guessed stage_map"):
        back = pipedrive.load(p["deals"], None if ui else p["stages"], users=None if ui else p["users"],
                              playbook=company.playbook, as_of=crm.as_of_date)  # fmt: skip
    assert back.load_report.ok
    assert_same(crm.opportunities, back.opportunities, COLS, ["opportunity_id"])
    notes = back.load_report.notes
    assert (
        "deals.csv: Pipedrive deal exports carry no change history; stage timing is unknown (analyses that need "
        "history will say so); pass updates= (the deals' change log) to load it" in notes
    )
    if not ui:
        assert "deals.csv: 1 row(s) not loaded: deleted in Pipedrive (status = deleted) (rows 3)" in notes


def test_rotting_days_become_age_caps():
    pb = Playbook()
    stages = PD_STAGES.assign(rotten_days=[10, 21, None, 20, 14]).assign(
        rotten_days=lambda d: d["rotten_days"].where(d["rotten_flag"] == "true")
    )
    mapping = {"Lead In": "to_contact", "Contact Made": "qualification", "Needs Defined": "discovery",
               "Proposal Made": "proposal", "Negotiations Started": "negotiation"}  # fmt: skip
    out = pipedrive.playbook_with_rotting(pb, stages, mapping)
    assert [s.age_cap_days for s in out.stages] == [10, 21, 45, 20, 14]  # discovery does not rot: default cap kept
    both = pd.DataFrame({"name": ["A", "B"], "rotten_days": [30, 12]})
    out = pipedrive.playbook_with_rotting(pb, both, {"A": "proposal", "B": "proposal"})
    assert out.stage("proposal").age_cap_days == 12


def test_rotting_caps_reach_the_loaded_playbook(company, tmp_path):
    p = write_pipedrive(company.crm, tmp_path)
    with pytest.warns(DataQualityWarning):
        back = pipedrive.load(p["deals"], p["stages"])
    assert [s.age_cap_days for s in back.playbook.stages] == [10, 21, 45, 20, 14]


def _deals(tmp_path, rows):
    base = {"id": "1", "title": "A", "value": "100", "currency": "EUR", "status": "open", "stage_id": "Lead In",
            "pipeline_id": "1", "add_time": "2026-01-05 10:00:00", "expected_close_date": "2026-03-31", "user_id": "ann"}  # fmt: skip
    p = tmp_path / "deals.csv"
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(p, index=False)
    return p


def test_several_pipelines_must_be_chosen(tmp_path):
    p = _deals(tmp_path, [{}, {"id": "2", "pipeline_id": "2"}])
    with pytest.raises(
        SchemaError, match=r"deals\.csv: the export holds several pipelines \('1', '2'\); pass pipeline="
    ):
        pipedrive.load(p)
    crm = pipedrive.load(p, pipeline="2", stage_map={"Lead In": "to_contact"})
    assert crm.opportunities["opportunity_id"].tolist() == ["2"]
    assert "deals.csv: 1 row(s) not loaded: deals of other pipelines than '2' (rows 1)" in crm.load_report.notes


def test_won_deal_closes_on_its_won_time_and_unknown_stage_is_rejected(tmp_path):
    p = _deals(tmp_path, [
        {"status": "won", "stage_id": "Proposal Made", "won_time": "2026-02-10 15:00:00"},
        {"id": "2", "stage_id": "Mystery"},
    ])  # fmt: skip
    crm = pipedrive.load(p, stage_map={"Lead In": "to_contact", "Proposal Made": "proposal"})
    o = crm.opportunities.iloc[0]
    assert (o["stage"], o["status"], o["closed_at"], o["close_date"]) == (
        "won", "won", pd.Timestamp("2026-02-10"), pd.Timestamp("2026-02-10")
    )  # fmt: skip
    assert crm.load_report.rejected[["row", "column", "value"]].values.tolist() == [[2, "stage", "mystery"]]


def test_missing_columns_raise(tmp_path):
    p = tmp_path / "deals.csv"
    p.write_text("title\nA\n", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"deals\.csv: a Pipedrive deals export needs id, stage_id and status"):
        pipedrive.load(p)


def test_change_log_becomes_history(company, tmp_path):
    crm = company.crm
    p = write_pipedrive(crm, tmp_path)
    with pytest.warns(DataQualityWarning, match="guessed stage_map"):
        back = pipedrive.load(p["deals"], p["stages"], users=p["users"], updates=p["updates"],
                              playbook=company.playbook, as_of=crm.as_of_date)  # fmt: skip
    assert back.load_report.ok
    assert back.load_report.summary.set_index("table").loc["history", "rows_added"] == 0
    # Pipedrive logs stage, value, expected close date and status: rows changing only the forecast category vanish
    h = crm.history.sort_values(["opportunity_id", "changed_at"], kind="stable").reset_index(drop=True)
    prev = h.groupby("opportunity_id", sort=False).shift(1)
    logged = (
        prev["changed_at"].isna()
        | (h["stage"] != prev["stage"])
        | (h["amount"] != prev["amount"])
        | (h["close_date"] != prev["close_date"])
    )
    h, b = h[logged.to_numpy()], back.history
    assert len(b) == len(h) > 1000
    assert_same(h, b, ["opportunity_id", "changed_at", "stage", "amount"], ["opportunity_id", "changed_at"])
    is_open = ~h["stage"].isin(["won", "lost"])
    assert_same(h[is_open], b[~b["stage"].isin(["won", "lost"])], ["opportunity_id", "changed_at", "close_date"],
                ["opportunity_id", "changed_at"])  # fmt: skip
    notes = back.load_report.notes
    assert (
        "updates.csv: 1 change(s) of other fields not used (history follows stage_id, value, expected_close_date, status)"
        in notes
    )
    assert not any("carry no change history" in n for n in notes)


def test_change_log_needs_its_columns_and_known_deals(tmp_path):
    deals = _deals(tmp_path, [{"id": "1", "status": "open", "stage_id": "Lead In", "value": "100",
                               "add_time": "2026-01-05 10:00:00", "expected_close_date": "2026-03-31"}])  # fmt: skip
    bad = tmp_path / "updates.csv"
    pd.DataFrame({"item_id": ["1"], "new_value": ["2"]}).to_csv(bad, index=False)
    with pytest.raises(SchemaError, match=r"updates.csv: a Pipedrive deal updates export needs item_id \(or deal_id\)"):
        pipedrive.load(deals, stage_map={"Lead In": "to_contact"}, updates=bad)
    pd.DataFrame(
        {"deal_id": ["1", "9", "1"], "field_key": ["value", "value", "value"], "old_value": ["50", "1", "80"],
         "new_value": ["80", "2", "100"], "log_time": ["2026-01-06 09:00:00", "2026-01-06 09:00:00", "soon"]}
    ).to_csv(bad, index=False)  # fmt: skip
    crm = pipedrive.load(deals, stage_map={"Lead In": "to_contact"}, updates=bad, as_of="2026-02-01")
    notes = crm.load_report.notes
    assert "updates.csv: 1 row(s) not loaded: changes of deals missing from the deals export (rows 2)" in notes
    assert "updates.csv: 1 row(s) not loaded: log_time is not a date (rows 3)" in notes
    assert crm.history["amount"].tolist() == [
        50.0,
        80.0,
        100.0,
    ]  # 100: the deal's current value, added on the snapshot date
