"""Loading and saving snapshot folders of CSV or Parquet files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from forecastkit.data.crm import CRM
from forecastkit.data.io import load, read_table, save
from forecastkit.errors import DataError, PlaybookError, SchemaError
from forecastkit.playbook import Playbook


def _assert_same_tables(a: CRM, b: CRM) -> None:
    assert {n for n in a.tables if a.has(n)} == {n for n in b.tables if b.has(n)}
    for name, df in a.tables.items():
        pd.testing.assert_frame_equal(b.tables[name], df, obj=name)


def _write_opportunities_only(folder: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    folder.mkdir(exist_ok=True)
    raw_tables["opportunities"].to_csv(folder / "opportunities.csv", index=False)


# ------------------------------------------------------------------- load
def test_load_csv_folder(csv_folder: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    crm = load(csv_folder)
    assert crm.as_of_date == pd.Timestamp("2026-05-12")  # latest event, no crm.yaml
    assert crm.load_report.ok
    assert crm.load_report.notes == []
    assert set(crm.load_report.summary["file"]) == {f"{n}.csv" for n in raw_tables}
    expected = CRM.from_tables(raw_tables)
    _assert_same_tables(expected, crm)


def test_load_gzipped_csv(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].to_csv(tmp_path / "opportunities.csv.gz", index=False)
    crm = load(tmp_path)
    assert len(crm.opportunities) == 4
    assert crm.load_report.summary["file"].tolist() == ["opportunities.csv.gz"]


def test_load_parquet_folder(tmp_path: Path, crm: CRM) -> None:
    folder = save(crm, tmp_path / "pq", format="parquet")
    assert sorted(p.name for p in folder.glob("*.parquet")) == sorted(f"{n}.parquet" for n in crm.tables if crm.has(n))
    assert not list(folder.glob("*.csv"))
    _assert_same_tables(crm, load(folder))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_save_load_round_trip(tmp_path: Path, crm: CRM, fmt: str) -> None:
    folder = crm.save(tmp_path / "snap", format=fmt)  # type: ignore[arg-type]
    again = load(folder)
    assert again.as_of_date == crm.as_of_date == pd.Timestamp("2026-06-30")
    assert again.playbook == crm.playbook
    assert again.load_report.ok
    _assert_same_tables(crm, again)


def test_round_trip_keeps_awkward_values(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    o = raw_tables["opportunities"]
    o.loc[0, "name"] = 'Acme, "the big one"\nsecond line'
    o.loc[1, "name"] = "NA"
    o.loc[2, "amount"] = "0.1"
    o.loc[3, "created_at"] = "2026-03-01T13:45:10"
    raw_tables["activities"]["report_context"] = ["true", "", "false"]
    crm = CRM.from_tables(raw_tables, as_of="2026-06-30")
    for fmt in ("csv", "parquet"):
        _assert_same_tables(crm, load(save(crm, tmp_path / fmt, format=fmt)))  # type: ignore[arg-type]


def test_round_trip_of_a_reconciled_history(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].loc[1, "amount"] = "7000"
    crm = CRM.from_tables(raw_tables, as_of="2026-06-30")
    assert crm.load_report.summary.set_index("table").loc["history", "rows_added"] == 1
    again = load(save(crm, tmp_path / "s"))
    assert again.load_report.summary["rows_added"].sum() == 0
    _assert_same_tables(crm, again)


def test_save_writes_metadata_and_rejects_bad_format(tmp_path: Path, crm: CRM) -> None:
    folder = save(crm, tmp_path / "s")
    assert (folder / "crm.yaml").read_text(encoding="utf-8").startswith("as_of: '2026-06-30'")
    assert Playbook.from_yaml(folder / "playbook.yaml") == crm.playbook
    assert not list(folder.glob(".*"))  # no temporary file left behind
    assert not (folder / "costs.csv").exists()  # absent tables are not written
    with pytest.raises(SchemaError, match=r"format must be 'csv' or 'parquet', got 'xlsx'"):
        save(crm, tmp_path / "x", format="xlsx")  # type: ignore[arg-type]


def test_crm_yaml_as_of_is_honoured(csv_folder: Path) -> None:
    (csv_folder / "crm.yaml").write_text("as_of: 2026-06-15\n", encoding="utf-8")
    assert load(csv_folder).as_of_date == pd.Timestamp("2026-06-15")


def test_crm_yaml_currency_and_rates(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].loc[3, "currency"] = "USD"
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "crm.yaml").write_text("currency: eur\nfx_rates: {USD: 0.5}\n", encoding="utf-8")
    crm = load(tmp_path)
    assert crm.opportunities["amount"].tolist() == [10000.0, 5000.0, 8000.0, 6000.0]
    (tmp_path / "crm.yaml").write_text("currency: USD\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"several currencies \(EUR, USD\) and the reporting currency is USD"):
        load(tmp_path)
    # fx_rates passed to load win over crm.yaml
    (tmp_path / "crm.yaml").write_text("fx_rates: {USD: 0.5}\n", encoding="utf-8")
    assert load(tmp_path, fx_rates={"USD": 2.0}).opportunities["amount"].tolist()[-1] == 24000.0


def test_playbook_yaml_is_picked_up(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "playbook.yaml").write_text("wip_limit: 7\nfiscal_year_start_month: 2\n", encoding="utf-8")
    crm = load(tmp_path)
    assert (crm.playbook.wip_limit, crm.playbook.fiscal_year_start_month) == (7, 2)
    # an explicit playbook wins
    assert load(tmp_path, playbook=Playbook()).playbook.wip_limit == 25
    other = tmp_path / "other.yaml"
    other.write_text("wip_limit: 9\n", encoding="utf-8")
    assert load(tmp_path, playbook=other).playbook.wip_limit == 9


def test_bad_playbook_yaml_in_folder(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "playbook.yaml").write_text("wip_limit: 0\n", encoding="utf-8")
    with pytest.raises(PlaybookError, match=r"playbook.yaml: 'wip_limit' must be a positive whole number, got 0"):
        load(tmp_path)


def test_load_as_of_rewinds(csv_folder: Path) -> None:
    (csv_folder / "crm.yaml").write_text("as_of: 2026-06-30\n", encoding="utf-8")
    crm = load(csv_folder, as_of="2026-03-10")
    assert crm.as_of_date == pd.Timestamp("2026-03-10")
    o = crm.opportunities.set_index("opportunity_id")
    assert sorted(o.index) == ["O1", "O2", "O3", "O4"]
    assert o.loc["O1", "stage"] == "proposal"
    assert o.loc["O1", "status"] == "open"
    assert o.loc["O2", "amount"] == 4000.0
    assert (crm.history["changed_at"] <= pd.Timestamp("2026-03-10")).all()
    assert list(crm.orders["order_id"]) == []
    assert len(load(csv_folder, as_of="2026-01-31").opportunities) == 1


def test_load_strict(csv_folder: Path) -> None:
    df = pd.read_csv(csv_folder / "opportunities.csv", dtype=str)
    df.loc[2, "close_date"] = "31/02/2026"
    df.to_csv(csv_folder / "opportunities.csv", index=False)
    rejected = load(csv_folder).load_report.rejected
    assert rejected[["table", "row"]].values.tolist() == [
        ["opportunities", 3],
        ["history", 6],
        ["history", 7],
    ]  # O3 and its history
    with pytest.raises(
        DataError,
        match=r"opportunities.csv: column 'close_date' has 1 row\(s\) rejected - not a date \(rows 3: '31/02/2026'\)",
    ):
        load(csv_folder, strict=True)


# ------------------------------------------------------------------ notes
def test_csv_with_utf8_bom_loads(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].loc[0, "name"] = "Société Générale"
    raw_tables["opportunities"].to_csv(tmp_path / "opportunities.csv", index=False, encoding="utf-8-sig")
    assert (tmp_path / "opportunities.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    crm = load(tmp_path)
    assert crm.load_report.ok
    assert crm.opportunities["opportunity_id"].tolist()[0] == "O1"
    assert crm.opportunities["name"].tolist()[0] == "Société Générale"


def test_ignored_files_and_columns_are_noted(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"]["colour"] = "red"
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "deals.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("x", encoding="utf-8")
    (tmp_path / "README.md").write_text("# data", encoding="utf-8")
    notes = load(tmp_path).load_report.notes
    assert "opportunities.csv: ignored column(s) not in the 'opportunities' schema: colour" in notes
    assert any(n.endswith("ignored file(s) that are not canonical tables: deals.csv, notes.txt") for n in notes)


def test_read_table_reads_every_cell_as_text(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,amount,flag\n007,1.50,NA\n,,\n", encoding="utf-8")
    df = read_table(path)
    assert df["id"].tolist()[0] == "007"
    assert df["amount"].tolist()[0] == "1.50"
    assert df["flag"].tolist()[0] == "NA"
    assert df.iloc[1].isna().all()


# ----------------------------------------------------------------- errors
def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(
        SchemaError, match=r"nope: no such folder; point load\(\) at the folder holding opportunities.csv"
    ):
        load(tmp_path / "nope")


def test_file_instead_of_folder(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    _write_opportunities_only(tmp_path, raw_tables)
    with pytest.raises(SchemaError, match=r"opportunities.csv: expected a folder of table files .*got a file"):
        load(tmp_path / "opportunities.csv")


def test_folder_without_opportunities_lists_found_files(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["history"].to_csv(tmp_path / "history.csv", index=False)
    raw_tables["opportunities"].to_csv(tmp_path / "deals.csv", index=False)
    with pytest.raises(
        SchemaError,
        match=r"no opportunities.csv or opportunities.parquet \(found: deals.csv, history.csv\)\. It is the one table",
    ):
        load(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SchemaError, match=r"\(found: \(empty\)\)"):
        load(empty)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "opportunities.csv").write_bytes(b"")
    with pytest.raises(
        SchemaError, match=r"opportunities.csv: the file is empty \(not even a header line\); delete it or export"
    ):
        load(tmp_path)


def test_header_only_file_needs_as_of(tmp_path: Path) -> None:
    (tmp_path / "opportunities.csv").write_text(
        "opportunity_id,owner,created_at,close_date,amount,stage\n", encoding="utf-8"
    )
    with pytest.raises(SchemaError, match=r"no dated event"):
        load(tmp_path)
    (tmp_path / "crm.yaml").write_text("as_of: 2026-01-01\n", encoding="utf-8")
    assert len(load(tmp_path).opportunities) == 0


def test_non_utf8_file(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].loc[0, "name"] = "Société Générale"
    raw_tables["opportunities"].to_csv(tmp_path / "opportunities.csv", index=False, encoding="latin-1")
    with pytest.raises(
        SchemaError, match=r"opportunities.csv: not UTF-8 text \(.* at byte \d+\); re-export the file as UTF-8"
    ):
        load(tmp_path)


def test_corrupt_parquet(tmp_path: Path) -> None:
    (tmp_path / "opportunities.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SchemaError, match=r"opportunities.parquet: cannot be read"):
        load(tmp_path)


def test_same_table_twice(tmp_path: Path, crm: CRM) -> None:
    save(crm, tmp_path, format="parquet")
    crm.opportunities.to_csv(tmp_path / "opportunities.csv", index=False)
    with pytest.raises(
        SchemaError,
        match=r"table 'opportunities' is given twice \(opportunities.parquet, opportunities.csv\); keep one file",
    ):
        load(tmp_path)


def test_missing_required_column_names_the_file(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    raw_tables["opportunities"].drop(columns=["owner"]).to_csv(tmp_path / "opportunities.csv", index=False)
    with pytest.raises(
        SchemaError, match=r"opportunities.csv: required column\(s\) 'owner' missing .*Found columns: opportunity_id"
    ):
        load(tmp_path)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("asof: 2026-01-01\n", r"crm.yaml: unknown key\(s\) \['asof'\]; allowed: \['as_of', 'currency', 'fx_rates'\]"),
        ("as_of: [unclosed\n", r"crm.yaml: not valid YAML"),
        ("- 2026-01-01\n", r"crm.yaml: expected keys such as 'as_of: 2026-11-20'"),
        ("as_of: soon\n", r"crm.yaml: as_of 'soon' is not a date; use ISO format YYYY-MM-DD"),
        ("fx_rates: {USD: lots}\n", r"crm.yaml: 'fx_rates' must map currency codes to positive numbers"),
        ("fx_rates: 0.9\n", r"crm.yaml: 'fx_rates' must map currency codes to positive numbers"),
    ],
)
def test_bad_crm_yaml(tmp_path: Path, raw_tables: dict[str, pd.DataFrame], text: str, match: str) -> None:
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "crm.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SchemaError, match=match):
        load(tmp_path)


def test_bad_currency_in_crm_yaml(tmp_path: Path, raw_tables: dict[str, pd.DataFrame]) -> None:
    _write_opportunities_only(tmp_path, raw_tables)
    (tmp_path / "crm.yaml").write_text("currency: EURO\n", encoding="utf-8")
    with pytest.raises(
        PlaybookError, match=r"crm.yaml: 'currency' must be a 3-letter ISO code such as EUR, got 'EURO'"
    ):
        load(tmp_path)


def test_loads_in_parallel_threads_give_the_same_tables() -> None:
    """The validator's per-load store of pyarrow arrays is per thread: parallel loads stay exact."""
    from concurrent.futures import ThreadPoolExecutor

    folder = Path(__file__).resolve().parents[1] / "data" / "sample"
    alone = load(folder)
    with ThreadPoolExecutor(max_workers=3) as pool:
        crms = list(pool.map(lambda _: load(folder), range(3)))
    for crm in crms:
        for name, df in alone.tables.items():
            pd.testing.assert_frame_equal(crm.tables[name], df, check_exact=True)
