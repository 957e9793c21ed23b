"""The fiscal calendar: parsing, period_of, shift, periods_between, bad inputs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecastkit.errors import PeriodError
from forecastkit.periods import Period, parse_period, period_of, periods_between, to_timestamp
from forecastkit.playbook import Playbook

FEB = Playbook(fiscal_year_start_month=2)
JUL = Playbook(fiscal_year_start_month=7)
PLAYBOOKS = {1: Playbook(), 2: FEB, 7: JUL}


def _span(p: Period) -> tuple[str, str]:
    return str(p.start.date()), str(p.last_day.date())


# ---------------------------------------------------------- calendar year
@pytest.mark.parametrize(
    ("text", "label", "span", "freq"),
    [
        ("2026-Q1", "2026-Q1", ("2026-01-01", "2026-03-31"), "quarter"),
        ("2026-Q4", "2026-Q4", ("2026-10-01", "2026-12-31"), "quarter"),
        ("2026q2", "2026-Q2", ("2026-04-01", "2026-06-30"), "quarter"),
        ("FY2026-Q3", "2026-Q3", ("2026-07-01", "2026-09-30"), "quarter"),
        ("2026-H1", "2026-H1", ("2026-01-01", "2026-06-30"), "half"),
        ("2026-H2", "2026-H2", ("2026-07-01", "2026-12-31"), "half"),
        ("2026", "FY2026", ("2026-01-01", "2026-12-31"), "year"),
        ("FY2026", "FY2026", ("2026-01-01", "2026-12-31"), "year"),
        (" fy2026 ", "FY2026", ("2026-01-01", "2026-12-31"), "year"),
        ("2026-02", "2026-02", ("2026-02-01", "2026-02-28"), "month"),
        ("2024-2", "2024-02", ("2024-02-01", "2024-02-29"), "month"),
        ("2026-11", "2026-11", ("2026-11-01", "2026-11-30"), "month"),
    ],
)
def test_parse_period_calendar_year(text: str, label: str, span: tuple[str, str], freq: str) -> None:
    p = parse_period(text)
    assert (p.label, _span(p), p.freq) == (label, span, freq)
    assert str(p) == label


def test_period_properties() -> None:
    p = parse_period("2026-Q1")
    assert p.days == 90
    assert p.last_day == pd.Timestamp("2026-03-31")
    assert p.end == pd.Timestamp("2026-04-01")
    assert parse_period(p) is p


# ---------------------------------------------------- shifted fiscal years
@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("FY2027", ("2026-02-01", "2027-01-31")),
        ("2027-Q1", ("2026-02-01", "2026-04-30")),
        ("2027-Q4", ("2026-11-01", "2027-01-31")),
        ("2027-H2", ("2026-08-01", "2027-01-31")),
        ("2026-11", ("2026-11-01", "2026-11-30")),  # months stay calendar months
    ],
)
def test_parse_period_february_start(text: str, span: tuple[str, str]) -> None:
    assert _span(parse_period(text, FEB)) == span


@pytest.mark.parametrize(
    ("text", "span"),
    [
        ("FY2026", ("2025-07-01", "2026-06-30")),
        ("2026-Q1", ("2025-07-01", "2025-09-30")),
        ("2026-Q3", ("2026-01-01", "2026-03-31")),
        ("2026-H1", ("2025-07-01", "2025-12-31")),
    ],
)
def test_parse_period_july_start(text: str, span: tuple[str, str]) -> None:
    assert _span(parse_period(text, JUL)) == span


@pytest.mark.parametrize(
    ("date", "month", "freq", "label"),
    [
        ("2026-01-31", 2, "year", "FY2026"),
        ("2026-02-01", 2, "year", "FY2027"),
        ("2027-01-31", 2, "year", "FY2027"),
        ("2026-02-01", 2, "quarter", "2027-Q1"),
        ("2026-12-15", 2, "quarter", "2027-Q4"),
        ("2026-07-31", 2, "half", "2027-H1"),
        ("2026-08-01", 2, "half", "2027-H2"),
        ("2026-06-30", 7, "year", "FY2026"),
        ("2026-07-01", 7, "year", "FY2027"),
        ("2026-07-01", 7, "quarter", "2027-Q1"),
        ("2026-05-20", 7, "quarter", "2026-Q4"),
        ("2026-05-20", 1, "quarter", "2026-Q2"),
        ("2026-05-20", 1, "month", "2026-05"),
        ("2026-05-20", 7, "month", "2026-05"),
        ("2026-12-31 23:59:59", 1, "year", "FY2026"),
    ],
)
def test_period_of(date: str, month: int, freq: str, label: str) -> None:
    p = period_of(date, freq, PLAYBOOKS[month])  # type: ignore[arg-type]
    assert p.label == label
    assert p.contains(pd.Timestamp(date))


def test_period_of_accepts_date_objects_and_tz_aware() -> None:
    assert period_of(dt.date(2026, 5, 3)).label == "2026-Q2"
    assert period_of(pd.Timestamp("2026-05-03", tz="UTC"), "month").label == "2026-05"


def test_contains_scalars_and_series() -> None:
    p = parse_period("2026-Q2")
    assert p.contains(dt.date(2026, 4, 1))
    assert p.contains("2026-06-30")
    assert not p.contains(pd.Timestamp("2026-07-01"))
    s = pd.Series(
        pd.to_datetime(["2026-03-31", "2026-04-01", "2026-06-30 23:00", "2026-07-01", None], format="ISO8601")
    )
    assert p.contains(s).tolist() == [False, True, True, False, False]


@settings(max_examples=200, deadline=None)
@given(
    date=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2200, 12, 31)),
    freq=st.sampled_from(["month", "quarter", "half", "year"]),
    month=st.integers(1, 12),
)
def test_period_of_round_trip(date: dt.date, freq: str, month: int) -> None:
    pb = Playbook(fiscal_year_start_month=month)
    p = period_of(date, freq, pb)  # type: ignore[arg-type]
    assert p.contains(pd.Timestamp(date))
    assert p.freq == freq
    assert parse_period(p.label, pb) == p
    nxt = p.shift(1, pb)
    assert nxt.start == p.end
    assert nxt.shift(-1, pb) == p
    # the fiscal year is named by the calendar year in which it ends
    fy = period_of(date, "year", pb)
    assert fy.label == f"FY{fy.last_day.year}"
    assert p.start >= fy.start or freq == "month"


@pytest.mark.parametrize(
    ("text", "n", "label"),
    [
        ("2026-Q4", 1, "2027-Q1"),
        ("2026-Q1", -1, "2025-Q4"),
        ("2026-Q2", 8, "2028-Q2"),
        ("2026-H2", 1, "2027-H1"),
        ("2026-12", 1, "2027-01"),
        ("2026-01", -13, "2024-12"),
        ("FY2026", -2, "FY2024"),
        ("2026-Q3", 0, "2026-Q3"),
    ],
)
def test_shift(text: str, n: int, label: str) -> None:
    assert parse_period(text).shift(n).label == label


def test_shift_with_fiscal_calendar() -> None:
    assert parse_period("2027-Q4", FEB).shift(1, FEB).label == "2028-Q1"
    assert _span(parse_period("2027-Q4", FEB).shift(1, FEB)) == ("2027-02-01", "2027-04-30")


def test_periods_between() -> None:
    labels = [p.label for p in periods_between("2026-02-15", "2026-10-01")]
    assert labels == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]
    # an end on a period's last day does not spill over
    assert [p.label for p in periods_between("2026-01-01", "2026-06-30")] == ["2026-Q1", "2026-Q2"]
    assert [p.label for p in periods_between("2026-05-01", "2026-05-01", "month")] == ["2026-05"]
    assert [p.label for p in periods_between("2026-01-10", "2026-03-01", "month")] == ["2026-01", "2026-02", "2026-03"]
    assert [p.label for p in periods_between("2026-01-10", "2027-03-01", "year", FEB)] == ["FY2026", "FY2027", "FY2028"]
    ps = periods_between("2025-01-01", "2026-12-31", "half", JUL)
    assert all(a.end == b.start for a, b in zip(ps, ps[1:], strict=False))


def test_periods_between_end_before_start() -> None:
    with pytest.raises(PeriodError, match=r"end 2025-01-01 is before start 2026-06-01; swap them"):
        periods_between("2026-06-01", "2025-01-01")


# -------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("text", ["2026-Q5", "Q4", "", None, "26-Q1", "2026-H3", "next quarter", "2026/11"])
def test_parse_period_bad_input(text: object) -> None:
    with pytest.raises(PeriodError, match=r"is not understood; use a fiscal quarter '2026-Q4', half '2026-H1', year"):
        parse_period(text)  # type: ignore[arg-type]


def test_parse_period_bad_month() -> None:
    with pytest.raises(PeriodError, match=r"period '2026-13': month 13 is not 1-12"):
        parse_period("2026-13")
    with pytest.raises(PeriodError, match=r"month 0 is not 1-12"):
        parse_period("2026-00")


def test_period_of_bad_inputs() -> None:
    with pytest.raises(PeriodError, match=r"freq 'week' is not one of month, quarter, half, year"):
        period_of("2026-01-01", "week")  # type: ignore[arg-type]
    with pytest.raises(PeriodError, match=r"date 'soon' is not a date; use ISO format YYYY-MM-DD"):
        period_of("soon")
    with pytest.raises(PeriodError, match=r"date is missing; give a date as YYYY-MM-DD"):
        period_of(None)
    with pytest.raises(PeriodError, match=r"date is missing"):
        period_of("")


def test_to_timestamp() -> None:
    assert to_timestamp("2026-05-03") == pd.Timestamp("2026-05-03")
    assert to_timestamp(dt.datetime(2026, 5, 3, 12)) == pd.Timestamp("2026-05-03 12:00")
    assert to_timestamp(pd.Timestamp("2026-05-03 10:00", tz="Europe/Paris")) == pd.Timestamp("2026-05-03 08:00")
    with pytest.raises(PeriodError, match=r"as_of '31/02/2026' is not a date"):
        to_timestamp("31/02/2026", what="as_of")
    with pytest.raises(PeriodError, match=r"as_of is missing"):
        to_timestamp(pd.NaT, what="as_of")
