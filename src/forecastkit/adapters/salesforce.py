"""Salesforce exports -> CRM snapshot: API exports (Data Loader, Workbench, Bulk API) and report exports.

API exports carry API field names (``Id, StageName, CloseDate, IsClosed...``),
ISO datetimes such as ``2023-10-28T20:45:25.000+0000`` (read as UTC) and
``true``/``false`` booleans. Report exports carry display labels
(``Opportunity Name, Stage, Amount, Probability (%), Close Date...``), money
such as ``USD 485,000.00``, percentages such as ``90%`` and dates in the user's
locale (``31/12/2026`` or ``12/31/2026``: the order is read from the column,
and a column that fits both raises - pass ``dayfirst=``).

Mapping choices (documented for users):

* ``ForecastCategoryName`` Pipeline / Best Case / Commit / Closed / Omitted map to
  the canonical categories; **Most Likely** (only in some orgs, between best case
  and commit) maps to ``best_case``, since commit means "sure".
* Salesforce custom stages are mapped with ``stage_map`` (CRM name -> playbook
  stage). Without one a mapping is guessed - closed stages from ``IsClosed`` /
  ``IsWon``, Salesforce's default stage names, then the stage probabilities - and
  shown in a :class:`~forecastkit.errors.DataQualityWarning` to confirm.
* ``IsClosed``/``IsWon`` decide the status; a deal whose stage map disagrees is
  rejected ("status does not match stage").
* ``closed_at`` is when the deal entered its final closed stage in
  OpportunityHistory (Salesforce has no close timestamp); without history, the
  close date.
* Deleted rows (``IsDeleted = true``) are not loaded and are counted in the notes.
* ``OwnerId`` becomes the user's name when ``users`` (User.csv) is given, and the
  owner's Department / Division fill ``team`` / ``business_unit``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from forecastkit.adapters._common import (
    RawExport,
    add_closed_at,
    announce_guess,
    build,
    forecast_category,
    guess_stage_map,
    map_values,
    status_from_flags,
    typed_column,
)
from forecastkit.adapters._parse import (
    dedupe,
    drop_footer,
    for_validation,
    parse_bool,
    parse_money,
    parse_percent,
    pick,
    read_export,
)
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.errors import SchemaError
from forecastkit.playbook import LOST, WON, Playbook

__all__ = ["load", "load_report_export", "read", "read_report_export", "SALESFORCE_STAGES", "OPPORTUNITY_FIELDS"]

#: Salesforce's default opportunity stages -> playbook stages.
SALESFORCE_STAGES = {
    "Prospecting": "to_contact",
    "Qualification": "qualification",
    "Needs Analysis": "discovery",
    "Value Proposition": "discovery",
    "Id. Decision Makers": "discovery",
    "Perception Analysis": "proposal",
    "Proposal/Price Quote": "proposal",
    "Negotiation/Review": "negotiation",
    "Closed Won": WON,
    "Closed Lost": LOST,
}

#: Opportunity API field -> canonical column (custom fields can be added with ``fields=``).
OPPORTUNITY_FIELDS = {
    "Id": "opportunity_id",
    "AccountId": "account_id",
    "Name": "name",
    "OwnerId": "owner",
    "StageName": "stage",
    "Amount": "amount",
    "Probability": "probability",
    "CloseDate": "close_date",
    "LeadSource": "source",
    "NextStep": "next_step",
    "CreatedDate": "created_at",
    "CurrencyIsoCode": "currency",
    # common custom fields
    "Loss_Reason__c": "loss_reason",
    "Lost_Reason__c": "loss_reason",
    "Competitor__c": "competitor",
    "Segment__c": "segment",
    "Product__c": "product",
    "Discount__c": "discount",
    "Next_Step_Date__c": "next_step_date",
    "Budget__c": "budget",
    "Decision_Maker__c": "decision_maker",
    "Economic_Buyer__c": "decision_maker",
    "Need__c": "need",
    "Timing__c": "timing",
    "Metrics__c": "metrics",
    "Decision_Criteria__c": "decision_criteria",
    "Decision_Process__c": "decision_process",
    "Pain__c": "pain",
    "Champion__c": "champion",
}
_USED_OTHER = {"IsClosed", "IsWon", "IsDeleted", "ForecastCategoryName", "ForecastCategory"}

#: Report export label -> canonical column.
REPORT_LABELS = {
    "Opportunity ID": "opportunity_id",
    "Opportunity Name": "name",
    "Account ID": "account_id",
    "Opportunity Owner": "owner",
    "Owner Name": "owner",
    "Stage": "stage",
    "Amount": "amount",
    "Probability (%)": "probability",
    "Close Date": "close_date",
    "Created Date": "created_at",
    "Lead Source": "source",
    "Forecast Category": "forecast_category",
    "Lost Reason": "loss_reason",
    "Loss Reason": "loss_reason",
    "Next Step": "next_step",
    "Opportunity Currency": "currency",
    "Amount Currency": "currency",
    "Segment": "segment",
    "Product": "product",
    "Competitor": "competitor",
}
_HISTORY_LABELS = {
    "Opportunity ID": "opportunity_id",
    "Edit Date": "changed_at",
    "Last Modified Date": "changed_at",
    "To Stage": "stage",
    "Stage": "stage",
    "Amount": "amount",
    "Close Date": "close_date",
    "Forecast Category": "forecast_category",
}


# ----------------------------------------------------------------------------- helpers
def _name(path: str | Path) -> str:
    return Path(path).name


def _keep(df: pd.DataFrame, mask: np.ndarray, rows: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    return df.loc[mask].reset_index(drop=True), rows[mask]


def _drop_deleted(df: pd.DataFrame, rows: np.ndarray, file: str, export: RawExport) -> tuple[pd.DataFrame, np.ndarray]:
    if "IsDeleted" not in df:
        return df, rows
    deleted, _ = parse_bool(df["IsDeleted"])
    deleted = deleted.fillna(False).to_numpy(dtype=bool)
    export.exclude(file, rows[deleted], "deleted in Salesforce (IsDeleted = true)")
    return _keep(df, ~deleted, rows)


def _stage_table(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One row per CRM stage name: median probability (0-1) and closed/won flags when known."""
    parts = [f for f in frames if f is not None and len(f)]
    if not parts:
        return pd.DataFrame(columns=["stage", "probability", "is_closed", "is_won"])
    df = pd.concat(parts, ignore_index=True)
    for c in ("probability", "is_closed", "is_won"):
        if c not in df:
            df[c] = np.nan
    df = df.dropna(subset=["stage"])
    df["is_closed"] = df["is_closed"].astype("float64")
    df["is_won"] = df["is_won"].astype("float64")
    g = df.groupby("stage", sort=False).agg(
        probability=("probability", "median"), is_closed=("is_closed", "mean"), is_won=("is_won", "mean")
    )
    g["is_closed"] = g["is_closed"].map(lambda v: np.nan if pd.isna(v) else v >= 0.5)
    g["is_won"] = g["is_won"].map(lambda v: np.nan if pd.isna(v) else v >= 0.5)
    return g.reset_index()


