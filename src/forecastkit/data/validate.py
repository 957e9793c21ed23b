"""Validation of raw tables into canonical tables, with row accounting.

Every input row ends up either kept or rejected with a reason. Row numbers
in reports are 1-based data rows (the header is not counted), so row 1 is the
first line under the header of a CSV file.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecastkit.data.schema import TABLES, Column, Table
from forecastkit.errors import DataError, ParameterError, SchemaError
from forecastkit.playbook import CLOSED_STAGES, Playbook

__all__ = [
    "LoadReport",
    "validate_tables",
    "coerce_column",
    "empty_table",
    "tables_to_read",
    "note_not_read",
    "CHECKED_AGAINST",
    "TEXT_DTYPE",
]

TEXT_DTYPE = pd.StringDtype()
_ROW = "_row"
_MAX_EXAMPLES = 3

_FIXES = {
    "not a date": "Use ISO dates (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS).",
    "not a number": "Use plain numbers with a dot as decimal separator and no currency sign or thousands separator.",
    "not true/false": "Use true/false (or 1/0, yes/no).",
    "missing required value": "Fill the value in the export, or drop the row.",
    "negative": "Amounts must be zero or positive.",
    "not allowed": "Use one of the allowed values listed.",
    "unknown stage": "Map it to a playbook stage, or add the stage to the playbook's 'stages'.",
    "duplicate id": "Ids must be unique: remove or merge the duplicated rows.",
    "unknown opportunity": "Export the matching opportunities too, or drop rows of deleted deals.",
    "unknown account": "Export the matching accounts too.",
    "closed before created": "A deal cannot close before it was created: check created_at, close_date and closed_at.",
    "status does not match stage": "status must be 'won' for stage won, 'lost' for stage lost and 'open' otherwise.",
    "changed before created": "History rows cannot predate the deal's creation: check created_at.",
    "unknown field": "field_history.field must name an opportunity column.",
    "unknown currency": "Give an exchange rate for this currency in fx_rates.",
    "probability out of range": "Probabilities are between 0 and 1 (or 0-100 as percentages).",
}


@dataclass
class LoadReport:
    """What happened to every input row.

    Attributes
    ----------
    summary : DataFrame
        Columns ``table, file, rows_read, rows_kept, rows_rejected, rows_added``.
    rejected : DataFrame
        One row per rejected input row: ``table, file, row, column, value, reason``
        (``row`` is the 1-based data row in the file).
    notes : list of str
        Warnings that did not reject rows (ignored columns, converted currencies...).
    not_read : tuple of str
        Tables the source has but the load was told not to read (``load(..., tables=[...])``);
        they have no line in ``summary`` and are absent from the snapshot.
    """

    summary: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            columns=["table", "file", "rows_read", "rows_kept", "rows_rejected", "rows_added"]
        )
    )
    rejected: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["table", "file", "row", "column", "value", "reason"])
    )
    notes: list[str] = field(default_factory=list)
    not_read: tuple[str, ...] = ()

    @property
    def errors(self) -> int:
        """Number of rejected rows."""
        return len(self.rejected)

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return self.errors == 0

    def describe(self, max_examples: int = _MAX_EXAMPLES) -> str:
        """A readable account of the rejected rows: per table, column and reason, a few examples and the fix."""
        if self.ok:
            return "all rows kept"
        lines = []
        for (_table, file, column, reason), grp in self.rejected.groupby(
            ["table", "file", "column", "reason"], sort=False, dropna=False
        ):
            ex = ", ".join(
                f"{r}: {v!r}"
                for r, v in zip(grp["row"].head(max_examples), grp["value"].head(max_examples), strict=False)
            )
            more = f" and {len(grp) - max_examples} more" if len(grp) > max_examples else ""
            key = reason.split(" (")[0].split(":")[0]
            fix = _FIXES.get(key, "")
            lines.append(
                f"{file}: column '{column}' has {len(grp)} row(s) rejected - {reason} (rows {ex}{more}). {fix}".rstrip()
            )
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        """Raise :class:`DataError` describing the rejected rows, if any."""
        if not self.ok:
            raise DataError(f"{self.errors} row(s) rejected:\n{self.describe()}")

    def _repr_html_(self) -> str:
        html = self.summary.to_html(index=False)
        if not self.ok:
            html += "<p>Rejected rows (first 20):</p>" + self.rejected.head(20).to_html(index=False)
        return html


class _Rejects:
    """Collects rejected rows for one table."""

    def __init__(self, table: str, file: str) -> None:
        self.table, self.file = table, file
        self.parts: list[pd.DataFrame] = []

    def add(
        self,
        df: pd.DataFrame,
        mask: pd.Series | np.ndarray,
        column: str,
        reason: str | pd.Series,
        values: pd.Series | Callable[[pd.DataFrame], pd.Series] | None = None,
    ) -> pd.DataFrame:
        """Record rows of ``df`` where ``mask`` holds; return the rows kept.

        ``values`` (the value shown for each rejected row) is a series over ``df``
        or a function of the rejected rows, so that messages are built for those rows only.
        """
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return df
        bad = df.loc[mask]
        if callable(values):
            values = values(bad)
        vals = values if values is not None else bad[column] if column in bad else pd.Series("", index=bad.index)
        vals = vals.loc[bad.index] if len(vals) != len(bad) else vals
        reasons = reason.loc[bad.index] if isinstance(reason, pd.Series) else reason
        self.parts.append(
            pd.DataFrame(
                {
                    "table": self.table,
                    "file": self.file,
                    "row": bad[_ROW].to_numpy(),
                    "column": column,
                    "value": vals.astype(object).where(vals.notna(), "").astype(str).str.slice(0, 80).to_numpy(),
                    "reason": reasons.to_numpy() if isinstance(reasons, pd.Series) else reasons,
                }
            )
        )
        return df.loc[~mask].copy()

    def frame(self) -> pd.DataFrame:
        if not self.parts:
            return pd.DataFrame(columns=["table", "file", "row", "column", "value", "reason"])
        return pd.concat(self.parts, ignore_index=True)


def empty_table(name: str) -> pd.DataFrame:
    """An empty canonical table with the right columns and dtypes (a fresh copy each call)."""
    e = _EMPTY.get(name)
    if e is None:
        table = TABLES[name]
        e = _EMPTY[name] = pd.DataFrame({c.name: pd.Series(dtype=_dtype(c)) for c in table.columns})
    return e.copy()


#: Built once per table: every snapshot (and every ``as_of``) fills its absent tables with these.
_EMPTY: dict[str, pd.DataFrame] = {}


def _dtype(col: Column) -> object:
    return {"str": TEXT_DTYPE, "date": "datetime64[ns]", "float": "float64", "bool": "boolean"}[col.kind]


_MISSING = {"str": pd.NA, "date": pd.NaT, "float": np.nan, "bool": pd.NA}
_TRUE = {"true", "1", "yes", "y", "t", "1.0"}
_FALSE = {"false", "0", "no", "n", "f", "0.0"}


def _arrow_string_dtype(dtype: object) -> bool:
    """True for text held by pyarrow: ``pd.ArrowDtype`` of strings or of a dictionary of strings (how the
    loader reads files) or ``string[pyarrow]``."""
    if isinstance(dtype, pd.ArrowDtype):
        typ = dtype.pyarrow_dtype
        typ = typ.value_type if pa.types.is_dictionary(typ) else typ
        return pa.types.is_string(typ) or pa.types.is_large_string(typ)
    return isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"


def _arrow_dictionary_dtype(dtype: object) -> bool:
    """True for ``pd.ArrowDtype`` of a dictionary of strings (text columns with few distinct values, as read)."""
    return (
        isinstance(dtype, pd.ArrowDtype)
        and pa.types.is_dictionary(dtype.pyarrow_dtype)
        and _arrow_string_dtype(pd.ArrowDtype(dtype.pyarrow_dtype.value_type))
    )


def _decoded(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A dictionary-encoded array as plain strings (other arrays as they are)."""
    return arr.cast(arr.type.value_type) if pa.types.is_dictionary(arr.type) else arr


