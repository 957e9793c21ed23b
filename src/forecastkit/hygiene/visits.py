"""Visit reports: visits without a report, and reports missing any of the five boxes.

A credible follow-up has a standard report with five boxes (domain section 7):
context; discovery; proofs / objections; risks and plan; dated next step. The
activities table carries them as the flags ``report_context``,
``report_discovery``, ``report_proofs``, ``report_risks``,
``report_next_step`` and/or the ``report`` text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.schema import ACTIVITY_TYPES, REPORT_BOXES
from forecastkit.errors import ParameterError
from forecastkit.hygiene._deals import isin, lookup, select, team_by_owner

__all__ = ["visit_reports", "BOX_KEYWORDS"]

#: Words that show a box in a report's text when the box flags are not filled (case-insensitive).
BOX_KEYWORDS: dict[str, tuple[str, ...]] = {
    "report_context": ("context",),
    "report_discovery": ("discovery", "pain", "criteria", "budget"),
    "report_proofs": ("proof", "objection", "reassur"),
    "report_risks": ("risk", "plan"),
    "report_next_step": ("next step", "next-step"),
}


def visit_reports(
    crm: CRM,
    *,
    types: Sequence[str] = ("visit", "meeting"),
    owner: str | Iterable[str] | None = None,
    team: str | Iterable[str] | None = None,
) -> pd.DataFrame:
    """Done visits without a report, and reports missing boxes.

    Only activities of the given ``types`` that are done (``done_at`` on or
    before the snapshot date) are checked. A visit has **no report** when its
    ``report`` text is empty and none of its box flags is true. A report is
    **incomplete** when a box is missing: from the flags when the row has any
    flag filled; otherwise, from its text, a box counts as present when one of
    its :data:`BOX_KEYWORDS` appears.

    Parameters
    ----------
    crm : CRM
        The snapshot; needs the ``activities`` table.
    types : sequence of str
        Activity types that call for a report.
    owner, team : str or list of str, optional
        Keep only these owners / teams (team of the activity's owner).

    Returns
    -------
    DataFrame
        One row per visit with a problem, most recent first: ``activity_id,
        opportunity_id, account_id, owner, team, type, done_at, problem``
        (``no_report`` / ``incomplete_report``), ``missing_boxes``
        (comma-separated box names without the ``report_`` prefix, e.g.
        ``"proofs, risks"``), ``n_missing``.

    Raises
    ------
    SchemaError
        The snapshot has no ``activities`` table.
    ParameterError
        A type is not an activity type.
    """
    acts = crm.require("activities", "visit-report checks")
    bad = [t for t in types if t not in ACTIVITY_TYPES]
    if bad:
        raise ParameterError(f"visit_reports: unknown activity type(s) {bad}; allowed: {', '.join(ACTIVITY_TYPES)}")
    out = _visit_reports(acts, crm, tuple(types))
    return select(out, owner, team).reset_index(drop=True)


def _visit_reports(
    acts: pd.DataFrame,
    crm: CRM,
    types: tuple[str, ...],
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """The rows of :func:`visit_reports` (no owner/team selection).

    ``keep``: given the positions of the done visits, a boolean mask of those to check
    (the others are left out); each row's result depends on that row alone.
    """
    rows = _done_visits(acts, crm, types)
    if keep is not None:
        rows = rows[keep(rows)]
    cols = ["activity_id", "opportunity_id", "account_id", "owner", "type", "done_at", "report", *REPORT_BOXES]
    where = acts.columns.get_indexer(cols)
    if (where < 0).any():
        raise KeyError(f"{[c for c, w in zip(cols, where, strict=True) if w < 0]} not in the activities table")
    no_report, present = _report_boxes(acts, rows)
    n_missing = (~present).sum(axis=1)
    incomplete = ~no_report & (n_missing > 0)
    bad = no_report | incomplete
    # column by column: only these rows of these columns are copied (iloc copies every column's rows first)
    out = pd.DataFrame({c: acts[c].take(rows[bad]).array for c in cols[:6]})
    out.insert(4, "team", pd.array(lookup(team_by_owner(crm), out["owner"]), dtype="string"))
    out["problem"] = pd.array(np.where(no_report[bad], "no_report", "incomplete_report"), dtype="string")
    labels = np.array([b.removeprefix("report_") for b in REPORT_BOXES], dtype=object)
    miss = ~present[bad]
    code = miss.astype("int64") @ (1 << np.arange(len(REPORT_BOXES)))
    patterns = np.array(
        [", ".join(labels[[(k >> j) & 1 == 1 for j in range(len(labels))]]) for k in range(32)], dtype=object
    )
    out["missing_boxes"] = pd.array(patterns[code], dtype="string")
    out["n_missing"] = n_missing[bad].astype("int64")
    return out.sort_values("done_at", ascending=False, kind="stable").reset_index(drop=True)


def _done_visits(acts: pd.DataFrame, crm: CRM, types: tuple[str, ...]) -> np.ndarray:
    """Positions of the activities of these types done on or before the snapshot date."""
    cutoff = crm.as_of_date + pd.Timedelta(days=1)
    return np.flatnonzero(isin(acts["type"], types) & (acts["done_at"] < cutoff).to_numpy(bool))


def _report_boxes(acts: pd.DataFrame, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(no_report, present)`` of the visits at ``rows``: no report at all; boxes present (rows x boxes)."""
    # the report columns of these rows only (the identifying columns are copied for the rows with a problem)
    present = np.zeros((len(rows), len(REPORT_BOXES)), dtype=bool)
    has_flag = np.zeros(len(rows), dtype=bool)
    for j, b in enumerate(REPORT_BOXES):
        arr = acts[b].array
        if isinstance(arr, pd.arrays.BooleanArray):  # values and mask as they are
            filled = ~arr._mask[rows]
            present[:, j] = arr._data[rows] & filled
        else:
            flag = acts[b].take(rows).to_numpy(dtype="float64", na_value=np.nan)
            filled = ~np.isnan(flag)
            present[:, j] = np.nan_to_num(flag, nan=0.0) > 0
        has_flag |= filled
    text = acts["report"].take(rows)
    has_text = text.notna().to_numpy(bool)
    need_text = has_text & ~has_flag
    if need_text.any():
        low = text[need_text].str.lower()
        for j, b in enumerate(REPORT_BOXES):
            hit = np.zeros(len(low), dtype=bool)
            for kw in BOX_KEYWORDS[b]:
                hit |= low.str.contains(kw, regex=False).to_numpy(bool)
            present[need_text, j] = hit
    no_report = ~has_text & ~present.any(axis=1)
    return no_report, present
