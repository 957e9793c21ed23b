"""Outreach cadence compliance: each step of the playbook's cadence done on time, late or missed.

The cadence (domain section 4; ``playbook.cadence``) is a sequence of touches on
days counted from the first touch: D0 call + value email, D2 social touch, D5
reminder, D9 case-study email, D14 call. Activities carry the step they belong
to in ``activities.cadence_step``.

Rules (all dates compared with ``crm.as_of_date``, never the clock):

* **Leads in outreach** are the deals whose first stage was the playbook's first
  stage (``to_contact``), plus accounts with cadence activities not attached to
  any deal. The outreach ends when the deal leaves that stage (moves on, or is
  won or lost): steps due after that are not expected.
* **Sequence start** ``t0``: the earliest of ``due_at - day`` over the lead's
  cadence activities (the D0 touches' due time, when logged); when the lead has
  no cadence activity at all, the deal's creation time.
* **Due time of a step**: its activity's ``due_at`` when one is logged, else
  ``t0 + day``.
* **Status**: ``on_time`` when done on or before the calendar day it was due;
  ``late`` when done on a later day; ``missed`` when not done and its due day
  is before the snapshot day; ``pending`` when not done and due on or after the
  snapshot day (still doable). Steps not done and due after the lead left
  outreach are not listed.
* **Compliance** = on_time / (on_time + late + missed); pending steps do not count.

When no activity carries a cadence step of the playbook, the company does not
log its cadence and nothing is reported (rather than every step "missed").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import _distinct_sorted, stage_spells
from forecastkit.hygiene._deals import _none, isin, obj, positions, select, team_by_owner

__all__ = ["CadenceReport", "cadence", "CADENCE_STATUSES"]

#: Status of a cadence step.
CADENCE_STATUSES = ("on_time", "late", "missed", "pending")
_DAY = np.timedelta64(86_400_000_000_000, "ns")


@dataclass(frozen=True)
class CadenceReport:
    """Result of :func:`cadence`.

    Attributes
    ----------
    steps : DataFrame
        One row per (lead, cadence step) expected: ``opportunity_id`` (empty for
        an account-only lead), ``account_id, owner, team, cadence_step, day``,
        ``due_at`` (the logged due time, or ``t0 + day``), ``done_at``,
        ``status`` (on_time / late / missed / pending), ``days_late`` (calendar
        days after the due day; 0 when on time, days since due when missed).
    by_owner : DataFrame
        ``owner, leads, steps_due, on_time, late, missed, pending,
        compliance_rate`` (NaN without any step due), lowest compliance first.
    """

    steps: pd.DataFrame
    by_owner: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The per-owner table."""
        return self.by_owner

    def _repr_html_(self) -> str:
        return "<p><b>Cadence compliance per owner</b></p>" + self.by_owner.to_html(index=False)


