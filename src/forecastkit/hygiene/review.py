"""The pipeline review: one tidy action list for a rep or a team, sorted by value at risk.

Each hygiene check (aging, mandatory fields, dated next step, WIP limit,
cadence, visit reports, contact data) becomes rows of the same table, one per
(deal or account, problem), with the action to take. This is the drill-down
list every hygiene KPI of the scorecard leads to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import stage_spells
from forecastkit.errors import ParameterError
from forecastkit.hygiene._deals import (
    _deal_probability,
    _none,
    _text,
    account_owner,
    isin,
    lookup,
    obj,
    open_deal_frame,
    select,
    team_by_owner,
)
from forecastkit.hygiene.aging import _aging
from forecastkit.hygiene.cadence import _step_arrays
from forecastkit.hygiene.completeness import _account_problems
from forecastkit.hygiene.fields import _check_fields, _join_bits, _missing_long, _next_steps, _per_deal
from forecastkit.hygiene.visits import _visit_reports
from forecastkit.hygiene.wip import _wip
from forecastkit.periods import period_of

__all__ = ["review", "PROBLEMS", "CHECKS", "_deal_probability"]

Check = Literal["aging", "missing_fields", "next_steps", "wip", "cadence", "visit_reports", "contact_data"]
#: The checks :func:`review` runs, in this order.
CHECKS: tuple[str, ...] = ("aging", "missing_fields", "next_steps", "wip", "cadence", "visit_reports", "contact_data")

#: problem -> (severity, action). Severity ``red`` = act now, ``orange`` = fix this week.
PROBLEMS: dict[str, tuple[str, str]] = {
    "no_next_step": ("red", "book the next action with the customer and date it"),
    "overdue_next_step": ("red", "do the overdue next action or reschedule it with the customer"),
    "stale_abandon": ("red", "abandon: close the deal as lost, or justify keeping it"),
    "stale_requalify": ("red", "requalify: check budget, decision maker and timing with the customer"),
    "stale_follow_up": ("orange", "follow up: get the fact that moves the deal to the next stage"),
    "undated_next_step": ("orange", "put a date on the next action"),
    "missing_fields": ("orange", "fill the mandatory fields"),
    "over_wip_limit": ("orange", "close out: win it, requalify it or abandon it to get back under the WIP limit"),
    "cadence_missed": ("orange", "do the missed cadence touches today and keep the next ones on their day"),
    "visit_report": ("orange", "write the missing visit reports (five boxes)"),
    "contact_data": ("orange", "complete and correct the contacts of the account"),
}
_ORDER = {p: i for i, p in enumerate(PROBLEMS)}
_NEXT_STEP_FIELDS = ("next_step", "next_step_date")
COLUMNS = [
    "owner",
    "team",
    "opportunity_id",
    "account_id",
    "name",
    "stage",
    "amount",
    "probability",
    "value_at_risk",
    "problem",
    "severity",
    "detail",
    "action",
]


def review(
    crm: CRM,
    owner: str | Iterable[str] | None = None,
    *,
    team: str | Iterable[str] | None = None,
    checks: Iterable[Check] | None = None,
) -> pd.DataFrame:
    """One action list for a rep or a team: every hygiene problem, by value at risk.

    Value at risk of a deal = ``amount x probability``, with the probability from
    ``_deal_probability`` (for now the playbook's CRM probability of the stage;
    recalibrated probabilities later). An account-level row (contact data, a
    visit not tied to a deal) carries the value at risk of the account's open
    deals. Checks and their problems:

    * ``aging``: ``stale_follow_up`` / ``stale_requalify`` / ``stale_abandon``
      (the playbook's age action);
    * ``missing_fields``: ``missing_fields`` (mandatory fields other than the
      next step, which ``next_steps`` covers);
    * ``next_steps``: ``no_next_step``, ``undated_next_step``, ``overdue_next_step``;
    * ``wip``: ``over_wip_limit`` for the deals an over-limit rep should close out first;
    * ``cadence``: ``cadence_missed`` on open deals still in the first stage
      with missed cadence steps;
    * ``visit_reports``: ``visit_report`` per deal (or account, for visits not
      tied to a deal in the current fiscal quarter) with visits lacking a
      report or boxes, on open deals only;
    * ``contact_data``: ``contact_data`` per account with incomplete, invalid
      or duplicated contacts.

    Checks whose table is absent (activities, contacts) are skipped.

    Parameters
    ----------
    crm : CRM
        The snapshot; everything is compared with ``crm.as_of_date``, so
        ``review(crm.as_of(d))`` is the list a rep would have seen on ``d``.
    owner : str or list of str, optional
        The rep(s); all reps when None.
    team : str or list of str, optional
        The team(s).
    checks : iterable of str, optional
        A subset of :data:`CHECKS` (all by default).

    Returns
    -------
    DataFrame
        One row per (deal or account, problem), highest value at risk first,
        then red before orange: ``owner, team, opportunity_id`` (empty for an
        account row), ``account_id, name, stage, amount, probability,
        value_at_risk, problem`` (a key of :data:`PROBLEMS`), ``severity``
        (``red`` / ``orange``), ``detail`` (the facts, in words), ``action``.

    Raises
    ------
    ParameterError
        An unknown check name.
    """
    wanted = tuple(CHECKS if checks is None else checks)
    bad = [c for c in wanted if c not in CHECKS]
    if bad:
        raise ParameterError(f"review: unknown check(s) {bad}; allowed: {', '.join(CHECKS)}")
    spells = stage_spells(crm)
    deals = open_deal_frame(crm, spells)
    return _review(crm, deals, spells, owner, team, wanted)


def _review(
    crm: CRM,
    deals: pd.DataFrame,
    spells: pd.DataFrame,
    owner: str | Iterable[str] | None,
    team: str | Iterable[str] | None,
    wanted: tuple[str, ...],
) -> pd.DataFrame:
    pb = crm.playbook
    d = select(deals, owner, team).reset_index(drop=True)
    d["value_at_risk"] = d["amount"] * d["probability"]
    parts: list[pd.DataFrame] = []
    if "aging" in wanted:
        a = _aging(d, pb)
        detail = (
            a["days_in_stage"].round().astype("int64").astype(str)
            + " days in "
            + a["stage"].astype(str)
            + " (cap "
            + a["age_cap_days"].astype(str)
            + ")"
        )
        problem = "stale_" + a["action"].fillna("follow_up").astype(str)
        parts.append(_rows(a, problem, detail))
    if "missing_fields" in wanted:
        _check_fields(crm)
        fields = [f for f in pb.mandatory_fields if f not in _NEXT_STEP_FIELDS]
        m = _per_deal(_missing_long(d, pb, fields))
        parts.append(_rows(m, "missing_fields", "missing: " + m["missing_fields"].astype(str)))
    if "next_steps" in wanted:
        n = _next_steps(d, crm.as_of_date)
        kind = n["problem"].astype(str)
        problem = np.select(
            [kind == "missing", kind == "undated"], ["no_next_step", "undated_next_step"], "overdue_next_step"
        )
        txt = n["next_step"].astype(object).fillna("").astype(str)
        date = n["next_step_date"].dt.strftime("%Y-%m-%d").fillna("")
        detail = np.select(
            [kind == "missing", kind == "undated"],
            ["no next step", "'" + txt + "' has no date"],
            "'" + txt + "' was due " + date + " (" + n["days_overdue"].astype(str) + " days overdue)",
        )
        parts.append(_rows(n, problem, detail))
    if "wip" in wanted:
        by_owner, close = _wip(d, pb)
        active = close["owner"].map(by_owner.set_index("owner")["active_deals"])
        detail = (
            active.astype("int64").astype(str)
            + " active deals for a limit of "
            + str(pb.wip_limit)
            + "; close-out rank "
            + close["rank"].astype(str)
        )
        parts.append(_rows(close, "over_wip_limit", detail))
    if "cadence" in wanted and crm.has("activities"):
        parts.append(_cadence_rows(crm, d, spells))
    if "visit_reports" in wanted and crm.has("activities"):
        parts.append(_visit_rows(crm, d, owner, team))
    if "contact_data" in wanted and crm.has("contacts"):
        parts.append(_contact_rows(crm, d, owner, team))
    parts = [p for p in parts if len(p)]
    if not parts:
        return _empty()
    return _assemble(parts)


_NUMBERS = ("amount", "probability", "value_at_risk")


def _assemble(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts as one action list, highest value at risk first (column by column: no frame concatenation)."""
    col: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c in ("severity", "action"):
            continue
        if c in _NUMBERS:
            col[c] = np.concatenate([p[c].astype("float64").to_numpy() for p in parts])
        else:
            col[c] = np.concatenate([_raw(p[c]) for p in parts])
    codes, problems = pd.factorize(col["problem"])
    prob = np.append(pd.Index(list(PROBLEMS)).get_indexer(problems), -1)[codes]  # position in PROBLEMS
    col["severity"] = np.array([v[0] for v in PROBLEMS.values()] + [None], dtype=object)[prob]
    col["action"] = np.array([v[1] for v in PROBLEMS.values()] + [None], dtype=object)[prob]
    sev = (col["severity"] != "red").astype("int64")
    var = col["value_at_risk"]
    # one code per deal (per account for an account row), in order of appearance
    opp_code, opp_ids = pd.factorize(_none(col["opportunity_id"]))
    acc_code, acc_ids = pd.factorize(_none(col["account_id"]))
    acc_code = np.where(acc_code >= 0, acc_code, len(acc_ids))
    grp, _ = pd.factorize(np.where(opp_code >= 0, opp_code, len(opp_ids) + acc_code))
    # highest value first (NaN last); a deal's rows together, red before orange, then the problem order
    order = np.lexsort((prob, sev, grp, np.where(np.isnan(var), np.inf, -var)))
    return pd.DataFrame(
        {c: col[c][order] if c in _NUMBERS else pd.array(col[c][order], dtype="string") for c in COLUMNS}
    )


def _raw(s: pd.Series) -> np.ndarray:
    """The values of a column as an object array, missing values as ``pd.NA``, ``None`` or NaN.

    A ``string`` column's own array (no missing-value scan); the action list turns every
    missing marker into ``pd.NA`` when it builds its ``string`` columns.
    """
    arr = s.array
    return arr._ndarray if isinstance(arr, pd.arrays.StringArray) else s.to_numpy(dtype=object)


def _empty() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})
    for c in ("amount", "probability", "value_at_risk"):
        out[c] = pd.Series(dtype="float64")
    return out