def _from_dictionary(arr: pa.ChunkedArray, index: pd.Index) -> tuple[pd.Series, pa.ChunkedArray]:
    """A canonical text column from a dictionary-encoded text array, blank cells missing; and the array
    with those cells null. Each distinct value is converted once, and its cells share it."""
    parts, chunks = [], []
    for chunk in arr.chunks:
        words = _decoded(chunk.dictionary)
        gone = pc.or_(_blank(words), pc.is_null(words)).fill_null(True)
        lookup = np.append(words.to_numpy(zero_copy_only=False).astype(object), None)
        lookup[np.append(gone.to_numpy(zero_copy_only=False), True)] = pd.NA
        codes = chunk.indices  # a missing cell: the last entry of lookup
        codes = (codes.cast(pa.int64()).fill_null(len(words)) if codes.null_count else codes).to_numpy()
        parts.append(lookup[codes])
        if pc.any(gone).as_py():
            indices = pc.if_else(pc.take(gone, chunk.indices), pa.scalar(None, chunk.indices.type), chunk.indices)
            chunk = pa.DictionaryArray.from_arrays(indices, chunk.dictionary)
        chunks.append(chunk)
    vals = np.concatenate(parts) if parts else np.array([], dtype=object)
    return pd.Series(_string_array(vals), index=index, copy=False), pa.chunked_array(chunks, type=arr.type)


def _text_like(dtype: object) -> bool:
    """True for a column of text cells (or of anything: object), as opposed to numbers, dates, booleans."""
    return pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype) or _arrow_string_dtype(dtype)


def _arrow_text(raw: pd.Series) -> pa.ChunkedArray | None:
    """The cells of a text column as a pyarrow string array (None when ``raw`` holds non-text values)."""
    if _arrow_string_dtype(raw.dtype):
        arr = _decoded(pa.array(raw.array))
    elif isinstance(raw.dtype, pd.StringDtype) or raw.dtype == object:
        try:
            arr = pa.array(_objects(raw), type=pa.string(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None  # numbers, dates... in an object column
    else:
        return None
    return arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])


def _objects(values: pd.Series | pd.Index) -> np.ndarray:
    """The values as an object array for ``pa.array(..., from_pandas=True)`` (missing values: any missing marker).

    A ``TEXT_DTYPE`` column gives its own array (Python strings and ``pd.NA``, which pyarrow
    reads as null): no copy and no scan for missing values, unlike ``to_numpy(dtype=object)``.
    """
    data = getattr(values.array, "_ndarray", None) if isinstance(values.array, pd.arrays.StringArray) else None
    return data if isinstance(data, np.ndarray) and data.dtype == object else values.to_numpy(dtype=object)


def _run_starts(arr: pa.Array | pa.ChunkedArray, at_most: float = 0.2) -> np.ndarray | None:
    """The rows where a run of equal values starts, when runs are few (at most ``at_most`` of the rows); else None.

    Deal ids in tables sorted by deal (history, field history, activities...) come in runs:
    their look-ups and conversions then work on the first row of each run only. Judged on
    the first 20,000 rows first, so that a column without runs costs little. A missing
    value starts a run of its own (and so does the value after it).
    """
    n = len(arr)
    if n < 1_000:
        return None
    for part in (arr.slice(0, 20_000), arr):
        m = len(part)
        change = pc.not_equal(part.slice(1), part.slice(0, m - 1)).fill_null(True)
        if pc.sum(change).as_py() + 1 > at_most * m:
            return None
    return np.flatnonzero(np.concatenate(([True], change.to_numpy(zero_copy_only=False))))


def _run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    """Length of each run starting at ``starts`` (:func:`_run_starts`) in ``n`` rows."""
    return np.diff(np.append(starts, n))


def _from_arrow(arr: pa.ChunkedArray, index: pd.Index) -> pd.Series:
    """A canonical text column from a pyarrow string array; equal values share one Python string (less memory).

    Columns of mostly distinct values (ids, names, e-mails: judged on their first
    20,000 cells) are converted cell by cell instead: sharing saves nothing there and
    the dictionary costs a hash of every cell. Columns in runs of equal values (ids of
    a table sorted by deal) convert one cell per run, which the run's rows share.
    """
    starts = _run_starts(arr)
    if starts is not None:
        heads = arr.take(pa.array(starts))
        vals = heads.to_numpy(zero_copy_only=False)
        if heads.null_count:
            vals[np.asarray(heads.is_null(), dtype=bool)] = pd.NA
        vals = np.repeat(vals, _run_lengths(starts, len(arr)))
        return pd.Series(_string_array(vals), index=index, copy=False)
    head = arr.slice(0, 20_000)
    n_head = len(head) - head.null_count
    if n_head >= 1_000 and pc.count_distinct(head).as_py() > 0.5 * n_head:
        vals = arr.to_numpy()
        if arr.null_count:
            vals[np.asarray(arr.is_null(), dtype=bool)] = pd.NA
        return pd.Series(_string_array(vals), index=index, copy=False)
    # pyarrow's own conversion shares equal strings (deduplicate_objects) and beats a dictionary
    # encoding plus a take on such columns; missing cells come out as None, made pd.NA here
    vals = np.asarray(arr.to_pandas(deduplicate_objects=True), dtype=object)
    if arr.null_count:
        vals = vals if vals.flags.writeable else vals.copy()
        vals[np.asarray(arr.is_null(), dtype=bool)] = pd.NA
    return pd.Series(_string_array(vals), index=index, copy=False)


_STRING_TEMPLATE = pd.arrays.StringArray(np.array([], dtype=object))


