"""SQL sources: load a CRM snapshot from, and save one to, a database.

* ``duckdb:///path/crm.duckdb`` - an embedded DuckDB file, no server (the path
  follows SQLAlchemy's convention: ``duckdb:///relative/path``,
  ``duckdb:////absolute/path``); needs the ``duckdb`` package.
* any SQLAlchemy URL, e.g. ``postgresql+psycopg://user:password@host:5432/db``;
  needs ``sqlalchemy`` and the database driver (``pip install forecastkit[sql]``).

Tables hold the canonical columns (``opportunities``, ``history``...). Their names in
the database can differ (``tables={"opportunities": "crm_deals"}``). Only canonical
columns are selected, and ``as_of`` / ``since`` are pushed into the queries:

* ``as_of``: deals created after it are not read (with their history), nor
  activities, orders and forecast calls logged after it; the snapshot is then rewound
  with :meth:`CRM.as_of` (history and field history are read whole for the deals
  kept, since rewinding needs the changes made after ``as_of``).
* ``since``: deals closed before it are not read (with their history, field history
  and activities), nor activities, orders, forecast calls and subscriptions before it.

:func:`save` writes every present table plus ``forecastkit_meta`` (snapshot date,
currency and playbook), which :func:`load` reads back.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from forecastkit.adapters._common import RawExport, build
from forecastkit.data.crm import CRM
from forecastkit.data.schema import TABLES
from forecastkit.data.validate import note_not_read, tables_to_read
from forecastkit.errors import ParameterError, SchemaError
from forecastkit.periods import to_timestamp
from forecastkit.playbook import Playbook

__all__ = ["load", "save", "is_url", "META_TABLE"]

META_TABLE = "forecastkit_meta"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_DAY = pd.Timedelta(days=1)


def is_url(path: object) -> bool:
    """True for ``scheme://...`` strings (a database URL rather than a folder)."""
    return isinstance(path, str) and re.match(r"^[a-z][a-z0-9+.\-]*://", path) is not None


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _duckdb_path(url: str) -> str:
    rest = url[len("duckdb://") :]
    if rest in ("", "/", "/:memory:"):
        return ":memory:"
    return rest[1:] if rest.startswith("/") else rest


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ParameterError(f"{what} {name!r} is not a plain table name (letters, digits, _ and an optional schema.)")
    return name


def _q(name: str) -> str:
    return ".".join(f'"{p}"' for p in name.split("."))


