"""HubSpot deal exports -> CRM snapshot (API property names or the UI export's labels).

API exports: ``hs_object_id, dealname, dealstage, pipeline, amount, closedate,
createdate, hubspot_owner_id, dealtype, hs_deal_stage_probability,
hs_manual_forecast_category (OMIT / PIPELINE / BEST_CASE / COMMIT / CLOSED),
hs_is_closed, hs_is_closed_won, hs_next_step, deal_currency_code,
closed_lost_reason`` and the stage timestamps ``hs_date_entered_<stageId>`` (or
``hs_v2_date_entered_<stageId>``, preferred when both are there).

UI exports: ``Record ID, Deal Name, Deal Stage, Pipeline, Amount, Close Date, Create
Date, Deal owner, Deal Type, Deal probability, Forecast category, Is Closed?, Is
closed won, Next step, Closed Lost Reason, Currency`` and ``Date entered "<stage>
(<pipeline>)"``.

The **history** is rebuilt from the date-entered timestamps: one row per stage a deal
entered, at the time it entered it. HubSpot keeps one timestamp per stage (a stage
entered twice shows its last entry), and the export carries no past amounts or close
dates, so history rows carry the deal's current amount and close date and no forecast
category (the notes say so). ``closed_at`` is the day the deal entered its closed stage.

**Pipelines**: ``pipeline="Sales Pipeline"`` (label or id) keeps one pipeline - the
other deals are counted in the notes; ``pipeline="all"`` keeps every deal and writes the
pipeline into ``pipeline_column`` (default ``product``). With several pipelines and no
choice, loading raises and lists them.

Default stage mapping (HubSpot's default sales pipeline): Appointment Scheduled ->
to_contact, Qualified To Buy -> qualification, Presentation Scheduled -> discovery,
Decision Maker Bought-In -> proposal, Contract Sent -> negotiation, Closed Won/Lost ->
won/lost. Other stages: ``stage_map`` (stage id or label -> playbook stage), else a guess
from ``hs_deal_stage_probability`` shown in a warning.
"""

from __future__ import annotations

import re
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
    status_from_flags,
    typed_column,
)
from forecastkit.adapters._parse import TEXT, for_validation, parse_bool, parse_dates, parse_percent, pick, read_export
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.errors import SchemaError
from forecastkit.playbook import LOST, WON, Playbook

__all__ = ["load", "read", "HUBSPOT_STAGES"]

#: HubSpot's default sales-pipeline stages (ids and labels) -> playbook stages.
HUBSPOT_STAGES = {
    "appointmentscheduled": "to_contact",
    "qualifiedtobuy": "qualification",
    "presentationscheduled": "discovery",
    "decisionmakerboughtin": "proposal",
    "contractsent": "negotiation",
    "closedwon": WON,
    "closedlost": LOST,
    "Appointment Scheduled": "to_contact",
    "Qualified To Buy": "qualification",
    "Presentation Scheduled": "discovery",
    "Decision Maker Bought-In": "proposal",
    "Contract Sent": "negotiation",
    "Closed Won": WON,
    "Closed Lost": LOST,
}

# canonical column -> (API property, UI label)
_COLUMNS = {
    "opportunity_id": ("hs_object_id", "Record ID"),
    "name": ("dealname", "Deal Name"),
    "owner": ("hubspot_owner_id", "Deal owner"),
    "amount": ("amount", "Amount"),
    "currency": ("deal_currency_code", "Currency"),
    "close_date": ("closedate", "Close Date"),
    "created_at": ("createdate", "Create Date"),
    "next_step": ("hs_next_step", "Next step"),
    "loss_reason": ("closed_lost_reason", "Closed Lost Reason"),
    "source": ("hs_analytics_source", "Original Source Type"),
    "account_id": ("associatedcompanyid", "Associated Company IDs"),
}
_STAGE = ("dealstage", "Deal Stage")
_PIPELINE = ("pipeline", "Pipeline")
_PROB = ("hs_deal_stage_probability", "Deal probability")
_CAT = ("hs_manual_forecast_category", "Forecast category")
_CLOSED = ("hs_is_closed", "Is Closed?")
_WON = ("hs_is_closed_won", "Is closed won")
_API_ENTERED = re.compile(r"^hs(?:_v2)?_date_entered_(.+)$")
_UI_ENTERED = re.compile(r'^Date entered "(.+?)(?: \((.+)\))?"$')


def _col(df: pd.DataFrame, names: tuple[str, ...], file: str) -> str | None:
    return pick(df, [n for n in names if n], file=file)