def _resolve_stages(
    names: pd.DataFrame, stage_map: Mapping[str, str] | None, playbook: Playbook, source: str, notes: list[str]
) -> dict[str, str]:
    if stage_map is not None:
        mapping = {str(k): str(v) for k, v in stage_map.items()}
        missing = [s for s in names["stage"].astype(str) if s not in mapping]
        if missing:
            guessed, _ = guess_stage_map(
                names[names["stage"].astype(str).isin(missing)].assign(probability=np.nan), playbook
            )
            mapping |= guessed  # only exact playbook names and closed flags; the rest stays unknown
        return mapping
    mapping, unmapped = guess_stage_map(names, playbook, known=SALESFORCE_STAGES)
    if len(names):
        announce_guess(mapping, unmapped, source, notes)
    return mapping


def _map_stage(raw: pd.Series, mapping: Mapping[str, str]) -> pd.Series:
    """CRM stage names -> playbook stages (unmapped names kept for the validator to reject)."""
    return map_values(raw, mapping)


def _typed(
    df: pd.DataFrame, columns: Mapping[str, str], table: str, file: str, opts: dict, skip: set[str] = frozenset()
) -> pd.DataFrame:
    """Canonical columns from source columns (source -> canonical), parsed by their schema kind."""
    out = {}
    schema = TABLES[table]
    for src, dst in columns.items():
        if src not in df or dst in out or dst in skip:
            continue
        kind = schema.column(dst).kind
        out[dst] = typed_column(df[src], kind, column=src, file=file, **opts)
    return pd.DataFrame(out, index=df.index)