# ----------------------------------------------------------------------------- connections
class _Conn:
    """A minimal common face over DuckDB and SQLAlchemy."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.duck = url.startswith("duckdb:")
        if self.duck:
            try:
                import duckdb
            except ImportError:  # pragma: no cover
                raise SchemaError("duckdb URLs need the duckdb package: pip install 'forecastkit[sql]'") from None
            path = _duckdb_path(url)
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.con = duckdb.connect(path)
        else:
            try:
                import sqlalchemy as sa
            except ImportError:  # pragma: no cover
                raise SchemaError(
                    "database URLs need SQLAlchemy and a driver: pip install 'forecastkit[sql]'"
                ) from None
            try:
                self.engine = sa.create_engine(url)
                self.con = self.engine.connect()
            except Exception as exc:
                raise SchemaError(
                    f"{_redact(url)}: cannot connect ({type(exc).__name__}: {str(exc).splitlines()[0]})"
                ) from None

    def close(self) -> None:
        self.con.close()
        if not self.duck:
            self.engine.dispose()

    def columns(self, table: str) -> list[str] | None:
        """Column names of ``table`` (None when it does not exist)."""
        schema, _, name = table.rpartition(".")
        if self.duck:
            q = "select column_name from information_schema.columns where table_name = ?"
            args: list[Any] = [name]
            if schema:
                q += " and table_schema = ?"
                args.append(schema)
            rows = self.con.execute(q + " order by ordinal_position", args).fetchall()
            return [r[0] for r in rows] or None
        import sqlalchemy as sa

        insp = sa.inspect(self.con)
        if not insp.has_table(name, schema=schema or None):
            return None
        return [c["name"] for c in insp.get_columns(name, schema=schema or None)]

    def query(self, sql: str, params: dict[str, Any]) -> pd.DataFrame:
        params = {k: v for k, v in params.items() if f":{k}" in sql}
        if self.duck:
            return self.con.execute(re.sub(r"(?<!:):(\w+)", r"$\1", sql), params).df()
        import sqlalchemy as sa

        return pd.read_sql(sa.text(sql), self.con, params=params)

    def write(self, table: str, df: pd.DataFrame) -> None:
        kinds = {c.name: c.kind for t in TABLES.values() for c in t.columns if c.name in df}
        if table in TABLES:
            kinds = {c.name: c.kind for c in TABLES[table].columns}
        if self.duck:
            frame = df.copy()
            for c in frame.columns:
                if isinstance(frame[c].dtype, pd.StringDtype):
                    frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
            self.con.register("_fk_frame", frame)
            cols = ", ".join(
                f'CAST("{c}" AS {_DUCK_TYPES.get(kinds.get(c, "str"), "VARCHAR")}) AS "{c}"' for c in frame.columns
            )
            self.con.execute(f"CREATE OR REPLACE TABLE {_q(table)} AS SELECT {cols} FROM _fk_frame")
            self.con.unregister("_fk_frame")
            return
        import sqlalchemy as sa

        types = {"str": sa.Text(), "date": sa.DateTime(), "float": sa.Float(precision=53), "bool": sa.Boolean()}
        frame = df.copy()
        for c in frame.columns:
            if isinstance(frame[c].dtype, (pd.StringDtype, pd.BooleanDtype)):
                frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
        schema, _, name = table.rpartition(".")
        dtype = {c: types[kinds.get(c, "str")] for c in frame.columns}
        with self.con.begin():
            if self.engine.dialect.name == "postgresql" and self.engine.dialect.driver == "psycopg":
                # create the table, then COPY the rows in (far faster than INSERTs)
                frame.head(0).to_sql(
                    name, self.con, schema=schema or None, if_exists="replace", index=False, dtype=dtype
                )
                cols = ", ".join(_q(c) for c in frame.columns)
                raw = self.con.connection.driver_connection
                with raw.cursor() as cur, cur.copy(f"COPY {_q(table)} ({cols}) FROM STDIN WITH (FORMAT csv)") as cp:
                    for start in range(0, len(frame), 200_000):
                        chunk = frame.iloc[start : start + 200_000]
                        cp.write(chunk.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f"))
            else:
                frame.to_sql(
                    name,
                    self.con,
                    schema=schema or None,
                    if_exists="replace",
                    index=False,
                    chunksize=max(1, 30000 // max(1, frame.shape[1])),
                    method="multi",
                    dtype=dtype,
                )


_DUCK_TYPES = {"str": "VARCHAR", "date": "TIMESTAMP", "float": "DOUBLE", "bool": "BOOLEAN"}


# ----------------------------------------------------------------------------- save
def save(
    crm: CRM,
    url: str,
    *,
    tables: Mapping[str, str] | None = None,
    if_exists: Literal["replace", "fail"] = "replace",
) -> str:
    """Write a snapshot's present tables, and ``forecastkit_meta``, to a database.

    Parameters
    ----------
    crm : CRM
        The snapshot.
    url : str
        ``duckdb:///path/crm.duckdb`` or a SQLAlchemy URL.
    tables : mapping, optional
        Canonical table name -> table name in the database (default: the canonical names).
    if_exists : {"replace", "fail"}
        What to do when a table already exists.

    Returns
    -------
    str
        The URL (for chaining into :func:`load`).
    """
    if if_exists not in ("replace", "fail"):
        raise ParameterError(f"if_exists must be 'replace' or 'fail', got {if_exists!r}")
    names = _table_names(tables)
    conn = _Conn(url)
    try:
        present = [n for n in TABLES if crm.has(n)]
        if if_exists == "fail":
            taken = [names[n] for n in present if conn.columns(names[n]) is not None]
            if taken:
                raise SchemaError(
                    f"{_redact(url)}: table(s) {', '.join(taken)} already exist; pass if_exists='replace'"
                )
        for n in present:
            conn.write(names[n], crm.tables[n])
        meta = pd.DataFrame(
            {
                "key": ["as_of", "currency", "playbook", "tables"],
                "value": [
                    str(crm.as_of_date.date()),
                    crm.playbook.currency,
                    yaml.safe_dump(crm.playbook.to_dict(), sort_keys=False),
                    ",".join(present),
                ],
            }
        )
        conn.write(META_TABLE, meta)
    finally:
        conn.close()
    return url


def _table_names(tables: Mapping[str, str] | None) -> dict[str, str]:
    names = {n: n for n in TABLES}
    for k, v in (tables or {}).items():
        if k not in TABLES:
            raise ParameterError(f"tables: {k!r} is not a canonical table; canonical tables: {', '.join(TABLES)}")
        names[k] = _check_name(str(v), f"tables[{k!r}]")
    return names


# ----------------------------------------------------------------------------- load
def _read_meta(conn: _Conn) -> dict[str, str]:
    if conn.columns(META_TABLE) is None:
        return {}
    df = conn.query(f"select key, value from {_q(META_TABLE)}", {})
    return dict(zip(df["key"].astype(str), df["value"].astype(str), strict=True))


def load(
    url: str,
    *,
    tables: Mapping[str, str] | None = None,
    only: Sequence[str] | None = None,
    columns: Mapping[str, Sequence[str]] | None = None,
    as_of: object = None,
    since: object = None,
    playbook: Playbook | str | Path | None = None,
    strict: bool = False,
    fx_rates: Mapping[str, float] | None = None,
) -> CRM:
    """Load a CRM snapshot from a database.

    Parameters
    ----------
    url : str
        ``duckdb:///path/crm.duckdb`` (embedded) or a SQLAlchemy URL such as
        ``postgresql+psycopg://user:password@127.0.0.1:5432/crm``.
    tables : mapping, optional
        Canonical table name -> table name in the database, e.g.
        ``{"opportunities": "sales.deals", "history": "sales.deal_history"}``.
    only : list of str, optional
        Canonical tables to read (default: every one found). ``opportunities`` is always read,
        and so are the tables the named ones are checked against and, without a snapshot date
        (``as_of`` or the saved one), the tables that set it, as with
        ``forecastkit.load(url, tables=[...])``; the tables read come out as in a full load.
        The others are absent and listed in ``crm.load_report.not_read``.
    columns : mapping, optional
        Canonical table -> the optional columns wanted (required columns are always read);
        default every canonical column the table has.
    as_of : date, optional
        Rewind to this date; rows created later are not queried (see the module docstring).
    since : date, optional
        Skip deals closed before this date and activity, orders, calls and MRR before it.
    playbook : Playbook or path to YAML, optional
        Default: the playbook saved with the tables, else the default playbook.
    strict : bool
        Raise :class:`~forecastkit.errors.DataError` when any row is rejected.
    fx_rates : mapping, optional
        Currency -> value of one unit in the reporting currency.

    Returns
    -------
    CRM
        The snapshot, validated like any other source (``crm.load_report``).
    """
    names = _table_names(tables)
    if only is not None:  # bad names fail before connecting (the list also holds the tables they need)
        only = tables_to_read(only, snapshot_date_known=True, what="only")
    cutoff = None if as_of is None else to_timestamp(as_of, what="as_of").normalize() + _DAY
    since_ts = None if since is None else to_timestamp(since, what="since").normalize()
    conn = _Conn(url)
    try:
        meta = _read_meta(conn)
        pb = _playbook(playbook, meta)
        wanted = tables_to_read(only, snapshot_date_known=bool(meta.get("as_of")) or cutoff is not None, what="only")
        not_read = [t for t in TABLES if t not in wanted and conn.columns(names[t]) is not None]
        cols: dict[str, list[str]] = {}
        for t in wanted:
            found = conn.columns(names[t])
            if found is None:
                if t == "opportunities":
                    raise SchemaError(
                        f"{_redact(url)}: no table {names[t]!r}; it is the one table a snapshot needs "
                        "(map yours with tables={'opportunities': 'your_table'})"
                    )
                continue
            canon = TABLES[t].column_names
            keep = [c for c in canon if c in found]
            if columns and t in columns:
                unknown = [c for c in columns[t] if c not in canon]
                if unknown:
                    raise ParameterError(f"columns[{t!r}]: {unknown} are not columns of the canonical table '{t}'")
                want = set(columns[t]) | set(TABLES[t].required) | set(TABLES[t].key)
                keep = [c for c in keep if c in want]
            missing = [c for c in TABLES[t].required if c not in found]
            if missing:
                raise SchemaError(
                    f"{_redact(url)}: table {names[t]!r} lacks the required column(s) {', '.join(missing)} "
                    f"of '{t}' (found: {', '.join(found[:12])})"
                )
            cols[t] = keep
        export = RawExport()
        opp_filter, params = _opportunity_filter(cols["opportunities"], cutoff, since_ts)
        opp_sel = f"select opportunity_id from {_q(names['opportunities'])}{opp_filter}"
        for t, keep in cols.items():
            sql = f"select {', '.join(_q(c) for c in keep)} from {_q(names[t])}"
            where = _where(t, keep, cutoff, since_ts, opp_sel if opp_filter else None)
            if t == "opportunities":
                where = opp_filter
            order = TABLES[t].key or (("opportunity_id", "changed_at") if t in ("history", "field_history") else ())
            if order:
                where += " order by " + ", ".join(_q(c) for c in order)
            export.tables[t] = conn.query(sql + where, params)
            export.files[t] = f"{names[t]} ({_redact(url)})" if t == "opportunities" else names[t]
            export.rows[t] = pd.RangeIndex(1, len(export.tables[t]) + 1).to_numpy()
    finally:
        conn.close()
    snapshot = meta.get("as_of") or (None if cutoff is None else str((cutoff - _DAY).date()))
    crm = build(export, playbook=pb, strict=strict, fx_rates=fx_rates, as_of=snapshot)
    note_not_read(crm.load_report, not_read)
    if cutoff is not None:
        crm = crm.as_of(cutoff - _DAY)
    return crm


def _playbook(playbook: Playbook | str | Path | None, meta: Mapping[str, str]) -> Playbook:
    if isinstance(playbook, Playbook):
        return playbook
    if playbook is not None:
        return Playbook.from_yaml(playbook)
    if "playbook" in meta:
        return Playbook.from_dict(yaml.safe_load(meta["playbook"]) or {}, source=META_TABLE)
    if "currency" in meta:
        return Playbook.from_dict({"currency": meta["currency"]}, source=META_TABLE)
    return Playbook()


def _opportunity_filter(cols: list[str], cutoff: pd.Timestamp | None, since: pd.Timestamp | None) -> tuple[str, dict]:
    conds, params = [], {}
    if cutoff is not None:
        conds.append("created_at < :cutoff")
        params["cutoff"] = cutoff.to_pydatetime()
    if since is not None and "status" in cols:
        end = "coalesce(closed_at, close_date)" if "closed_at" in cols else "close_date"
        conds.append(f"(status is null or status = 'open' or {end} >= :since)")
        params["since"] = since.to_pydatetime()
    return (" where " + " and ".join(conds)) if conds else "", params


def _where(
    t: str, cols: list[str], cutoff: pd.Timestamp | None, since: pd.Timestamp | None, opp_sel: str | None
) -> str:
    conds = []
    if opp_sel is not None and (t in ("history", "field_history") or (t == "activities" and "opportunity_id" in cols)):
        prefix = "opportunity_id is null or " if t == "activities" else ""
        conds.append(f"({prefix}opportunity_id in ({opp_sel}))")
    date_col = {
        "activities": "due_at",
        "orders": "ordered_at",
        "forecast_calls": "submitted_at",
        "subscriptions": "month",
    }
    if t in date_col:
        c = date_col[t]
        if cutoff is not None and t != "subscriptions":
            known = "coalesce(created_at, due_at)" if t == "activities" and "created_at" in cols else c
            conds.append(f"{known} < :cutoff")
        if since is not None:
            conds.append(f"{c} >= :since")
    return (" where " + " and ".join(conds)) if conds else ""
