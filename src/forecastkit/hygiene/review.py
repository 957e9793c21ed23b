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
from forecastkit.data.timeline import _spells_and_last
from forecastkit.data.validate import _text_arrow
from forecastkit.errors import ParameterError
from forecastkit.hygiene._deals import (
    _deal_probability,
    _none,
    lookup,
    obj,
    open_deal_frame,
    owners_of_accounts,
    positions,
    select,
    team_by_owner,
)
from forecastkit.hygiene.aging import _aging
from forecastkit.hygiene.cadence import _step_arrays
from forecastkit.hygiene.completeness import _account_problems
from forecastkit.hygiene.fields import _check_fields, _join_bits, _missing_long, _next_steps, _per_deal
from forecastkit.hygiene.visits import _done_visits, _report_boxes
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
    spells, last = _spells_and_last(crm)
    deals = open_deal_frame(crm, spells, last)
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
    out = _Actions(d)
    # each check's rows keep their position in ``d`` as index: the deal columns are read from ``d`` once, at the end
    if "aging" in wanted:
        a = _aging(d, pb, keep_index=True)
        detail = (
            a["days_in_stage"].round().astype("int64").astype(str)
            + " days in "
            + a["stage"].astype(str)
            + " (cap "
            + a["age_cap_days"].astype(str)
            + ")"
        )
        out.deals(a.index, "stale_" + a["action"].fillna("follow_up").astype(str), detail)
    if "missing_fields" in wanted:
        _check_fields(crm)
        fields = [f for f in pb.mandatory_fields if f not in _NEXT_STEP_FIELDS]
        long = _missing_long(d, pb, fields, keep_index=True)
        m = _per_deal(long)  # one row per deal, in the order of ``long``
        pos = long.index[~long["opportunity_id"].duplicated().to_numpy()]
        out.deals(pos, "missing_fields", "missing: " + m["missing_fields"].astype(str))
    if "next_steps" in wanted:
        n = _next_steps(d, crm.as_of_date, keep_index=True)
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
        out.deals(n.index, problem, detail)
    if "wip" in wanted:
        by_owner, close = _wip(d, pb, keep_index=True)
        active = close["owner"].map(by_owner.set_index("owner")["active_deals"])
        detail = (
            active.astype("int64").astype(str)
            + " active deals for a limit of "
            + str(pb.wip_limit)
            + "; close-out rank "
            + close["rank"].astype(str)
        )
        out.deals(close.index, "over_wip_limit", detail)
    if "cadence" in wanted and crm.has("activities"):
        pos, detail = _cadence_rows(crm, d, spells)
        out.deals(pos, "cadence_missed", detail)
    if "visit_reports" in wanted and crm.has("activities"):
        pos, detail, acc = _visit_rows(crm, d, owner, team)
        out.deals(pos, "visit_report", detail)
        out.accounts(acc, "visit_report")
    if "contact_data" in wanted and crm.has("contacts"):
        out.accounts(_contact_rows(crm, d, owner, team), "contact_data")
    return out.frame()


_NUMBERS = ("amount", "probability", "value_at_risk")
_STRINGS = ("owner", "team", "opportunity_id", "account_id", "name", "stage")