def _entered_columns(df: pd.DataFrame) -> dict[str, tuple[str, str | None]]:
    """Date-entered column -> (stage id or label, pipeline label or None); v2 columns win over v1."""
    out: dict[str, tuple[str, str | None]] = {}
    by_stage: dict[str, str] = {}
    for c in df.columns:
        m = _API_ENTERED.match(c)
        if m:
            stage = m.group(1)
            if stage in by_stage and not c.startswith("hs_v2_"):
                continue
            if stage in by_stage:
                out.pop(by_stage[stage])
            by_stage[stage] = c
            out[c] = (stage, None)
            continue
        m = _UI_ENTERED.match(c)
        if m:
            out[c] = (m.group(1), m.group(2))
    return out


def read(
    deals: str | Path,
    *,
    pipeline: str | None = None,
    pipeline_column: str = "product",
    stage_map: Mapping[str, str] | None = None,
    owners: str | Path | None = None,
    dayfirst: bool | None = None,
    playbook: Playbook | None = None,
    encoding: str = "utf-8",
) -> RawExport:
    """Read a HubSpot deals export into raw canonical tables (see :func:`load`)."""
    pb = playbook or Playbook()
    export = RawExport()
    file = Path(deals).name
    df = read_export(deals, encoding=encoding, notes=export.notes)
    rows = np.arange(1, len(df) + 1)
    id_col = _col(df, _COLUMNS["opportunity_id"], file) or pick(df, ["id", "Deal ID"], file=file)
    stage_col = _col(df, _STAGE, file)
    if id_col is None or stage_col is None:
        raise SchemaError(
            f"{file}: a HubSpot deals export needs the deal id (hs_object_id / Record ID) and stage "
            f"(dealstage / Deal Stage); found: {', '.join(list(df.columns)[:12])}"
        )
    if pipeline_column not in TABLES["opportunities"].column_names:
        raise SchemaError(f"pipeline_column {pipeline_column!r} is not a canonical opportunity column")
    # pipelines
    pipe_col = _col(df, _PIPELINE, file)
    if pipe_col is not None:
        found = df[pipe_col].astype(TEXT).fillna("(none)")
        counts = found.value_counts()
        if pipeline is None and len(counts) > 1:
            listing = ", ".join(f"{k!r} ({v} deals)" for k, v in counts.items())
            raise SchemaError(
                f"{file}: the export holds several pipelines: {listing}. Pass pipeline='<name>' to load one, "
                f"or pipeline='all' to load every deal with the pipeline in the '{pipeline_column}' column"
            )
        if pipeline not in (None, "all"):
            keep = (found == pipeline).to_numpy()
            if not keep.any():
                raise SchemaError(
                    f"{file}: no deal in pipeline {pipeline!r}; pipelines found: {', '.join(map(repr, counts.index))}"
                )
            export.exclude(file, rows[~keep], f"deals of other pipelines than {pipeline!r}")
            df, rows = df.loc[keep].reset_index(drop=True), rows[keep]
    opts = {"dayfirst": dayfirst}
    out = pd.DataFrame(index=df.index)
    for dst, names in _COLUMNS.items():
        c = _col(df, names, file)
        if c is not None:
            out[dst] = typed_column(df[c], TABLES["opportunities"].column(dst).kind, column=c, file=file, **opts)
    if pipeline == "all" and pipe_col is not None:
        out[pipeline_column] = df[pipe_col]
    pc = _col(df, _PROB, file)
    prob = None
    if pc is not None:
        prob, bad = parse_percent(df[pc], scale="fraction")
        out["probability"] = for_validation(prob, bad, df[pc])
    cc = _col(df, _CAT, file)
    if cc is not None:
        out["forecast_category"] = forecast_category(df[cc])
    closed = parse_bool(df[c])[0] if (c := _col(df, _CLOSED, file)) else None
    won = parse_bool(df[c])[0] if (c := _col(df, _WON, file)) else None
    if closed is not None:
        out["status"] = status_from_flags(closed, won, df.index)
    # stage names -> playbook
    entered = _entered_columns(df)
    if pipeline not in (None, "all"):
        entered = {c: v for c, v in entered.items() if v[1] is None or v[1] == pipeline}
    names = pd.DataFrame(
        {
            "stage": df[stage_col].astype(object),
            "probability": prob if prob is not None else np.nan,
            "is_closed": closed.astype("float64") if closed is not None else np.nan,
            "is_won": won.astype("float64") if won is not None else np.nan,
        }
    )
    extra = pd.DataFrame({"stage": sorted({s for s, _ in entered.values()} - set(names["stage"].dropna()))})
    table = pd.concat([names, extra], ignore_index=True).dropna(subset=["stage"])
    table = (
        table.groupby("stage", sort=False)
        .agg(probability=("probability", "median"), is_closed=("is_closed", "mean"), is_won=("is_won", "mean"))
        .reset_index()
    )
    for c in ("is_closed", "is_won"):
        table[c] = table[c].map(lambda v: np.nan if pd.isna(v) else v >= 0.5)
    if stage_map is None:
        mapping, unmapped = guess_stage_map(table, pb, known=HUBSPOT_STAGES)
        announce_guess(mapping, unmapped, file, export.notes)
    else:
        mapping = {str(k): str(v) for k, v in stage_map.items()}
        rest = table[~table["stage"].astype(str).isin(mapping)]
        mapping |= guess_stage_map(rest.assign(probability=np.nan), pb, known=HUBSPOT_STAGES)[0]
    st = df[stage_col].astype(object).map(mapping)
    out["stage"] = st.where(st.notna(), df[stage_col].astype(object))
    # owners
    if owners is not None:
        ofile = Path(owners).name
        ow = read_export(owners, encoding=encoding, notes=export.notes)
        oid = pick(ow, ["id", "Owner ID", "ownerId"], file=ofile)
        if oid is None:
            raise SchemaError(f"{ofile}: an owners export needs an id column (id / Owner ID)")
        first = pick(ow, ["firstName", "First Name"], file=ofile)
        last = pick(ow, ["lastName", "Last Name"], file=ofile)
        if first is None and last is None:
            raise SchemaError(f"{ofile}: an owners export needs firstName/lastName (or First Name/Last Name)")
        full = (ow[first].fillna("") if first else "") + " " + (ow[last].fillna("") if last else "")
        names_by_id = pd.Series(full.str.strip().astype(object).to_numpy(), index=ow[oid].astype(object).to_numpy())
        if "owner" in out:
            m = out["owner"].astype(object).map(names_by_id)
            out["owner"] = m.where(m.notna(), out["owner"].astype(object))
    # history from the date-entered timestamps
    if entered:
        parts = []
        for c, (stage, _pipe) in entered.items():
            ts, bad = parse_dates(df[c], column=c, file=file, dayfirst=dayfirst)
            has = ts.notna() | bad
            if not has.any():
                continue
            part = pd.DataFrame(
                {
                    "opportunity_id": out["opportunity_id"][has],
                    "changed_at": for_validation(ts, bad, df[c])[has],
                    "stage": mapping.get(stage, stage),
                    "_row": rows[has.to_numpy()],
                    "_ts": ts[has],
                }
            )
            parts.append(part)
        if parts:
            h = pd.concat(parts, ignore_index=True).sort_values(["_row", "_ts"], kind="stable")
            cur = out.set_index(out.index)
            pos = h["_row"].map(pd.Series(np.arange(len(rows)), index=rows))
            for col in ("amount", "close_date"):
                if col in cur:
                    h[col] = cur[col].to_numpy()[pos.to_numpy()]
            hrows = h.pop("_row").to_numpy()
            ts = h.pop("_ts")
            export.add("history", h.reset_index(drop=True), f"{file} (date-entered columns)", hrows)
            export.notes.append(
                f"{file}: history rebuilt from {len(entered)} date-entered column(s): one row per stage entered; "
                "HubSpot keeps only the last entry into each stage and no past amounts or close dates, so history "
                "rows carry the current amount and close date"
            )
            add_closed_at(out, h, ts.to_numpy())
    export.add("opportunities", out, file, rows)
    return export


