"""Any CSV through a YAML mapping file, and validate_export (what would be loaded and rejected)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml
from _adapters_writers import HISTORY_COLUMNS, assert_same, money, sample_company

from forecastkit.adapters import mapping
from forecastkit.errors import DataError, SchemaError

STAGES = {"to_contact": "Prospect", "qualification": "Qualified", "discovery": "Demo", "proposal": "Quote sent",
          "negotiation": "Negotiating", "won": "Signed", "lost": "Dropped"}  # fmt: skip
MAP = {
    "tables": {
        "opportunities": {
            "file": "deals.csv",
            "columns": {"Deal ID": "opportunity_id", "Owner": "owner", "Customer": "account_id", "Created": "created_at",
                        "Expected close": "close_date", "Value": "amount", "Phase": "stage", "Win chance": "probability",
                        "Lost because": "loss_reason"},
            "values": {"stage": {v: k for k, v in STAGES.items()}},
        },
        "history": {
            "file": "changes.csv",
            "columns": {"Deal": "opportunity_id", "When": "changed_at", "Phase": "stage", "Value": "amount",
                        "Expected close": "close_date"},
            "values": {"stage": {v: k for k, v in STAGES.items()}},
        },
    },
    "dayfirst": True,
    "decimal": ",",
}  # fmt: skip


def write_generic(crm, folder: Path) -> Path:
    """A home-made CRM export: French-style dates and numbers, custom headers and stage names."""
    o, h = crm.opportunities, crm.history
    pd.DataFrame(
        {
            "Deal ID": o["opportunity_id"], "Owner": o["owner"], "Customer": o["account_id"],
            "Created": o["created_at"].dt.strftime("%d/%m/%Y %H:%M:%S"), "Expected close": o["close_date"].dt.strftime("%d/%m/%Y"),
            "Value": [money(v, "EUR", decimal=",").replace("EUR ", "") + " €" for v in o["amount"]],
            "Phase": o["stage"].map(STAGES), "Win chance": (o["probability"] * 100).map(lambda v: f"{v:g}%"),
            "Lost because": o["loss_reason"], "Notes": "",
        }
    ).to_csv(folder / "deals.csv", index=False)  # fmt: skip
    pd.DataFrame(
        {
            "Deal": h["opportunity_id"], "When": h["changed_at"].dt.strftime("%d/%m/%Y %H:%M:%S"),
            "Phase": h["stage"].map(STAGES), "Value": [money(v, "EUR", decimal=",")[4:] for v in h["amount"]],
            "Expected close": h["close_date"].dt.strftime("%d/%m/%Y"),
        }
    ).to_csv(folder / "changes.csv", index=False)  # fmt: skip
    path = folder / "map.yaml"
    path.write_text(yaml.safe_dump(MAP, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def test_round_trip_through_a_mapping_file(tmp_path):
    s = sample_company(0)
    crm = s.crm
    back = mapping.load(write_generic(crm, tmp_path), playbook=s.playbook, as_of=crm.as_of_date)
    assert back.load_report.ok
    cols = ["opportunity_id", "owner", "account_id", "created_at", "close_date", "amount", "currency", "stage",
            "status", "probability", "loss_reason", "closed_at"]  # fmt: skip
    assert_same(crm.opportunities, back.opportunities, cols, ["opportunity_id"])
    hist = ["opportunity_id", "changed_at", "stage", "amount", "close_date"]
    assert_same(crm.history, back.history, hist, ["opportunity_id", "changed_at"])
    assert set(HISTORY_COLUMNS) - set(hist) == {"forecast_category"}  # not exported by this CRM
    assert "deals.csv: column(s) not mapped, not loaded: Notes" in back.load_report.notes


def _single(tmp_path, rows, **spec):
    pd.DataFrame(rows).to_csv(tmp_path / "export.csv", index=False)
    m = {"columns": {"ID": "opportunity_id", "Rep": "owner", "Created": "created_at", "Close": "close_date",
                     "Amount": "amount", "Stage": "stage"},
         "values": {"stage": {"Won it": "won", "Early": "to_contact"}}, **spec}  # fmt: skip
    (tmp_path / "map.yaml").write_text(yaml.safe_dump(m), encoding="utf-8")
    return tmp_path / "map.yaml", tmp_path / "export.csv"


ROWS = [
    {"ID": "1", "Rep": "ann", "Created": "2026-01-05", "Close": "2026-03-31", "Amount": "1000", "Stage": "Early"},
    {"ID": "2", "Rep": "bob", "Created": "2026-01-06", "Close": "someday", "Amount": "500", "Stage": "early"},
    {"ID": "3", "Rep": "bob", "Created": "2026-01-07", "Close": "2026-02-01", "Amount": "700", "Stage": "Stalled"},
]


def test_validate_export_shows_what_would_be_loaded_and_rejected(tmp_path):
    m, csv = _single(tmp_path, ROWS, constants={"currency": "EUR"})
    report = mapping.validate_export(m, csv)
    assert report.summary[["table", "rows_read", "rows_kept", "rows_rejected"]].values.tolist() == [
        ["opportunities", 3, 1, 2]
    ]
    assert report.rejected.sort_values("row")[["row", "column", "value"]].values.tolist() == [
        [2, "close_date", "someday"], [3, "stage", "stalled"]
    ]  # fmt: skip
    assert (
        "history: no history table; stage timing is unknown and as_of() cannot rewind stages, amounts or close dates"
        in report.notes
    )
    assert "export.csv: column 'close_date' has 1 row(s) rejected - not a date (rows 2: 'someday')" in report.describe()
    with pytest.raises(DataError, match="2 row\\(s\\) rejected"):
        mapping.load(m, csv, strict=True)


def test_value_maps_are_case_insensitive_and_constants_fill_columns(tmp_path):
    m, csv = _single(tmp_path, ROWS[:2], constants={"currency": "EUR", "segment": "smb"})
    crm = mapping.load(m, csv)
    assert crm.opportunities["stage"].tolist() == ["to_contact"]
    assert crm.opportunities["segment"].tolist() == ["smb"]


def test_mapping_errors_name_the_file_and_the_fix(tmp_path):
    m, csv = _single(tmp_path, ROWS, colums={})
    with pytest.raises(SchemaError, match=r"map\.yaml: unknown key\(s\) \['colums'\]"):
        mapping.load(m, csv)
    m, csv = _single(tmp_path, ROWS, constants={"region": "x"})
    with pytest.raises(
        SchemaError,
        match=r"map\.yaml: tables\.opportunities: \['region'\] are not columns of the canonical table 'opportunities'",
    ):
        mapping.load(m, csv)
    m, csv = _single(tmp_path, [{k: v for k, v in r.items() if k != "Rep"} for r in ROWS])
    with pytest.raises(
        SchemaError, match=r"map\.yaml: column\(s\) 'Rep' mapped for 'opportunities' are not in export\.csv"
    ):
        mapping.load(m, csv)
    with pytest.raises(SchemaError, match=r"map\.yaml: no file for 'opportunities'"):
        mapping.load(m)
    with pytest.raises(SchemaError, match=r"tables: 'deals' is not a canonical table"):
        mapping.load({"tables": {"deals": {"columns": {}}}})


def test_ambiguous_dates_in_a_mapped_export_raise_and_dayfirst_fixes_them(tmp_path):
    rows = [{**r, "Created": "02/01/2026", "Close": "03/04/2026"} for r in ROWS[:1]]
    m, csv = _single(tmp_path, rows)
    with pytest.raises(
        DataError, match=r"export\.csv: column 'Close' has dates whose day and month cannot be told apart"
    ):
        mapping.validate_export(m, csv)
    m, csv = _single(tmp_path, rows, dayfirst=True)
    crm = mapping.load(m, csv)
    assert crm.opportunities["close_date"].iloc[0] == pd.Timestamp("2026-04-03")


def test_currency_read_from_money_cells_and_never_summed(tmp_path):
    rows = [{**ROWS[0], "Amount": "USD 1,000.00"}, {**ROWS[0], "ID": "9", "Amount": "EUR 500.00"}]
    m, csv = _single(tmp_path, rows)
    with pytest.raises(DataError, match=r"amounts are in several currencies \(EUR, USD\)"):
        mapping.load(m, csv)
    crm = mapping.load(m, csv, fx_rates={"USD": 0.5})
    assert sorted(crm.opportunities["amount"]) == [500.0, 500.0]