def _rows(df: pd.DataFrame, problem: object, detail: object) -> pd.DataFrame:
    out = df[["owner", "team", "opportunity_id", "account_id", "name", "stage", "amount", "probability"]].copy()
    out["value_at_risk"] = out["amount"] * out["probability"]
    out["problem"] = np.asarray(problem, dtype=object) if not isinstance(problem, str) else problem
    out["detail"] = np.asarray(detail, dtype=object)
    return out


def _account_value(d: pd.DataFrame) -> pd.Series:
    return d.groupby("account_id", sort=False)["value_at_risk"].sum(min_count=1)


def _cadence_rows(crm: CRM, d: pd.DataFrame, spells: pd.DataFrame) -> pd.DataFrame:
    first_stage = d[(d["stage_order"] == 0).to_numpy()]
    r = _step_arrays(
        crm,
        spells,
        leads=obj(first_stage["opportunity_id"]),
        leads_created=first_stage["created_at"].to_numpy("datetime64[ns]"),
    )
    missed = r["status"] == "missed"
    if not missed.any():
        return first_stage.iloc[:0]
    names = r["names"]
    deal, ids = pd.factorize(r["lead_opp"][r["li"][missed]], sort=True)
    bits = np.zeros(len(ids), dtype="int64")
    np.bitwise_or.at(bits, deal, 1 << r["si"][missed])
    detail = _join_bits(bits, names, {n: k for k, n in enumerate(names)})
    deals = first_stage.iloc[pd.Index(first_stage["opportunity_id"].astype(object)).get_indexer(ids)]
    return _rows(deals, "cadence_missed", "missed: " + detail)