def _string_array(values: np.ndarray) -> pd.arrays.StringArray:
    """A ``TEXT_DTYPE`` array over ``values`` (Python ``str`` or ``pd.NA`` only, checked by the caller).

    ``StringArray(values)`` would check every cell again (one Python-level pass per column).
    """
    return _STRING_TEMPLATE._from_backing_data(values)


def _to_text(raw: pd.Series) -> pd.Series:
    """``raw`` as canonical text (``TEXT_DTYPE``); non-text values are written with ``str()``, missing stay missing."""
    if raw.dtype == TEXT_DTYPE:
        return raw
    arr = _arrow_text(raw)
    if arr is not None:
        return _from_arrow(arr, raw.index)
    if raw.dtype == object:
        return raw.astype(TEXT_DTYPE)
    return raw.astype(str).astype(TEXT_DTYPE).where(raw.notna())


#: While :func:`validate_tables` runs: the pyarrow array each validated text column was built from,
#: by the id of the column's object array (``id -> (weak reference to the array, pyarrow array or
#: None, null count)``). The look-ups (references, duplicates, sorting) and missing-value checks
#: then read the pyarrow array instead of converting millions of Python strings back. Only the
#: columns validate_tables itself built are there, and it does not modify them in place (rows
#: rejected give new arrays, which are not there). None outside validate_tables. A context
#: variable, so that loads running in parallel threads each keep their own.
_ARROW_OF: ContextVar[dict[int, tuple[weakref.ref, pa.Array | pa.ChunkedArray | None, int]] | None] = ContextVar(
    "forecastkit_arrow_of", default=None
)

#: Columns whose pyarrow array is kept for look-ups and codes (the others: only their null count).
_LOOKUP_COLUMNS = frozenset(
    {"opportunity_id", "account_id", "stage"}
    | {t.key[0] for t in TABLES.values() if len(t.key) == 1}
    | {c.name for t in TABLES.values() for c in t.columns if c.allowed is not None}
)


def _backing(values: object) -> np.ndarray | None:
    """The object array behind a text Series (``TEXT_DTYPE``), else None."""
    if isinstance(values, pd.Series) and values.dtype == TEXT_DTYPE:
        data = getattr(values.array, "_ndarray", None)
        return data if isinstance(data, np.ndarray) else None
    return None


def _remember(values: pd.Series, arr: pa.Array | pa.ChunkedArray, keep: bool) -> None:
    """Record the pyarrow array ``values`` was built from (``keep``: the array too, else its null count)."""
    store, data = _ARROW_OF.get(), _backing(values)
    if store is not None and data is not None and len(data) == len(arr):
        store[id(data)] = (weakref.ref(data), arr if keep else None, arr.null_count)


def _recalled(values: object) -> tuple[pa.Array | pa.ChunkedArray | None, int] | None:
    """``(pyarrow array or None, null count)`` recorded for ``values`` by :func:`_remember`, else None."""
    store = _ARROW_OF.get()
    if store is None:
        return None
    data = _backing(values)
    entry = store.get(id(data)) if data is not None else None
    if entry is None or entry[0]() is not data:
        return None
    return entry[1], entry[2]


#: Per table, the columns whose pyarrow arrays later steps of validate_tables still read
#: (references to deals and accounts, history's order and reconciliation).
_STILL_LOOKED_UP = {
    "opportunities": ("opportunity_id", "account_id"),
    "accounts": ("account_id",),
    "history": ("opportunity_id",),
    "field_history": ("opportunity_id",),
}


def _forget(df: pd.DataFrame, keep: Sequence[str] = ()) -> None:
    """Drop what :func:`_remember` recorded for the columns of ``df`` but ``keep`` (memory is freed as tables are done)."""
    store = _ARROW_OF.get()
    if store is None:
        return
    for name in df.columns:
        data = _backing(df[name]) if name not in keep else None
        if data is not None:
            store.pop(id(data), None)


def _isna(s: pd.Series) -> np.ndarray:
    """``s.isna()`` as a boolean array (a validated text column without missing values: no scan)."""
    known = _recalled(s)
    if known is not None:
        arr, nulls = known
        if nulls == 0:
            return np.zeros(len(s), dtype=bool)
        if arr is not None:
            return np.asarray(arr.is_null(), dtype=bool)
    return s.isna().to_numpy(dtype=bool)


def _text_arrow(values: pd.Series | pd.Index | np.ndarray | pa.Array) -> pa.Array | None:
    """Text values as a pyarrow string array (missing values null); None when they are not all text.

    Hashing there is much faster than on Python strings.
    """
    if isinstance(values, pa.Array):
        return values
    known = _recalled(values)
    if known is not None and known[0] is not None:
        arr = known[0]
        if isinstance(arr, pa.ChunkedArray):  # decoded and combined once (pyarrow's kernels here want one array)
            arr = _decoded(arr).combine_chunks()
            _remember(values, arr, keep=True)
        return arr
    if isinstance(values, pd.Series | pd.Index) and _arrow_string_dtype(values.dtype):
        arr = _decoded(pa.array(values.array))
        return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    if isinstance(values, pd.Series | pd.Index):
        if not (isinstance(values.dtype, pd.StringDtype) or values.dtype == object):
            return None
        values = _objects(values)
    try:
        return pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowException, UnicodeError, TypeError):
        return None


def text_positions(
    values: pd.Series | pd.Index | np.ndarray | pa.Array, keys: pd.Series | pd.Index | np.ndarray | pa.Array
) -> np.ndarray | None:
    """Position of each value among ``keys`` (distinct), -1 when absent or missing; None when not all text.

    A pyarrow hash lookup: about three times faster than ``Index.get_indexer`` on object
    arrays, with no missing-value scan first. With None the caller uses pandas.
    """
    v, k = _text_arrow(values), _text_arrow(keys)
    if v is None or k is None:
        return None
    if len(v) == 0 or len(k) == 0:
        return np.full(len(v), -1, dtype=np.int64)
    starts = _run_starts(v)
    if starts is not None:  # ids in runs: one look-up per run
        pos = pc.index_in(v.take(pa.array(starts)), value_set=k).fill_null(-1).to_numpy(zero_copy_only=False)
        return np.repeat(pos.astype(np.int64), _run_lengths(starts, len(v)))
    return pc.index_in(v, value_set=k).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _isin(s: pd.Series, values: pd.Series | Sequence[str]) -> pd.Series:
    """``s.isin(values)`` (missing matches missing), computed by pyarrow for text."""
    a = _text_arrow(s)
    v = _text_arrow(values if isinstance(values, pd.Series) else np.asarray(values, dtype=object))
    if a is None or v is None:
        return s.isin(values)
    starts = _run_starts(a)
    if starts is not None:  # values in runs: one look-up per run
        found = pc.is_in(a.take(pa.array(starts)), value_set=v).to_numpy(zero_copy_only=False)
        return pd.Series(np.repeat(found, _run_lengths(starts, len(a))), index=s.index)
    return pd.Series(pc.is_in(a, value_set=v).to_numpy(zero_copy_only=False), index=s.index)


