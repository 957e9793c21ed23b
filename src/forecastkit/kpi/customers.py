"""Inactive and lost customers, learned from each customer's own ordering rhythm.

The rule (second seed, domain section 9): a customer's **usual ordering cycle** is
the median number of days between its consecutive order days. It is **inactive**
once it has gone one cycle without ordering (a monthly buyer with no order last
month) and **lost** after two. Ordering dates vary around the rhythm, so an order
counts as missed only ``tolerance`` x cycle after it was due (default 0.5: a monthly
buyer that ordered on 5 October is inactive from 20 November - "no order last month" -
and lost from 20 December, 2.5 cycles after its last order).

Beside the rule, :class:`~forecastkit.kpi.economics.BetaGeometricNBD` gives each
customer the model-based probability of still being active (``p_alive``).

Customers with a single order day have no rhythm yet: their status is ``one_off``.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import _distinct_sorted
from forecastkit.errors import FallbackWarning, ForecastkitError, ParameterError
from forecastkit.kpi._common import By, _by_list, _finish, _period_list, _resolve_period, _safe_div, _with_groups
from forecastkit.periods import Freq, Period

__all__ = ["customer_activity", "customer_churn", "STATUSES"]

#: Customer statuses, from best to worst.
STATUSES = ("active", "inactive", "lost", "one_off")
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class _OrderDays:
    """Each account's distinct order days as integer arrays (built once per snapshot).

    Days are day numbers (days since 1970-01-01); account codes index ``accounts``.
    """

    accounts: pd.Index
    code: np.ndarray  # account code of each distinct (account, day), sorted by account then day
    day: np.ndarray
    first: np.ndarray  # per account
    last: np.ndarray
    n_days: np.ndarray
    cycle: np.ndarray  # median days between consecutive order days (NaN with one order day)
    owner: np.ndarray  # account owner, else the owner of its latest order


_CACHE: weakref.WeakKeyDictionary[CRM, _OrderDays] = weakref.WeakKeyDictionary()


def _day_number(ts: pd.Timestamp) -> int:
    return int(pd.Timestamp(ts).to_datetime64().astype("datetime64[D]").astype(np.int64))


def _to_ts(days: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(days, dtype=np.int64).astype("datetime64[D]").astype("datetime64[ns]"))


def _order_days(crm: CRM) -> _OrderDays:
    cached = _CACHE.get(crm)
    if cached is not None:
        return cached
    orders = crm.require("orders", "customer activity")
    codes, accounts = pd.factorize(orders["account_id"])
    ok = (codes >= 0) & orders["ordered_at"].notna().to_numpy()
    ts = orders["ordered_at"].to_numpy(dtype="datetime64[ns]")[ok]
    codes = codes[ok].astype(np.int64)
    day = ts.astype("datetime64[D]").astype(np.int64)
    key = _distinct_sorted(codes * (1 << 22) + (day + (1 << 21)))  # = np.unique, by one sort
    code = key >> 22
    d = (key & ((1 << 22) - 1)) - (1 << 21)
    n_acc = len(accounts)
    start = np.r_[True, code[1:] != code[:-1]] if len(code) else np.zeros(0, bool)
    gap = np.where(start, np.nan, np.diff(d, prepend=0).astype(float))
    cycle = pd.Series(gap).groupby(code).median().reindex(range(n_acc)).to_numpy(dtype=float)
    end = np.r_[start[1:], True] if len(code) else np.zeros(0, bool)
    first = np.full(n_acc, _NEVER)
    first[code[start]] = d[start]  # pairs are sorted by account then day
    last = np.full(n_acc, -_NEVER)
    last[code[end]] = d[end]
    order = np.lexsort((ts.astype(np.int64), codes))
    oc = codes[order]
    is_last = np.r_[oc[1:] != oc[:-1], True] if len(oc) else np.zeros(0, bool)
    owner = np.full(n_acc, None, dtype=object)
    owner[oc[is_last]] = orders["owner"].to_numpy(dtype=object)[ok][order][is_last]
    if crm.has("accounts") and len(crm.accounts) and "owner" in crm.accounts:
        acc = crm.accounts.dropna(subset=["owner"]).drop_duplicates("account_id").set_index("account_id")["owner"]
        own = acc.reindex(accounts).to_numpy(dtype=object)
        owner = np.where(pd.isna(own), owner, own)
    out = _OrderDays(pd.Index(accounts), code, d, first, last, np.bincount(code, minlength=n_acc), cycle, owner)
    _CACHE[crm] = out
    return out


def customer_activity(crm: CRM, *, tolerance: float = 0.5, p_alive: bool = True) -> pd.DataFrame:
    """Each ordering customer's usual cycle and status (active / inactive / lost / one_off) at the snapshot.

    Parameters
    ----------
    crm : CRM
        Needs ``orders``.
    tolerance : float
        Share of the cycle an order may be late before it counts as missed: inactive
        after ``(1 + tolerance)`` cycles without an order, lost after ``(2 + tolerance)``
        (0 = the strict rule: inactive as soon as one cycle has passed).
    p_alive : bool
        Add the BG/NBD probability of being active (fitted on every account's
        repeat orders, in weeks).

    Returns
    -------
    DataFrame
        ``account_id, owner, orders`` (distinct order days), ``first_order, last_order,
        usual_cycle_days`` (median days between order days; NaN with one order day),
        ``days_since_last_order, cycles_since_last_order, status`` (see :data:`STATUSES`),
        ``inactive_since`` (the day it became inactive, while inactive or lost),
        ``lost_at`` (the day it became lost, while lost), ``p_alive`` (BG/NBD; NaN when
        not asked or not estimable).
    """
    if tolerance < 0:
        raise ParameterError(f"tolerance={tolerance!r} must be >= 0 (0.5 lets an order be half a cycle late)")
    od = _order_days(crm)
    snap = _day_number(crm.as_of_date)
    cyc = od.cycle
    since = (snap - od.last).astype(float)
    thr1, thr2 = cyc * (1 + tolerance), cyc * (2 + tolerance)
    with np.errstate(invalid="ignore"):
        status = np.select([np.isnan(cyc), since > thr2, since > thr1], ["one_off", "lost", "inactive"], "active")
    inactive_since = _to_ts(od.last + np.ceil(np.nan_to_num(thr1)).astype(np.int64))
    lost_at = _to_ts(od.last + np.ceil(np.nan_to_num(thr2)).astype(np.int64))
    out = pd.DataFrame(
        {
            "account_id": pd.array(od.accounts.to_numpy(dtype=object), dtype="string"),
            "owner": pd.array(od.owner, dtype="string"),
            "orders": od.n_days,
            "first_order": _to_ts(od.first),
            "last_order": _to_ts(od.last),
            "usual_cycle_days": cyc,
            "days_since_last_order": since,
            "cycles_since_last_order": _safe_div(since, cyc),
            "status": pd.array(status, dtype="string"),
            "inactive_since": inactive_since.where(np.isin(status, ["inactive", "lost"])),
            "lost_at": lost_at.where(status == "lost"),
            "p_alive": np.nan,
        }
    )
    if p_alive:
        out["p_alive"] = _p_alive(crm, out["account_id"])
    return out


def _p_alive(crm: CRM, accounts: pd.Series) -> np.ndarray:
    from forecastkit.kpi.economics import fit_bgnbd

    od = _order_days(crm)
    snap = _day_number(crm.as_of_date) + 1  # to the end of the snapshot day, as rfm_summary
    x = (od.n_days - 1).astype(float)
    t_x = (od.last - od.first) / 7.0
    T = (snap - od.first) / 7.0
    try:
        m = fit_bgnbd(x, t_x, T)
    except ForecastkitError as exc:
        warnings.warn(
            f"customer_activity: BG/NBD could not be fitted ({exc}); p_alive left empty", FallbackWarning, stacklevel=3
        )
        return np.full(len(accounts), np.nan)
    return m.probability_alive(x, t_x, T)


def _lost_events(od: _OrderDays, tolerance: float, snap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every time a customer became lost: (account code, day lost, day it ordered again or never)."""
    c = od.cycle[od.code]
    same_next = np.r_[od.code[1:] == od.code[:-1], False]
    nxt = np.r_[od.day[1:], 0]
    with np.errstate(invalid="ignore"):
        lost_after = np.ceil(c * (2 + tolerance))
        lost_at = od.day + np.nan_to_num(lost_after).astype(np.int64)
        became = ~np.isnan(c) & np.where(same_next, (nxt - od.day) > lost_after, True) & (lost_at <= snap)
    back = np.where(same_next, nxt, _NEVER)
    return od.code[became], lost_at[became], back[became]