class _Actions:
    """The action list being built, part by part (one part per check), in the order of the checks.

    A deal row is its position in the open-deal frame ``d``; an account row is a row of an
    account part (``owner, team, account_id, name, value_at_risk``). The deal columns are
    taken from ``d`` once, for every row, when the list is assembled (:meth:`frame`).
    """

    def __init__(self, d: pd.DataFrame) -> None:
        self.d = d
        self.src: list[np.ndarray] = []  # per part: row of d, or len(d) + row of the account parts
        self.problem: list[np.ndarray] = []  # per part: code of each row's problem in self.labels
        self.detail: list[np.ndarray] = []
        self.acc: list[pd.DataFrame] = []
        self.n_acc = 0
        self.labels = list(PROBLEMS)

    def _codes(self, problem: object, n: int) -> np.ndarray:
        names = np.asarray(problem, dtype=object)
        if names.ndim == 0:
            names = np.full(n, problem, dtype=object)
        codes, uniq = pd.factorize(names)
        lut = np.array([self._label(u) for u in uniq] + [-1], dtype="int64")
        return lut[codes]

    def _label(self, name: object) -> int:
        if name not in self.labels:  # (every problem of the checks is a key of PROBLEMS)
            self.labels.append(name)
        return self.labels.index(name)

    def deals(self, pos: object, problem: object, detail: object) -> None:
        """Rows for the deals at positions ``pos`` of ``d``, in that order."""
        pos = np.asarray(pos, dtype="int64")
        if len(pos):
            self.src.append(pos)
            self.problem.append(self._codes(problem, len(pos)))
            self.detail.append(np.asarray(detail, dtype=object))

    def accounts(self, acc: pd.DataFrame, problem: str) -> None:
        """Rows for accounts: ``acc`` has ``owner, team, account_id, name, value_at_risk, detail``."""
        if len(acc):
            self.src.append(len(self.d) + self.n_acc + np.arange(len(acc)))
            self.problem.append(self._codes(problem, len(acc)))
            self.detail.append(obj(acc["detail"]))
            self.acc.append(acc)
            self.n_acc += len(acc)

    def frame(self) -> pd.DataFrame:
        """The action list, highest value at risk first (a deal's rows together, red before orange)."""
        if not self.src:
            return _empty()
        d = self.d
        src = np.concatenate(self.src)
        code = np.concatenate(self.problem)
        acc = (
            pd.concat(
                [a[["owner", "team", "account_id", "name", "value_at_risk"]] for a in self.acc], ignore_index=True
            )
            if self.acc
            else None
        )
        none = np.full(self.n_acc, None, dtype=object)
        nan = np.full(self.n_acc, np.nan)
        known = len(PROBLEMS)
        prob = np.where(code < known, code, -1)  # position in PROBLEMS
        red = np.array([v[0] == "red" for v in PROBLEMS.values()] + [False] * (len(self.labels) - known))
        sev = (~red[code]).astype("int64")
        num = {
            "amount": np.concatenate([d["amount"].to_numpy("float64"), nan]),
            "probability": np.concatenate([d["probability"].to_numpy("float64"), nan]),
            "value_at_risk": np.concatenate(
                [
                    d["value_at_risk"].to_numpy("float64"),
                    acc["value_at_risk"].to_numpy("float64") if acc is not None else nan,
                ]
            ),
        }
        var = num["value_at_risk"][src]
        # one group per deal (per account for an account row), numbered in order of appearance
        # (factorize reads pd.NA as missing: no conversion to None first)
        opp_code, opp_ids = pd.factorize(_raw(d["opportunity_id"]))
        key = np.concatenate([opp_code, np.full(self.n_acc, -1)])
        by_acc = np.flatnonzero(key < 0)  # account rows, and deals without an id: keyed by their account
        if len(by_acc):
            accounts = np.concatenate([_raw(d["account_id"]), _raw(acc["account_id"]) if acc is not None else none])
            acc_code, acc_ids = pd.factorize(accounts[by_acc])
            key[by_acc] = len(opp_ids) + np.where(acc_code >= 0, acc_code, len(acc_ids))
        grp, _ = pd.factorize(key[src])
        # highest value first (NaN last); a deal's rows together, red before orange, then the problem order
        order = np.lexsort((prob, sev, grp, np.where(np.isnan(var), np.inf, -var)))
        rows, code = src[order], code[order]
        col: dict[str, object] = {}
        for c in COLUMNS:
            if c in _NUMBERS:
                col[c] = num[c][rows]
            elif c in _STRINGS:
                extra = none if acc is None or c in ("opportunity_id", "stage") else obj(acc[c])
                col[c] = _string_column(d[c], extra).take(rows)
        col["problem"] = _strings(self.labels).take(code)
        col["severity"] = _strings([PROBLEMS[p][0] if p in PROBLEMS else None for p in self.labels]).take(code)
        col["action"] = _strings([PROBLEMS[p][1] if p in PROBLEMS else None for p in self.labels]).take(code)
        col["detail"] = pd.array(np.concatenate(self.detail)[order], dtype="string")
        return pd.DataFrame({c: col[c] for c in COLUMNS})


def _raw(s: pd.Series) -> np.ndarray:
    """The values of a column as an object array (a ``string`` column's own array: no copy, no scan)."""
    arr = s.array
    return arr._ndarray if isinstance(arr, pd.arrays.StringArray) else s.to_numpy(dtype=object)