def _visit_rows(crm: CRM, d: pd.DataFrame, owner: object, team: object) -> pd.DataFrame:
    acts = crm.activities
    q = period_of(crm.as_of_date, "quarter", crm.playbook)
    open_ids = d["opportunity_id"]

    def keep(rows: np.ndarray) -> np.ndarray:
        # visits on open deals, and visits tied to no deal in the current fiscal quarter
        opp = np.asarray(acts["opportunity_id"].array, dtype=object)[rows]
        text = _text(opp)  # converted once: its null mask and its lookup
        if text is not None:
            opp = text
            acc_only = text.is_null().to_numpy(zero_copy_only=False)
        else:
            acc_only = pd.isna(opp)
        if acc_only.any():
            acc_only[acc_only] = q.contains(acts["done_at"].take(rows[acc_only])).to_numpy(bool)
        return isin(opp, open_ids) | acc_only

    v = _visit_reports(acts, crm, ("visit", "meeting"), keep)
    if v.empty:
        return v.iloc[:0]
    opp = obj(v["opportunity_id"])
    code_o, uniq_o = pd.factorize(opp)
    code_a, _ = pd.factorize(obj(v["account_id"]))
    key = np.where(code_o >= 0, code_o, len(uniq_o) + code_a)
    no_rep = (v["problem"] == "no_report").to_numpy()
    agg = pd.DataFrame(
        {
            "key": key,
            "no": no_rep,
            "inc": ~no_rep,
            "owner": obj(v["owner"]),
            "account_id": obj(v["account_id"]),
            "opp": opp,
        }
    )
    g = agg.groupby("key", sort=False)
    res = pd.DataFrame(
        {
            "no": g["no"].sum(),
            "inc": g["inc"].sum(),
            "owner": g["owner"].first(),
            "account_id": g["account_id"].first(),
            "opportunity_id": g["opp"].first(),
        }
    )
    detail = np.where(res["no"] > 0, res["no"].astype(str) + " visit(s) without report", "")
    sep = np.where((res["no"] > 0) & (res["inc"] > 0), ", ", "")
    detail = detail + sep + np.where(res["inc"] > 0, res["inc"].astype(str) + " report(s) missing boxes", "")
    res["detail"] = detail
    deal_part = res[res["opportunity_id"].notna()]
    deals = d.iloc[pd.Index(d["opportunity_id"]).get_indexer(deal_part["opportunity_id"])].reset_index(drop=True)
    rows = [_rows(deals, "visit_report", obj(deal_part["detail"]))]
    acc_part = res[res["opportunity_id"].isna()]
    if len(acc_part):
        rows.append(_account_rows(crm, d, acc_part, "visit_report", owner, team))
    return pd.concat(rows, ignore_index=True)


