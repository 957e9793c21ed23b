"""The CRM snapshot: every canonical table as known on one date, and ``as_of`` to rewind it.

``crm.as_of(d)`` gives the company as it was known at the end of day ``d``:

* **opportunities** created after ``d`` disappear; each remaining deal's stage,
  amount, close date and forecast category are those of its last ``history``
  row at or before ``d``; its status follows the stage (a deal won after ``d``
  is open again, with no ``closed_at`` and no ``loss_reason``). Fields changed
  in ``field_history`` (qualification fields, next step...) take the value
  they had on ``d``. The typed-in ``probability`` is dropped where the stage
  differs from the current one. Deals without any history row keep their
  current values while open; a closed one that closed after ``d`` becomes open
  with an unknown (empty) stage.
* **history**, **field_history**, **forecast_calls**: rows after ``d`` dropped.
* **activities**: those planned or logged after ``d`` dropped; ``done_at``
  after ``d`` is emptied, with the report.
* **orders**: placed after ``d`` dropped; invoices and deliveries after ``d`` emptied.
* **accounts**, **contacts**, **reps**: created after ``d`` dropped (rows without a
  creation date are kept); **subscriptions** and **costs**: months starting
  after ``d`` dropped; **targets** are kept (set in advance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit._text import text_is
from forecastkit.data._fast import key_positions, plan_for, text_codes
from forecastkit.data.schema import REPORT_BOXES, TABLES
from forecastkit.data.validate import TEXT_DTYPE, LoadReport, coerce_column, empty_table, validate_tables
from forecastkit.errors import PeriodError, SchemaError
from forecastkit.periods import to_timestamp
from forecastkit.playbook import CLOSED_STAGES, DEFAULT_PLAYBOOK, Playbook

__all__ = ["CRM"]

_DAY = pd.Timedelta(days=1)


class CRM:
    """A CRM snapshot: the canonical tables as known on ``as_of_date``.

    Build one with :func:`forecastkit.load` or :meth:`CRM.from_tables`. Tables
    are attributes (``crm.opportunities``, ``crm.history``...); an absent table
    is an empty frame with the canonical columns. Treat the frames as
    read-only: every function returns new frames.

    Attributes
    ----------
    as_of_date : Timestamp
        The snapshot date (midnight of the day; everything up to the end of that day is known).
    playbook : Playbook
        The company's rules.
    load_report : LoadReport
        Row accounting of the load that built the snapshot.
    """

    def __init__(
        self,
        tables: Mapping[str, pd.DataFrame],
        *,
        as_of_date: pd.Timestamp,
        playbook: Playbook = DEFAULT_PLAYBOOK,
        load_report: LoadReport | None = None,
    ) -> None:
        self._tables = {name: tables[name] if name in tables else empty_table(name) for name in TABLES}
        self._present = frozenset(n for n in tables if n in TABLES)
        self.as_of_date = pd.Timestamp(as_of_date).normalize()
        self.playbook = playbook
        self.load_report = load_report or LoadReport()

    # ------------------------------------------------------------ construction
    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, pd.DataFrame],
        *,
        as_of: object = None,
        playbook: Playbook | None = None,
        strict: bool = False,
        fx_rates: Mapping[str, float] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> CRM:
        """Validate raw tables and build a snapshot.

        Parameters
        ----------
        tables : mapping of table name to DataFrame
            At least ``opportunities``.
        as_of : date, optional
            Snapshot date; default the latest event in the data.
        playbook : Playbook, optional
            Company rules (default playbook otherwise).
        strict : bool
            Raise :class:`~forecastkit.errors.DataError` when any row is rejected.
        fx_rates : mapping, optional
            Currency -> value of one unit in the playbook currency.
        """
        pb = playbook or DEFAULT_PLAYBOOK
        ts = None if as_of is None else to_timestamp(as_of, what="as_of").normalize()
        clean, report, snap = validate_tables(tables, playbook=pb, files=files, fx_rates=fx_rates, as_of=ts)
        if strict:
            report.raise_for_errors()
        return cls(clean, as_of_date=snap, playbook=pb, load_report=report)

    # ------------------------------------------------------------------ tables
    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """All canonical tables by name (absent ones empty)."""
        return dict(self._tables)

    def has(self, name: str) -> bool:
        """True when table ``name`` was given (even if it has no rows)."""
        return name in self._present

    def require(self, name: str, why: str) -> pd.DataFrame:
        """Table ``name``; a :class:`SchemaError` naming the analysis ``why`` when it is absent."""
        if name not in self._present:
            raise SchemaError(f"{why} needs the '{name}' table, which this CRM snapshot does not have")
        return self._tables[name]

    opportunities = property(lambda self: self._tables["opportunities"], doc="Deals, one row each.")
    history = property(lambda self: self._tables["history"], doc="Deal changes, state after each change.")
    field_history = property(lambda self: self._tables["field_history"], doc="Changes of other deal fields.")
    activities = property(lambda self: self._tables["activities"], doc="Calls, emails, visits, meetings.")
    accounts = property(lambda self: self._tables["accounts"], doc="Companies.")
    contacts = property(lambda self: self._tables["contacts"], doc="People at accounts.")
    orders = property(lambda self: self._tables["orders"], doc="Orders, invoices, deliveries.")
    targets = property(lambda self: self._tables["targets"], doc="Quotas and targets.")
    forecast_calls = property(lambda self: self._tables["forecast_calls"], doc="Reps' forecast submissions.")
    costs = property(lambda self: self._tables["costs"], doc="Marketing and sales costs per month.")
    subscriptions = property(lambda self: self._tables["subscriptions"], doc="MRR per account and month.")
    reps = property(lambda self: self._tables["reps"], doc="Reps and their teams.")

    @property
    def open_deals(self) -> pd.DataFrame:
        """Opportunities with status ``open``."""
        return self.opportunities[self._open_mask()]

    @property
    def closed_deals(self) -> pd.DataFrame:
        """Opportunities won or lost (``status != "open"``; a missing text status is neither open nor closed)."""
        return self.opportunities[self._closed_mask()]

    def _open_mask(self) -> np.ndarray:
        """Each deal's ``status == "open"`` as a bool array (a missing status: False), computed once per
        snapshot (``as_of`` sets it)."""
        return self._cached(("open",), lambda: text_is(self.opportunities["status"], "open"))

    def _closed_mask(self) -> np.ndarray:
        """Each deal's ``status != "open"`` as a bool array (a missing text status: False), computed once per snapshot."""
        o = self.opportunities
        return self._cached(("closed",), lambda: (o["status"] != "open").to_numpy(dtype=bool, na_value=False))

    # --------------------------------------------------------------- summaries
    def summary(self) -> pd.DataFrame:
        """One row per table: ``table, rows, columns, first_date, last_date`` (dates from its known-at column)."""
        rows = []
        for name, t in TABLES.items():
            df = self._tables[name]
            col = t.known_at
            first = last = pd.NaT
            if col and len(df) and col in df:
                first, last = df[col].min(), df[col].max()
            rows.append(
                {"table": name, "rows": len(df), "columns": df.shape[1], "first_date": first, "last_date": last}
            )
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        o = self.opportunities
        n_open = int((o["status"] == "open").sum())
        return (
            f"<CRM as of {self.as_of_date.date()}: {len(o)} opportunities ({n_open} open), "
            f"{len(self.history)} history rows, {len(self.activities)} activities, {len(self.orders)} orders>"
        )

    def _repr_html_(self) -> str:
        return f"<p><b>CRM snapshot as of {self.as_of_date.date()}</b></p>" + self.summary().to_html(index=False)

    # ---------------------------------------------------------------- rewind
    def as_of(self, date: object) -> CRM:
        """The company as known at the end of day ``date`` (see the module docstring for the rules).

        Raises
        ------
        PeriodError
            When ``date`` is not a date or lies after the snapshot date.
        """
        d = to_timestamp(date, what="as_of date").normalize()
        if d > self.as_of_date:
            raise PeriodError(
                f"as_of date {d.date()} is after the snapshot date {self.as_of_date.date()}: "
                "a snapshot cannot show what it does not know; load newer data instead"
            )
        return self._as_of(d)

    def _as_of(self, d: pd.Timestamp, skip: Iterable[str] = ()) -> CRM:
        """:meth:`as_of` of a checked date (midnight), rewinding only the tables the snapshot holds.

        ``skip``: tables left out of the snapshot (absent, as if not loaded) instead of rewound,
        for callers that never read them (the backtest reads no field history; it cuts the
        activities itself). The others are rewound exactly as by :meth:`as_of`.
        """
        cutoff = d + _DAY  # everything strictly before is known at the end of day d
        t = self._tables
        names = (self._present | {"opportunities"}) - set(skip)
        out: dict[str, pd.DataFrame] = {}
        history = _before(t["history"], "changed_at", cutoff)  # (the deals' rewind reads it)
        if "history" in names:
            out["history"] = history
        if "field_history" in names:
            out["field_history"] = _before(t["field_history"], "changed_at", cutoff)
        out["opportunities"], is_open = self._rewind_deals(history, cutoff)
        if "activities" in names:
            act = t["activities"]
            known = self._cached(("activity_known",), lambda: act["created_at"].fillna(act["due_at"]))
            out["activities"] = _rewind_activities(act, cutoff, known)
        if "orders" in names:
            out["orders"] = _rewind_orders(t["orders"], cutoff)
        if "forecast_calls" in names:
            out["forecast_calls"] = _before(t["forecast_calls"], "submitted_at", cutoff)
        for name in ("accounts", "contacts"):
            if name in names:
                df = t[name]
                out[name] = _rows(df, ~(df["created_at"] >= cutoff))
        if "reps" in names:
            reps = _rows(t["reps"], ~(t["reps"]["start_date"] >= cutoff))
            reps.loc[reps["end_date"] >= cutoff, "end_date"] = pd.NaT
            out["reps"] = reps
        if "subscriptions" in names:
            out["subscriptions"] = _before(t["subscriptions"], "month", cutoff)
        if "costs" in names:
            costs = t["costs"]
            month_start = pd.to_datetime(costs["period"].astype(object) + "-01", errors="coerce")
            out["costs"] = _rows(costs, ~(month_start >= cutoff))
        if "targets" in names:
            out["targets"] = t["targets"]
        snap = CRM(out, as_of_date=d, playbook=self.playbook, load_report=self.load_report)
        if is_open is not None:
            snap._cached(("open",), lambda: is_open)
        return snap

    def _put_table(self, name: str, df: pd.DataFrame) -> None:
        """Set table ``name`` of a snapshot being built (a rewinder that cuts a table itself), present."""
        self._tables[name] = df
        self._present = self._present | {name}

    def _rewind_plan(self):  # type: ignore[no-untyped-def]
        """This snapshot's :class:`~forecastkit.data._fast.RewindPlan` (None when its tables do not allow
        one), built on first use and kept. The backtest builds it before forking its workers, so that
        they share it instead of building one each."""
        t = self._tables
        cache = self._cached(("field_values",), dict)
        if "fields" not in cache:  # each field-history row's field as a number (shared with _field_values)
            field = t["field_history"]["field"]
            cache["fields"] = text_codes(field) if field.dtype == TEXT_DTYPE else pd.factorize(field)
        return self._cached(
            ("rewind_plan",), lambda: plan_for(t["opportunities"], t["history"], t["field_history"], cache["fields"])
        )

    def _rewind_deals(
        self, known_history: pd.DataFrame, cutoff: pd.Timestamp
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The opportunities as known before ``cutoff`` (``known_history``: the history rows before it),
        and their ``status == "open"`` when known without comparing text (else None).

        From a snapshot's second rewind on (first, for a :meth:`_rewind_source` copy), by positions
        and codes prepared once per snapshot (:mod:`forecastkit.data._fast`) when the tables allow
        it; else by the plain pandas steps (a single rewind costs less so than preparing); both
        give the same frame.
        """
        t = self._tables
        opps, fh = t["opportunities"], t["field_history"]
        cache = self._cached(("field_values",), dict)
        cache["deal_rewinds"] = cache.get("deal_rewinds", 0) + 1
        plan = None
        if cache["deal_rewinds"] > 1 or self._cached_only(("rewound_often",)):
            plan = self._rewind_plan()
        if plan is None:
            return _rewind_opportunities(opps, known_history, fh, cutoff, cache), None
        sel = np.flatnonzero((opps["created_at"] < cutoff).to_numpy(dtype=bool))
        if len(sel) and sel[-1] == len(sel) - 1 and self._cached_only(("read_only_rewinds",)):
            o = _head(opps, len(sel))  # deals in creation order: the first rows, shared, not copied
        else:
            o = opps.take(sel)
            o.index = pd.RangeIndex(len(o))
        if o.empty:
            return o, None
        # the rewritten columns are gathered, then put in a new frame with the others at once (setting
        # them one by one copies each column again); a table with repeated column names: one by one
        new: dict | pd.DataFrame = {} if o.columns.is_unique else o
        o_row, is_open = plan.rewind(new, sel, cutoff)
        later, first = plan.later_changes(o_row, cutoff)
        if len(later):
            by_row = _count_rewind(cache, fh)
            for code in pd.unique(plan.field_codes[first]):
                field = str(plan.field_names[code])
                if field in o.columns and field != "opportunity_id":
                    rows = first[plan.field_codes[first] == code]
                    if isinstance(new, dict):
                        col = new[field] if field in new else o[field]._values
                        new[field] = _restored(col, fh, field, rows, o_row[plan.fh_deal[rows]], cache, by_row)
                    else:
                        _restore_field(o, fh, field, rows, o_row[plan.fh_deal[rows]], cache, by_row)
                    if field == "status":  # (a field history of the status itself)
                        is_open = None
        if isinstance(new, dict):
            names = [*o.columns, *(c for c in new if c not in o.columns)]
            data = {c: new[c] if c in new else o[c]._values for c in names}
            o = pd.DataFrame(data, index=pd.RangeIndex(len(o)), copy=False)  # (not consolidated: no copy)
        return o, is_open

    def with_playbook(self, playbook: Playbook) -> CRM:
        """The same snapshot judged with another playbook (thresholds, stages' CRM probabilities...)."""
        present = {n: self._tables[n] for n in self._present | {"opportunities"}}
        return CRM(present, as_of_date=self.as_of_date, playbook=playbook, load_report=self.load_report)

    # ----------------------------------------------------------------- scope
    def subset(self, *, owner: str | None = None, team: str | None = None, business_unit: str | None = None) -> CRM:
        """The snapshot restricted to one rep, team or business unit.

        Deals are selected by their own ``owner`` / ``team`` / ``business_unit``
        columns (the ``reps`` table fills a missing team or unit); their history,
        field history and activities follow them. Orders, accounts, forecast calls
        and activities without a deal follow the owners of the scope; targets keep
        the scope's owners and, for a team, the team's own rows. Costs and
        subscriptions are company-wide and kept whole.

        Raises
        ------
        ParameterError
            When no or several selectors are given, or the name is unknown.
        """
        from forecastkit.errors import ParameterError

        given = {
            k: v for k, v in {"owner": owner, "team": team, "business_unit": business_unit}.items() if v is not None
        }
        if len(given) != 1:
            raise ParameterError("subset() takes exactly one of owner=, team= or business_unit=")
        col, who = next(iter(given.items()))
        t = self._tables
        o = t["opportunities"]
        values = o[col]
        if col != "owner" and len(t["reps"]):
            org = t["reps"].drop_duplicates("owner").set_index("owner")[col]
            values = values.fillna(o["owner"].map(org))
        keep = (values == who).fillna(False).to_numpy(dtype=bool)
        if col == "owner":
            owners = {who}
        else:
            reps = t["reps"]
            owners = set(o.loc[keep, "owner"].dropna()) | set(reps.loc[(reps[col] == who).fillna(False), "owner"])
        if not keep.any() and not owners:
            known = sorted(set(values.dropna().astype(str)))
            raise ParameterError(
                f"{col}={who!r} is not in this CRM; known: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}"
            )
        out = dict(t)
        out["opportunities"] = _rows(o, keep)
        for name in ("history", "field_history"):
            out[name] = _rows(t[name], self._rows_of_deals(name, keep))
        a = t["activities"]
        mine = self._rows_of_deals("activities", keep) | (
            a["opportunity_id"].isna().to_numpy(dtype=bool) & self._rows_of_owners("activities", owners)
        )
        out["activities"] = _rows(a, mine)
        for name in ("orders", "forecast_calls", "accounts", "reps"):
            df = t[name]
            out[name] = _rows(df, self._rows_of_owners(name, owners))
        tg = t["targets"]
        mine = pd.Series(self._rows_of_owners("targets", owners), index=tg.index)
        if col == "team":
            mine |= tg["owner"].isna() & (tg["team"] == who).fillna(False)
        out["targets"] = _rows(tg, mine)
        present = {n: out[n] for n in self._present | {"opportunities"}}
        return CRM(present, as_of_date=self.as_of_date, playbook=self.playbook, load_report=self.load_report)

    def split_by(self, column: Literal["owner", "team", "business_unit"]) -> Mapping[str, CRM]:
        """The snapshot split by rep, team or business unit: ``split_by("team")[t]`` equals ``subset(team=t)``.

        The keys are the column's values among the deals (the ``reps`` table fills a
        missing team or unit, as in :meth:`subset`) and in the ``reps`` table, sorted.
        Each table's rows are ordered by scope once (one pass over the company); a
        scope's snapshot is then cut out when it is asked for, at a cost proportional to
        its own rows. Looping over 3,600 reps costs about one pass over the company
        instead of 3,600 (:meth:`subset` scans every table each time).

        Raises
        ------
        ParameterError
            When ``column`` is not ``"owner"``, ``"team"`` or ``"business_unit"``.
        """
        from forecastkit.errors import ParameterError

        if column not in ("owner", "team", "business_unit"):
            raise ParameterError(f"split_by() takes 'owner', 'team' or 'business_unit', got {column!r}")
        return _Split(self, column)

    def _rows_of_deals(self, name: str, deals: np.ndarray) -> np.ndarray:
        """Rows of table ``name`` whose ``opportunity_id`` is a deal where ``deals`` (by opportunities row) holds.

        Each row's deal position is computed once per snapshot (``subset`` is called once per
        rep or team by the analyses; hashing millions of text ids each time would dominate).
        """
        pos = self._cached(
            ("deal_pos", name),
            lambda: _positions(self._tables[name]["opportunity_id"], self.opportunities["opportunity_id"]),
        )
        found = pos >= 0
        out = np.zeros(len(pos), dtype=bool)
        out[found] = np.asarray(deals, dtype=bool)[pos[found]]
        return out

    def _rows_of_owners(self, name: str, owners: set) -> np.ndarray:
        """Rows of table ``name`` whose ``owner`` is in ``owners`` (``Series.isin``, owner codes computed once)."""
        codes, uniques = self._cached(("owner_codes", name), lambda: pd.factorize(self._tables[name]["owner"]))
        wanted = np.flatnonzero(pd.Index(uniques).isin(list(owners)))
        return np.isin(codes, wanted)

    def _cached(self, key: tuple, build):  # type: ignore[no-untyped-def]
        cache = self.__dict__.setdefault("_index_cache", {})
        if key not in cache:
            cache[key] = build()
        return cache[key]

    def _rewind_source(self, columns: Iterable[str], **tables: pd.DataFrame) -> CRM:
        """A lean copy to rewind: the deals with only ``columns`` (those present), their history, the
        field history of those columns, and ``tables`` as given.

        ``CRM.as_of`` rewinds each opportunity column on its own, so ``_rewind_source(cols).as_of(d)``
        has the values of ``self.as_of(d)`` in those columns, without rewinding the other tables.
        The copy is made to be rewound at many dates: :meth:`as_of` prepares its rewind at the first.
        """
        o = self.opportunities
        cols = [c for c in dict.fromkeys(columns) if c in o]
        fh = self.field_history
        lean = {
            "opportunities": o[cols],
            "history": self.history,
            "field_history": fh[fh["field"].isin(cols).to_numpy(dtype=bool, na_value=False)].reset_index(drop=True),
            **tables,
        }
        copy = CRM(lean, as_of_date=self.as_of_date, playbook=self.playbook, load_report=self.load_report)
        copy._cached(("rewound_often",), lambda: True)  # (its rewinds are prepared from the first on)
        return copy

    def _cached_only(self, key: tuple):  # type: ignore[no-untyped-def]
        """The value :meth:`_cached` holds under ``key``, or None when nothing computed (or set) it yet."""
        return self.__dict__.get("_index_cache", {}).get(key)

    # ------------------------------------------------------------------- save
    def save(self, path: str | Path, format: Literal["csv", "parquet"] = "csv") -> Path:
        """Write every present table as ``<table>.csv`` (or ``.parquet``), plus ``crm.yaml`` and ``playbook.yaml``."""
        from forecastkit.data.io import save

        return save(self, path, format=format)


class _Split(Mapping):
    """The scopes of :meth:`CRM.split_by`: each table's row positions ordered by scope, cut per key on demand.

    ``rows[name]`` holds the rows of table ``name`` belonging to any scope, scope by scope
    (a row keeps its table order within a scope; a row of a rep in two teams appears in
    both); ``bounds[name][g]:bounds[name][g + 1]`` are scope ``g``'s.
    """

    def __init__(self, crm: CRM, col: str) -> None:
        self._crm = crm
        self._col = col
        t = crm._tables
        o, reps = t["opportunities"], t["reps"]
        values = o[col]
        if col != "owner" and len(reps):
            org = reps.drop_duplicates("owner").set_index("owner")[col]
            values = values.fillna(o["owner"].map(org))
        text = values.to_numpy(dtype=object, na_value=None)
        rep_text = reps[col].to_numpy(dtype=object, na_value=None) if len(reps) else np.array([], dtype=object)
        keys = sorted({v for v in text if v is not None} | {v for v in rep_text if v is not None})
        self._keys = keys
        self._index = index = pd.Index(keys, dtype=object)
        n = len(keys)
        deal_g = index.get_indexer(text) if len(text) else np.array([], dtype=np.int64)
        # the owners of each scope: one rep for an owner split; else the deals' owners and the reps of the scope
        if col == "owner":
            pairs = pd.DataFrame({"owner": keys, "g": np.arange(n)})
        else:
            owner_text = o["owner"].to_numpy(dtype=object, na_value=None)
            rep_g = index.get_indexer(rep_text) if len(rep_text) else np.array([], dtype=np.int64)
            rep_owner = reps["owner"].to_numpy(dtype=object, na_value=None) if len(reps) else rep_text
            pairs = pd.DataFrame(
                {
                    "owner": np.concatenate([owner_text[deal_g >= 0], rep_owner[rep_g >= 0]]),
                    "g": np.concatenate([deal_g[deal_g >= 0], rep_g[rep_g >= 0]]),
                }
            )
            pairs = pairs[pairs["owner"].notna()].drop_duplicates()
        self._rows: dict[str, np.ndarray] = {}
        self._bounds: dict[str, np.ndarray] = {}

        def keep(name: str, rows: np.ndarray, g: np.ndarray) -> None:
            order = np.lexsort((rows, g))
            rows, g = rows[order], g[order]
            self._rows[name] = rows
            self._bounds[name] = np.searchsorted(g, np.arange(n + 1))

        def of_deals(name: str) -> tuple[np.ndarray, np.ndarray]:
            pos = crm._cached(("deal_pos", name), lambda: _positions(t[name]["opportunity_id"], o["opportunity_id"]))
            g = np.full(len(pos), -1, dtype=np.int64)
            g[pos >= 0] = deal_g[pos[pos >= 0]]
            rows = np.flatnonzero(g >= 0)
            return rows, g[rows]

        def of_owners(name: str, only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
            codes, uniques = crm._cached(("owner_codes", name), lambda: pd.factorize(t[name]["owner"]))
            u = pd.DataFrame({"owner": np.asarray(uniques, dtype=object), "u": np.arange(len(uniques))})
            m = u.merge(pairs, on="owner").sort_values(["u", "g"], kind="stable")
            cnt = np.bincount(m["u"].to_numpy(dtype=np.int64), minlength=len(uniques))
            start = np.cumsum(cnt) - cnt
            rows = np.flatnonzero(codes >= 0) if only is None else only[codes[only] >= 0]
            k = cnt[codes[rows]]
            rep_rows = np.repeat(rows, k)
            within = np.arange(len(rep_rows)) - np.repeat(np.cumsum(k) - k, k)
            return rep_rows, m["g"].to_numpy(dtype=np.int64)[np.repeat(start[codes[rows]], k) + within]

        deals = np.flatnonzero(deal_g >= 0)
        keep("opportunities", deals, deal_g[deals])
        for name in ("history", "field_history"):
            keep(name, *of_deals(name))
        r1, g1 = of_deals("activities")
        r2, g2 = of_owners("activities", np.flatnonzero(t["activities"]["opportunity_id"].isna().to_numpy(dtype=bool)))
        keep("activities", np.concatenate([r1, r2]), np.concatenate([g1, g2]))
        for name in ("orders", "forecast_calls", "accounts", "reps"):
            keep(name, *of_owners(name))
        r1, g1 = of_owners("targets")
        if col == "team":
            tg = t["targets"]
            team_g = index.get_indexer(tg["team"].to_numpy(dtype=object, na_value=None)) if len(tg) else deal_g[:0]
            r2 = np.flatnonzero(tg["owner"].isna().to_numpy(dtype=bool) & (team_g >= 0))
            r1, g1 = np.concatenate([r1, r2]), np.concatenate([g1, team_g[r2]])
        keep("targets", r1, g1)

    def __getitem__(self, key: str) -> CRM:
        return self.scope(key)

    def scope(self, key: str, tables: Sequence[str] | None = None) -> CRM:
        """Scope ``key``'s snapshot; with ``tables``, only those tables (others absent, as if not loaded).

        ``tables`` is for analyses that read a few tables of many scopes: cutting every
        table of every scope (activities...) would cost more than the analysis.
        """
        g = self._index.get_indexer([key])[0] if self._keys else -1
        if g < 0:
            raise KeyError(key)
        crm = self._crm
        names = crm._present | {"opportunities"}
        if tables is not None:
            names = names & (set(tables) | {"opportunities"})
        out = {}
        for name in names:
            df = crm._tables[name]
            if name in self._rows:
                b, rows = self._bounds[name], self._rows[name]
                df = df.take(rows[b[g] : b[g + 1]])
                df.index = pd.RangeIndex(len(df))  # (a fresh frame: no second copy as reset_index makes)
            out[name] = df
        return CRM(out, as_of_date=crm.as_of_date, playbook=crm.playbook, load_report=crm.load_report)

    def positions(self, key: str, table: str = "opportunities") -> np.ndarray:
        """Row positions, in the whole snapshot's ``table``, of the rows of scope ``key`` (ascending)."""
        g = self._index.get_indexer([key])[0] if self._keys else -1
        if g < 0:
            raise KeyError(key)
        b = self._bounds[table]
        return self._rows[table][b[g] : b[g + 1]]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"<CRM split by {self._col}: {len(self)} scopes>"


def _positions(ids: pd.Series, keys: pd.Series) -> np.ndarray:
    """Row of ``keys`` (unique) holding each of ``ids``; -1 when absent or missing."""
    from forecastkit.data.validate import text_positions

    pos = text_positions(ids, keys)
    if pos is not None:
        return pos
    out = pd.Index(keys.to_numpy(dtype=object)).get_indexer(ids.to_numpy(dtype=object))
    return np.where(ids.isna().to_numpy(dtype=bool), -1, out).astype(np.int64)


def _rows(df: pd.DataFrame, keep: pd.Series | np.ndarray) -> pd.DataFrame:
    """``df[keep].reset_index(drop=True)`` as a new frame the caller may modify: one copy of the data, not three.

    (``df[keep]`` copies, ``.copy()`` before modifying it and ``reset_index`` copy again.)
    """
    out = df.take(np.flatnonzero(np.asarray(keep, dtype=bool)))
    out.index = pd.RangeIndex(len(out))
    return out


def _head(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first ``n`` rows of ``df`` (default index) as a frame sharing its data: setting a column of it
    replaces that column (``df`` keeps its own); writing into its cells would write into ``df``'s.

    For rewinds whose snapshots are only read (:meth:`CRM._rewind_source` copies marked
    ``read_only_rewinds``): sorted by creation date, the deals created before a cutoff are the
    first rows, and copying them (a million deals, two dozen text columns) costs more than
    rewinding them.
    """
    out = df.iloc[:n].copy(deep=False)  # (a new frame on the same blocks, not flagged as a copy of df)
    out.index = pd.RangeIndex(n)
    return out


def _before(df: pd.DataFrame, col: str, cutoff: pd.Timestamp) -> pd.DataFrame:
    return _rows(df, df[col] < cutoff)


def _last_rows(ids: pd.Series) -> np.ndarray:
    """Positions of ``df.groupby(ids, sort=False).tail(1)``: each deal's last row, ascending (missing ids left out).

    History is sorted by deal: each deal's rows are one run and its last row ends the run
    (checked; otherwise the groupby).
    """
    v = ids.to_numpy() if ids.dtype == np.int64 else np.asarray(ids.array, dtype=object)
    if len(v) >= 2 and (ids.dtype == np.int64 or isinstance(ids.dtype, pd.StringDtype)):
        try:  # (a missing text id is pd.NA, whose comparison raises TypeError)
            ends = np.append(np.flatnonzero(v[1:] != v[:-1]), len(v) - 1)
            if bool((v[1:] >= v[:-1]).all()) or pd.Index(v[ends]).is_unique:
                return ends
        except TypeError:
            pass
    frame = pd.DataFrame({"id": ids.to_numpy(), "row": np.arange(len(ids))})
    return frame.groupby("id", sort=False).tail(1)["row"].to_numpy()


def _field_values(fh: pd.DataFrame, field: str, kind: str, cache: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, values)``: the rows of ``fh`` (positions) changing ``field`` and their old values converted.

    Converted once per snapshot (``cache``) instead of at every ``as_of``; None when a part
    of the column could convert differently from the whole (dates or numbers that pyarrow
    cannot parse all at once go through pandas' parsers, which the rewind then uses per call).
    """
    from forecastkit.data.validate import _coerce

    key = (field, kind)
    if key not in cache:
        if "fields" not in cache:  # each row's field as a number (one pass instead of one per field)
            cache["fields"] = pd.factorize(fh["field"])
        codes, names = cache["fields"]
        rows = np.flatnonzero(codes == names.get_loc(field)) if field in names else np.zeros(0, dtype=np.int64)
        vals, _, parsed = _coerce(fh["old_value"].iloc[rows].reset_index(drop=True), kind)
        whole = kind in ("str", "bool") or parsed is not None
        cache[key] = (rows, vals.to_numpy()) if whole else None
    return cache[key]


def _rewind_opportunities(
    opps: pd.DataFrame, hist: pd.DataFrame, fh: pd.DataFrame, cutoff: pd.Timestamp, cache: dict | None = None
) -> pd.DataFrame:
    """The deals as known before ``cutoff`` by plain pandas steps (``hist``: the history rows before it).

    ``CRM.as_of`` uses these steps for tables its prepared rewind (:mod:`forecastkit.data._fast`)
    does not take (repeated or missing ids, other column types); the tests hold both equal.
    """
    from forecastkit.data.validate import _isin

    o = _rows(opps, opps["created_at"] < cutoff)
    if o.empty:
        return o
    cur_stage = o["stage"].copy()
    ids = o["opportunity_id"]
    if len(hist):
        # one lookup of each deal's last history row (instead of one per column)
        last = _last_rows(hist["opportunity_id"])
        row = key_positions(ids, hist["opportunity_id"].iloc[last].to_numpy())
        has = pd.Series(row >= 0, index=o.index)
        row = last[row[row >= 0]]  # the deals' last history rows, as positions in hist
        for col in ("stage", "amount", "close_date", "forecast_category"):
            vals = hist[col].iloc[row].to_numpy()
            if col == "forecast_category":
                # history without a category: the current one only while the deal is still in the same stage
                unchanged = o.loc[has, "stage"].to_numpy(dtype=object) == hist["stage"].iloc[row].to_numpy(dtype=object)
                keep = pd.isna(vals) & unchanged & ~o.loc[has, "stage"].isin(CLOSED_STAGES).to_numpy()
                vals = np.where(keep, o.loc[has, col].to_numpy(dtype=object), vals)
            o.loc[has, col] = vals
        closed_when = hist["changed_at"].iloc[row].to_numpy()
    else:
        has = pd.Series(False, index=o.index)
        closed_when = np.array([], dtype="datetime64[ns]")
    closed_now = o["stage"].isin(CLOSED_STAGES)
    # deals without history that closed after the cutoff: open again, stage unknown
    reopened = ~has & closed_now & (o["closed_at"] >= cutoff)
    o.loc[reopened, "stage"] = pd.NA
    closed_now &= ~reopened
    status = o["stage"].where(o["stage"].isin(CLOSED_STAGES), "open")
    o["status"] = status.astype(TEXT_DTYPE)
    closed_at = o["closed_at"].where(closed_now & (o["closed_at"] < cutoff))
    if len(closed_when):
        hist_close = pd.Series(pd.NaT, index=o.index, dtype="datetime64[ns]")
        hist_close.loc[has] = pd.to_datetime(closed_when).normalize()
        fill = closed_now & closed_at.isna()
        closed_at = closed_at.where(~fill, hist_close)
    o["closed_at"] = closed_at.astype("datetime64[ns]")
    o.loc[status != "lost", "loss_reason"] = pd.NA
    o.loc[status == "won", "forecast_category"] = "closed"
    o.loc[status == "lost", "forecast_category"] = "omitted"
    o.loc[(o["stage"] != cur_stage).fillna(True).astype(bool), "probability"] = np.nan
    if len(fh):
        later_rows = np.flatnonzero((fh["changed_at"] >= cutoff).to_numpy())  # (then the deals: fewer ids to look up)
        later = fh.iloc[later_rows].set_axis(later_rows)  # (labelled by position in fh)
        later = later[_isin(later["opportunity_id"], ids).to_numpy()]
        if len(later):
            first = later.groupby(["opportunity_id", "field"], sort=False).head(1)
            pos = pd.Series(np.arange(len(o)), index=o["opportunity_id"].to_numpy())
            by_row = _count_rewind(cache, fh)
            for field, grp in first.groupby("field", sort=False):
                if field in o.columns and field != "opportunity_id":
                    rows = pos.reindex(grp["opportunity_id"].to_numpy()).to_numpy()
                    _restore_field(o, fh, str(field), grp.index.to_numpy(), rows, cache, by_row)
    return o


def _count_rewind(cache: dict | None, fh: pd.DataFrame) -> bool:
    """Count a rewind that restores field values; True when old values come from the per-snapshot conversion.

    From a snapshot's second such rewind on (win-model training rewinds one at many dates),
    old values are converted once for all rows instead of at each date (fh rows by position:
    only with a default index).
    """
    by_row = cache is not None and cache.setdefault("rewinds", 0) > 0 and fh.index.equals(pd.RangeIndex(len(fh)))
    if cache is not None:
        cache["rewinds"] += 1
    return by_row


def _old_values(
    fh: pd.DataFrame, field: str, fh_rows: np.ndarray, cache: dict | None, by_row: bool
) -> tuple[str, np.ndarray]:
    """The kind of ``field`` and the old values of field-history rows ``fh_rows`` (positions), converted to it."""
    kind = TABLES["opportunities"].column(field).kind
    whole = _field_values(fh, field, kind, cache) if by_row else None
    if whole is not None:
        return kind, whole[1][np.searchsorted(whole[0], fh_rows)]
    return kind, coerce_column(fh["old_value"].iloc[fh_rows].reset_index(drop=True), kind)[0].to_numpy()


def _restore_field(
    o: pd.DataFrame,
    fh: pd.DataFrame,
    field: str,
    fh_rows: np.ndarray,
    o_rows: np.ndarray,
    cache: dict | None,
    by_row: bool,
) -> None:
    """Set ``o[field]`` at rows ``o_rows`` to the old values of field-history rows ``fh_rows`` (positions), converted."""
    vals = _old_values(fh, field, fh_rows, cache, by_row)[1]
    col = o[field].copy()
    col.iloc[o_rows] = vals
    o[field] = col


def _restored(
    values: np.ndarray | pd.api.extensions.ExtensionArray,
    fh: pd.DataFrame,
    field: str,
    fh_rows: np.ndarray,
    o_rows: np.ndarray,
    cache: dict | None,
    by_row: bool,
) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """A copy of the column ``values`` of ``field`` with the old values of field-history rows ``fh_rows``
    (positions) at rows ``o_rows``: :func:`_restore_field` for a column held as an array.

    Canonical text, number and date columns are written directly into the copy (the values
    are already of the column's type); any other column through pandas, which may convert it.
    """
    kind, vals = _old_values(fh, field, fh_rows, cache, by_row)
    fits = {"str": TEXT_DTYPE, "float": np.dtype("float64"), "date": np.dtype("datetime64[ns]")}.get(kind)
    if fits is not None and values.dtype == fits:
        out = values.copy()
        out[o_rows] = vals
        return out
    col = pd.Series(values, copy=True)
    col.iloc[o_rows] = vals
    return col._values


def _rewind_activities(act: pd.DataFrame, cutoff: pd.Timestamp, known: pd.Series) -> pd.DataFrame:
    """Activities known (created, else due: ``known``) before ``cutoff``; done after it: not done yet."""
    return _activities_before(act, np.flatnonzero(np.asarray(known < cutoff, dtype=bool)), cutoff)


def _activities_before(act: pd.DataFrame, rows: np.ndarray, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Rows ``rows`` of ``act`` (positions, in order) as known before ``cutoff``: those done after it are not
    done yet (no done date, no visit report). The backtest picks its rows itself (its open deals' only)."""
    a = act.take(rows)
    a.index = pd.RangeIndex(len(a))
    later = a["done_at"] >= cutoff
    if later.any():
        a.loc[later, "done_at"] = pd.NaT
        for b in ("report", *REPORT_BOXES):
            if b in a:  # a slimmed table (e.g. the win model's training source) may lack them
                a.loc[later, b] = pd.NA
    return a


def _rewind_orders(orders: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    o = _rows(orders, orders["ordered_at"] < cutoff)
    inv = o["invoiced_at"] >= cutoff
    o.loc[inv, "invoiced_at"] = pd.NaT
    o.loc[inv, "invoiced_amount"] = np.nan
    o.loc[o["delivered_at"] >= cutoff, "delivered_at"] = pd.NaT
    return o
