"""Reading and writing CRM snapshots: a folder of CSV or Parquet files.

A snapshot folder holds one file per canonical table (``opportunities.csv``,
``history.csv``... or ``.parquet``; ``.csv.gz`` works too), an optional
``crm.yaml`` (``as_of: 2026-11-20``, ``currency: EUR``, ``fx_rates: {USD: 0.92}``)
and an optional ``playbook.yaml``. Only ``opportunities`` is required.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml

from forecastkit.data.schema import TABLES
from forecastkit.data.validate import note_not_read, tables_to_read
from forecastkit.errors import PeriodError, SchemaError
from forecastkit.periods import to_timestamp
from forecastkit.playbook import Playbook

if TYPE_CHECKING:
    from forecastkit.data.crm import CRM

__all__ = ["load", "save", "read_table"]

_SUFFIXES = (".parquet", ".csv", ".csv.gz")


def _find(folder: Path, name: str) -> Path | None:
    found = [folder / f"{name}{s}" for s in _SUFFIXES if (folder / f"{name}{s}").exists()]
    if len(found) > 1:
        raise SchemaError(
            f"{folder}: table '{name}' is given twice ({', '.join(p.name for p in found)}); keep one file"
        )
    return found[0] if found else None


def _head(path: Path) -> str:
    """The first 64 KiB of a (possibly gzipped) text file, decoded leniently (empty when unreadable)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(1 << 16)
    except (OSError, EOFError):
        return ""  # read_csv reports the problem
    return head.decode("utf-8-sig", errors="replace")


def _separator(path: Path, head: str | None = None) -> str:
    """The CSV separator, from the header line: ``,`` unless the header has none and has ``;`` or a tab."""
    text = (_head(path) if head is None else head).lstrip("\r\n")
    header = text.splitlines()[0] if text else ""
    if "," in header:
        return ","
    counts = {sep: header.count(sep) for sep in (";", "\t", "|")}
    best = max(counts, key=lambda k: counts[k])
    return best if counts[best] else ","


#: Raw text columns stay pyarrow arrays, as read (no conversion nor copy): validation makes them canonical text.
_RAW_TEXT = {pa.string(): pd.ArrowDtype(pa.string()), pa.large_string(): pd.ArrowDtype(pa.large_string())}

#: A text column whose Parquet dictionary is at most this big (compressed) in every row group is read as a
#: pyarrow dictionary (stages, owners, categories...): validation then converts each distinct value once.
_SMALL_DICTIONARY = 1 << 16


def _raw_text_dtype(typ: pa.DataType) -> pd.ArrowDtype | None:
    """The pandas dtype of a raw text column read by pyarrow (None: pyarrow's own conversion)."""
    if pa.types.is_dictionary(typ):
        return pd.ArrowDtype(typ) if pa.types.is_string(typ.value_type) else None
    return _RAW_TEXT.get(typ)


def _dictionary_columns(path: Path) -> list[str]:
    """The text columns of a canonical table's Parquet file that have a small dictionary in every row group.

    Only the speed of the read depends on this choice, not the values. Files that store
    dictionaries themselves (pandas categoricals) are read as before: none.
    """
    table = TABLES.get(path.name.removesuffix(".parquet"))
    if table is None:
        return []
    meta = pq.read_metadata(path)
    schema = meta.schema.to_arrow_schema()
    if meta.num_row_groups == 0 or any(pa.types.is_dictionary(f.type) for f in schema):
        return []
    texts = {c.name for c in table.columns if c.kind == "str"}
    found = []
    for j in range(meta.num_columns):
        name = meta.schema.column(j).path
        if name not in texts or not pa.types.is_string(schema.field(name).type):
            continue
        groups = [meta.row_group(r).column(j) for r in range(meta.num_row_groups)]
        if all(
            c.has_dictionary_page
            and c.dictionary_page_offset is not None
            and 0 < c.data_page_offset - c.dictionary_page_offset <= _SMALL_DICTIONARY
            for c in groups
        ):
            found.append(name)
    return found


