"""Mask personal data in reports meant for wide distribution.

:func:`mask_personal_data` replaces the personal data of a CRM snapshot with
stable pseudonyms; :func:`mask_export` writes a masked copy of an export
folder (what ``forecastkit report --mask-personal-data`` runs the report on,
so that every report is masked without changing its notebook, and the row
accounting of the load is unchanged).

What is masked
--------------
Always (``mask_personal_data(crm)``):

* ``contacts.name`` -> ``Person 0001``...; ``contacts.email`` ->
  ``email-0001@masked.invalid``; ``contacts.phone`` and ``accounts.phone``
  -> ``phone-0001``;
* the people named on deals: ``opportunities.decision_maker`` and
  ``opportunities.champion`` (same ``Person`` pseudonyms as contacts, so a
  contact named as champion keeps one pseudonym), and the same fields'
  ``old_value`` / ``new_value`` in ``field_history`` (else ``crm.as_of()``
  would bring the names back);
* free-text visit reports (``activities.report``) -> ``[masked]``.

With ``names=True`` also the people and customers of the sales team:

* rep and manager names wherever they appear (``owner`` in every table,
  ``reps.manager``, ``owner`` changes in ``field_history``) -> ``Rep 01``...;
* deal names -> ``Deal <opportunity_id>``; account names ->
  ``Account <account_id>``; ``accounts.website`` -> ``[masked]``.

Pseudonyms are numbered in the sorted order of the original values, so the
same data always gives the same pseudonyms (deterministic reports) and a value
keeps its pseudonym across tables. Missing values stay missing (the hygiene
checks still see which fields are empty). Ids, amounts, dates, stages, teams,
loss reasons and every other column are unchanged, so every number in a
masked report equals the unmasked one.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from forecastkit.errors import ParameterError

if TYPE_CHECKING:
    from forecastkit.data.crm import CRM

__all__ = ["mask_personal_data", "mask_tables", "mask_export", "PERSONAL_COLUMNS", "NAME_COLUMNS"]

#: Columns masked by default: table -> columns.
PERSONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "contacts": ("name", "email", "phone"),
    "accounts": ("phone",),
    "opportunities": ("decision_maker", "champion"),
    "field_history": ("old_value", "new_value"),  # only rows whose field is a masked opportunity column
    "activities": ("report",),
}
#: Columns masked too with ``names=True``: table -> columns.
NAME_COLUMNS: dict[str, tuple[str, ...]] = {
    "opportunities": ("owner", "name"),
    "activities": ("owner",),
    "accounts": ("owner", "name", "website"),
    "orders": ("owner",),
    "targets": ("owner",),
    "forecast_calls": ("owner",),
    "reps": ("owner", "manager"),
}
_PEOPLE_FIELDS = ("decision_maker", "champion")
_MASKED = "[masked]"
# tables with nothing to mask: mask_export links or copies their files unchanged
_UNTOUCHED = ("history", "costs", "subscriptions")


def _present(s: pd.Series) -> pd.Series:
    return s.notna() & (s.astype("string").str.strip() != "").fillna(False)


def _values(frames: Iterable[pd.Series]) -> list[str]:
    found: set[str] = set()
    for s in frames:
        found.update(s[_present(s)].astype(str).tolist())
    return sorted(found)


def _mapping(values: list[str], fmt: str) -> dict[str, str]:
    width = max(2, len(str(len(values))))
    return {v: fmt.format(n=str(i + 1).zfill(width)) for i, v in enumerate(values)}


def _replace(s: pd.Series, mapping: Mapping[str, str] | str) -> pd.Series:
    """``s`` with present values replaced (through ``mapping``, or by one constant); missing stay missing."""
    keep = _present(s)
    if not keep.any():
        return s
    new = s.astype(object).copy()
    if isinstance(mapping, str):
        new[keep] = mapping
    else:
        new[keep] = s[keep].astype(str).map(mapping)
    if isinstance(s.dtype, pd.StringDtype):
        return new.astype(s.dtype)
    return new


def _col(tables: Mapping[str, pd.DataFrame], table: str, column: str) -> pd.Series | None:
    df = tables.get(table)
    if df is None or column not in df.columns:
        return None
    return df[column]


def _field_rows(fh: pd.DataFrame, fields: tuple[str, ...]) -> pd.Series:
    if "field" not in fh.columns:
        return pd.Series(False, index=fh.index)
    return fh["field"].astype("string").str.strip().isin(fields).fillna(False).astype(bool)


def mask_tables(tables: Mapping[str, pd.DataFrame], *, names: bool = False) -> dict[str, pd.DataFrame]:
    """Mask the personal data of canonical (or raw, as read) tables.

    Parameters
    ----------
    tables : mapping of table name to DataFrame
        Canonical tables (``crm.tables``) or raw tables as read from an export
        (text cells); absent tables and columns are skipped.
    names : bool, default False
        Also mask rep, manager, deal and account names (see the module docstring).

    Returns
    -------
    dict of str to DataFrame
        New frames with the same rows, columns and dtypes; the inputs are not modified.
    """
    out = {name: df.copy() for name, df in tables.items()}
    fh = out.get("field_history")
    people_rows = _field_rows(fh, _PEOPLE_FIELDS) if fh is not None else None

    # people: contacts and the people named on deals share one numbering
    person_sources = [_col(out, "contacts", "name")]
    person_sources += [_col(out, "opportunities", f) for f in _PEOPLE_FIELDS]
    if fh is not None:
        person_sources += [fh.loc[people_rows, c] for c in ("old_value", "new_value") if c in fh.columns]
    people = _mapping(_values(s for s in person_sources if s is not None), "Person {n}")
    emails = _mapping(
        _values([s for s in [_col(out, "contacts", "email")] if s is not None]), "email-{n}@masked.invalid"
    )
    phones = _mapping(
        _values(s for s in (_col(out, "contacts", "phone"), _col(out, "accounts", "phone")) if s is not None),
        "phone-{n}",
    )
    reps: dict[str, str] = {}
    if names:
        rep_sources = [_col(out, t, c) for t, cols in NAME_COLUMNS.items() for c in cols if c in ("owner", "manager")]
        if fh is not None:
            owner_rows = _field_rows(fh, ("owner",))
            rep_sources += [fh.loc[owner_rows, c] for c in ("old_value", "new_value") if c in fh.columns]
        reps = _mapping(_values(s for s in rep_sources if s is not None), "Rep {n}")

    def put(table: str, column: str, mapping: Mapping[str, str] | str) -> None:
        if table in out and column in out[table].columns:
            out[table][column] = _replace(out[table][column], mapping)

    put("contacts", "name", people)
    put("contacts", "email", emails)
    put("contacts", "phone", phones)
    put("accounts", "phone", phones)
    for f in _PEOPLE_FIELDS:
        put("opportunities", f, people)
    put("activities", "report", _MASKED)
    if names:
        for table, cols in NAME_COLUMNS.items():
            for c in cols:
                if c in ("owner", "manager"):
                    put(table, c, reps)
        opps = out.get("opportunities")
        if opps is not None and "name" in opps.columns and "opportunity_id" in opps.columns:
            ids = opps["opportunity_id"].astype("string")
            keep = _present(opps["name"])
            new = opps["name"].astype(object).copy()
            new[keep] = "Deal " + ids[keep].astype(str)
            opps["name"] = new.astype(opps["name"].dtype) if isinstance(opps["name"].dtype, pd.StringDtype) else new
        acc = out.get("accounts")
        if acc is not None and "name" in acc.columns and "account_id" in acc.columns:
            keep = _present(acc["name"])
            new = acc["name"].astype(object).copy()
            new[keep] = "Account " + acc.loc[keep, "account_id"].astype(str)
            acc["name"] = new.astype(acc["name"].dtype) if isinstance(acc["name"].dtype, pd.StringDtype) else new
        put("accounts", "website", _MASKED)
    if fh is not None:
        for c in ("old_value", "new_value"):
            if c not in fh.columns:
                continue
            col = fh[c].copy()
            col[people_rows] = _replace(fh.loc[people_rows, c], people)
            if names:
                owner_rows = _field_rows(fh, ("owner",))
                col[owner_rows] = _replace(fh.loc[owner_rows, c], reps)
                name_rows = _field_rows(fh, ("name",))
                if name_rows.any() and "opportunity_id" in fh.columns:
                    present = name_rows & _present(fh[c])
                    col[present] = "Deal " + fh.loc[present, "opportunity_id"].astype(str)
            fh[c] = col
    return out


def mask_personal_data(crm: CRM, *, names: bool = False) -> CRM:
    """A copy of a CRM snapshot with personal data replaced by stable pseudonyms.

    Parameters
    ----------
    crm : CRM
        The snapshot (not modified).
    names : bool, default False
        Also mask rep, manager, deal and account names.

    Returns
    -------
    CRM
        Same snapshot date, playbook, load report and rows; masked columns as
        listed in the module docstring.

    Examples
    --------
    >>> from forecastkit.report.privacy import mask_personal_data   # doctest: +SKIP
    >>> safe = mask_personal_data(crm, names=True)                  # doctest: +SKIP
    >>> safe.contacts["email"].iloc[0]                              # doctest: +SKIP
    'email-0001@masked.invalid'
    """
    from forecastkit.data.crm import CRM

    present = {n: df for n, df in crm.tables.items() if crm.has(n)}
    masked = mask_tables(present, names=names)
    return CRM(masked, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def mask_export(source: str | os.PathLike[str], target: str | os.PathLike[str], *, names: bool = False) -> Path:
    """Write a masked copy of a CRM export folder.

    Table files are read raw (as :func:`forecastkit.load` reads them), masked
    with :func:`mask_tables` and written back in the same format and under
    the same file names, so loading the copy keeps, rejects and counts exactly
    the rows the original would. Tables with nothing to mask, ``crm.yaml``,
    ``playbook.yaml`` and other files are hard-linked or copied unchanged.

    Parameters
    ----------
    source : path
        The export folder.
    target : path
        The folder to write (created; must be empty or absent).
    names : bool, default False
        Also mask rep, manager, deal and account names.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    ParameterError
        ``source`` is not a folder or ``target`` is not empty.
    SchemaError
        A table file cannot be read.
    """
    from forecastkit.data.io import _find, read_table
    from forecastkit.data.schema import TABLES

    src, dst = Path(source), Path(target)
    if not src.is_dir():
        raise ParameterError(
            f"cannot mask {str(source)!r}: personal data can only be masked in an export folder "
            "(for a database, export it to a folder first)"
        )
    if dst.exists() and any(dst.iterdir()):
        raise ParameterError(f"mask_export target {dst} is not empty; give a new or empty folder")
    dst.mkdir(parents=True, exist_ok=True)
    raw: dict[str, pd.DataFrame] = {}
    files: dict[str, Path] = {}
    for name in TABLES:
        f = _find(src, name)
        if f is None:
            continue
        files[name] = f
        if name not in _UNTOUCHED:
            raw[name] = read_table(f)
    masked = mask_tables(raw, names=names)
    for name, f in files.items():
        if name not in masked:
            _link_or_copy(f, dst / f.name)
        elif f.name.endswith(".parquet"):
            masked[name].to_parquet(dst / f.name, index=False)
        else:
            masked[name].to_csv(dst / f.name, index=False, encoding="utf-8")  # .csv.gz: compression inferred
    done = {f.name for f in files.values()}
    for p in src.iterdir():
        if p.is_file() and p.name not in done:
            _link_or_copy(p, dst / p.name)
    return dst
