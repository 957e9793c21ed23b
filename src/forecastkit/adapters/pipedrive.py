"""Pipedrive deal exports -> CRM snapshot (API fields or the UI export's ``Deal - ...`` headers).

API exports: ``id, title, value, currency, status (open / won / lost / deleted),
stage_id, pipeline_id, probability, add_time, update_time, stage_change_time,
expected_close_date, close_time, won_time, lost_time, lost_reason,
next_activity_date, last_activity_date, rotten_time, user_id, org_id``; stage ids are
named by a stages export (``id, name, pipeline_id, order_nr, deal_probability,
rotten_flag, rotten_days``).

UI exports: ``Deal - ID, Deal - Title, Deal - Value, Deal - Currency, Deal - Stage,
Deal - Pipeline, Deal - Status, Deal - Owner, Deal - Organization, Deal - Expected close
date, Deal - Deal created, Deal - Won time, Deal - Lost time, Deal - Lost reason, Deal -
Next activity date, Deal - Probability``.

Choices: a won or lost deal's stage is ``won`` / ``lost`` (Pipedrive keeps the last
open stage in ``stage_id``); its ``closed_at`` is the won or lost time and its close
date that day (the expected close date while open). Deleted deals are not loaded
(counted in the notes). ``next_activity_date`` becomes ``next_step_date``. Deal
exports carry no change history; the deals' change log (``updates=``: Pipedrive's deal
updates / flow, one row per field change: ``item_id`` or ``deal_id``, ``field_key``,
``old_value``, ``new_value``, ``log_time``) is rebuilt into the ``history`` table: one
row per change time with the deal's stage, value and expected close date after it (a
change of ``status`` to won / lost closes the deal that day). Without it the notes say
so and analyses that need history raise. Pipedrive's **rotting** days per stage (``rotten_flag``, ``rotten_days``)
become the playbook's age caps (:func:`playbook_with_rotting`; the smallest rotting
period wins when several Pipedrive stages map to one playbook stage).

Default stage mapping (Pipedrive's default pipeline): Lead In -> to_contact, Contact
Made -> qualification, Needs Defined / Demo Scheduled -> discovery, Proposal Made ->
proposal, Negotiations Started -> negotiation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from forecastkit.adapters._common import RawExport, announce_guess, build, guess_stage_map, typed_column
from forecastkit.adapters._parse import TEXT, for_validation, parse_bool, parse_dates, parse_percent, pick, read_export
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.errors import SchemaError
from forecastkit.playbook import Playbook

__all__ = ["load", "read", "playbook_with_rotting", "PIPEDRIVE_STAGES"]

#: Pipedrive's default pipeline stages -> playbook stages.
PIPEDRIVE_STAGES = {
    "Lead In": "to_contact",
    "Contact Made": "qualification",
    "Needs Defined": "discovery",
    "Demo Scheduled": "discovery",
    "Proposal Made": "proposal",
    "Negotiations Started": "negotiation",
}

# canonical column -> (API field, UI header)
_COLUMNS = {
    "opportunity_id": ("id", "Deal - ID"),
    "name": ("title", "Deal - Title"),
    "amount": ("value", "Deal - Value"),
    "currency": ("currency", "Deal - Currency"),
    "owner": ("user_id", "Deal - Owner"),
    "account_id": ("org_id", "Deal - Organization"),
    "created_at": ("add_time", "Deal - Deal created"),
    "loss_reason": ("lost_reason", "Deal - Lost reason"),
    "next_step_date": ("next_activity_date", "Deal - Next activity date"),
}
_STATUS = ("status", "Deal - Status")
_STAGE_ID = ("stage_id", "Deal - Stage")
_PIPELINE = ("pipeline_id", "Deal - Pipeline")
_PROB = ("probability", "Deal - Probability")
_EXPECTED = ("expected_close_date", "Deal - Expected close date")
_WON_TIME = ("won_time", "Deal - Won time")
_LOST_TIME = ("lost_time", "Deal - Lost time")


def _stage_names(stages: pd.DataFrame, file: str) -> pd.DataFrame:
    need = [c for c in ("id", "name") if c not in stages]
    if need:
        raise SchemaError(f"{file}: a Pipedrive stages export needs id and name (and rotten_days for age caps)")
    out = pd.DataFrame({"id": stages["id"].astype(str), "name": stages["name"].astype(object)})
    out["probability"] = (
        parse_percent(stages["deal_probability"], scale="percent")[0] if "deal_probability" in stages else np.nan
    )
    flag = (
        parse_bool(stages["rotten_flag"])[0].fillna(False)
        if "rotten_flag" in stages
        else pd.Series(True, index=stages.index)
    )
    days = pd.to_numeric(stages["rotten_days"], errors="coerce") if "rotten_days" in stages else np.nan
    out["rotten_days"] = pd.Series(days, index=stages.index).where(flag.to_numpy())
    return out


def playbook_with_rotting(playbook: Playbook, stages: pd.DataFrame, stage_map: Mapping[str, str]) -> Playbook:
    """The playbook with age caps from Pipedrive's rotting days (``stages``: ``name, rotten_days``).

    A stage without rotting keeps its cap; several Pipedrive stages mapped to one playbook
    stage give it the smallest of their rotting periods.
    """
    caps: dict[str, int] = {}
    for name, days in zip(stages["name"].astype(str), stages["rotten_days"], strict=True):
        target = stage_map.get(name)
        if target in playbook.stage_names and pd.notna(days) and days > 0:
            caps[target] = min(caps.get(target, int(days)), int(days))
    if not caps:
        return playbook
    return replace(
        playbook, stages=tuple(replace(s, age_cap_days=caps.get(s.name, s.age_cap_days)) for s in playbook.stages)
    )


def read(
    deals: str | Path,
    stages: str | Path | None = None,
    *,
    stage_map: Mapping[str, str] | None = None,
    pipeline: str | None = None,
    users: Mapping[str, str] | None = None,
    dayfirst: bool | None = None,
    playbook: Playbook | None = None,
    encoding: str = "utf-8",
    updates: str | Path | None = None,
) -> tuple[RawExport, Playbook]:
    """Read a Pipedrive deals export; return raw canonical tables and the playbook with rotting age caps."""
    pb = playbook or Playbook()
    export = RawExport()
    file = Path(deals).name
    df = read_export(deals, encoding=encoding, notes=export.notes)
    rows = np.arange(1, len(df) + 1)
    id_col = pick(df, _COLUMNS["opportunity_id"], file=file)
    stage_col = pick(df, _STAGE_ID, file=file)
    status_col = pick(df, _STATUS, file=file)
    if id_col is None or stage_col is None or status_col is None:
        raise SchemaError(
            f"{file}: a Pipedrive deals export needs id, stage_id and status (or 'Deal - ID', 'Deal - Stage', "
            f"'Deal - Status'); found: {', '.join(list(df.columns)[:12])}"
        )
    status = df[status_col].astype(TEXT).str.strip().str.lower()
    deleted = (status == "deleted").fillna(False).to_numpy()
    export.exclude(file, rows[deleted], "deleted in Pipedrive (status = deleted)")
    df, rows, status = df.loc[~deleted].reset_index(drop=True), rows[~deleted], status[~deleted].reset_index(drop=True)
    pipe_col = pick(df, _PIPELINE, file=file)
    if pipeline is not None and pipe_col is not None:
        keep = (df[pipe_col].astype(TEXT) == str(pipeline)).fillna(False).to_numpy()
        export.exclude(file, rows[~keep], f"deals of other pipelines than {pipeline!r}")
        df, rows, status = df.loc[keep].reset_index(drop=True), rows[keep], status[keep].reset_index(drop=True)
    elif pipe_col is not None and df[pipe_col].nunique() > 1:
        found = ", ".join(map(repr, df[pipe_col].dropna().unique()[:10]))
        raise SchemaError(f"{file}: the export holds several pipelines ({found}); pass pipeline='<name or id>'")
    out = pd.DataFrame(index=df.index)
    for dst, names in _COLUMNS.items():
        c = pick(df, names, file=file)
        if c is not None:
            out[dst] = typed_column(
                df[c], TABLES["opportunities"].column(dst).kind, column=c, file=file, dayfirst=dayfirst
            )
    if users is not None and "owner" in out:
        m = out["owner"].astype(object).map({str(k): v for k, v in users.items()})
        out["owner"] = m.where(m.notna(), out["owner"].astype(object))
    prob = None
    if (c := pick(df, _PROB, file=file)) is not None:
        prob, bad = parse_percent(df[c], scale="percent")
        out["probability"] = for_validation(prob, bad, df[c])
    # stages
    raw_stage = df[stage_col].astype(object)
    stage_table = None
    if stages is not None:
        sfile = Path(stages).name
        stage_table = _stage_names(read_export(stages, encoding=encoding, notes=export.notes), sfile)
        names = raw_stage.astype(str).map(pd.Series(stage_table["name"].to_numpy(), index=stage_table["id"]))
        unknown = names.isna() & raw_stage.notna()
        if unknown.any():
            export.notes.append(f"{file}: {int(unknown.sum())} deal(s) have a stage_id missing from {sfile}")
        raw_stage = names.where(~unknown, raw_stage)
    table = pd.DataFrame({"stage": raw_stage, "probability": prob if prob is not None else np.nan})
    if stage_table is not None:
        table = pd.concat([table, stage_table[["name", "probability"]].rename(columns={"name": "stage"})])
    table = table.dropna(subset=["stage"]).groupby("stage", sort=False)["probability"].median().reset_index()
    if stage_map is None:
        mapping, unmapped = guess_stage_map(table, pb, known=PIPEDRIVE_STAGES)
        announce_guess(mapping, unmapped, file, export.notes)
    else:
        mapping = {str(k): str(v) for k, v in stage_map.items()}
        rest = table[~table["stage"].astype(str).isin(mapping)]
        mapping |= guess_stage_map(rest.assign(probability=np.nan), pb, known=PIPEDRIVE_STAGES)[0]
    st = raw_stage.map(mapping)
    st = st.where(st.notna(), raw_stage)
    st = st.where(~status.isin(["won", "lost"]).fillna(False).to_numpy(), status.astype(object))
    out["stage"] = st
    out["status"] = status.astype(object)
    # close dates: the won/lost time once closed, the expected close date while open
    closed_time = pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]")
    for names, which in ((_WON_TIME, "won"), (_LOST_TIME, "lost")):
        if (c := pick(df, names, file=file)) is not None:
            t, _ = parse_dates(df[c], column=c, file=file, dayfirst=dayfirst)
            closed_time = closed_time.where(~(status == which).fillna(False).to_numpy(), t.dt.normalize())
    out["closed_at"] = closed_time
    if (c := pick(df, _EXPECTED, file=file)) is not None:
        exp = typed_column(df[c], "date", column=c, file=file, dayfirst=dayfirst)
        out["close_date"] = exp.where(closed_time.isna(), closed_time) if exp.dtype != object else exp
    else:
        out["close_date"] = closed_time
    export.add("opportunities", out, file, rows)
    if updates is None:
        export.notes.append(
            f"{file}: Pipedrive deal exports carry no change history; stage timing is unknown "
            "(analyses that need history will say so); pass updates= (the deals' change log) to load it"
        )
    else:
        current = pd.DataFrame(
            {
                "stage_id": df[stage_col].astype(object),
                "value": df[c].astype(object) if (c := pick(df, _COLUMNS["amount"], file=file)) else None,
                "expected_close_date": df[c].astype(object) if (c := pick(df, _EXPECTED, file=file)) else None,
                "status": status.astype(object),
            },
        ).set_axis(out["opportunity_id"].astype(str).to_numpy())
        created = pd.Series(pd.to_datetime(out["created_at"], errors="coerce").to_numpy(), index=current.index)
        stage_names = None if stage_table is None else dict(zip(stage_table["id"], stage_table["name"], strict=True))
        _read_updates(updates, current, created, stage_names, mapping, export, dayfirst, encoding)
    if stage_table is not None:
        pb = playbook_with_rotting(pb, stage_table, mapping)
        caps = {s.name: s.age_cap_days for s in pb.stages}
        export.notes.append(f"age caps taken from Pipedrive rotting days where set: {caps}")
    return export, pb


def load(
    deals: str | Path,
    stages: str | Path | None = None,
    *,
    stage_map: Mapping[str, str] | None = None,
    pipeline: str | None = None,
    users: Mapping[str, str] | None = None,
    dayfirst: bool | None = None,
    playbook: Playbook | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
    as_of: object = None,
    encoding: str = "utf-8",
    updates: str | Path | None = None,
) -> CRM:
    """Load a Pipedrive deals export (API fields or UI headers) as a CRM snapshot.

    Parameters
    ----------
    deals : path
        The deals CSV (see the module docstring).
    stages : path, optional
        Stages export (``id, name, pipeline_id, deal_probability, rotten_flag, rotten_days``):
        names the ``stage_id`` values and gives the rotting days used as age caps.
    stage_map : mapping, optional
        Pipedrive stage name -> playbook stage; guessed and shown in a warning when absent.
    pipeline : str, optional
        Pipeline to keep (id or name); required when the export holds several.
    users : mapping, optional
        ``user_id`` -> name.
    dayfirst, playbook, strict, fx_rates, as_of, encoding
        As in :func:`forecastkit.adapters.salesforce.load_report_export`.
    updates : path, optional
        The deals' change log (see :func:`read_updates`): rebuilt into the ``history`` table.

    Returns
    -------
    CRM
        The snapshot, whose playbook carries the rotting age caps.
    """
    export, pb = read(deals, stages, stage_map=stage_map, pipeline=pipeline, users=users, dayfirst=dayfirst,
                      playbook=playbook, encoding=encoding, updates=updates)  # fmt: skip
    return build(export, playbook=pb if (stages is not None or playbook is not None) else None, strict=strict,
                 fx_rates=fx_rates, as_of=as_of)  # fmt: skip


# ----------------------------------------------------------------------------- change log -> history
_TRACKED = ("stage_id", "value", "expected_close_date", "status")
_UPDATE_DEAL = ("item_id", "deal_id", "Deal ID")
_UPDATE_FIELD = ("field_key", "Field")
_UPDATE_OLD = ("old_value", "Old value")
_UPDATE_NEW = ("new_value", "New value")
_UPDATE_TIME = ("log_time", "Update time")


def _read_updates(
    path: str | Path,
    current: pd.DataFrame,
    created: pd.Series,
    stage_names: Mapping[str, str] | None,
    mapping: Mapping[str, str],
    export: RawExport,
    dayfirst: bool | None,
    encoding: str,
) -> None:
    """Rebuild the ``history`` table from Pipedrive's deal change log (state after each change time).

    ``current``: the deals' current raw ``stage_id, value, expected_close_date, status`` (index: deal id);
    a field never changed keeps its current value all along, a changed one starts at its first ``old_value``.
    """
    file = Path(path).name
    u = read_export(path, encoding=encoding, notes=export.notes)
    cols = [pick(u, names, file=file) for names in (_UPDATE_DEAL, _UPDATE_FIELD, _UPDATE_NEW, _UPDATE_TIME)]
    if any(c is None for c in cols):
        raise SchemaError(
            f"{file}: a Pipedrive deal updates export needs item_id (or deal_id), field_key, new_value and "
            f"log_time (and old_value); found: {', '.join(list(u.columns)[:12])}"
        )
    deal_col, field_col, new_col, time_col = cols
    old_col = pick(u, _UPDATE_OLD, file=file)
    rows = np.arange(1, len(u) + 1)
    field = u[field_col].astype(object).astype(str).str.strip().to_numpy()
    deal = u[deal_col].astype(object).astype(str).str.strip().to_numpy()
    when, bad_time = parse_dates(u[time_col], column=time_col, file=file, dayfirst=dayfirst)
    tracked = np.isin(field, _TRACKED)
    current = current[~current.index.duplicated()]  # duplicated deal ids are rejected by the validator
    known = np.isin(deal, current.index.to_numpy())
    export.exclude(file, rows[tracked & ~known], "changes of deals missing from the deals export")
    bad = tracked & known & (bad_time.to_numpy(dtype=bool) | when.isna().to_numpy())
    export.exclude(file, rows[bad], "log_time is not a date")
    keep = tracked & known & ~bad
    untracked = int((~tracked).sum())
    if untracked:
        export.notes.append(
            f"{file}: {untracked} change(s) of other fields not used (history follows {', '.join(_TRACKED)})"
        )
    ev = pd.DataFrame(
        {
            "deal": deal[keep],
            "time": when.to_numpy()[keep],
            "field": field[keep],
            "old": u[old_col].astype(object).to_numpy()[keep] if old_col else None,
            "new": u[new_col].astype(object).to_numpy()[keep],
            "row": rows[keep],
        }
    ).sort_values(["deal", "time"], kind="stable")
    # deals with changes, and open deals without any (their state never changed since creation)
    still_open = current.index[(current["status"].astype(str).str.lower() == "open").to_numpy()]
    ids = pd.Index(ev["deal"].unique()).union(still_open, sort=False)
    if not len(ids):
        export.add("history", pd.DataFrame(columns=["opportunity_id", "changed_at", "stage", "amount", "close_date"]),
                   file, np.array([], dtype=int))  # fmt: skip
        return
    # the state at creation: first old value of each changed field, the current value of the others
    start = current.loc[ids, list(_TRACKED)].copy()
    first = ev.groupby(["deal", "field"], sort=False).head(1)
    for f, grp in first.groupby("field", sort=False):
        start.loc[grp["deal"].to_numpy(), f] = grp["old"].to_numpy()
    start["time"] = created.loc[ids].to_numpy()
    start["row"] = ev.groupby("deal", sort=False)["row"].min().reindex(ids).fillna(0).astype(int).to_numpy()
    start["order"] = 0
    steps = ev.groupby(["deal", "time", "field"], sort=False)["new"].last().unstack("field")
    steps = steps.reindex(columns=list(_TRACKED))
    steps["row"] = ev.groupby(["deal", "time"], sort=False)["row"].max()
    steps["order"] = 1
    wide = pd.concat([start.rename_axis("deal").reset_index(), steps.reset_index()], ignore_index=True)
    wide = wide.sort_values(["deal", "time", "order"], kind="stable").reset_index(drop=True)
    wide[list(_TRACKED)] = wide.groupby("deal", sort=False)[list(_TRACKED)].ffill()
    stage_raw = wide["stage_id"].astype(object)
    if stage_names is not None:
        stage_raw = stage_raw.map(lambda v: stage_names.get(str(v), v) if pd.notna(v) else v)
    stage = stage_raw.map(lambda v: mapping.get(str(v), v) if pd.notna(v) else v)
    st = wide["status"].astype(object).map(lambda v: str(v).strip().lower() if pd.notna(v) else v)
    closed = st.isin(["won", "lost"]).to_numpy()
    stage = stage.where(~closed, st)
    changed_at = pd.Series(pd.to_datetime(wide["time"]).to_numpy(), index=wide.index)
    close = typed_column(wide["expected_close_date"].astype(TEXT), "date", column="expected_close_date",
                         file=file, dayfirst=dayfirst)  # fmt: skip
    if close.dtype != object:
        close = close.where(~closed, changed_at.dt.normalize())
    h = pd.DataFrame(
        {
            "opportunity_id": wide["deal"].astype(object),
            "changed_at": changed_at,
            "stage": stage,
            "amount": typed_column(wide["value"].astype(TEXT), "float", column="value", file=file),
            "close_date": close,
        }
    )
    export.add("history", h, file, wide["row"].to_numpy())
