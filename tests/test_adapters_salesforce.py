"""Salesforce API and report exports: round trip of the sample company, and every malformed input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adapters_writers import (
    HISTORY_COLUMNS,
    SF_API_COLUMNS,
    assert_same,
    sample_company,
    write_salesforce_api,
    write_salesforce_report,
)

from forecastkit.adapters import salesforce
from forecastkit.errors import DataError, DataQualityWarning, SchemaError
from forecastkit.probability.stages import stage_probabilities

SF_MAP = {
    "Prospecting": "to_contact", "Qualification": "qualification", "Needs Analysis": "discovery",
    "Proposal/Price Quote": "proposal", "Negotiation/Review": "negotiation", "Closed Won": "won", "Closed Lost": "lost",
}  # fmt: skip


@pytest.fixture(scope="module")
def company():
    return sample_company(0)


@pytest.fixture(scope="module")
def api_files(company, tmp_path_factory):
    return write_salesforce_api(company.crm, tmp_path_factory.mktemp("sfapi"))


@pytest.fixture(scope="module")
def api_crm(company, api_files):
    p = api_files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataQualityWarning)
        return salesforce.load(p["Opportunity"], p["OpportunityHistory"], p["OpportunityFieldHistory"], p["Account"],
                               p["User"], playbook=company.playbook, as_of=company.crm.as_of_date)  # fmt: skip


def _opp_csv(tmp_path: Path, rows: list[dict], name: str = "Opportunity.csv") -> Path:
    base = {"Id": "006A", "IsDeleted": "false", "Name": "Deal", "AccountId": "001A", "OwnerId": "005A",
            "StageName": "Prospecting", "Amount": "1000", "Probability": "10", "CloseDate": "2026-03-31",
            "IsClosed": "false", "IsWon": "false", "ForecastCategoryName": "Pipeline",
            "CreatedDate": "2026-01-05T10:00:00.000+0000", "CurrencyIsoCode": "EUR"}  # fmt: skip
    p = tmp_path / name
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(p, index=False)
    return p


# ----------------------------------------------------------------------------- API round trip
def test_api_round_trip_keeps_every_deal_column(company, api_crm):
    assert api_crm.load_report.ok
    assert len(api_crm.opportunities) == len(company.crm.opportunities)
    for col in SF_API_COLUMNS[1:]:
        assert_same(company.crm.opportunities, api_crm.opportunities, ["opportunity_id", col], ["opportunity_id"])


def test_api_round_trip_history_field_history_accounts_reps(company, api_crm):
    crm = company.crm
    assert_same(crm.history, api_crm.history, HISTORY_COLUMNS, ["opportunity_id", "changed_at"])
    fh = ["opportunity_id", "changed_at", "field", "old_value", "new_value"]
    assert_same(crm.field_history, api_crm.field_history, fh, ["opportunity_id", "changed_at", "field"])
    acc = ["account_id", "name", "industry", "segment", "created_at", "phone", "website"]
    assert_same(crm.accounts, api_crm.accounts, acc, ["account_id"])
    reps = api_crm.reps[api_crm.reps["owner"].isin(crm.reps["owner"])]  # managers are users too
    assert_same(crm.reps, reps, ["owner", "team", "business_unit", "manager"], ["owner"])


def test_api_round_trip_rewinds_and_recalibrates_the_same(company, api_crm):
    for d in ("2024-06-30", "2025-12-31"):
        assert_same(
            company.crm.as_of(d).opportunities, api_crm.as_of(d).opportunities, SF_API_COLUMNS, ["opportunity_id"]
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = stage_probabilities(company.crm)
        b = stage_probabilities(api_crm)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


def test_api_deleted_rows_are_noted_with_their_file_rows(api_crm):
    notes = api_crm.load_report.notes
    assert "Opportunity.csv: 2 row(s) not loaded: deleted in Salesforce (IsDeleted = true) (rows 4, 5)" in notes
    assert "OpportunityHistory.csv: 2 row(s) not loaded: deleted in Salesforce (IsDeleted = true) (rows 6, 7)" in notes
    assert any(
        "OpportunityFieldHistory.csv: 1 row(s) not loaded: field(s) with no canonical column: created" in n
        for n in notes
    )


def test_api_guessed_stage_map_is_shown_to_confirm(company, api_files):
    with pytest.warns(
        DataQualityWarning,
        match=r"Opportunity\.csv: no stage_map given; guessed stage_map=\{.*'Needs Analysis': 'discovery'.*Check it and pass stage_map=",
    ):
        salesforce.load(api_files["Opportunity"], playbook=company.playbook)


def test_api_guess_uses_probabilities_for_custom_stages(tmp_path):
    p = _opp_csv(tmp_path, [
        {"Id": "1", "StageName": "Scoping", "Probability": "24"},
        {"Id": "2", "StageName": "Commercials", "Probability": "80"},
        {"Id": "3", "StageName": "Signed", "Probability": "100", "IsClosed": "true", "IsWon": "true", "CloseDate": "2026-02-01"},
        {"Id": "4", "StageName": "Dead", "Probability": "0", "IsClosed": "true", "IsWon": "false", "CloseDate": "2026-02-01"},
    ])  # fmt: skip
    with pytest.warns(DataQualityWarning, match="guessed"):
        crm = salesforce.load(p)
    assert crm.opportunities.set_index("opportunity_id")["stage"].to_dict() == {
        "1": "discovery", "2": "negotiation", "3": "won", "4": "lost"
    }  # fmt: skip


def test_api_unknown_stage_rejected_with_its_file_row(tmp_path):
    p = _opp_csv(tmp_path, [{"Id": "1"}, {"Id": "2", "IsDeleted": "true"}, {"Id": "3", "StageName": "Legal Review"}])
    crm = salesforce.load(p, stage_map=SF_MAP)
    rej = crm.load_report.rejected
    assert rej[["row", "column", "value"]].values.tolist() == [[3, "stage", "legal_review"]]
    assert rej["reason"].iloc[0].startswith("unknown stage")
    with pytest.raises(
        DataError,
        match=r"Opportunity\.csv: column 'stage' has 1 row\(s\) rejected - unknown stage .*rows 3: 'legal_review'",
    ):
        salesforce.load(p, stage_map=SF_MAP, strict=True)


def test_api_closed_flags_that_contradict_the_stage_map_are_rejected(tmp_path):
    p = _opp_csv(
        tmp_path, [{"Id": "1", "StageName": "Negotiation/Review", "IsClosed": "true", "IsWon": "true"}, {"Id": "2"}]
    )
    crm = salesforce.load(p, stage_map=SF_MAP)
    assert crm.load_report.rejected["reason"].tolist() == ["status does not match stage"]


def test_api_bad_values_rejected_with_file_rows(tmp_path):
    p = _opp_csv(tmp_path, [{"Id": "1"}, {"Id": "2", "CloseDate": "31/02/2026"}, {"Id": "3", "Amount": "lots"}])
    crm = salesforce.load(p, stage_map=SF_MAP)
    rej = crm.load_report.rejected.sort_values("row")
    assert rej[["row", "column", "value", "reason"]].values.tolist() == [
        [2, "close_date", "31/02/2026", "not a date"], [3, "amount", "lots", "not a number"]
    ]  # fmt: skip


def test_api_currencies_never_summed(tmp_path):
    p = _opp_csv(tmp_path, [{"Id": "1", "CurrencyIsoCode": "USD", "Amount": "1000"}, {"Id": "2", "Amount": "500"}])
    h = tmp_path / "OpportunityHistory.csv"
    pd.DataFrame([
        {"OpportunityId": "1", "CreatedDate": "2026-01-05T10:00:00.000+0000", "StageName": "Prospecting", "Amount": "1000",
         "CloseDate": "2026-03-31", "CurrencyIsoCode": "USD", "IsDeleted": "false"},
        {"OpportunityId": "2", "CreatedDate": "2026-01-05T10:00:00.000+0000", "StageName": "Prospecting", "Amount": "500",
         "CloseDate": "2026-03-31", "CurrencyIsoCode": "EUR", "IsDeleted": "false"},
    ]).to_csv(h, index=False)  # fmt: skip
    with pytest.raises(
        DataError,
        match=r"Opportunity\.csv: amounts are in several currencies \(EUR, USD\).*never summed across currencies",
    ):
        salesforce.load(p, h, stage_map=SF_MAP)
    crm = salesforce.load(p, h, stage_map=SF_MAP, fx_rates={"USD": 0.9})
    assert crm.opportunities.set_index("opportunity_id")["amount"].to_dict() == {"1": 900.0, "2": 500.0}
    assert crm.history.set_index("opportunity_id")["amount"].to_dict() == {"1": 900.0, "2": 500.0}
    assert crm.load_report.summary["rows_added"].sum() == 0


def test_api_single_foreign_currency_becomes_the_reporting_currency(tmp_path):
    p = _opp_csv(tmp_path, [{"Id": "1", "CurrencyIsoCode": "USD"}])
    crm = salesforce.load(p, stage_map=SF_MAP)
    assert crm.playbook.currency == "USD"
    assert "reporting currency set to USD, the one currency of the export" in crm.load_report.notes


def test_api_without_history_says_so(tmp_path):
    crm = salesforce.load(_opp_csv(tmp_path, [{"Id": "1"}]), stage_map=SF_MAP)
    assert any("no history table; stage timing is unknown" in n for n in crm.load_report.notes)
    with pytest.raises(SchemaError, match="needs the 'history' table"):
        crm.require("history", "stage timing")


def test_api_owner_ids_without_users_are_noted(tmp_path):
    crm = salesforce.load(_opp_csv(tmp_path, [{"Id": "1"}]), stage_map=SF_MAP)
    assert crm.opportunities["owner"].tolist() == ["005A"]
    assert any("owners are Salesforce user ids; pass users=" in n for n in crm.load_report.notes)


def test_api_export_errors(tmp_path, company):
    p = tmp_path / "x.csv"
    pd.DataFrame({"Opportunity Name": ["a"], "Stage": ["b"]}).to_csv(p, index=False)
    with pytest.raises(SchemaError, match=r"x\.csv: this looks like a report export.*load_report_export\(\)"):
        salesforce.load(p)
    pd.DataFrame({"Foo": ["a"]}).to_csv(p, index=False)
    with pytest.raises(
        SchemaError, match=r"x\.csv: an Opportunity API export needs the fields Id and StageName \(found: Foo\)"
    ):
        salesforce.load(p)
    with pytest.raises(SchemaError, match=r"fields: \{'Region__c': 'region'\} map to columns that are not canonical"):
        salesforce.load(_opp_csv(tmp_path, [{}]), fields={"Region__c": "region"})


# ----------------------------------------------------------------------------- report exports
@pytest.mark.parametrize(("dayfirst", "decimal"), [(True, "."), (False, ",")])
def test_report_round_trip(company, tmp_path, dayfirst, decimal):
    crm = company.crm
    p = write_salesforce_report(crm, tmp_path, dayfirst=dayfirst, decimal=decimal)
    with pytest.warns(DataQualityWarning, match="guessed stage_map"):
        back = salesforce.load_report_export(
            p["report"], p["history_report"], playbook=company.playbook, as_of=crm.as_of_date
        )
    assert back.load_report.ok
    cols = ["opportunity_id", "name", "owner", "source", "amount", "currency", "stage", "status", "close_date",
            "closed_at", "forecast_category", "probability", "loss_reason", "next_step"]  # fmt: skip
    assert_same(crm.opportunities, back.opportunities, cols, ["opportunity_id"])
    created = crm.opportunities.assign(created_at=crm.opportunities["created_at"].dt.normalize())
    assert_same(created, back.opportunities, ["opportunity_id", "created_at"], ["opportunity_id"])
    hist = crm.history.assign(changed_at=crm.history["changed_at"].dt.floor("min"))  # reports show minutes
    assert_same(hist, back.history, HISTORY_COLUMNS, ["opportunity_id", "changed_at"])
    notes = back.load_report.notes
    assert "report.csv: column 'Opportunity Owner' appears 2 times with the same values; kept one" in notes
    assert any(n.startswith("report.csv: 2 footer line(s) of the report not loaded (Grand Totals") for n in notes)
    assert "report.csv: column(s) not loaded: Type, Fiscal Period, Age" in notes


def _report(tmp_path: Path, rows: list[dict]) -> Path:
    base = {"Opportunity ID": "1", "Opportunity Name": "Deal", "Opportunity Owner": "Ann", "Stage": "Prospecting",
            "Amount": "USD 1,000.00", "Probability (%)": "10%", "Close Date": "31/03/2026", "Created Date": "15/01/2026"}  # fmt: skip
    p = tmp_path / "report.csv"
    pd.DataFrame([{**base, **r} for r in rows]).to_csv(p, index=False)
    return p


def test_report_ambiguous_dates_raise_unless_told(tmp_path):
    p = _report(
        tmp_path,
        [
            {"Close Date": "01/02/2026", "Created Date": "01/01/2026"},
            {"Opportunity ID": "2", "Close Date": "03/04/2026", "Created Date": "01/01/2026"},
        ],
    )
    with pytest.raises(
        DataError,
        match=r"report\.csv: column 'Close Date' has dates whose day and month cannot be told apart \('01/02/2026', '03/04/2026'",
    ):
        salesforce.load_report_export(p, stage_map=SF_MAP)
    crm = salesforce.load_report_export(p, stage_map=SF_MAP, dayfirst=True)
    assert crm.opportunities["close_date"].tolist() == [pd.Timestamp("2026-02-01"), pd.Timestamp("2026-04-03")]


def test_report_money_and_percent_values(tmp_path):
    crm = salesforce.load_report_export(
        _report(tmp_path, [{"Amount": "USD 485,000.00", "Probability (%)": "90%"}]), stage_map=SF_MAP
    )
    o = crm.opportunities.iloc[0]
    assert (o["amount"], o["currency"], o["probability"]) == (485000.0, "USD", 0.9)


def test_report_duplicated_header_with_different_values_raises(tmp_path):
    p = tmp_path / "report.csv"
    p.write_text("Opportunity ID,Stage,Amount,Amount\n1,Prospecting,10,20\n", encoding="utf-8")
    with pytest.raises(
        SchemaError,
        match=r"report\.csv: column 'Amount' appears 2 times with different values \(Amount, Amount \[2\]\); remove the extra column",
    ):
        salesforce.load_report_export(p, stage_map=SF_MAP)


def test_report_without_opportunity_id_raises(tmp_path):
    p = tmp_path / "report.csv"
    p.write_text("Opportunity Name,Stage\nA,Prospecting\n", encoding="utf-8")
    with pytest.raises(
        SchemaError, match=r"report\.csv: the report has no 'Opportunity ID' column.*Add the Opportunity ID column"
    ):
        salesforce.load_report_export(p)


def test_report_unknown_stage_is_rejected_with_its_row(tmp_path):
    p = _report(tmp_path, [{}, {"Opportunity ID": "2", "Stage": "Legal"}])
    crm = salesforce.load_report_export(p, stage_map=SF_MAP)
    assert crm.load_report.rejected[["row", "column"]].values.tolist() == [[2, "stage"]]
    assert np.isclose(crm.opportunities["amount"].sum(), 1000.0)
