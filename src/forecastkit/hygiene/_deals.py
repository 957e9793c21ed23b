"""Shared internals of the hygiene checks: the open-deal frame and the deal probability.

Every check reads the same per-deal frame (stage, age in stage, owner, amount,
next step, mandatory fields), built once by :func:`open_deal_frame` so that the
full review computes the stage spells only once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.data.timeline import _current_stage_age, stage_spells
from forecastkit.data.validate import text_positions as positions
from forecastkit.errors import ParameterError

__all__: list[str] = []

_BASE = (
    "opportunity_id",
    "account_id",
    "name",
    "owner",
    "team",
    "stage",
    "amount",
    "created_at",
    "close_date",
    "next_step",
    "next_step_date",
)

#: Columns every check carries to identify a deal in its result.
DEAL_COLUMNS = ["opportunity_id", "owner", "team", "account_id", "name", "stage", "amount"]


def _deal_probability(crm: CRM, open_deals: pd.DataFrame | None = None) -> pd.Series:
    """Win probability of each open deal, used to rank actions by value at risk.

    For now this is the playbook's CRM probability of the deal's current stage
    (``playbook.crm_probability``); deals with an unknown stage get NaN. This is
    the single switch point for recalibrated probabilities: when the
    ``probability`` module lands, return its calibrated per-deal probabilities
    here and every hygiene ranking (review order, WIP close-out order, Kanban
    order) follows.

    Returns
    -------
    Series
        Float probabilities indexed like ``crm.open_deals`` (given as ``open_deals`` when already selected).
    """
    pb = crm.playbook
    mapping = {s.name: float(s.crm_probability) for s in pb.stages}
    o = crm.open_deals if open_deals is None else open_deals
    return o["stage"].map(mapping).astype("float64")


def stage_order(stages: pd.Series, crm: CRM) -> np.ndarray:
    """Position of each open stage in the playbook (NaN for unknown or closed stages)."""
    mapping = {name: float(i) for i, name in enumerate(crm.playbook.stage_names)}
    return stages.map(mapping).astype("float64").to_numpy()


def open_deal_frame(crm: CRM, spells: pd.DataFrame | None = None, last: np.ndarray | None = None) -> pd.DataFrame:
    """One row per open deal with everything the checks need.

    ``spells``: :func:`stage_spells` when already computed; ``last``: the position in ``spells`` of
    each opportunity's last spell (-1 without), when known (see ``timeline._spells_and_last``).

    Returns
    -------
    DataFrame
        ``opportunity_id, account_id, name, owner, team, stage, amount,
        created_at, close_date, next_step, next_step_date``, the playbook's
        mandatory-field columns, ``stage_order`` (NaN when the stage is
        unknown), ``entered_stage_at, days_in_stage, deal_age_days`` (to the
        snapshot date) and ``probability`` (see :func:`_deal_probability`).
    """
    o = crm.open_deals
    extra = [f for f in crm.playbook.mandatory_fields if f in o.columns and f not in _BASE]
    d = o[list(_BASE) + extra].reset_index(drop=True)
    rows = _rows_of(o, crm.opportunities) if last is not None and spells is not None else None
    age = _current_stage_age(
        o, stage_spells(crm) if spells is None else spells, crm.as_of_date, None if rows is None else last[rows]
    )
    d["stage_order"] = stage_order(d["stage"], crm)
    d["entered_stage_at"] = age["entered_stage_at"].to_numpy()
    d["days_in_stage"] = age["days_in_stage"].to_numpy()
    d["deal_age_days"] = age["deal_age_days"].to_numpy()
    d["probability"] = _deal_probability(crm, o).to_numpy()
    return d


def _rows_of(sub: pd.DataFrame, table: pd.DataFrame) -> np.ndarray | None:
    """Row positions in ``table`` of the rows of ``sub`` (selected from it), when its index is 0..n-1; else None."""
    ix = table.index
    if isinstance(ix, pd.RangeIndex) and ix.start == 0 and ix.step == 1:
        return sub.index.to_numpy()
    return None


_CACHE: weakref.WeakKeyDictionary[CRM, dict[str, pd.Series]] = weakref.WeakKeyDictionary()


def _cached(crm: CRM, name: str, build: Callable[[CRM], pd.Series]) -> pd.Series:
    """Per-snapshot memo of a derived lookup (snapshot tables are read-only, so it never goes stale)."""
    memo = _CACHE.setdefault(crm, {})
    if name not in memo:
        memo[name] = build(crm)
    return memo[name]


def _first_by_key(keys: np.ndarray, values: np.ndarray, keep: str = "first") -> pd.Series:
    ok = ~(pd.isna(keys) | pd.isna(values))
    s = pd.Series(values[ok], index=pd.Index(keys[ok], dtype=object), dtype=object)
    return s[~s.index.duplicated(keep=keep)]


def team_by_owner(crm: CRM) -> pd.Series:
    """Team of each owner: the ``reps`` table when given, else the team on their latest deal."""

    def build(c: CRM) -> pd.Series:
        o = c.opportunities
        s = _first_by_key(obj(o["owner"]), obj(o["team"]), keep="last")
        if c.has("reps"):
            r = _first_by_key(obj(c.reps["owner"]), obj(c.reps["team"]))
            s = pd.concat([r, s[~isin(s.index, r.index)]])
        return s

    return _cached(crm, "team_by_owner", build)


def account_owner(crm: CRM) -> pd.Series:
    """Owner of each account: ``accounts.owner``, else the owner of the account's most recently created deal."""

    def build(c: CRM) -> pd.Series:
        o = c.opportunities
        a = c.accounts
        acc = _first_by_key(obj(a["account_id"]), obj(a["owner"]))
        # deals of the accounts without an owner in the accounts table (usually none)
        keys = obj(o["account_id"])
        pos = positions(keys, obj(acc.index))
        if pos is None:
            pos = pd.Index(obj(acc.index)).get_indexer(keys)
        rows = np.flatnonzero(pos < 0)
        if len(rows) == 0:
            return acc
        rows = rows[np.argsort(o["created_at"].to_numpy("datetime64[ns]")[rows], kind="stable")]
        deals = _first_by_key(keys[rows], obj(o["owner"])[rows], "last")
        return pd.concat([acc, deals]) if len(deals) else acc

    return _cached(crm, "account_owner", build)