def cadence(
    crm: CRM,
    *,
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> CadenceReport:
    """Cadence steps done on time, late or missed, and compliance per rep.

    Parameters
    ----------
    crm : CRM
        The snapshot; needs the ``activities`` table.
    owner, team : str or list of str, optional
        Keep only these owners / teams (the step's owner: its activity's
        owner, else the deal's).

    Returns
    -------
    CadenceReport
        ``steps`` and ``by_owner`` (columns listed in :class:`CadenceReport`;
        the rules are in the module docstring).

    Raises
    ------
    SchemaError
        The snapshot has no ``activities`` table.
    """
    crm.require("activities", "cadence compliance")
    steps = select(_steps(crm), owner, team).reset_index(drop=True)
    return CadenceReport(steps, _by_owner(steps))


def _steps(crm: CRM, spells: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (lead, cadence step) expected, for every lead (see :class:`CadenceReport`)."""
    r = _step_arrays(crm, spells)
    names, days, li, si, status = r["names"], r["days"], r["li"], r["si"], r["status"]
    opps, pos, acc_keys, lead_opp = crm.opportunities, r["lead_pos"], r["acc_keys"], r["lead_opp"]
    big = np.iinfo(np.int64).max

    # owner: the activity's, else the deal's (or the account's for account-only leads)
    none = np.full(len(acc_keys), None, dtype=object)
    key_owner = np.concatenate([obj(opps["owner"])[pos], none])
    owner = r["cell_owner"]
    miss = pd.isna(owner)
    owner[miss] = key_owner[li[miss]]
    key_acc = np.concatenate([obj(opps["account_id"])[pos], acc_keys.astype(object)])
    key_opp = np.concatenate([lead_opp, none])
    teams = team_by_owner(crm)
    team = np.concatenate([obj(opps["team"])[pos], none])[li]
    tmiss = pd.isna(team) | (owner != key_owner[li])
    team[tmiss] = pd.Series(owner[tmiss], dtype=object).map(teams).to_numpy(dtype=object)

    def _ts(v: np.ndarray) -> np.ndarray:
        return np.where(v == big, np.iinfo(np.int64).min, v).view("datetime64[ns]")

    out = pd.DataFrame(
        {
            "opportunity_id": pd.array(key_opp[li], dtype="string"),
            "account_id": pd.array(key_acc[li], dtype="string"),
            "owner": pd.array(owner, dtype="string"),
            "team": pd.array(team, dtype="string"),
            "cadence_step": pd.array(np.asarray(names, dtype=object)[si], dtype="string"),
            "day": days[si],
            "due_at": _ts(r["planned"]),
            "done_at": _ts(r["done"]),
            "status": pd.array(status, dtype="string"),
            "days_late": r["days_late"].astype("int64"),
        }
    )
    return out


def _run_starts(ids: np.ndarray) -> np.ndarray:
    """True on the first row of each run of equal ids (rows of one deal are contiguous in the stage spells)."""
    first = np.ones(len(ids), dtype=bool)
    try:
        np.not_equal(ids[1:], ids[:-1], out=first[1:])
    except TypeError:  # missing ids (pd.NA) cannot be compared
        return ~pd.Series(ids, dtype=object).duplicated().to_numpy()
    return first


def _step_arrays(
    crm: CRM,
    spells: pd.DataFrame | None = None,
    leads: np.ndarray | None = None,
    leads_created: np.ndarray | None = None,
) -> dict:
    """The cadence steps as arrays: ``li`` (lead), ``si`` (step), ``status``, ``planned``, ``done``, ...

    ``leads``: only these deal ids (account-only leads are then left out); the steps of a
    lead depend on that lead alone, so the rows are those of the full table for these leads.
    ``leads_created``: their ``created_at`` (datetime64[ns]), when known; the opportunities
    table is then not searched for them, ``lead_pos`` is None and ``lead_at`` is each lead's
    position in ``leads``.
    """
    pb = crm.playbook
    names = [c.name for c in pb.cadence]
    days = np.array([c.day for c in pb.cadence], dtype="int64")
    n_steps = len(names)
    opps = crm.opportunities
    as_of = np.datetime64(crm.as_of_date.to_datetime64(), "ns")

    # leads: deals whose first spell is the first playbook stage
    sp = stage_spells(crm) if spells is None else spells
    sp_ids = np.asarray(sp["opportunity_id"].array, dtype=object)
    first = _run_starts(sp_ids) & (sp["stage_order"] == 0).to_numpy()
    if leads is not None:
        cand = np.flatnonzero(first)
        first[cand] = isin(sp_ids[cand], leads)
    lead_opp = _none(sp_ids[first])
    lead_exit = sp["exited_at"].to_numpy("datetime64[ns]")[first]

    acts = crm.activities
    # only the columns used, as plain arrays (filtering the whole activity table copies every column)
    step_all = positions(acts["cadence_step"], np.asarray(names, dtype=object))
    if step_all is None:
        step_all = pd.Index(names).get_indexer(obj(acts["cadence_step"]))
    rows = np.flatnonzero(step_all >= 0)
    lead_at = None  # lead of each row, when known already
    if leads is not None:
        a_opp = np.asarray(acts["opportunity_id"].array, dtype=object)[rows]
        if not pd.isna(lead_opp).any():  # the leads are distinct deal ids: one lookup gives the lead of each row
            lead_at = positions(a_opp, lead_opp)
        mine = isin(a_opp, lead_opp) if lead_at is None else lead_at >= 0
        rows, a_opp = rows[mine], _none(a_opp[mine])
        if lead_at is not None:
            lead_at = lead_at[mine]
        a_acc = np.full(len(rows), None, dtype=object)
        acc_only = np.zeros(len(rows), dtype=bool)
    else:
        a_opp = obj(acts["opportunity_id"].take(rows))
        a_acc = obj(acts["account_id"].take(rows))
        acc_only = pd.isna(a_opp)
    if not (step_all >= 0).any():  # the company does not log cadence steps: nothing to check
        lead_opp, lead_exit = lead_opp[:0], lead_exit[:0]
    # account-only leads
    acc_keys = pd.unique(a_acc[acc_only & ~pd.isna(a_acc)])
    keys = np.concatenate([lead_opp, acc_keys.astype(object)])
    n_deal_leads = len(lead_opp)
    lead_of = lead_at if lead_at is not None else pd.Index(keys).get_indexer(np.where(acc_only, a_acc, a_opp))
    ok = lead_of >= 0
    rows = rows[ok]
    lead_of = lead_of[ok]
    step_of = step_all[rows]
    n_leads = len(keys)

    # one row per (lead, step): first due, first done, owner of the first row
    cell = lead_of.astype("int64") * n_steps + step_of
    due = acts["due_at"].to_numpy("datetime64[ns]")[rows]
    done = acts["done_at"].to_numpy("datetime64[ns]")[rows]
    n_cells = n_leads * n_steps
    big = np.iinfo(np.int64).max
    due_i = due.view("int64")
    done_i = np.where(np.isnat(done), big, done.view("int64"))
    # one stable sort by cell (cells of a lead are contiguous), then minima per cell and per lead
    order = np.argsort(cell, kind="stable")
    sorted_cell = cell[order]
    starts = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]]) if len(order) else order
    cells = sorted_cell[starts]
    cell_due = np.full(n_cells, big, dtype="int64")
    cell_done = np.full(n_cells, big, dtype="int64")
    cell_row = np.full(n_cells, -1, dtype="int64")
    t0 = np.full(n_leads, big, dtype="int64")
    if len(order):
        cell_due[cells] = np.minimum.reduceat(due_i[order], starts)
        cell_done[cells] = np.minimum.reduceat(done_i[order], starts)
        cell_row[cells] = rows[order[starts]]
        # sequence start per lead: earliest (due - step day) over its rows
        sorted_lead = sorted_cell // n_steps
        lead_starts = np.flatnonzero(np.r_[True, sorted_lead[1:] != sorted_lead[:-1]])
        start_i = (due_i - days[step_of] * _DAY.astype("int64"))[order]
        t0[sorted_lead[lead_starts]] = np.minimum.reduceat(start_i, lead_starts)
    at = None
    if leads is not None and leads_created is not None:  # distinct deal ids with their creation dates
        lead_pos = None
        at = positions(lead_opp, leads)
        if at is None:
            at = pd.Index(leads).get_indexer(lead_opp)
        created = np.asarray(leads_created, dtype="datetime64[ns]")[at].view("int64")
    else:
        lead_pos = pd.Index(obj(opps["opportunity_id"])).get_indexer(lead_opp)
        created = opps["created_at"].to_numpy("datetime64[ns]")[lead_pos].view("int64")
    no_rows = t0 == big
    t0[:n_deal_leads] = np.where(no_rows[:n_deal_leads], created, t0[:n_deal_leads])
    exit_i = np.full(n_leads, big, dtype="int64")
    exit_i[:n_deal_leads] = np.where(np.isnat(lead_exit), big, lead_exit.view("int64"))

    lead_rep = np.repeat(np.arange(n_leads), n_steps)
    step_rep = np.tile(np.arange(n_steps), n_leads)
    logged = cell_due != big
    planned = np.where(logged, cell_due, t0[lead_rep] + days[step_rep] * _DAY.astype("int64"))
    is_done = cell_done != big
    valid_t0 = t0[lead_rep] != big
    keep = is_done | (valid_t0 & (planned < exit_i[lead_rep]))
    due_day = planned // _DAY.astype("int64")
    done_day = cell_done // _DAY.astype("int64")
    as_of_day = as_of.view("int64") // _DAY.astype("int64")
    status = np.select(
        [is_done & (done_day <= due_day), is_done, due_day < as_of_day],
        ["on_time", "late", "missed"],
        default="pending",
    )
    days_late = np.select([status == "late", status == "missed"], [done_day - due_day, as_of_day - due_day], default=0)
    idx = np.flatnonzero(keep)
    crow = cell_row[idx]
    cell_owner = np.full(len(idx), None, dtype=object)
    has_row = crow >= 0
    if has_row.any():
        cell_owner[has_row] = obj(acts["owner"].take(crow[has_row]))
    return {
        "names": names,
        "days": days,
        "li": lead_rep[idx],
        "si": step_rep[idx],
        "status": status[idx],
        "planned": planned[idx],
        "done": cell_done[idx],
        "days_late": days_late[idx],
        "cell_owner": cell_owner,
        "lead_opp": lead_opp,
        "lead_pos": lead_pos,
        "lead_at": at,
        "acc_keys": acc_keys,
    }


def _by_owner(steps: pd.DataFrame) -> pd.DataFrame:
    s = steps.dropna(subset=["owner"])
    # counts per (owner, status) and distinct leads (deal, else account) per owner, on factorised codes
    o_code, owners = pd.factorize(s["owner"].astype(object), sort=True)
    statuses = list(CADENCE_STATUSES)
    st_code = pd.Categorical(s["status"].astype(object), categories=statuses).codes.astype(np.int64)
    ok = st_code >= 0
    n_o, n_s = len(owners), len(statuses)
    flat = np.bincount(o_code[ok] * n_s + st_code[ok], minlength=n_o * n_s).reshape(n_o, n_s)
    counts = pd.DataFrame(flat, index=pd.Index(owners, name="owner"), columns=statuses)
    deal = s["opportunity_id"].astype(object)
    lead_key = deal.where(deal.notna(), "account:" + s["account_id"].astype(object).fillna(""))
    l_code = pd.factorize(lead_key)[0].astype(np.int64)
    pairs = _distinct_sorted(o_code.astype(np.int64) * (int(l_code.max(initial=0)) + 1) + l_code)
    leads = pd.Series(np.bincount(pairs // (int(l_code.max(initial=0)) + 1), minlength=n_o), index=counts.index)
    out = counts.astype("int64")
    out.insert(0, "leads", leads.reindex(out.index).fillna(0).astype("int64"))
    due = out["on_time"] + out["late"] + out["missed"]
    out.insert(1, "steps_due", due.astype("int64"))
    out["compliance_rate"] = (out["on_time"] / due.where(due > 0)).astype("float64")
    out = out.rename_axis("owner").reset_index()
    out.columns.name = None
    out["owner"] = out["owner"].astype("string")
    return out.sort_values(["compliance_rate", "owner"], kind="stable", na_position="last").reset_index(drop=True)
