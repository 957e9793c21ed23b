"""The fiscal calendar: periods such as ``2026-Q4``, ``2026-H1``, ``2026-11`` or ``FY2026``.

Conventions (stated once, used everywhere):

* A fiscal year starts on the first day of ``playbook.fiscal_year_start_month``
  and is **named by the calendar year in which it ends** (Salesforce's
  default and most companies' usage: with a February start, FY2027 runs from
  2026-02-01 to 2027-01-31). With a January start, fiscal = calendar year.
* ``YYYY-Qn`` is the n-th fiscal quarter of fiscal year YYYY; ``YYYY-Hn`` a
  fiscal half; ``YYYY`` or ``FYYYYY`` the fiscal year; ``YYYY-MM`` a calendar
  month.
* A :class:`Period` is the half-open interval ``[start, end)`` of dates;
  ``last_day`` is the inclusive end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from forecastkit.errors import PeriodError
from forecastkit.playbook import DEFAULT_PLAYBOOK, Playbook

__all__ = ["Period", "parse_period", "period_of", "periods_between", "to_timestamp", "Freq"]

Freq = Literal["month", "quarter", "half", "year"]
_MONTHS = {"month": 1, "quarter": 3, "half": 6, "year": 12}


@dataclass(frozen=True)
class Period:
    """A fiscal period: ``label`` and the half-open date interval ``[start, end)``."""

    label: str
    start: pd.Timestamp
    end: pd.Timestamp
    freq: Freq

    @property
    def last_day(self) -> pd.Timestamp:
        """The last calendar day inside the period."""
        return self.end - pd.Timedelta(days=1)

    @property
    def days(self) -> int:
        """Number of days in the period."""
        return int((self.end - self.start).days)

    def contains(self, dates: pd.Series | pd.Timestamp) -> pd.Series | bool:
        """True where ``start <= date < end`` (vectorised over a Series; a scalar may be any date-like)."""
        if not isinstance(dates, pd.Series):
            dates = to_timestamp(dates)
        return (dates >= self.start) & (dates < self.end)

    def shift(self, n: int, playbook: Playbook = DEFAULT_PLAYBOOK) -> Period:
        """The period ``n`` steps later (earlier when negative), same frequency."""
        start = self.start + pd.DateOffset(months=n * _MONTHS[self.freq])
        return period_of(start, self.freq, playbook)

    def __str__(self) -> str:
        return self.label


def to_timestamp(value: object, *, what: str = "date") -> pd.Timestamp:
    """Parse a date given as text, date or Timestamp; a clear error otherwise."""
    if isinstance(value, pd.Timestamp):
        ts = value
    else:
        try:
            ts = pd.Timestamp(value)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            raise PeriodError(f"{what} {value!r} is not a date; use ISO format YYYY-MM-DD, e.g. '2026-06-30'") from None
    if ts is pd.NaT or pd.isna(ts):
        raise PeriodError(f"{what} is missing; give a date as YYYY-MM-DD")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _fy_start(fy: int, m: int) -> pd.Timestamp:
    return pd.Timestamp(year=fy if m == 1 else fy - 1, month=m, day=1)


def parse_period(text: str | Period, playbook: Playbook = DEFAULT_PLAYBOOK) -> Period:
    """Parse ``2026-Q4``, ``2026-H1``, ``2026-11``, ``2026`` or ``FY2026``.

    Examples
    --------
    >>> p = parse_period("2026-Q4")
    >>> (str(p.start.date()), str(p.last_day.date()))
    ('2026-10-01', '2026-12-31')
    """
    if isinstance(text, Period):
        return text
    s = str(text).strip().upper()
    m = playbook.fiscal_year_start_month
    if mt := re.fullmatch(r"(?:FY)?(\d{4})-?Q([1-4])", s):
        fy, q = int(mt[1]), int(mt[2])
        start = _fy_start(fy, m) + pd.DateOffset(months=3 * (q - 1))
        return Period(f"{fy}-Q{q}", start, start + pd.DateOffset(months=3), "quarter")
    if mt := re.fullmatch(r"(?:FY)?(\d{4})-?H([12])", s):
        fy, h = int(mt[1]), int(mt[2])
        start = _fy_start(fy, m) + pd.DateOffset(months=6 * (h - 1))
        return Period(f"{fy}-H{h}", start, start + pd.DateOffset(months=6), "half")
    if mt := re.fullmatch(r"(\d{4})-(\d{1,2})", s):
        year, month = int(mt[1]), int(mt[2])
        if not 1 <= month <= 12:
            raise PeriodError(f"period {text!r}: month {month} is not 1-12")
        start = pd.Timestamp(year=year, month=month, day=1)
        return Period(f"{year}-{month:02d}", start, start + pd.DateOffset(months=1), "month")
    if mt := re.fullmatch(r"(?:FY)?(\d{4})", s):
        fy = int(mt[1])
        start = _fy_start(fy, m)
        return Period(f"FY{fy}", start, start + pd.DateOffset(months=12), "year")
    raise PeriodError(
        f"period {text!r} is not understood; use a fiscal quarter '2026-Q4', half '2026-H1', "
        "year 'FY2026' or calendar month '2026-11'"
    )


def period_of(date: object, freq: Freq = "quarter", playbook: Playbook = DEFAULT_PLAYBOOK) -> Period:
    """The fiscal period of frequency ``freq`` that contains ``date``."""
    ts = to_timestamp(date).normalize()
    if freq == "month":
        return parse_period(f"{ts.year}-{ts.month:02d}", playbook)
    if freq not in _MONTHS:
        raise PeriodError(f"freq {freq!r} is not one of {', '.join(_MONTHS)}")
    m = playbook.fiscal_year_start_month
    months_into_fy = (ts.month - m) % 12
    fy_start_year = ts.year if ts.month >= m else ts.year - 1
    fy = fy_start_year if m == 1 else fy_start_year + 1
    if freq == "year":
        return parse_period(f"FY{fy}", playbook)
    if freq == "half":
        return parse_period(f"{fy}-H{months_into_fy // 6 + 1}", playbook)
    return parse_period(f"{fy}-Q{months_into_fy // 3 + 1}", playbook)


def periods_between(
    start: object, end: object, freq: Freq = "quarter", playbook: Playbook = DEFAULT_PLAYBOOK
) -> list[Period]:
    """Every period of ``freq`` overlapping ``[start, end]``, in order."""
    first = period_of(start, freq, playbook)
    last_ts = to_timestamp(end, what="end")
    if last_ts < to_timestamp(start, what="start"):
        raise PeriodError(f"end {last_ts.date()} is before start {to_timestamp(start).date()}; swap them")
    out = [first]
    while out[-1].end <= last_ts:
        out.append(out[-1].shift(1, playbook))
    return out
