"""Write a sample table as CSV, fast, with exactly the bytes of ``DataFrame.to_csv``.

The reference format (:func:`write_csv_pandas`, the original writer): no index, ``\\n`` line
ends, dates as ``YYYY-MM-DD`` when a column holds whole days else ``YYYY-MM-DDTHH:MM:SS``,
floats as numpy's shortest repr (what ``to_csv`` writes: ``1.0``, ``1e+20``), booleans
``True``/``False``, empty cells for missing values, and a text cell quoted (inner quotes
doubled) only when it holds a comma, a quote or a newline (the ``csv`` module's minimal
quoting).

:func:`write_csv` formats each column with vectorised numpy/pyarrow calls, joins the cells
of a block of rows in pyarrow and writes the block's bytes: about 5x less CPU than
``to_csv`` on the generated tables. It falls back to :func:`write_csv_pandas` for what it
does not reproduce byte for byte (columns of other dtypes, text holding a carriage
return, dates outside the years 1000-9999).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["write_csv", "write_csv_pandas"]

_BLOCK_ROWS = 500_000
_NEEDS_QUOTES = '[,"\n]'


def write_csv_pandas(df: pd.DataFrame, path: Path) -> None:
    """The reference writer: dates formatted with ``strftime``, then ``DataFrame.to_csv``."""
    out = df.copy()
    for col in out.columns:
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            whole = bool((s.dropna() == s.dropna().dt.normalize()).all())
            fmt = "%Y-%m-%d" if whole else "%Y-%m-%dT%H:%M:%S"
            out[col] = s.dt.strftime(fmt).astype(object).where(s.notna(), "")
    out.to_csv(path, index=False, lineterminator="\n")


def _quote(a: pa.Array) -> pa.Array:
    """Text cells as the csv module writes them (minimal quoting); null -> empty."""
    a = a.fill_null("")
    needs = pc.match_substring_regex(a, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return a
    q = pa.scalar('"', pa.large_string())
    quoted = pc.binary_join_element_wise(q, pc.replace_substring(a, '"', '""'), q, pa.scalar("", pa.large_string()))
    return pc.if_else(needs, quoted, a)


def _column_kinds(df: pd.DataFrame) -> list[tuple[str, str]] | None:
    """``(kind, date unit)`` per column, or None when a column needs the reference writer."""
    kinds = []
    for col in df.columns:
        s = df[col]
        if s.dtype == "datetime64[ns]":
            v = s.to_numpy()
            ok = ~np.isnat(v)
            if ok.any():
                years = v[ok].astype("datetime64[Y]").astype(np.int64) + 1970
                if years.min() < 1000 or years.max() > 9999:
                    return None
            whole = bool((v[ok].astype("datetime64[D]") == v[ok]).all())
            kinds.append(("date", "D" if whole else "s"))
        elif s.dtype == np.float64:
            kinds.append(("float", ""))
        elif isinstance(s.dtype, pd.StringDtype):
            kinds.append(("str", ""))
        elif isinstance(s.dtype, pd.BooleanDtype):
            kinds.append(("bool", ""))
        else:
            return None
    return kinds


def _cells(s: pd.Series, kind: str, unit: str) -> pa.Array | None:
    """One column of a block as CSV cell text (large_string, no nulls); None: text with a carriage return."""
    if kind == "date":
        v = s.to_numpy()
        txt = np.datetime_as_string(v, unit=unit)
        return pa.array(txt, type=pa.large_string(), mask=np.isnat(v)).fill_null("")
    if kind == "float":
        v = s.to_numpy()
        return pa.array(v.astype(str), type=pa.large_string(), mask=np.isnan(v)).fill_null("")
    if kind == "bool":
        v = s.array
        txt = np.where(v.to_numpy(dtype=bool, na_value=False), "True", "False")
        return pa.array(txt, type=pa.large_string(), mask=v.isna()).fill_null("")
    text = pa.array(s.to_numpy(dtype=object, na_value=None), type=pa.large_string())
    if pc.any(pc.match_substring(text, "\r")).as_py():
        return None
    return _quote(text)


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` like :func:`write_csv_pandas` (same bytes), with vectorised formatting.

    Blocks of rows are formatted and written one after the other (memory stays small); a
    block holding text with a carriage return makes the reference writer rewrite the file.
    """
    kinds = _column_kinds(df)
    if kinds is None or not len(df.columns):
        write_csv_pandas(df, path)
        return
    header = _quote(pa.array([str(c) for c in df.columns], type=pa.large_string())).to_pylist()
    sep, end = pa.scalar(",", pa.large_string()), pa.scalar("", pa.large_string())
    with open(path, "wb") as f:
        f.write((",".join(header) + "\n").encode("utf-8"))
        for a in range(0, len(df), _BLOCK_ROWS):
            block = df.iloc[a : a + _BLOCK_ROWS]
            cols = [_cells(block[c], k, u) for c, (k, u) in zip(df.columns, kinds, strict=True)]
            if any(c is None for c in cols):
                break
            # an empty last cell makes every line end with ",", replaced by the line end below
            lines = pc.binary_join_element_wise(*cols, end, sep)
            buf = lines.buffers()
            offsets = np.frombuffer(buf[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
            data = np.frombuffer(buf[2], dtype=np.uint8)[offsets[0] : offsets[-1]].copy()
            data[offsets[1:] - offsets[0] - 1] = ord("\n")
            f.write(data.tobytes())
        else:
            return
    write_csv_pandas(df, path)
