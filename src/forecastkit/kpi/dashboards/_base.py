"""Shared parts of the four dashboards: the tile objects, the per-call context and the tile assembly.

Each dashboard module (:mod:`.sales_activity`, :mod:`.organisation`,
:mod:`.data_health`, :mod:`.field_dynamics`) turns the snapshot into tile specs
(plain dicts: key, label, unit, the figure per member and period, the drill-down
list); :func:`_assemble` turns specs into :class:`Tile` objects for every member.
"""

from __future__ import annotations

import html
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.hygiene._deals import isin
from forecastkit.kpi._common import _org_map, _period_codes, _safe_div, _target_amounts, _with_groups
from forecastkit.periods import Period, parse_period, period_of

Which = Literal["sales_activity", "organisation", "data_health", "field_dynamics"]
Level = Literal["rep", "team", "business_unit"]
DASHBOARDS: dict[str, str] = {
    "sales_activity": "Steering sales activity",
    "organisation": "Getting organised",
    "data_health": "Customer-data health",
    "field_dynamics": "Field dynamics",
}
LEVELS: dict[str, str] = {"rep": "owner", "team": "team", "business_unit": "business_unit"}
_MAX_TILES = 7
_ROW_TABLES = ("opportunities", "orders", "activities", "accounts")
# group codes of the row tables per snapshot and level (see _Ctx._table_groups)
_GROUPS: weakref.WeakKeyDictionary[CRM, dict[str, tuple[np.ndarray, np.ndarray]]] = weakref.WeakKeyDictionary()
_ALL = "all"


# ------------------------------------------------------------------ objects
@dataclass(frozen=True)
class Tile:
    """One KPI tile.

    Attributes
    ----------
    key, label : str
        Machine name and display label.
    value : float
    target : float or None
        The period's target (None when the KPI has none).
    unit : str
        ``amount``, ``count``, ``ratio`` or ``days``.
    status : str
        ``green``, ``orange``, ``red`` or ``grey`` (no rule or no value).
    status_value : float
        The number the traffic light judged (e.g. attainment to date, a trend ratio).
    action : str
        What to do with the drill-down list.
    sparkline : Series
        The value over the previous periods (index: period labels, oldest first).
    drilldown : DataFrame
        The action list behind the tile.

    ``sparkline`` and ``drilldown`` are properties built on access from arrays shared by
    every member's dashboard, so building the dashboards of thousands of reps stays cheap.
    """

    key: str
    label: str
    value: float
    target: float | None
    unit: str
    status: str
    status_value: float
    action: str = ""
    _spark: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _spark_index: pd.Index = field(default_factory=lambda: pd.Index([]), repr=False)
    _source: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False)
    _rows: np.ndarray = field(default_factory=lambda: np.arange(0), repr=False)

    @property
    def sparkline(self) -> pd.Series:
        """The value over the previous periods (index: period labels, oldest first)."""
        return pd.Series(self._spark, index=self._spark_index, name=self.key)

    @property
    def drilldown(self) -> pd.DataFrame:
        """The drill-down action list (a new frame)."""
        return self._source.iloc[self._rows].reset_index(drop=True)

    @property
    def drilldown_rows(self) -> int:
        """Number of rows of the drill-down list."""
        return len(self._rows)


@dataclass(frozen=True)
class Dashboard:
    """One dashboard for one member (or the company): its tiles in display order."""

    name: str
    title: str
    level: str
    who: str
    period: str
    as_of: pd.Timestamp
    tiles: tuple[Tile, ...] = field(default_factory=tuple)

    def tile(self, key: str) -> Tile:
        """The tile called ``key``."""
        for t in self.tiles:
            if t.key == key:
                return t
        raise ParameterError(
            f"dashboard {self.name!r} has no tile {key!r}; tiles: {', '.join(t.key for t in self.tiles)}"
        )

    def to_frame(self) -> pd.DataFrame:
        """``key, label, value, target, unit, status, status_value, action, drilldown_rows``."""
        return pd.DataFrame(
            [
                {
                    "key": t.key,
                    "label": t.label,
                    "value": t.value,
                    "target": t.target,
                    "unit": t.unit,
                    "status": t.status,
                    "status_value": t.status_value,
                    "action": t.action,
                    "drilldown_rows": t.drilldown_rows,
                }
                for t in self.tiles
            ]
        )

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>{html.escape(self.title)}</b> - {html.escape(self.level)} "
            f"<i>{html.escape(self.who)}</i>, {html.escape(self.period)} (as of {self.as_of.date()})</p>"
        )
        return head + self.to_frame().to_html(index=False)