def load(
    deals: str | Path,
    *,
    pipeline: str | None = None,
    pipeline_column: str = "product",
    stage_map: Mapping[str, str] | None = None,
    owners: str | Path | None = None,
    dayfirst: bool | None = None,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
    encoding: str = "utf-8",
) -> CRM:
    """Load a HubSpot deals export (API properties or UI labels) as a CRM snapshot.

    Parameters
    ----------
    deals : path
        The deals CSV (see the module docstring for the columns read).
    pipeline : str, optional
        Pipeline to keep (label or id), or ``"all"``; required when the export holds several.
    pipeline_column : str
        Canonical column receiving the pipeline with ``pipeline="all"`` (default ``product``).
    stage_map : mapping, optional
        Stage id or label -> playbook stage; guessed and shown in a warning when absent.
    owners : path, optional
        Owners export (id, firstName, lastName) to turn ``hubspot_owner_id`` into names.
    dayfirst : bool, optional
        Order of numeric dates, when the export uses ``31/12/2026``-style dates.
    playbook, strict, fx_rates, as_of, encoding
        As in :func:`forecastkit.adapters.salesforce.load`.

    Returns
    -------
    CRM
        The snapshot; ``crm.load_report`` accounts for every row.
    """
    export = read(deals, pipeline=pipeline, pipeline_column=pipeline_column, stage_map=stage_map, owners=owners,
                  dayfirst=dayfirst, playbook=playbook, encoding=encoding)  # fmt: skip
    return build(export, playbook=playbook, strict=strict, fx_rates=fx_rates, as_of=as_of)