# ----------------------------------------------------------------------------- API exports
def read(
    opportunity: str | Path,
    history: str | Path | None = None,
    field_history: str | Path | None = None,
    accounts: str | Path | None = None,
    users: str | Path | None = None,
    stage_map: Mapping[str, str] | None = None,
    *,
    fields: Mapping[str, str] | None = None,
    playbook: Playbook | None = None,
    encoding: str = "utf-8",
) -> RawExport:
    """Read Salesforce API exports into raw canonical tables (see :func:`load`)."""
    pb = playbook or Playbook()
    export = RawExport()
    ofile = _name(opportunity)
    field_map = dict(OPPORTUNITY_FIELDS) | dict(fields or {})
    bad = {k: v for k, v in field_map.items() if v not in TABLES["opportunities"].column_names}
    if bad:
        raise SchemaError(
            f"fields: {bad} map to columns that are not canonical opportunity columns; "
            f"use one of {', '.join(TABLES['opportunities'].column_names)}"
        )
    opp = read_export(opportunity, encoding=encoding, notes=export.notes)
    header = set(opp.columns)
    if "Id" not in header or "StageName" not in header:
        if {"Opportunity Name", "Stage"} & header:
            raise SchemaError(
                f"{ofile}: this looks like a report export (display labels such as 'Opportunity Name', 'Stage'); "
                "use forecastkit.adapters.salesforce.load_report_export() for report exports"
            )
        raise SchemaError(
            f"{ofile}: an Opportunity API export needs the fields Id and StageName (found: "
            f"{', '.join(list(opp.columns)[:12])}). Export the Opportunity object with Data Loader or Workbench"
        )
    rows = np.arange(1, len(opp) + 1)
    opp, rows = _drop_deleted(opp, rows, ofile, export)
    ignored = sorted(header - set(field_map) - _USED_OTHER)
    if ignored:
        export.notes.append(
            f"{ofile}: field(s) not loaded (no canonical column; map them with fields=): {', '.join(ignored[:12])}"
            + (" ..." if len(ignored) > 12 else "")
        )
    opts: dict = {}
    out = _typed(opp, field_map, "opportunities", ofile, opts, skip={"probability", "stage", "currency", "amount"})
    amount, cur_in_cell, bad_amount = (
        parse_money(opp["Amount"], column="Amount", file=ofile) if "Amount" in opp else (None, None, None)
    )
    if amount is not None:
        out["amount"] = for_validation(amount, bad_amount, opp["Amount"])
    if "CurrencyIsoCode" in opp:
        out["currency"] = opp["CurrencyIsoCode"]
    if "Probability" in opp:
        p, bad_p = parse_percent(opp["Probability"], scale="percent")
        out["probability"] = for_validation(p, bad_p, opp["Probability"])
    cat = opp.get("ForecastCategoryName", opp.get("ForecastCategory"))
    if cat is not None:
        out["forecast_category"] = forecast_category(cat)
    is_closed = parse_bool(opp["IsClosed"])[0] if "IsClosed" in opp else None
    is_won = parse_bool(opp["IsWon"])[0] if "IsWon" in opp else None
    if is_closed is not None:
        out["status"] = status_from_flags(is_closed, is_won, opp.index)

    # history
    hraw = None
    if history is not None:
        hfile = _name(history)
        cols = [
            "OpportunityId",
            "CreatedDate",
            "StageName",
            "Amount",
            "CloseDate",
            "ForecastCategory",
            "ForecastCategoryName",
            "Probability",
            "CurrencyIsoCode",
            "IsDeleted",
        ]
        hraw = read_export(history, usecols=cols, encoding=encoding, notes=export.notes)
        missing = [c for c in ("OpportunityId", "CreatedDate", "StageName") if c not in hraw]
        if missing:
            raise SchemaError(
                f"{hfile}: OpportunityHistory export lacks {', '.join(missing)} (found: {', '.join(hraw.columns)}); "
                "export OpportunityHistory with its OpportunityId, CreatedDate, StageName, Amount and CloseDate fields"
            )
        hrows = np.arange(1, len(hraw) + 1)
        hraw, hrows = _drop_deleted(hraw, hrows, hfile, export)

    # stage names -> playbook stages
    frames = [
        pd.DataFrame(
            {
                "stage": opp["StageName"],
                "probability": out["probability"]
                if "probability" in out and out["probability"].dtype != object
                else np.nan,
                "is_closed": is_closed.astype("float64") if is_closed is not None else np.nan,
                "is_won": is_won.astype("float64") if is_won is not None else np.nan,
            }
        )
    ]
    if hraw is not None:
        hp = parse_percent(hraw["Probability"])[0] if "Probability" in hraw else np.nan
        frames.append(pd.DataFrame({"stage": hraw["StageName"], "probability": hp}))
    mapping = _resolve_stages(_stage_table(frames), stage_map, pb, ofile, export.notes)
    out["stage"] = _map_stage(opp["StageName"], mapping)

    # users: names, teams, reps table
    if users is not None:
        ufile = _name(users)
        u = read_export(users, encoding=encoding, notes=export.notes)
        if "Id" not in u:
            raise SchemaError(f"{ufile}: a User export needs the Id field (and Name, or FirstName and LastName)")
        if "Name" in u:
            uname = u["Name"]
        elif "LastName" in u:
            uname = (
                u.get("FirstName", pd.Series("", index=u.index)).fillna("") + " " + u["LastName"].fillna("")
            ).str.strip()
        else:
            raise SchemaError(f"{ufile}: a User export needs Name (or FirstName and LastName) to name the owners")
        names = pd.Series(uname.astype(object).to_numpy(), index=u["Id"].astype(object).to_numpy())
        reps = pd.DataFrame({"owner": uname.astype(object)})
        for src, dst in (("Department", "team"), ("Division", "business_unit")):
            if src in u:
                reps[dst] = u[src].astype(object)
                out[dst] = (
                    opp["OwnerId"].astype(object).map(pd.Series(u[src].astype(object).to_numpy(), index=names.index))
                )
        if "ManagerId" in u:
            reps["manager"] = u["ManagerId"].astype(object).map(names)
        if "owner" in out:
            mapped = out["owner"].astype(object).map(names)
            unknown = mapped.isna() & out["owner"].notna()
            if unknown.any():
                export.notes.append(f"{ofile}: {int(unknown.sum())} OwnerId(s) not found in {ufile}; kept as ids")
            out["owner"] = mapped.where(~unknown, out["owner"].astype(object))
        export.add("reps", reps, ufile, np.arange(1, len(u) + 1))
    elif "owner" in out:
        export.notes.append(
            f"{ofile}: owners are Salesforce user ids; pass users='User.csv' to get their names and teams"
        )

    if hraw is not None:
        hfile = _name(history)
        h = pd.DataFrame(
            {
                "opportunity_id": hraw["OpportunityId"],
                "changed_at": typed_column(hraw["CreatedDate"], "date", column="CreatedDate", file=hfile),
                "stage": _map_stage(hraw["StageName"], mapping),
            }
        )
        if "Amount" in hraw:
            h["amount"] = typed_column(hraw["Amount"], "float", column="Amount", file=hfile)
        if "CloseDate" in hraw:
            h["close_date"] = typed_column(hraw["CloseDate"], "date", column="CloseDate", file=hfile)
        hc = hraw.get("ForecastCategoryName", hraw.get("ForecastCategory"))
        if hc is not None:
            h["forecast_category"] = forecast_category(hc)
        if "CurrencyIsoCode" in hraw:
            h["currency"] = hraw["CurrencyIsoCode"]  # converted by the validator, like the deals' amounts
        export.add("history", h, hfile, hrows)
        add_closed_at(out, h, pd.to_datetime(h["changed_at"], errors="coerce", format="ISO8601"))
    export.add("opportunities", out, ofile, rows)

    if field_history is not None:
        _read_field_history(field_history, field_map, encoding, export)
    if accounts is not None:
        _read_accounts(accounts, encoding, export, names if users is not None else None)
    return export


