"""Shared parsing of CRM export values: files, dates, money, percentages, booleans.

Every parser takes a raw text column and returns ``(values, bad)``: the parsed
values and a mask of the non-empty cells that could not be parsed. Adapters
hand the bad cells on to validation as their raw text (see :func:`for_validation`)
so that they are rejected with their row number, never silently emptied.

Ambiguous inputs raise instead of being guessed: a date column whose values all
fit both day/month orders (``03/04/2026``), or a money column whose only
separator could be a decimal or a thousands separator (``1,500``).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from forecastkit.errors import DataError, SchemaError

__all__ = [
    "read_export",
    "pick",
    "drop_footer",
    "dedupe",
    "parse_dates",
    "parse_money",
    "parse_percent",
    "parse_bool",
    "for_validation",
    "blank",
    "examples",
    "TEXT",
]

_MAX_EXAMPLES = 3
#: Text dtype used while parsing: pyarrow-backed strings (vectorised string functions).
TEXT = pd.StringDtype("pyarrow")
_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "CHF": "CHF", "Fr.": "CHF", "R$": "BRL"}


# ----------------------------------------------------------------------------- files
def _sniff(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t", "|")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def read_export(
    path: str | Path,
    *,
    usecols: Callable[[str], bool] | Iterable[str] | None = None,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    notes: list[str] | None = None,
    dedupe_now: bool = True,
) -> pd.DataFrame:
    """Read a CRM export as text columns (pyarrow-backed strings; empty cells missing).

    Duplicated header names (report exports repeat labels) are kept apart as
    ``"Name"``, ``"Name [2]"``...; when the duplicates hold the same values only
    the first is kept (and a note says so; ``dedupe_now=False`` defers that to
    :func:`dedupe`, e.g. after dropping report footers). :func:`pick` refuses a
    column that is duplicated with different values.

    Parameters
    ----------
    path : str or Path
        The CSV file (``,``, ``;``, tab or ``|`` separated, detected from the header line).
    usecols : callable or list of str, optional
        Only these header names are read (saves memory on large exports).
    encoding : str
        File encoding; use ``"latin-1"`` or ``"cp1252"`` for old Excel-saved exports.
    notes : list of str, optional
        Receives notes about dropped duplicate columns and footer lines.

    Returns
    -------
    DataFrame
        One column per (de-duplicated) header, text values.
    """
    path = Path(path)
    name = path.name
    if not path.exists():
        raise SchemaError(f"{path}: no such file; check the path of the export")
    try:
        with open(path, encoding=encoding, newline="") as fh:
            first = fh.readline()
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{name}: not {encoding} text ({exc.reason} at byte {exc.start}); pass encoding='latin-1' (or 'cp1252')"
        ) from None
    first = first.lstrip("\ufeff")
    if not first.strip():
        raise SchemaError(f"{name}: the file is empty (no header line); export the report again")
    sep = delimiter or _sniff(first)
    header = next(csv.reader(io.StringIO(first), delimiter=sep))
    header = [h.strip() for h in header]
    unique: list[str] = []
    seen: dict[str, int] = {}
    for h in header:
        seen[h] = seen.get(h, 0) + 1
        unique.append(h if seen[h] == 1 else f"{h} [{seen[h]}]")
    if usecols is None:
        keep = unique
    elif callable(usecols):
        keep = [u for u, h in zip(unique, header, strict=True) if usecols(h)]
    else:
        wanted = set(usecols)
        keep = [u for u, h in zip(unique, header, strict=True) if h in wanted]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=unique, skip_rows=1, encoding=encoding, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={u: pa.string() for u in keep},
                include_columns=keep,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc).split("\n")[0]
        raise SchemaError(
            f"{name}: cannot be read as CSV ({msg}). Check the delimiter and quoting of the export"
        ) from None
    df = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    return dedupe(df, file=name, notes=notes) if dedupe_now else df


def dedupe(df: pd.DataFrame, *, file: str, notes: list[str] | None) -> pd.DataFrame:
    """Drop copies of a duplicated header that hold the same values as the first (noting it)."""
    for c in [c for c in df.columns if not c.endswith("]")]:
        copies = [x for x in df.columns if x.startswith(f"{c} [") and x.endswith("]")]
        same = [x for x in copies if df[x].equals(df[c])]
        if same:
            df = df.drop(columns=same)
            if notes is not None:
                notes.append(f"{file}: column {c!r} appears {len(same) + 1} times with the same values; kept one")
    return df


def pick(df: pd.DataFrame, names: Iterable[str], *, file: str) -> str | None:
    """The first of ``names`` present in ``df``; raise when it is duplicated with different values."""
    for n in names:
        if n in df.columns:
            copies = [c for c in df.columns if c.startswith(f"{n} [")]
            if copies:
                raise SchemaError(
                    f"{file}: column {n!r} appears {len(copies) + 1} times with different values "
                    f"({', '.join([n, *copies])}); remove the extra column(s) from the report or rename them"
                )
            return n
    return None


def drop_footer(df: pd.DataFrame, *, file: str, notes: list[str]) -> tuple[pd.DataFrame, int]:
    """Drop report footer lines (only the first cell filled: totals, copyright, report name); return rows dropped."""
    if df.empty or df.shape[1] < 2:
        return df, 0
    others = df.iloc[:, 1:].notna().any(axis=1).to_numpy()
    n = 0
    while n < len(df) and not others[len(df) - 1 - n]:
        n += 1
    if n:
        last = df.iloc[len(df) - n :, 0].dropna().astype(str).tolist()
        notes.append(f"{file}: {n} footer line(s) of the report not loaded ({'; '.join(last[:3])[:120]})")
        df = df.iloc[: len(df) - n]
    return df, n


# ----------------------------------------------------------------------------- helpers
def blank(s: pd.Series) -> pd.Series:
    """True where a cell is missing or only spaces."""
    out = s.isna()
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        out = out | (s.astype(TEXT).str.strip() == "").fillna(True)
    return out.astype(bool)


def examples(s: pd.Series, mask: pd.Series, rows: np.ndarray | None = None) -> str:
    """``row 3: '31/02/2026', row 9: 'soon'`` for the first few cells where ``mask`` holds (1-based rows)."""
    idx = np.flatnonzero(np.asarray(mask, dtype=bool))[:_MAX_EXAMPLES]
    rr = rows if rows is not None else np.arange(1, len(s) + 1)
    parts = [f"row {rr[i]}: {str(s.iloc[i])!r}" for i in idx]
    more = int(np.asarray(mask).sum()) - len(idx)
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def for_validation(values: pd.Series, bad: pd.Series, raw: pd.Series) -> pd.Series:
    """Parsed values, or - when some cells are bad - text where bad cells keep their raw text for the validator."""
    if not bool(np.asarray(bad).any()):
        return values
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        txt = values.dt.strftime("%Y-%m-%dT%H:%M:%S").astype(object)
    else:
        txt = values.astype(object).where(values.notna(), None)
        txt = txt.map(lambda v: None if v is None else repr(float(v)) if isinstance(v, float) else v)
    txt = txt.where(~np.asarray(bad), raw.astype(object))
    return txt


# ----------------------------------------------------------------------------- dates
# formats tried first, vectorised in pyarrow (API exports); True = the text carries a UTC offset
_FAST_FORMATS = (
    ("%Y-%m-%dT%H:%M:%S.000%z", True),
    ("%Y-%m-%dT%H:%M:%S%z", True),
    ("%Y-%m-%dT%H:%M:%S.000Z", False),
    ("%Y-%m-%dT%H:%M:%SZ", False),
    ("%Y-%m-%d", False),
    ("%Y-%m-%d %H:%M:%S", False),
    ("%Y-%m-%dT%H:%M:%S", False),
)


def _arrow_dates(raw: pd.Series, out: pd.Series, present: pd.Series) -> pd.Series | None:
    """Parse the common machine formats with pyarrow into ``out``; return the mask of cells done (None: not arrow text)."""
    if not (isinstance(raw.dtype, pd.StringDtype) and raw.dtype.storage == "pyarrow"):
        return None
    arr = pa.array(raw.array)
    secs = np.full(len(raw), np.iinfo(np.int64).min, dtype=np.int64)
    todo = present.to_numpy(dtype=bool).copy()
    for fmt, _tz in _FAST_FORMATS:
        if not todo.any():
            break
        r = pc.strptime(arr, format=fmt, unit="s", error_is_null=True)
        ok = r.is_valid().to_numpy(zero_copy_only=False) & todo
        if ok.any():
            secs[ok] = r.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)[ok]
            todo &= ~ok
    done = present.to_numpy(dtype=bool) & ~todo
    if done.any():
        out[done] = pd.to_datetime(secs[done], unit="s")
    return pd.Series(done, index=raw.index) | ~present


_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}")
_DMY = r"^(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{2}|\d{4})(?:[ T,]+(.*))?$"
_EPOCH = re.compile(r"^-?\d{11,13}$")
_TIME_FORMATS = ("", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p")


def parse_dates(
    raw: pd.Series,
    *,
    column: str,
    file: str,
    dayfirst: bool | None = None,
    date_format: str | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Parse dates and datetimes; return naive UTC timestamps and the mask of unparseable cells.

    Understood without options: ISO dates and datetimes with or without offset
    (Salesforce ``2023-10-28T20:45:25.000+0000``, HubSpot ``...Z``), epoch
    milliseconds (HubSpot API), month names (``Dec 31, 2026``), and numeric
    dates with ``/``, ``.`` or ``-`` (``31/12/2026``, ``12/31/2026 10:30 AM``)
    whose day/month order is told by the column itself (a first number above 12
    means day first, a second above 12 means month first).

    Raises
    ------
    DataError
        When a numeric date column fits both orders (every value has day and
        month <= 12) or holds both orders; pass ``dayfirst=`` or ``date_format=``.
    """
    present = ~blank(raw)
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    if not present.any():
        return out, pd.Series(False, index=raw.index)
    done = _arrow_dates(raw, out, present) if date_format is None else None
    if done is not None:
        if bool(done.all()):
            return out, pd.Series(False, index=raw.index)
        present = present & ~done
    txt = raw.astype(TEXT).str.strip()
    if date_format is not None:
        parsed = pd.to_datetime(txt.where(present).astype(object), format=date_format, errors="coerce")
        out[present] = parsed[present]
        return out, present & out.isna()
    iso = present & txt.str.match(_ISO).fillna(False).astype(bool)
    if iso.any():
        p = pd.to_datetime(txt[iso].astype(object), format="ISO8601", utc=True, errors="coerce")
        out[iso] = p.dt.tz_localize(None).astype("datetime64[ns]")
    rest = present & ~iso
    if rest.any():
        epoch = rest & txt.str.match(_EPOCH).fillna(False).astype(bool)
        if epoch.any():
            out[epoch] = pd.to_datetime(pd.to_numeric(txt[epoch]), unit="ms", errors="coerce")
            rest &= ~epoch
    if rest.any():
        parts = txt[rest].str.extract(_DMY)
        numeric = parts[0].notna()
        if numeric.any():
            idx = parts.index[numeric]
            a = parts.loc[idx, 0].astype(int)
            b = parts.loc[idx, 1].astype(int)
            order = dayfirst
            if order is None:
                day_first, month_first = bool((a > 12).any()), bool((b > 12).any())
                if day_first and month_first:
                    ex_d = txt[idx][(a > 12).to_numpy()].head(2).tolist()
                    ex_m = txt[idx][(b > 12).to_numpy()].head(2).tolist()
                    raise DataError(
                        f"{file}: column {column!r} mixes day-first dates ({', '.join(map(repr, ex_d))}) and "
                        f"month-first dates ({', '.join(map(repr, ex_m))}); re-export the file with one date format "
                        "or fix those rows"
                    )
                if not day_first and not month_first:
                    if bool((a == b).all()):
                        order = True
                    else:
                        ex = txt[idx][(a != b).to_numpy()].head(_MAX_EXAMPLES).tolist()
                        raise DataError(
                            f"{file}: column {column!r} has dates whose day and month cannot be told apart "
                            f"({', '.join(map(repr, ex))}: day/month or month/day?). Pass dayfirst=True for "
                            "31/12/2026-style dates or dayfirst=False for 12/31/2026-style dates "
                            "(or date_format='%d/%m/%Y')"
                        )
                else:
                    order = day_first
            d, m = (a, b) if order else (b, a)
            y = parts.loc[idx, 2]
            y = y.where(y.str.len() == 4, "20" + y)
            iso_txt = y + "-" + m.astype(str).str.zfill(2) + "-" + d.astype(str).str.zfill(2)
            tail = parts.loc[idx, 3].fillna("").str.strip().str.upper()
            parsed = pd.Series(pd.NaT, index=idx, dtype="datetime64[ns]")
            for tf in _TIME_FORMATS:
                todo = parsed.isna()
                if not todo.any():
                    break
                cand = (iso_txt[todo] + (" " + tail[todo]).where(tail[todo] != "", "")).str.strip()
                parsed[todo] = pd.to_datetime(cand.astype(object), format="%Y-%m-%d" + tf, errors="coerce")
            out[idx] = parsed
            rest &= ~rest.index.isin(idx)
    if rest.any():  # month names and other unambiguous text forms
        vals = txt[rest].astype(object)
        try:
            p = pd.to_datetime(vals, format="mixed", errors="coerce", utc=True, dayfirst=bool(dayfirst))
            out[rest] = p.dt.tz_localize(None).astype("datetime64[ns]")
        except (ValueError, TypeError, OverflowError):
            pass
    return out, present & out.isna()