def owners_of_accounts(crm: CRM, ids: np.ndarray) -> np.ndarray:
    """``lookup(account_owner(crm), ids)``: the owner of each account (None where unknown or missing).

    The deals are read only for the accounts without an owner in the accounts table (usually none).
    """

    def build(c: CRM) -> pd.Series:
        return _first_by_key(obj(c.accounts["account_id"]), obj(c.accounts["owner"]))

    ids = _none(np.asarray(ids, dtype=object))
    out = lookup(_cached(crm, "accounts_owner", build), ids)
    miss = pd.isna(out) & ~pd.isna(ids)
    if miss.any():
        out[miss] = lookup(account_owner(crm), ids[miss])
    return out


def obj(s: pd.Series | pd.Index) -> np.ndarray:
    """The values of a column as an object array, missing values as ``None``.

    ``None`` rather than ``pd.NA``: pandas' hash lookups (``Index.get_indexer``,
    ``Series.map``) are about ten times slower on object arrays holding ``pd.NA``.
    The array is a copy only when the column has missing values; treat it as read-only.
    """
    arr = s.array
    return _none(np.asarray(arr, dtype=object) if isinstance(arr, pd.arrays.StringArray) else s.to_numpy(dtype=object))


def _none(arr: np.ndarray) -> np.ndarray:
    """``arr`` with its missing values (``pd.NA``, NaN) replaced by ``None`` (a copy only when there are some)."""
    miss = pd.isna(arr)
    if miss.any():
        arr = arr.copy()
        arr[miss] = None
    return arr


def lookup(mapping: pd.Series, keys: pd.Series | np.ndarray) -> np.ndarray:
    """``mapping[key]`` for each key as an object array (``None`` where the key is missing or unknown).

    ``mapping`` must have a unique index. Same result as ``keys.map(mapping)``, without
    hashing ``pd.NA`` (slow in pandas' object hash tables).
    """
    pos = positions(keys, obj(mapping.index))
    if pos is None:
        k = obj(keys) if isinstance(keys, pd.Series | pd.Index) else _none(np.asarray(keys, dtype=object))
        pos = pd.Index(obj(mapping.index)).get_indexer(k)
    values = obj(mapping)
    return np.where(pos >= 0, values[pos] if len(values) else None, None)


def isin(values: pd.Series | pd.Index | np.ndarray, wanted: Iterable[object]) -> np.ndarray:
    """Boolean mask of ``values`` found in ``wanted`` (missing values never match).

    A hash lookup on object arrays: pandas' ``Series.isin`` on the ``string``
    dtype is about ten times slower on millions of rows.
    """
    w = pd.unique(
        np.asarray(list(wanted) if not isinstance(wanted, pd.Series | pd.Index | np.ndarray) else wanted, dtype=object)
    )
    w = w[~pd.isna(w)]
    small = _few(values, w)
    if small is not None:
        return small
    fast = positions(values, w)
    if fast is not None:
        return fast >= 0
    arr = obj(values) if isinstance(values, pd.Series | pd.Index) else _none(np.asarray(values, dtype=object))
    if len(arr) == 0 or len(w) == 0:
        return np.zeros(len(arr), dtype=bool)
    return pd.Index(w, dtype=object).get_indexer(arr) >= 0


def _few(values: object, wanted: np.ndarray) -> np.ndarray | None:
    """``isin`` for a handful of wanted texts on a ``string`` column: one comparison per text.

    About three times faster than a hash lookup (no conversion of the column); None when
    the column is not a python-backed ``string`` column, has missing values, or too many are wanted.
    """
    arr = values.array if isinstance(values, pd.Series | pd.Index) else None
    if not isinstance(arr, pd.arrays.StringArray) or not 0 < len(wanted) <= 3:
        return None
    nd = arr._ndarray
    if not all(isinstance(w, str) for w in wanted):
        return None
    mask = np.zeros(len(nd), dtype=bool)
    try:
        for w in wanted:
            mask |= nd == w
    except TypeError:  # a missing value (pd.NA) cannot be compared
        return None
    return mask


def select(df: pd.DataFrame, owner: str | Iterable[str] | None, team: str | Iterable[str] | None) -> pd.DataFrame:
    """Rows of ``df`` whose ``owner`` / ``team`` is among the ones asked (all when None)."""
    mask = np.ones(len(df), dtype=bool)
    for col, want in (("owner", owner), ("team", team)):
        if want is None:
            continue
        values = [want] if isinstance(want, str) else list(want) if isinstance(want, (list, tuple, set)) else [want]
        if not all(isinstance(v, str) for v in values):
            raise ParameterError(f"{col} must be a name or a list of names, got {want!r}")
        mask &= isin(df[col], values)
    return df[mask] if not mask.all() else df