def _read_field_history(path: str | Path, field_map: Mapping[str, str], encoding: str, export: RawExport) -> None:
    file = _name(path)
    fh = read_export(path, encoding=encoding, notes=export.notes)
    need = [c for c in ("OpportunityId", "CreatedDate", "Field") if c not in fh]
    if need:
        raise SchemaError(f"{file}: OpportunityFieldHistory export lacks {', '.join(need)}")
    rows = np.arange(1, len(fh) + 1)
    fh, rows = _drop_deleted(fh, rows, file, export)
    in_history = {"StageName", "Amount", "CloseDate", "ForecastCategoryName", "ForecastCategory"}
    field = fh["Field"].astype(object)
    canon = field.map(dict(field_map))
    skip_hist = field.isin(in_history).to_numpy()
    export.exclude(
        file, rows[skip_hist], "stage, amount, close date and forecast category changes come from OpportunityHistory"
    )
    unknown = canon.isna().to_numpy() & ~skip_hist
    if unknown.any():
        names = sorted(set(field[unknown].astype(str)))
        export.exclude(file, rows[unknown], f"field(s) with no canonical column: {', '.join(names[:8])}")
    keep = ~(skip_hist | unknown)
    fh, rows, canon = fh.loc[keep].reset_index(drop=True), rows[keep], canon[keep].reset_index(drop=True)
    df = pd.DataFrame(
        {
            "opportunity_id": fh["OpportunityId"],
            "changed_at": typed_column(fh["CreatedDate"], "date", column="CreatedDate", file=file),
            "field": canon,
            "old_value": fh.get("OldValue", None),
            "new_value": fh.get("NewValue", None),
        }
    )
    export.add("field_history", df, file, rows)


