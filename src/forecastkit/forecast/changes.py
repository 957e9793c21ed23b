"""What changed in the period's pipeline between two dates: the waterfall and the deals behind each bar.

The pipeline of the period on a date is the amount of the deals open on that date
(``crm.as_of(date)``) whose expected close date falls in the period. Between ``start``
and ``end`` every deal goes to exactly one bar (two for a deal that entered and left
the pipeline in between), so that::

    end = start + new + pulled_in - won - lost - pushed_out + amount_up - amount_down

* ``new``: created after ``start``; counted at its amount on ``end`` (or at close, when
  it was already won or lost, with the matching ``won`` / ``lost`` entry);
* ``won`` / ``lost``: in the pipeline on ``start`` (or new, or pulled in) and closed by
  ``end``, at their amount on ``start`` (the amount at close is in the deal table);
* ``pushed_out``: open on both dates, in the period on ``start``, dated outside it on ``end``;
* ``pulled_in``: existed on ``start`` outside the period's pipeline (dated elsewhere, or
  closed and reopened), in it on ``end`` - or won inside the period (then with a
  matching ``won``);
* ``amount_up`` / ``amount_down``: in the period on both dates, amount changed;
* ``stage moves`` (``stage_forward`` / ``stage_backward``): deals in the period on both
  dates whose stage changed - listed with their amount for information, they do not
  change the pipeline total (``kind = "info"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError, PeriodError
from forecastkit.periods import Period, parse_period, period_of, to_timestamp

__all__ = ["PipelineChanges", "pipeline_changes", "STEPS"]

#: Waterfall steps in order, with their sign (+1 adds to the pipeline, -1 removes, 0 information).
STEPS = (
    ("start", 0),
    ("new", 1),
    ("pulled_in", 1),
    ("won", -1),
    ("lost", -1),
    ("pushed_out", -1),
    ("amount_up", 1),
    ("amount_down", -1),
    ("end", 0),
    ("stage_forward", 0),
    ("stage_backward", 0),
)
_DEAL_COLUMNS = [
    "opportunity_id",
    "name",
    "owner",
    "change",
    "value",
    "amount_start",
    "amount_end",
    "stage_start",
    "stage_end",
    "close_date_start",
    "close_date_end",
    "status_end",
]


@dataclass(frozen=True)
class PipelineChanges:
    """The waterfall of the period's pipeline between two dates.

    Attributes
    ----------
    period : Period
    start, end : Timestamp
    summary : DataFrame
        ``step, kind`` (total / increase / decrease / info), ``amount`` (signed for
        increases and decreases), ``deals``.
    deals : DataFrame
        One row per (deal, step): ``opportunity_id, name, owner, change, value`` (signed
        contribution), ``amount_start, amount_end, stage_start, stage_end,
        close_date_start, close_date_end, status_end``.
    """

    period: Period
    start: pd.Timestamp
    end: pd.Timestamp
    summary: pd.DataFrame
    deals: pd.DataFrame

    def deals_for(self, step: str) -> pd.DataFrame:
        """The deals behind one bar (e.g. ``"pushed_out"``)."""
        if step not in dict(STEPS):
            raise ParameterError(f"step {step!r} is not one of {', '.join(s for s, _ in STEPS)}")
        return self.deals[self.deals["change"] == step].reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """The waterfall summary."""
        return self.summary.copy()

    def _repr_html_(self) -> str:
        return (
            f"<p><b>Pipeline changes {self.period.label}</b>: {self.start.date()} to {self.end.date()}</p>"
            + self.summary.to_html(index=False, float_format="{:,.0f}".format)
        )


def pipeline_changes(
    crm: CRM, start: object, end: object | None = None, period: str | Period | None = None
) -> PipelineChanges:
    """The "what changed" waterfall of the period's pipeline between ``start`` and ``end``.

    Parameters
    ----------
    crm : CRM
        Snapshot (``end`` must not be after its date).
    start, end : date
        The two dates (end of day); ``end`` defaults to the snapshot date.
    period : str or Period, optional
        The period whose pipeline is followed; default the fiscal quarter holding ``end``.

    Returns
    -------
    PipelineChanges
        ``summary`` (step, kind, amount, deals) and ``deals`` (see the class).
    """
    s = to_timestamp(start, what="start").normalize()
    e = crm.as_of_date if end is None else to_timestamp(end, what="end").normalize()
    if e <= s:
        raise PeriodError(f"end {e.date()} must be after start {s.date()}")
    if e > crm.as_of_date:
        raise PeriodError(f"end {e.date()} is after the snapshot date {crm.as_of_date.date()}; use an earlier end")
    per = period_of(e, "quarter", crm.playbook) if period is None else parse_period(period, crm.playbook)
    lean = _lean(crm)
    a = _state(lean.as_of(s), per)
    b = _state(lean.as_of(e), per)
    m = a.join(b, how="outer", lsuffix="_start", rsuffix="_end")
    exists_a = m["status_start"].notna()
    in_a, in_b = _flag(m["in_start"]), _flag(m["in_end"])
    open_a = (m["status_start"] == "open").fillna(False)
    open_b = (m["status_end"] == "open").fillna(False)
    closed_b = m["status_end"].isin(["won", "lost"]) & ~m["status_start"].isin(["won", "lost"])
    closed_in_per = _flag(m["closed_in_end"])
    amt_a, amt_b = m["amount_start"].fillna(0.0), m["amount_end"].fillna(0.0)
    entries: list[tuple[pd.Index, str, pd.Series]] = []

    def add(mask: pd.Series, step: str, value: pd.Series) -> None:
        idx = m.index[mask.to_numpy(dtype=bool)]
        if len(idx):
            entries.append((idx, step, value.loc[idx]))

    new = ~exists_a & m["status_end"].notna()
    add(new & in_b, "new", amt_b)
    new_closed = new & closed_b & closed_in_per
    add(new_closed, "new", amt_b)
    add(new_closed & (m["status_end"] == "won"), "won", -amt_b)
    add(new_closed & (m["status_end"] == "lost"), "lost", -amt_b)
    # deals in the pipeline on start
    add(in_a & (m["status_end"] == "won"), "won", -amt_a)
    add(in_a & (m["status_end"] == "lost"), "lost", -amt_a)
    add(in_a & open_b & ~in_b, "pushed_out", -amt_a)
    both = in_a & in_b
    add(both & (amt_b > amt_a), "amount_up", amt_b - amt_a)
    add(both & (amt_b < amt_a), "amount_down", amt_b - amt_a)
    # deals outside the pipeline on start that came in
    add(exists_a & ~in_a & in_b, "pulled_in", amt_b)  # dated elsewhere (or reopened) on start
    won_in = exists_a & open_a & ~in_a & (m["status_end"] == "won") & closed_in_per
    add(won_in, "pulled_in", amt_a)
    add(won_in, "won", -amt_a)
    # stage moves (information)
    moved = both & (m["stage_start"] != m["stage_end"]).fillna(False)
    order = {n: i for i, n in enumerate(crm.playbook.stage_names)}
    fwd = m["stage_end"].map(order) > m["stage_start"].map(order)
    add(moved & fwd, "stage_forward", amt_b)
    add(moved & ~fwd, "stage_backward", amt_b)
    deals = _deal_rows(m, entries)
    start_total = float(amt_a[in_a].sum())
    end_total = float(amt_b[in_b].sum())
    summary = _summary(deals, start_total, end_total, int(in_a.sum()), int(in_b.sum()))
    return PipelineChanges(per, s, e, summary, deals)


def _flag(s: pd.Series) -> pd.Series:
    return s.astype("boolean").fillna(False).astype(bool)


#: Opportunity columns the waterfall reads, and those ``CRM.as_of`` reads or sets.
_READ = ("opportunity_id", "name", "owner", "status", "stage", "amount", "close_date", "closed_at", "created_at")
_REWIND = ("forecast_category", "loss_reason", "probability")


def _lean(crm: CRM) -> CRM:
    """The opportunities (only the columns read), their history and field history, ready to rewind.

    ``_lean(crm).as_of(d)`` has the same values in these columns as ``crm.as_of(d)``, without
    rewinding the other tables (activities, orders...).
    """
    return crm._rewind_source((*_READ, *_REWIND))


def _state(snap: CRM, per: Period) -> pd.DataFrame:
    o = snap.opportunities
    st = pd.DataFrame(
        {
            "name": o["name"].to_numpy(),
            "owner": o["owner"].to_numpy(),
            "status": o["status"].to_numpy(dtype=object),
            "stage": o["stage"].to_numpy(dtype=object),
            "amount": o["amount"].to_numpy(float),
            "close_date": o["close_date"].to_numpy(),
            "in": ((o["status"] == "open").fillna(False) & per.contains(o["close_date"]).fillna(False)).to_numpy(
                dtype=bool
            ),
            "closed_in": per.contains(o["closed_at"]).fillna(False).to_numpy(dtype=bool),
        },
        index=pd.Index(o["opportunity_id"].astype(object).to_numpy(), name="opportunity_id"),
    )
    return st


def _deal_rows(m: pd.DataFrame, entries: list[tuple[pd.Index, str, pd.Series]]) -> pd.DataFrame:
    if not entries:
        return pd.DataFrame(columns=_DEAL_COLUMNS)
    parts = []
    for idx, step, value in entries:
        sub = m.loc[idx]
        parts.append(
            pd.DataFrame(
                {
                    "opportunity_id": idx.to_numpy(),
                    "name": sub["name_end"].fillna(sub["name_start"]).to_numpy(),
                    "owner": sub["owner_end"].fillna(sub["owner_start"]).to_numpy(),
                    "change": step,
                    "value": value.to_numpy(float),
                    "amount_start": sub["amount_start"].to_numpy(float),
                    "amount_end": sub["amount_end"].to_numpy(float),
                    "stage_start": sub["stage_start"].to_numpy(),
                    "stage_end": sub["stage_end"].to_numpy(),
                    "close_date_start": sub["close_date_start"].to_numpy(),
                    "close_date_end": sub["close_date_end"].to_numpy(),
                    "status_end": sub["status_end"].to_numpy(),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    rank = {s: i for i, (s, _) in enumerate(STEPS)}
    out = out.assign(_r=out["change"].map(rank), _v=-out["value"].abs())
    return (
        out.sort_values(["_r", "_v", "opportunity_id"], kind="stable").drop(columns=["_r", "_v"]).reset_index(drop=True)
    )


def _summary(deals: pd.DataFrame, start_total: float, end_total: float, n_start: int, n_end: int) -> pd.DataFrame:
    rows = []
    for step, sign in STEPS:
        if step == "start":
            rows.append(("start", "total", start_total, n_start))
        elif step == "end":
            rows.append(("end", "total", end_total, n_end))
        else:
            d = deals[deals["change"] == step]
            kind = "info" if sign == 0 else "increase" if sign > 0 else "decrease"
            rows.append((step, kind, float(d["value"].sum()) if len(d) else 0.0, int(len(d))))
    out = pd.DataFrame(rows, columns=["step", "kind", "amount", "deals"])
    check = start_total + out.loc[out["kind"].isin(["increase", "decrease"]), "amount"].sum()
    if not np.isclose(check, end_total, rtol=1e-9, atol=1e-6):  # pragma: no cover - the identity is by construction
        raise AssertionError(f"waterfall does not add up: {check} != {end_total}")
    return out
