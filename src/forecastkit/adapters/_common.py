"""What every adapter shares: raw tables with their file rows, stage-map guessing, building the snapshot.

An adapter turns a CRM export into *raw* canonical tables (a :class:`RawExport`)
and hands them to :func:`build`, which validates them through
:meth:`forecastkit.data.crm.CRM.from_tables` so that every format gets the same
checks and row accounting. Rows an adapter leaves out itself (deleted records,
other pipelines, report footers) are counted in ``crm.load_report.notes``, with
a few of their file rows; rejected rows keep their row number in the file.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecastkit.adapters._parse import TEXT, for_validation, parse_dates, parse_money
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.errors import DataQualityWarning
from forecastkit.playbook import CLOSED_STAGES, LOST, WON, Playbook

__all__ = [
    "RawExport",
    "build",
    "guess_stage_map",
    "norm",
    "FORECAST_CATEGORY_MAP",
    "typed_column",
    "map_values",
    "forecast_category",
    "status_from_flags",
    "add_closed_at",
]

FORECAST_CATEGORY_MAP = {
    # Salesforce API values and labels, HubSpot internal values, plain names
    "omitted": "omitted",
    "omit": "omitted",
    "pipeline": "pipeline",
    "bestcase": "best_case",
    "best_case": "best_case",
    "best case": "best_case",
    "mostlikely": "best_case",
    "most likely": "best_case",
    "most_likely": "best_case",
    "forecast": "commit",
    "commit": "commit",
    "closed": "closed",
    "not_forecasted": "omitted",
}


def norm(name: object) -> str:
    """Stage or label name reduced to lower-case words joined by ``_`` (``'Id. Decision Makers'`` -> ``'id_decision_makers'``)."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