def _read_accounts(path: str | Path, encoding: str, export: RawExport, user_names: pd.Series | None) -> None:
    file = _name(path)
    a = read_export(path, encoding=encoding, notes=export.notes)
    if "Id" not in a:
        raise SchemaError(f"{file}: an Account export needs the Id field")
    rows = np.arange(1, len(a) + 1)
    a, rows = _drop_deleted(a, rows, file, export)
    cols = {
        "Id": "account_id",
        "Name": "name",
        "Industry": "industry",
        "Segment__c": "segment",
        "CreatedDate": "created_at",
        "Phone": "phone",
        "Website": "website",
        "OwnerId": "owner",
    }
    df = _typed(a, cols, "accounts", file, {})
    if "owner" in df and user_names is not None:
        df["owner"] = df["owner"].astype(object).map(user_names).fillna(df["owner"].astype(object))
    export.add("accounts", df, file, rows)


def load(
    opportunity: str | Path,
    history: str | Path | None = None,
    field_history: str | Path | None = None,
    accounts: str | Path | None = None,
    users: str | Path | None = None,
    stage_map: Mapping[str, str] | None = None,
    *,
    fields: Mapping[str, str] | None = None,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
    encoding: str = "utf-8",
) -> CRM:
    """Load Salesforce API exports (Data Loader, Workbench, Bulk API CSVs) as a CRM snapshot.

    Parameters
    ----------
    opportunity : path
        ``Opportunity.csv`` with API field names (Id, Name, AccountId, OwnerId, StageName,
        Amount, Probability, CloseDate, LeadSource, NextStep, IsClosed, IsWon,
        ForecastCategoryName, CreatedDate, CurrencyIsoCode, IsDeleted, ...).
    history : path, optional
        ``OpportunityHistory.csv`` (OpportunityId, CreatedDate, StageName, Amount, CloseDate,
        ForecastCategory, CurrencyIsoCode, IsDeleted). Without it, stage timing is unknown.
    field_history : path, optional
        ``OpportunityFieldHistory.csv`` (OpportunityId, CreatedDate, Field, OldValue, NewValue):
        changes of fields mapped to canonical columns (e.g. NextStep, custom qualification fields).
    accounts, users : path, optional
        ``Account.csv`` and ``User.csv`` (owner names, Department -> team, Division -> business unit).
    stage_map : mapping, optional
        Salesforce stage name -> playbook stage (or ``won`` / ``lost``). Guessed and shown
        in a warning when absent.
    fields : mapping, optional
        Extra API field -> canonical column, e.g. ``{"Segment__c": "segment"}``.
    playbook : Playbook, optional
        Company rules (default: the default playbook, with the export's currency when it has one).
    strict : bool
        Raise :class:`~forecastkit.errors.DataError` when any row is rejected.
    fx_rates : mapping, optional
        Currency -> value of one unit in the reporting currency (deal and history amounts are converted).
    as_of : date, optional
        Snapshot date (default: the latest event in the export).
    encoding : str
        File encoding.

    Returns
    -------
    CRM
        The snapshot; ``crm.load_report`` accounts for every row (rejected rows keep their
        file row; deleted rows are counted in ``notes``).
    """
    export = read(
        opportunity,
        history,
        field_history,
        accounts,
        users,
        stage_map,
        fields=fields,
        playbook=playbook,
        encoding=encoding,
    )
    return build(export, playbook=playbook, strict=strict, fx_rates=fx_rates, as_of=as_of)


