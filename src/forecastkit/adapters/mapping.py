"""Any CSV export -> CRM snapshot, through a YAML mapping file.

A mapping file names, per canonical table, the export file, which source column
feeds which canonical column, value maps (stages, statuses, forecast categories),
constants, and how to read dates and numbers::

    # map.yaml - one table: the keys can sit at the top level
    file: deals.csv               # relative to the YAML file; or pass the CSV to load()
    columns:                      # source column -> canonical column
      Deal ID: opportunity_id
      Owner: owner
      Created: created_at
      Expected close: close_date
      Value: amount               # "USD 485,000.00", "1 234,56 EUR"... (currency read from the cell)
      Phase: stage
      Win chance: probability     # "90%" or 0-100 or 0-1
    values:
      stage: {Prospect: to_contact, Qualified: qualification, Demo: discovery,
              Quote sent: proposal, Negotiating: negotiation, Signed: won, Dropped: lost}
    constants: {currency: EUR}    # a canonical column with one value for every row
    dayfirst: true                # 03/04/2026 is 3 April (or date_format: "%d.%m.%Y")
    decimal: ","                  # decimal separator of numbers (inferred when the data tells)

    # several tables: one block each under "tables:", e.g.
    # tables:
    #   opportunities: {file: deals.csv, columns: {...}}
    #   history: {file: deal_changes.csv, columns: {...}, values: {stage: {...}}}
    # fx_rates: {USD: 0.92}       # currency -> value of one unit in the reporting currency

Unknown keys, unknown canonical columns and source columns missing from the file
are errors that name the mapping file. Without a history table the load notes say
that stage timing is unknown, and analyses that need history raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from forecastkit.adapters._common import RawExport, build
from forecastkit.adapters._parse import TEXT, for_validation, parse_dates, parse_money, parse_percent, pick, read_export
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.data.validate import LoadReport
from forecastkit.errors import SchemaError
from forecastkit.playbook import Playbook

__all__ = ["load", "validate_export", "read_mapping"]

_TABLE_KEYS = {
    "file",
    "columns",
    "values",
    "constants",
    "dayfirst",
    "date_format",
    "decimal",
    "probability",
    "encoding",
}
_TOP_KEYS = _TABLE_KEYS | {"tables", "fx_rates", "as_of", "currency"}
_MONEY = {"amount", "budget", "margin", "invoiced_amount", "commit", "best_case", "mrr", "marketing", "sales"}


def read_mapping(mapping: str | Path | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None, str]:
    """The mapping as a dict (``tables`` form), the folder of its file and its name for messages."""
    if isinstance(mapping, Mapping):
        raw, base, name = dict(mapping), None, "mapping"
    else:
        path = Path(mapping)
        if not path.exists():
            raise SchemaError(f"{path}: no such mapping file")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SchemaError(f"{path.name}: not valid YAML: {exc}") from None
        base, name = path.parent, path.name
    if not isinstance(raw, dict):
        raise SchemaError(f"{name}: expected keys such as 'columns:' and 'values:', got {type(raw).__name__}")
    bad = sorted(set(raw) - _TOP_KEYS)
    if bad:
        raise SchemaError(f"{name}: unknown key(s) {bad}; allowed: {sorted(_TOP_KEYS)}")
    top = {k: v for k, v in raw.items() if k in _TABLE_KEYS}
    tables = dict(raw.get("tables") or {})
    if top.keys() & {"file", "columns", "values", "constants"}:
        if "opportunities" in tables:
            raise SchemaError(
                f"{name}: give the opportunities mapping either at the top level or under 'tables:', not both"
            )
        tables["opportunities"] = top
    for t, spec in tables.items():
        if t not in TABLES:
            raise SchemaError(f"{name}: tables: {t!r} is not a canonical table; canonical tables: {', '.join(TABLES)}")
        if not isinstance(spec, dict):
            raise SchemaError(f"{name}: tables.{t} must be a mapping with 'columns:'")
        bad = sorted(set(spec) - _TABLE_KEYS)
        if bad:
            raise SchemaError(f"{name}: tables.{t}: unknown key(s) {bad}; allowed: {sorted(_TABLE_KEYS)}")
        cols = spec.get("columns") or {}
        canon = TABLES[t].column_names
        wrong = sorted({str(v) for v in cols.values()} - set(canon))
        wrong += sorted(set(spec.get("constants") or {}) - set(canon))
        wrong += sorted(set(spec.get("values") or {}) - set(canon))
        if wrong:
            raise SchemaError(
                f"{name}: tables.{t}: {wrong} are not columns of the canonical table '{t}'; use one of {', '.join(canon)}"
            )
    if "opportunities" not in tables:
        raise SchemaError(f"{name}: no mapping for the opportunities table (give 'columns:' at the top level)")
    inherit = {k: raw[k] for k in ("dayfirst", "date_format", "decimal", "probability", "encoding") if k in raw}
    out = {"tables": {t: {**inherit, **spec} for t, spec in tables.items()}}
    for k in ("fx_rates", "as_of", "currency"):
        if k in raw:
            out[k] = raw[k]
    return out, base, name


def _map_values(raw: pd.Series, vmap: Mapping[Any, Any]) -> pd.Series:
    exact = {str(k): v for k, v in vmap.items()}
    folded = {str(k).strip().lower(): v for k, v in vmap.items()}
    txt = raw.astype(TEXT)
    out = txt.astype(object).map(exact)
    miss = out.isna() & txt.notna()
    if miss.any():
        out[miss] = txt[miss].str.strip().str.lower().astype(object).map(folded)
    return out.where(out.notna(), raw.astype(object))


def _read_table(table: str, spec: dict, path: Path, export: RawExport, mapname: str) -> None:
    file = path.name
    df = read_export(path, encoding=spec.get("encoding", "utf-8"), notes=export.notes)
    cols = {str(k): str(v) for k, v in (spec.get("columns") or {}).items()}
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise SchemaError(
            f"{mapname}: column(s) {', '.join(map(repr, missing))} mapped for '{table}' are not in {file} "
            f"(found: {', '.join(list(df.columns)[:15])}); fix the names under 'columns:'"
        )
    for c in cols:
        pick(df, [c], file=file)  # refuse duplicated headers with different values
    dup_targets = sorted({v for v in cols.values() if list(cols.values()).count(v) > 1})
    if dup_targets:
        raise SchemaError(f"{mapname}: several source columns map to {dup_targets} in '{table}'; keep one each")
    ignored = [c for c in df.columns if c not in cols]
    if ignored:
        export.notes.append(f"{file}: column(s) not mapped, not loaded: {', '.join(ignored[:12])}")
    values = spec.get("values") or {}
    opts = {"dayfirst": spec.get("dayfirst"), "date_format": spec.get("date_format")}
    decimal = spec.get("decimal")
    schema = TABLES[table]
    out: dict[str, pd.Series] = {}
    currency = None
    for src, dst in cols.items():
        raw = df[src]
        if dst in values:
            raw = _map_values(raw, values[dst])
        kind = schema.column(dst).kind
        if dst == "probability":
            scale = spec.get("probability", "auto")
            if scale == "auto":
                num = pd.to_numeric(raw.astype(TEXT).str.rstrip("%"), errors="coerce")
                scale = (
                    "percent"
                    if (raw.astype(TEXT).str.endswith("%").fillna(False).any() or (num > 1).any())
                    else "fraction"
                )
            v, bad = parse_percent(raw, scale=scale, decimal=decimal or ".")
            out[dst] = for_validation(v, bad, raw)
        elif kind == "date":
            v, bad = parse_dates(raw, column=src, file=file, **opts)
            out[dst] = for_validation(v, bad, raw)
        elif kind == "float":
            v, cur, bad = parse_money(raw, column=src, file=file, decimal=decimal)
            out[dst] = for_validation(v, bad, raw)
            if dst in _MONEY and cur.notna().any():
                currency = cur
        else:
            out[dst] = raw
    frame = pd.DataFrame(out, index=df.index)
    for k, v in (spec.get("constants") or {}).items():
        frame[k] = v
    if table in ("opportunities", "orders") and "currency" not in frame and currency is not None:
        frame["currency"] = currency
    export.add(table, frame, file, np.arange(1, len(df) + 1))


def _export(mapping: str | Path | Mapping[str, Any], csv: str | Path | None) -> tuple[RawExport, dict[str, Any]]:
    spec, base, name = read_mapping(mapping)
    export = RawExport()
    for table, tspec in spec["tables"].items():
        f = csv if (table == "opportunities" and csv is not None) else tspec.get("file")
        if f is None:
            raise SchemaError(f"{name}: no file for '{table}': add 'file:' to its mapping or pass the CSV")
        path = Path(f)
        if not path.is_absolute() and base is not None and not (table == "opportunities" and csv is not None):
            path = base / path
        _read_table(table, tspec, path, export, name)
    return export, spec


def load(
    mapping: str | Path | Mapping[str, Any],
    csv: str | Path | None = None,
    *,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
) -> CRM:
    """Load CSV exports through a YAML mapping (see the module docstring for the format).

    Parameters
    ----------
    mapping : path or dict
        The mapping file (or its parsed content).
    csv : path, optional
        The opportunities export (overrides the mapping's ``file:``).
    playbook, strict, fx_rates, as_of
        As in :func:`forecastkit.load`; ``fx_rates`` and ``as_of`` may also sit in the mapping.

    Returns
    -------
    CRM
        The snapshot; ``crm.load_report`` accounts for every row.
    """
    export, spec = _export(mapping, csv)
    pb = playbook
    if pb is None and "currency" in spec:
        pb = Playbook.from_dict({"currency": spec["currency"]})
    return build(
        export, playbook=pb, strict=strict, fx_rates=fx_rates or spec.get("fx_rates"), as_of=as_of or spec.get("as_of")
    )


def validate_export(
    mapping: str | Path | Mapping[str, Any],
    csv: str | Path | None = None,
    *,
    playbook: Playbook | None = None,
    fx_rates: Mapping[str, float] | None = None,
) -> LoadReport:
    """What would be loaded and rejected, before any analysis (``forecastkit validate --mapping``).

    Returns
    -------
    LoadReport
        ``summary`` (``table, file, rows_read, rows_kept, rows_rejected, rows_added``),
        ``rejected`` (``table, file, row, column, value, reason``; ``row`` is the data row
        in the file), ``notes`` (unmapped columns, missing history...) and ``describe()``.
        Errors in the mapping itself (unknown columns, ambiguous dates) raise.
    """
    return load(mapping, csv, playbook=playbook, fx_rates=fx_rates).load_report
