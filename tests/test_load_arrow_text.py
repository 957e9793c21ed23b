"""Text read by pyarrow (Parquet string columns, the fast CSV reader) validates like text in pandas objects.

The loader keeps raw text columns as pyarrow strings (``pd.ArrowDtype``) and validation
converts each id run (tables sorted by deal) once; few-valued Parquet text columns are read
as dictionaries, each distinct value converted once. Checked here on a small company whose
history is sorted by deal, in runs long enough for that path, with blank, missing,
unknown and malformed cells: the same tables and the same load report from a CSV folder,
from a Parquet folder of text columns, and from object columns given to ``CRM.from_tables``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import forecastkit as fk
from forecastkit.data.io import _dictionary_columns
from forecastkit.data.validate import TEXT_DTYPE, _from_dictionary, _isin, text_positions

N_DEALS = 1_500
ROWS_PER_DEAL = 3


def _raw_tables() -> dict[str, pd.DataFrame]:
    """Opportunities and a history sorted by deal, every cell as text (None: missing)."""
    ids = [f"D{i:05d}" for i in range(N_DEALS)]
    opps = pd.DataFrame(
        {
            "opportunity_id": ids,
            "owner": [f"rep{i % 7}" for i in range(N_DEALS)],
            "created_at": ["2025-01-02"] * N_DEALS,
            "close_date": ["2025-06-30"] * N_DEALS,
            "amount": ["1000"] * N_DEALS,  # as in history: no history row added
            "stage": ["qualification"] * N_DEALS,
            "forecast_category": ["pipeline"] * N_DEALS,
        },
        dtype=object,
    )
    opps.loc[3, "amount"] = "12k"  # not a number
    opps.loc[4, "owner"] = "   "  # blank: missing required value
    opps.loc[5, "created_at"] = "2025-13-45"  # not a date
    hist_ids = np.repeat(ids, ROWS_PER_DEAL).astype(object)
    hist = pd.DataFrame(
        {
            "opportunity_id": hist_ids,
            "changed_at": ["2025-01-02", "2025-02-03", "2025-03-04"] * N_DEALS,
            "stage": ["qualification"] * len(hist_ids),
            "amount": ["1000"] * len(hist_ids),
            "close_date": ["2025-06-30"] * len(hist_ids),
            "forecast_category": ["pipeline"] * len(hist_ids),
        },
        dtype=object,
    )
    hist.loc[30:32, "opportunity_id"] = "GONE-1"  # a deal not exported: a run of unknown ids
    hist.loc[40, "opportunity_id"] = None  # missing inside a run
    hist.loc[41, "opportunity_id"] = "  "  # blank inside a run
    hist.loc[50, "stage"] = "No Such Stage"
    hist.loc[60, "changed_at"] = "yesterday"
    return {"opportunities": opps, "history": hist}


def _write(folder: Path, raw: dict[str, pd.DataFrame], fmt: str) -> Path:
    folder.mkdir()
    (folder / "crm.yaml").write_text("as_of: 2025-11-20\n", encoding="utf-8")
    for name, df in raw.items():
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:  # row groups of 500 rows: each with its own dictionary of the few-valued columns
            groups = {"row_group_size": 500} if fmt == "parquet_groups" else {}
            df.astype(pd.ArrowDtype(pa.string())).to_parquet(folder / f"{name}.parquet", index=False, **groups)
    return folder


@pytest.fixture(scope="module")
def loads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, fk.CRM]:
    raw = _raw_tables()
    base = tmp_path_factory.mktemp("arrow_text")
    out = {fmt: fk.load(_write(base / fmt, raw, fmt)) for fmt in ("csv", "parquet", "parquet_groups")}
    out["objects"] = fk.CRM.from_tables(raw, as_of="2025-11-20")
    return out


def test_same_snapshot_from_csv_parquet_text_and_objects(loads: dict[str, fk.CRM]) -> None:
    ref = loads["objects"]
    for fmt in ("csv", "parquet", "parquet_groups"):
        crm = loads[fmt]
        assert crm.as_of_date == ref.as_of_date
        for name in ("opportunities", "history"):
            pd.testing.assert_frame_equal(crm.tables[name], ref.tables[name], check_exact=True, obj=f"{fmt} {name}")
        rep, want = crm.load_report, ref.load_report
        cols = ["table", "row", "column", "value", "reason"]  # the file names differ
        pd.testing.assert_frame_equal(rep.rejected[cols], want.rejected[cols], check_exact=True)
        pd.testing.assert_frame_equal(rep.summary.drop(columns="file"), want.summary.drop(columns="file"))
        assert [n.split(":", 1)[-1] for n in rep.notes] == [n.split(":", 1)[-1] for n in want.notes]


def test_rejected_rows_are_the_bad_cells(loads: dict[str, fk.CRM]) -> None:
    rej = loads["parquet"].load_report.rejected
    got = sorted(zip(rej["table"], rej["row"], rej["column"], rej["reason"].str.split(" \\(").str[0], strict=True))
    rows_of_rejected_deals = [("history", r, "opportunity_id", "unknown opportunity") for r in range(10, 19)]
    assert got == [
        *rows_of_rejected_deals,
        ("history", 31, "opportunity_id", "unknown opportunity"),
        ("history", 32, "opportunity_id", "unknown opportunity"),
        ("history", 33, "opportunity_id", "unknown opportunity"),
        ("history", 41, "opportunity_id", "missing required value"),
        ("history", 42, "opportunity_id", "missing required value"),
        ("history", 51, "stage", "unknown stage"),
        ("history", 61, "changed_at", "not a date"),
        ("opportunities", 4, "amount", "not a number"),
        ("opportunities", 5, "owner", "missing required value"),
        ("opportunities", 6, "created_at", "not a date"),
    ]
    # the unknown deal's rows show its id; the rows of deals rejected themselves are unknown too
    assert rej.loc[(rej["table"] == "history") & (rej["row"] == 31), "value"].tolist() == ["GONE-1"]
    assert rej.loc[(rej["table"] == "history") & (rej["row"] == 10), "value"].tolist() == ["D00003"]


def test_history_ids_in_runs_are_canonical_text(loads: dict[str, fk.CRM]) -> None:
    crm = loads["parquet"]
    hist = crm.history
    assert hist["opportunity_id"].dtype == TEXT_DTYPE
    kept = set(crm.opportunities["opportunity_id"])
    assert set(hist["opportunity_id"]) <= kept and hist["opportunity_id"].notna().all()
    # 3 rows per deal, less the rejected ones and the rows of the 3 rejected deals; no row added (same state)
    rejected_deals = {"D00003", "D00004", "D00005"}
    expected = N_DEALS * ROWS_PER_DEAL - 7 - ROWS_PER_DEAL * len(rejected_deals)  # 7 bad cells
    assert len(hist) == expected
    assert crm.load_report.summary.set_index("table").loc["history", "rows_added"] == 0
    assert "history: 1 deal(s) have no history row" in "\n".join(crm.load_report.notes)  # D00010: GONE-1's rows


def test_few_valued_parquet_columns_are_read_as_dictionaries(tmp_path: Path) -> None:
    folder = _write(tmp_path / "pq", _raw_tables(), "parquet_groups")
    assert _dictionary_columns(folder / "history.parquet") == ["opportunity_id", "stage", "forecast_category"]
    assert _dictionary_columns(folder / "opportunities.parquet") == [
        "opportunity_id",
        "owner",
        "stage",
        "forecast_category",
    ]
    other = _write(tmp_path / "categorical", _raw_tables(), "parquet")
    categorical = _raw_tables()["history"].astype({"stage": "category"})
    categorical.to_parquet(other / "history.parquet", index=False)
    assert _dictionary_columns(other / "history.parquet") == []  # the file has its own dictionaries
    got, want = fk.load(other), fk.load(folder)
    pd.testing.assert_frame_equal(got.history, want.history, check_exact=True)


def test_look_ups_in_runs_match_pandas() -> None:
    rng = np.random.default_rng(7)
    keys = np.array([f"K{i}" for i in range(300)], dtype=object)
    values = np.repeat(rng.choice(np.append(keys, ["nope", None]), size=400), rng.integers(1, 12, size=400))
    values = values.astype(object)
    assert len(values) >= 1_000
    pos = text_positions(pd.Series(values, dtype=TEXT_DTYPE), pd.Series(keys, dtype=TEXT_DTYPE))
    want = pd.Index(keys).get_indexer(values)
    np.testing.assert_array_equal(pos, want)
    found = _isin(pd.Series(values, dtype=TEXT_DTYPE), pd.Series(keys[:100], dtype=TEXT_DTYPE)).to_numpy()
    np.testing.assert_array_equal(found, pd.Series(values).isin(keys[:100]).to_numpy())


def test_dictionary_text_blank_and_missing_cells() -> None:
    chunks = [
        pa.DictionaryArray.from_arrays(pa.array([0, 1, None, 2, 0], pa.int8()), pa.array(["a", " ", "c"])),
        pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int8()), pa.array(["x", ""])),
    ]
    values, arr = _from_dictionary(pa.chunked_array(chunks), pd.RangeIndex(7))
    assert values.dtype == TEXT_DTYPE
    assert values.tolist() == ["a", pd.NA, pd.NA, "c", "a", pd.NA, "x"]
    assert arr.null_count == 3 and arr.is_null().to_pylist() == values.isna().tolist()