# ----------------------------------------------------------------------------- report exports
def read_report_export(
    report: str | Path,
    history: str | Path | None = None,
    stage_map: Mapping[str, str] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    decimal: str | None = None,
    playbook: Playbook | None = None,
    encoding: str = "utf-8",
) -> RawExport:
    """Read a Salesforce opportunity report export into raw canonical tables (see :func:`load_report_export`)."""
    pb = playbook or Playbook()
    export = RawExport()
    file = _name(report)
    labels = dict(REPORT_LABELS) | dict(columns or {})
    df = read_export(report, encoding=encoding, notes=export.notes, dedupe_now=False)
    df, _ = drop_footer(df, file=file, notes=export.notes)
    df = dedupe(df, file=file, notes=export.notes)
    rows = np.arange(1, len(df) + 1)
    opts = {"dayfirst": dayfirst, "date_format": date_format, "decimal": decimal}
    if pick(df, ["Opportunity ID"], file=file) is None and not any(
        v == "opportunity_id" for k, v in labels.items() if k in df
    ):
        raise SchemaError(
            f"{file}: the report has no 'Opportunity ID' column (found: {', '.join(list(df.columns)[:12])}). "
            "Add the Opportunity ID column to the report (or map a column to opportunity_id with columns=) "
            "so deals can be told apart and matched with their history"
        )
    used: dict[str, str] = {}
    for label, dst in labels.items():
        if dst in used.values():
            continue
        if pick(df, [label], file=file) is not None:
            used[label] = dst
    out = _typed(df, used, "opportunities", file, opts, skip={"amount", "probability", "stage", "forecast_category"})
    amount_col = next((k for k, v in used.items() if v == "amount"), None)
    if amount_col:
        v, cur, bad = parse_money(df[amount_col], column=amount_col, file=file, decimal=decimal)  # type: ignore[arg-type]
        out["amount"] = for_validation(v, bad, df[amount_col])
        if "currency" not in out and cur.notna().any():
            out["currency"] = cur
    prob_col = next((k for k, v in used.items() if v == "probability"), None)
    if prob_col:
        p, bad = parse_percent(df[prob_col], scale="percent", decimal=decimal or ".")  # type: ignore[arg-type]
        out["probability"] = for_validation(p, bad, df[prob_col])
    cat_col = next((k for k, v in used.items() if v == "forecast_category"), None)
    if cat_col:
        out["forecast_category"] = forecast_category(df[cat_col])
    if "account_id" not in out and "Account Name" in df:
        out["account_id"] = df["Account Name"]
        export.notes.append(f"{file}: no 'Account ID' column; accounts are told apart by their 'Account Name'")
    ignored = [c for c in df.columns if c not in used and c != "Account Name"]
    if ignored:
        export.notes.append(f"{file}: column(s) not loaded: {', '.join(ignored[:12])}")
    closed = parse_bool(df["Closed"])[0] if "Closed" in df else None
    won = parse_bool(df["Won"])[0] if "Won" in df else None
    stage_col = next((k for k, v in used.items() if v == "stage"), None)
    if stage_col is None:
        raise SchemaError(f"{file}: the report has no 'Stage' column; add it to the report")

    hist_df = hrows = None
    if history is not None:
        hfile = _name(history)
        hd = read_export(history, encoding=encoding, notes=export.notes, dedupe_now=False)
        hd, _ = drop_footer(hd, file=hfile, notes=export.notes)
        hd = dedupe(hd, file=hfile, notes=export.notes)
        hrows = np.arange(1, len(hd) + 1)
        hused = {}
        for label, dst in _HISTORY_LABELS.items():
            if dst not in hused.values() and pick(hd, [label], file=hfile) is not None:
                hused[label] = dst
        need = [d for d in ("opportunity_id", "changed_at", "stage") if d not in hused.values()]
        if need:
            raise SchemaError(
                f"{hfile}: the history report lacks {', '.join(need)} (columns 'Opportunity ID', 'Edit Date', "
                f"'To Stage' or 'Stage'); found: {', '.join(list(hd.columns)[:12])}"
            )
        hist_df = _typed(hd, hused, "history", hfile, opts, skip={"stage", "forecast_category"})
        hstage_col = next(k for k, v in hused.items() if v == "stage")
        hist_df["stage_raw"] = hd[hstage_col].astype(object)
        hcat = next((k for k, v in hused.items() if v == "forecast_category"), None)
        if hcat:
            hist_df["forecast_category"] = forecast_category(hd[hcat])

    frames = [
        pd.DataFrame(
            {
                "stage": df[stage_col].astype(object),
                "probability": out["probability"]
                if "probability" in out and out["probability"].dtype != object
                else np.nan,
                "is_closed": closed.astype("float64") if closed is not None else np.nan,
                "is_won": won.astype("float64") if won is not None else np.nan,
            }
        )
    ]
    if hist_df is not None:
        frames.append(pd.DataFrame({"stage": hist_df["stage_raw"]}))
    mapping = _resolve_stages(_stage_table(frames), stage_map, pb, file, export.notes)
    out["stage"] = _map_stage(df[stage_col], mapping)
    if closed is not None:
        out["status"] = status_from_flags(closed, won, df.index)
    if hist_df is not None:
        hist_df["stage"] = _map_stage(hist_df.pop("stage_raw"), mapping)
        export.add("history", hist_df, _name(history), hrows)
        add_closed_at(out, hist_df, pd.to_datetime(hist_df["changed_at"], errors="coerce"))
    export.add("opportunities", out, file, rows)
    return export


