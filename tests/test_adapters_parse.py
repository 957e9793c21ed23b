"""Shared parsing of export values: dates, money, percentages, booleans, CSV headers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecastkit.adapters._parse import (
    dedupe,
    drop_footer,
    for_validation,
    parse_bool,
    parse_dates,
    parse_money,
    parse_percent,
    pick,
    read_export,
)
from forecastkit.errors import DataError, SchemaError


def _s(*v: object) -> pd.Series:
    return pd.Series(list(v), dtype=object)


def test_salesforce_datetimes_are_read_as_utc():
    v, bad = parse_dates(
        _s("2023-10-28T20:45:25.000+0000", "2023-10-28T22:45:25.000+0200", "2023-10-28"), column="c", file="f"
    )
    assert list(v) == [
        pd.Timestamp("2023-10-28 20:45:25"),
        pd.Timestamp("2023-10-28 20:45:25"),
        pd.Timestamp("2023-10-28"),
    ]
    assert not bad.any()


def test_epoch_milliseconds_and_month_names():
    v, _ = parse_dates(_s("1698525925000", "Dec 31, 2026", None), column="c", file="f")
    assert v.iloc[0] == pd.Timestamp("2023-10-28 20:45:25")
    assert v.iloc[1] == pd.Timestamp("2026-12-31")
    assert pd.isna(v.iloc[2])


def test_day_first_column_is_detected_from_a_day_above_12():
    v, bad = parse_dates(_s("31/12/2026", "01/02/2026", "05.03.26"), column="Close Date", file="r.csv")
    assert list(v) == [pd.Timestamp("2026-12-31"), pd.Timestamp("2026-02-01"), pd.Timestamp("2026-03-05")]
    assert not bad.any()


def test_month_first_column_with_am_pm_times():
    v, _ = parse_dates(_s("12/31/2026 10:30 PM", "01/02/2026 09:05 AM"), column="c", file="f")
    assert list(v) == [pd.Timestamp("2026-12-31 22:30"), pd.Timestamp("2026-01-02 09:05")]


def test_ambiguous_day_month_raises_with_examples_and_fix():
    with pytest.raises(
        DataError,
        match=r"r\.csv: column 'Close Date' has dates whose day and month cannot be told apart \('01/02/2026', '03/04/2026'.*dayfirst=True",
    ):
        parse_dates(_s("01/02/2026", "03/04/2026"), column="Close Date", file="r.csv")


def test_ambiguous_dates_read_with_dayfirst_or_format():
    v, _ = parse_dates(_s("01/02/2026", "03/04/2026"), column="c", file="f", dayfirst=False)
    assert list(v) == [pd.Timestamp("2026-01-02"), pd.Timestamp("2026-03-04")]
    v, _ = parse_dates(_s("01/02/2026"), column="c", file="f", date_format="%d/%m/%Y")
    assert v.iloc[0] == pd.Timestamp("2026-02-01")


def test_dates_with_equal_day_and_month_are_not_ambiguous():
    v, _ = parse_dates(_s("05/05/2026"), column="c", file="f")
    assert v.iloc[0] == pd.Timestamp("2026-05-05")


def test_mixed_day_first_and_month_first_raises():
    with pytest.raises(
        DataError, match=r"mixes day-first dates \('31/01/2026'\) and month-first dates \('01/31/2026'\)"
    ):
        parse_dates(_s("31/01/2026", "01/31/2026"), column="c", file="f")


def test_unparseable_dates_are_marked_bad_and_kept_as_text_for_the_validator():
    raw = _s("2026-01-31", "soon", "")
    v, bad = parse_dates(raw, column="c", file="f")
    assert list(bad) == [False, True, False]
    out = for_validation(v, bad, raw)
    assert list(out[:2]) == ["2026-01-31T00:00:00", "soon"] and pd.isna(out[2])


def test_money_strings_with_currency_codes_symbols_and_separators():
    v, cur, bad = parse_money(
        _s("USD 485,000.00", "$1,200.50", "(1,000.00)", "EUR 3.5", None), column="Amount", file="r.csv"
    )
    np.testing.assert_allclose(v.iloc[:4], [485000.0, 1200.5, -1000.0, 3.5])
    assert pd.isna(v.iloc[4])
    assert cur.tolist()[:2] == ["USD", "USD"] and cur.iloc[3] == "EUR" and pd.isna(cur.iloc[2])
    assert not bad.any()


def test_money_with_comma_decimals_and_non_breaking_spaces():
    v, cur, _ = parse_money(_s("1\u00a0234,56 €", "EUR 485.000,00", "12,5"), column="Amount", file="f")
    np.testing.assert_allclose(v, [1234.56, 485000.0, 12.5])
    assert cur.iloc[0] == "EUR"


def test_money_that_could_be_thousands_or_decimals_raises():
    with pytest.raises(
        DataError,
        match=r"column 'Amount' has amounts such as '1,500', '2,000' where the separator may be a thousands or a decimal separator; pass decimal='.'",
    ):
        parse_money(_s("1,500", "2,000"), column="Amount", file="f")
    v, _, _ = parse_money(_s("1,500", "2,000"), column="Amount", file="f", decimal=".")
    assert list(v) == [1500.0, 2000.0]


def test_money_mixing_decimal_separators_raises():
    with pytest.raises(DataError, match=r"mixes '.' decimals \('1,200.50'\) and ',' decimals \('3,25'\)"):
        parse_money(_s("1,200.50", "3,25"), column="Amount", file="f")


def test_bad_money_is_marked():
    v, _, bad = parse_money(_s("12.00", "lots"), column="Amount", file="f")
    assert list(bad) == [False, True]
    assert list(for_validation(v, bad, _s("12.00", "lots"))) == ["12.0", "lots"]


def test_percentages():
    v, bad = parse_percent(_s("90%", "10", "7.5 %", "x", None), scale="percent")
    np.testing.assert_allclose(v.iloc[:3], [0.9, 0.1, 0.075])
    assert list(bad) == [False, False, False, True, False]
    v, _ = parse_percent(_s("0.4", "60%"), scale="fraction")
    np.testing.assert_allclose(v, [0.4, 0.6])


def test_booleans():
    v, bad = parse_bool(_s("true", "FALSE", "1", "maybe", None))
    assert list(v.iloc[:3]) == [True, False, True]
    assert list(bad) == [False, False, False, True, False]


def test_read_export_duplicated_headers(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("Owner,Owner,Stage,Stage\nann,ann,a,b\nbob,bob,c,d\n", encoding="utf-8")
    notes: list[str] = []
    df = read_export(p, notes=notes)
    assert list(df.columns) == ["Owner", "Stage", "Stage [2]"]
    assert notes == ["r.csv: column 'Owner' appears 2 times with the same values; kept one"]
    assert pick(df, ["Owner"], file="r.csv") == "Owner"
    with pytest.raises(
        SchemaError, match=r"r\.csv: column 'Stage' appears 2 times with different values \(Stage, Stage \[2\]\)"
    ):
        pick(df, ["Stage"], file="r.csv")


def test_read_export_semicolons_bom_and_footer(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text('\ufeffId;Name\n1;"a;b"\n2;c\n"Grand Totals (2 records)";\n', encoding="utf-8")
    notes: list[str] = []
    df = read_export(p, notes=notes, dedupe_now=False)
    df, n = drop_footer(df, file="r.csv", notes=notes)
    df = dedupe(df, file="r.csv", notes=notes)
    assert n == 1 and list(df["Name"]) == ["a;b", "c"]
    assert notes == ["r.csv: 1 footer line(s) of the report not loaded (Grand Totals (2 records))"]


def test_read_export_errors(tmp_path):
    with pytest.raises(SchemaError, match=r"nope\.csv: no such file"):
        read_export(tmp_path / "nope.csv")
    (tmp_path / "e.csv").write_text("", encoding="utf-8")
    with pytest.raises(SchemaError, match=r"e\.csv: the file is empty"):
        read_export(tmp_path / "e.csv")
    (tmp_path / "l.csv").write_bytes("Name\nJos\xe9\n".encode("latin-1"))
    with pytest.raises(SchemaError, match=r"l\.csv: not utf-8 text .*encoding='latin-1'"):
        read_export(tmp_path / "l.csv")
    assert read_export(tmp_path / "l.csv", encoding="latin-1")["Name"].iloc[0] == "José"
