"""Mandatory fields at milestones and the dated next step.

Two checks on open deals, both as of ``crm.as_of_date``:

* :func:`missing_fields` - a field listed in ``playbook.mandatory_fields`` is
  empty on a deal that is at or past the stage from which it is required;
* :func:`next_steps` - the golden rule: every open deal shows a next action
  with a date that is not in the past.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError, PlaybookError
from forecastkit.hygiene._deals import DEAL_COLUMNS, open_deal_frame, select
from forecastkit.playbook import Playbook

__all__ = ["missing_fields", "next_steps", "NEXT_STEP_PROBLEMS"]

#: Next-step problems, from the worst to the mildest.
NEXT_STEP_PROBLEMS = ("missing", "overdue", "undated")


def missing_fields(
    crm: CRM,
    *,
    by: Literal["deal", "field"] = "deal",
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Open deals at or past a milestone stage with a mandatory field empty.

    ``playbook.mandatory_fields`` maps an opportunity column to the first stage
    from which it must be filled (defaults: ``close_date`` and
    ``next_step_date`` from qualification, ``budget`` and ``decision_maker``
    from discovery). A deal in that stage or a later one with the column empty
    is a violation. Deals whose stage is unknown are left out.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    by : {"deal", "field"}
        ``"deal"``: one row per deal listing its missing fields; ``"field"``:
        one row per (deal, missing field).
    owner, team : str or list of str, optional
        Keep only these owners / teams.

    Returns
    -------
    DataFrame
        ``by="deal"``: ``opportunity_id, owner, team, account_id, name, stage,
        amount, probability, missing_fields`` (comma-separated, in playbook
        order), ``n_missing``. ``by="field"``: ``opportunity_id, owner, team,
        account_id, name, stage, amount, probability, field, required_from``.
        Rows sorted by deal id (then field in playbook order).

    Raises
    ------
    PlaybookError
        A mandatory field is not an opportunity column.
    ParameterError
        ``by`` is not ``"deal"`` or ``"field"``.
    """
    if by not in ("deal", "field"):
        raise ParameterError(f"missing_fields: by must be 'deal' or 'field', got {by!r}")
    _check_fields(crm)
    long = _missing_long(open_deal_frame(crm), crm.playbook)
    out = _per_deal(long) if by == "deal" else long
    return select(out, owner, team).reset_index(drop=True)


def _check_fields(crm: CRM) -> None:
    cols = set(crm.opportunities.columns)
    bad = [f for f in crm.playbook.mandatory_fields if f not in cols]
    if bad:
        raise PlaybookError(
            f"'mandatory_fields' names {', '.join(map(repr, bad))}, which is not an opportunity column; "
            f"use one of the opportunity columns, e.g. budget, decision_maker, close_date, next_step_date"
        )


def _missing_long(
    d: pd.DataFrame, pb: Playbook, fields: Iterable[str] | None = None, keep_index: bool = False
) -> pd.DataFrame:
    """One row per (open deal, missing mandatory field), in deal then playbook-field order.

    ``keep_index``: indexed by the deal's row in ``d`` (else 0..n-1).
    """
    names = pb.stage_names
    order = d["stage_order"].to_numpy()
    parts = []
    for i, (fld, from_stage) in enumerate(pb.mandatory_fields.items()):
        if fields is not None and fld not in fields:
            continue
        due = order >= names.index(from_stage)  # NaN (unknown stage) compares False
        miss = due & d[fld].isna().to_numpy()
        if miss.any():
            part = d.loc[miss, [*DEAL_COLUMNS, "probability"]].copy()
            part["field"] = fld
            part["required_from"] = from_stage
            part["_k"] = i
            parts.append(part)
    cols = [*DEAL_COLUMNS, "probability", "field", "required_from"]
    if not parts:
        return _empty(d, cols)
    long = pd.concat(parts)
    long["_pos"] = long.index
    long = long.sort_values(["_pos", "_k"], kind="stable")
    long["field"] = long["field"].astype("string")
    long["required_from"] = long["required_from"].astype("string")
    return long[cols] if keep_index else long[cols].reset_index(drop=True)