def _contact_rows(crm: CRM, d: pd.DataFrame, owner: object, team: object) -> pd.DataFrame:
    acc = _account_problems(crm)
    if acc.empty:
        return acc.iloc[:0]
    inc = acc["incomplete_contacts"].to_numpy()
    inv = acc["invalid_values"].to_numpy()
    dup = acc["duplicates"].to_numpy()
    missing = obj(acc["missing"])
    # the detail text is built once per distinct (counts, missing fields) combination
    combo, _ = pd.factorize(missing)
    for counts in (inc, inv, dup):
        combo, _ = pd.factorize(combo * (int(counts.max(initial=0)) + 1) + counts)
    first = np.unique(combo, return_index=True)[1]
    words = []
    for i in first:
        bits = []
        if inc[i] > 0:
            bits.append(f"{inc[i]} incomplete contact(s) (missing {missing[i]})")
        if inv[i] > 0:
            bits.append(f"{inv[i]} invalid e-mail/phone")
        if dup[i] > 0:
            bits.append(f"{dup[i]} duplicate(s)")
        words.append("; ".join(bits))
    acc = acc.assign(detail=np.asarray(words, dtype=object)[combo])
    # the owner of a contact row is its account's owner already (see completeness._with_owner)
    return _account_rows(crm, d, acc, "contact_data", owner, team, fill_owner=False)


def _account_rows(
    crm: CRM,
    d: pd.DataFrame,
    acc: pd.DataFrame,
    problem: str,
    owner: object,
    team: object,
    fill_owner: bool = True,
) -> pd.DataFrame:
    ids = obj(acc["account_id"])
    names = np.full(len(ids), None, dtype=object)
    if crm.has("accounts"):  # the name on the account's first row
        a_ids = obj(crm.accounts["account_id"])
        first = ~pd.Index(a_ids).duplicated(keep="first")
        pos = pd.Index(a_ids[first]).get_indexer(ids)
        names = np.where(pos >= 0, obj(crm.accounts["name"])[first][pos] if first.any() else None, None)
    value = _account_value(d)
    pos = pd.Index(obj(value.index)).get_indexer(ids)
    owners = obj(acc["owner"])
    if fill_owner:
        owners = np.where(pd.isna(owners), lookup(account_owner(crm), ids), owners)
    out = pd.DataFrame(
        {
            "owner": owners,
            "opportunity_id": None,
            "account_id": ids,
            "team": lookup(team_by_owner(crm), owners),
            "name": names,
            "stage": None,
            "amount": np.nan,
            "probability": np.nan,
            "value_at_risk": np.where(pos >= 0, value.to_numpy(dtype="float64")[pos] if len(value) else np.nan, np.nan),
            "problem": problem,
            "detail": obj(acc["detail"]),
        }
    )
    out = select(out, owner, team)
    return out