def _strings(values: Iterable[object]) -> pd.api.extensions.ExtensionArray:
    return pd.array(np.asarray(list(values), dtype=object), dtype="string")


_STRING = pd.array([], dtype="string").dtype


def _string_column(deal_values: pd.Series, account_values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """A column of ``d`` followed by the account rows' values, as a ``string`` array (taken from, not scanned)."""
    arr = deal_values.array
    if not (isinstance(arr, pd.arrays.StringArray) and arr.dtype == _STRING):
        arr = pd.array(deal_values.to_numpy(dtype=object), dtype="string")
    if not len(account_values):
        return arr
    return type(arr)._concat_same_type([arr, pd.array(account_values, dtype="string")])


def _empty() -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})
    for c in ("amount", "probability", "value_at_risk"):
        out[c] = pd.Series(dtype="float64")
    return out


def _account_value(d: pd.DataFrame) -> pd.Series:
    return d.groupby("account_id", sort=False)["value_at_risk"].sum(min_count=1)


def _cadence_rows(crm: CRM, d: pd.DataFrame, spells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``d`` of the open first-stage deals with missed cadence steps, and the missed steps in words."""
    first_stage = d[(d["stage_order"] == 0).to_numpy()]
    r = _step_arrays(
        crm,
        spells,
        leads=obj(first_stage["opportunity_id"]),
        leads_created=first_stage["created_at"].to_numpy("datetime64[ns]"),
    )
    missed = r["status"] == "missed"
    if not missed.any():
        return np.zeros(0, dtype="int64"), np.zeros(0, dtype=object)
    names = r["names"]
    li = r["li"][missed]
    if r["lead_at"] is None:
        deal, ids = pd.factorize(r["lead_opp"][li], sort=True)
        pos = first_stage.index[pd.Index(first_stage["opportunity_id"].astype(object)).get_indexer(ids)]
    else:  # the leads' positions are known: group by lead, deals in order of their ids
        lead, first = np.unique(li, return_inverse=True)
        rank = np.argsort(np.argsort(r["lead_opp"][lead], kind="stable"), kind="stable")
        deal, pos = rank[first], np.empty(len(lead), dtype="int64")
        pos[rank] = first_stage.index.to_numpy()[r["lead_at"][lead]]
    bits = np.zeros(len(pos), dtype="int64")
    np.bitwise_or.at(bits, deal, 1 << r["si"][missed])
    detail = _join_bits(bits, names, {n: k for k, n in enumerate(names)})
    return np.asarray(pos), "missed: " + detail


def _visit_rows(crm: CRM, d: pd.DataFrame, owner: object, team: object) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Visits on open deals, and visits tied to no deal in the current fiscal quarter, lacking a report or boxes.

    Returns the positions in ``d`` of the deals with such visits and their detail (in order of
    each deal's most recent such visit), and the account rows (visits tied to no deal).
    Visits tied to neither a deal nor an account share one account row with an empty
    account id, under the owner of the first of them.
    """
    acts = crm.activities
    rows = _done_visits(acts, crm, ("visit", "meeting"))
    no_report, present = _report_boxes(acts, rows)
    bad = no_report | ~present.all(axis=1)  # no report, or a box missing
    rows, no_report = rows[bad], no_report[bad]
    # deal of each visit (position in d), or none
    opp = np.asarray(acts["opportunity_id"].array, dtype=object)[rows]
    text = _text_arrow(opp)  # converted once: its null mask and its lookup
    pos = positions(text, obj(d["opportunity_id"])) if text is not None else None
    if pos is None:
        pos = pd.Index(obj(d["opportunity_id"])).get_indexer(_none(opp))
        acc_only = pd.isna(opp)
    else:
        acc_only = text.is_null().to_numpy(zero_copy_only=False)
    pos[acc_only] = -1
    if acc_only.any():
        q = period_of(crm.as_of_date, "quarter", crm.playbook)
        acc_only[acc_only] = q.contains(acts["done_at"].take(rows[acc_only])).to_numpy(bool)
    keep = (pos >= 0) | acc_only
    rows, pos, no_report, acc_only = rows[keep], pos[keep], no_report[keep], acc_only[keep]
    # most recent visit first (ties in table order)
    order = np.argsort(-acts["done_at"].to_numpy("datetime64[ns]")[rows].view("int64"), kind="stable")
    rows, pos, no_report, acc_only = rows[order], pos[order], no_report[order], acc_only[order]
    # one group per deal, or per account for the visits tied to no deal, in order of appearance
    key = pos.copy()
    accounts = obj(acts["account_id"].take(rows[acc_only]))
    acc_code, _ = pd.factorize(accounts)
    key[acc_only] = len(d) + np.where(acc_code >= 0, acc_code, acc_code.max(initial=-1) + 1)
    grp, keys = pd.factorize(key)
    n_no = np.bincount(grp, weights=no_report, minlength=len(keys)).astype("int64")
    n_inc = np.bincount(grp, weights=~no_report, minlength=len(keys)).astype("int64")
    detail = _visit_detail(n_no, n_inc)
    is_deal = keys < len(d)
    acc = pd.DataFrame(columns=["account_id", "owner", "detail"])
    if not is_deal.all():
        g = grp[acc_only]
        first = pd.DataFrame({"g": g, "owner": obj(acts["owner"].take(rows[acc_only])), "account_id": accounts})
        first = first.groupby("g", sort=False).first()  # first non-empty value of each group
        acc = pd.DataFrame(
            {
                "account_id": first["account_id"].to_numpy(dtype=object),
                "owner": first["owner"].to_numpy(dtype=object),
                "detail": detail[first.index.to_numpy()],
            }
        )
        acc = _account_rows(crm, d, acc, owner, team)
    return keys[is_deal], detail[is_deal], acc


def _visit_detail(n_no: np.ndarray, n_inc: np.ndarray) -> np.ndarray:
    """``"2 visit(s) without report, 1 report(s) missing boxes"``, built once per distinct pair of counts."""
    code, first = pd.factorize(n_no * (int(n_inc.max(initial=0)) + 1) + n_inc)
    at = np.unique(code, return_index=True)[1]
    words = []
    for no, inc in zip(n_no[at].tolist(), n_inc[at].tolist(), strict=True):
        bits = ([f"{no} visit(s) without report"] if no > 0 else []) + (
            [f"{inc} report(s) missing boxes"] if inc > 0 else []
        )
        words.append(", ".join(bits))
    return np.asarray(words, dtype=object)[code] if len(code) else np.zeros(0, dtype=object)


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
    return _account_rows(crm, d, acc, owner, team, fill_owner=False)


def _account_rows(
    crm: CRM,
    d: pd.DataFrame,
    acc: pd.DataFrame,
    owner: object,
    team: object,
    fill_owner: bool = True,
) -> pd.DataFrame:
    """Account rows of the action list: ``owner, team, account_id, name, value_at_risk, detail`` (owner/team selected)."""
    ids = obj(acc["account_id"])
    names = np.full(len(ids), None, dtype=object)
    if crm.has("accounts"):  # the name on the account's first row
        a_ids = obj(crm.accounts["account_id"])
        pos = positions(ids, a_ids)  # (pyarrow: the first row of a duplicated id)
        if pos is not None:
            names = np.where(pos >= 0, obj(crm.accounts["name"])[pos] if len(a_ids) else None, None)
        else:
            first = ~pd.Index(a_ids).duplicated(keep="first")
            pos = pd.Index(a_ids[first]).get_indexer(ids)
            names = np.where(pos >= 0, obj(crm.accounts["name"])[first][pos] if first.any() else None, None)
    value = _account_value(d)
    pos = positions(ids, obj(value.index))
    if pos is None:
        pos = pd.Index(obj(value.index)).get_indexer(ids)
    owners = obj(acc["owner"])
    if fill_owner:
        owners = np.where(pd.isna(owners), owners_of_accounts(crm, ids), owners)
    out = pd.DataFrame(
        {
            "owner": owners,
            "account_id": ids,
            "team": lookup(team_by_owner(crm), owners),
            "name": names,
            "value_at_risk": np.where(pos >= 0, value.to_numpy(dtype="float64")[pos] if len(value) else np.nan, np.nan),
            "detail": obj(acc["detail"]),
        }
    )
    return select(out, owner, team)