def _empty(d: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    out = d.iloc[:0].reindex(columns=cols)
    for c in ("field", "required_from", "missing_fields", "problem"):
        if c in out:
            out[c] = out[c].astype("string")
    return out


def _per_deal(long: pd.DataFrame) -> pd.DataFrame:
    cols = [*DEAL_COLUMNS, "probability"]
    if long.empty:
        out = long[cols].copy()
        out["missing_fields"] = pd.Series(dtype="string")
        out["n_missing"] = pd.Series(dtype="int64")
        return out
    key = long["opportunity_id"]
    first = ~key.duplicated().to_numpy()
    out = long.loc[first, cols].reset_index(drop=True)
    deal = np.cumsum(first) - 1  # rows are grouped by deal (see _missing_long)
    names, code_of = np.unique(long["field"].to_numpy(dtype=object).astype(str), return_inverse=True)
    order = {f: k for k, f in enumerate(dict.fromkeys(long["field"].astype(str)))}
    bits = np.zeros(first.sum(), dtype="int64")
    np.bitwise_or.at(bits, deal, 1 << code_of)
    out["missing_fields"] = pd.array(_join_bits(bits, list(names), order), dtype="string")
    out["n_missing"] = np.bincount(deal, minlength=len(out)).astype("int64")
    return out


def _join_bits(bits: np.ndarray, names: list[str], order: dict[str, int]) -> np.ndarray:
    """``", "``-joined names of the set bits of each code (names in ``order``), computed once per distinct code."""
    uniq, inv = np.unique(bits, return_inverse=True)
    text = []
    for code in uniq:
        chosen = [n for k, n in enumerate(names) if (int(code) >> k) & 1]
        text.append(", ".join(sorted(chosen, key=lambda n: order.get(n, 0))))
    return np.asarray(text, dtype=object)[inv]


def next_steps(
    crm: CRM,
    *,
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Open deals breaking the golden rule: no next step, no date, or a date in the past.

    Applies to every open deal, whatever its stage. Problems, compared with
    the snapshot date ``crm.as_of_date`` (a next step due on that day is not
    overdue yet):

    * ``missing`` - neither ``next_step`` text nor ``next_step_date``;
    * ``undated`` - a ``next_step`` text but no date;
    * ``overdue`` - ``next_step_date`` before the snapshot date.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    owner, team : str or list of str, optional
        Keep only these owners / teams.

    Returns
    -------
    DataFrame
        One row per deal with a problem, most overdue first (ties in snapshot order):
        ``opportunity_id, owner, team, account_id, name, stage, amount,
        probability, next_step, next_step_date, problem`` (see above),
        ``days_overdue`` (whole days past the date; 0 unless overdue).
    """
    return select(_next_steps(open_deal_frame(crm), crm.as_of_date), owner, team).reset_index(drop=True)


def _next_steps(d: pd.DataFrame, as_of: pd.Timestamp, keep_index: bool = False) -> pd.DataFrame:
    """The rows of :func:`next_steps`; ``keep_index``: indexed by their rows in ``d`` (else 0..n-1)."""
    date = d["next_step_date"]
    no_date = date.isna().to_numpy()
    no_text = d["next_step"].isna().to_numpy()
    overdue_days = (as_of.normalize() - date.dt.normalize()).dt.days.to_numpy(dtype="float64")
    overdue = ~no_date & (overdue_days > 0)
    problem = np.select([no_date & no_text, no_date, overdue], ["missing", "undated", "overdue"], default="")
    bad = problem != ""
    out = d.loc[bad, [*DEAL_COLUMNS, "probability", "next_step", "next_step_date"]].copy()
    out["problem"] = pd.array(problem[bad], dtype="string")
    out["days_overdue"] = np.where(overdue[bad], overdue_days[bad], 0).astype("int64")
    out = out.sort_values("days_overdue", ascending=False, kind="stable")  # ties keep the snapshot's order
    return out if keep_index else out.reset_index(drop=True)