def customer_churn(
    crm: CRM,
    period: str | Period | Freq | None = "month",
    by: By | Sequence[By] | None = None,
    *,
    tolerance: float = 0.5,
    since: object = None,
) -> pd.DataFrame:
    """Churn rate per period: customers that became lost in the period / customers active at its start.

    A customer is counted at the start of a period when it had ordered before the
    period and was not lost then (a lost customer that orders again is active again
    from that order); only repeat buyers (two order days or more) count, since a
    one-off buyer has no ordering rhythm to miss. The usual cycle of each customer is
    learned from its whole order history up to the snapshot (a descriptive figure,
    not a point-in-time one: use ``crm.as_of(d)`` for what was knowable on ``d``).

    ``since`` (a date) skips the periods that end before it (with a frequency).

    Returns
    -------
    DataFrame
        ``<by>..., period, customers_start, new_customers, became_lost, churn_rate``.
    """
    b = _by_list(by)
    bad = [c for c in b if c not in ("owner", "team", "business_unit")]
    if bad:
        raise ParameterError(f"customer_churn: by={by!r} - customers can be grouped by owner, team or business_unit")
    spec = _resolve_period(period, crm.playbook)
    if spec.mode == "all":
        raise ParameterError("customer_churn needs a period or a frequency (e.g. 'month'), not None")
    cols = [*b, "period", "customers_start", "new_customers", "became_lost", "churn_rate"]
    od = _order_days(crm)
    if not len(od.accounts):
        return pd.DataFrame(columns=cols)
    snap = _day_number(crm.as_of_date)
    ev_code, ev_lost, ev_back = _lost_events(od, tolerance, snap)
    last_ts = crm.as_of_date
    periods = _period_list(spec, _to_ts(od.first.min(keepdims=True))[0], last_ts, crm.playbook) or []
    periods = [p for p in periods if p.start <= last_ts and (since is None or p.end > pd.Timestamp(since))]
    repeat = od.n_days > 1  # one-off buyers have no rhythm and cannot churn by the rule
    n_acc = len(od.accounts)
    if b:
        acc = pd.DataFrame({"account_id": od.accounts.to_numpy(dtype=object), "owner": od.owner})
        acc = _with_groups(acc, crm, b, table="orders")
        keys = acc[b].astype(object).fillna("(none)")
        gcode, groups = pd.MultiIndex.from_frame(keys).factorize()
        frame = pd.DataFrame(list(groups), columns=b)
    else:
        gcode, frame = np.zeros(n_acc, dtype=np.int64), pd.DataFrame(index=[0])
    ng = len(frame)
    rows = []
    for p in periods:
        s0, s1 = _day_number(p.start), min(_day_number(p.end), snap + 1)
        lost_then = np.bincount(ev_code[(ev_lost < s0) & (ev_back >= s0)], minlength=n_acc) > 0
        base = repeat & (od.first < s0) & ~lost_then
        new = repeat & (od.first >= s0) & (od.first < s1)
        became = (np.bincount(ev_code[(ev_lost >= s0) & (ev_lost < s1)], minlength=n_acc) > 0) & base
        f = frame.copy()
        f["customers_start"] = np.bincount(gcode[base], minlength=ng)
        f["new_customers"] = np.bincount(gcode[new], minlength=ng)
        f["became_lost"] = np.bincount(gcode[became], minlength=ng)
        f["period"], f["_pcode"] = p.label, p.start.value
        rows.append(f[(f["customers_start"] + f["new_customers"] + f["became_lost"]) > 0] if b else f)
    if not rows:
        return pd.DataFrame(columns=cols)
    wide = pd.concat(rows, ignore_index=True).set_index([*b, "_pcode", "period"])
    wide["churn_rate"] = _safe_div(wide["became_lost"], wide["customers_start"])
    return _finish(wide, b, ["customers_start", "new_customers", "became_lost", "churn_rate"])
