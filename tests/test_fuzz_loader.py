"""Property-based (hypothesis) tests of the loader: random and adversarial exports.

Whatever the folder holds, ``forecastkit.load`` must either return a valid CRM
snapshot in which every row read is accounted for (``rows_read = rows_kept +
rows_rejected`` per table, and ``rows_read`` equal to the data rows in the
file), or raise a :class:`~forecastkit.errors.ForecastkitError` with a
message. Any other exception is a bug.

Examples are bounded by default (a few dozen per test, so the module runs in
well under a minute); set ``FORECASTKIT_FUZZ=long`` for a long run
(thousands of examples per test), e.g.::

    FORECASTKIT_FUZZ=long .venv/bin/python -m pytest tests/test_fuzz_loader.py -q

The profiles are registered here (not in conftest.py) and applied per test,
so they do not change other modules' hypothesis settings.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import forecastkit as fk
from forecastkit.data.crm import CRM
from forecastkit.errors import ForecastkitError
from forecastkit.playbook import Playbook

settings.register_profile(
    "forecastkit-fuzz-default",
    max_examples=30,
    deadline=None,
    derandomize=True,  # the normal test command is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "forecastkit-fuzz-long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
PROFILE = (
    "forecastkit-fuzz-long" if os.environ.get("FORECASTKIT_FUZZ", "").lower() == "long" else "forecastkit-fuzz-default"
)
fuzz = settings(settings.get_profile(PROFILE))

PLAYBOOK = Playbook()
HUGE = "x" * 200_000

# ------------------------------------------------------------- cell pools
DATES = [
    "2026-01-05",
    "2026-03-31",
    "2026-06-30T10:15:00",
    "2026-06-30 10:15",
    "2026-06-30T10:15:00Z",
    "2026-06-30T10:15:00+02:00",
    "0001-01-01",
    "1000-01-01",
    "1677-09-21",
    "1677-09-22",
    "1900-01-01",
    "2262-04-11",
    "2262-04-12",
    "9999-12-31",
    "99999-01-01",
    "2026-02-30",
    "2026-13-01",
    "31/12/2026",
    "12/31/2026",
    "soon",
    "NaN",
    "NaT",
    "None",
    "1e10",
    "0",
    "",
    " ",
]
AMOUNTS = [
    "100",
    "0",
    "12.5",
    " 7 ",
    "-5",
    "1e308",
    "1e309",
    "-1e309",
    "inf",
    "-inf",
    "Infinity",
    "NaN",
    "nan",
    "1,000",
    "1.000,50",
    "€100",
    "0x10",
    "9" * 400,
    "true",
    "",
]
STAGES = [*PLAYBOOK.stage_names, "won", "lost", "Won", " proposal ", "Closed Won", "unknown", "<script>x</script>", ""]
STATUSES = ["open", "won", "lost", "OPEN", "closed", ""]
IDS = ["o1", "o2", "o3", "o1 ", "O1", "0001", "1", "", HUGE[:5000]]
TEXTS = [
    "ana",
    "bob",
    "Zoë Ünal",
    "李雷",
    "🙂 emoji",
    "<img src=x onerror=alert(1)>",
    'quote " and , comma',
    "semi;colon",
    "line\nbreak",
    "tab\there",
    "=1+2",
    HUGE,
    "",
    " ",
]
PROBS = ["0.5", "50", "150", "-1", "1", "0", "abc", ""]
CURRENCIES = ["EUR", "eur", "", " EUR "]

OPP_REQUIRED = ["opportunity_id", "owner", "created_at", "close_date", "amount", "stage"]
OPP_OPTIONAL = ["status", "closed_at", "probability", "name", "currency", "next_step_date", "budget"]
POOLS = {
    "opportunity_id": IDS,
    "owner": TEXTS,
    "name": TEXTS,
    "created_at": DATES,
    "close_date": DATES,
    "closed_at": DATES,
    "next_step_date": DATES,
    "amount": AMOUNTS,
    "budget": AMOUNTS,
    "stage": STAGES,
    "status": STATUSES,
    "probability": PROBS,
    "currency": CURRENCIES,
    "changed_at": DATES,
    "bogus_extra": TEXTS,
}
HIST_COLUMNS = ["opportunity_id", "changed_at", "stage", "amount", "close_date"]


def _cell(column: str) -> st.SearchStrategy[str]:
    pool = POOLS[column]
    good = {
        "created_at": "2026-01-05",
        "close_date": "2026-06-01",
        "changed_at": "2026-02-01",
        "amount": "100",
        "stage": "proposal",
        "owner": "ana",
    }.get(column)
    # mostly plausible values (so that many rows load), often adversarial ones
    choices = st.sampled_from(pool)
    return st.one_of(st.just(good), choices) if good is not None else choices


@st.composite
def tables(draw: st.DrawFn, columns: list[str], optional: list[str], max_rows: int = 6) -> pd.DataFrame:
    """A raw text table: some columns dropped, some added, adversarial cells."""
    cols = [c for c in columns if draw(st.integers(0, 9)) > 0]  # each required column missing 10% of the time
    cols += [c for c in optional if draw(st.booleans())]
    if draw(st.integers(0, 9)) == 0:
        cols.append("bogus_extra")
    cols = draw(st.permutations(cols))
    n = draw(st.integers(0, max_rows))
    rows = [{c: draw(_cell(c)) for c in cols} for _ in range(n)]
    if rows and draw(st.booleans()) and "opportunity_id" in cols:  # a duplicated id
        rows.append(dict(rows[0]))
    return pd.DataFrame(rows, columns=cols, dtype=object)


def _write_csv(df: pd.DataFrame, path: Path, *, sep: str, encoding: str, newline: str) -> bool:
    """Write ``df``; False when the text cannot be encoded (the example is then skipped)."""
    text = df.to_csv(index=False, sep=sep, lineterminator=newline)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        return False
    path.write_bytes(data)
    return True


def _check_accounting(crm: CRM, written: dict[str, int]) -> None:
    summary = crm.load_report.summary.set_index("table")
    rejected = crm.load_report.rejected
    for table, n in written.items():
        row = summary.loc[table]
        assert row["rows_read"] == n, f"{table}: {n} data rows written, {row['rows_read']} read"
        assert row["rows_read"] == row["rows_kept"] + row["rows_rejected"], table
        got = rejected[rejected["table"] == table]
        assert got["row"].nunique() == len(got) == row["rows_rejected"], f"{table}: one rejection per rejected row"
        assert set(got["row"]) <= set(range(1, n + 1)), f"{table}: rejected row numbers are 1-based data rows"
        assert got["reason"].astype(str).str.len().gt(0).all()
    opps = crm.opportunities
    assert len(opps) == summary.loc["opportunities", "rows_kept"]
    if "history" in written:
        assert len(crm.history) == summary.loc["history", "rows_kept"] + summary.loc["history", "rows_added"]


def _check_valid(crm: CRM) -> None:
    o = crm.opportunities
    assert o["opportunity_id"].notna().all() and o["opportunity_id"].is_unique
    assert o["owner"].notna().all()
    for c in ("created_at", "close_date"):
        assert str(o[c].dtype) == "datetime64[ns]" and o[c].notna().all()
    amounts = o["amount"].to_numpy(dtype=float)
    assert np.isfinite(amounts).all() and (amounts >= 0).all()
    assert o["stage"].isin(PLAYBOOK.all_stage_names).all()
    assert o["status"].isin(["open", "won", "lost"]).all()
    assert ((o["status"] == "open") == ~o["stage"].isin(["won", "lost"])).all()
    p = o["probability"].dropna()
    assert ((p >= 0) & (p <= 1)).all()
    h = crm.history
    assert h["opportunity_id"].isin(o["opportunity_id"]).all()
    assert np.isfinite(h["amount"].to_numpy(dtype=float)).all()
    assert isinstance(crm.as_of_date, pd.Timestamp) and not pd.isna(crm.as_of_date)


def _load_or_error(folder: Path) -> CRM | None:
    try:
        return fk.load(folder)
    except ForecastkitError as exc:
        assert str(exc).strip(), "a ForecastkitError must say what is wrong"
        return None


# ----------------------------------------------------------------- CSV exports
@fuzz
@given(
    opps=tables(OPP_REQUIRED, OPP_OPTIONAL),
    hist=st.none() | tables(HIST_COLUMNS, []),
    sep=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252"]),
    newline=st.sampled_from(["\n", "\r\n"]),
    as_of=st.none() | st.sampled_from(["2026-06-30", "2262-04-12", "0001-01-01"]),
)
@example(
    opps=pd.DataFrame([{c: "" for c in OPP_REQUIRED}], dtype=object),
    hist=None,
    sep=",",
    encoding="utf-8",
    newline="\n",
    as_of=None,
)
def test_fuzzed_csv_exports_load_or_fail_cleanly(
    opps: pd.DataFrame, hist: pd.DataFrame | None, sep: str, encoding: str, newline: str, as_of: str | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        written = {}
        if not _write_csv(opps, folder / "opportunities.csv", sep=sep, encoding=encoding, newline=newline):
            return
        written["opportunities"] = len(opps)
        if hist is not None:
            if not _write_csv(hist, folder / "history.csv", sep=sep, encoding=encoding, newline=newline):
                return
            written["history"] = len(hist)
        if as_of is not None:
            (folder / "crm.yaml").write_text(f"as_of: {as_of}\n")
        crm = _load_or_error(folder)
        if crm is not None:
            _check_accounting(crm, written)
            _check_valid(crm)


# ------------------------------------------------------------- Parquet exports
def _typed_column(draw: st.DrawFn, n: int) -> pd.Series:
    """A column of a random, often wrong, dtype."""
    kind = draw(
        st.sampled_from(["float", "int", "str", "bool", "dates_ns", "dates_us_far", "dates_tz", "mixed", "nulls"])
    )
    if kind == "float":
        vals = draw(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=n, max_size=n))
        return pd.Series(vals, dtype="float64")
    if kind == "int":
        return pd.Series(draw(st.lists(st.integers(-(2**62), 2**62), min_size=n, max_size=n)), dtype="int64")
    if kind == "str":
        return pd.Series(
            draw(st.lists(st.sampled_from(AMOUNTS + DATES + STAGES), min_size=n, max_size=n)), dtype=object
        )
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind == "dates_ns":
        days = draw(st.lists(st.integers(-40_000, 40_000), min_size=n, max_size=n))
        return pd.Series(pd.to_datetime("2000-01-01") + pd.to_timedelta(days, unit="D"))
    if kind == "dates_us_far":  # outside the datetime64[ns] range: year 1 or 9999
        years = draw(st.lists(st.sampled_from([1, 1000, 2026, 3000, 9999]), min_size=n, max_size=n))
        return pd.Series(np.array([f"{y:04d}-06-01" for y in years], dtype="datetime64[us]"))
    if kind == "dates_tz":
        return pd.Series(pd.date_range("2026-01-01", periods=n, freq="D", tz="Europe/Paris"))
    if kind == "mixed":
        return pd.Series(
            draw(
                st.lists(st.sampled_from([1, 2.5, "x", None, "2026-01-01", float("inf"), True]), min_size=n, max_size=n)
            ),
            dtype=object,
        ).astype(str)
    return pd.Series([None] * n, dtype=object)


@st.composite
def typed_opportunities(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(0, 6))
    base = {
        "opportunity_id": pd.Series([f"o{i}" for i in range(n)], dtype=object),
        "owner": pd.Series(["ana"] * n, dtype=object),
        "created_at": pd.Series(pd.to_datetime(["2026-01-05"] * n)),
        "close_date": pd.Series(pd.to_datetime(["2026-06-01"] * n)),
        "amount": pd.Series([100.0] * n),
        "stage": pd.Series(["proposal"] * n, dtype=object),
    }
    for c in draw(st.lists(st.sampled_from([*OPP_REQUIRED, "probability", "closed_at", "budget"]), unique=True)):
        base[c] = _typed_column(draw, n)
    return pd.DataFrame(base)


@fuzz
@given(opps=typed_opportunities())
def test_fuzzed_parquet_exports_load_or_fail_cleanly(opps: pd.DataFrame) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            opps.to_parquet(folder / "opportunities.parquet", index=False)
        except Exception:  # pyarrow cannot store this mix: not a loader input
            return
        crm = _load_or_error(folder)
        if crm is not None:
            _check_accounting(crm, {"opportunities": len(opps)})
            _check_valid(crm)


@fuzz
@given(opps=typed_opportunities())
def test_fuzzed_in_memory_tables_validate_or_fail_cleanly(opps: pd.DataFrame) -> None:
    try:
        crm = CRM.from_tables({"opportunities": opps})
    except ForecastkitError as exc:
        assert str(exc).strip()
        return
    _check_accounting(crm, {"opportunities": len(opps)})
    _check_valid(crm)


# ------------------------------------------------------------ odd files, by hand
GOOD_CSV = "opportunity_id,owner,created_at,close_date,amount,stage\no1,ana,2026-01-05,2026-06-01,100,proposal\n"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (
            b"opportunity_id;owner\no1;ana\n",
            r"required column\(s\) 'created_at'.*Found columns: opportunity_id, owner\. ",
        ),
        (b"\x00\x01\x02\xff\xfe binary junk", r"opportunities\.csv"),
        (
            "opportunity_id,owner,created_at,close_date,amount,stage\no1,Zoë,2026-01-05,2026-06-01,100,proposal\n".encode(
                "latin-1"
            ),
            "not UTF-8",
        ),
        (GOOD_CSV.encode("utf-16"), r"opportunities\.csv"),
        (b'opportunity_id,owner\n"unterminated,ana\n', r"opportunities\.csv"),
    ],
    ids=["empty", "blank-lines", "bom-only", "semicolon-missing-cols", "binary", "latin-1", "utf-16", "bad-quote"],
)
def test_odd_files_raise_a_forecastkit_error_naming_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    (tmp_path / "opportunities.csv").write_bytes(content)
    with pytest.raises(ForecastkitError, match=match):
        fk.load(tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        GOOD_CSV.encode("utf-8-sig"),  # a BOM (Excel's "CSV UTF-8")
        GOOD_CSV.replace(",", ";").encode(),  # Excel in French / German locales
        GOOD_CSV.replace(",", "\t").encode(),  # tab-separated
        GOOD_CSV.replace("\n", "\r\n").encode(),  # Windows line ends
        (GOOD_CSV + "\n\n").encode(),  # trailing blank lines
        GOOD_CSV.replace("ana", "a" * 1_000_000).encode(),  # a huge cell
    ],
    ids=["bom", "semicolon", "tab", "crlf", "trailing-blank-lines", "huge-cell"],
)
def test_common_export_variants_load_every_row(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "opportunities.csv").write_bytes(content)
    crm = fk.load(tmp_path)
    assert crm.load_report.summary[["rows_read", "rows_kept", "rows_rejected"]].iloc[0].tolist() == [1, 1, 0]
    assert crm.opportunities["amount"].tolist() == [100.0]
    assert crm.opportunities["stage"].tolist() == ["proposal"]


def test_header_only_file_gives_an_empty_snapshot_or_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "opportunities.csv").write_text("opportunity_id,owner,created_at,close_date,amount,stage\n")
    with pytest.raises(ForecastkitError, match="no dated event"):
        fk.load(tmp_path)
    (tmp_path / "crm.yaml").write_text("as_of: 2026-06-30\n")
    crm = fk.load(tmp_path)
    assert len(crm.opportunities) == 0 and crm.load_report.ok


def test_far_dates_are_rejected_not_crashing(tmp_path: Path) -> None:
    rows = ["0001-01-01", "9999-12-31", "2262-04-12", "1677-09-21", "2026-01-05"]
    body = "".join(f"o{i},ana,{d},2026-06-01,100,proposal\n" for i, d in enumerate(rows))
    (tmp_path / "opportunities.csv").write_text(GOOD_CSV.splitlines()[0] + "\n" + body)
    crm = fk.load(tmp_path)
    summary = crm.load_report.summary.iloc[0]
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_rejected"]) == (5, 1, 4)
    assert set(crm.load_report.rejected["reason"]) == {"not a date"}


def test_infinite_and_nan_amounts_are_rejected(tmp_path: Path) -> None:
    body = "".join(
        f"o{i},ana,2026-01-05,2026-06-01,{a},proposal\n" for i, a in enumerate(["inf", "-inf", "NaN", "1e309", "5"])
    )
    (tmp_path / "opportunities.csv").write_text(GOOD_CSV.splitlines()[0] + "\n" + body)
    crm = fk.load(tmp_path)
    assert crm.opportunities["amount"].tolist() == [5.0]
    assert crm.load_report.summary.iloc[0]["rows_rejected"] == 4
    assert all(math.isfinite(a) for a in crm.opportunities["amount"])