# ------------------------------------------------------------------ helpers
class _Ctx:
    """Everything a dashboard computation needs, built once: grouped tables and the periods.

    Group keys are integer codes: the group (rep, team or business unit) of every row of
    ``opportunities``, ``orders``, ``activities`` and ``accounts`` is worked out once per
    call (:meth:`_table_groups`); a frame passed with one of these table names must be a
    row subset of that snapshot table (same index labels, any columns, any row order),
    and its rows take their codes by position. Any other frame (a per-customer or
    per-owner summary...) is grouped on its own ``owner`` column, with another name.
    """

    def __init__(self, crm: CRM, level: str, period: Period, history: int, full: CRM | None = None) -> None:
        self.crm = crm
        self.full = full or crm
        self.pb = crm.playbook
        self.col = LEVELS[level] if level != "company" else None
        self.level = level
        self.period = period
        self.as_of = crm.as_of_date
        self.cut = crm.as_of_date + pd.Timedelta(days=1)  # everything before is known
        self.periods = [period.shift(-k, self.pb) for k in range(history - 1, -1, -1)]
        self.labels = [p.label for p in self.periods]
        self.codes = _period_codes(pd.Series([p.start for p in self.periods]), period.freq, self.pb)
        self.org = _org_map(self.full)
        end = min(period.end, self.cut)
        self.elapsed = max(0.0, min(1.0, (end - period.start).days / period.days))
        self._groups: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # when ``crm`` is one member's scope

    def _labels(self, df: pd.DataFrame, table: str) -> pd.Series:
        """The group label of each row of ``df`` from its own columns (``all`` for the company)."""
        if self.col is None:
            return pd.Series(_ALL, index=df.index, dtype=object)
        narrow = df[[c for c in dict.fromkeys(("owner", self.col)) if c in df]] if "owner" in df else df
        g = _with_groups(narrow, self.crm, [self.col], table=table, org=self.org)
        return g[self.col].astype(object).fillna("(none)")

    def _table_groups(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        """Group code of every row of the snapshot table ``table`` and the group labels.

        Built once per snapshot and level (a snapshot's tables never change), so the four
        dashboards of one snapshot share them.
        """
        memo = _GROUPS.setdefault(self.crm, {}) if self.full is self.crm else self._groups
        key = f"{table}:{self.col}"
        if key not in memo:
            memo[key] = self._build_groups(table)
        return memo[key]

    def _build_groups(self, table: str) -> tuple[np.ndarray, np.ndarray]:
        base = getattr(self.crm, table)
        if self.col is not None and "owner" in base and (self.col == "owner" or self.col not in base):
            # the group follows from the owner alone: map the distinct owners, not every row
            codes, owners = pd.factorize(_text(base["owner"]))
            who = pd.Series(np.asarray(owners, dtype=object), dtype=object)
            if self.col != "owner":
                who = who.map(self.org[self.col]) if len(self.org) else pd.Series(pd.NA, index=who.index)
            names = np.append(who.astype(object).fillna("(none)").to_numpy(dtype=object), "(none)")
            relabel, labels = pd.factorize(names)  # the missing owner (code -1) takes the trailing "(none)"
            codes = relabel[np.where(codes >= 0, codes, len(names) - 1)]
        else:
            codes, labels = pd.factorize(self._labels(base, table))
        return codes.astype(np.int64), np.asarray(labels, dtype=object)

    def _positions(self, df: pd.DataFrame, table: str) -> np.ndarray | None:
        """Positions of the rows of ``df`` in the snapshot table ``table`` (None: not one of the row tables)."""
        if table not in _ROW_TABLES:
            return None
        base = getattr(self.crm, table)
        if df is base:
            return np.arange(len(base))
        idx = base.index
        if isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1 and df.index.dtype.kind in "iu":
            pos = df.index.to_numpy(dtype=np.int64)
        elif idx.is_unique:
            pos = idx.get_indexer(df.index)
        else:
            return None
        if len(pos) and (pos.min() < 0 or pos.max() >= len(idx)):
            raise AssertionError(f"a frame passed as {table!r} is not a row subset of that table")
        return pos

    def who(self, df: pd.DataFrame, table: str) -> pd.Series:
        """The group label of each row (``all`` for the company)."""
        pos = self._positions(df, table)
        if pos is None:
            return self._labels(df, table)
        codes, labels = self._table_groups(table)
        return pd.Series(labels[codes[pos]], index=df.index, dtype=object)

    def in_period(self, dates: pd.Series) -> np.ndarray:
        """True where the date falls in the dashboard's period (False where missing)."""
        return self.period.contains(dates).fillna(False).to_numpy(dtype=bool)

    def count(self, df: pd.DataFrame, table: str) -> pd.Series:
        """Number of rows of ``df`` per group."""
        return self.total(df, pd.Series(1.0, index=df.index), table)

    def total(self, df: pd.DataFrame, values: pd.Series, table: str) -> pd.Series:
        """Sum of ``values`` (aligned with ``df``) per group, indexed by group label."""
        w, labels = self.who_codes(df, table)
        s = pd.Series(values.to_numpy()).groupby(w).sum()
        return pd.Series(s.to_numpy(), index=pd.Index(labels[s.index.to_numpy()], dtype=object)).sort_index()

    def who_codes(self, df: pd.DataFrame, table: str) -> tuple[np.ndarray, np.ndarray]:
        """The group of each row as integer codes, and the labels of the groups present in ``df``."""
        pos = self._positions(df, table)
        if pos is None:
            codes, labels = pd.factorize(self._labels(df, table))
            return codes, np.asarray(labels, dtype=object)
        full, labels = self._table_groups(table)
        w = full[pos]
        present = np.flatnonzero(np.bincount(w, minlength=len(labels)))
        lut = np.full(len(labels), -1, dtype=np.int64)
        lut[present] = np.arange(len(present))
        return lut[w], labels[present]

    def flow(self, df: pd.DataFrame, date: pd.Series, values: Mapping[str, pd.Series], table: str) -> pd.DataFrame:
        """Sums of ``values`` per (who, period) over the sparkline periods (missing = 0)."""
        d = date.to_numpy() if date.dtype == "datetime64[ns]" else np.asarray(pd.to_datetime(date), "datetime64[ns]")
        # period codes only for the dates inside the sparkline window (most rows of a long history are not)
        lo, hi = self.periods[0].start, min(self.periods[-1].end, self.cut)
        win = (d >= lo.to_datetime64()) & (d < hi.to_datetime64())
        code = np.full(len(d), -1, dtype=np.int64)
        code[win] = _period_codes(pd.Series(d[win]), self.period.freq, self.pb)
        keep = win & np.isin(code, self.codes)
        w, labels = self.who_codes(df, table)
        k = len(self.codes)
        pos = np.searchsorted(self.codes, code[keep])  # self.codes is sorted (oldest first)
        key = w[keep].astype(np.int64) * k + pos
        cols = {
            name: np.bincount(key, weights=v.to_numpy(dtype=float)[keep], minlength=len(labels) * k)
            for name, v in values.items()
        }
        idx = pd.MultiIndex.from_product([labels, self.codes], names=["_who", "_code"])
        return pd.DataFrame(cols, index=idx)

    def dense(self, g: pd.DataFrame, col: str, members: list) -> np.ndarray:
        """``g[col]`` as a members x sparkline-periods matrix (missing = 0)."""
        out = np.zeros((len(members), len(self.codes)))
        if not len(g):
            return out
        row = pd.Index(members, dtype=object).get_indexer(g.index.get_level_values("_who"))
        col_ = pd.Index(self.codes).get_indexer(g.index.get_level_values("_code"))
        ok = (row >= 0) & (col_ >= 0)
        v = g[col].to_numpy(dtype=float)[ok]
        out[row[ok], col_[ok]] = np.where(np.isnan(v), 0.0, v)
        return out

    def target(self, metric: str) -> pd.Series:
        lvl = {"rep": "owner", "team": "team", "business_unit": "business_unit"}.get(self.level)
        t = _target_amounts(self.full, metric, [self.period], lvl, org=self.org)
        if not len(t):
            return pd.Series(dtype=float)
        return t.set_index(lvl)["target"] if lvl else pd.Series({_ALL: float(t["target"].sum())})

    def rows(self, df: pd.DataFrame, table: str) -> dict[object, np.ndarray]:
        """Positions of each group's rows in ``df`` (drill-down lists)."""
        if not len(df):
            return {}
        w, labels = self.who_codes(df, table)
        order = np.argsort(w, kind="stable")
        starts = np.flatnonzero(np.r_[True, w[order][1:] != w[order][:-1]])
        return {labels[w[order[a]]]: order[a:b] for a, b in zip(starts, [*starts[1:], len(order)], strict=True)}


def _text(s: pd.Series) -> np.ndarray:
    """A text column as an object array (missing values as they are; no copy for pandas' python strings)."""
    return np.asarray(s.array, dtype=object)


def _is(s: pd.Series, value: str) -> np.ndarray:
    """``s == value`` as a boolean array, missing values never equal (fast on text columns)."""
    try:
        out = _text(s) == value
    except TypeError:  # a missing value (pd.NA) cannot be compared elementwise
        return (s == value).to_numpy(dtype=bool, na_value=False)
    return np.asarray(out, dtype=bool) if isinstance(out, np.ndarray) else np.zeros(len(s), dtype=bool)


def _take(df: pd.DataFrame, mask: np.ndarray, cols: list[str]) -> pd.DataFrame:
    """``df.loc[mask, cols]`` taking only those columns' rows (``.loc`` copies every column or every row first)."""
    idx = np.flatnonzero(mask)
    return pd.DataFrame({c: df[c].array.take(idx) for c in cols}, index=df.index[idx])


def _trend(m: np.ndarray) -> np.ndarray:
    """Last column / mean of the earlier positive columns, per row."""
    prev = m[:, :-1]
    pos = prev > 0
    n = pos.sum(axis=1)
    mean = np.where(n > 0, np.where(pos, prev, 0).sum(axis=1) / np.maximum(n, 1), np.nan)
    return np.asarray(_safe_div(m[:, -1], mean), dtype=float)


_TileSpec = dict[str, Any]


def _empty(cols: list[str]) -> pd.DataFrame:
    return pd.DataFrame(columns=cols)


def _rule(c: _Ctx, kpi: str) -> Mapping[str, Any]:
    return c.pb.traffic_lights[kpi]


def _reps_per_group(c: _Ctx) -> pd.Series:
    owners = pd.Index(c.crm.opportunities["owner"].dropna().unique())
    reps = c.crm.reps
    if len(reps):
        cur = reps[reps["end_date"].isna()]["owner"]
        owners = owners.intersection(pd.Index(cur)) if len(cur) else owners
    df = pd.DataFrame({"owner": owners})
    return c.count(df, "reps")


def _vec(s: pd.Series | None, members: list, fill: float) -> np.ndarray:
    if s is None or not len(s):
        return np.full(len(members), fill, dtype=float)
    return s.groupby(level=0).sum().reindex(members).fillna(fill).to_numpy(dtype=float)


def _assemble(c: _Ctx, specs: list[_TileSpec], members: list) -> list[list[Tile]]:
    """Tiles of every member (vectorised over members; one list of tiles per member)."""
    n = len(members)
    cols: list[dict[str, Any]] = []
    for s in specs:
        target = _vec(s["target"], members, np.nan) if s.get("target") is not None else np.full(n, np.nan)
        if "flow" in s:
            g, col = s["flow"]
            spark = c.dense(g, col, members)
        elif "ratio" in s:
            g, num, den = s["ratio"]
            spark = np.asarray(_safe_div(c.dense(g, num, members), c.dense(g, den, members)), dtype=float).reshape(
                n, -1
            )
        else:
            fill = np.nan if s["unit"] == "ratio" else 0.0
            spark = _vec(s["snapshot"], members, fill)[:, None]
        value = spark[:, -1]
        kpi = s.get("kpi")
        judged = value
        if kpi == "attainment":
            judged = _safe_div(value, target * c.elapsed)
        elif s.get("trend"):
            judged = _trend(spark)
        elif "status_ratio" in s:
            g, num, den = s["status_ratio"]
            judged = _safe_div(c.dense(g, num, members)[:, -1], c.dense(g, den, members)[:, -1])
        elif "share_of" in s:
            judged = _safe_div(value, _vec(s["share_of"], members, 0.0))
        elif s.get("ratio_to_target"):
            judged = _safe_div(value, target)
        elif s["key"] == "weighted_pipeline":
            gw, colw = s["won"]
            remaining = np.clip(target - c.dense(gw, colw, members)[:, -1], 0, None)
            pipe = _vec(s["pipeline"], members, 0.0)
            judged = np.where(
                remaining > 0, pipe / np.where(remaining > 0, remaining, 1), np.where(target >= 0, np.inf, np.nan)
            )
        judged = np.asarray(judged, dtype=float).reshape(-1)
        df, table = s["drill"]
        cols.append(
            {
                "s": s,
                "spark": spark,
                "value": value,
                "target": target,
                "judged": judged,
                "source": df,
                "rows": c.rows(df, table),
            }
        )
    full_idx, last_idx = pd.Index(c.labels), pd.Index(c.labels[-1:])
    empty = np.arange(0)
    # per tile, everything shared by the members; per member, plain Python floats and strings
    shared = []
    for col in cols:
        s = col["s"]
        kpi = s.get("kpi")
        shared.append(
            (
                s["key"],
                s["label"],
                s["unit"],
                s.get("action", ""),
                col["spark"],
                full_idx if col["spark"].shape[1] > 1 else last_idx,
                np.asarray(col["value"], dtype=float).tolist(),
                np.asarray(col["target"], dtype=float).tolist(),
                col["judged"].tolist(),
                _lights(c.pb, kpi, col["judged"]) if kpi else ["grey"] * n,
                col["source"],
                col["rows"],
            )
        )
    if len(shared) > _MAX_TILES:  # pragma: no cover - guarded by design
        raise AssertionError("a dashboard has at most 7 tiles")
    return [
        [
            Tile(
                key=key,
                label=label,
                value=value[i],
                target=None if target[i] != target[i] else target[i],
                unit=unit,
                status=status[i],
                status_value=judged[i],
                _spark=spark[i],
                _spark_index=spark_index,
                action=action,
                _source=source,
                _rows=rows.get(who, empty),
            )
            for key, label, unit, action, spark, spark_index, value, target, judged, status, source, rows in shared
        ]
        for i, who in enumerate(members)
    ]


def _lights(pb: Any, kpi: str, judged: np.ndarray) -> list[str]:
    """``pb.traffic_light(kpi, v)`` for every value, evaluated once per distinct value."""
    uniq, inv = np.unique(judged, return_inverse=True)
    lights = np.array([pb.traffic_light(kpi, float(u)) for u in uniq], dtype=object)
    return lights[inv.ravel()].tolist()


def _resolve(crm: CRM, which: str, level: str, period: object) -> Period:
    if which not in DASHBOARDS:
        raise ParameterError(f"which={which!r} is not a dashboard; use one of {', '.join(DASHBOARDS)}")
    if level not in LEVELS:
        raise ParameterError(f"level={level!r}: use one of {', '.join(LEVELS)}")
    if period is None:
        return period_of(crm.as_of_date, "quarter", crm.playbook)
    if isinstance(period, Period):
        return period
    if isinstance(period, str) and period.lower() in ("month", "quarter", "half", "year"):
        return period_of(crm.as_of_date, period.lower(), crm.playbook)  # type: ignore[arg-type]
    return parse_period(str(period), crm.playbook)


def _scope(crm: CRM, level: str, who: str) -> CRM:
    """The snapshot restricted to one member's deals (with their history), orders, activities and accounts."""
    col = LEVELS[level]
    org = _org_map(crm)
    t = crm.tables
    o = _with_groups(t["opportunities"], crm, [col], table="opportunities", org=org)
    keep_o = _is(o[col], who)
    if col == "owner":
        owners = {who}
    else:
        owners = set(org.index[(org[col] == who).fillna(False).to_numpy(dtype=bool)]) | set(o.loc[keep_o, "owner"])
    if (
        not keep_o.any()
        and not owners & set(t["orders"]["owner"].dropna())
        and not owners & set(t["activities"]["owner"])
    ):
        known = sorted(set(o[col].dropna().astype(str)))
        raise ParameterError(
            f"who={who!r} is not a {level} of this CRM; known: {', '.join(known[:10])}"
            + (" ..." if len(known) > 10 else "")
        )
    out = dict(t)
    out["opportunities"] = t["opportunities"][keep_o]
    ids = set(out["opportunities"]["opportunity_id"])
    out["history"] = t["history"][isin(t["history"]["opportunity_id"], ids)]
    for name in ("orders", "activities", "accounts"):
        df = t[name]
        out[name] = df[isin(df["owner"], owners)] if "owner" in df else df
    # contacts are kept whole: their owner is resolved by the completeness check itself
    present = {n: out[n] for n in out if crm.has(n) or n == "opportunities"}
    return CRM(present, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)