# ----------------------------------------------------------------------------- money
def _arrow_numbers(raw: pd.Series) -> pd.Series | None:
    """Plain numbers cast by pyarrow (None when the column is not arrow text or holds anything else)."""
    if not (isinstance(raw.dtype, pd.StringDtype) and raw.dtype.storage == "pyarrow"):
        return None
    try:
        v = pc.cast(pa.array(raw.array), pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return pd.Series(v.to_numpy(zero_copy_only=False), index=raw.index, dtype="float64")


_MONEY = re.compile(
    r"^(?P<neg1>-)?\(?(?P<pre>[A-Z]{3}|[$€£¥₹]|R\$|Fr\.)?\s*(?P<neg2>-)?(?P<num>\d[\d.,' ]*)\s*(?P<post>[A-Z]{3}|[$€£¥₹])?\)?$"
)


def parse_money(
    raw: pd.Series,
    *,
    column: str,
    file: str,
    decimal: Literal[".", ","] | None = None,
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse money strings; return ``(amount, currency, bad)``.

    Understands ``485000``, ``485,000.00``, ``USD 485,000.00``, ``$485,000.00``,
    ``485.000,00 EUR``, ``1 234,56 €`` (spaces, also non-breaking, as thousands
    separators), ``(1,000.00)`` and ``-1,000.00``. ``currency`` holds the ISO
    code found in the cell (symbols mapped: $ USD, € EUR, £ GBP, ¥ JPY), else missing.

    The decimal separator is the one told by ``decimal``, or inferred from the
    column: the last separator of a value with both ``.`` and ``,``, or one
    followed by 1, 2 or more than 3 digits.

    Raises
    ------
    DataError
        When the column both uses ``.`` and ``,`` as decimal separator, or when
        every separator could be a thousands or a decimal separator (``1,500``):
        pass ``decimal='.'`` or ``decimal=','``.
    """
    idx = raw.index
    currency = pd.Series(pd.NA, index=idx, dtype="string")
    present = ~blank(raw)
    if not present.any():
        return pd.Series(np.nan, index=idx, dtype="float64"), currency, pd.Series(False, index=idx)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64"), currency, pd.Series(False, index=idx)
    quick = _arrow_numbers(raw)
    if quick is None:
        quick = pd.to_numeric(raw.where(present), errors="coerce")
    if quick.notna().sum() == present.sum():  # plain numbers: the fast path for API exports
        return quick.astype("float64"), currency, pd.Series(False, index=idx)
    txt = raw.where(present).astype(TEXT).str.replace("\u00a0", " ").str.replace("\u202f", " ").str.strip()
    m = txt.str.extract(_MONEY)
    ok = present & m["num"].notna()
    num = m["num"].str.replace(r"[ ']", "", regex=True)
    cur = m["pre"].fillna(m["post"])
    cur = cur.map(lambda c: _SYMBOLS.get(c, c) if isinstance(c, str) else c)
    currency[ok] = cur[ok]
    dec = decimal
    if dec is None:
        body = num[ok]
        both = body.str.contains(",", regex=False) & body.str.contains(".", regex=False)
        last_dot = body.str.rfind(".") > body.str.rfind(",")
        dot_dec = (both & last_dot) | (~both & body.str.contains(r"\.(?:\d{1,2}|\d{4,})$", regex=True))
        comma_dec = (both & ~last_dot) | (~both & body.str.contains(r",(?:\d{1,2}|\d{4,})$", regex=True))
        dot_dec |= body.str.count(r",") > 1  # 1,234,567 -> comma is a thousands separator
        comma_dec |= body.str.count(r"\.") > 1  # 1.234.567 -> dot is a thousands separator
        dot_dec, comma_dec = dot_dec.fillna(False).astype(bool), comma_dec.fillna(False).astype(bool)
        if dot_dec.any() and comma_dec.any():
            ex1 = txt[ok][dot_dec.to_numpy()].head(2).tolist()
            ex2 = txt[ok][comma_dec.to_numpy()].head(2).tolist()
            raise DataError(
                f"{file}: column {column!r} mixes '.' decimals ({', '.join(map(repr, ex1))}) and ',' decimals "
                f"({', '.join(map(repr, ex2))}); re-export with one number format or pass decimal='.' or decimal=','"
            )
        if dot_dec.any():
            dec = "."
        elif comma_dec.any():
            dec = ","
        else:
            seps = body.str.contains(r"[.,]", regex=True).fillna(False).astype(bool)
            if seps.any():
                ex = txt[ok][seps.to_numpy()].head(_MAX_EXAMPLES).tolist()
                raise DataError(
                    f"{file}: column {column!r} has amounts such as {', '.join(map(repr, ex))} where the separator "
                    "may be a thousands or a decimal separator; pass decimal='.' (1,500 = fifteen hundred) or "
                    "decimal=',' (1,500 = one and a half)"
                )
            dec = "."
    thousands = "," if dec == "." else "."
    clean = num.str.replace(thousands, "", regex=False)
    if dec == ",":
        clean = clean.str.replace(",", ".", regex=False)
    value = pd.to_numeric(clean.where(ok), errors="coerce").astype("float64").rename(raw.name)
    neg = (m["neg1"].notna() | m["neg2"].notna() | (txt.str.startswith("(") & txt.str.endswith(")"))).fillna(False)
    value = value.where(~neg.astype(bool), -value)
    bad = present & value.isna()
    return value, currency, bad


# ----------------------------------------------------------------------------- percent, bool
def parse_percent(
    raw: pd.Series, *, scale: Literal["percent", "fraction"] = "percent", decimal: Literal[".", ","] = "."
) -> tuple[pd.Series, pd.Series]:
    """Parse probabilities to fractions (0-1): ``90%`` -> 0.9; plain numbers are read on ``scale``."""
    present = ~blank(raw)
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        v = raw.astype("float64")
        return (v / 100.0 if scale == "percent" else v), pd.Series(False, index=raw.index)
    quick = _arrow_numbers(raw)
    if quick is None:
        quick = pd.to_numeric(raw.where(present), errors="coerce")
    if int(quick.notna().sum()) == int(present.sum()):  # plain numbers: the fast path for API exports
        v = quick.astype("float64")
        return (v / 100.0 if scale == "percent" else v), pd.Series(False, index=raw.index)
    txt = raw.where(present).astype(TEXT).str.strip()
    pct = txt.str.endswith("%").fillna(False).astype(bool)
    body = txt.str.rstrip("%").str.strip()
    if decimal == ",":
        body = body.str.replace(",", ".", regex=False)
    v = pd.to_numeric(body, errors="coerce").astype("float64")
    v = v.where(~pct, v / 100.0)
    if scale == "percent":
        v = v.where(pct, v / 100.0)
    return v, present & v.isna()


_TRUE = {"true", "1", "yes", "y", "t", "1.0", "x"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def parse_bool(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse ``true``/``false`` (also 1/0, yes/no, any case); return a boolean Series and the bad mask."""
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("boolean"), pd.Series(False, index=raw.index)
    present = ~blank(raw)
    txt = raw.astype(TEXT).str.strip().str.lower()
    out = pd.Series(pd.NA, index=raw.index, dtype="boolean")
    out[txt.isin(_TRUE).fillna(False).astype(bool)] = True
    out[txt.isin(_FALSE).fillna(False).astype(bool)] = False
    return out, present & out.isna()