def load_report_export(
    report: str | Path,
    history: str | Path | None = None,
    stage_map: Mapping[str, str] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    dayfirst: bool | None = None,
    date_format: str | None = None,
    decimal: str | None = None,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
    encoding: str = "utf-8",
) -> CRM:
    """Load a Salesforce report export (CSV with display labels) as a CRM snapshot.

    Parameters
    ----------
    report : path
        The opportunity report: Opportunity ID (required), Opportunity Name, Account Name /
        Account ID, Opportunity Owner, Stage, Amount (``USD 485,000.00``), Probability (%)
        (``90%``), Close Date, Created Date, Lead Source, Forecast Category, Lost Reason,
        Next Step, and optionally Closed / Won. Type, Fiscal Period and Age are not loaded.
        Footer lines (totals, copyright) are skipped and noted.
    history : path, optional
        An "Opportunity History" report: Opportunity ID, Edit Date, To Stage (or Stage),
        Amount, Close Date, Forecast Category.
    stage_map : mapping, optional
        Report stage label -> playbook stage; guessed and shown in a warning when absent.
    columns : mapping, optional
        Extra label -> canonical column, e.g. ``{"Segment (custom)": "segment"}``.
    dayfirst : bool, optional
        Order of numeric dates; read from the data when every column tells it
        (an ambiguous column raises :class:`~forecastkit.errors.DataError`).
    date_format : str, optional
        Explicit ``strftime`` format of the dates, e.g. ``"%d.%m.%Y"``.
    decimal : {".", ","}, optional
        Decimal separator of amounts; inferred when the values tell it.

    Other parameters are those of :func:`load`.

    Returns
    -------
    CRM
        The snapshot, with ``crm.load_report``.
    """
    export = read_report_export(
        report,
        history,
        stage_map,
        columns=columns,
        dayfirst=dayfirst,
        date_format=date_format,
        decimal=decimal,
        playbook=playbook,
        encoding=encoding,
    )
    return build(export, playbook=playbook, strict=strict, fx_rates=fx_rates, as_of=as_of)