def _increasing(a: pa.Array, strict: bool = False) -> bool:
    """True when ``a`` has no missing value and each value is above (``strict``) or at least the one before."""
    if len(a) < 2 or a.null_count:
        return len(a) < 2 and not a.null_count
    after = (pc.greater if strict else pc.greater_equal)(a.slice(1), a.slice(0, len(a) - 1))
    return bool(pc.all(after).as_py())


def _duplicated(df: pd.DataFrame, key: Sequence[str]) -> pd.Series:
    """``df.duplicated(key, keep="first")``; one text key is hashed by pyarrow."""
    a = _text_arrow(df[key[0]]) if len(key) == 1 else None
    if a is None:
        return df.duplicated(list(key), keep="first")
    if _increasing(a, strict=True):  # ids in ascending order (most exports): all distinct, no hashing
        return pd.Series(np.zeros(len(a), dtype=bool), index=df.index)
    codes = a.dictionary_encode(null_encoding="encode").indices.to_numpy(zero_copy_only=False).astype(np.int64)
    # codes are numbered in order of first appearance: a row repeats a value when its code is not a new maximum
    seen = np.maximum.accumulate(codes)
    dup = np.empty(len(codes), dtype=bool)
    dup[:1] = False
    dup[1:] = codes[1:] <= seen[:-1]
    return pd.Series(dup, index=df.index)


