"""Shared plumbing of the KPI functions: ``period=`` and ``by=`` handling, org mapping, targets.

Every KPI takes ``period`` and ``by`` with the same meaning:

``period``
    ``None`` - the whole history, one row per group with ``period == "all"``;
    a period such as ``"2026-Q4"``, ``"2026-11"`` or ``"FY2026"`` - that period only;
    a frequency ``"month"``, ``"quarter"``, ``"half"`` or ``"year"`` - one row per
    fiscal period of that frequency (fiscal calendar of the playbook).
``by``
    ``None`` (the company), one of ``owner, team, business_unit, segment, source,
    product`` or a list of them. ``team`` and ``business_unit`` come from the row
    when filled, otherwise from the ``reps`` table (owner -> team, business unit).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from forecastkit.data.crm import CRM
from forecastkit.errors import ParameterError
from forecastkit.periods import Freq, Period, parse_period, period_of
from forecastkit.playbook import Playbook

__all__: list[str] = []

By = Literal["owner", "team", "business_unit", "segment", "source", "product"]
BY_COLUMNS: tuple[str, ...] = ("owner", "team", "business_unit", "segment", "source", "product")
FREQS: tuple[str, ...] = ("month", "quarter", "half", "year")
ALL = "all"
_ORG = ("team", "business_unit")


@dataclass(frozen=True)
class _PeriodSpec:
    """How rows are put into periods: ``all``, one ``period`` or every period of ``freq``."""

    mode: Literal["all", "one", "freq"]
    freq: Freq | None = None
    period: Period | None = None


def _resolve_period(period: object, playbook: Playbook) -> _PeriodSpec:
    if period is None:
        return _PeriodSpec("all")
    if isinstance(period, Period):
        return _PeriodSpec("one", period.freq, period)
    if isinstance(period, str) and period.strip().lower() in FREQS:
        return _PeriodSpec("freq", period.strip().lower())  # type: ignore[arg-type]
    if not isinstance(period, str):
        raise ParameterError(
            f"period={period!r} is not understood; use None (all history), a period such as '2026-Q4', "
            f"or a frequency: {', '.join(FREQS)}"
        )
    p = parse_period(period, playbook)
    return _PeriodSpec("one", p.freq, p)


def _by_list(by: object) -> list[str]:
    if by is None:
        return []
    cols = [by] if isinstance(by, str) else list(by)  # type: ignore[arg-type]
    bad = [c for c in cols if c not in BY_COLUMNS]
    if bad:
        raise ParameterError(f"by={by!r}: {bad} cannot be grouped on; use None or any of {', '.join(BY_COLUMNS)}")
    if len(set(cols)) != len(cols):
        raise ParameterError(f"by={by!r} names a column twice")
    return cols


def _period_codes(dates: pd.Series, freq: Freq, playbook: Playbook) -> np.ndarray:
    """Integer code of the fiscal period of each date (``-1`` where the date is missing); sortable."""
    if isinstance(dates, pd.Series) and dates.dtype == "datetime64[ns]":
        d = dates.to_numpy()  # already dates: no parsing pass
    else:
        d = np.asarray(pd.to_datetime(dates), dtype="datetime64[ns]")
    ok = ~np.isnat(d)
    months = d.astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    year = np.where(ok, months // 12 + 1970, 0)
    month = np.where(ok, months % 12 + 1, 1)
    if freq == "month":
        code = year * 100 + month
    else:
        m = playbook.fiscal_year_start_month
        into = (month - m) % 12
        fy = np.where(month >= m, year, year - 1) + (0 if m == 1 else 1)
        idx = {"quarter": into // 3 + 1, "half": into // 6 + 1, "year": np.zeros_like(into)}[freq]
        code = fy * 100 + idx
    return np.where(ok, code, -1)


def _code_label(code: int, freq: Freq) -> str:
    y, i = divmod(int(code), 100)
    return {"month": f"{y}-{i:02d}", "quarter": f"{y}-Q{i}", "half": f"{y}-H{i}", "year": f"FY{y}"}[freq]


def _label_codes(codes: np.ndarray, freq: Freq) -> pd.Series:
    uniq = {c: _code_label(c, freq) for c in np.unique(codes) if c >= 0}
    return pd.Series(codes).map(uniq)


def _assign_period(df: pd.DataFrame, dates: pd.Series, spec: _PeriodSpec, playbook: Playbook) -> pd.DataFrame:
    """``df`` restricted to rows in the period(s), with ``period`` (label) and ``_pcode`` (sort key) columns."""
    out = df.copy()
    if spec.mode == "all":
        out["period"] = ALL
        out["_pcode"] = 0
        return out
    if spec.mode == "one":
        assert spec.period is not None
        keep = spec.period.contains(dates).fillna(False).to_numpy(dtype=bool)
        out = out.loc[keep]
        out["period"] = spec.period.label
        out["_pcode"] = 0
        return out
    assert spec.freq is not None
    codes = _period_codes(dates, spec.freq, playbook)
    keep = codes >= 0
    out = out.loc[keep]
    out["_pcode"] = codes[keep]
    out["period"] = _label_codes(codes[keep], spec.freq).to_numpy()
    return out


def _period_list(spec: _PeriodSpec, start: object, end: object, playbook: Playbook) -> list[Period] | None:
    """The periods a stock KPI is evaluated over (None for ``all``)."""
    if spec.mode == "all":
        return None
    if spec.mode == "one":
        assert spec.period is not None
        return [spec.period]
    from forecastkit.periods import periods_between

    assert spec.freq is not None
    return periods_between(start, end, spec.freq, playbook)


_ORG_MAPS: weakref.WeakKeyDictionary[CRM, pd.DataFrame] = weakref.WeakKeyDictionary()


def _org_map(crm: CRM) -> pd.DataFrame:
    """owner -> team, business_unit (from ``reps``, completed by the deals' own columns).

    Built once per snapshot (its tables never change); the frame is shared: do not modify it.
    """
    cached = _ORG_MAPS.get(crm)
    if cached is None:
        cached = _ORG_MAPS[crm] = _build_org_map(crm)
    return cached


def _build_org_map(crm: CRM) -> pd.DataFrame:
    reps = crm.reps
    parts = []
    if len(reps):
        parts.append(reps[["owner", *_ORG]])
    o = crm.opportunities
    cols = [c for c in _ORG if c in o]
    if cols and len(o):
        last = o[["owner", *cols]].dropna(subset=cols, how="all").drop_duplicates("owner", keep="last")
        parts.append(last.reindex(columns=["owner", *_ORG]))
    if not parts:
        return pd.DataFrame(
            {
                "owner": pd.Series(dtype="string"),
                "team": pd.Series(dtype="string"),
                "business_unit": pd.Series(dtype="string"),
            }
        ).set_index("owner")
    m = pd.concat(parts, ignore_index=True)
    m = m.groupby("owner", sort=False)[list(_ORG)].first()
    return m


def _with_groups(
    df: pd.DataFrame, crm: CRM, by: Sequence[str], *, table: str, org: pd.DataFrame | None = None
) -> pd.DataFrame:
    """``df`` with every ``by`` column present and filled (team/business_unit from the owner when empty)."""
    out = df
    need = [c for c in by if c in _ORG]
    if need:
        if "owner" not in out:
            raise ParameterError(f"by={list(by)!r}: the '{table}' table has no owner column to find the {need[0]}")
        org = _org_map(crm) if org is None else org
        out = out.copy()
        for c in need:
            mapped = out["owner"].map(org[c]) if len(org) else pd.Series(pd.NA, index=out.index)
            out[c] = out[c].fillna(mapped) if c in out else mapped
    other = [c for c in by if c not in _ORG and c not in out]
    if other:
        if "account_id" in out and crm.has("accounts") and all(c in crm.accounts for c in other):
            acc = crm.accounts.set_index("account_id")
            out = out.copy()
            for c in other:
                out[c] = out["account_id"].map(acc[c])
        else:
            raise ParameterError(
                f"by={list(by)!r}: the '{table}' table has no {other[0]!r} column; group it by owner, team or business_unit"
            )
    return out


def _group(df: pd.DataFrame, by: Sequence[str]):
    """Group on the ``by`` columns and the period (missing group values kept as their own group)."""
    return df.groupby([*by, "_pcode", "period"], dropna=False, sort=True, observed=True)


def _merge(left: pd.DataFrame, right: pd.DataFrame, on: Sequence[str], how: str) -> pd.DataFrame:
    """``left.merge(right)`` that tolerates an empty side whose key columns lost their dtype.

    An empty groupby result has float64 keys while the other side's are text; pandas refuses
    to merge those, so the keys of an empty side take the other side's dtype first.
    """
    on = list(on)
    if left.empty or right.empty:
        empty, full = (left, right) if left.empty else (right, left)
        empty = empty.astype(
            {k: full[k].dtype for k in on if k in empty and k in full and empty[k].dtype != full[k].dtype}
        )
        left, right = (empty, full) if left.empty else (full, empty)
    return left.merge(right, on=on, how=how)


def _finish(out: pd.DataFrame, by: Sequence[str], cols: Sequence[str]) -> pd.DataFrame:
    """Columns in order ``by..., period, cols``, sorted by group then period, fresh index."""
    out = out.reset_index()
    out = out.sort_values([*by, "_pcode"], kind="stable") if len(out) else out
    return out[[*by, "period", *cols]].reset_index(drop=True)


def _days(a: pd.Series, b: pd.Series) -> pd.Series:
    """Days from ``a`` to ``b`` (float)."""
    return (b - a).dt.total_seconds() / 86400.0


def _safe_div(a: object, b: object) -> object:
    with np.errstate(divide="ignore", invalid="ignore"):
        num = np.asarray(a, dtype="float64")
        den = np.asarray(b, dtype="float64")
        res = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    if isinstance(a, pd.Series):
        return pd.Series(res, index=a.index)
    return float(res) if res.ndim == 0 else res


_TARGET_CODES: weakref.WeakKeyDictionary[CRM, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def _target_codes(crm: CRM) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer codes of the targets' metric and period text, with the distinct values (once per snapshot)."""
    cached = _TARGET_CODES.get(crm)
    if cached is None:
        t = crm.targets
        mcodes, mnames = pd.factorize(t["metric"].astype(str))
        pcodes, plabels = pd.factorize(t["period"].astype(str))
        cached = (mcodes, np.asarray(mnames, dtype=object), pcodes, np.asarray(plabels, dtype=object))
        _TARGET_CODES[crm] = cached
    return cached


def _target_amounts(
    crm: CRM, metric: str, periods: Sequence[Period], level: str | None, org: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Targets of ``metric`` per group (``level``) and period, prorated by days when the target period differs.

    Owner targets are used for ``level == "owner"``; for teams, business units and the
    company, a team's own target is used where one exists, otherwise the sum of its reps'.

    Returns
    -------
    DataFrame
        ``<level>`` (when given), ``period``, ``target``.
    """
    t = crm.targets
    if len(t):  # compare the distinct metric names only (targets can have millions of rows)
        codes, names, period_codes, period_labels = _target_codes(crm)
        keep = np.isin(codes, [i for i, n in enumerate(names) if n.lower() == metric.lower()])
        t = t[keep]
        used, pcodes = np.unique(period_codes[keep], return_inverse=True)
        labels = period_labels[used]
    key = [level] if level else []
    if not len(t) or not periods or level not in (None, "owner", "team", "business_unit"):
        return pd.DataFrame(columns=[*key, "period", "target"])
    tp = [parse_period(lab, crm.playbook) for lab in labels]
    amount = t["amount"].to_numpy(dtype=float)
    rows = []
    for p in periods:
        share = np.array([max(0, (min(q.end, p.end) - max(q.start, p.start)).days) / q.days for q in tp])
        s = pd.Series(share[pcodes], index=t.index)
        sub = t.assign(target=amount * s.to_numpy())[s > 0]
        if not len(sub):
            continue
        owner_rows = sub[sub["owner"].notna()]
        team_rows = sub[sub["owner"].isna() & sub["team"].notna()]
        if level == "owner":
            g = owner_rows.groupby("owner")["target"].sum().reset_index()
        else:
            org_ = _org_map(crm) if org is None else org
            o = owner_rows.assign(team=owner_rows["owner"].map(org_["team"]) if len(org_) else pd.NA)
            teams_with_own = set(team_rows["team"].dropna())
            o = o[~o["team"].isin(teams_with_own)]
            comb = pd.concat([o[["team", "target"]], team_rows[["team", "target"]]], ignore_index=True)
            if level == "team":
                g = comb.groupby("team")["target"].sum().reset_index()
            elif level == "business_unit":
                team_bu = org_.dropna(subset=["team"]).groupby("team")["business_unit"].first() if len(org_) else {}
                comb["business_unit"] = comb["team"].map(team_bu)
                g = comb.groupby("business_unit")["target"].sum().reset_index()
            else:
                g = pd.DataFrame({"target": [comb["target"].sum()]})
        g["period"] = p.label
        rows.append(g)
    if not rows:
        return pd.DataFrame(columns=[*key, "period", "target"])
    return pd.concat(rows, ignore_index=True)[[*key, "period", "target"]]


def _current_period(crm: CRM, freq: Freq = "quarter") -> Period:
    return period_of(crm.as_of_date, freq, crm.playbook)