@dataclass
class RawExport:
    """Raw canonical tables read from an export, with their provenance.

    Attributes
    ----------
    tables : dict
        Canonical table name -> raw frame (canonical column names; values typed or text).
    files : dict
        Table name -> file name shown in messages.
    rows : dict
        Table name -> file data-row number (1-based) of each raw row.
    notes : list of str
        What the adapter did (excluded rows, guessed mappings, ignored columns).

    A raw ``history`` table may carry a ``currency`` column (each row's currency); the
    validator converts history amounts with it, or with the deal's currency, exactly
    like the deals' amounts (see :func:`forecastkit.data.validate.validate_tables`).
    """

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, df: pd.DataFrame, file: str, rows: np.ndarray) -> None:
        self.tables[name] = df.reset_index(drop=True)
        self.files[name] = file
        self.rows[name] = np.asarray(rows)

    def exclude(self, file: str, rows: np.ndarray, reason: str) -> None:
        """Note rows left out on purpose (they are not errors): ``file: 3 row(s) not loaded: reason (rows 4, 9, 12)``."""
        rows = np.asarray(rows)
        if not len(rows):
            return
        ex = ", ".join(str(r) for r in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
        self.notes.append(f"{file}: {len(rows)} row(s) not loaded: {reason} (rows {ex})")


def map_values(raw: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """Replace values found in ``mapping`` (others kept); vectorised over the distinct values."""
    codes, uniques = pd.factorize(raw, sort=False)
    mapped = np.array([mapping.get(str(u), u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=raw.index, dtype=object)


def typed_column(
    raw: pd.Series,
    kind: str,
    *,
    column: str,
    file: str,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    decimal: str | None = None,
) -> pd.Series:
    """Parse ``raw`` as a canonical column kind; unparseable cells keep their raw text for the validator to reject."""
    if kind == "date":
        v, bad = parse_dates(raw, column=column, file=file, dayfirst=dayfirst, date_format=date_format)
        return for_validation(v, bad, raw)
    if kind == "float":
        v, _cur, bad = parse_money(raw, column=column, file=file, decimal=decimal)  # type: ignore[arg-type]
        return for_validation(v, bad, raw)
    return raw


def guess_stage_map(
    stages: pd.DataFrame,
    playbook: Playbook,
    *,
    known: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Guess a CRM stage -> playbook stage mapping; return it and the names left unmapped.

    Parameters
    ----------
    stages : DataFrame
        One row per CRM stage name: ``stage`` (the CRM name), optional ``probability``
        (0-1, typical value of deals in it), ``is_closed``, ``is_won`` (booleans, when the
        export tells).
    known : mapping, optional
        Vendor defaults (normalised CRM name -> playbook stage), e.g. Salesforce's
        ``Needs Analysis`` -> ``discovery``.

    Rules, in order: closed flags (won/lost); names saying won or lost; a name equal
    to a playbook stage or label; the vendor defaults; then each remaining stage with a
    probability goes to the playbook stage whose CRM probability is closest.
    """
    known = {norm(k): v for k, v in (known or {}).items()}
    labels = {norm(s.name): s.name for s in playbook.stages} | {norm(s.label): s.name for s in playbook.stages}
    labels |= {WON: WON, LOST: LOST}
    out: dict[str, str] = {}
    rest: list[tuple[str, float]] = []
    unmapped: list[str] = []
    for _, r in stages.iterrows():
        name = str(r["stage"])
        n = norm(name)
        closed, won, p = r.get("is_closed"), r.get("is_won"), r.get("probability")
        if pd.notna(closed) and bool(closed):
            out[name] = WON if (pd.notna(won) and bool(won)) else LOST
        elif n in labels:
            out[name] = labels[n]
        elif n in known:
            out[name] = known[n]
        elif re.search(r"(^|_)won($|_)|(^|_)gagn", n):
            out[name] = WON
        elif re.search(r"(^|_)lost($|_)|(^|_)perdu", n):
            out[name] = LOST
        elif pd.notna(p):
            rest.append((name, float(p)))
        else:
            unmapped.append(name)
    probs = np.array([s.crm_probability for s in playbook.stages])
    for name, p in rest:
        out[name] = playbook.stages[int(np.argmin(np.abs(probs - p)))].name
    return out, unmapped


def announce_guess(mapping: Mapping[str, str], unmapped: list[str], source: str, notes: list[str]) -> None:
    """Warn with the guessed stage map (to confirm by passing ``stage_map=``) and note it."""
    body = ", ".join(f"{k!r}: {v!r}" for k, v in mapping.items())
    msg = (
        f"{source}: no stage_map given; guessed stage_map={{{body}}}. Check it and pass stage_map= to confirm "
        "or correct it."
    )
    if unmapped:
        msg += f" Not mapped (their rows are rejected as unknown stages): {', '.join(map(repr, unmapped))}."
    notes.append(msg)
    warnings.warn(msg, DataQualityWarning, stacklevel=3)


def _playbook_for(export: RawExport, playbook: Playbook | None, fx_rates: Mapping[str, float] | None) -> Playbook:
    pb = playbook or Playbook()
    if playbook is not None or fx_rates:
        return pb
    opps = export.tables.get("opportunities")
    if opps is None or "currency" not in opps:
        return pb
    found = sorted(set(opps["currency"].dropna().astype(str).str.strip().str.upper()) - {""})
    if len(found) == 1 and found[0] != pb.currency:
        export.notes.append(f"reporting currency set to {found[0]}, the one currency of the export")
        return Playbook.from_dict({**pb.to_dict(), "currency": found[0]})
    return pb


def build(
    export: RawExport,
    *,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
) -> CRM:
    """Validate the raw tables into a :class:`CRM`, keeping file row numbers and the adapter's notes."""
    unknown = set(export.tables) - set(TABLES)
    if unknown:  # pragma: no cover - adapters only produce canonical tables
        raise ValueError(f"not canonical tables: {sorted(unknown)}")
    pb = _playbook_for(export, playbook, fx_rates)
    crm = CRM.from_tables(export.tables, as_of=as_of, playbook=pb, strict=False, fx_rates=fx_rates, files=export.files)
    rep = crm.load_report
    if len(rep.rejected):
        rej = rep.rejected.copy()
        for name, rows in export.rows.items():
            m = (rej["table"] == name) & (pd.to_numeric(rej["row"], errors="coerce") > 0)
            if m.any():
                pos = rej.loc[m, "row"].astype(int).to_numpy() - 1
                rej.loc[m, "row"] = rows[pos]
        rep.rejected = rej
    rep.notes[:0] = export.notes
    if strict:
        rep.raise_for_errors()
    return crm


def closed_at_from_history(hist: pd.DataFrame) -> pd.Series:
    """For deals whose last history row is won/lost: the day they entered that final closed stage (index: opportunity_id).

    The entry is the first closed row after the deal's last open row (no sorting needed:
    three group-wise maxima/minima).
    """
    if hist.empty:
        return pd.Series(dtype="datetime64[ns]")
    h = hist[["opportunity_id", "changed_at", "stage"]].dropna(subset=["changed_at"])
    h = h.assign(changed_at=pd.to_datetime(h["changed_at"]))
    closed = h["stage"].isin(CLOSED_STAGES).to_numpy(dtype=bool)
    ids = h["opportunity_id"]
    last_any = h.groupby(ids, sort=False)["changed_at"].max()
    last_open = h.loc[~closed].groupby(ids[~closed], sort=False)["changed_at"].max()
    c = h.loc[closed]
    c = c.assign(_open=c["opportunity_id"].map(last_open))
    c = c[c["_open"].isna() | (c["changed_at"] > c["_open"])]
    first_closed = c.groupby("opportunity_id", sort=False)["changed_at"].min()
    # the deal ends closed when no open row comes at or after its last closed entry
    ends_closed = last_open.reindex(first_closed.index).isna() | (
        last_any.reindex(first_closed.index) > last_open.reindex(first_closed.index)
    )
    return first_closed[ends_closed.to_numpy()].dt.normalize()


def forecast_category(raw: pd.Series) -> pd.Series:
    """CRM forecast categories -> canonical ones (:data:`FORECAST_CATEGORY_MAP`); unknown values stay for the validator."""
    mapped = raw.astype(TEXT).str.strip().str.lower().map(FORECAST_CATEGORY_MAP)
    return mapped.where(mapped.notna(), raw.astype(object))


def status_from_flags(closed: pd.Series | None, won: pd.Series | None, index: pd.Index) -> pd.Series | None:
    """``open`` / ``won`` / ``lost`` from the CRM's is-closed and is-won flags (missing where is-closed is missing)."""
    if closed is None:
        return None
    w = won.fillna(False) if won is not None else pd.Series(False, index=index)
    status = np.where(closed.fillna(False), np.where(w, "won", "lost"), "open")
    return pd.Series(status, index=index, dtype=object).where(closed.notna().to_numpy(), None)


def add_closed_at(out: pd.DataFrame, hist: pd.DataFrame, changed_at: pd.Series | np.ndarray) -> None:
    """Set ``out["closed_at"]`` from the history (:func:`closed_at_from_history`), ``changed_at`` as timestamps."""
    ca = closed_at_from_history(hist.assign(changed_at=changed_at))
    if len(ca):
        out["closed_at"] = out["opportunity_id"].astype(object).map(ca)