def _arrow_csv(path: Path, head: str, sep: str) -> pd.DataFrame | None:
    """Read a plain CSV file with pyarrow (every cell as text); None when the file needs the careful reader.

    The fast reader takes files whose header is one line of distinct, non-empty
    names and whose rows all have as many cells as the header; anything else
    (bad encoding, ragged rows, odd headers) goes to pandas' reader, whose
    behaviour and error messages are the reference.
    """
    lines = head.splitlines()
    if not lines or not lines[0] or '"' in lines[0] or (len(lines) < 2 and len(head) > 60_000):
        return None  # leading blank lines, quoted or very long header
    names = lines[0].split(sep)
    if any(not n or n != n.strip() for n in names) or len(set(names)) != len(names):
        return None
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=1 << 24),
            parse_options=pacsv.ParseOptions(delimiter=sep, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, OSError, ValueError):
        return None
    return table.to_pandas(types_mapper=_RAW_TEXT.get)


def _read_raw(path: Path) -> pd.DataFrame:
    """Read one table file for validation: text columns as pyarrow strings (``pd.ArrowDtype``: fast and compact)."""
    try:
        if path.name.endswith(".parquet"):
            few_valued = _dictionary_columns(path)
            table = pq.read_table(path, read_dictionary=few_valued or None)
            return table.to_pandas(types_mapper=_raw_text_dtype if few_valued else _RAW_TEXT.get)
        head = _head(path)
        sep = _separator(path, head)
        fast = _arrow_csv(path, head, sep) if head else None
        if fast is not None:
            return fast
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path.name}: cannot be read: {exc}") from None
    return read_table(path)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one table file as raw data (CSV: every cell as text, only empty cells missing).

    CSV files are UTF-8 (a byte-order mark is allowed); the separator is a comma,
    or a semicolon / tab / ``|`` when the header line has no comma (exports from
    spreadsheets in locales whose decimal separator is a comma).
    """
    path = Path(path)
    try:
        if path.name.endswith(".parquet"):
            return pd.read_parquet(path)
        return pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            low_memory=False,
            sep=_separator(path),
        )
    except pd.errors.EmptyDataError:
        raise SchemaError(
            f"{path.name}: the file is empty (not even a header line); delete it or export the table again"
        ) from None
    except UnicodeDecodeError as exc:
        raise SchemaError(
            f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-export the file as UTF-8"
        ) from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise SchemaError(f"{path.name}: cannot be read: {exc}") from None


class _TableFiles(Mapping[str, pd.DataFrame]):
    """Table name -> file, read when validation asks for it (one raw table in memory at a time)."""

    def __init__(self, paths: Mapping[str, Path]) -> None:
        self._paths = dict(paths)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return _read_raw(self._paths[name])

    def __contains__(self, name: object) -> bool:
        return name in self._paths

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)


def _read_meta(folder: Path) -> dict:
    meta_path = folder / "crm.yaml"
    if not meta_path.exists():
        return {}
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SchemaError(f"{meta_path}: not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise SchemaError(f"{meta_path}: expected keys such as 'as_of: 2026-11-20'")
    allowed = {"as_of", "currency", "fx_rates"}
    bad = sorted(set(meta) - allowed)
    if bad:
        raise SchemaError(f"{meta_path}: unknown key(s) {bad}; allowed: {sorted(allowed)}")
    if meta.get("as_of") is not None:
        try:
            meta["as_of"] = to_timestamp(meta["as_of"], what="as_of")
        except PeriodError as exc:
            raise SchemaError(f"{meta_path}: {exc}") from None
    rates = meta.get("fx_rates")
    if rates is not None and (
        not isinstance(rates, dict)
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in rates.values())
    ):
        raise SchemaError(
            f"{meta_path}: 'fx_rates' must map currency codes to positive numbers, e.g. {{USD: 0.92}}; got {rates!r}"
        )
    return meta


def load(
    path: str | Path,
    *,
    as_of: object = None,
    playbook: Playbook | str | Path | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    tables: Iterable[str] | None = None,
) -> CRM:
    """Load a CRM snapshot from a folder of CSV or Parquet files.

    Parameters
    ----------
    path : str or Path
        The folder (see the module docstring for its layout), or a database URL:
        ``duckdb:///path/crm.duckdb`` or any SQLAlchemy URL such as
        ``postgresql+psycopg://user@host/db`` (see :mod:`forecastkit.adapters.sql`).
    as_of : date, optional
        Rewind the loaded snapshot to this date (``crm.as_of(as_of)``).
    playbook : Playbook or path to YAML, optional
        Default: ``playbook.yaml`` in the folder, else the default playbook.
    strict : bool
        Raise :class:`~forecastkit.errors.DataError` if any row is rejected
        (default: keep the good rows and account for the others in ``crm.load_report``).
    fx_rates : mapping, optional
        Currency -> value of one unit in the reporting currency.
    tables : list of str, optional
        Read only these canonical tables (default: every table found), for an analysis
        that needs a few: ``load(path, tables=["history", "activities"])``. ``opportunities``
        is always read, and so are the tables the named ones are checked against
        (``accounts`` for ``contacts``, ``orders`` and ``subscriptions``) and, when the
        snapshot date is not given by ``crm.yaml`` (or the database), the tables whose
        latest event sets it. The tables read are row for row those of a full load, with
        the same ``load_report`` lines. The others are absent (``crm.has(name)`` is False),
        listed in ``crm.load_report.not_read`` and in a note; the check that deals name
        known accounts is only made when ``accounts`` is read, and ``strict`` only
        sees the rows read. An unknown name raises :class:`~forecastkit.errors.ParameterError`.

    Returns
    -------
    CRM
        The snapshot; ``crm.load_report`` accounts for every row read.
    """
    from forecastkit.adapters import sql
    from forecastkit.data.crm import CRM

    # names checked before any file or database is touched (the list also holds the tables they need)
    named = None if tables is None else tables_to_read(tables, snapshot_date_known=True)
    if sql.is_url(path):
        return sql.load(str(path), only=named, as_of=as_of, playbook=playbook, strict=strict, fx_rates=fx_rates)
    folder = Path(path)
    if not folder.exists():
        raise SchemaError(f"{folder}: no such folder; point load() at the folder holding opportunities.csv")
    if not folder.is_dir():
        raise SchemaError(
            f"{folder}: expected a folder of table files (opportunities.csv, history.csv, ...), got a file"
        )
    meta = _read_meta(folder)
    if isinstance(playbook, (str, Path)):
        pb = Playbook.from_yaml(playbook)
    elif playbook is None:
        pb = Playbook.from_yaml(folder / "playbook.yaml") if (folder / "playbook.yaml").exists() else Playbook()
    else:
        pb = playbook
    if "currency" in meta and meta["currency"] != pb.currency:
        pb = Playbook.from_dict({**pb.to_dict(), "currency": meta["currency"]}, source=str(folder / "crm.yaml"))
    wanted = tables_to_read(named, snapshot_date_known=meta.get("as_of") is not None)
    paths, files, not_read = {}, {}, []
    for name in TABLES:
        f = _find(folder, name)
        if f is not None and name in wanted:
            paths[name], files[name] = f, f.name
        elif f is not None:
            not_read.append(name)
    raw = _TableFiles(paths)
    if "opportunities" not in raw:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "(empty)"
        raise SchemaError(
            f"{folder}: no opportunities.csv or opportunities.parquet (found: {listing}). "
            "It is the one table a snapshot needs; see data/sample/ for the layout."
        )
    crm = CRM.from_tables(
        raw, as_of=meta.get("as_of"), playbook=pb, strict=strict, fx_rates=fx_rates or meta.get("fx_rates"), files=files
    )
    note_not_read(crm.load_report, not_read)
    known = {f"{n}{s}" for n in TABLES for s in _SUFFIXES} | {"crm.yaml", "playbook.yaml", "README.md"}
    ignored = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name not in known and not p.name.startswith(".")
    )
    if ignored:
        crm.load_report.notes.append(
            f"{folder}: ignored file(s) that are not canonical tables: {', '.join(ignored[:10])}"
        )
    if as_of is not None:
        crm = crm.as_of(as_of)
    return crm


def _atomic_write(path: Path, write) -> None:  # type: ignore[no-untyped-def]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(crm: CRM, path: str | Path, format: Literal["csv", "parquet"] = "csv") -> Path:
    """Write a snapshot folder that :func:`load` reads back to the same tables."""
    from forecastkit.adapters import sql

    if sql.is_url(path):
        sql.save(crm, str(path))
        return Path(str(path))
    if format not in ("csv", "parquet"):
        raise SchemaError(f"format must be 'csv' or 'parquet', got {format!r}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in crm.tables.items():
        if not crm.has(name):
            continue
        target = folder / f"{name}.{format}"
        if format == "csv":
            _atomic_write(target, lambda tmp, df=df: df.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%S"))
        else:
            _atomic_write(target, lambda tmp, df=df: df.to_parquet(tmp, index=False))
    meta = {"as_of": str(crm.as_of_date.date()), "currency": crm.playbook.currency}
    (folder / "crm.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
    crm.playbook.to_yaml(folder / "playbook.yaml")
    return folder
