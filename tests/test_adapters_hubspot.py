"""HubSpot deals exports (API properties and UI labels): round trip, pipelines, history rebuild."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from _adapters_writers import assert_same, last_entries, sample_company, write_hubspot

from forecastkit.adapters import hubspot
from forecastkit.errors import DataQualityWarning, SchemaError

COLS = ["opportunity_id", "name", "owner", "amount", "currency", "stage", "status", "close_date", "created_at",
        "closed_at", "forecast_category", "probability", "loss_reason", "next_step"]  # fmt: skip


@pytest.fixture(scope="module")
def company():
    return sample_company(0)


@pytest.mark.parametrize("ui", [False, True], ids=["api", "ui"])
def test_round_trip(company, tmp_path, ui):
    crm = company.crm
    p = write_hubspot(crm, tmp_path, ui=ui)
    with pytest.warns(DataQualityWarning, match="guessed stage_map"):
        back = hubspot.load(
            p["deals"], owners=None if ui else p["owners"], playbook=company.playbook, as_of=crm.as_of_date
        )
    assert back.load_report.ok
    assert_same(crm.opportunities, back.opportunities, COLS, ["opportunity_id"])
    # history: the last entry into each stage, as HubSpot keeps it (v2 timestamps win over stale v1 ones)
    keys = ["opportunity_id", "stage", "entered_at"]
    assert_same(last_entries(crm), last_entries(back), keys, keys[:2])
    assert any("history rebuilt from 7 date-entered column(s)" in n for n in back.load_report.notes)


def test_stage_counts_match_where_no_stage_was_entered_twice(company, tmp_path):
    crm = company.crm
    p = write_hubspot(crm, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        back = hubspot.load(p["deals"], playbook=company.playbook, as_of=crm.as_of_date)
    assert crm.opportunities["stage"].value_counts().to_dict() == back.opportunities["stage"].value_counts().to_dict()
    assert back.opportunities["amount"].sum() == pytest.approx(crm.opportunities["amount"].sum())


def _deals(tmp_path, rows):
    base = {"hs_object_id": "1", "dealname": "A", "dealstage": "appointmentscheduled", "pipeline": "default",
            "amount": "100", "closedate": "2026-03-31T00:00:00Z", "createdate": "2026-01-05T10:00:00Z",
            "hubspot_owner_id": "7", "hs_is_closed": "false", "hs_is_closed_won": "false"}  # fmt: skip
    p = tmp_path / "deals.csv"
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(p, index=False)
    return p


def test_several_pipelines_must_be_chosen(tmp_path):
    p = _deals(tmp_path, [{}, {"hs_object_id": "2", "pipeline": "renewals", "dealstage": "1234"}])
    with pytest.raises(
        SchemaError,
        match=r"deals\.csv: the export holds several pipelines: 'default' \(1 deals\), 'renewals' \(1 deals\)\. Pass pipeline=",
    ):
        hubspot.load(p)
    crm = hubspot.load(p, pipeline="default", stage_map={"appointmentscheduled": "to_contact"})
    assert crm.opportunities["opportunity_id"].tolist() == ["1"]
    assert "deals.csv: 1 row(s) not loaded: deals of other pipelines than 'default' (rows 2)" in crm.load_report.notes
    crm = hubspot.load(p, pipeline="all", stage_map={"appointmentscheduled": "to_contact", "1234": "qualification"})
    assert crm.opportunities.set_index("opportunity_id")["product"].to_dict() == {"1": "default", "2": "renewals"}
    with pytest.raises(SchemaError, match=r"no deal in pipeline 'nope'; pipelines found: 'default', 'renewals'"):
        hubspot.load(p, pipeline="nope")


def test_unknown_stage_rejected_and_no_history_noted(tmp_path):
    p = _deals(tmp_path, [{}, {"hs_object_id": "2", "dealstage": "998877"}])
    crm = hubspot.load(p, stage_map={"appointmentscheduled": "to_contact"})
    assert crm.load_report.rejected[["row", "column", "value"]].values.tolist() == [[2, "stage", "998877"]]
    assert any("no history table" in n for n in crm.load_report.notes)


def test_forecast_categories_and_epoch_dates(tmp_path):
    p = _deals(tmp_path, [{"hs_manual_forecast_category": "BEST_CASE", "createdate": "1767607200000"}])
    crm = hubspot.load(p, stage_map={"appointmentscheduled": "to_contact"})
    o = crm.opportunities.iloc[0]
    assert o["forecast_category"] == "best_case"
    assert o["created_at"] == pd.Timestamp("2026-01-05 10:00")


def test_missing_columns_raise(tmp_path):
    p = tmp_path / "deals.csv"
    p.write_text("dealname\nA\n", encoding="utf-8")
    with pytest.raises(
        SchemaError,
        match=r"deals\.csv: a HubSpot deals export needs the deal id \(hs_object_id / Record ID\) and stage",
    ):
        hubspot.load(p)