def _blank(arr: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a text cell is empty or only spaces (missing stays missing).

    The same cells as ``utf8_trim_whitespace(arr) == ""`` (checked on every Unicode
    code point), without building the trimmed strings.
    """
    return pc.or_(pc.equal(arr, ""), pc.utf8_is_space(arr))


def _present(raw: pd.Series, arr: pa.ChunkedArray | None) -> pd.Series:
    """True where a cell holds a value (text cells: something other than spaces)."""
    if arr is not None:
        filled = pc.invert(_blank(arr)).fill_null(False)
        return pd.Series(filled.to_numpy(zero_copy_only=False), index=raw.index)
    present = raw.notna()
    if raw.dtype == object or isinstance(raw.dtype, pd.StringDtype):
        present &= raw.astype(str).str.strip() != ""
    return present


def normalise_codes(s: pd.Series) -> pd.Series:
    """Coded text (stages, statuses, categories) trimmed, lower-cased, spaces as ``_``: ``" Best Case"`` -> ``best_case``.

    Works on the distinct values only, so it costs little on long columns.
    """
    return _normalised(s)[0]


def _normalised(s: pd.Series, allowed: Sequence[str] | None = None) -> tuple[pd.Series, np.ndarray]:
    """``normalise_codes(s)`` and, per row, whether the normalised value is missing or in ``allowed``."""
    known = _recalled(s)
    if known is not None and known[0] is not None:  # a validated text column: pyarrow hashes it
        arr = known[0]
        if pa.types.is_dictionary(arr.type) and isinstance(arr, pa.ChunkedArray) and arr.num_chunks:
            enc = arr.unify_dictionaries().combine_chunks()  # read as a dictionary: codes as they are
        else:
            enc = _text_arrow(s).dictionary_encode()
        codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        uniques = enc.dictionary.to_pylist()
    else:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    norm = [str(u).strip().lower().replace(" ", "_") for u in uniques]
    vals = np.array([*norm, pd.NA], dtype=object)[codes]
    ok = np.ones(len(s), dtype=bool)
    if allowed is not None:
        allowed_set = set(allowed)
        ok = np.array([n in allowed_set for n in norm] + [True], dtype=bool)[codes]
    return pd.Series(_string_array(vals), index=s.index, copy=False), ok


_NS_MIN, _NS_MAX = pd.Timestamp.min.value // 1000, pd.Timestamp.max.value // 1000  # in microseconds


def _arrow_dates(arr: pa.ChunkedArray) -> pd.Series | None:
    """ISO dates parsed by pyarrow (naive, or all with a UTC offset); None when any cell needs the slow path."""
    for typ in (pa.timestamp("us"), pa.timestamp("us", "UTC")):
        try:
            ts = arr.cast(typ)
            break
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    else:
        return None
    us = ts.cast(pa.int64())
    lo, hi = pc.min_max(us).values()
    if lo.is_valid and (lo.as_py() < _NS_MIN or hi.as_py() > _NS_MAX):
        return None  # beyond the datetime64[ns] range: pandas rejects those cells
    out = us.to_numpy().astype("datetime64[us]") if us.null_count == 0 else None
    if out is None:
        vals = us.fill_null(0).to_numpy()
        out = vals.astype("datetime64[us]")
        out[us.is_null().to_numpy(zero_copy_only=False)] = np.datetime64("NaT")
    return pd.Series(out.astype("datetime64[ns]"))


def coerce_column(raw: pd.Series, kind: str) -> tuple[pd.Series, pd.Series]:
    """Convert ``raw`` to the column kind; return (values, bad) where ``bad`` marks unparseable non-empty cells.

    Text columns keep their values as given (blank cells become missing). Common
    machine formats (ISO dates, plain numbers) are parsed in one vectorised
    pass; anything else falls back to pandas' parsers, cell by cell.
    """
    values, bad, _ = _coerce(raw, kind)
    return values, bad


def _coerce(raw: pd.Series, kind: str) -> tuple[pd.Series, pd.Series, pa.ChunkedArray | None]:
    """:func:`coerce_column`, and the pyarrow array the values were built from (else None).

    For dates and numbers the array is returned only when pyarrow parsed the whole column:
    then each cell's value does not depend on the other cells (pandas' parsers, the
    fallback, choose a format for the whole column).
    """
    no_bad = pd.Series(False, index=raw.index)
    if kind == "str" and _arrow_dictionary_dtype(raw.dtype):
        arr = pa.array(raw.array)
        values, arr = _from_dictionary(arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr]), raw.index)
        return values, no_bad, arr
    text_like = _text_like(raw.dtype)
    arr = _arrow_text(raw) if text_like else None
    if kind == "str":
        if arr is None:
            out = _to_text(raw)
            blank = (out.str.strip() == "").fillna(False).to_numpy(dtype=bool)
            return (out.mask(blank) if blank.any() else out), no_bad, None
        blank = _blank(arr)
        if pc.any(blank).as_py():
            arr = pc.if_else(blank, pa.scalar(None, arr.type), arr)
        return _from_arrow(arr, raw.index), no_bad, arr
    present = _present(raw, arr)
    if kind == "date":
        fast = None
        if pd.api.types.is_datetime64_any_dtype(raw.dtype):
            out = raw
            if getattr(raw.dt, "tz", None) is not None:
                out = raw.dt.tz_convert("UTC").dt.tz_localize(None)
            if out.dtype != "datetime64[ns]":  # e.g. Parquet timestamp[us]: years 1-9999, beyond the ns range
                in_range = out.isna() | ((out >= pd.Timestamp.min) & (out <= pd.Timestamp.max))
                out = out.where(in_range)
            out = out.astype("datetime64[ns]")
        else:
            fast = _arrow_dates(arr) if arr is not None and bool(present.eq(raw.notna()).all()) else None
            if fast is not None:
                out = fast.set_axis(raw.index)
            else:
                txt = raw.where(present).astype(object)
                try:
                    out = pd.to_datetime(txt, errors="coerce", format="ISO8601", utc=True)
                except (ValueError, TypeError, OverflowError):
                    out = pd.to_datetime(txt, errors="coerce", utc=True, format="mixed")
                out = out.dt.tz_localize(None).astype("datetime64[ns]")
        return out, present & out.isna(), (arr if fast is not None else None)
    if kind == "float":
        via = None
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            out = raw.astype("float64")
        else:
            out = None
            if arr is not None and bool(present.eq(raw.notna()).all()):
                try:
                    out = pd.Series(arr.cast(pa.float64()).to_numpy(), index=raw.index, dtype="float64")
                    via = arr
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    out = None
            if out is None:
                txt = raw.where(present)
                txt = (
                    txt.astype(object)
                    if isinstance(txt.dtype, pd.StringDtype) or _arrow_string_dtype(txt.dtype)
                    else txt
                )
                out = pd.to_numeric(txt, errors="coerce").astype("float64")
        bad = present & (out.isna() | ~np.isfinite(out.fillna(0.0)))
        if bad.any():
            out = out.where(~bad)
        return out, bad, via
    if kind == "bool":
        if pd.api.types.is_bool_dtype(raw.dtype):
            return raw.astype("boolean"), no_bad, None
        if arr is None:
            arr = pa.chunked_array([pa.array(raw.astype(str).to_numpy(dtype=object), type=pa.string())])
        txt = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        out = pd.Series(pd.NA, index=raw.index, dtype="boolean")
        ok = present.to_numpy(dtype=bool)
        is_true = (
            pc.is_in(txt, value_set=pa.array(sorted(_TRUE), txt.type)).fill_null(False).to_numpy(zero_copy_only=False)
        )
        is_false = (
            pc.is_in(txt, value_set=pa.array(sorted(_FALSE), txt.type)).fill_null(False).to_numpy(zero_copy_only=False)
        )
        out[is_true & ok] = True
        out[is_false & ok] = False
        return out, present & out.isna(), None
    raise ValueError(kind)


def _validate_columns(
    df: pd.DataFrame, table: Table, file: str, rej: _Rejects, playbook: Playbook, notes: list[str]
) -> pd.DataFrame:
    cols = [str(c).strip() for c in df.columns]
    df = df.copy(deep=False)  # renamed columns, same data: nothing in here writes to df
    df.columns = cols
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise SchemaError(
            f"{file}: column(s) {', '.join(map(repr, dup))} appear more than once; rename or drop the duplicates"
        )
    missing = [c for c in table.required if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{file}: required column(s) {', '.join(map(repr, missing))} missing from table '{table.name}'. "
            f"Found columns: {', '.join(c for c in cols if c != _ROW) or '(none)'}. Rename your columns to the canonical names "
            f"({', '.join(table.required)} are required) or use an adapter/mapping file."
        )
    extra = [c for c in df.columns if c not in table.column_names and c != _ROW]
    if extra:
        notes.append(f"{file}: ignored column(s) not in the '{table.name}' schema: {', '.join(extra[:10])}")
    columns: dict[str, pd.Series] = {_ROW: df[_ROW]}
    bad_any = pd.Series(False, index=df.index)
    reasons: list[tuple[pd.Series, str, str, pd.Series]] = []
    for col in table.columns:
        if col.name not in df.columns:
            columns[col.name] = pd.Series(_MISSING[col.kind], index=df.index, dtype=_dtype(col))
            continue
        values, bad, arr = _coerce(df[col.name], col.kind)
        if arr is not None and col.kind == "str":
            _remember(values, arr, keep=col.name in _LOOKUP_COLUMNS)
        if bad.any():
            what = {"date": "not a date", "float": "not a number", "bool": "not true/false"}[col.kind]
            reasons.append((bad & ~bad_any, col.name, what, df[col.name]))
            bad_any |= bad
        columns[col.name] = values
    out = pd.DataFrame(columns, index=df.index, copy=False)
    for mask, colname, what, raw in reasons:
        out = rej.add(out, mask.loc[out.index], colname, what, raw)
    # required values present
    for name in table.required:
        m = _isna(out[name])
        out = rej.add(out, m, name, "missing required value")
    for col in table.columns:
        if col.nonnegative:
            m = out[col.name] < 0
            out = rej.add(out, m.fillna(False), col.name, "negative")
        if col.allowed is not None:
            out[col.name], ok = _normalised(out[col.name], col.allowed)
            m = pd.Series(~ok, index=out.index)
            out = rej.add(out, m, col.name, f"not allowed (allowed: {', '.join(col.allowed)})")
    if "stage" in table.column_names and table.name in ("opportunities", "history"):
        out["stage"], ok = _normalised(out["stage"], playbook.all_stage_names)
        m = pd.Series(~ok, index=out.index)
        out = rej.add(out, m, "stage", f"unknown stage (playbook stages: {', '.join(playbook.all_stage_names)})")
    if table.key:
        dupm = _duplicated(out, table.key)
        if dupm.any():
            first = out.drop_duplicates(list(table.key), keep="first").set_index(list(table.key))[_ROW]
            keys = out.loc[dupm, list(table.key)]
            firsts = first.reindex(pd.MultiIndex.from_frame(keys) if len(table.key) > 1 else keys.iloc[:, 0]).to_numpy()
            shown = keys.astype(str).agg(" / ".join, axis=1)
            values = pd.Series(
                [f"{k} (first seen at row {f})" for k, f in zip(shown, firsts, strict=True)], index=keys.index
            )
            out = rej.add(out, dupm, table.key[0], "duplicate id", values)
    return out


def _check_opportunities(
    df: pd.DataFrame,
    rej: _Rejects,
    playbook: Playbook,
    notes: list[str],
    fx_rates: Mapping[str, float] | None,
    file: str,
) -> pd.DataFrame:
    stage_status = df["stage"].where(df["stage"].isin(CLOSED_STAGES), "open")
    if df["status"].isna().all():
        df["status"] = stage_status.astype(TEXT_DTYPE)
    else:
        m = df["status"].notna() & (df["status"] != stage_status)
        df = rej.add(
            df,
            m,
            "status",
            "status does not match stage",
            lambda b: b["status"].astype(str) + " / " + b["stage"].astype(str),
        )
        df["status"] = df["stage"].where(df["stage"].isin(CLOSED_STAGES), "open").astype(TEXT_DTYPE)
    closed = df["status"] != "open"
    df.loc[closed & df["closed_at"].isna(), "closed_at"] = df.loc[closed & df["closed_at"].isna(), "close_date"]
    df.loc[~closed, "closed_at"] = pd.NaT
    created_day = df["created_at"].dt.normalize()
    m = (df["close_date"] < created_day) | (df["closed_at"].notna() & (df["closed_at"] < created_day))
    df = rej.add(
        df,
        m,
        "close_date",
        "closed before created",
        lambda b: b["close_date"].astype(str) + " < " + b["created_at"].astype(str),
    )
    df.loc[df["status"] == "won", "forecast_category"] = "closed"
    df.loc[df["status"] == "lost", "forecast_category"] = "omitted"
    p = df["probability"]
    if (p > 1).any() and (p.dropna() <= 100).all():
        df["probability"] = p / 100.0
        notes.append(f"{file}: 'probability' read as percentages (0-100) and divided by 100")
    p = df["probability"]
    df = rej.add(df, ((p > 1) | (p < 0)).fillna(False), "probability", "probability out of range")
    return _convert_currency(df, rej, playbook, notes, fx_rates, file)


def _convert_currency(
    df: pd.DataFrame,
    rej: _Rejects,
    playbook: Playbook,
    notes: list[str],
    fx_rates: Mapping[str, float] | None,
    file: str,
) -> pd.DataFrame:
    if "currency" not in df:
        return df
    codes, uniques = pd.factorize(df["currency"])  # currency codes: work on the distinct values
    upper = [str(u).upper().strip() for u in uniques]
    cur = pd.Series(pd.arrays.StringArray(np.array([*upper, pd.NA], dtype=object)[codes]), index=df.index)
    found = sorted(set(upper))
    if not found or found == [playbook.currency]:
        df["currency"] = cur.fillna(playbook.currency).astype(TEXT_DTYPE)
        return df
    if not fx_rates:
        raise DataError(
            f"{file}: amounts are in several currencies ({', '.join(found)}) and the reporting currency is "
            f"{playbook.currency}; amounts are never summed across currencies. Pass fx_rates="
            "{'USD': 0.92, ...} (value of one unit in the reporting currency) to convert them, "
            "or set the playbook's 'currency'."
        )
    rates = {k.upper(): float(v) for k, v in fx_rates.items()}
    rates.setdefault(playbook.currency, 1.0)
    cur = cur.fillna(playbook.currency)
    m = ~cur.isin(rates)
    df = rej.add(df, m, "currency", f"unknown currency (rates given for: {', '.join(sorted(rates))})")
    cur = cur.loc[df.index]
    factor = cur.map(rates).astype(float)
    for col in ("amount", "budget", "margin", "invoiced_amount"):
        if col in df:
            df[col] = df[col] * factor
    df["currency"] = pd.Series(playbook.currency, index=df.index, dtype=TEXT_DTYPE)
    notes.append(
        f"{file}: converted {int((cur != playbook.currency).sum())} amounts to {playbook.currency} with the given rates"
    )
    return df


def _convert_history(
    hist: pd.DataFrame,
    row_currency: pd.Series | None,
    deal_currency: pd.Series | None,
    rej: _Rejects,
    playbook: Playbook,
    notes: list[str],
    fx_rates: Mapping[str, float] | None,
    file: str,
) -> pd.DataFrame:
    """History amounts in the reporting currency, converted like the deals' amounts.

    A history row's currency is its own ``currency`` cell when the raw table has one
    (e.g. Salesforce's CurrencyIsoCode), else its deal's currency. The column itself is
    not kept: canonical amounts are all in the playbook currency.
    """
    cur = pd.Series(pd.NA, index=hist.index, dtype=TEXT_DTYPE)
    if row_currency is not None:
        cur = coerce_column(row_currency.loc[hist.index], "str")[0]
    if deal_currency is not None:
        by_deal = hist["opportunity_id"].map(deal_currency)
        cur = cur.fillna(by_deal.astype(TEXT_DTYPE))
    hist["currency"] = cur
    out = _convert_currency(hist, rej, playbook, notes, fx_rates, file)
    return out.drop(columns=["currency"])


#: Table -> the tables its rows are checked against (:func:`_check_references`): a deal id must name a
#: deal, an account id an account. A table read without them would keep rows that a full load rejects,
#: so :func:`tables_to_read` reads them too. (Deals are not rejected for an unknown account: the
#: opportunities only get a note, which a load without accounts cannot give.)
CHECKED_AGAINST: dict[str, tuple[str, ...]] = {
    "history": ("opportunities",),
    "field_history": ("opportunities",),
    "activities": ("opportunities",),
    "contacts": ("accounts",),
    "orders": ("accounts",),
    "subscriptions": ("accounts",),
}

#: The dated columns whose latest value is the snapshot date when none is given (:func:`_latest_event`).
_EVENT_DATES = (
    ("opportunities", "created_at"),
    ("opportunities", "closed_at"),
    ("history", "changed_at"),
    ("field_history", "changed_at"),
    ("activities", "done_at"),
    ("orders", "ordered_at"),
    ("forecast_calls", "submitted_at"),
)

_NO_HISTORY_TABLE = (
    "history: no history table; stage timing is unknown and as_of() cannot rewind stages, amounts or close dates"
)


def tables_to_read(names: Iterable[str] | None, *, snapshot_date_known: bool, what: str = "tables") -> list[str]:
    """The canonical tables to read so that the tables ``names`` come out as a full load gives them.

    ``opportunities`` is always read; so are the tables the named ones are checked against
    (:data:`CHECKED_AGAINST`: accounts for contacts, orders and subscriptions) and, when the
    snapshot date is not known before reading (no ``as_of`` in ``crm.yaml`` or the database's
    meta table), the tables whose latest event sets it (deals, history, field history,
    activities, orders and forecast calls, with accounts for orders). None: every table.

    Raises
    ------
    ParameterError
        ``names`` is a string, or holds a name that is not a canonical table (the message lists them).
    """
    if names is None:
        return list(TABLES)
    if isinstance(names, str | bytes):
        raise ParameterError(
            f"{what} must be a list of table names, e.g. ['opportunities', 'history']; got the string {names!r}"
        )
    names = list(names)
    bad = [n for n in names if n not in TABLES]
    if bad:
        verb = "is not a canonical table" if len(bad) == 1 else "are not canonical tables"
        raise ParameterError(f"{what}: {', '.join(map(repr, bad))} {verb}; canonical tables: {', '.join(TABLES)}")
    wanted = {"opportunities", *names}
    if not snapshot_date_known:
        wanted |= {t for t, _ in _EVENT_DATES}
    wanted |= {r for t in list(wanted) for r in CHECKED_AGAINST.get(t, ())}
    return [t for t in TABLES if t in wanted]


def note_not_read(report: LoadReport, not_read: Iterable[str]) -> None:
    """Record in ``report`` the tables a source has but the load did not read (``load(..., tables=[...])``)."""
    skipped = [t for t in TABLES if t in set(not_read)]
    if not skipped:
        return
    report.not_read = tuple(skipped)
    if "history" in skipped:  # it was there, just not read
        report.notes[:] = [n for n in report.notes if n != _NO_HISTORY_TABLE]
    unchecked = "; deals were not checked against accounts" if "accounts" in skipped else ""
    report.notes.append(
        f"not read, as asked (tables=[...]): {', '.join(skipped)}; absent from this snapshot{unchecked}"
    )


def _check_references(
    name: str, df: pd.DataFrame, tables: Mapping[str, pd.DataFrame], rej: _Rejects, notes: list[str], file: str
) -> pd.DataFrame:
    opps = tables.get("opportunities")
    if name in ("history", "field_history") and opps is not None:
        # one hash look-up for both checks; a missing id is unknown (deal ids are never missing), as with isin
        pos = text_positions(df["opportunity_id"], opps["opportunity_id"])
        m = ~_isin(df["opportunity_id"], opps["opportunity_id"]).to_numpy(dtype=bool) if pos is None else pos < 0
        df = rej.add(df, m, "opportunity_id", "unknown opportunity")
        if pos is not None and m.any():
            pos = pos[~m]
        created = _lookup(df["opportunity_id"], opps["opportunity_id"], opps["created_at"].dt.normalize(), pos)
        m = df["changed_at"].dt.normalize() < created
        df = rej.add(df, m, "changed_at", "changed before created", lambda b: b["changed_at"].astype(str))
    if name == "field_history":
        m = ~_isin(df["field"], TABLES["opportunities"].column_names).to_numpy(dtype=bool)
        df = rej.add(df, m, "field", "unknown field")
    if name == "activities" and opps is not None:
        m = ~_isna(df["opportunity_id"]) & ~_isin(df["opportunity_id"], opps["opportunity_id"]).to_numpy(dtype=bool)
        df = rej.add(df, m, "opportunity_id", "unknown opportunity")
    accounts = tables.get("accounts")
    if accounts is not None and name in ("contacts", "orders", "subscriptions"):
        m = ~_isna(df["account_id"]) & ~_isin(df["account_id"], accounts["account_id"]).to_numpy(dtype=bool)
        df = rej.add(df, m, "account_id", "unknown account")
    return df


def _lookup(ids: pd.Series, keys: pd.Series, values: pd.Series, pos: np.ndarray | None = None) -> pd.Series:
    """``ids.map(values indexed by keys)`` (``keys`` unique); missing where an id is not a key.

    ``pos``: ``text_positions(ids, keys)`` when already computed.
    """
    pos = text_positions(ids, keys) if pos is None else pos
    if pos is None:
        return ids.map(pd.Series(values.to_numpy(), index=keys.to_numpy()))
    if not len(values):
        return pd.Series(pd.NaT, index=ids.index, dtype=values.dtype)
    out = values.to_numpy()[np.maximum(pos, 0)].copy()
    out[pos < 0] = np.datetime64("NaT") if out.dtype.kind == "M" else np.nan
    return pd.Series(out, index=ids.index)


def _sorted_by_deal(ids: pa.Array, at: pa.Array) -> bool:
    """True when rows are ordered by ``ids`` then ``at`` (none missing): checked on neighbours, no sort."""
    if not _increasing(ids) or at.null_count:
        return False
    n = len(ids)
    same = pc.equal(ids.slice(1), ids.slice(0, n - 1))
    later = pc.greater_equal(at.slice(1), at.slice(0, n - 1))
    return bool(pc.all(pc.or_(pc.invert(same), later)).as_py())


def _sort_by_deal(df: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered by ``opportunity_id`` then ``changed_at``, ties kept in file order (a stable sort)."""
    if len(df) < 2:
        return df
    ids = _text_arrow(df["opportunity_id"])
    if ids is None:
        ids = pa.array(df["opportunity_id"].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    keys = pa.table(
        {
            "id": ids,
            "at": pa.array(df["changed_at"].to_numpy(dtype="datetime64[ns]")),
        }
    )
    if _sorted_by_deal(keys["id"].combine_chunks(), keys["at"].combine_chunks()):
        return df  # the stable sort below would keep every row in place
    order = pc.sort_indices(keys, sort_keys=[("id", "ascending"), ("at", "ascending")])
    order = order.to_numpy().astype(np.int64)  # uint64 from arrow: differences must be signed
    if (np.diff(order) > 0).all():
        return df
    return df.take(order)


def _last_history_rows(opps: pd.DataFrame, hist: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``(deals, last)``: the deals (rows of ``opps``) with history and the row of each one's last history row.

    For validated tables only (distinct deal ids, history sorted by deal): each deal is
    found among the ends of the history runs, by pyarrow when the ids are text.
    """
    ids = hist["opportunity_id"]
    hid, pos = _text_arrow(ids), None
    if hid is not None and not hid.null_count and len(hid) >= 2:
        n = len(hid)
        change = pc.not_equal(hid.slice(1), hid.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        ends = np.append(np.flatnonzero(change), n - 1)  # the last row of each deal's run
        pos = text_positions(opps["opportunity_id"], hid.take(pa.array(ends)))
    else:
        ends = np.flatnonzero(~ids.duplicated(keep="last").to_numpy())
    if pos is None:
        pos = pd.Index(ids.iloc[ends]).get_indexer(opps["opportunity_id"])
    deals = np.flatnonzero(pos >= 0)
    return deals, ends[pos[deals]]


def _reconcile_history(
    opps: pd.DataFrame, hist: pd.DataFrame, as_of: pd.Timestamp, notes: list[str]
) -> tuple[pd.DataFrame, int]:
    """Add a history row at the snapshot date for deals whose current state differs from their last history row."""
    if hist.empty:
        if len(opps):
            notes.append(
                "history: no history rows; stage timing is unknown and as_of() cannot rewind stages, amounts or close dates"
            )
        return hist, 0
    hist = _sort_by_deal(hist)
    deals, last = _last_history_rows(opps, hist)
    cols = ["stage", "amount", "close_date"]
    differs = np.zeros(len(deals), dtype=bool)
    for c in cols:
        x = opps[c].iloc[deals].reset_index(drop=True)
        y = hist[c].iloc[last].reset_index(drop=True)
        differs |= ~((x == y).fillna(False) | (x.isna() & y.isna())).to_numpy(dtype=bool)
    n_without = len(opps) - len(deals)
    if n_without:
        notes.append(
            f"history: {n_without} deal(s) have no history row; their past stages are unknown "
            "(as_of shows them in their current state while open)"
        )
    if not differs.any():
        return hist, 0
    rows, last = deals[differs], last[differs]
    add = opps[["opportunity_id", "stage", "amount", "close_date", "forecast_category"]].iloc[rows]
    add = add.reset_index(drop=True)
    # a closed deal changed state when it closed: date its row at closed_at (when that is after its last
    # history row), so that as_of() does not show a deal won in March as open until the snapshot date
    closed_at = opps["closed_at"].iloc[rows].to_numpy()
    at_close = (opps["status"].iloc[rows] != "open").to_numpy() & (
        closed_at >= hist["changed_at"].iloc[last].dt.normalize().to_numpy()
    )
    add["changed_at"] = np.where(at_close, closed_at, np.datetime64(as_of, "ns")).astype("datetime64[ns]")
    add[_ROW] = -1
    notes.append(
        f"history: {len(rows)} deal(s) show a current state that their last history row does not; "
        "a history row was added for each, dated at the close date for closed deals and at the snapshot date otherwise"
    )
    hist = pd.concat([hist, add[hist.columns]], ignore_index=True)
    return _sort_by_deal(hist), len(rows)


def validate_tables(
    raw: Mapping[str, pd.DataFrame],
    *,
    playbook: Playbook,
    files: Mapping[str, str] | None = None,
    row_offsets: Mapping[str, int] | None = None,
    fx_rates: Mapping[str, float] | None = None,
    as_of: pd.Timestamp | None = None,
) -> tuple[dict[str, pd.DataFrame], LoadReport, pd.Timestamp]:
    """Validate raw tables; return canonical tables, the load report and the snapshot date.

    Parameters
    ----------
    raw : mapping of table name to DataFrame
        Tables as read (text or typed columns). Unknown table names raise.
    playbook : Playbook
        Stages and currency to check against.
    files : mapping, optional
        Table name -> file name used in messages (default ``<table>``).
    fx_rates : mapping, optional
        Currency -> value of one unit in the playbook currency. Deal, order and history
        amounts are converted here, and only here: a history row takes its own ``currency``
        cell when the raw history has that column (adapters pass the CRM's), else its deal's.
    as_of : Timestamp, optional
        Snapshot date; default the latest event date in the data.
    """
    token = _ARROW_OF.set({})
    try:
        return _validate_tables(
            raw, playbook=playbook, files=files, row_offsets=row_offsets, fx_rates=fx_rates, as_of=as_of
        )
    finally:
        _ARROW_OF.reset(token)


def _validate_tables(
    raw: Mapping[str, pd.DataFrame],
    *,
    playbook: Playbook,
    files: Mapping[str, str] | None,
    row_offsets: Mapping[str, int] | None,
    fx_rates: Mapping[str, float] | None,
    as_of: pd.Timestamp | None,
) -> tuple[dict[str, pd.DataFrame], LoadReport, pd.Timestamp]:
    unknown = sorted(set(raw) - set(TABLES))
    if unknown:
        raise SchemaError(f"unknown table(s) {', '.join(map(repr, unknown))}; canonical tables: {', '.join(TABLES)}")
    if "opportunities" not in raw:
        raise SchemaError(
            "no 'opportunities' table: it is the one table a CRM snapshot needs (opportunities.csv or .parquet)"
        )
    files = dict(files or {})
    notes: list[str] = []
    out: dict[str, pd.DataFrame] = {}
    rejects: list[pd.DataFrame] = []
    counts: dict[str, tuple[int, int]] = {}
    order = [t for t in TABLES if t in raw]
    deal_currency: pd.Series | None = None
    for name in order:
        df = raw[name].copy(deep=False)  # the caller's frame is left as it was; no data copied
        file = files.get(name, name)
        rej = _Rejects(name, file)
        df.index = pd.RangeIndex(len(df))
        first_row = 1 + (row_offsets or {}).get(name, 0)
        df[_ROW] = np.arange(first_row, first_row + len(df))
        row_currency = df.pop("currency") if name == "history" and "currency" in df else None
        clean = _validate_columns(df, TABLES[name], file, rej, playbook, notes)
        _forget(clean, keep=("opportunity_id", "account_id"))  # (keys and codes were for the columns' checks)
        if name == "opportunities":
            found = {str(c).strip().upper() for c in pd.unique(clean["currency"].dropna())}
            if found - {playbook.currency.lower(), playbook.currency.upper()}:
                deal_currency = pd.Series(clean["currency"].to_numpy(), index=clean["opportunity_id"].to_numpy())
            clean = _check_opportunities(clean, rej, playbook, notes, fx_rates, file)
        elif name == "orders":
            clean = _convert_currency(clean, rej, playbook, notes, fx_rates, file) if "currency" in clean else clean
        clean = _check_references(name, clean, out, rej, notes, file)
        if name == "history" and (row_currency is not None or deal_currency is not None):
            clean = _convert_history(clean, row_currency, deal_currency, rej, playbook, notes, fx_rates, file)
        out[name] = clean
        rejects.append(rej.frame())
        counts[name] = (len(df), len(clean))
        _forget(clean, keep=_STILL_LOOKED_UP.get(name, ()))
    if "accounts" in out:
        o = out["opportunities"]
        n = int(
            (
                ~_isna(o["account_id"]) & ~_isin(o["account_id"], out["accounts"]["account_id"]).to_numpy(dtype=bool)
            ).sum()
        )
        if n:
            notes.append(
                f"{files.get('opportunities', 'opportunities')}: {n} deal(s) refer to an account missing from accounts (kept)"
            )
    if as_of is None:
        as_of = _latest_event(out)
    added = {}
    if "history" in out:
        hist, n_added = _reconcile_history(out["opportunities"], out["history"], as_of, notes)
        out["history"], added["history"] = hist, n_added
    elif len(out["opportunities"]):
        notes.append(_NO_HISTORY_TABLE)
    tables = {}
    for name in list(out):
        df = out.pop(name)  # one table at a time: the validated frames are not kept twice
        if name in ("history", "field_history"):
            df = _sort_by_deal(df)  # history is sorted already: a cheap check
        del df[_ROW]  # a frame built by the validation: the caller's frames are not touched
        df.index = pd.RangeIndex(len(df))
        tables[name] = df
    rejected = (
        pd.concat([r for r in rejects if len(r)], ignore_index=True)
        if any(len(r) for r in rejects)
        else LoadReport().rejected
    )
    summary = pd.DataFrame(
        [
            {
                "table": n,
                "file": files.get(n, n),
                "rows_read": counts[n][0],
                "rows_kept": counts[n][1],
                "rows_rejected": counts[n][0] - counts[n][1],
                "rows_added": added.get(n, 0),
            }
            for n in order
        ]
    )
    return tables, LoadReport(summary=summary, rejected=rejected, notes=notes), as_of


def _latest_event(tables: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    cands = []
    for name, col in _EVENT_DATES:
        if name in tables and len(tables[name]):
            v = tables[name][col].max()
            if pd.notna(v):
                cands.append(v)
    if not cands:
        raise SchemaError(
            "the data holds no dated event (no created_at, changed_at...): cannot tell the snapshot date; pass as_of="
        )
    return max(cands).normalize()
